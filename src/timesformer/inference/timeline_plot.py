"""The picture of a timeline: time on x, the top classes' probabilities as curves (matplotlib)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..utils import atomic_path

MAX_CLASSES = 5  # curves per video: the classes most often top-1


def plot_timelines(timelines: Sequence, labels: Sequence[str] | None, path: str | os.PathLike) -> None:
    """One panel per video: each window's probability of the classes most often top-1, drawn
    at the window's centre, with the windows' spans shaded by their top-1 class. PNG, atomic."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'timesformer[plot]'") from None
    fig, axes = plt.subplots(len(timelines), 1, figsize=(8, 2.2 * len(timelines) + 0.6), squeeze=False, dpi=90)
    colors = plt.get_cmap("tab10").colors
    for ax, timeline in zip(axes[:, 0], timelines):
        top1 = [w.topk_class[0] for w in timeline.windows]
        classes = [c for c, _ in Counter(top1).most_common(MAX_CLASSES)]
        centres = np.array([(w.start_s + w.end_s) / 2 for w in timeline.windows])
        for i, c in enumerate(classes):
            name = labels[c] if labels else f"class {c}"
            color = colors[i % len(colors)]
            ax.plot(centres, timeline.probs[:, c], marker="o", markersize=3, color=color, label=name)
            for w in timeline.windows:
                if w.topk_class[0] == c:
                    ax.axvspan(w.start_s, w.end_s, ymin=0.0, ymax=0.06, color=color, alpha=0.8, lw=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(min(w.start_s for w in timeline.windows), max(w.end_s for w in timeline.windows))
        ax.set_ylabel("probability")
        ax.set_title(os.path.basename(timeline.video_id), fontsize=9)
        ax.legend(loc="upper right", fontsize=7, ncol=min(len(classes), 3))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s); bars at the bottom: each window's top-1 class")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:  # a failed write (disk full, permissions) must not leak the figure
        plt.close(fig)
