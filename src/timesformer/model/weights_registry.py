"""Published weights that `timesformer weights download NAME` fetches.

PaddleVideo's two files are the ones its TimeSformer README names; the facebookresearch
ones are the model zoo of github.com/facebookresearch/TimeSformer (Dropbox, `dl=1` for the
file itself); the timm one is the ImageNet ViT-B/16 that the official code starts from.
Sizes and checksums are not published for any of them: the download prints both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError

# Tests (and mirrors) point every download at another server: BASE/<file name>.
BASE_URL_ENV = "TIMESFORMER_WEIGHTS_URL"


@dataclass(frozen=True)
class PublishedWeights:
    name: str
    url: str
    description: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.split("?")[0].rsplit("/", 1)[-1]

    def resolved_url(self) -> str:
        base = os.environ.get(BASE_URL_ENV)
        return f"{base.rstrip('/')}/{self.filename}" if base else self.url


def _official(key: str, name: str, description: str) -> PublishedWeights:
    return PublishedWeights(name, f"https://www.dropbox.com/s/{key}/{name}.pyth?dl=1", f"facebookresearch: {description}")


PUBLISHED = (
    PublishedWeights(
        "ViT_base_patch16_224_pretrained",
        "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/ViT_base_patch16_224_pretrained.pdparams",
        "PaddleVideo: ImageNet ViT-B/16 init for training (MODEL.backbone.pretrained)",
    ),
    PublishedWeights(
        "TimeSformer_k400",
        "https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TimeSformer_k400.pdparams",
        "PaddleVideo: K400, 8x224, divided space-time, 77.29 top-1",
    ),
    _official("g5t24we9gl5yk88", "TimeSformer_divST_8x32_224_K400", "K400, 8x224, 77.9 top-1"),
    _official("6f0x172lpqy3oxt", "TimeSformer_divST_16x16_448_K400", "K400 HR, 16x448, 79.6 top-1"),
    _official("r1iuxahif3sgimo", "TimeSformer_divST_96x4_224_K400", "K400 L, 96x224, 80.6 top-1"),
    _official("4h2qt41m2z3aqrb", "TimeSformer_divST_8x32_224_K600", "K600, 8x224, 79.1 top-1"),
    _official("ft1e92g2vhvxecv", "TimeSformer_divST_16x16_448_K600", "K600 HR, 16x448, 81.8 top-1"),
    _official("857rx6xeclxfhdg", "TimeSformer_divST_96x4_224_K600", "K600 L, 96x224, 82.2 top-1"),
    _official("tybhuml57y24wpm", "TimeSformer_divST_8_224_SSv2", "SSv2, 8x224, 59.1 top-1"),
    _official("9t68uzk8w2fpfnv", "TimeSformer_divST_16_448_SSv2", "SSv2 HR, 16x448, 61.8 top-1"),
    _official("3f1rm2al8mhprwa", "TimeSformer_divST_64_224_SSv2", "SSv2 L, 64x224, 62.0 top-1"),
    _official("9v8hcm88b9tc6ff", "TimeSformer_divST_8x32_224_HowTo100M", "HowTo100M, 8x224, 56.8 top-1"),
    _official("4roflx4q1gscu85", "TimeSformer_divST_32x32_224_HowTo100M", "HowTo100M, 32x224, 61.2 top-1"),
    _official("15bvqltl1j5vyp3", "TimeSformer_divST_64x32_224_HowTo100M", "HowTo100M, 64 frames, 62.2 top-1"),
    _official("t2mzgahnfhgakma", "TimeSformer_divST_96x32_224_HowTo100M", "HowTo100M, 96x224, 62.6 top-1"),
    PublishedWeights(
        "jx_vit_base_p16_224",
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/jx_vit_base_p16_224-80ecf9dd.pth",
        "timm: ImageNet ViT-B/16 init the official TimeSformer trains from",
    ),
)


def find_weights(name: str) -> PublishedWeights:
    """The published weights called `name` (case-insensitive; a file name works too)."""
    wanted = name.lower().removesuffix(".pdparams").removesuffix(".pyth").removesuffix(".pth")
    for weights in PUBLISHED:
        if wanted in (weights.name.lower(), weights.filename.lower().rsplit(".", 1)[0]):
            return weights
    import difflib

    close = difflib.get_close_matches(name, [w.name for w in PUBLISHED], n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"{name}: no such published weights{hint}; `timesformer weights list` shows them")
