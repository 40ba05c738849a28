"""Top-k prediction on video files, with PyTorch or with an exported ONNX model.

    predictor = Predictor.from_weights("TimeSformer_k400.pdparams", config="configs/timesformer_k400_videos.yaml")
    predictor = Predictor.from_onnx("inference/TimeSformer/TimeSformer.onnx")
    for p in predictor.predict(["data/example.avi"], top_k=5):
        print(p.video_id, p.topk_class, p.topk_scores, p.topk_label)

Both engines take the seed's input layout, `[N, 3, views * num_seg, H, W]` (the three test
crops stacked along T), run every crop as one clip and average the views (`avg_type`), so
an ONNX file and the weights it came from give the same answer. Videos are decoded by a
thread pool ahead of the model (PyAV and torch release the GIL), so decoding the next batch
overlaps the forward pass of this one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.labels import kinetics400_label_file, read_labels
from ..data.pipeline import VideoPipeline
from ..engine.evaluate import average_views
from ..errors import CheckpointError, ConfigError, UserError, VideoReadError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts")
LIST_EXTENSIONS = (".txt", ".list", ".csv")
SPEC_SUFFIX = ".json"  # TimeSformer.onnx -> TimeSformer.json
INPUT_NAME = "data"
OUTPUT_NAME = "scores"


@dataclass
class InferenceSpec:
    """What an inference model expects and returns; written beside an ONNX file as JSON."""

    num_seg: int = 8  # frames per view
    target_size: int = 224  # crop side
    short_size: int = 224  # short side after resizing, before the crops
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.225, 0.225, 0.225])
    views: int = 3  # UniformCrop: start, end, middle, stacked along T
    num_classes: int = 400
    avg_type: str = "score"  # "score": output = mean of view logits; "prob": mean of view softmaxes
    label_file: str | None = None  # relative to the JSON file's folder
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    opset: int | None = None
    model_config: dict | None = None  # TimeSformerConfig fields

    @property
    def output(self) -> str:
        return "probs" if self.avg_type == "prob" else "logits"

    @property
    def input_shape(self) -> list:
        return ["N", 3, self.views * self.num_seg, self.target_size, self.target_size]

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields.update(output=self.output, input_shape=self.input_shape)
        return json.dumps(fields, indent=2) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "InferenceSpec":
        try:
            fields = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: cannot read the model description ({err})") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})

    @classmethod
    def from_config(cls, cfg, model_config: dict) -> "InferenceSpec":
        """The test-time view of a PaddleVideo config (INFERENCE, runtime_cfg, test Normalization)."""
        mean, std = [0.45] * 3, [0.225] * 3  # TimeSformer_Inference_helper's defaults
        test_pipeline = cfg.PIPELINE.test
        for op in test_pipeline.transform if test_pipeline is not None else ():
            if type(op).__name__ == "Normalization":
                mean, std = list(op.mean), list(op.std)
        return cls(
            num_seg=cfg.INFERENCE.num_seg,
            target_size=cfg.INFERENCE.target_size,
            short_size=cfg.INFERENCE.short_size,
            mean=mean,
            std=std,
            num_classes=model_config["num_classes"],
            avg_type=cfg.MODEL.runtime_cfg.test.avg_type,
            model_config=dict(model_config),
        )

    @classmethod
    def from_model(cls, model_config: dict) -> "InferenceSpec":
        """PaddleVideo's TimeSformer test pipeline for a model, when no config is given."""
        return cls(
            num_seg=model_config["num_frames"],
            target_size=model_config["img_size"],
            short_size=model_config["img_size"],
            num_classes=model_config["num_classes"],
            model_config=dict(model_config),
        )


@dataclass
class Prediction:
    video_id: str
    topk_class: list[int]
    topk_scores: list[float]
    topk_label: list[str] | None = None


class MultiViewModel(nn.Module):
    """`[N, 3, V*T, H, W]` (V crops stacked on T, the seed's layout) -> `[N, classes]`.

    View j is frames `j*T:(j+1)*T`; the model runs each view as one clip and the views are
    averaged: logits (`avg_type="score"`) or softmaxes (`"prob"`), as PaddleVideo's
    RecognizerTransformer does at test time.
    """

    def __init__(self, model: nn.Module, num_seg: int, avg_type: str = "score"):
        super().__init__()
        if avg_type not in ("score", "prob"):
            raise ConfigError(f"MODEL.runtime_cfg.test.avg_type: {avg_type!r} is not 'score' or 'prob'")
        self.model = model
        self.num_seg = num_seg
        self.avg_type = avg_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        views = frames // self.num_seg
        clips = x.view(batch, channels, views, self.num_seg, height, width).transpose(1, 2)
        logits = self.model(clips.reshape(batch * views, channels, self.num_seg, height, width))
        return average_views(logits, views, self.avg_type)


def stack_views(clip: torch.Tensor) -> torch.Tensor:
    """`[V, 3, T, H, W]` (our pipeline) -> `[3, V*T, H, W]` (the seed's, crops concatenated on T)."""
    views, channels, frames, height, width = clip.shape
    return clip.transpose(0, 1).reshape(channels, views * frames, height, width)


