"""Transforms against closed-form expectations and PaddleVideo's operation order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from timesformer.data import transforms as T


def test_short_side_size_rule():
    # PaddleVideo JitterScale: short side = size, long side = floor(long / short * size)
    assert T.short_side_shape(240, 320, 224) == (224, 298)  # 298.67 -> 298
    assert T.short_side_shape(320, 240, 224) == (298, 224)
    assert T.short_side_shape(720, 1280, 224) == (224, 398)  # 398.2 -> 398
    assert T.short_side_shape(100, 100, 256) == (256, 256)
    assert T.short_side_shape(144, 176, 300) == (300, 366)  # 366.67


def test_resize_is_bilinear_half_pixel_without_antialias():
    # A horizontal ramp v(x) = x: bilinear with align_corners=False samples it at
    # src = (x' + 0.5) * in / out - 0.5, clamped to [0, in - 1]; antialiasing would blur
    # the 0/255 stripes below instead of sampling them.
    height, width, size = 40, 64, 16  # -> 16 x 25
    ramp = torch.arange(width, dtype=torch.float32).expand(1, 3, height, width)
    out = T.resize_short_side(ramp, size)
    assert out.shape == (1, 3, 16, 25)
    scale = width / 25
    expected = ((torch.arange(25) + 0.5) * scale - 0.5).clamp(0, width - 1)
    assert torch.allclose(out[0, 0, 0], expected, atol=1e-4)
    stripes = torch.zeros(1, 1, 64, 64)
    stripes[..., ::4] = 255.0  # downscale by 4 at 1.5 + 4k: between columns 1 and 2, both 0
    assert T.resize_short_side(stripes, 16).max() == 0


def test_resize_noop_when_short_side_matches():
    clip = torch.rand(2, 3, 224, 300)
    assert T.resize_short_side(clip, 224) is clip


def test_resize_then_normalize_equals_paddlevideo_order():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 60, 80, 3), dtype=np.uint8)
    mean, std = (0.45, 0.40, 0.35), (0.225, 0.25, 0.2)
    # PaddleVideo: float64 x / 255, minus mean, over std; [C, T, H, W]; interpolate; crop.
    ref = (frames / 255.0 - np.array(mean)) / np.array(std)
    ref = torch.from_numpy(ref.transpose(3, 0, 1, 2).astype(np.float32))
    ref = F.interpolate(ref, size=(50, 66), mode="bilinear", align_corners=False)[:, :, 1:49, 5:53]
    scaler = T.ShortSideScaler(50, 50)
    clip = torch.cat([scaler(f) for f in frames])
    ours = T.normalized_crop(clip, 1, 5, 48, 48, mean, std)
    assert ours.shape == (3, 4, 48, 48) and ours.is_contiguous()
    assert (ours - ref).abs().max() < 1e-4


def test_normalized_crop_values_and_flip():
    clip = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = T.normalized_crop(clip, 1, 2, 2, 3, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    c, t, y, x = 2, 1, 1, 0
    assert torch.isclose(out[c, t, y, x], (clip[t, c, 1 + y, 2 + x] / 255 - 0.3) / 2.0)
    flipped = T.normalized_crop(clip, 1, 2, 2, 3, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0), flip=True)
    assert torch.equal(flipped, out.flip(-1))


def test_uniform_crop_offsets_order_start_end_middle():
    # step = (long - 224) // 2; offsets 0, 2 * step, step along the long side
    assert T.uniform_crop_offsets(224, 298, 224) == [(0, 0), (0, 74), (0, 37)]
    assert T.uniform_crop_offsets(224, 399, 224) == [(0, 0), (0, 174), (0, 87)]  # 175 // 2 = 87
    assert T.uniform_crop_offsets(298, 224, 224) == [(0, 0), (74, 0), (37, 0)]
    assert T.uniform_crop_offsets(224, 224, 224) == [(0, 0)] * 3
    with pytest.raises(ValueError):
        T.uniform_crop_offsets(200, 300, 224)


def test_center_crop_offset():
    assert T.center_crop_offset(256, 341, 224) == (16, round(58.5))  # round half to even: 58
    assert T.center_crop_offset(224, 224, 224) == (0, 0)


def test_random_crop_covers_every_offset_and_allows_equal_side():
    rng = np.random.default_rng(0)
    tops, lefts = zip(*(T.random_crop_offset(226, 230, 224, rng) for _ in range(400)))
    assert set(tops) == {0, 1, 2} and set(lefts) == set(range(7))
    assert T.random_crop_offset(224, 224, 224, rng) == (0, 0)  # PaddleVideo fails here


def test_jitter_size_in_range_and_reproducible():
    sizes = [T.jitter_size(256, 320, np.random.default_rng(s)) for s in range(200)]
    assert min(sizes) >= 256 and max(sizes) <= 320 and len(set(sizes)) > 30
    assert sizes == [T.jitter_size(256, 320, np.random.default_rng(s)) for s in range(200)]
    expected = int(round(np.random.default_rng(3).uniform(256, 320)))
    assert T.jitter_size(256, 320, np.random.default_rng(3)) == expected


def test_scaler_draws_once_and_needs_rng_only_when_random():
    frame = np.zeros((240, 320, 3), np.uint8)
    scaler = T.ShortSideScaler(256, 320, np.random.default_rng(1))
    first, second = scaler(frame), scaler(frame)
    assert first.shape == second.shape and first.shape[2] == scaler.size
    assert T.ShortSideScaler(240, 240)(frame).shape == (1, 3, 240, 320)
    with pytest.raises(ValueError, match="rng"):
        T.ShortSideScaler(256, 320)(frame)


def test_flip_coin_is_fair_enough():
    rng = np.random.default_rng(0)
    flips = sum(T.flip_coin(rng) for _ in range(1000))
    assert 430 < flips < 570
