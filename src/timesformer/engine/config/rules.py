"""Rules across keys: shapes that must agree, the order of transform ops, increasing milestones."""

from __future__ import annotations

from typing import Any

from .schema import CenterCrop, Config, Image2Array, JitterScale, Normalization, RandomCrop, RandomFlip, UniformCrop
from .validate import Validator, quote


def check_config(v: Validator, cfg: Config) -> None:
    """Rules that involve more than one key (the config is not changed)."""

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
        check_transform(v, pipe.transform, f"{key}.transform")
    global_batch = cfg.GRADIENT_ACCUMULATION.global_batch_size
    if global_batch is not None:
        require(global_batch % cfg.DATASET.batch_size == 0, "GRADIENT_ACCUMULATION.global_batch_size", global_batch,
                "is not a multiple of", "DATASET.batch_size", cfg.DATASET.batch_size)  # fmt: skip
    milestones = cfg.OPTIMIZER.learning_rate.milestones
    if milestones != sorted(milestones):
        key = "OPTIMIZER.learning_rate.milestones"
        raise v.error(key, f"{key} must be increasing, got {quote(milestones)}")


# What each op sets in our pipeline. Normalization and flipping commute with scaling and
# cropping (per-channel affine maps; a mirrored crop distribution is the same), so only
# "scale before crop" is an order constraint.
STEP_OF_OP = {Normalization: "normalize", Image2Array: "layout", JitterScale: "scale", RandomCrop: "crop",
         UniformCrop: "crop", CenterCrop: "crop", RandomFlip: "flip"}


def check_transform(v: Validator, ops: list, key: str) -> None:
    where: dict[str, int] = {}
    for i, op in enumerate(ops):
        kind = STEP_OF_OP[type(op)]
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
                          f"needs 3 values{' > 0' if name == 'std' else ''}, got {quote(values)}")
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
