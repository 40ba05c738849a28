"""What a run tells the user: text lines (console + `train.log`), `metrics.jsonl`, TensorBoard, tqdm.

Only the main rank writes. Log files are append-only streams: every record is one whole line,
flushed as it is written, so a killed run leaves complete lines and a resumed run continues them.
TensorBoard scalars are written when `torch.utils.tensorboard` imports (it needs the optional
`tensorboard` package); otherwise they are skipped silently.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def format_train_line(
    epoch: int, epochs: int, step: int, steps: int, loss: float, lr: float, top1: float, top5: float,
    batch_cost: float, reader_cost: float, ips: float, eta_seconds: float,
) -> str:  # fmt: skip
    """PaddleVideo's training log line (epoch and step 1-based)."""
    return (
        f"epoch:[{epoch:>3d}/{epochs:<3d}] train step:{step:<4d}/{steps:<4d} loss: {loss:.5f} lr: {lr:.6f} "
        f"top1: {top1:.5f} top5: {top5:.5f} batch_cost: {batch_cost:.5f} sec, reader_cost: {reader_cost:.5f} sec, "
        f"ips: {ips:.5f} instance/sec, eta: {format_eta(eta_seconds)}"
    )


class RunLogger:
    """Console + text log + JSON lines + optional TensorBoard, for the main rank; silent elsewhere."""

    def __init__(self, output_dir: Path | None, log_dir: Path | None = None, enabled: bool = True,
                 log_name: str = "train.log", console: bool = True,
                 listener: Callable[[str, dict], None] | None = None):  # fmt: skip
        """`console=False` keeps lines in the log file only; `listener(event, values)` sees every
        record (the demo draws its own progress bar from them)."""
        self.enabled = enabled
        self.console = console
        self.listener = listener
        self.bar: tqdm | None = None
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir else self.output_dir
        self.log_name = log_name
        self._text = self._jsonl = self._tensorboard = None

    def _open(self) -> bool:
        """Open the files at the first record, so that a run failing at set-up leaves no empty logs."""
        if self._text is None and self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._text = open(self.log_dir / self.log_name, "a", buffering=1, encoding="utf-8")
            self._jsonl = open(self.output_dir / "metrics.jsonl", "a", buffering=1, encoding="utf-8")
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self._tensorboard = SummaryWriter(log_dir=str(self.log_dir / "tensorboard"))
        return self._text is not None

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        if not self.console:
            pass
        elif self.bar is not None:
            self.bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)
        if self._open():
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._text.write(f"[{stamp}] {message}\n")

    def record(self, event: str, values: dict[str, Any], step: int | None = None) -> None:
        """One JSON line `{"event": ..., **values}`; numeric values also as TensorBoard scalars."""
        if not self.enabled:
            return
        if self.listener is not None:
            self.listener(event, values)
        if self._open():
            self._jsonl.write(json.dumps({"event": event, "time": round(time.time(), 3), **values}) + "\n")
        if self._tensorboard is not None and step is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    self._tensorboard.add_scalar(f"{event}/{key}", value, step)

    def start_bar(self, total: int, description: str, initial: int = 0) -> None:
        """A tqdm bar on an interactive terminal (stderr is a TTY); nothing in logs and pipes."""
        self.close_bar()
        if self.enabled and self.console and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True, leave=False)

    def advance_bar(self, postfix: dict[str, str] | None = None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        for stream in (self._text, self._jsonl):
            if stream:
                stream.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        self._text = self._jsonl = self._tensorboard = None
