"""`data synth`: real decodable videos whose class only frame order tells."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from timesformer.cli import main
from timesformer.data.synth import DIRECTIONS, MotionStyle, render_motion_clip, write_motion_dataset


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def centroids(frames: np.ndarray) -> np.ndarray:
    """(x, y) per frame of the pixels far from the frame's median colour (the square)."""
    out = []
    for image in frames.astype(int):
        median = np.median(image.reshape(-1, 3), axis=0)
        ys, xs = np.nonzero(np.abs(image - median).sum(-1) > 150)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", str(out), "--train", "8", "--val", "4", "--frames", "8", "--size", "32", "--seed", "3"]) == 0
    return out


def test_lists_labels_and_files(dataset: Path):
    assert (dataset / "labels.txt").read_text().split("\n")[:4] == ["0 right", "1 left", "2 up", "3 down"]
    for split, count in (("train", 8), ("val", 4)):
        rows = [line.split() for line in (dataset / f"{split}.list").read_text().splitlines()]
        assert len(rows) == count
        assert [int(label) for _, label in rows] == [i % 4 for i in range(count)]  # balanced
        for path, label in rows:
            assert Path(path).is_absolute() and Path(path).parent.name == DIRECTIONS[int(label)]
            frames = decode(Path(path))
            assert frames.shape == (8, 32, 32, 3)


def test_video_timing_makes_paddlevideo_sampler_take_every_frame(dataset: Path):
    # PaddleVideo's window is 32 * num_seg / 30 * fps frames: at 1 fps it covers the 8 frames,
    # and linspace(0, window - 1, 8) truncated hits each frame once.
    path = (dataset / "val.list").read_text().split()[0]
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps, n = float(stream.average_rate), stream.frames
    assert (fps, n) == (1.0, 8)
    window = 32 * 8 / 30 * fps
    indices = np.clip(np.linspace(0, window - 1, 8), 0, n - 1).astype(np.int64)
    assert indices.tolist() == list(range(8))


def test_decoded_motion_follows_the_label(dataset: Path):
    rows = [line.split() for line in (dataset / "train.list").read_text().splitlines()]
    for path, label in rows:
        xy = centroids(decode(Path(path)))
        dx, dy = np.diff(xy, axis=0).T
        expected = {0: (dx > 0, dy == 0), 1: (dx < 0, dy == 0), 2: (dy < 0, dx == 0), 3: (dy > 0, dx == 0)}[int(label)]
        assert all(np.all(cond) for cond in expected), (path, xy)


def test_directions_on_an_axis_differ_only_in_order():
    # Same random draws, no noise: "left" is "right" played backwards, "down" is "right" transposed.
    style = MotionStyle(noise=0.0)
    for seed in range(20):
        right, left, up, down = (render_motion_clip(label, np.random.default_rng(seed), style) for label in range(4))
        np.testing.assert_array_equal(left, right[::-1])
        np.testing.assert_array_equal(up, down[::-1])
        np.testing.assert_array_equal(down, right.transpose(0, 2, 1, 3))
        assert not np.array_equal(left, right)


def test_lossless_and_deterministic_for_any_workers(tmp_path: Path):
    a = write_motion_dataset(tmp_path / "a", train=4, val=0, seed=7, workers=1, progress=False)
    b = write_motion_dataset(tmp_path / "b", train=4, val=0, seed=7, workers=2, progress=False)
    for i, name in enumerate(DIRECTIONS):
        clip = f"train/{name}/{i:05d}.mp4"
        expected = render_motion_clip(i, np.random.default_rng([7, 0, i]), MotionStyle())
        decoded = decode(a.out_dir / clip)
        assert np.abs(decoded.astype(int) - expected).max() <= 3  # RGB<->YUV rounding only
        np.testing.assert_array_equal(decoded, decode(b.out_dir / clip))


def test_bad_size_is_a_one_line_error(tmp_path: Path, capsys):
    assert main(["data", "synth", str(tmp_path / "x"), "--size", "31"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--size 31" in err and "\n" not in err
