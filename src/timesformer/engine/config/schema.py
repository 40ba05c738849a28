"""The config schema: PaddleVideo's YAML sections as typed dataclasses, with each field's range.

Field names are PaddleVideo's; fields marked "ours" are extensions. A field's metadata may carry
`min` / `max` (checked by `validate`); defaults live here and nowhere else. Fields that PaddleVideo
configs carry but that change nothing here are listed in `paddlevideo.IGNORED_FIELDS`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ...errors import ConfigError

REQUIRED: Any = dataclasses.MISSING


def _range(default: Any, lo: float, hi: float | None = None) -> Any:
    """A field whose value must lie in [lo, hi] (checked at load); REQUIRED: no default."""
    return field(default=default, metadata={"min": lo, "max": hi})


# Upper bounds that no real run reaches but that stop a file from asking for absurd allocations.
MAX_SIDE = 8192  # pixels
MAX_WIDTH = 65536  # channels
MAX_COUNT = 4096  # layers, heads, frames
MAX_BATCH = 1 << 20


# --------------------------------------------------------------------------- MODEL


@dataclass
class BackboneConfig:
    name: Literal["VisionTransformer"] = "VisionTransformer"
    pretrained: Optional[str] = None  # initializes training only (ImageNet ViT or any checkpoint)
    img_size: int = _range(224, 1, MAX_SIDE)
    patch_size: int = _range(16, 1, MAX_SIDE)
    in_channels: int = _range(3, 1, 64)
    embed_dim: int = _range(768, 1, MAX_WIDTH)
    depth: int = _range(12, 1, MAX_COUNT)
    num_heads: int = _range(12, 1, MAX_COUNT)
    mlp_ratio: float = _range(4.0, 0.0, 64.0)
    qkv_bias: bool = True
    epsilon: float = _range(1e-6, 0.0, 1.0)  # LayerNorm eps
    num_seg: int = _range(8, 1, MAX_COUNT)  # frames the model is built for (time_embed length)
    attention_type: Literal["divided_space_time", "space_only", "joint_space_time"] = "divided_space_time"
    drop_rate: float = _range(0.0, 0.0, 1.0)
    attn_drop_rate: float = _range(0.0, 0.0, 1.0)
    drop_path_rate: float = _range(0.1, 0.0, 1.0)  # PaddleVideo's default
    grad_checkpointing: bool = False  # ours: recompute blocks in backward to save memory


@dataclass
class HeadConfig:
    name: Literal["TimeSformerHead"] = "TimeSformerHead"
    num_classes: int = _range(400, 1, 1 << 20)
    in_channels: int = _range(768, 1, MAX_WIDTH)  # must equal MODEL.backbone.embed_dim
    std: float = _range(0.02, 0.0)  # PaddleVideo's head init; the model uses 0.02 (ignored)
    # Ours: "balanced" weighs each class's loss by n / (k * count) over the training list (k classes).
    loss_weight: Literal["none", "balanced"] = "none"


@dataclass
class RuntimeTestConfig:
    # PaddleVideo splits its 3-crop tensor along T with this; our pipeline keeps views apart.
    num_seg: int = _range(8, 1, MAX_COUNT)
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
    batch_size: int = _range(1, 1, MAX_BATCH)  # per process, per micro-batch
    num_workers: int = _range(4, 0, 1024)  # DataLoader workers per process
    test_batch_size: int = _range(8, 1, MAX_BATCH)
    valid_batch_size: Optional[int] = _range(None, 1, MAX_BATCH)  # None: batch_size (`valid_batch`)
    # Ours: keep every clip in memory after its first read (each DataLoader worker its own copy).
    # Only for pipelines without randomness and videos no longer than the sampling window.
    cache: bool = False
    # Ours: "shuffle" is one permutation per epoch; "balanced" draws every class equally often
    # (with replacement, as many samples per epoch as the list holds).
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    # An absent split has empty paths: `require_file` names the key where it is used.
    train: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)
    valid: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)
    test: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)

    @property
    def valid_batch(self) -> int:
        """Validation batch size: `valid_batch_size`, else `batch_size` (as PaddleVideo)."""
        return self.valid_batch_size if self.valid_batch_size is not None else self.batch_size


# --------------------------------------------------------------------------- PIPELINE


@dataclass
class DecodeConfig:
    name: Literal["VideoDecoder", "FrameDecoder"] = "VideoDecoder"
    backend: Literal["pyav"] = "pyav"
    mode: Optional[Literal["train", "valid", "test"]] = None  # None: the split's name
    num_seg: int = _range(8, 1, MAX_COUNT)
    sampling_rate: int = _range(32, 1, 1 << 16)  # window = sampling_rate * num_seg / target_fps seconds
    target_fps: int = _range(30, 1, 1000)


@dataclass
class SampleConfig:
    name: Literal["Sampler"] = "Sampler"
    num_seg: int = _range(8, 1, MAX_COUNT)  # must equal decode.num_seg
    seg_len: int = _range(1, 1, 1)
    valid_mode: bool = False
    linspace_sample: Literal[True] = True


# Transform ops: PaddleVideo's names and arguments (`build_pipeline` maps them to ours).


@dataclass
class Normalization:
    mean: list[float]
    std: list[float]
    tensor_shape: list[int] = field(default_factory=lambda: [3, 1, 1])
    inplace: bool = False


@dataclass
class Image2Array:
    transpose: Literal[True] = True
    data_format: Literal["cthw"] = "cthw"  # the model takes [3, T, H, W]


@dataclass
class JitterScale:
    min_size: int = _range(REQUIRED, 1, MAX_SIDE)  # short side drawn uniformly in [min_size, max_size]
    max_size: int = _range(REQUIRED, 1, MAX_SIDE)


@dataclass
class RandomCrop:
    target_size: int = _range(REQUIRED, 1, MAX_SIDE)


@dataclass
class UniformCrop:
    target_size: int = _range(REQUIRED, 1, MAX_SIDE)  # 3 crops along the long side: start, end, middle
    backend: str = "cv2"


@dataclass
class CenterCrop:
    target_size: int = _range(REQUIRED, 1, MAX_SIDE)
    do_round: bool = True
    backend: str = "pillow"


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
    global_batch_size: Optional[int] = _range(None, 1, MAX_BATCH)


@dataclass
class MetricConfig:
    name: Literal["CenterCropMetric"] = "CenterCropMetric"  # top-1/top-5 over the set


@dataclass
class InferenceConfig:
    name: Literal["TimeSformer_Inference_helper"] = "TimeSformer_Inference_helper"
    num_seg: int = _range(8, 1, MAX_COUNT)
    short_size: int = _range(224, 1, MAX_SIDE)
    target_size: int = _range(224, 1, MAX_SIDE)
    top_k: int = _range(1, 1, 1 << 20)  # classes `predict` prints (PaddleVideo's inference helper: 1)


# --------------------------------------------------------------------------- top level


@dataclass
class Config:
    MODEL: ModelConfig
    DATASET: DatasetConfig
    PIPELINE: PipelineConfig
    OPTIMIZER: OptimizerConfig
    epochs: int = _range(REQUIRED, 1, 1 << 20)
    GRADIENT_ACCUMULATION: GradientAccumulationConfig = field(default_factory=GradientAccumulationConfig)
    METRIC: MetricConfig = field(default_factory=MetricConfig)
    INFERENCE: InferenceConfig = field(default_factory=InferenceConfig)
    model_name: str = "TimeSformer"
    log_interval: int = _range(10, 1, 1 << 30)  # steps between log lines
    save_interval: int = _range(1, 1, 1 << 30)  # epochs between checkpoints (and the last epoch)
    val_interval: int = _range(1, 1, 1 << 30)  # epochs between validations (with --validate)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    output_dir: str = ""  # empty: `output_path` gives output/<model_name> (as PaddleVideo)
    seed: int = _range(0, 0, (1 << 63) - 1)  # always seeded (PaddleVideo seeds only with --seed); `--seed` overrides
    amp: bool = False  # ours: also `--amp`
    amp_level: Literal["O1", "O2"] = "O1"
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # ours: float16 uses a grad scaler
    nonfinite_loss: Literal["stop", "skip"] = "stop"  # ours: stop training, or skip that step

    @property
    def output_path(self) -> Path:
        """Where a run writes: `output_dir`, else `output/<model_name>` (the one default)."""
        return Path(self.output_dir or f"output/{self.model_name}")

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


def _to_plain(obj: Any) -> Any:
    if type(obj) in TRANSFORM_OPS.values():
        return {type(obj).__name__: {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_to_plain(x) for x in obj]
    return obj
