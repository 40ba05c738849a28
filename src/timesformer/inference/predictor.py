"""`Predictor`: videos in, top-k classes, embeddings or a timeline out, on either engine.

    predictor = Predictor.from_weights("TimeSformer_k400.pdparams", config="configs/timesformer_k400_videos.yaml")
    predictor = Predictor.from_onnx("inference/TimeSformer/TimeSformer.onnx")
    for p in predictor.predict(["data/example.avi"], top_k=5):
        print(p.video_id, p.topk_class, p.topk_scores, p.topk_label)
    rows, records = predictor.features(["a.mp4", "b.mp4"])       # [N, D], one dict per row
    timeline = predictor.timeline("match.mp4", window=8, stride=4)  # one prediction per window

Both engines take PaddleVideo's input layout, `[N, 3, views * num_seg, H, W]` (the three test
crops stacked along T), run every crop as one clip and average the views (`avg_type`), so
an ONNX file and the weights it came from give the same answer. Whole videos are decoded by
a thread pool ahead of the model, the windows of a long video by one thread decoding it
front to back, so decoding overlaps the forward pass. On a GPU (`decode_sizing`) the pool has a
thread per core and batches are `GPU_BATCH_SIZE` videos, so that the GPU does not wait.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.pipeline import VideoPipeline
from ..data.video import DataThreads, data_threads, usable_cores
from ..errors import CheckpointError, UserError, VideoReadError
from .decode import decode_ahead, in_background
from .engines import OnnxEngine, TorchEngine
from .inputs import list_videos
from .labels import default_labels
from .loading import load_checked_model
from .spec import SPEC_SUFFIX, InferenceSpec
from .stream import StreamPrediction, stream_predictions
from .views import stack_views
from .windows import Window, check_window_args, iter_window_frames, plan_windows, probe


@dataclass
class Prediction:
    video_id: str
    topk_class: list[int]
    topk_scores: list[float]
    topk_label: list[str] | None = None


@dataclass
class WindowPrediction:
    start_s: float
    end_s: float
    topk_class: list[int]
    topk_scores: list[float]
    topk_label: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Timeline:
    """One video's predictions along time; `probs` `[W, classes]` holds every class's probability."""

    video_id: str
    windows: list[WindowPrediction]
    probs: np.ndarray


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Classes by decreasing probability (ties: lower id first) and their probabilities."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [int(i) for i in order], [float(probs[i]) for i in order]


def video_id(path: str) -> str:
    """A video's name in features.jsonl: its file name without the extension."""
    return Path(path).stem


CPU_DECODE_THREADS = 2  # the most decode threads beside a CPU model, on the cores it leaves free
GPU_BATCH_SIZE = 8  # videos per forward on a GPU: 24 clips of 3 views, where TimeSformer-B's throughput levels off


def decode_sizing(
    on_gpu: bool, num_workers: int | None = None, cores: int | None = None, model_threads: int | None = None
) -> DataThreads:
    """Threads decoding ahead of the engine (`num_workers`; 0: each video decoded inline, just
    before its forward) and threads per decode (0: every core, see `split_decode_threads`).

    On a GPU the cores have nothing else to do: one decode per core, more threads per decode
    only where cores are left over (`data_threads`). On the CPU the model's threads (`model_threads`,
    torch's count) run on the cores, and a decode beside them makes each parallel GEMM wait for
    the core it took: on 2 cores, 2 decode threads gave 0.87-0.91x of the model-only rate,
    decoding inline (every core for FFmpeg, then every core for the model) 1.00x. So by default
    the CPU decodes inline, unless the model leaves cores free: then up to
    `CPU_DECODE_THREADS` decode on those, sharing them."""
    cores = usable_cores() if cores is None else cores
    if on_gpu:
        return data_threads(cores if num_workers is None else num_workers, cores, env={})
    if num_workers is not None:
        return DataThreads(num_workers, 0, cores, 1)
    spare = max(cores - (torch.get_num_threads() if model_threads is None else model_threads), 0)
    workers = min(CPU_DECODE_THREADS, spare)
    return DataThreads(workers, spare // workers if workers else 0, cores, 1)


MAX_DECODE_THREADS = 256


def check_feed_args(batch_size: int | None, num_workers: int | None) -> None:
    """`--batch_size` / `--num_workers` as a user gives them (None: the default)."""
    if batch_size is not None:
        _check_positive("--batch_size", batch_size)
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or not 0 <= num_workers <= MAX_DECODE_THREADS):  # fmt: skip
        raise UserError(f"--num_workers {num_workers!r}: must be a whole number from 0 (decode inline) to {MAX_DECODE_THREADS}")


