"""The README's "Train on your own videos" walk-through, end to end through the commands:
class folders -> `data folder` -> `train` (a 4-class checkpoint fine-tuned into 3 classes)
-> `test --report` -> `plot` (`export` takes any checkpoint and is tested with the demo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from timesformer.cli import main
from timesformer.data.synth import write_motion_dataset
from timesformer.model import build_model, read_state_dict, save_model


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory) -> Path:
    """Three class folders of real clips (the synth dataset's right / left / up training clips)."""
    work = tmp_path_factory.mktemp("own")
    synth = write_motion_dataset(work / "synth", train=24, val=0, frames=8, size=32, seed=0, workers=1)
    for name in ("right", "left", "up"):
        shutil.copytree(synth.out_dir / "train" / name, work / "my videos" / name)
    return work


def test_folder_to_fine_tuned_model_report_and_curves(own_videos: Path, tmp_path: Path, capsys):
    torch.manual_seed(0)
    four_class = build_model(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_frames=8, num_classes=4)
    checkpoint = save_model(four_class, tmp_path / "four_class.safetensors")
    split = tmp_path / "split"

    assert main(["data", "folder", str(own_videos / "my videos"), "-o", str(split), "--val", "0.34",
                 "--base", "configs/demo_motion.yaml", "--weights", str(checkpoint)]) == 0  # fmt: skip
    names = [line.split(" ", 1)[1] for line in (split / "labels.txt").read_text().splitlines()]
    assert names == ["left", "right", "up"]

    # Learning rate 0: the fine-tuned weights are exactly the initialization, so the test can see
    # what came from the 4-class checkpoint (the backbone) and what was started anew (the head).
    small = ["-o", "epochs=1", "-o", "DATASET.batch_size=4", "-o", "GRADIENT_ACCUMULATION.global_batch_size=4",
             "-o", "OPTIMIZER.learning_rate.learning_rate=0.0"]  # fmt: skip
    assert main(["train", "-c", str(split / "config.yaml"), "--validate", *small]) == 0
    log = (split / "output" / "train.log").read_text()
    assert "left at init: head.weight, head.bias" in log  # the one line saying a new head was started
    best = split / "output" / "TimeSformer_demo_best.safetensors"
    tuned, original = read_state_dict(best), read_state_dict(checkpoint)
    assert tuned["head.weight"].shape == (3, 64)
    for name, tensor in original.items():
        if not name.startswith("head."):
            assert torch.equal(tuned[name], tensor), name

    capsys.readouterr()
    report_dir = tmp_path / "report"
    assert main(["test", "-c", str(split / "config.yaml"), "-w", str(best), "--report", str(report_dir)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["classes"] == names  # labels.txt beside the lists
    val = [int(line.rsplit(" ", 1)[1]) for line in (split / "val.list").read_text().splitlines()]
    assert [row["support"] for row in report["per_class"]] == [val.count(c) for c in range(3)]
    assert sum(map(sum, report["confusion_matrix"])) == report["count"] == len(val)
    assert f"[TEST] top1: {report['top1']:.4f} top5: {report['top5']:.4f} ({len(val)} videos, 0 skipped)" in printed
    assert (report_dir / "report.html").is_file() and (report_dir / "confusion_matrix.png").is_file()

    assert main(["plot", str(split / "output"), "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_report_refuses_to_overwrite_an_input(own_videos: Path, tmp_path: Path, capsys):
    split = tmp_path / "split"
    assert main(["data", "folder", str(own_videos / "my videos"), "-o", str(split), "--base", "configs/demo_motion.yaml"]) == 0
    capsys.readouterr()
    weights = tmp_path / "report.json"  # a checkpoint where the report would go
    save_model(build_model(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_frames=8, num_classes=3), weights)
    before = weights.read_bytes()
    assert main(["test", "-c", str(split / "config.yaml"), "-w", str(weights), "--report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "report.json" in err[0] and "-w" in err[0]
    assert weights.read_bytes() == before
    assert main(["test", "-c", str(split / "config.yaml"), "-w", str(weights), "--report", str(tmp_path / "r"),
                 "--label_file", str(own_videos / "synth" / "labels.txt")]) == 1  # 4 names for 3 classes  # fmt: skip
    assert "4 class names for a model with 3 classes" in capsys.readouterr().err


def test_plot_overlays_runs_and_refuses_bad_input(tmp_path: Path, capsys):
    for run, losses in (("a", [1.0, 0.5]), ("b", [2.0, 1.0])):
        (tmp_path / run).mkdir()
        lines = [{"event": "train_epoch", "epoch": e + 1, "loss": loss, "top1": 0.5} for e, loss in enumerate(losses)]
        (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c.png")]) == 0
    assert "a 2 epochs, b 2 epochs" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    for argv, message in (
        (["plot", str(tmp_path / "nowhere")], "no metrics.jsonl"),
        (["plot", str(tmp_path / "bad"), "-o", str(tmp_path / "x.png")], "not UTF-8"),
        (["plot", str(tmp_path / "empty"), "-o", str(tmp_path / "x.png")], "no epoch"),
        (["plot", str(tmp_path / "a"), "-o", str(tmp_path / "a" / "metrics.jsonl")], "ending in .png"),
        (["plot", str(tmp_path / "a"), str(tmp_path / "a"), "-o", str(tmp_path / "x.png")], "given twice"),
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "x.png").exists()
