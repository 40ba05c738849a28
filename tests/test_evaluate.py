"""`timesformer test`: 3-view top-1 / top-5 equal to a direct computation from the model's logits,
broken videos named and skipped (exit 0), and the same numbers from 2 torchrun processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from timesformer.cli import main
from timesformer.data.synth import write_motion_dataset
from timesformer.engine.config import build_pipeline, load_config
from timesformer.model.checkpoints import load_model, save_model
from timesformer.model.timesformer import build_model

from test_train import one_thread, tiny_config  # noqa: F401 (one_thread: autouse fixture)

CLASSES = 10  # more than 5, so that top-5 is not trivially 1
BROKEN = ("garbage.mp4", "missing.mp4", "text.avi")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    write_motion_dataset(root, train=4, val=10, frames=4, size=16, seed=1, workers=1, progress=False)
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "text.avi").write_text("not a video\n")
    good = (root / "val.list").read_text().splitlines()
    # Labels spread over 10 classes; two broken entries in the middle.
    lines = [f"{line.rsplit(' ', 1)[0]} {i % CLASSES}" for i, line in enumerate(good)]
    lines[3:3] = [f"{root / 'garbage.mp4'} 1", f"{root / 'missing.mp4'} 2", f"{root / 'text.avi'} 3"]
    (root / "test.list").write_text("\n".join(lines) + "\n")
    cfg = tiny_config(root)
    cfg["MODEL"]["head"]["num_classes"] = CLASSES
    cfg["DATASET"]["test"]["file_path"] = str(root / "test.list")
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    model = build_model(**load_config(root / "tiny.yaml").model_config())
    with torch.no_grad():
        model.head.weight.mul_(200.0)  # spread the scores so that classes differ between videos
    save_model(model, root / "model.safetensors")
    return root


def direct_metrics(root: Path, avg_type: str) -> tuple[float, float, int]:
    """Top-1 / top-5 straight from the model on each readable video's 3 views (numpy top-k)."""
    cfg = load_config(root / "tiny.yaml")
    pipeline = build_pipeline(cfg, "test")
    model = load_model(root / "model.safetensors")
    hits1 = hits5 = count = 0
    for line in (root / "test.list").read_text().splitlines():
        path, label = line.rsplit(" ", 1)
        if path.endswith(BROKEN):
            continue
        views = pipeline(path)
        assert views.shape[0] == 3
        with torch.no_grad():
            logits = np.stack([model(view[None])[0].numpy() for view in views]).astype(np.float64)
        if avg_type == "prob":
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            logits = exp / exp.sum(axis=1, keepdims=True)
        ranked = np.argsort(-logits.mean(axis=0))
        hits1 += int(ranked[0] == int(label))
        hits5 += int(int(label) in ranked[:5])
        count += 1
    return hits1 / count, hits5 / count, count


def parse_final_line(text: str) -> tuple[float, float, int, int]:
    match = re.search(r"\[TEST\] top1: ([0-9.]+) top5: ([0-9.]+) \((\d+) videos, (\d+) skipped\)", text)
    assert match, text
    return float(match[1]), float(match[2]), int(match[3]), int(match[4])


@pytest.mark.parametrize("avg_type", ["score", "prob"])
def test_metrics_equal_a_direct_computation(setup, avg_type, capsys):
    code = main(["test", "-c", str(setup / "tiny.yaml"), "-w", str(setup / "model.safetensors"),
                 "-o", f"MODEL.runtime_cfg.test.avg_type={avg_type}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    top1, top5, count, skipped = parse_final_line(out)
    expected1, expected5, expected_count = direct_metrics(setup, avg_type)
    assert (count, skipped) == (expected_count, 3) == (10, 3)
    assert top1 == pytest.approx(expected1, abs=5e-5) and top5 == pytest.approx(expected5, abs=5e-5)
    assert 0 < top5 < 1 or top1 < top5  # the check is not trivial
    for name, reason in (("garbage.mp4", "cannot decode"), ("missing.mp4", "not found"), ("text.avi", "")):
        assert re.search(rf"skipped \S*{name}: .*{reason}", out), out
    assert "Traceback" not in out


def test_two_processes_count_every_video_once(setup):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "timesformer", "test", "-c", str(setup / "tiny.yaml"), "-w", str(setup / "model.safetensors")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[TEST] top1") == 1  # only rank 0 reports
    top1, top5, count, skipped = parse_final_line(done.stdout)
    expected1, expected5, _ = direct_metrics(setup, "score")
    assert (count, skipped) == (10, 3)
    assert top1 == pytest.approx(expected1, abs=5e-5) and top5 == pytest.approx(expected5, abs=5e-5)


EVAL_SCRIPT = """
import sys, numpy as np
from timesformer.engine import distributed
from timesformer.engine.config import load_config
from timesformer.engine.evaluate import run_test
from timesformer.engine.logging import RunLogger
ctx = distributed.setup("cpu")
r = run_test(load_config(sys.argv[1]), sys.argv[2], ctx, RunLogger(None, enabled=False))
if ctx.is_main:
    np.savez(sys.argv[3], indices=r.indices, labels=r.labels, scores=r.scores, paths=np.array(r.paths),
             failed=np.array([f"{i}|{p}|{why}" for i, p, why in r.failed]), top=np.array([r.top1, r.top5, r.count]))
distributed.teardown(ctx)
"""


def test_per_video_results_are_gathered_exactly_under_torchrun(setup, tmp_path):
    """indices / paths / labels / scores / failed: one row per readable video, sorted by index, the
    same from 2 torchrun processes as from one, and matching the list file and the model."""
    script = tmp_path / "eval.py"
    script.write_text(EVAL_SCRIPT)
    args = [str(script), str(setup / "tiny.yaml"), str(setup / "model.safetensors")]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one.npz")], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *args, str(tmp_path / "two.npz")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    lines = [line.rsplit(" ", 1) for line in (setup / "test.list").read_text().splitlines()]
    readable = [i for i, (path, _) in enumerate(lines) if not path.endswith(BROKEN)]
    for r in (a, b):
        assert r["indices"].tolist() == readable  # each readable video once, by index
        assert r["paths"].tolist() == [lines[i][0] for i in readable]
        assert r["labels"].tolist() == [int(lines[i][1]) for i in readable]
        assert r["scores"].shape == (10, CLASSES) and r["scores"].dtype == np.float32
        assert [f.split("|")[0] for f in r["failed"]] == ["3", "4", "5"]
        # top-1 is the argmax of the returned scores: they are the ones that were ranked
        assert r["top"][0] == pytest.approx(np.mean(r["scores"].argmax(1) == r["labels"]))
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-5)
    assert a["failed"].tolist() == b["failed"].tolist()
    assert np.ptp(a["scores"], axis=0).max() > 0.1  # videos score differently: the row order is checked too
