"""TimeSformer video classification: PaddleVideo-compatible, on PyTorch.

Public API (imported lazily so that `import timesformer` stays fast):
    load_model(path, **overrides)       any supported checkpoint -> eval-mode model
    build_model(**config)               a fresh TimeSformer
    save_model(model, path)             our .safetensors format (config in metadata)
    preprocess(video_path, mode, ...)   PaddleVideo's exact test tensor [V, 3, T, H, W]
    Predictor                           top-k prediction on video files (torch or ONNX)
    reuse_freed_memory()                glibc keeps freed memory for the next clip (the CLI's setting)
"""

__version__ = "0.1.0"

_LAZY = {
    "TimeSformer": "timesformer.model.timesformer",
    "TimeSformerConfig": "timesformer.model.timesformer",
    "build_model": "timesformer.model.timesformer",
    "record_attention": "timesformer.model.timesformer",
    "load_model": "timesformer.model.checkpoints",
    "save_model": "timesformer.model.checkpoints",
    "preprocess": "timesformer.data.pipeline",
    "explain": "timesformer.inference.explain",
    "ExplainResult": "timesformer.inference.explain",
    "Predictor": "timesformer.inference.predictor",
    "reuse_freed_memory": "timesformer.allocator",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'timesformer' has no attribute {name!r}")