def _check_positive(flag: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise UserError(f"{flag} {value}: must be a whole number >= 1")


class Predictor:
    """Decode videos, run an engine on batches, return top-k classes, embeddings or timelines."""

    def __init__(self, engine, spec: InferenceSpec, labels: list[str] | None = None, num_workers: int | None = None):
        """`num_workers`: threads decoding ahead (default: `decode_sizing`'s for the engine's device;
        an engine without `on_gpu`, e.g. a test's stand-in, counts as a CPU one)."""
        self.engine = engine
        self.spec = spec
        self.labels = labels
        on_gpu = getattr(engine, "on_gpu", False)
        check_feed_args(None, num_workers)
        self.decoding = decode_sizing(on_gpu, num_workers)
        self.batch_size = GPU_BATCH_SIZE if on_gpu else 1  # videos per forward unless a call says
        self.pipeline = VideoPipeline.for_mode(
            "test",
            spec.num_seg,
            mean=spec.mean,
            std=spec.std,
            short_side_min=spec.short_size,
            short_side_max=spec.short_size,
            crop_size=spec.target_size,
            decode_threads=self.decoding.decode_threads,
        )

    @property
    def num_workers(self) -> int:
        """Threads decoding whole videos ahead of the engine (0: inline, before each forward)."""
        return self.decoding.workers

    def feed(self, batch_size: int | None = None) -> str:
        """How videos reach the engine, for a log line."""
        decoding, batch = self.decoding, batch_size or self.batch_size
        threads = decoding.decode_threads
        per_video = f"{threads} thread(s) per video" if threads else "every core per video"
        how = (
            f"each video decoded just before its forward ({per_video})"
            if decoding.workers == 0
            else f"{decoding.workers} decode threads ahead, {per_video}"
        )
        return f"{how}, batch {batch} video(s), {decoding.cores} cores"

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config=None,
        overrides: Sequence[str] = (),
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        label_file: str | os.PathLike | None = None,
        num_workers: int | None = None,
    ) -> "Predictor":
        """PyTorch engine from any checkpoint `timesformer.load_model` reads.

        With a config, the model is the config's architecture (checked against the
        checkpoint) and the test pipeline is the config's; without one, both come from the
        checkpoint and PaddleVideo's TimeSformer test pipeline. `precision`: "fp32", "bf16",
        "fp16" (CUDA) or "auto" (bf16 where the device computes it natively).
        """
        from ..model.hub import checkpoint_class_names

        model, spec = load_checked_model(weights, config, overrides)
        predictor = cls.from_model(model, spec, device, precision, label_file, num_workers)
        names = checkpoint_class_names(weights) if label_file is None else None  # a transformers config's id2label
        if names is not None and len(names) == spec.num_classes:
            predictor.labels = names
        return predictor

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        spec: InferenceSpec | None = None,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        label_file: str | os.PathLike | None = None,
        num_workers: int | None = None,
    ) -> "Predictor":
        """PyTorch engine on a model in memory (its own test pipeline unless `spec` says otherwise)."""
        spec = spec or InferenceSpec.from_model(model.config.to_dict())
        engine = TorchEngine(model, spec, device=device, precision=precision)
        return cls(engine, spec, default_labels(spec.num_classes, label_file), num_workers)

    @classmethod
    def from_onnx(
        cls,
        model_file: str | os.PathLike,
        use_gpu: bool = False,
        label_file: str | os.PathLike | None = None,
        num_workers: int | None = None,
    ) -> "Predictor":
        """ONNX Runtime engine for a `timesformer export` file (its JSON beside it says what it expects)."""
        model_file = Path(model_file)
        if not model_file.is_file():
            raise CheckpointError(f"{model_file}: ONNX model file not found")
        spec_file = model_file.with_suffix(SPEC_SUFFIX)
        spec = InferenceSpec.from_json_file(spec_file) if spec_file.is_file() else None
        engine = OnnxEngine(model_file, use_gpu=use_gpu)
        if spec is None:  # an ONNX file from elsewhere: read the class count, assume PaddleVideo's pipeline
            output = engine.session.get_outputs()[0].shape
            spec = InferenceSpec(num_classes=output[-1] if isinstance(output[-1], int) else 400)
        if label_file is None and spec.label_file:
            label_file = model_file.parent / spec.label_file
        return cls(engine, spec, default_labels(spec.num_classes, label_file), num_workers)

    # ------------------------------------------------------------------- clips

    def load_clip(self, path: str | os.PathLike) -> torch.Tensor:
        """`[3, V*T, H, W]` test tensor of one video; `VideoReadError` naming it if unreadable."""
        return stack_views(self.pipeline(path))

    def clip_from_frames(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """`[3, V*T, H, W]` from `num_seg` uint8 `[H, W, 3]` RGB frames: the config's scale, crops, normalization."""
        return stack_views(self.pipeline.transform(np.stack(frames)))

    def scores(self, clips: torch.Tensor) -> np.ndarray:
        """Class probabilities `[N, classes]` of a batch of clips `[N, 3, V*T, H, W]`."""
        outputs = self.engine(clips)
        return outputs if self.spec.output == "probs" else softmax(outputs)

    def predict_clips(self, clips: torch.Tensor, top_k: int = 5, video_ids: Sequence[str] | None = None) -> list[Prediction]:
        """Top-k of each clip of a batch `[N, 3, V*T, H, W]` (from `load_clip`), one `Prediction` each."""
        k = min(top_k, self.spec.num_classes)
        ids = video_ids if video_ids is not None else [str(i) for i in range(len(clips))]
        return [Prediction(vid, *self.top_classes(row, k)) for vid, row in zip(ids, self.scores(clips))]

    def _batch_size(self, batch_size: int | None) -> int:
        """`batch_size`, checked, or this predictor's default (1, or `GPU_BATCH_SIZE` on a GPU)."""
        batch_size = self.batch_size if batch_size is None else batch_size
        _check_positive("--batch_size", batch_size)
        return batch_size

    def top_classes(self, probs: np.ndarray, k: int) -> tuple[list[int], list[float], list[str] | None]:
        """The k most probable classes of one probability vector, their probabilities and names."""
        classes, scores = top_k(probs, k)
        return classes, scores, [self.labels[c] for c in classes] if self.labels else None

    # ------------------------------------------------------------------- whole videos

    def iter_predict(
        self, videos: Iterable[str], top_k: int = 5, batch_size: int | None = None
    ) -> Iterator[Prediction | VideoReadError]:
        """One `Prediction` per readable video and one `VideoReadError` per unreadable one, in input order."""
        _check_positive("--top_k", top_k)
        batch_size = self._batch_size(batch_size)
        for paths, clips, errors in self._batches(videos, self.load_clip, batch_size):
            if paths:
                yield from self.predict_clips(torch.stack(clips), top_k, paths)
            yield from errors

    def predict(self, videos: str | os.PathLike | Iterable[str], top_k: int = 5, batch_size: int | None = None) -> list[Prediction]:
        """Predictions for a video, a folder, a list file or a list of paths; raises `VideoReadError` on a broken video."""
        return _raise_errors(self.iter_predict(_as_list(videos), top_k=top_k, batch_size=batch_size))

    def _batches(self, videos: Iterable[str], load, batch_size: int):
        """`(paths, loaded, errors)` groups in input order: up to `batch_size` readable videos,
        then the errors met while gathering them (an error alone when no video is pending)."""
        paths, loaded, errors = [], [], []
        for path, value, error in decode_ahead(videos, load, self.num_workers):
            if error is not None:
                errors.append(error)
                if not paths:
                    yield [], [], errors
                    errors = []
                continue
            paths.append(path)
            loaded.append(value)
            if len(paths) == batch_size:
                yield paths, loaded, errors
                paths, loaded, errors = [], [], []
        if paths or errors:
            yield paths, loaded, errors

    # ------------------------------------------------------------------- features

    def iter_features(
        self, videos: Iterable[str], window: float | None = None, stride: float | None = None, batch_size: int | None = None
    ) -> Iterator[tuple[str, np.ndarray, list[dict]] | VideoReadError]:
        """Per readable video `(path, rows [n, D] float32, n records)`, or its `VideoReadError`, in input order.

        Without `window` a video gives one row: the final-norm cls token of each test view,
        averaged over the views; with `window` (seconds) one row per window (see `timeline`).
        Records: `{"video_id", "path", "start_s", "end_s"}`.
        """
        check_window_args(window, stride)
        batch_size = self._batch_size(batch_size)
        if window is not None:
            for path in videos:
                try:
                    spans, rows = [], []
                    for windows, clips in self._window_batches(path, window, stride, batch_size):
                        spans += windows
                        rows.append(self.engine.features(clips))
                except VideoReadError as err:
                    yield err
                    continue
                records = [_record(path, w.start_s, w.end_s) for w in spans]
                yield path, np.concatenate(rows).astype(np.float32), records
            return

        def load(path: str):
            clip = self.load_clip(path)
            return clip, min(self.clip_seconds, probe(path).duration_s)

        for paths, loaded, errors in self._batches(videos, load, batch_size):
            if paths:
                rows = self.engine.features(torch.stack([clip for clip, _ in loaded])).astype(np.float32)
                for i, (path, (_, end_s)) in enumerate(zip(paths, loaded)):
                    yield path, rows[i : i + 1], [_record(path, 0.0, end_s)]
            yield from errors

    def features(
        self, videos: str | os.PathLike | Iterable[str], window: float | None = None, stride: float | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, list[dict]]:
        """Embeddings `[N, D]` float32 and one record per row (`video_id`, `path`, `start_s`, `end_s`).

        One row per video (views averaged), or per window with `window` seconds; raises
        `VideoReadError` on a broken video (`iter_features` skips them instead).
        """
        results = _raise_errors(self.iter_features(_as_list(videos), window, stride, batch_size))
        if not results:
            return np.zeros((0, 0), np.float32), []
        return np.concatenate([rows for _, rows, _ in results]), [r for _, _, records in results for r in records]

    # ------------------------------------------------------------------- timelines

    def window_clips(self, path: str | os.PathLike, window: float, stride: float | None = None) -> Iterator[tuple[Window, torch.Tensor]]:
        """`(Window, clip [3, V*T, H, W])` along a video, decoded once front to back (see `windows`)."""
        check_window_args(window, stride)
        path = str(path)
        windows = plan_windows(probe(path), window, stride, self.spec.num_seg)
        for span, frames in iter_window_frames(path, windows):
            yield span, self.clip_from_frames(frames)

    def _window_batches(self, path: str, window: float, stride: float | None, batch_size: int):
        """Batches `(windows, clips [n, 3, V*T, H, W])`, decoded and transformed by a thread ahead of the model."""
        spans, clips = [], []
        for span, clip in in_background(self.window_clips(path, window, stride), maxsize=batch_size + 1):
            spans.append(span)
            clips.append(clip)
            if len(spans) == batch_size:
                yield spans, torch.stack(clips)
                spans, clips = [], []
        if spans:
            yield spans, torch.stack(clips)

    def timeline(
        self, path: str | os.PathLike, window: float, stride: float | None = None, top_k: int = 5, batch_size: int | None = None
    ) -> Timeline:
        """Top-k of each window `[start, start + window)` (every `stride` seconds, default `window`).

        Each window is sampled as the test pipeline samples a whole clip: `num_seg` frames
        spread over it, the config's crops. The video is decoded once; `VideoReadError` if broken.
        """
        _check_positive("--top_k", top_k)
        batch_size = self._batch_size(batch_size)
        k = min(top_k, self.spec.num_classes)
        windows, probs = [], []
        for spans, clips in self._window_batches(str(path), window, stride, batch_size):
            for span, row in zip(spans, self.scores(clips)):
                windows.append(WindowPrediction(span.start_s, span.end_s, *self.top_classes(row, k)))
                probs.append(row)
        return Timeline(str(path), windows, np.stack(probs))

    def iter_timelines(
        self, videos: Iterable[str], window: float, stride: float | None = None, top_k: int = 5, batch_size: int | None = None
    ) -> Iterator[Timeline | VideoReadError]:
        """`timeline` of each video, or its `VideoReadError`, in input order."""
        check_window_args(window, stride)
        for path in videos:
            try:
                yield self.timeline(path, window, stride, top_k, batch_size)
            except VideoReadError as err:
                yield err


    # ------------------------------------------------------------------- live streams

    def stream(self, source, window: float | None = None, every: float = 1.0, top_k: int = 5) -> Iterator[StreamPrediction]:
        """Predictions on the last `window` seconds of a live `source` (camera device, URL, "-",
        a pipe, a file object) every `every` seconds, dropping windows when the model is slower
        than real time (see `timesformer.inference.stream`). `window` defaults to the test clip's span."""
        _check_positive("--top_k", top_k)
        window = self.clip_seconds if window is None else window
        return stream_predictions(self, source, window, every, top_k)

    @property
    def clip_seconds(self) -> float:
        """The span the test pipeline samples a whole clip from: sampling_rate * num_seg / target_fps."""
        return self.pipeline.sampling_rate * self.spec.num_seg / self.pipeline.target_fps


def _record(path: str, start_s: float, end_s: float) -> dict:
    return {"video_id": video_id(path), "path": str(path), "start_s": round(float(start_s), 6), "end_s": round(float(end_s), 6)}


def _as_list(videos: str | os.PathLike | Iterable[str]) -> list[str]:
    return list_videos(videos) if isinstance(videos, (str, os.PathLike)) else [str(v) for v in videos]


def _raise_errors(results: Iterable) -> list:
    out = []
    for result in results:
        if isinstance(result, VideoReadError):
            raise result
        out.append(result)
    return out
