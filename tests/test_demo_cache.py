"""`DATASET.cache` (used by the demo config): a clip is decoded once and is the same every epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from timesformer.data.synth import write_motion_dataset
from timesformer.engine.config import load_config
from timesformer.engine.loaders import build_dataset
from timesformer.errors import UserError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_motion.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_motion_dataset(tmp_path_factory.mktemp("synth"), train=4, val=4, colors="gray", progress=False, workers=1)


def overrides(synth, cache: bool) -> list[str]:
    return [f"DATASET.train.file_path={synth.train_list}", f"DATASET.valid.file_path={synth.val_list}",
            f"DATASET.cache={str(cache).lower()}"]  # fmt: skip


def test_cached_clips_equal_decoded_clips_and_decode_once(synth):
    cached = build_dataset(load_config(CONFIG, overrides(synth, True)), "train", 0)
    plain = build_dataset(load_config(CONFIG, overrides(synth, False)), "train", 0)
    calls = []
    decode = cached.pipeline.__call__

    class CountingPipeline:  # the dataset calls `pipeline(path, rng, normalize)`
        def __call__(self, path, rng=None, normalize=True):
            calls.append(path)
            return decode(path, rng, normalize)

    cached.pipeline = CountingPipeline()
    for epoch in range(3):
        for index in range(len(cached)):
            assert torch.equal(cached[(epoch, index)]["clip"], plain[(epoch, index)]["clip"])
    assert len(calls) == len(cached)  # once per video, not once per epoch


def test_cache_refuses_a_random_pipeline(synth, tmp_path):
    text = CONFIG.read_text().replace("            - CenterCrop:\n                target_size: 32",
                                      "            - RandomCrop:\n                target_size: 32", 1)
    config = tmp_path / "random.yaml"
    config.write_text(text)
    cfg = load_config(config, overrides(synth, True))
    with pytest.raises(UserError, match="DATASET.cache"):
        build_dataset(cfg, "train", 0)
