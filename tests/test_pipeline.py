"""VideoPipeline / preprocess: PaddleVideo's test tensor, and per-sample determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_video import encode_video, write_frame_folder  # tests/ is on sys.path under pytest
from timesformer import preprocess
from timesformer.data import transforms as T
from timesformer.data.pipeline import VideoPipeline, sample_rng
from timesformer.data.video import read_clip, read_frames
from timesformer.errors import ConfigError


def test_preprocess_matches_paddlevideo_fixture(example_avi, paddle_fixture):
    ref = np.load(paddle_fixture / "video_example.npz")["input"]  # [1, 3, 3 * 8, 224, 224]
    ours = preprocess(example_avi)
    assert ours.shape == (3, 3, 8, 224, 224) and ours.dtype == torch.float32
    # PaddleVideo concatenates the crops (start, end, middle) along T
    ours_concat = ours.permute(1, 0, 2, 3, 4).reshape(ref.shape).numpy()
    assert np.abs(ours_concat - ref).max() <= 2e-3


def test_preprocess_sixteen_frames(example_avi):
    clip = preprocess(example_avi, num_seg=16)
    assert clip.shape == (3, 3, 16, 224, 224)
    # 131 frames, window 32 * 16 / 30 * 25 = 426.7 frames: most positions repeat the last frame
    assert torch.equal(clip[:, :, -1], clip[:, :, -2])


def test_sample_rng_depends_only_on_key():
    draw = lambda *key: sample_rng(*key).integers(1 << 30, size=4).tolist()  # noqa: E731
    assert draw(0, 1, 2) == draw(0, 1, 2)
    assert len({str(draw(0, 1, 2)), str(draw(0, 2, 1)), str(draw(1, 1, 2)), str(draw(0, 1, 2, 1))}) == 4


def test_train_pipeline_composes_window_scale_crop_flip_in_order(example_avi):
    pipeline = VideoPipeline.for_mode("train")
    assert (pipeline.short_side_min, pipeline.short_side_max, pipeline.crop, pipeline.flip) == (256, 320, "random", True)
    for index in range(3):
        got = pipeline(example_avi, sample_rng(0, 4, index))
        rng = sample_rng(0, 4, index)
        frames = read_clip(example_avi, 8, "train", rng)
        size = T.jitter_size(256, 320, rng)
        clip = T.resize_short_side(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size)
        top, left = T.random_crop_offset(clip.shape[2], clip.shape[3], 224, rng)
        flip = T.flip_coin(rng)
        crop = clip[:, :, top : top + 224, left : left + 224].permute(1, 0, 2, 3) / 255.0
        expected = ((crop - 0.45) / 0.225).flip(-1) if flip else (crop - 0.45) / 0.225
        assert got.shape == (1, 3, 8, 224, 224)
        assert (got[0] - expected).abs().max() < 1e-4
    assert torch.equal(pipeline(example_avi, sample_rng(0, 4, 1)), pipeline(example_avi, sample_rng(0, 4, 1)))
    assert not torch.equal(pipeline(example_avi, sample_rng(0, 4, 1)), pipeline(example_avi, sample_rng(0, 5, 1)))


def test_center_and_no_crop(tmp_path):
    video = encode_video(tmp_path / "v.mp4", 30)
    center = VideoPipeline(num_seg=4, crop="center", short_side_min=48, short_side_max=48, crop_size=32)(video)
    assert center.shape == (1, 3, 4, 32, 32)
    full = VideoPipeline(num_seg=4, crop="none", short_side_min=24, short_side_max=24)(video)
    assert full.shape == (1, 3, 4, 24, 32)
    # no resize at 48: the centre crop is the normalized pixels at offset (8, 16)
    frames = torch.from_numpy(read_clip(video, 4, "test")).permute(3, 0, 1, 2).float()
    expected = (frames[:, :, 8:40, 16:48] / 255 - 0.45) / 0.225
    assert (center[0] - expected).abs().max() < 1e-5


def test_frames_format(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", 12)
    pipeline = VideoPipeline(num_seg=4, short_side_min=48, short_side_max=48, crop_size=48)
    views = pipeline.frames(folder, 12)
    assert views.shape == (3, 3, 4, 48, 48)
    frames = torch.from_numpy(read_frames(folder, 12, 4)).permute(3, 0, 1, 2).float()
    assert (views[1] - (frames[:, :, :, 16:] / 255 - 0.45) / 0.225).abs().max() < 1e-5  # end crop


@pytest.mark.parametrize(
    "fields, key",
    [
        (dict(mode="eval"), "mode"),
        (dict(crop="five"), "crop"),
        (dict(num_seg=0), "num_seg"),
        (dict(std=(0.2, 0.0, 0.2)), "std"),
        (dict(short_side_min=300, short_side_max=256), "short side"),
        (dict(crop_size=256), "crop_size"),
    ],
)
def test_invalid_settings_raise_config_error(fields, key):
    with pytest.raises(ConfigError, match=key):
        VideoPipeline(**fields)
