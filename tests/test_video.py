"""read_clip: PaddleVideo's window / seek / linspace rules on videos whose frames say who they are.

Each synthetic frame shows its number as black/white 16x16 blocks (robust to lossy
coding), so the test can read back which frames were sampled and compare with the
closed-form rules of PADDLEVIDEO_BEHAVIOR.md "Test-time video pipeline".
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from timesformer.data.video import (
    FrameFormatter, _decode, _decode_planned, _positions, _Window, read_clip, read_frames, read_image, sample_frames,
)
from timesformer.data.paddlevideo_reference import paddlevideo_frames as paddlevideo_clip
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


def encode_video(
    path: Path, num_frames: int, codec: str = "h264", fps: int = 30, container_format=None, options=None
) -> Path:
    """Write frames 0..num_frames-1 (numbered) with PyAV."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
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
    fast = _decode(av.open(str(videos["avi"])), str(videos["avi"]), window, False, FrameFormatter())
    slow = _decode(av.open(str(videos["avi"])), str(videos["avi"]), window, True, FrameFormatter())
    assert fast[0] == slow[0] == 13  # frames 0..11 and one past the window
    assert sorted(fast[1]) == sorted(slow[1]) == [0, 3, 7, 11]
    for position in fast[1]:
        assert np.array_equal(fast[1][position], slow[1][position])
    assert frame_number(fast[2]) == frame_number(slow[2]) == 12  # the last kept frame


def test_planned_decoding_matches_plain_decoding(tmp_path):
    # B-frames (x264's default) and a keyframe every 10 frames, so windows start mid-GOP.
    video = str(encode_video(tmp_path / "gop.mp4", 90, "h264", options={"g": "10", "bf": "3"}))
    with av.open(video) as container:
        stream = container.streams.video[0]
        timebase = stream.duration / stream.frames
        kinds = {frame.pict_type for frame in container.decode(stream)}
    assert av.video.frame.PictureType.B in kinds
    for start, clip, num_seg in [(0, 24, 6), (13.7, 30, 8), (41.2, 17, 5), (80.5, 24, 6), (0, 200, 8)]:
        window = _Window(int(start * timebase), int((start + clip - 1) * timebase), _positions(0, clip - 1, num_seg))
        planned = _decode_planned(av.open(video), video, window, FrameFormatter())
        assert planned is not None  # an MP4 carries every packet's pts
        kept, picked, last, in_order = _decode(av.open(video), video, window, False, FrameFormatter())
        assert in_order and planned[0] == kept
        plain = [picked[p] if p < kept else last for p in window.positions]
        assert all(np.array_equal(a, b) for a, b in zip(planned[1], plain))
        assert numbers(planned[1])[0] == math.ceil(int(start * timebase) / timebase)