# --------------------------------------------------------------------------- inputs and labels


def list_videos(input_path: str | os.PathLike) -> list[str]:
    """A video, a folder of videos (recursive, sorted) or a list file (`path [label]` lines).

    Paths in a list file that are relative and exist relative to the list's folder are
    taken from there; otherwise they are kept as written (and reported if unreadable).
    """
    text = str(input_path)
    path = Path(text)
    if path.is_dir():
        videos = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        if not videos:
            raise UserError(f"--input_file {text}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
        return videos
    if path.suffix.lower() in LIST_EXTENSIONS:
        if not path.is_file():
            raise UserError(f"--input_file {text}: list file not found")
        videos = []
        for line in path.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            entry = line.split()[0]
            beside = path.parent / entry
            videos.append(str(beside) if not Path(entry).is_absolute() and beside.exists() else entry)
        if not videos:
            raise UserError(f"--input_file {text}: the list file names no videos")
        return videos
    return [text]  # a single video; a missing or broken one is reported when it is decoded


def default_labels(num_classes: int, label_file: str | os.PathLike | None) -> list[str] | None:
    """The given label file, else the shipped Kinetics-400 names for a 400-class model, else none."""
    if label_file is not None:
        labels = read_labels(label_file)
    elif num_classes == 400:
        labels = read_labels(kinetics400_label_file())
    else:
        return None
    if len(labels) < num_classes:
        raise UserError(f"label file {label_file}: {len(labels)} names for a model with {num_classes} classes")
    return labels


# --------------------------------------------------------------------------- engines


class TorchEngine:
    """PyTorch, on CPU or CUDA, fp32 or under bf16/fp16 autocast."""

    def __init__(self, model: nn.Module, spec: InferenceSpec, device: str = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if precision not in ("fp32", "bf16", "fp16"):
            raise UserError(f"--precision {precision}: use fp32, bf16 or fp16")
        if precision == "fp16" and self.device.type == "cpu":
            raise UserError("--precision fp16 needs a GPU (--use_gpu=True); on CPU use bf16")
        self.precision = precision
        self.net = MultiViewModel(model, spec.num_seg, spec.avg_type).to(self.device).eval()

    @property
    def description(self) -> str:
        return f"PyTorch on {self.device.type} ({self.precision})"

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.net(batch.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()


class OnnxEngine:
    """ONNX Runtime: CUDAExecutionProvider when asked for and available, else CPU."""

    def __init__(self, model_file: str | os.PathLike, use_gpu: bool = False):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: keep ORT's warnings off the user's console
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        except Exception as err:  # ORT raises its own exception types for any unreadable model
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{model_file}: not a readable ONNX model ({reason})") from None
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name

    @property
    def description(self) -> str:
        return f"ONNX Runtime ({self.provider})"

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.numpy()})[0]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Classes by decreasing probability (ties: lower id first) and their probabilities."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [int(i) for i in order], [float(probs[i]) for i in order]


# --------------------------------------------------------------------------- predictor


class Predictor:
    """Decode videos in parallel, run an engine on batches, return the top-k classes per video."""

    def __init__(self, engine, spec: InferenceSpec, labels: list[str] | None = None, num_workers: int = 2):
        self.engine = engine
        self.spec = spec
        self.labels = labels
        self.num_workers = max(1, num_workers)
        self.pipeline = VideoPipeline.for_mode(
            "test",
            spec.num_seg,
            mean=spec.mean,
            std=spec.std,
            short_side_min=spec.short_size,
            short_side_max=spec.short_size,
            crop_size=spec.target_size,
        )

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config=None,
        overrides: Sequence[str] = (),
        device: str = "cpu",
        precision: str = "fp32",
        label_file: str | os.PathLike | None = None,
        num_workers: int = 2,
    ) -> "Predictor":
        """PyTorch engine from any checkpoint `timesformer.load_model` reads.

        With a config, the model is the config's architecture (checked against the
        checkpoint) and the test pipeline is the config's; without one, both come from the
        checkpoint and PaddleVideo's TimeSformer test pipeline.
        """
        model, spec = load_checked_model(weights, config, overrides)
        engine = TorchEngine(model, spec, device=device, precision=precision)
        return cls(engine, spec, default_labels(spec.num_classes, label_file), num_workers)

    @classmethod
    def from_onnx(
        cls,
        model_file: str | os.PathLike,
        use_gpu: bool = False,
        label_file: str | os.PathLike | None = None,
        num_workers: int = 2,
    ) -> "Predictor":
        """ONNX Runtime engine for a `timesformer export` file (its JSON beside it says what it expects)."""
        model_file = Path(model_file)
        if not model_file.is_file():
            raise CheckpointError(f"{model_file}: ONNX model file not found")
        spec_file = model_file.with_suffix(SPEC_SUFFIX)
        spec = InferenceSpec.from_json_file(spec_file) if spec_file.is_file() else None
        engine = OnnxEngine(model_file, use_gpu=use_gpu)
        if spec is None:  # an ONNX file from elsewhere: read the class count, assume the seed's pipeline
            output = engine.session.get_outputs()[0].shape
            spec = InferenceSpec(num_classes=output[-1] if isinstance(output[-1], int) else 400)
        if label_file is None and spec.label_file:
            label_file = model_file.parent / spec.label_file
        return cls(engine, spec, default_labels(spec.num_classes, label_file), num_workers)

    def load_clip(self, path: str) -> torch.Tensor:
        """`[3, V*T, H, W]` test tensor of one video; `VideoReadError` naming it if unreadable."""
        return stack_views(self.pipeline(path))

    def _decoded(self, videos: Iterable[str]) -> Iterator[tuple[str, torch.Tensor | None, VideoReadError | None]]:
        """(path, clip, None) or (path, None, error) in input order, decoded ahead by a thread pool."""

        def load(path: str):
            try:
                return self.load_clip(path), None
            except VideoReadError as err:
                return None, err
            except Exception as err:  # any decoder failure is this video's problem, not the run's
                return None, VideoReadError(path, f"cannot be read ({type(err).__name__}: {err})")

        videos = iter(videos)
        ahead = 2 * self.num_workers + 2
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="decode") as pool:
            pending = deque((v, pool.submit(load, v)) for v in itertools.islice(videos, ahead))
            while pending:
                path, future = pending.popleft()
                for nxt in itertools.islice(videos, 1):
                    pending.append((nxt, pool.submit(load, nxt)))
                clip, error = future.result()
                yield path, clip, error

    def iter_predict(
        self, videos: Iterable[str], top_k: int = 5, batch_size: int = 1
    ) -> Iterator[Prediction | VideoReadError]:
        """One `Prediction` per readable video and one `VideoReadError` per unreadable one, in input order."""
        if top_k < 1:
            raise UserError(f"--top_k {top_k}: must be at least 1")
        top_k = min(top_k, self.spec.num_classes)
        if batch_size < 1:
            raise UserError(f"--batch_size {batch_size}: must be at least 1")
        batch: list[tuple[str, torch.Tensor]] = []
        errors: list[VideoReadError] = []

        def flush() -> Iterator[Prediction | VideoReadError]:
            if batch:
                yield from self._run_batch(batch, top_k)
                batch.clear()
            yield from errors
            errors.clear()

        for path, clip, error in self._decoded(videos):
            if error is not None:
                errors.append(error)
                if not batch:
                    yield from flush()
                continue
            batch.append((path, clip))
            if len(batch) == batch_size:
                yield from flush()
        yield from flush()

    def predict(self, videos: str | os.PathLike | Iterable[str], top_k: int = 5, batch_size: int = 1) -> list[Prediction]:
        """Predictions for a video, a folder, a list file or a list of paths; raises `VideoReadError` on a broken video."""
        if isinstance(videos, (str, os.PathLike)):
            videos = list_videos(videos)
        results = []
        for result in self.iter_predict(videos, top_k=top_k, batch_size=batch_size):
            if isinstance(result, VideoReadError):
                raise result
            results.append(result)
        return results

    def _run_batch(self, batch: list[tuple[str, torch.Tensor]], k: int) -> list[Prediction]:
        outputs = self.engine(torch.stack([clip for _, clip in batch]))
        probs = outputs if self.spec.output == "probs" else softmax(outputs)
        predictions = []
        for (path, _), row in zip(batch, probs):
            classes, scores = top_k(row, k)
            names = [self.labels[c] for c in classes] if self.labels else None
            predictions.append(Prediction(path, classes, scores, names))
        return predictions


