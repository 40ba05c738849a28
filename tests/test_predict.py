"""`timesformer predict` and `timesformer.Predictor`: both engines, PaddleVideo's output, broken and hostile files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from timesformer import Predictor  # noqa: E402
from timesformer.cli import main  # noqa: E402
from timesformer.data.synth import write_motion_dataset  # noqa: E402
from timesformer.errors import VideoReadError  # noqa: E402
from timesformer.data.labels import read_labels  # noqa: E402
from timesformer.export.predictor import Prediction  # noqa: E402
from timesformer.model.checkpoints import save_model  # noqa: E402
from timesformer.model.timesformer import build_model  # noqa: E402

K400_CFG = str(Path(__file__).resolve().parents[1] / "configs" / "timesformer_k400_videos.yaml")
FIXTURE_OVERRIDES = [
    "-o", "MODEL.backbone.embed_dim=96", "-o", "MODEL.backbone.depth=2",
    "-o", "MODEL.backbone.num_heads=4", "-o", "MODEL.head.in_channels=96",
]  # fmt: skip


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def run_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- PaddleVideo fixture


@pytest.fixture(scope="module")
def fixture_export(tmp_path_factory):
    """PaddleVideo's tiny TimeSformer exported once through the CLI, as PaddleVideo does."""
    from conftest import FIXTURE

    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} is absent (../shared exists only in the project's workspace)")
    out = tmp_path_factory.mktemp("fixture_export")
    code = main(["export", "-c", K400_CFG, "-p", str(FIXTURE / "model.pdparams"), "-o", str(out), *FIXTURE_OVERRIDES])
    assert code == 0
    return out


def test_both_engines_give_paddlevideos_scores_on_its_own_input(fixture_export, paddle_fixture):
    """Model + export alone: PaddleVideo's test tensor in, PaddleVideo's averaged view logits out."""
    ref = np.load(paddle_fixture / "video_example.npz")
    x = torch.from_numpy(ref["input"])  # [1, 3, 24, 224, 224], PaddleVideo's layout
    onnx = Predictor.from_onnx(fixture_export / "TimeSformer.onnx")
    torch_engine = Predictor.from_weights(
        paddle_fixture / "model.pdparams", config=K400_CFG, overrides=[o for o in FIXTURE_OVERRIDES if o != "-o"]
    )
    for predictor in (onnx, torch_engine):
        np.testing.assert_allclose(predictor.engine(x), ref["scores"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_predict_cli_on_example_avi_matches_paddlevideo(engine, fixture_export, paddle_fixture, example_avi, tmp_path, capsys):
    scores = softmax(np.load(paddle_fixture / "video_example.npz")["scores"][0])
    expected = np.argsort(-scores)[:5]
    model_args = (
        ["--model_file", fixture_export / "TimeSformer.onnx"]
        if engine == "onnx"
        else ["-w", paddle_fixture / "model.pdparams", "--precision", "fp32"]
    )
    out_json = tmp_path / "out.json"
    code, out, err = run_cli(
        capsys, "predict", "-c", K400_CFG, *FIXTURE_OVERRIDES, "--input_file", example_avi, *model_args,
        "--use_gpu=False", "--top_k", "5", "--json", out_json,
    )  # fmt: skip
    assert code == 0, err
    (record,) = json.loads(out_json.read_text())
    assert record["video_id"] == str(example_avi)
    assert record["topk_class"] == expected.tolist()
    np.testing.assert_allclose(record["topk_scores"], scores[expected], atol=1e-3)
    names = dict(line.split(maxsplit=1) for line in (paddle_fixture.parents[1] / "data" / "Kinetics-400_label_list.txt").read_text().splitlines())
    assert record["topk_label"] == [names[str(c)] for c in expected]

    lines = out.splitlines()
    assert lines[0] == f"Current video file: {example_avi}"
    assert lines[1] == f"\ttop-1 class: {expected[0]}"
    assert lines[2].startswith("\ttop-1 score: ") and abs(float(lines[2].split(": ")[1]) - scores[expected[0]]) < 1e-3
    assert lines[3] == f"\ttop-5 class: {expected.tolist()}"
    assert lines[4].startswith("\ttop-5 score: [")
    assert lines[5] == "\ttop-5 label: [" + ", ".join(names[str(c)] for c in expected) + "]"


# --------------------------------------------------------------------------- data synth videos


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two `data synth` videos, a 4-class tiny model for them (as our .safetensors) and its ONNX export."""
    root = tmp_path_factory.mktemp("synth")
    data = write_motion_dataset(root / "data", train=2, val=0, frames=8, size=32, seed=0, workers=1, progress=False)
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=8, num_classes=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # spread the logits so that the ranking is clear
    weights = save_model(model, root / "tiny.safetensors")
    assert main(["export", "-p", str(weights), "-o", str(root / "onnx"), "--label_file", str(data.labels_file)]) == 0
    videos = [line.split()[0] for line in data.train_list.read_text().splitlines()]
    return dict(root=root, list=data.train_list, labels=data.labels_file, weights=weights, onnx=root / "onnx" / "TimeSformer.onnx", videos=videos)


def test_onnx_and_torch_predict_the_same_on_synth_videos(synth, tmp_path, capsys):
    results = {}
    for engine, args in (("onnx", ["--model_file", synth["onnx"]]), ("torch", ["-w", synth["weights"], "--label_file", synth["labels"], "--precision", "fp32"])):
        out_json = tmp_path / f"{engine}.json"
        code, out, err = run_cli(capsys, "predict", "--input_file", synth["list"], *args, "--top_k", "2", "--batch_size", "2", "--json", out_json)
        assert code == 0, err
        results[engine] = json.loads(out_json.read_text())
        assert [line for line in out.splitlines() if line.startswith("Current video file: ")] == [
            f"Current video file: {v}" for v in synth["videos"]
        ]
    names = read_labels(synth["labels"])
    assert names == ["right", "left", "up", "down"]
    for onnx, torch_result in zip(results["onnx"], results["torch"]):
        assert set(onnx) == {"video_id", "topk_class", "topk_scores", "topk_label"}
        assert onnx["video_id"] == torch_result["video_id"]
        assert onnx["topk_class"] == torch_result["topk_class"]
        np.testing.assert_allclose(onnx["topk_scores"], torch_result["topk_scores"], atol=1e-5)
        assert onnx["topk_label"] == torch_result["topk_label"] == [names[c] for c in onnx["topk_class"]]
        assert onnx["topk_scores"][0] >= onnx["topk_scores"][1]


def test_python_api_scores_are_softmax_of_averaged_view_logits(synth):
    from timesformer import load_model, preprocess

    predictor = Predictor.from_weights(synth["weights"])
    (prediction,) = predictor.predict([synth["videos"][0]], top_k=4)
    assert isinstance(prediction, Prediction) and prediction.topk_label is None
    model = load_model(synth["weights"])
    clip = preprocess(synth["videos"][0], mode="test", num_seg=8, short_side_min=32, short_side_max=32, crop_size=32)
    with torch.no_grad():
        probs = model(clip).mean(0).softmax(-1).numpy()  # 3 views, their logits averaged
    assert prediction.topk_class == np.argsort(-probs).tolist()
    np.testing.assert_allclose(prediction.topk_scores, np.sort(probs)[::-1], atol=1e-5)


def test_broken_and_missing_videos_are_named_and_the_rest_predicted(synth, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    good = folder / "b_good.mp4"
    good.write_bytes(Path(synth["videos"][0]).read_bytes())
    broken = folder / "a_broken.avi"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    code, out, err = run_cli(capsys, "predict", "--input_file", folder, "--model_file", synth["onnx"])
    assert code == 1
    assert f"Current video file: {good}" in out and str(broken) not in out
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and str(broken) in errors[0] and "Traceback" not in "\n".join(err)

    for lone in (broken, tmp_path / "nowhere.mp4"):  # one video: exactly one line, naming it
        code, out, err = run_cli(capsys, "predict", "--input_file", lone, "-w", synth["weights"])
        err = [line for line in err if not line.startswith(("[predict] engine: ", "[predict] feed: "))]  # what ran, how fed
        assert code == 1 and out == "" and len(err) == 1 and str(lone) in err[0]

    with pytest.raises(VideoReadError, match="a_broken.avi"):
        Predictor.from_onnx(synth["onnx"]).predict(folder)


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pdparams", ".pyth"])
def test_hostile_weights_are_refused_and_nothing_runs(suffix, synth, tmp_path, capsys):
    marker = tmp_path / "pwned"
    hostile = tmp_path / f"evil{suffix}"
    payload = {"backbone.cls_token": _RunsCommand(marker)}
    if suffix == ".pyth":
        torch.save({"model_state": payload}, hostile)
    else:
        hostile.write_bytes(pickle.dumps(payload, protocol=2))
    for command in (["predict", "--input_file", synth["videos"][0], "-w", hostile], ["export", "-p", hostile, "-o", tmp_path / "out"]):
        code, out, err = run_cli(capsys, *command)
        assert code == 1 and len(err) == 1 and str(hostile) in err[0] and "Traceback" not in err[0]
        assert not marker.exists()


def test_missing_or_unreadable_model_file_is_one_line(synth, tmp_path, capsys):
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    for model_file in (tmp_path / "absent.onnx", garbage, tmp_path / "TimeSformer.pdmodel"):
        code, out, err = run_cli(capsys, "predict", "--input_file", synth["videos"][0], "--model_file", model_file)
        assert code == 1 and len(err) == 1 and str(model_file) in err[0], err


def test_use_gpu_takes_paddlevideo_booleans(synth, capsys):
    code, out, err = run_cli(capsys, "predict", "--input_file", synth["videos"][0], "--model_file", synth["onnx"], "--use_gpu=true")
    assert code == 0 and "ExecutionProvider" in "\n".join(err)  # says which provider ran
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():  # CPU build: says how to get CUDA
        assert "timesformer[export-gpu]" in "\n".join(err)
    assert out.splitlines()[1].startswith("\ttop-1 class: ") and "top-1 label: " in out  # labels shipped by export
    with pytest.raises(SystemExit):
        main(["predict", "--input_file", synth["videos"][0], "--model_file", str(synth["onnx"]), "--use_gpu=maybe"])


def test_bf16_autocast_keeps_the_ranking(synth):
    fp32 = Predictor.from_weights(synth["weights"]).predict([synth["videos"][1]], top_k=4)[0]
    bf16 = Predictor.from_weights(synth["weights"], precision="bf16").predict([synth["videos"][1]], top_k=4)[0]
    assert bf16.topk_class[0] == fp32.topk_class[0]
    np.testing.assert_allclose(bf16.topk_scores[0], fp32.topk_scores[0], atol=0.05)


def test_inference_does_not_load_the_training_engine():
    import subprocess
    import sys

    code = (
        "import sys, timesformer.export.predictor, timesformer.inference;"
        "bad = sorted(m for m in sys.modules if m.startswith(('timesformer.engine', 'timesformer.commands')));"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
