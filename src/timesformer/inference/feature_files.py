"""`DIR/features.npy` (float32 `[N, D]`) + `DIR/features.jsonl` (N records, same order), resumable.

Rows are written as they are computed, one part file per batch under `DIR/.parts/` (each
written atomically), so a crash or Ctrl-C loses at most the batch in flight. `merge` then
writes the two files, rows ordered by the input order of their video and by time within a
video, whatever process (torchrun rank) or earlier run computed them: a run with several
processes gives the same files as one process. The merge first saves what the two files
held as a part, so a crash between the two renames loses nothing either.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..utils import atomic_path, atomic_write_text, first_line

FEATURES = "features.npy"
RECORDS = "features.jsonl"
PARTS = ".parts"
RECORD_KEYS = ("video_id", "path", "start_s", "end_s")


def output_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    return out_dir / FEATURES, out_dir / RECORDS


def _key(record: dict) -> tuple:
    return record["path"], record["start_s"], record["end_s"]


class FeatureFiles:
    """The feature files of one output folder: what is done, new rows, the final merge."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"-o {self.out_dir}: exists and is not a folder")
        self.features_path, self.records_path = output_paths(self.out_dir)
        self.parts_dir = self.out_dir / PARTS

    # ------------------------------------------------------------------ reading

    def _final(self) -> tuple[np.ndarray, list[dict]] | None:
        """The two files' rows, or None when absent; None too when they disagree and parts
        hold everything (a merge stopped between its two renames)."""
        have = [p.is_file() for p in (self.features_path, self.records_path)]
        if not any(have):
            return None
        try:
            if not all(have):
                raise ValueError(f"{FEATURES if not have[0] else RECORDS} is missing")
            rows = np.load(self.features_path, allow_pickle=False)
            records = [json.loads(line) for line in self.records_path.read_text().splitlines() if line.strip()]
            if rows.ndim != 2 or rows.dtype != np.float32 or len(records) != len(rows):
                raise ValueError(f"{rows.shape[0] if rows.ndim else 0} rows for {len(records)} records")
            if not all(isinstance(r, dict) and all(k in r for k in RECORD_KEYS) for r in records):
                raise ValueError("a record lacks video_id, path, start_s or end_s")
        except (OSError, ValueError, UnicodeDecodeError) as err:
            if self.parts_dir.is_dir() and any(self.parts_dir.glob("*.npz")):
                return None
            raise UserError(
                f"-o {self.out_dir}: {FEATURES} / {RECORDS} are not a pair of feature files ({first_line(err)}); "
                "choose another folder"
            ) from None
        return rows, records

    def _parts(self) -> list[tuple[np.ndarray, list[dict]]]:
        parts = []
        for path in sorted(self.parts_dir.glob("*.npz")) if self.parts_dir.is_dir() else ():
            with np.load(path, allow_pickle=False) as part:
                parts.append((part["rows"], json.loads(str(part["records"]))))
        return parts

    def _all(self, final: tuple[np.ndarray, list[dict]] | None) -> tuple[list[np.ndarray], list[dict]]:
        """Every row written so far (parts first; then `final`, the final files' rows, not in a part)."""
        rows, records, seen = [], [], set()
        for part_rows, part_records in [*self._parts(), *([final] if final else [])]:
            for row, record in zip(part_rows, part_records):
                if _key(record) not in seen:
                    seen.add(_key(record))
                    rows.append(row)
                    records.append(record)
        return rows, records

    def done(self) -> set[str]:
        """Paths of the videos whose rows are already written."""
        return {record["path"] for record in self._all(self._final())[1]}

    # ------------------------------------------------------------------ writing

    def add(self, rows: np.ndarray, records: Sequence[dict]) -> None:
        """Save one batch's rows (atomically, in its own part file)."""
        if len(rows) != len(records):
            raise ValueError(f"{len(rows)} rows for {len(records)} records")
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.parts_dir / f"{uuid.uuid4().hex}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, rows=np.asarray(rows, np.float32), records=np.array(json.dumps(list(records))))

    def merge(self, order: Sequence[str]) -> int:
        """Write the two files from everything saved: rows of `order`'s videos in its order
        (time order within a video), after any earlier rows of videos not in it. Returns N."""
        final = self._final()
        rows, records = self._all(final)
        if not records:
            return 0
        dims = {row.shape[-1] for row in rows}
        if len(dims) > 1:
            raise UserError(f"-o {self.out_dir}: holds features of sizes {sorted(dims)} (another model's?); choose another folder")
        rank = {path: i for i, path in enumerate(order)}
        indices = sorted(range(len(records)), key=lambda i: (rank.get(records[i]["path"], -1), records[i]["start_s"]))
        matrix = np.stack([rows[i] for i in indices]).astype(np.float32)
        ordered = [{k: records[i][k] for k in RECORD_KEYS} for i in indices]
        if final is not None and self.parts_dir.is_dir():
            self.add(*final)  # the old files' rows survive a crash between the renames below
        with atomic_path(self.features_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, matrix)
        atomic_write_text(self.records_path, "".join(json.dumps(r) + "\n" for r in ordered))
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return len(ordered)
