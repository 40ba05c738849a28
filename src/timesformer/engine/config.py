"""Configs in PaddleVideo's YAML schema, validated once into typed dataclasses.

A config is read (`load_config`), the `-o KEY.PATH=VALUE` overrides are applied to the raw
mapping, then the whole tree is checked against the dataclasses below: an unknown key, a
wrong type, a value out of range or two keys that contradict each other raise one
`ConfigError` line that names the key (and the nearest valid key). After that every value
has its declared type, so the engine reads `cfg.MODEL.backbone.embed_dim` without checks.

Field names are PaddleVideo's. Fields marked "ours" are extensions; PaddleVideo's own
`timesformer_k400_videos.yaml` and `timesformer_ucf101_videos_xpu.yaml` load unchanged.
Files named in a config (lists, pretrained weights) are checked where they are used
(`require_file`), so `test`/`export`/`predict` never need the pretrained file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml

from ..errors import ConfigError

if typing.TYPE_CHECKING:
    from ..data.pipeline import VideoPipeline


REQUIRED: Any = dataclasses.MISSING


def _range(default: Any, lo: float, hi: float | None = None) -> Any:
    """A field whose value must lie in [lo, hi] (checked at load); REQUIRED: no default."""
    return field(default=default, metadata={"min": lo, "max": hi})


# --------------------------------------------------------------------------- MODEL


@dataclass
class BackboneConfig:
    name: Literal["VisionTransformer"] = "VisionTransformer"
    pretrained: Optional[str] = None  # initializes training only (ImageNet ViT or any checkpoint)
    img_size: int = _range(224, 1)
    patch_size: int = _range(16, 1)
    in_channels: int = _range(3, 1)
    embed_dim: int = _range(768, 1)
    depth: int = _range(12, 1)
    num_heads: int = _range(12, 1)
    mlp_ratio: float = _range(4.0, 0.0)
    qkv_bias: bool = True
    epsilon: float = _range(1e-6, 0.0)  # LayerNorm eps
    num_seg: int = _range(8, 1)  # frames the model is built for (time_embed length)
    attention_type: Literal["divided_space_time", "space_only", "joint_space_time"] = "divided_space_time"
    drop_rate: float = _range(0.0, 0.0, 1.0)
    attn_drop_rate: float = _range(0.0, 0.0, 1.0)
    drop_path_rate: float = _range(0.1, 0.0, 1.0)  # PaddleVideo's default
    grad_checkpointing: bool = False  # ours: recompute blocks in backward to save memory


@dataclass
class HeadConfig:
    name: Literal["TimeSformerHead"] = "TimeSformerHead"
    num_classes: int = _range(400, 1)
    in_channels: int = _range(768, 1)  # must equal MODEL.backbone.embed_dim
    std: float = _range(0.02, 0.0)  # init std of the head weight (the model uses 0.02)


@dataclass
class RuntimeTestConfig:
    # PaddleVideo splits its 3-crop tensor along T with this; our pipeline keeps views apart.
    num_seg: int = _range(8, 1)
    avg_type: Literal["score", "prob"] = "score"  # average view logits or view softmaxes


@dataclass
class RuntimeConfig:
    test: RuntimeTestConfig = field(default_factory=RuntimeTestConfig)


@dataclass
class ModelConfig:
    framework: Literal["RecognizerTransformer"] = "RecognizerTransformer"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    runtime_cfg: RuntimeConfig = field(default_factory=RuntimeConfig)


# --------------------------------------------------------------------------- DATASET


@dataclass
class DatasetSplitConfig:
    format: Literal["VideoDataset", "FrameDataset"] = "VideoDataset"  # FrameDataset: `frame_dir num_frames label`
    data_prefix: str = ""  # joined before each path in the list file
    file_path: str = ""  # list file: `path label` per line
    suffix: str = ""  # appended to each path in the list file (UCF101 lists: '.avi')


@dataclass
class DatasetConfig:
    batch_size: int = _range(1, 1)  # per process, per micro-batch
    num_workers: int = _range(4, 0)  # DataLoader workers per process
    test_batch_size: int = _range(8, 1)
    valid_batch_size: Optional[int] = _range(None, 1)  # default: batch_size (as PaddleVideo)
    # Ours: keep every clip in memory after its first read (each DataLoader worker its own copy).
    # Only for pipelines without randomness and videos no longer than the sampling window.
    cache: bool = False
    # An absent split has empty paths: `require_file` names the key where it is used.
    train: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)
    valid: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)
    test: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)


# --------------------------------------------------------------------------- PIPELINE


@dataclass
class DecodeConfig:
    name: Literal["VideoDecoder", "FrameDecoder"] = "VideoDecoder"
    backend: Literal["pyav"] = "pyav"
    mode: Optional[Literal["train", "valid", "test"]] = None  # default: the split's name
    num_seg: int = _range(8, 1)
    sampling_rate: int = _range(32, 1)  # window = sampling_rate * num_seg / target_fps seconds
    target_fps: int = _range(30, 1)


@dataclass
class SampleConfig:
    name: Literal["Sampler"] = "Sampler"
    num_seg: int = _range(8, 1)  # must equal decode.num_seg
    seg_len: int = _range(1, 1, 1)
    valid_mode: bool = False  # no effect with linspace sampling (as in PaddleVideo)
    linspace_sample: Literal[True] = True


# Transform ops: PaddleVideo's names and arguments (`build_pipeline` maps them to ours).


@dataclass
class Normalization:
    mean: list[float]
    std: list[float]
    tensor_shape: list[int] = field(default_factory=lambda: [3, 1, 1])  # layout detail, ignored
    inplace: bool = False  # layout detail, ignored


@dataclass
class Image2Array:
    transpose: Literal[True] = True
    data_format: Literal["cthw"] = "cthw"  # the model takes [3, T, H, W]


@dataclass
class JitterScale:
    min_size: int = _range(REQUIRED, 1)  # short side drawn uniformly in [min_size, max_size]
    max_size: int = _range(REQUIRED, 1)


@dataclass
class RandomCrop:
    target_size: int = _range(REQUIRED, 1)


@dataclass
class UniformCrop:
    target_size: int = _range(REQUIRED, 1)  # 3 crops along the long side: start, end, middle
    backend: str = "cv2"  # layout detail, ignored


@dataclass
class CenterCrop:
    target_size: int = _range(REQUIRED, 1)
    do_round: bool = True  # layout detail of PaddleVideo's PIL path, ignored
    backend: str = "pillow"  # layout detail, ignored


@dataclass
class RandomFlip:
    p: float = _range(0.5, 0.0, 1.0)


TransformOp = Union[Normalization, Image2Array, JitterScale, RandomCrop, UniformCrop, CenterCrop, RandomFlip]
TRANSFORM_OPS: dict[str, type] = {op.__name__: op for op in typing.get_args(TransformOp)}


@dataclass
class PipelineSplitConfig:
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    transform: list[TransformOp] = field(default_factory=list)


@dataclass
class PipelineConfig:
    train: Optional[PipelineSplitConfig] = None
    valid: Optional[PipelineSplitConfig] = None
    test: Optional[PipelineSplitConfig] = None


# --------------------------------------------------------------------------- OPTIMIZER


@dataclass
class LearningRateConfig:
    """Schedule, in epochs (fractional within an epoch where `iter_step` is on).

    MultiStepDecay: `learning_rate * gamma ** (milestones passed)`, stepped per epoch as
    PaddleVideo. CosineAnnealingDecay: from `learning_rate` to `eta_min` over the
    epochs (the epochs after the warmup). Ours: an optional linear warmup from
    `warmup_start_lr` over `warmup_epochs` precedes either schedule.
    """

    name: Literal["MultiStepDecay", "CosineAnnealingDecay"] = "MultiStepDecay"
    learning_rate: float = _range(0.005, 0.0)  # for the global batch size
    milestones: list[int] = field(default_factory=list)
    gamma: float = _range(0.1, 0.0)
    eta_min: float = _range(0.0, 0.0)
    warmup_epochs: float = _range(0.0, 0.0)  # ours
    warmup_start_lr: float = _range(0.0, 0.0)  # ours
    iter_step: bool = False  # update the lr every optimizer step instead of every epoch


@dataclass
class WeightDecayConfig:
    # Momentum: L2 added to the gradient (PaddleVideo's L2Decay); AdamW: decoupled decay.
    name: Literal["L2"] = "L2"
    value: float = _range(0.0, 0.0)


@dataclass
class OptimizerConfig:
    name: Literal["Momentum", "AdamW"] = "Momentum"  # Momentum = SGD with momentum
    learning_rate: LearningRateConfig = field(default_factory=LearningRateConfig)
    momentum: float = _range(0.9, 0.0, 1.0)
    use_nesterov: bool = False
    beta1: float = _range(0.9, 0.0, 1.0)  # AdamW
    beta2: float = _range(0.999, 0.0, 1.0)  # AdamW
    epsilon: float = _range(1e-8, 0.0)  # AdamW
    weight_decay: WeightDecayConfig = field(default_factory=WeightDecayConfig)
    # Space-separated substrings of parameter names that get no weight decay (PaddleVideo).
    no_weight_decay_name: str = ""
    grad_clip: Optional[float] = _range(None, 0.0)  # max global grad norm; None = off


@dataclass
class GradientAccumulationConfig:
    # batch_size x world_size x accumulation steps; None = no accumulation.
    global_batch_size: Optional[int] = _range(None, 1)


@dataclass
class MetricConfig:
    name: Literal["CenterCropMetric"] = "CenterCropMetric"  # top-1/top-5 over the set


@dataclass
class InferenceConfig:
    name: Literal["TimeSformer_Inference_helper"] = "TimeSformer_Inference_helper"
    num_seg: int = _range(8, 1)
    short_size: int = _range(224, 1)
    target_size: int = _range(224, 1)
    top_k: int = _range(1, 1)  # classes `predict` prints (PaddleVideo's inference helper: 1)


# --------------------------------------------------------------------------- top level


@dataclass
class Config:
    MODEL: ModelConfig
    DATASET: DatasetConfig
    PIPELINE: PipelineConfig
    OPTIMIZER: OptimizerConfig
    epochs: int = _range(REQUIRED, 1)
    GRADIENT_ACCUMULATION: GradientAccumulationConfig = field(default_factory=GradientAccumulationConfig)
    METRIC: MetricConfig = field(default_factory=MetricConfig)
    INFERENCE: InferenceConfig = field(default_factory=InferenceConfig)
    model_name: str = "TimeSformer"
    log_interval: int = _range(10, 1)  # steps between log lines
    save_interval: int = _range(1, 1)  # epochs between checkpoints (and the last epoch)
    val_interval: int = _range(1, 1)  # epochs between validations (with --validate)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    output_dir: str = ""  # default: output/<model_name> (as PaddleVideo)
    seed: int = 0  # always seeded (PaddleVideo seeds only with --seed); `--seed` overrides
    amp: bool = False  # ours: also `--amp`
    amp_level: Literal["O1", "O2"] = "O1"
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # ours: float16 uses a grad scaler
    nonfinite_loss: Literal["stop", "skip"] = "stop"  # ours: stop training, or skip that step

    def model_config(self) -> dict:
        """The `TimeSformerConfig` fields this config describes."""
        b = self.MODEL.backbone
        return dict(
            img_size=b.img_size,
            patch_size=b.patch_size,
            in_chans=b.in_channels,
            num_classes=self.MODEL.head.num_classes,
            embed_dim=b.embed_dim,
            depth=b.depth,
            num_heads=b.num_heads,
            mlp_ratio=b.mlp_ratio,
            qkv_bias=b.qkv_bias,
            norm_eps=b.epsilon,
            num_frames=b.num_seg,
            attention_type=b.attention_type,
            drop_rate=b.drop_rate,
            attn_drop_rate=b.attn_drop_rate,
            drop_path_rate=b.drop_path_rate,
            grad_checkpointing=b.grad_checkpointing,
        )

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step so that batch x world x steps = global batch."""
        global_batch = self.GRADIENT_ACCUMULATION.global_batch_size
        per_step = self.DATASET.batch_size * world_size
        if global_batch is None:
            return 1
        if global_batch % per_step:
            raise ConfigError(
                f"GRADIENT_ACCUMULATION.global_batch_size={global_batch} is not a multiple of "
                f"DATASET.batch_size x processes = {self.DATASET.batch_size} x {world_size}"
            )
        return global_batch // per_step

    def to_dict(self) -> dict:
        """Plain data in PaddleVideo's schema (transform ops as `{OpName: {args}}`)."""
        return _to_plain(self)


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `KEY.PATH=VALUE` overrides, validate, return it typed."""
    path = _find_config(Path(path))
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (YAML) file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
    origins = {}  # dotted key set by an override -> the override's text, for error messages
    for text in overrides:
        key = _apply_override(raw, text)
        origins[re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)] = f"-o {text}"  # list items print as [i]
    return _Validator(str(path), origins).build(Config, raw, "")


def _find_config(path: Path) -> Path:
    """The config at `path`, or the copy shipped in the package (`configs/x.yaml` from any directory)."""
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parents[1] / "configs" / path.name
    if not path.is_absolute() and path.parent.name in ("configs", "") and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path}")


def require_file(path: str | os.PathLike | None, key: str) -> Path:
    """The file a config key names, or a one-line error naming the key and the path."""
    if not path:
        raise ConfigError(f"{key} is empty: it must name a file")
    if not Path(path).is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    return Path(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _apply_override(raw: dict, text: str) -> str:
    """Set `KEY.PATH=VALUE` in the raw mapping; the value is parsed as a YAML scalar."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"-o {text}: an override must look like KEY.PATH=VALUE")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        value = value_text  # e.g. a path with ': ' in it: take the text as it is
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            index = _list_index(node, part, parts[: depth + 1], text)
            if node[index] is None:
                node[index] = {}
            node = node[index]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, (dict, list)):
            raise ConfigError(f"-o {text}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node = child
    if isinstance(node, list):
        node[_list_index(node, parts[-1], parts, text)] = value
    else:
        node[parts[-1]] = value
    return key


def _list_index(node: list, part: str, parts: list[str], text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"-o {text}: {'.'.join(parts)}: no item {part} in a list of {len(node)}")
    return int(part)


class _Validator:
    """Walks the raw mapping along the dataclass tree, typing and checking every value."""

    def __init__(self, source: str, origins: dict[str, str]):
        self.source = source
        self.origins = origins

    def error(self, keys: str | tuple[str, ...], message: str) -> ConfigError:
        """The error, prefixed with the overrides that set these keys (or keys above or below
        them), else with the config file."""
        keys = (keys,) if isinstance(keys, str) else keys
        overrides = [
            override
            for set_key, override in self.origins.items()
            if any(k == set_key or k.startswith(set_key + ".") or set_key.startswith(k + ".") for k in keys)
        ]
        return ConfigError(f"{', '.join(overrides) or self.source}: {message}")

    def build(self, cls: type, raw: Any, key: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.error(key, f"{key or 'the config'} must be a section (a mapping), got {raw!r}")
        if cls is OptimizerConfig:
            raw = _expand_optimizer_shorthands(raw)
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for name, value in raw.items():
            sub = f"{key}.{name}" if key else str(name)
            if name not in known:
                raise self.error(sub, f"unknown key {sub}{_suggest(str(name), key, list(known))}")
            values[name] = self.coerce(hints[name], value, sub)
            _check_range(self, known[name], values[name], sub)
        for name, f in known.items():
            if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                sub = f"{key}.{name}" if key else name
                raise self.error(sub, f"missing key {sub}")
        obj = cls(**values)
        if cls is Config:
            _check_config(self, obj)
        return obj

    def coerce(self, tp: Any, value: Any, key: str):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Union and type(None) in args:  # Optional[X]
            if value is None:
                return None
            return self.coerce(next(a for a in args if a is not type(None)), value, key)
        if tp == list[TransformOp]:
            return self.transforms(value, key)
        if origin is Literal:
            if not any(value == a and type(value) is type(a) for a in args):
                choices = ", ".join(repr(a) for a in args)
                close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(key, f"{key} must be one of {choices}, got {value!r}{hint}")
            return value
        if origin is list:
            if not isinstance(value, (list, tuple)):
                raise self.error(key, f"{key} must be a list, got {value!r}")
            return [self.coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, key)
        if tp is bool and isinstance(value, bool):
            return value
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is float and not isinstance(value, bool):
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads `1e-6` (no dot) as a string
                try:
                    return float(value)
                except ValueError:
                    pass
        if tp is str:
            if value is None:  # `key:` or `-o key=` means the empty string
                return ""
            if isinstance(value, str):
                return value
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
        raise self.error(key, f"{key} must be {expected}, got {value!r}")

    def transforms(self, value: Any, key: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"{key} must be a list of ops like '- RandomCrop: {{target_size: 224}}', "
                             f"got {value!r}")
        ops = []
        for i, item in enumerate(value):
            sub = f"{key}[{i}]"
            if isinstance(item, str):  # `- RandomFlip` written without a colon
                item = {item: None}
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error(sub, f"{sub} must be one op like 'RandomCrop: {{target_size: 224}}', got {item!r}")
            (name, args), = item.items()
            if name not in TRANSFORM_OPS:
                close = difflib.get_close_matches(str(name), list(TRANSFORM_OPS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                known = ", ".join(TRANSFORM_OPS)
                raise self.error(sub, f"{sub}: unknown transform op {name!r}{hint}; known ops: {known}")
            ops.append(self.build(TRANSFORM_OPS[name], args, f"{sub}.{name}"))
        return ops


def _expand_optimizer_shorthands(raw: dict) -> dict:
    """PaddleVideo also writes `weight_decay: 1e-4` and `grad_clip: {name: ClipGradByGlobalNorm, value}`."""
    raw = dict(raw)
    decay = raw.get("weight_decay")
    if isinstance(decay, (int, float, str)) and not isinstance(decay, bool):
        raw["weight_decay"] = {"name": "L2", "value": decay}
    clip = raw.get("grad_clip")
    if isinstance(clip, dict) and set(clip) <= {"name", "value"} and clip.get("name") == "ClipGradByGlobalNorm":
        raw["grad_clip"] = clip.get("value")
    return raw


def _check_range(v: _Validator, f: dataclasses.Field, value: Any, key: str) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if value is None or (lo is None and hi is None):
        return
    if lo is not None and value < lo or hi is not None and value > hi:
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise v.error(key, f"{key} must be {bound}, got {value!r}")


# Every dotted key of the schema, for "did you mean" hints that look beyond the section.
def _schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append(key)
        inner = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            keys += _schema_keys(inner[0], key)
    return keys


def _suggest(name: str, section: str, siblings: list[str]) -> str:
    """" (did you mean KEY?)" for an unknown key `name` in `section`: a near name in the same
    section, else a key elsewhere whose name is near and whose whole path is nearest
    (`DATASET.test.batchsize` -> `DATASET.test_batch_size`)."""
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.75)
    if close:
        return f" (did you mean {section + '.' if section else ''}{close[0]}?)"
    full = f"{section}.{name}" if section else name
    scored = []
    for key in _schema_keys():
        leaf_ratio = difflib.SequenceMatcher(None, name, key.rsplit(".", 1)[-1]).ratio()
        if leaf_ratio >= 0.75:
            scored.append((leaf_ratio + difflib.SequenceMatcher(None, full, key).ratio(), key))
    if scored:
        return f" (did you mean {max(scored)[1]}?)"
    return f" (valid keys here: {', '.join(siblings)})"


def _check_config(v: _Validator, cfg: Config) -> None:
    """Rules that involve more than one key; then the defaults that depend on other keys."""

    def require(ok: bool, key_a: str, a: Any, rule: str, key_b: str, b: Any) -> None:
        if not ok:
            raise v.error((key_a, key_b), f"{key_a}={a} {rule} {key_b}={b}")

    bb, head = cfg.MODEL.backbone, cfg.MODEL.head
    require(head.in_channels == bb.embed_dim, "MODEL.head.in_channels", head.in_channels, "must equal",
            "MODEL.backbone.embed_dim", bb.embed_dim)  # fmt: skip
    require(bb.embed_dim % bb.num_heads == 0, "MODEL.backbone.embed_dim", bb.embed_dim, "is not divisible by",
            "MODEL.backbone.num_heads", bb.num_heads)  # fmt: skip
    require(bb.img_size % bb.patch_size == 0, "MODEL.backbone.img_size", bb.img_size, "is not divisible by",
            "MODEL.backbone.patch_size", bb.patch_size)  # fmt: skip
    for split in ("train", "valid", "test"):
        pipe = getattr(cfg.PIPELINE, split)
        if pipe is None:
            continue
        key = f"PIPELINE.{split}"
        require(pipe.sample.num_seg == pipe.decode.num_seg, f"{key}.sample.num_seg", pipe.sample.num_seg,
                "must equal", f"{key}.decode.num_seg", pipe.decode.num_seg)  # fmt: skip
        _check_transform(v, pipe.transform, f"{key}.transform")
        if pipe.decode.mode is None:
            pipe.decode.mode = split
    global_batch = cfg.GRADIENT_ACCUMULATION.global_batch_size
    if global_batch is not None:
        require(global_batch % cfg.DATASET.batch_size == 0, "GRADIENT_ACCUMULATION.global_batch_size", global_batch,
                "is not a multiple of", "DATASET.batch_size", cfg.DATASET.batch_size)  # fmt: skip
    milestones = cfg.OPTIMIZER.learning_rate.milestones
    if milestones != sorted(milestones):
        key = "OPTIMIZER.learning_rate.milestones"
        raise v.error(key, f"{key} must be increasing, got {milestones}")
    if cfg.DATASET.valid_batch_size is None:
        cfg.DATASET.valid_batch_size = cfg.DATASET.batch_size
    if not cfg.output_dir:
        cfg.output_dir = f"output/{cfg.model_name}"


# What each op sets in our pipeline. Normalization and flipping commute with scaling and
# cropping (per-channel affine maps; a mirrored crop distribution is the same), so only
# "scale before crop" is an order constraint.
_KIND = {Normalization: "normalize", Image2Array: "layout", JitterScale: "scale", RandomCrop: "crop",
         UniformCrop: "crop", CenterCrop: "crop", RandomFlip: "flip"}


def _check_transform(v: _Validator, ops: list, key: str) -> None:
    where: dict[str, int] = {}
    for i, op in enumerate(ops):
        kind = _KIND[type(op)]
        if kind in where:
            first = type(ops[where[kind]]).__name__
            raise v.error(f"{key}[{i}]", f"{key}[{i}]: {type(op).__name__} repeats the {kind} step of "
                          f"{key}[{where[kind]}] {first} (one of each)")
        where[kind] = i
    if "normalize" not in where:
        raise v.error(key, f"{key} needs a Normalization op (mean and std of the /255 pixels)")
    if "scale" not in where:
        raise v.error(key, f"{key} needs a JitterScale op (the short side the frames are resized to)")
    norm, scale = ops[where["normalize"]], ops[where["scale"]]
    for name, values in (("mean", norm.mean), ("std", norm.std)):
        if len(values) != 3 or (name == "std" and min(values) <= 0):
            raise v.error(f"{key}[{where['normalize']}]", f"{key}[{where['normalize']}].Normalization.{name} "
                          f"needs 3 values{' > 0' if name == 'std' else ''}, got {values}")
    if scale.min_size > scale.max_size:
        raise v.error(f"{key}[{where['scale']}]", f"{key}[{where['scale']}].JitterScale.min_size="
                      f"{scale.min_size} is larger than max_size={scale.max_size}")
    if "crop" in where:
        i, crop = where["crop"], ops[where["crop"]]
        if i < where["scale"]:
            raise v.error(f"{key}[{i}]", f"{key}[{i}]: {type(crop).__name__} must come after JitterScale")
        if crop.target_size > scale.min_size:
            raise v.error(f"{key}[{i}]", f"{key}[{i}].{type(crop).__name__}.target_size={crop.target_size} is "
                          f"larger than the short side {scale.min_size} of {key}[{where['scale']}].JitterScale")
    if "flip" in where and ops[where["flip"]].p not in (0.0, 0.5):
        raise v.error(f"{key}[{where['flip']}]", f"{key}[{where['flip']}].RandomFlip.p must be 0.5 (or 0: off), "
                      f"got {ops[where['flip']].p}")


def build_pipeline(cfg: Config, split: str) -> VideoPipeline:
    """The `VideoPipeline` that `PIPELINE.<split>` describes ("train", "valid" or "test")."""
    from ..data.pipeline import VideoPipeline  # torch: only where a pipeline is built

    pipe = getattr(cfg.PIPELINE, split, None) if split in ("train", "valid", "test") else None
    if pipe is None:
        raise ConfigError(f"PIPELINE.{split} is missing from the config")
    fields: dict[str, Any] = dict(
        num_seg=pipe.decode.num_seg,
        mode=pipe.decode.mode,
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
        elif isinstance(op, (RandomCrop, UniformCrop, CenterCrop)):
            crop = {RandomCrop: "random", UniformCrop: "uniform", CenterCrop: "center"}[type(op)]
            fields.update(crop=crop, crop_size=op.target_size)
        elif isinstance(op, RandomFlip):
            fields.update(flip=op.p > 0)
    return VideoPipeline(**fields)


def _to_plain(obj: Any) -> Any:
    if type(obj) in _KIND:  # a transform op
        return {type(obj).__name__: {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_to_plain(x) for x in obj]
    return obj
