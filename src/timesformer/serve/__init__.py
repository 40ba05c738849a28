"""`timesformer serve`: an HTTP inference server with a web page, batching, limits and metrics.

    from timesformer.serve import ModelService, ServeOptions, create_app
    app = create_app(ModelService.load(weights="model.safetensors"), ServeOptions(max_batch=8))

Needs the `serve` extra (FastAPI, uvicorn, python-multipart).
"""

from .app import ServeOptions, create_app
from .model_service import ModelService, VideoLimits

__all__ = ["ModelService", "ServeOptions", "VideoLimits", "create_app"]
