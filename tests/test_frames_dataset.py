"""A frames-format list (PaddleVideo's FrameDataset) through the config and the engine's
dataset builder: the same clips as the videos they were extracted from, up to JPEG loss."""

from __future__ import annotations

import torch

from timesformer.data.prepare.frames import extract_frames
from timesformer.data.synth import write_motion_dataset
from timesformer.engine.config import load_config
from timesformer.engine.loaders import build_dataset


def test_frame_dataset_config_reads_the_extracted_frames(tmp_path):
    write_motion_dataset(tmp_path / "synth", train=4, val=4, frames=8, size=32, seed=1, workers=1, progress=False)
    extract_frames(tmp_path / "synth" / "val.list", tmp_path / "frames", workers=1, progress=False)
    common = ["DATASET.cache=false"]
    videos = build_dataset(load_config("configs/demo_motion.yaml", [
        *common, "DATASET.test.data_prefix=", f"DATASET.test.file_path={tmp_path / 'synth' / 'val.list'}",
    ]), "test", 0)  # fmt: skip
    frames = build_dataset(load_config("configs/demo_motion.yaml", [  # frames.list paths are relative to its folder
        *common, f"DATASET.test.data_prefix={tmp_path / 'frames'}", "DATASET.test.format=FrameDataset",
        "PIPELINE.test.decode.name=FrameDecoder",
        f"DATASET.test.file_path={tmp_path / 'frames' / 'frames.list'}",
    ]), "test", 0)  # fmt: skip
    assert type(frames).__name__ == "FrameListDataset" and len(frames) == len(videos) == 4
    for index in range(4):
        from_video, from_frames = videos[(0, index)], frames[(0, index)]
        assert from_frames["label"] == from_video["label"] and from_frames["clip"].shape == (1, 3, 8, 32, 32)
        # Same frames in the same order: each extracted frame is nearest to the video frame of
        # its own index (JPEG's 4:2:0 chroma and the synth's pixel noise move pixels a little).
        # The engine's datasets deliver pixels; the device normalizes them as below.
        a, b = (dataset.pipeline.normalize(item["clip"])[0].transpose(0, 1).flatten(1)
                for dataset, item in ((frames, from_frames), (videos, from_video)))  # fmt: skip
        assert torch.equal(torch.cdist(a, b).argmin(1), torch.arange(8))
        assert (a - b).abs().mean() < 12 / 255 / 2.25  # under 12 grey levels after the demo's normalization
