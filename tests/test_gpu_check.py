"""benchmarks/gpu_check.sh: its CPU-checkable steps run here (`--dry-run`), so that the first
GPU lent does not meet a script that was never run. The full dry run (training, torchrun,
ONNX) takes minutes; the suite runs the parity step and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # The interpreter running the tests, wherever its environment lives (not only the repo's .venv).
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_dry_run_parity_writes_its_json(tmp_path):
    done = run("--dry-run", "--steps", "parity", "--out", str(tmp_path / "check.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "check.json").read_text())
    parity = report["steps"]["parity"]
    assert report["ok"] and parity["ok"] and set(parity["modes"]) == {"fp32", "bf16"}
    assert parity["modes"]["fp32"]["relative_error"] == 0.0  # the same CPU computation
    assert 0 < parity["modes"]["bf16"]["relative_error"] <= parity["modes"]["bf16"]["tolerance"]  # bf16 really ran


def test_unknown_step_and_missing_gpu_are_refused(tmp_path):
    done = run("--dry-run", "--steps", "parity,warp", cwd=tmp_path)
    assert done.returncode == 2 and "--steps parity,warp" in done.stderr
    if not torch.cuda.is_available():
        done = run("--steps", "parity", cwd=tmp_path)
        assert done.returncode == 1 and "--dry-run" in done.stderr and not (tmp_path / "gpu_check.json").exists()
