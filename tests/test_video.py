"""read_clip: PaddleVideo's window / seek / linspace rules on videos whose frames say who they are.

Each synthetic frame shows its number as black/white 16x16 blocks (robust to lossy
coding), so the test can read back which frames were sampled and compare with the
closed-form rules of PADDLEVIDEO_BEHAVIOR.md "Test-time video pipeline".
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from timesformer.data.video import _decode, _Window, read_clip, read_frames, read_image
from timesformer.errors import UserError, VideoReadError

WIDTH, HEIGHT, BLOCK = 64, 48, 16
BITS = 8  # frame number bits; the 4 remaining blocks stay white


def numbered_frame(number: int) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    for bit in range(BITS):
        if not (number >> bit) & 1:
            row, col = divmod(bit, WIDTH // BLOCK)
            image[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = 0
    return image


def frame_number(image: np.ndarray) -> int:
    number = 0
    for bit in range(BITS):
        row, col = divmod(bit, WIDTH // BLOCK)
        centre = image[row * BLOCK + 4 : (row + 1) * BLOCK - 4, col * BLOCK + 4 : (col + 1) * BLOCK - 4]
        number |= int(centre.mean() > 128) << bit
    return number


def encode_video(path: Path, num_frames: int, codec: str = "h264", fps: int = 30, container_format=None) -> Path:
    """Write frames 0..num_frames-1 (numbered) with PyAV."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for number in range(num_frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def numbers(frames: np.ndarray) -> list[int]:
    return [frame_number(f) for f in frames]


def expected_positions(start: float, end: float, num_seg: int, kept: int) -> list[int]:
    """Sampler(linspace_sample=True), written out: linspace, clip to kept frames, truncate."""
    out = []
    for i in range(num_seg):
        value = start + (end - start) * i / (num_seg - 1) if num_seg > 1 else start
        out.append(int(min(max(value, 0), kept - 1)))
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "mp4": encode_video(root / "forty.mp4", 40, "h264"),
        "avi": encode_video(root / "forty.avi", 40, "mpeg4"),
        "short": encode_video(root / "short.mp4", 20, "h264"),
        # An elementary H.264 stream: no duration, no frame count, no timestamps.
        "raw": encode_video(root / "forty.h264", 40, "h264", container_format="h264"),
        # Matroska keeps no per-stream duration or frame count either.
        "mkv": encode_video(root / "forty.mkv", 40, "h264"),
    }


