"""Evaluation reports and training curves a person can read at a glance.

One report dict (`build_report`, pure numpy) is written as `report.json`, `per_class.csv`,
`confusion_matrix.png` and a self-contained `report.html` (`write_report`).
"""

from __future__ import annotations

import csv
import io
import json
from importlib.util import find_spec
from pathlib import Path

from ..utils import atomic_write_text
from .metrics import build_report, confusion_matrix, per_class_metrics

REPORT_FILES = ("report.json", "per_class.csv", "confusion_matrix.png", "report.html")

__all__ = ["REPORT_FILES", "build_report", "confusion_matrix", "per_class_metrics", "per_class_csv", "report_from_eval", "write_report"]


def report_from_eval(result, class_names: list[str], avg_type: str = "score") -> dict:
    """`build_report` of an `engine.evaluate.EvalResult` (its per-video labels, scores and failures)."""
    skipped = [(path, reason) for _, path, reason in result.failed]
    return build_report(result.labels, result.scores, class_names, result.paths, skipped, avg_type == "prob")


def per_class_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "class", "support", "precision", "recall", "f1"])
    for row in report["per_class"]:
        writer.writerow([row["id"], row["name"], row["support"], f"{row['precision']:.6f}", f"{row['recall']:.6f}",
                         f"{row['f1']:.6f}"])  # fmt: skip
    return buffer.getvalue()


def write_report(report: dict, out_dir: str | Path, title: str = "Evaluation report", subtitle: str = "") -> list[Path]:
    """Write the four report files into `out_dir` (each atomically); the PNG and its image in the
    page need matplotlib and are left out without it. Returns the files written."""
    from .html import render_html
    from .plots import confusion_png, write_png

    out_dir = Path(out_dir)
    written = [out_dir / "report.json", out_dir / "per_class.csv"]
    atomic_write_text(written[0], json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(written[1], per_class_csv(report))
    png = confusion_png(report["confusion_matrix"], report["classes"]) if find_spec("matplotlib") else None
    if png is not None:
        write_png(png, out_dir / "confusion_matrix.png")
        written.append(out_dir / "confusion_matrix.png")
    atomic_write_text(out_dir / "report.html", render_html(report, png, title, subtitle))
    written.append(out_dir / "report.html")
    return written
