"""Shared test fixtures: the read-only `../shared` material (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TIMESFORMER_SHARED", ROOT.parent / "shared"))
FIXTURE = SHARED / "fixtures" / "paddlevideo_tiny"
EXAMPLE_AVI = SHARED / "data" / "example.avi"

# Two cores: keep each test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared exists only in the project's workspace, not in a user's clone)")
    return path


@pytest.fixture
def paddle_fixture() -> Path:
    """PaddleVideo's tiny TimeSformer (embed 96, depth 2, heads 4) and its reference outputs."""
    return _require(FIXTURE)


@pytest.fixture
def example_avi() -> Path:
    return _require(EXAMPLE_AVI)
