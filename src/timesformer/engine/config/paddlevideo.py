"""What is PaddleVideo-specific in a config: its shorthands, the keys it carries that change nothing
here, and the mapping of its transform ops onto our `VideoPipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .schema import (
    CenterCrop,
    Config,
    HeadConfig,
    JitterScale,
    MetricConfig,
    Normalization,
    RandomCrop,
    RandomFlip,
    SampleConfig,
    UniformCrop,
)

if TYPE_CHECKING:
    from ...data.pipeline import VideoPipeline

log = logging.getLogger("timesformer.config")

# The one list of fields accepted only so that PaddleVideo configs load, and ignored: (schema class,
# field) -> why it changes nothing here. `ignored_settings` names those a config sets.
IGNORED_FIELDS: dict[tuple[type, str], str] = {
    (Normalization, "tensor_shape"): "our pipeline fixes the tensor layout",
    (Normalization, "inplace"): "our pipeline fixes the tensor layout",
    (UniformCrop, "backend"): "one resize/crop implementation",
    (CenterCrop, "backend"): "one resize/crop implementation",
    (CenterCrop, "do_round"): "one resize/crop implementation",
    (SampleConfig, "valid_mode"): "no effect with linspace sampling (as in PaddleVideo)",
    (HeadConfig, "std"): "the head is initialized with std 0.02",
    (MetricConfig, "name"): "top-1 / top-5 over the set is the only metric",
    (Config, "log_level"): "the log shows every INFO line",
}
_logged: set[str] = set()


def ignored_settings(cfg: Config) -> list[str]:
    """`key=value` for every ignored field that `cfg` sets to something other than its default."""
    found: list[str] = []

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                walk(item, f"{key}[{i}].{type(item).__name__}" if dataclasses.is_dataclass(item) else f"{key}[{i}]")
            return
        if not dataclasses.is_dataclass(obj):
            return
        for f in dataclasses.fields(obj):
            value, sub = getattr(obj, f.name), f"{key}.{f.name}" if key else f.name
            if (type(obj), f.name) in IGNORED_FIELDS:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                if value != default:
                    found.append(f"{sub}={value!r}")
            else:
                walk(value, sub)

    walk(cfg, "")
    return found


def log_ignored_once(cfg: Config, source: str) -> None:
    """One INFO line naming the PaddleVideo-only settings of `source` that have no effect (once per process)."""
    settings = [s for s in ignored_settings(cfg) if s not in _logged]
    if settings:
        _logged.update(settings)
        log.info(f"{source}: PaddleVideo settings with no effect here: {', '.join(settings)}")


def expand_optimizer_shorthands(raw: dict) -> dict:
    """PaddleVideo also writes `weight_decay: 1e-4` and `grad_clip: {name: ClipGradByGlobalNorm, value}`."""
    raw = dict(raw)
    decay = raw.get("weight_decay")
    if isinstance(decay, (int, float, str)) and not isinstance(decay, bool):
        raw["weight_decay"] = {"name": "L2", "value": decay}
    clip = raw.get("grad_clip")
    if isinstance(clip, dict) and set(clip) <= {"name", "value"} and clip.get("name") == "ClipGradByGlobalNorm":
        raw["grad_clip"] = clip.get("value")
    return raw


_CROPS = {RandomCrop: "random", UniformCrop: "uniform", CenterCrop: "center"}


def build_pipeline(cfg: Config, split: str) -> VideoPipeline:
    """The `VideoPipeline` that `PIPELINE.<split>` describes ("train", "valid" or "test")."""
    from ...data.pipeline import VideoPipeline  # torch: only where a pipeline is built

    pipe = getattr(cfg.PIPELINE, split, None) if split in ("train", "valid", "test") else None
    if pipe is None:
        raise ConfigError(f"PIPELINE.{split} is missing from the config")
    fields: dict[str, Any] = dict(
        num_seg=pipe.decode.num_seg,
        mode=pipe.decode.mode or split,
        sampling_rate=pipe.decode.sampling_rate,
        target_fps=pipe.decode.target_fps,
        crop="none",
        flip=False,
    )
    for op in pipe.transform:
        if isinstance(op, Normalization):
            fields.update(mean=tuple(op.mean), std=tuple(op.std))
        elif isinstance(op, JitterScale):
            fields.update(short_side_min=op.min_size, short_side_max=op.max_size)
        elif type(op) in _CROPS:
            fields.update(crop=_CROPS[type(op)], crop_size=op.target_size)
        elif isinstance(op, RandomFlip):
            fields.update(flip=op.p > 0)
    return VideoPipeline(**fields)
