"""PNG figures: the row-normalized confusion matrix and training curves (matplotlib, optional)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..utils import atomic_path

MAX_MATRIX_CLASSES = 100  # beyond this, names are unreadable: show the most-confused classes


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'timesformer[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def most_confused(matrix: np.ndarray, limit: int) -> np.ndarray:
    """Indices (in label order) of the `limit` classes with the most errors, made or received."""
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    chosen = np.argsort(-errors, kind="stable")[:limit]
    return np.sort(chosen)


def confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], max_classes: int = MAX_MATRIX_CLASSES) -> bytes:
    """The confusion matrix normalized per row (true class), names on both axes, as PNG bytes."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.int64)
    shown = np.arange(len(class_names))
    title = "confusion matrix (rows: true class, normalized per row)"
    if len(shown) > max_classes:
        shown = most_confused(matrix, max_classes)
        title = f"the {max_classes} most-confused of {len(class_names)} classes (rows normalized)"
    counts = matrix[np.ix_(shown, shown)]
    support = matrix[shown].sum(axis=1, keepdims=True)
    normalized = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    k = len(shown)
    side = min(22.0, max(4.5, 0.16 * k + 2.5))
    font = max(5.5, min(10.0, 380.0 / max(k, 1)))  # 5.5 pt fits a 0.16 inch row
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    names = [class_names[i] for i in shown]
    ax.set_xticks(range(k), names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), names, fontsize=font)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if k <= 20:  # room for the numbers
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{normalized[i, j]:.2f}", ha="center", va="center", fontsize=font, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _png_bytes(fig, plt)


def curves_png(runs: dict[str, list[dict]]) -> bytes:
    """Loss, learning rate, train and validation top-1 per epoch; one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax_loss, ax_lr, ax_top1 = axes
    for name, curve in runs.items():
        epochs = [row["epoch"] for row in curve]
        ax_loss.plot(epochs, [row.get("train_loss", np.nan) for row in curve], marker="o", label=name)
        ax_lr.plot(epochs, [row.get("lr", np.nan) for row in curve], marker="o", label=name)
        line = ax_top1.plot(epochs, [row.get("val_top1", np.nan) for row in curve], marker="o", label=f"{name} val")
        ax_top1.plot(epochs, [row.get("train_top1", np.nan) for row in curve], linestyle="--",
                     color=line[0].get_color(), label=f"{name} train")  # fmt: skip
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (end of epoch)")
    ax_top1.set(xlabel="epoch", ylabel="top-1", ylim=(0, 1.02), title="top-1 (solid: validation, dashed: train)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig, plt)


def _png_bytes(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_png(data: bytes, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