@pytest.mark.parametrize(
    "codec, options, jumps, suffix",
    [
        ("h264", {"g": "10", "bf": "3"}, True, ".mp4"),  # closed GOPs: IDR every 10 frames
        ("h264", {"g": "10", "bf": "3", "x264-params": "open-gop=1"}, False, ".mp4"),  # recovery points, leading B-frames
        ("mpeg4", {"g": "10", "bf": "2"}, False, ".mp4"),  # B-frames after an I-frame show before it
        ("mpeg4", {"g": "10"}, True, ".mp4"),
        ("hevc", {"g": "10", "bf": "3", "x265-params": "log-level=none"}, None, ".mp4"),
        # AVI stores no pts of its own: the demuxer's (frame index in decoding order, then
        # reordered by the decoder) must still plan exactly, with and without B-frames.
        ("mpeg4", {"g": "10"}, True, ".avi"),
        ("mpeg4", {"g": "10", "bf": "2"}, False, ".avi"),
        ("mpeg2video", {"g": "12", "bf": "2"}, False, ".avi"),
    ],
)
def test_gop_jumps_keep_frames_exact(tmp_path, codec, options, jumps, suffix):
    """Jumping over the rest of a GOP after its last sampled frame gives the frames that
    decoding everything gives, and it does jump where GOPs start clean."""
    from timesformer.data.video import _clean_start_test, _decoding_plan

    try:
        video = str(encode_video(tmp_path / f"gop{suffix}", 120, codec, options=options))
    except (av.FFmpegError, ValueError) as err:  # an FFmpeg build without this encoder
        pytest.skip(f"PyAV's FFmpeg cannot encode {codec}: {err}")
    with av.open(video) as container:
        stream = container.streams.video[0]
        timebase = stream.duration / stream.frames
        packets = [p for p in container.demux(stream) if p.size]
        plan = _decoding_plan(packets, {packets[5].pts, packets[95].pts}, _clean_start_test(stream.codec_context))
    if jumps is not None:
        assert (None in plan) == jumps and (len(plan) < 60) == jumps
    for start, clip, num_seg in [(0, 120, 4), (13.7, 60, 3), (41.2, 70, 5), (0, 90, 8)]:
        window = _Window(int(start * timebase), int((start + clip - 1) * timebase), _positions(0, clip - 1, num_seg))
        planned = _decode_planned(av.open(video), video, window, FrameFormatter())
        kept, picked, last, _ = _decode(av.open(video), video, window, False, FrameFormatter())
        plain = [picked[p] if p < kept else last for p in window.positions]
        assert planned is not None or suffix != ".avi"  # the plan holds for these AVIs
        if planned is not None:
            assert planned[0] == kept and all(np.array_equal(a, b) for a, b in zip(planned[1], plain))
        rate = max(clip // num_seg, 1)  # at 30 fps the test window spans `clip` frames
        assert np.array_equal(read_clip(video, num_seg, "test", sampling_rate=rate),
                              paddlevideo_clip(video, num_seg, "test", sampling_rate=rate))


def trimmed_copy(source: Path, path: Path, first_keyframe: int, cut: int) -> Path:
    """Remux from a keyframe with pts shifted so that frame `cut` shows at 0, as
    `ffmpeg -ss ... -c copy` cuts do (Kinetics clips): the MP4 gets an edit list and its
    first packets are marked discard."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        tick = stream_in.duration // stream_in.frames
        started = False
        for packet in src.demux(stream_in):
            started = started or (packet.is_keyframe and packet.pts == first_keyframe * tick)
            if started and packet.size:
                packet.pts -= cut * tick
                packet.dts -= cut * tick
                packet.stream = stream_out
                dst.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["mp4", "avi", "short"])
def test_equals_paddlevideo_reference(videos, kind):
    for num_seg, rate in [(4, 2), (8, 3), (8, 32)]:
        assert np.array_equal(read_clip(videos[kind], num_seg, "test", sampling_rate=rate),
                              paddlevideo_clip(videos[kind], num_seg, "test", sampling_rate=rate))
        for seed in range(3):
            ours = read_clip(videos[kind], num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            theirs = paddlevideo_clip(videos[kind], num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            assert np.array_equal(ours, theirs)


def test_variable_frame_rate_matches_paddlevideo(tmp_path):
    # Frame gaps of 20, 33 and 50 ms: the window's pts come from the average timebase.
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for number in range(60):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += (20, 33, 50)[number % 3]
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        gaps = {b.pts - a.pts for a, b in itertools.pairwise(container.decode(video=0))}
    assert len(gaps) > 1
    for num_seg, rate in [(4, 3), (8, 5), (8, 32)]:
        assert np.array_equal(read_clip(path, num_seg, "test", sampling_rate=rate),
                              paddlevideo_clip(path, num_seg, "test", sampling_rate=rate))
        for seed in range(3):
            ours = read_clip(path, num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            theirs = paddlevideo_clip(path, num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            assert np.array_equal(ours, theirs)


def test_trimmed_mp4_with_edit_list_matches_paddlevideo(tmp_path):
    source = encode_video(tmp_path / "gop.mp4", 90, "h264", options={"g": "10", "bf": "3"})
    trimmed = trimmed_copy(source, tmp_path / "trimmed.mp4", first_keyframe=10, cut=13)
    with av.open(str(trimmed)) as container:
        stream = container.streams.video[0]
        assert any(p.is_discard for p in container.demux(stream))
    assert numbers(read_clip(trimmed, 4, "test", sampling_rate=2))[0] == 13  # first shown frame
    for num_seg, rate in [(4, 2), (8, 8), (8, 32)]:
        assert np.array_equal(read_clip(trimmed, num_seg, "test", sampling_rate=rate),
                              paddlevideo_clip(trimmed, num_seg, "test", sampling_rate=rate))
        for seed in range(3):
            ours = read_clip(trimmed, num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            theirs = paddlevideo_clip(trimmed, num_seg, "train", np.random.default_rng(seed), sampling_rate=rate)
            assert np.array_equal(ours, theirs)


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


def test_ffmpeg_stays_quiet_on_corrupt_data(tmp_path, videos, capfd):
    data = bytearray(videos["avi"].read_bytes())
    rng = np.random.default_rng(0)
    # Damage from the first GOP on, so that sampled frames are hit (a planned decode does not
    # read the packets of frames it jumps over).
    for offset in range(600, len(data) - 100, 500):
        data[offset : offset + 40] = rng.bytes(40)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(VideoReadError, match="corrupt.avi: cannot decode"):
        read_clip(corrupt, 8, "test")
    assert capfd.readouterr().err == ""  # FFmpeg's log lines do not reach the console


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


@pytest.mark.parametrize("suffix, codec, options", [(".mp4", "h264", {"movflags": "faststart"}), (".avi", "mpeg4", {})])
def test_half_downloaded_video_is_reported_truncated(tmp_path, suffix, codec, options):
    # 120 frames at 25 fps fit one test window (213 frames), so a file cut at half its
    # bytes decodes about half the frames its header promises.
    good = tmp_path / f"good{suffix}"
    with av.open(str(good), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(120):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    assert read_clip(good, 8, "test").shape == (8, 48, 64, 3)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for threads in (1, 2):  # with or without a helper thread, the same word for the same file
        with pytest.raises(VideoReadError, match=r"cut\.(mp4|avi): truncated or corrupt: decoded \d+ of the 120 frames"):
            sample_frames(cut, 8, "test", threads=threads)