# --------------------------------------------------------------------------- model + config


CHECKED_FIELDS = ("embed_dim", "depth", "num_classes", "patch_size", "attention_type")


def load_checked_model(
    weights: str | os.PathLike, config=None, overrides: Sequence[str] = ()
) -> tuple[nn.Module, InferenceSpec]:
    """An eval-mode model from `weights` and its inference spec.

    `config` (a YAML path or a loaded `Config`) decides the architecture, which must match
    the checkpoint's, and the test pipeline; without one both come from the checkpoint.
    """
    from ..engine.config import load_config
    from ..model.checkpoints import load_model

    if config is None:
        if overrides:
            raise UserError(f"-o {overrides[0]}: overrides need a config (-c)")
        model = load_model(weights)
        return model, InferenceSpec.from_model(model.config.to_dict())

    cfg = load_config(config, overrides) if isinstance(config, (str, os.PathLike)) else config
    wanted = cfg.model_config()
    # Weights record neither the head count (heads only split the width) nor the LayerNorm eps.
    model = load_model(weights, num_heads=wanted["num_heads"], norm_eps=wanted["norm_eps"])
    found = model.config.to_dict()
    for name in CHECKED_FIELDS:
        if found[name] != wanted[name]:
            raise CheckpointError(f"{weights}: the checkpoint has {name}={found[name]} but the config says {wanted[name]}")
    return model, InferenceSpec.from_config(cfg, found)
