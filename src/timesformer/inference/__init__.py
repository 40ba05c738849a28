"""The one inference core: everything that runs a trained model on videos goes through here.

    source ─► frames (whole clip: test views │ long file: windows, one pass │ stream: ring) ─►
    clips [N, 3, V*T, H, W] ─► engine (torch │ ONNX Runtime; precision auto) ─► views averaged ─►
    top-k (predict) · embeddings (features) · per-window top-k (timeline) · live predictions

Modules: `spec` (what a model expects), `views` (view layout and averaging), `inputs`
(which videos an input names), `labels`, `loading` (checked model from weights), `engines`,
`decode` (decoding ahead of the model), `windows` (long videos), `stream` (live sources),
`predictor` (`Predictor`, the Python API the commands and the server call). The training
engine is never imported here.
"""

from .predictor import Prediction, Predictor, Timeline, WindowPrediction
from .spec import InferenceSpec
from .views import MultiViewModel, average_views, stack_views

__all__ = [
    "InferenceSpec", "MultiViewModel", "Prediction", "Predictor", "Timeline", "WindowPrediction",
    "average_views", "stack_views",
]  # fmt: skip
