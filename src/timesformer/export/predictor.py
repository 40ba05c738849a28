"""The names `Predictor` and its parts had before the inference core moved to
`timesformer.inference`; kept so that existing code and the README keep working."""

from __future__ import annotations

from ..inference.engines import OnnxEngine, TorchEngine
from ..inference.inputs import LIST_EXTENSIONS, list_videos
from ..inference.labels import default_labels
from ..inference.loading import CHECKED_FIELDS, load_checked_model
from ..inference.predictor import Prediction, Predictor, Timeline, WindowPrediction, softmax, top_k
from ..inference.spec import INPUT_NAME, OUTPUT_NAME, SPEC_SUFFIX, InferenceSpec
from ..inference.views import MultiViewModel, average_views, stack_views

__all__ = [
    "CHECKED_FIELDS", "INPUT_NAME", "LIST_EXTENSIONS", "OUTPUT_NAME", "SPEC_SUFFIX", "InferenceSpec",
    "MultiViewModel", "OnnxEngine", "Prediction", "Predictor", "Timeline", "TorchEngine", "WindowPrediction",
    "average_views", "default_labels", "list_videos", "load_checked_model", "softmax", "stack_views", "top_k",
]  # fmt: skip
