"""Training curves from a run's `metrics.jsonl`: loss, learning rate, train and validation top-1 per epoch."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


def read_curve(metrics_file: Path) -> list[dict]:
    """Per epoch: `epoch`, and when recorded `train_loss`, `train_top1`, `lr` (its last logged value in
    the epoch) and `val_top1`. A resumed run's repeated records replace the earlier ones."""
    metrics_file = Path(metrics_file)
    epochs: dict[int, dict] = {}
    if not metrics_file.is_file():
        return []
    try:
        lines = metrics_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{metrics_file}: not a metrics.jsonl file (not UTF-8 text)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            event = record.get("event")
            if event not in ("train", "train_epoch", "valid"):
                continue
            row = epochs.setdefault(int(record["epoch"]), {"epoch": int(record["epoch"])})
            if event == "train":
                row["lr"] = float(record["lr"])
            elif event == "train_epoch":
                row.update(train_loss=float(record["loss"]), train_top1=float(record["top1"]))
            else:
                row["val_top1"] = float(record["top1"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{metrics_file} line {number}: not a metrics record: {line[:80]!r}") from None
    return [epochs[e] for e in sorted(epochs)]
