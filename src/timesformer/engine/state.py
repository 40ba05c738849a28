"""Training state on disk: file names, atomic save, and finding where to resume.

Each saved point is a pair written in this order, each atomically:
  `<model_name>_epoch_<EEEEE>.safetensors`  the weights (our format, loads with `load_model`)
  `<model_name>_epoch_<EEEEE>.state.pt`     optimizer, loss scaler, RNG, progress, best metric
A state file exists only once its weights are complete, so the state file marks a complete pair.
An interrupted run (SIGTERM/SIGINT) saves the pair `<model_name>_interrupted.*` mid-epoch.

State files hold only tensors, numbers, strings, lists and dicts, and load with
`torch.load(weights_only=True)`: nothing in them can run code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..utils import atomic_path

STATE_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


def epoch_weights_path(output_dir: Path, model_name: str, epoch: int) -> Path:
    """`<model_name>_epoch_<EEEEE>.safetensors` for the 1-based epoch just finished."""
    return Path(output_dir) / f"{model_name}_epoch_{epoch:05d}{WEIGHTS_SUFFIX}"


def best_weights_path(output_dir: Path, model_name: str) -> Path:
    return Path(output_dir) / f"{model_name}_best{WEIGHTS_SUFFIX}"


def interrupted_weights_path(output_dir: Path, model_name: str) -> Path:
    return Path(output_dir) / f"{model_name}_interrupted{WEIGHTS_SUFFIX}"


def state_path_for(weights_path: Path) -> Path:
    """The training-state file that sits beside a weights file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name[: -len(WEIGHTS_SUFFIX)] + STATE_SUFFIX)


def capture_rng() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when present)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a training state atomically (after its weights file, see the module docstring)."""
    with atomic_path(path) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)


def load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it, in one line
        raise CheckpointError(f"{path}: not a readable training state ({type(err).__name__}: {err})".splitlines()[0])
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: not a timesformer training state (version {STATE_VERSION} expected)")
    return state


@dataclass
class ResumePoint:
    weights: Path
    state_file: Path
    state: dict[str, Any]

    @property
    def progress(self) -> tuple[int, int]:
        """(epochs finished, optimizer steps done in the next epoch)."""
        return self.state["epochs_done"], self.state["steps_done"]


def find_resume_point(output_dir: Path, model_name: str) -> ResumePoint | None:
    """The most advanced complete saved point in `output_dir`, or None when there is none."""
    output_dir = Path(output_dir)
    pattern = re.compile(re.escape(model_name) + r"_epoch_(\d{5,})" + re.escape(STATE_SUFFIX) + "$")
    candidates: list[tuple[tuple[int, int], Path]] = []
    for path in output_dir.glob(f"{model_name}_epoch_*{STATE_SUFFIX}"):
        match = pattern.match(path.name)
        if match:
            candidates.append(((int(match.group(1)), 0), path))
    interrupted = state_path_for(interrupted_weights_path(output_dir, model_name))
    if interrupted.exists():
        state = load_state(interrupted)
        candidates.append(((state["epochs_done"], state["steps_done"]), interrupted))
    for _, state_file in sorted(candidates, key=lambda c: c[0], reverse=True):
        state = load_state(state_file)
        weights = output_dir / state["weights"]
        if weights.exists():
            return ResumePoint(weights, state_file, state)
    return None
