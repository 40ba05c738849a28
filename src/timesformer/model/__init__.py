"""The TimeSformer model and its checkpoint formats."""

from .checkpoints import infer_config, load_model, load_weights, read_checkpoint, read_state_dict, save_model
from .timesformer import TimeSformer, TimeSformerConfig, build_model, record_attention

__all__ = [
    "TimeSformer",
    "TimeSformerConfig",
    "build_model",
    "infer_config",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "read_state_dict",
    "record_attention",
    "save_model",
]
