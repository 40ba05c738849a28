"""What an inference model expects and returns: `InferenceSpec`, written beside an ONNX file."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

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
