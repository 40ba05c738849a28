"""`timesformer demo`: a shortened run (--quick) goes through every step and writes its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timesformer.cli import main
from timesformer.demo import CLAIM_MARGIN, QUICK_DATA, ModelReport, claim_holds


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--workdir", str(workdir), "--seed", "3"]) == 0
    return workdir


def test_quick_demo_writes_summary_with_both_models(quick_demo: Path):
    summary = json.loads((quick_demo / "summary.json").read_text())
    for name in ("divided_space_time", "space_only"):
        report = summary[name]
        assert 0.0 <= report["top1"] <= 1.0
        assert 0.0 <= report["top1"] <= report["top5"] <= 1.0
        # One epoch: one validation point, the best one (the weights tested).
        assert [row["epoch"] for row in report["curve"]] == [1]
        assert report["best_val_top1"] == report["curve"][0]["val_top1"]
        assert Path(report["weights"]).name == "TimeSformer_demo_best.safetensors"
        assert Path(report["weights"]).is_file()
    assert summary["seconds"] > 0
    assert summary["quick"] is True and summary["seed"] == 3


def test_quick_demo_writes_real_videos(quick_demo: Path):
    import av

    videos = sorted((quick_demo / "data").rglob("*.mp4"))
    assert len(videos) == QUICK_DATA.train + QUICK_DATA.val
    with av.open(str(videos[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == QUICK_DATA.frames
    assert frames[0].shape == (QUICK_DATA.size, QUICK_DATA.size, 3)


def test_quick_demo_trained_the_two_attention_types(quick_demo: Path):
    from timesformer.model.checkpoints import read_state_dict

    divided = read_state_dict(quick_demo / "divided_space_time" / "TimeSformer_demo_best.safetensors")
    space_only = read_state_dict(quick_demo / "space_only" / "TimeSformer_demo_best.safetensors")
    assert "time_embed" in divided and any(k.endswith("temporal_attn.qkv.weight") for k in divided)
    assert "time_embed" not in space_only and not any("temporal" in k for k in space_only)


def test_quick_demo_exports_onnx_and_predicts_label_names(quick_demo: Path):
    import onnx

    model = onnx.load(str(quick_demo / "export" / "TimeSformer.onnx"))
    output_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert output_dims[-1].dim_value == 4  # right, left, up, down

    names = [line.split()[1] for line in (quick_demo / "data" / "labels.txt").read_text().splitlines()]
    assert names == ["right", "left", "up", "down"]
    predictions = json.loads((quick_demo / "predictions.json").read_text())
    val_videos = [line.split()[0] for line in (quick_demo / "data" / "val.list").read_text().splitlines()]
    assert [p["video"] for p in predictions] == val_videos[:4]
    for p in predictions:
        assert p["label"] in names and 0.0 <= p["score"] <= 1.0
    summary = json.loads((quick_demo / "summary.json").read_text())
    assert summary["predictions"] == predictions
    assert summary["claim_holds"] is None  # --quick does not judge the claim


def test_quick_demo_plots_the_curves(quick_demo: Path):
    pytest.importorskip("matplotlib")
    png = (quick_demo / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((quick_demo / "summary.json").read_text())["plot"] == str(quick_demo / "curves.png")


def test_read_curve_merges_train_and_valid_records_by_epoch(tmp_path: Path):
    from timesformer.report.curves import read_curve

    lines = [
        {"event": "train", "epoch": 1, "step": 10, "loss": 9.0, "lr": 0.1},
        {"event": "train", "epoch": 1, "step": 20, "loss": 8.0, "lr": 0.05},
        {"event": "train_epoch", "epoch": 1, "loss": 1.25, "top1": 0.5, "top5": 1.0},
        {"event": "valid", "epoch": 1, "top1": 0.75, "top5": 1.0, "count": 8, "skipped": 0},
        {"event": "train_epoch", "epoch": 2, "loss": 0.5, "top1": 1.0, "top5": 1.0},
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_curve(metrics) == [
        {"epoch": 1, "lr": 0.05, "train_loss": 1.25, "train_top1": 0.5, "val_top1": 0.75},
        {"epoch": 2, "train_loss": 0.5, "train_top1": 1.0},
    ]
    assert read_curve(tmp_path / "missing.jsonl") == []


def _report(top1: float) -> ModelReport:
    return ModelReport(top1=top1, top5=1.0, best_val_top1=top1, train_seconds=1.0, test_seconds=1.0, weights="w")


def test_the_claim_needs_a_clear_margin():
    assert claim_holds({"divided_space_time": _report(1.0), "space_only": _report(0.5)})
    assert claim_holds({"divided_space_time": _report(0.5 + CLAIM_MARGIN), "space_only": _report(0.5)})
    assert not claim_holds({"divided_space_time": _report(0.7), "space_only": _report(0.5)})
    assert not claim_holds({"divided_space_time": _report(0.5), "space_only": _report(1.0)})


def test_demo_exits_non_zero_when_the_claim_fails(monkeypatch, tmp_path: Path):
    import timesformer.demo

    monkeypatch.setattr(timesformer.demo, "run_demo", lambda options: {"claim_holds": False})
    assert main(["demo", "--workdir", str(tmp_path)]) == 1
    monkeypatch.setattr(timesformer.demo, "run_demo", lambda options: {"claim_holds": True})
    assert main(["demo", "--workdir", str(tmp_path)]) == 0


def test_demo_rejects_unknown_device(capsys):
    assert main(["demo", "--device", "tpu", "--workdir", "unused"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device tpu" in err[0]
