"""Training state on disk: file names, atomic save, and finding where to resume.

Each saved point is a pair written in this order, each atomically:
  `<model_name>_epoch_<EEEEE>.safetensors`  the weights (our format, loads with `load_model`)
  `<model_name>_epoch_<EEEEE>.state.pt`     optimizer, loss scaler, RNG, progress, best metric,
                                            and the sha256 of the weights it belongs with
An interrupted run (SIGTERM/SIGINT) saves the pair `<model_name>_interrupted.*` mid-epoch.

A pair is one unit: the state names its weights file and records its hash. A crash between the two
writes (a re-saved weights file beside an older state) leaves a pair whose hash does not match;
`find_resume_point` then falls back to the newest consistent pair and says so.

State files hold only tensors, numbers, strings, lists and dicts, and load with
`torch.load(weights_only=True)`: nothing in them can run code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..utils import atomic_path, first_line, sha256_file

STATE_VERSION = 2  # 2: records the weights' sha256
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"

# Every field a state must hold, with its type (None allowed where the tuple says so).
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "epochs_done": (int,), "steps_done": (int,), "seed": (int,), "global_batch_size": (int,),
    "best_top1": (float, type(None)), "weights": (str,), "weights_sha256": (str, type(None)),
    "optimizer": (dict,), "scaler": (dict,), "rng": (dict,),
}  # fmt: skip


def epoch_weights_path(output_dir: Path, model_name: str, epoch: int) -> Path:
    """`<model_name>_epoch_<EEEEE>.safetensors` for the 1-based epoch just finished."""
    return Path(output_dir) / f"{model_name}_epoch_{epoch:05d}{WEIGHTS_SUFFIX}"


def best_weights_path(output_dir: Path, model_name: str) -> Path:
    return Path(output_dir) / f"{model_name}_best{WEIGHTS_SUFFIX}"


def interrupted_weights_path(output_dir: Path, model_name: str) -> Path:
    return Path(output_dir) / f"{model_name}_interrupted{WEIGHTS_SUFFIX}"


def is_run_output(path: Path, model_name: str) -> bool:
    """True for a file name a run of `model_name` writes in its output folder (or log folder)."""
    name = Path(path).name
    checkpoint = re.fullmatch(re.escape(model_name) + r"_(epoch_\d{5,}|best|interrupted)(\.safetensors|\.state\.pt)", name)
    return bool(checkpoint) or name in ("train.log", "metrics.jsonl")


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
    """A checked training state, or `CheckpointError` in one line naming the file and what is wrong."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # IndexError/KeyError: torch's weights-only unpickler on bytes that are no pickle.
    except (OSError, RuntimeError, EOFError, ValueError, IndexError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path}: not a readable training state ({type(err).__name__}: {first_line(err, 160)})") from None
    if not isinstance(state, dict) or "version" not in state:
        raise CheckpointError(f"{path}: not a timesformer training state")
    if state["version"] == 1:  # written before pairs carried a hash: resumable, but unverified
        state.setdefault("weights_sha256", None)
    elif state["version"] != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state['version']!r}; this version reads 1 and {STATE_VERSION}")
    for name, types in STATE_FIELDS.items():
        if name not in state:
            raise CheckpointError(f"{path}: not a complete training state (no {name!r})")
        if not isinstance(state[name], types) or isinstance(state[name], bool):
            raise CheckpointError(f"{path}: training state field {name!r} is a {type(state[name]).__name__}")
    if min(state["epochs_done"], state["steps_done"], state["seed"]) < 0 or state["global_batch_size"] < 1:
        raise CheckpointError(f"{path}: training state holds a negative epoch, step, seed or batch size")
    if Path(state["weights"]).name != state["weights"] or not state["weights"].endswith(WEIGHTS_SUFFIX):
        raise CheckpointError(f"{path}: training state names weights {state['weights'][:80]!r}, not a file beside it")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise CheckpointError(f"{path}: training state has no torch RNG state")
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


def find_resume_point(output_dir: Path, model_name: str, notes: list[str] | None = None) -> ResumePoint | None:
    """The most advanced consistent saved pair in `output_dir`, or None when there is none.

    A pair that cannot be used (unreadable state, missing weights, weights whose hash differs from
    the one the state recorded) is passed over; `notes` gets one line for each.
    """
    output_dir = Path(output_dir)
    notes = [] if notes is None else notes
    pattern = re.compile(re.escape(model_name) + r"_epoch_(\d{5,})" + re.escape(STATE_SUFFIX) + "$")
    candidates: list[tuple[tuple[int, int], Path]] = []
    for path in output_dir.glob(f"{model_name}_epoch_*{STATE_SUFFIX}"):
        match = pattern.match(path.name)
        if match:
            candidates.append(((int(match.group(1)), 0), path))
    interrupted = state_path_for(interrupted_weights_path(output_dir, model_name))
    states: dict[Path, dict] = {}
    if interrupted.exists():
        try:
            states[interrupted] = load_state(interrupted)
            candidates.append(((states[interrupted]["epochs_done"], states[interrupted]["steps_done"]), interrupted))
        except CheckpointError as err:
            notes.append(f"passed over {err}")
    for _, state_file in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            state = states.get(state_file) or load_state(state_file)
        except CheckpointError as err:
            notes.append(f"passed over {err}")
            continue
        weights = output_dir / state["weights"]
        if not weights.is_file():
            notes.append(f"passed over {state_file}: its weights {weights.name} are missing")
        elif state["weights_sha256"] is None:
            notes.append(f"{state_file} records no hash of its weights (an older timesformer wrote it): "
                         f"resuming from it unverified")  # fmt: skip
            return ResumePoint(weights, state_file, state)
        elif sha256_file(weights) != state["weights_sha256"]:
            notes.append(f"passed over {state_file}: {weights.name} is not the file it was saved with "
                         f"(sha256 differs; a crash between the two writes)")  # fmt: skip
        else:
            return ResumePoint(weights, state_file, state)
    return None
