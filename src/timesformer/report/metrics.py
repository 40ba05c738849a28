"""The numbers of an evaluation report, from per-video labels and scores (pure functions, numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """`[C, C]` int64 counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """Name, support, precision, recall, F1 per class (0 where undefined, as scikit-learn's default)."""
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    rows = []
    for c, name in enumerate(class_names):
        precision = true_positives[c] / predicted[c] if predicted[c] else 0.0
        recall = true_positives[c] / support[c] if support[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"id": c, "name": name, "support": int(support[c]), "precision": float(precision),
                     "recall": float(recall), "f1": float(f1)})  # fmt: skip
    return rows


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def build_report(
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str],
    skipped: Sequence[tuple[str, str]] = (),
    scores_are_probabilities: bool = False,
    max_mistakes: int = 50,
) -> dict:
    """Everything `report.json` holds, from `labels [N]`, `scores [N, C]` (logits, or probabilities
    when `scores_are_probabilities`), class names, video paths and the (path, reason) of skipped videos.

    Mistakes are ordered by the probability given to the wrong prediction, most confident first.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = len(class_names)
    if scores.ndim != 2 or scores.shape != (len(labels), num_classes) or len(paths) != len(labels):
        raise ValueError(f"report: {len(labels)} labels, {len(paths)} paths, scores {scores.shape}, {num_classes} class names")
    probabilities = scores if scores_are_probabilities else softmax(scores) if len(scores) else scores
    predictions = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    k = min(5, num_classes)
    top_k = np.argsort(-scores, axis=1, kind="stable")[:, :k] if len(scores) else np.zeros((0, k), dtype=np.int64)
    count = len(labels)
    matrix = confusion_matrix(labels, predictions, num_classes)

    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")][:max_mistakes]
    mistakes = [
        {"path": paths[i], "true": class_names[labels[i]], "predicted": class_names[predictions[i]],
         "score": float(probabilities[i, predictions[i]])}
        for i in order
    ]  # fmt: skip
    return {
        "count": count,
        "top1": float((predictions == labels).mean()) if count else 0.0,
        "top5": float((top_k == labels[:, None]).any(axis=1).mean()) if count else 0.0,
        "classes": list(class_names),
        "per_class": per_class_metrics(matrix, class_names),
        "confusion_matrix": matrix.tolist(),
        "mistakes": mistakes,
        "skipped": [{"path": str(p), "reason": str(r)} for p, r in skipped],
    }
