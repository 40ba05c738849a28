"""`timesformer bench`: the FLOP counter against closed forms and torch's own counter, the
memory probe against a known allocation, timing against a case forced to be slower, every
rate against its own time and size, options checked, and a tiny end-to-end run's table and JSON."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from timesformer import cli
from timesformer.bench.clips import make_test_video
from timesformer.bench.flops import timesformer_flops
from timesformer.bench.memory import PeakMemory
from timesformer.bench.options import BenchOptions, parse_peak_tflops
from timesformer.bench.report import recommendation
from timesformer.bench.timing import Timing, interleaved, paired_speedup
from timesformer.errors import UserError
from timesformer.model.timesformer import TimeSformer, TimeSformerConfig

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4, num_classes=10)


def test_flops_vit_b_divided_closed_form():
    # TimeSformer-B/16, 8 frames of 224: N = 196 patches, T = 8, D = 768, MLP 3072, 12 blocks.
    N, T, D, H, L = 196, 8, 768, 3072, 12
    patch_embed = N * T * (3 * 16 * 16) * D
    temporal = N * T * D * 3 * D + 2 * N * T * T * D + 2 * N * T * D * D  # qkv, q·kᵀ + attn·v, proj + temporal_fc
    spatial = T * (N + 1) * D * 4 * D + 2 * T * (N + 1) ** 2 * D  # qkv + proj, q·kᵀ + attn·v
    mlp = (1 + N * T) * 2 * D * H
    # The last block: every key and value, but the cls token's query, projection and MLP only.
    last_spatial = T * (N + 1) * D * 3 * D + 2 * T * (N + 1) * D + T * D * D
    macs = patch_embed + (L - 1) * (temporal + spatial + mlp) + temporal + last_spatial + 2 * D * H + D * 400
    assert timesformer_flops(TimeSformerConfig()) == 2 * macs
    # The issue's figure, 196 GMAC = 392 GFLOP per clip, counts the last block in full.
    full_last = spatial + mlp - last_spatial - 2 * D * H
    assert 2 * (macs + full_last) == pytest.approx(392e9, rel=0.002)
    assert timesformer_flops(TimeSformerConfig()) == pytest.approx(374.1e9, rel=0.001)
    assert timesformer_flops(TimeSformerConfig(), batch=3) == 3 * timesformer_flops(TimeSformerConfig())


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_flops_match_torch_flop_counter(attention_type, monkeypatch):
    """torch's FlopCounterMode counts every mm/bmm/conv the model really runs (SDPA through
    its math path so that the attention products are visible to it). The training path in
    float64 (plain ATen ops, which the counter knows; fp32 training runs oneDNN ops it does
    not), with the temporal projection and `temporal_fc` as the two layers they are, is the
    reference computation; the fast paths may skip work (both fold those two layers into one
    GEMM, inference projects the averaged cls token once), which the count must not credit."""
    from timesformer.model.timesformer import Block

    monkeypatch.setattr(Block, "temporal_branch", lambda self, xt: self.temporal_fc(self.temporal_attn(xt)))
    config = TimeSformerConfig(**TINY, attention_type=attention_type, drop_path_rate=0.0)
    model = TimeSformer(config).double().train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, config.num_frames, config.img_size, config.img_size, dtype=torch.float64))
    assert timesformer_flops(config, batch=2) == counter.get_total_flops()


def test_peak_memory_sees_a_known_allocation():
    probe = PeakMemory(torch.device("cpu"))
    probe.start()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del block
    peak = probe.stop()
    if peak is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert 60 <= peak < 200


def test_paired_speedup_is_the_median_of_per_round_ratios():
    fast = Timing([1.0, 1.0, 2.0], 1.0, None)
    slow = Timing([2.0, 3.0, 2.0], 2.0, None)
    assert paired_speedup(fast, slow) == 2.0  # ratios 2, 3, 1


def test_interleaved_measures_a_forced_slow_case_slower():
    """A case that sleeps 30 ms more than another is timed so: medians, rounds and ratio agree."""
    calls = []

    def fast():
        calls.append("fast")

    def slow():
        calls.append("slow")
        time.sleep(0.03)

    timings = interleaved({"fast": fast, "slow": slow}, torch.device("cpu"), repeat=3, warmup=1)
    assert calls == ["fast", "slow"] * 4  # one call of each per round, warm-up included
    assert len(timings["slow"].seconds) == 3 and timings["slow"].median_s >= 0.03
    assert timings["fast"].median_s < 0.01
    assert paired_speedup(timings["fast"], timings["slow"]) > 3


def test_recommendation_is_the_fastest_forward_at_the_smallest_batch():
    def row(precision, batch, seconds):
        return dict(what="model", impl="ours", precision=precision, batch=batch, median_s=seconds)

    rows = [row("fp32", 1, 1.0), row("bf16", 1, 0.6), row("fp32", 4, 3.0), row("bf16", 4, 3.5)]
    advice = recommendation({"results": rows + [dict(row("fp32", 1, 0.1), impl="transformers")]})
    assert advice["precision"] == "bf16" and advice["batch"] == 1 and advice["speedup_over_fp32"] == pytest.approx(1 / 0.6)
    rows[1]["median_s"] = 1.2
    assert recommendation({"results": rows})["precision"] == "fp32"
    assert recommendation({"results": []}) is None


def test_peak_tflops_per_precision():
    assert parse_peak_tflops("bf16=989,fp32=67", ["fp32", "bf16"]) == {"bf16": 989.0, "fp32": 67.0}
    assert parse_peak_tflops("989", ["bf16"]) == {"bf16": 989.0}
    with pytest.raises(UserError, match="one peak per precision"):
        parse_peak_tflops("989", ["fp32", "bf16"])  # fp32 would be measured against the bf16 peak
    with pytest.raises(UserError, match="PRECISION=TFLOPS"):
        parse_peak_tflops("bf16=lots", ["bf16"])
    for peaks in ({"bf16": -1.0}, {"bf16": float("inf")}, {"int4": 5.0}):
        with pytest.raises(UserError, match="--peak-tflops"):
            BenchOptions(peak_tflops=peaks).validate()


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(repeat=0), "--repeat 0"),
        (dict(warmup=-1), "--warmup -1"),
        (dict(batch=[1, 10**9]), "--batch 1000000000"),
        (dict(matmul_size=[-5]), "--matmul-size -5"),
        (dict(threads=0), "--threads 0"),
        (dict(predict_videos=0), "--predict-videos 0"),
        (dict(what=["speed"]), "--what speed"),
        (dict(precision=["int4"]), "--precision int4"),
        (dict(preset="huge"), "--preset huge"),
        (dict(weights="/nonexistent/w.safetensors"), "file not found"),
    ],
)
def test_options_are_checked_before_anything_runs(fields, message):
    with pytest.raises(UserError, match=message.replace("+", r"\+")):
        BenchOptions(**fields).validate()


def test_json_output_may_not_be_an_input(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    with pytest.raises(UserError, match="--json .* is also --videos"):
        BenchOptions(videos=[str(video)], json=str(video)).validate()
    assert video.read_bytes() == b"x"


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    return make_test_video(tmp_path_factory.mktemp("bench") / "clip.mp4", seconds=1.0, width=160, height=120)


def test_bench_tiny_writes_table_and_json(tmp_path, small_video, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench", "--preset", "tiny", "--batch", "1", "--precision", "fp32,bf16", "--repeat", "1", "--warmup", "1",
        "--videos", str(small_video), "--workers", "0", "--matmul-size", "128,256", "--accuracy-clips", "2",
        "--predict-videos", "3", "--checkpointing", "--peak-tflops", "fp32=0.5,bf16=2", "--json", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    for what in ("matmul", "model", "train", "preprocess", "predict", "onnx", "loader"):
        assert f"\n{what} " in table
    assert "AVX-512" in table and "recommended precision on this machine:" in table

    report = json.loads(out.read_text())
    assert {"machine", "settings", "model_config", "flops_per_clip", "peak_gflops", "results", "ratios", "checks",
            "recommendation", "auto_precision"} <= set(report)  # fmt: skip
    assert report["machine"]["cpu_model"] and report["machine"]["torch"] == torch.__version__
    assert report["flops_per_clip"] == timesformer_flops(TimeSformerConfig(**TINY))
    by_what = {}
    for row in report["results"]:
        by_what.setdefault(row["what"], []).append(row)
        assert row["median_s"] == statistics.median(row["seconds"]) and len(row["seconds"]) == row["runs"] >= 1

    # Every rate is its work over its own median time; the peak is the best GEMM of the run.
    matmul = by_what["matmul"]
    assert {(r["impl"], r["precision"]) for r in matmul} == {(f"mm {n}x{n}", p) for n in (128, 256) for p in ("fp32", "bf16")}
    for r in matmul:
        n = int(r["impl"].split("x")[-1])
        assert r["gflops"] == pytest.approx(2 * n**3 / r["median_s"] / 1e9)
    for precision in ("fp32", "bf16"):
        best = max(r["gflops"] for r in matmul if r["precision"] == precision)
        assert report["peak_gflops"][precision] == pytest.approx(best)
    flops = report["flops_per_clip"]
    for r in by_what["model"] + by_what["train"]:
        work = flops * r["batch"] * (3 if r["what"] == "train" else 1)
        assert r["gflops"] == pytest.approx(work / r["median_s"] / 1e9)
        assert r["clips_per_s"] == pytest.approx(r["batch"] / r["median_s"])
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / report["peak_gflops"][r["precision"]])
        # MFU against each precision's own datasheet peak, not one peak for all.
        assert r["mfu"] == pytest.approx(r["gflops"] / ({"fp32": 0.5, "bf16": 2.0}[r["precision"]] * 1e3))
    impls = {r["impl"] for r in by_what["train"]}
    assert {"ours", "ours+checkpointing"} <= impls
    assert {r["impl"] for r in by_what["preprocess"]} == {"pyav-decode (floor)", "timesformer.preprocess", "paddlevideo pipeline"}
    loader = by_what["loader"][0]
    assert loader["batch_cost_s"] >= loader["reader_cost_s"] > 0 and loader["loader_clips_per_s"] > 0
    assert loader["train_step_clips_per_s"] == next(
        r["clips_per_s"] for r in by_what["train"] if (r["impl"], r["precision"]) == ("ours", loader["precision"])
    )

    # End to end over a folder of 3 videos, at the precision the bench recommends.
    predict = {r["impl"]: r for r in by_what["predict"]}
    assert set(predict) == {"predict", "model-only", "sequential"}
    assert {r["precision"] for r in predict.values()} == {report["recommendation"]["precision"]}
    assert predict["predict"]["clips_per_s"] == pytest.approx(3 / predict["predict"]["median_s"])

    onnx = {(r["impl"], r["precision"]) for r in by_what["onnx"]}
    assert onnx == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("torch", "fp32"), ("torch", "bf16")}
    int8 = report["checks"]["int8_vs_fp32"]
    assert int8["clips"] == 1 and int8["max_abs_prob_diff"] < 0.05 and int8["int8_bytes"] < int8["fp32_bytes"]

    accuracy = report["checks"]["bf16_vs_fp32"]
    assert accuracy["clips"] == 2 and accuracy["inputs"] == "videos" and accuracy["max_abs_logit_error"] < 0.1

    ratio_names = {r["name"] for r in report["ratios"]}
    assert {"preprocess_vs_decode", "paddlevideo_vs_preprocess", "checkpointing_time", "checkpointing_memory",
            "bf16_vs_fp32", "predict_vs_model_only", "predict_vs_sequential", "int8_vs_fp32", "loader_vs_step"} <= ratio_names  # fmt: skip
    # Ratios are medians of per-round ratios, in the direction their names say.
    seconds = {(r["what"], r["impl"], r["precision"]): r["seconds"] for r in report["results"]}
    ratios = {(r["name"], r.get("precision")): r["value"] for r in report["ratios"] if r["what"] != "train"}
    ratios.update({("train " + r["name"], r.get("precision")): r["value"] for r in report["ratios"] if r["what"] == "train"})
    floor, ours = seconds["preprocess", "pyav-decode (floor)", None], seconds["preprocess", "timesformer.preprocess", None]
    assert ratios["preprocess_vs_decode", None] == pytest.approx(statistics.median(p / f for p, f in zip(ours, floor)))
    paddle = seconds["preprocess", "paddlevideo pipeline", None]
    assert ratios["paddlevideo_vs_preprocess", None] == pytest.approx(statistics.median(p / o for p, o in zip(paddle, ours)))
    plain, ckpt = seconds["train", "ours", "fp32"], seconds["train", "ours+checkpointing", "fp32"]
    assert ratios["train checkpointing_time", "fp32"] == pytest.approx(statistics.median(c / p for c, p in zip(ckpt, plain)))
    ort32, ort8 = seconds["onnx", "onnxruntime", "fp32"], seconds["onnx", "onnxruntime", "int8"]
    assert ratios["int8_vs_fp32", None] == pytest.approx(statistics.median(f / q for q, f in zip(ort8, ort32)))
    if report["settings"]["compare_transformers"]:
        impls = {r["impl"] for r in by_what["model"]}
        assert impls == {"ours", "transformers"} and "ours_vs_transformers" in ratio_names
        theirs = seconds["model", "transformers", "bf16"]
        expected = statistics.median(t / o for t, o in zip(theirs, seconds["model", "ours", "bf16"]))
        assert ratios["ours_vs_transformers", "bf16"] == pytest.approx(expected)
        # Same weights (ours loaded from transformers' files): transformers' logits are the reference.
        assert report["checks"]["same_weights_as_transformers"] is True
        assert report["checks"]["logits_ours_vs_transformers_max_abs"]["fp32 batch 1"] < 1e-4


def test_module_entry_point_runs_and_the_package_does_not_import_the_cli():
    code = (
        "import sys, timesformer.bench.runner; "
        "assert 'timesformer.commands.bench' not in sys.modules and 'timesformer.cli' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    argv = ["--preset", "tiny", "--what", "matmul", "--matmul-size", "64", "--precision", "fp32", "--repeat", "1", "--warmup", "0"]
    done = subprocess.run([sys.executable, "-m", "timesformer.bench", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "mm 64x64" in done.stdout


def test_cli_subcommand_runs(capsys):
    argv = ["bench", "--preset", "tiny", "--what", "matmul", "--matmul-size", "128", "--precision", "fp32",
            "--repeat", "1", "--warmup", "0"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "mm 128x128" in out and "recommended precision" not in out  # no forward measured: no advice


def test_missing_video_is_one_line_user_error(tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    assert cli.main(["bench", "--preset", "tiny", "--what", "preprocess", "--videos", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "not found" in err


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, bytes(range(256)) * 40])
def test_unreadable_video_is_one_line_user_error_before_any_work(tmp_path, capsys, content):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(content)
    started = time.perf_counter()
    assert cli.main(["bench", "--preset", "tiny", "--what", "matmul,preprocess", "--videos", str(broken)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken) in err and "not a readable video" in err
    assert time.perf_counter() - started < 5  # refused before the matmul ran


def test_a_folder_of_videos_stands_for_its_videos(tmp_path, small_video):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.mp4", "sub/a.mp4"):
        (folder / name).write_bytes(small_video.read_bytes())
    (folder / "notes.txt").write_text("not a video")
    assert BenchOptions(videos=[str(folder)]).validate().videos == [str(folder / "b.mp4"), str(folder / "sub" / "a.mp4")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no video files"):
        BenchOptions(videos=[str(tmp_path / "empty")]).validate()


def test_fp16_on_cpu_is_one_line_user_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed on CUDA")
    assert cli.main(["bench", "--preset", "tiny", "--what", "matmul", "--precision", "fp16", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fp16" in err and "bf16" in err


def test_unknown_what_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--what", "model,speed"])
    assert exit_info.value.code == 2
    assert "'speed' is not one of" in capsys.readouterr().err
