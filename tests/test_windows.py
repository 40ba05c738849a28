"""Timelines along a long video and live streams: frames that encode their own index, colour
segments of known order, a stream written by the test into a pipe."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from timesformer.cli import main
from timesformer.data.synth import encode_video
from timesformer.inference import InferenceSpec, Predictor
from timesformer.inference.engines import TorchEngine
from timesformer.model.checkpoints import save_model
from timesformer.model.timesformer import build_model

SIZE = 32
COLORS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


def _spec(num_seg: int = 4, num_classes: int = 3) -> InferenceSpec:
    # mean 0, std 1: the model sees pixel / 255, which the tests can read back.
    return InferenceSpec(num_seg=num_seg, target_size=SIZE, short_size=SIZE, mean=[0.0] * 3, std=[1.0] * 3, num_classes=num_classes)


class ColorModel(nn.Module):
    """Logits = each channel's mean over the clip: the class is the dominant colour. `delay`
    makes it artificially slow."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return x.mean(dim=(2, 3, 4)) * 20


class RecordingEngine:
    """Keeps every batch it is given; scores are uniform."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        self.batches.append(batch.clone())
        return np.zeros((len(batch), 2), np.float32)


def _segments(order: list[str], seconds: float, fps: int) -> np.ndarray:
    frames = [np.broadcast_to(np.array(COLORS[c], np.uint8), (int(seconds * fps), SIZE, SIZE, 3)) for c in order]
    return np.ascontiguousarray(np.concatenate(frames))


def test_each_window_gets_exactly_the_frames_the_test_pipeline_samples(tmp_path):
    fps, count = 10, 63
    index = np.arange(count)
    frames = np.zeros((count, SIZE, SIZE, 3), np.uint8)
    frames[..., 0] = ((index % 16) * 16 + 8)[:, None, None]  # the frame's index, in red and green
    frames[..., 1] = ((index // 16) * 16 + 8)[:, None, None]
    frames[..., 2] = 128
    video = tmp_path / "indexed.mp4"
    encode_video(frames, video, fps=fps)

    engine = RecordingEngine()
    predictor = Predictor(engine, _spec(num_seg=4, num_classes=2))
    timeline = predictor.timeline(video, window=2.0, stride=1.5, batch_size=2)
    # Windows [0, 2), [1.5, 3.5), [3, 5) fit in 6.3 s; [4.5, 6.5) does not.
    assert [(w.start_s, w.end_s) for w in timeline.windows] == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    clips = torch.cat(engine.batches)  # [3, 3, V*T, H, W], views stacked on T
    assert clips.shape == (3, 3, 3 * 4, SIZE, SIZE)
    pixels = (clips[:, :2, :, SIZE // 2, SIZE // 2] * 255).numpy()  # [windows, (r, g), V*T]
    seen = np.round((pixels[:, 0] - 8) / 16) + 16 * np.round((pixels[:, 1] - 8) / 16)
    for w, start in enumerate((0.0, 1.5, 3.0)):
        first = math.ceil(start * fps)
        # PaddleVideo's Sampler over a clip of window * fps frames: linspace, truncated.
        expected = [first + int(p) for p in np.linspace(0, 2.0 * fps - 1, 4)]
        assert seen[w].tolist() == expected * 3, (w, seen[w])


def test_windows_inside_a_segment_get_its_class(tmp_path):
    order = ["red", "green", "blue", "red"]
    video = tmp_path / "joined.mp4"
    encode_video(_segments(order, 2.0, 10), video, fps=10)
    predictor = Predictor(TorchEngine(ColorModel(), _spec()), _spec(), labels=list(COLORS))
    timeline = predictor.timeline(video, window=1.0, stride=0.5, top_k=2)
    assert len(timeline.windows) == 15 and timeline.probs.shape == (15, 3)
    checked = 0
    for w in timeline.windows:
        first, last = int(w.start_s // 2), int((w.end_s - 1e-6) // 2)
        if first == last:  # the window lies inside one segment
            assert w.topk_label[0] == order[first], w
            checked += 1
    assert checked == 12


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(img_size=SIZE, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=4, num_classes=3)
    return save_model(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_predict_window_cli_prints_lines_writes_json_and_a_plot(tiny_weights, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs the optional matplotlib")
    video = tmp_path / "joined.mp4"
    encode_video(_segments(["red", "green", "blue"], 2.0, 10), video, fps=10)
    out_json, plot = tmp_path / "t.json", tmp_path / "t.png"
    code = main(["predict", "-w", str(tiny_weights), "-i", str(video), "--window", "2", "--stride", "1",
                 "--top_k", "2", "--json", str(out_json), "--plot", str(plot), "--precision", "fp32"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == f"Current video file: {video}" and len(lines) == 1 + 5
    (record,) = json.loads(out_json.read_text())
    assert [(w["start_s"], w["end_s"]) for w in record["windows"]] == [(s, s + 2.0) for s in (0.0, 1.0, 2.0, 3.0, 4.0)]
    for line, w in zip(lines[1:], record["windows"]):
        assert set(w) == {"start_s", "end_s", "topk_class", "topk_scores", "topk_label"} and len(w["topk_class"]) == 2
        assert line == f"\t{w['start_s']:.2f}-{w['end_s']:.2f} {w['topk_class'][0]} {w['topk_scores'][0]:.4f}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for bad in (["--window", "0"], ["--window", "1e9"], ["--plot", str(plot)], ["--window", "1", "--plot", str(video)],
                ["--window", "1", "--json", str(video)]):  # fmt: skip
        assert main(["predict", "-w", str(tiny_weights), "-i", str(video), *bad]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "Traceback" not in err[0], err
    assert av.open(str(video)).streams.video[0].frames == 60  # the input is untouched


def _write_stream(fileobj, frames: np.ndarray, fps: int, realtime: bool) -> None:
    """MPEG-TS (MPEG-2 video, no B-frames) into `fileobj`, paced at `fps` when `realtime`."""
    # Small IO buffer, packets flushed: each frame reaches the pipe when it is encoded.
    with av.open(fileobj, "w", format="mpegts", buffer_size=188 * 8, options={"flush_packets": "1"}) as container:
        stream = container.add_stream("mpeg2video", rate=Fraction(fps), options={"bf": "0", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        started = time.monotonic()
        for i, image in enumerate(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            if realtime:
                time.sleep(max(0.0, started + (i + 1) / fps - time.monotonic()))
        container.mux(stream.encode())


def test_stream_from_a_pipe_keeps_up_with_a_slow_model(tmp_path):
    order, fps = ["red", "green", "blue", "red"], 20
    frames = _segments(order, 1.0, fps)
    read_fd, write_fd = os.pipe()
    writer_file = os.fdopen(write_fd, "wb", buffering=0)
    writer = threading.Thread(target=lambda: (_write_stream(writer_file, frames, fps, True), writer_file.close()), daemon=True)
    writer.start()
    slow = 0.3  # seconds per prediction; a window ends every 0.1 s of stream
    predictor = Predictor(TorchEngine(ColorModel(delay=slow), _spec()), _spec(), labels=list(COLORS))
    with os.fdopen(read_fd, "rb") as source:
        predictions = list(predictor.stream(source, window=0.5, every=0.1, top_k=1))
    writer.join(timeout=10)
    assert len(predictions) >= 5
    assert sum(p.dropped for p in predictions) >= 10  # it skipped windows instead of falling behind
    assert max(p.latency_s for p in predictions) < 2 * slow + 0.5, [p.latency_s for p in predictions]
    checked = 0
    for p in predictions:
        first, last = int(p.start_s), int(p.end_s - 1e-6)
        if first == last:
            assert p.topk_label[0] == order[first], p
            checked += 1
    assert checked >= 3


def test_stream_cli_reads_stdin_and_writes_json_lines(tiny_weights, tmp_path, monkeypatch, capsys):
    ts = tmp_path / "clip.ts"
    with open(ts, "wb") as f:
        _write_stream(f, _segments(["red", "blue"], 1.0, 10), 10, False)
    out = tmp_path / "live.jsonl"

    class Stdin:
        buffer = open(ts, "rb")

    monkeypatch.setattr("sys.stdin", Stdin)
    code = main(["predict", "-w", str(tiny_weights), "--stream", "-", "--window", "0.5", "--every", "0.5", "--json", str(out)])
    Stdin.buffer.close()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    lines = captured.out.splitlines()
    assert len(records) == len(lines) >= 1 and "latency" in lines[0]
    assert set(records[0]) >= {"start_s", "end_s", "topk_class", "topk_scores", "latency_s", "dropped", "time"}
    assert "windows dropped" in captured.err
    assert main(["predict", "-w", str(tiny_weights), "--stream", str(tmp_path / "absent.ts")]) == 1
    assert main(["predict", "-w", str(tiny_weights), "--stream", "-", "-i", str(ts)]) == 1


def test_stream_open_on_a_silent_url_ends_at_ctrl_c_or_at_its_timeout(monkeypatch):
    """FFmpeg waits for a silent URL until its open timeout; Ctrl-C must not wait with it."""
    import _thread
    import socket

    from timesformer.errors import UserError
    from timesformer.inference import stream

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # the kernel completes the connections; nothing is ever sent back
        url = f"http://127.0.0.1:{server.getsockname()[1]}/live.ts"
        ctrl_c = threading.Timer(0.3, _thread.interrupt_main)  # SIGINT's path: KeyboardInterrupt in the main thread
        started = time.monotonic()
        ctrl_c.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                stream.open_source(url)
        finally:
            ctrl_c.cancel()
        assert time.monotonic() - started < 2.0 < stream.OPEN_TIMEOUT_SECONDS
        monkeypatch.setattr(stream, "OPEN_TIMEOUT_SECONDS", 0.5)
        with pytest.raises(UserError, match="nothing arrived for 0.5 s"):  # a timeout is an error, not a Ctrl-C
            stream.open_source(url)
