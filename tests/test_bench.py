"""`timesformer bench`: the FLOP counter against closed forms and torch's own counter, the
memory probe against a known allocation, and a tiny end-to-end run's table and JSON."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from timesformer import cli
from timesformer.bench import PeakMemory, Timing, main, make_test_video, paired_speedup, timesformer_flops
from timesformer.model.timesformer import TimeSformer, TimeSformerConfig

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4, num_classes=10)


def test_flops_vit_b_divided_closed_form():
    # TimeSformer-B/16, 8 frames of 224: N = 196 patches, T = 8, D = 768, MLP 3072, 12 blocks.
    N, T, D, H, L = 196, 8, 768, 3072, 12
    patch_embed = N * T * (3 * 16 * 16) * D
    temporal = N * T * D * 3 * D + 2 * N * T * T * D + 2 * N * T * D * D  # qkv, q·kᵀ + attn·v, proj + temporal_fc
    spatial = T * (N + 1) * D * 4 * D + 2 * T * (N + 1) ** 2 * D  # qkv + proj, q·kᵀ + attn·v
    mlp = (1 + N * T) * 2 * D * H
    macs = patch_embed + L * (temporal + spatial + mlp) + D * 400
    assert timesformer_flops(TimeSformerConfig()) == 2 * macs
    # The figure: 196 GMAC = 392 GFLOP per clip (attention products included).
    assert timesformer_flops(TimeSformerConfig()) == pytest.approx(392e9, rel=0.002)
    assert timesformer_flops(TimeSformerConfig(), batch=3) == 3 * timesformer_flops(TimeSformerConfig())


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_flops_match_torch_flop_counter(attention_type):
    """torch's FlopCounterMode counts every mm/bmm/conv the model really runs (SDPA through
    its math path so that the attention products are visible to it). The training path is
    the reference computation; inference may skip work (no-grad oneDNN ops the counter does
    not know, the averaged cls token projected once), which the count must not credit."""
    config = TimeSformerConfig(**TINY, attention_type=attention_type, drop_path_rate=0.0)
    model = TimeSformer(config).train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, config.num_frames, config.img_size, config.img_size))
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


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    return make_test_video(tmp_path_factory.mktemp("bench") / "clip.mp4", seconds=1.0, width=160, height=120)


def test_bench_tiny_writes_table_and_json(tmp_path, small_video, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "--preset", "tiny", "--batch", "1", "--precision", "fp32,bf16", "--repeat", "1", "--warmup", "1",
        "--videos", str(small_video), "--workers", "0", "--matmul-size", "256", "--accuracy-clips", "2",
        "--checkpointing", "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    for what in ("matmul", "model", "train", "preprocess", "predict", "loader"):
        assert f"\n{what} " in table

    report = json.loads(out.read_text())
    assert {"machine", "settings", "model_config", "flops_per_clip", "peak_gflops", "results", "ratios", "checks"} <= set(report)
    assert report["machine"]["cpu_model"] and report["machine"]["torch"] == torch.__version__
    assert report["flops_per_clip"] == timesformer_flops(TimeSformerConfig(**TINY))
    assert set(report["peak_gflops"]) == {"fp32", "bf16"} and min(report["peak_gflops"].values()) > 0
    by_what = {}
    for row in report["results"]:
        by_what.setdefault(row["what"], []).append(row)
        assert row["median_s"] > 0 and row["runs"] >= 1 and math.isfinite(row["median_s"])
    assert set(by_what) == {"matmul", "model", "train", "preprocess", "predict", "loader"}
    for row in by_what["model"] + by_what["train"]:
        assert row["clips_per_s"] > 0 and row["gflops"] > 0 and row["peak_fraction"] > 0
    assert {r["impl"] for r in by_what["train"]} == {"ours", "ours+checkpointing"}
    assert {r["impl"] for r in by_what["preprocess"]} == {"pyav-decode (floor)", "timesformer.preprocess", "paddlevideo pipeline"}
    loader = by_what["loader"][0]
    assert loader["reader_cost_s"] > 0 and loader["batch_cost_s"] >= loader["reader_cost_s"]

    accuracy = report["checks"]["bf16_vs_fp32"]
    assert accuracy["clips"] == 2 and accuracy["inputs"] == "videos"
    assert 0 <= accuracy["top1_agreement"] <= 1 and accuracy["max_abs_logit_error"] < 0.1

    ratio_names = {r["name"] for r in report["ratios"]}
    assert {"preprocess_vs_decode", "paddlevideo_vs_preprocess", "checkpointing_time", "checkpointing_memory"} <= ratio_names
    # Ratios are medians of per-round ratios, in the direction their names say.
    seconds = {(r["what"], r["impl"], r["precision"]): r["seconds"] for r in report["results"]}
    ratios = {(r["name"], r.get("precision")): r["value"] for r in report["ratios"]}
    floor, ours = seconds["preprocess", "pyav-decode (floor)", None], seconds["preprocess", "timesformer.preprocess", None]
    assert ratios["preprocess_vs_decode", None] == pytest.approx(statistics.median(p / f for p, f in zip(ours, floor)))
    paddle = seconds["preprocess", "paddlevideo pipeline", None]
    assert ratios["paddlevideo_vs_preprocess", None] == pytest.approx(statistics.median(p / o for p, o in zip(paddle, ours)))
    plain, ckpt = seconds["train", "ours", "fp32"], seconds["train", "ours+checkpointing", "fp32"]
    assert ratios["checkpointing_time", "fp32"] == pytest.approx(statistics.median(c / p for c, p in zip(ckpt, plain)))
    if report["settings"]["compare_transformers"]:
        impls = {r["impl"] for r in by_what["model"]}
        assert impls == {"ours", "transformers"} and "ours_vs_transformers" in ratio_names
        theirs = seconds["model", "transformers", "bf16"]
        expected = statistics.median(t / o for t, o in zip(theirs, seconds["model", "ours", "bf16"]))
        assert ratios["ours_vs_transformers", "bf16"] == pytest.approx(expected)
        # Same weights (ours loaded from transformers' files): transformers' logits are the reference.
        assert report["checks"]["same_weights_as_transformers"] is True
        assert report["checks"]["logits_ours_vs_transformers_max_abs"]["fp32 batch 1"] < 1e-4


def test_cli_subcommand_runs(capsys):
    argv = ["bench", "--preset", "tiny", "--what", "matmul", "--matmul-size", "128", "--precision", "fp32",
            "--repeat", "1", "--warmup", "0"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "mm 128x128" in capsys.readouterr().out


def test_missing_video_is_one_line_user_error(tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    assert cli.main(["bench", "--preset", "tiny", "--what", "preprocess", "--videos", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "not found" in err


def test_unknown_what_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--what", "model,speed"])
    assert exit_info.value.code == 2
    assert "'speed' is not one of" in capsys.readouterr().err