def test_frame_numbers_survive_coding(videos):
    for path in videos.values():
        with av.open(str(path)) as container:
            decoded = [frame_number(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
        assert decoded == list(range(len(decoded))), path


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_test_mode_window_at_start(videos, kind):
    # clip = 2 * 4 / 30 * 30 = 8 frames: window [0, 7], one frame past it kept (9 in all).
    frames = read_clip(videos[kind], num_seg=4, mode="test", sampling_rate=2, target_fps=30)
    assert frames.shape == (4, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert numbers(frames) == expected_positions(0, 7, 4, 9) == [0, 2, 4, 7]


@pytest.mark.parametrize("kind", ["mp4", "avi"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_mode_random_window(videos, kind, seed):
    clip = 3 * 4 / 30 * 30  # 12 frames of 40: start uniform in [0, 28]
    frames = read_clip(videos[kind], 4, "train", np.random.default_rng(seed), sampling_rate=3)
    with av.open(str(videos[kind])) as container:
        stream = container.streams.video[0]
        timebase = stream.duration / stream.frames
        frame_pts = [f.pts for f in container.decode(stream)]
    start = np.random.default_rng(seed).uniform(0, 40 - clip)
    start_pts, end_pts = int(start * timebase), int((start + clip - 1) * timebase)
    inside = [i for i, pts in enumerate(frame_pts) if start_pts <= pts <= end_pts]
    kept = inside + [inside[-1] + 1]  # PaddleVideo keeps one frame past the window
    assert numbers(frames) == [kept[p] for p in expected_positions(0, clip - 1, 4, len(kept))]


def test_same_rng_same_clip(videos):
    a = read_clip(videos["mp4"], 4, "valid", np.random.default_rng(7), sampling_rate=3)
    b = read_clip(videos["mp4"], 4, "valid", np.random.default_rng(7), sampling_rate=3)
    assert np.array_equal(a, b)


def test_short_video_repeats_last_frame(videos):
    # clip = 4 * 8 / 30 * 30 = 32 frames > 20: linspace(0, 31, 8) clipped to frame 19.
    frames = read_clip(videos["short"], 8, "test", sampling_rate=4)
    assert numbers(frames) == expected_positions(0, 31, 8, 20) == [0, 4, 8, 13, 17, 19, 19, 19]


@pytest.mark.parametrize("kind", ["raw", "mkv"])
def test_no_duration_decodes_everything(videos, kind):
    with av.open(str(videos[kind])) as container:
        stream = container.streams.video[0]
        assert stream.duration is None and stream.frames == 0
        fps = float(stream.average_rate)
    clip = 3 * 4 / 30 * fps
    # test: window over all 40 decoded frames, starting at 0
    assert numbers(read_clip(videos[kind], 4, "test", sampling_rate=3)) == expected_positions(0, clip - 1, 4, 40)
    # train: start uniform in [0, 40 - clip] over the decoded frames
    start = np.random.default_rng(5).uniform(0, max(40 - clip, 0))
    frames = read_clip(videos[kind], 4, "train", np.random.default_rng(5), sampling_rate=3)
    assert numbers(frames) == expected_positions(start, start + clip - 1, 4, 40)


def test_rgb_equals_pyav_default_conversion(example_avi):
    # PaddleVideo: frame.to_rgb().to_ndarray() of every frame, then linspace(0, clip - 1).
    with av.open(str(example_avi)) as container:
        stream = container.streams.video[0]
        clip = 32 * 8 / 30 * float(stream.average_rate)
        every = [f.to_rgb().to_ndarray() for f in container.decode(stream)]
    picked = np.stack([every[p] for p in expected_positions(0, clip - 1, 8, len(every))])
    assert np.array_equal(read_clip(example_avi, 8, "test"), picked)


def test_pts_sorted_slow_path_agrees(videos):
    window = _Window(0, 11, np.array([0, 3, 7, 11, 20]))
    fast = _decode(str(videos["avi"]), window, False, lambda rgb: rgb)
    slow = _decode(str(videos["avi"]), window, True, lambda rgb: rgb)
    assert fast[0] == slow[0] == 13  # frames 0..11 and one past the window
    assert sorted(fast[1]) == sorted(slow[1]) == [0, 3, 7, 11]
    for position in fast[1]:
        assert np.array_equal(fast[1][position], slow[1][position])
    assert frame_number(fast[2]) == frame_number(slow[2]) == 12  # the last kept frame


def test_broken_files_raise_video_read_error(tmp_path, videos):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    text = tmp_path / "text.avi"
    text.write_text("this is not a video\n" * 20)
    data = videos["mp4"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (garbage, empty, text, truncated, tmp_path / "missing.mp4", tmp_path):
        with pytest.raises(VideoReadError) as info:
            read_clip(path, 8, "test")
        assert isinstance(info.value, UserError)
        message = str(info.value)
        assert str(path) in message and "\n" not in message and info.value.reason
    with pytest.raises(VideoReadError, match="not found"):
        read_clip(tmp_path / "missing.mp4", 8, "test")


def test_audio_only_and_zero_frame_files(tmp_path):
    audio = tmp_path / "sound.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match="no video stream"):
        read_clip(audio, 8, "test")
    empty_video = tmp_path / "no_frames.avi"
    with av.open(str(empty_video), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoReadError, match="no decodable frames"):
        read_clip(empty_video, 8, "test")


def test_mode_and_rng_are_checked(videos):
    with pytest.raises(ValueError, match="mode"):
        read_clip(videos["mp4"], 8, "eval")
    with pytest.raises(ValueError, match="rng"):
        read_clip(videos["mp4"], 8, "train")


def write_frame_folder(folder: Path, num_frames: int) -> Path:
    """PaddleVideo's frames format: img_00001.jpg ... (1-based), encoded by FFmpeg."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(num_frames):
        with av.open(str(folder / f"img_{number + 1:05d}.jpg"), "w", format="image2") as container:
            stream = container.add_stream("mjpeg", rate=1)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")))
            container.mux(stream.encode())
    return folder


def test_read_frames_linspace_one_based(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", 10)
    assert frame_number(read_image(folder / "img_00004.jpg")) == 3
    frames = read_frames(folder, num_frames=10, num_seg=4)
    # linspace(0, 9, 4) = 0, 3, 6, 9 -> files img_00001, 4, 7, 10 (frames 0, 3, 6, 9)
    assert numbers(frames) == [0, 3, 6, 9]
    with pytest.raises(VideoReadError, match="img_00012.jpg"):
        read_frames(folder, num_frames=12, num_seg=4)
    with pytest.raises(VideoReadError, match="not found"):
        read_frames(tmp_path / "nowhere", 10, 4)
