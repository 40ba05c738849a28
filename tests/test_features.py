"""`timesformer features` / `Predictor.features`: against transformers, resumable, torchrun = one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from timesformer import Predictor, preprocess
from timesformer.cli import main
from timesformer.data.synth import encode_video
from timesformer.inference.engines import TorchEngine

NUM_FRAMES, SIZE = 4, 32


def _video(path: Path, seed: int, frames: int = 12, fps: int = 4) -> str:
    """A short video of smooth random content (different per seed), 32x40."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(frames, 4, 5, 3)).astype(np.float32)
    image = np.kron(base, np.ones((1, 8, 8, 1)))  # 8x8 blocks survive the codec
    encode_video(np.clip(image, 0, 255).astype(np.uint8), path, fps=fps)
    return str(path)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A transformers TimeSformer with random weights (every weight matters), saved as transformers saves it."""
    transformers = pytest.importorskip("transformers", reason="transformers is the independent reference")
    config = transformers.TimesformerConfig(
        image_size=SIZE, patch_size=8, num_frames=NUM_FRAMES, hidden_size=48, num_hidden_layers=2,
        num_attention_heads=3, intermediate_size=96, num_labels=5,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.TimesformerForVideoClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = [_video(folder / f"v{i}.mp4", seed=i) for i in range(3)]
    broken = folder / "v1_broken.mp4"
    broken.write_bytes(np.random.default_rng(9).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return folder, paths, str(broken)


def test_rows_equal_transformers_cls_token_averaged_over_views(hf_model, videos):
    model, folder = hf_model
    _, paths, _ = videos
    rows, records = Predictor.from_weights(folder).features(paths)
    assert rows.dtype == np.float32 and rows.shape == (3, 48)
    for row, path, record in zip(rows, paths, records):
        views = preprocess(path, num_seg=NUM_FRAMES, short_side_min=SIZE, short_side_max=SIZE, crop_size=SIZE)
        assert views.shape[0] == 3
        with torch.no_grad():
            expected = model.timesformer(pixel_values=views.transpose(1, 2)).last_hidden_state[:, 0].mean(0)
        np.testing.assert_allclose(row, expected.numpy(), rtol=1e-4, atol=1e-5)
        # The test window is 32 * 4 / 30 s = 4.27 s; the video lasts 12 / 4 = 3 s.
        assert record == {"video_id": Path(path).stem, "path": path, "start_s": 0.0, "end_s": 3.0}

    predictor = Predictor.from_weights(folder)
    rows, records = predictor.features(paths[0], window=1.0, stride=0.5)  # one row per window
    assert [(r["start_s"], r["end_s"]) for r in records] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]
    for row, (_, clip) in zip(rows, predictor.window_clips(paths[0], 1.0, 0.5)):
        views = clip.view(3, 3, NUM_FRAMES, SIZE, SIZE).transpose(0, 1)  # PaddleVideo's layout -> [V, 3, T, H, W]
        with torch.no_grad():
            expected = model.timesformer(pixel_values=views.transpose(1, 2)).last_hidden_state[:, 0].mean(0)
        np.testing.assert_allclose(row, expected.numpy(), rtol=1e-4, atol=1e-5)


def _read(out: Path) -> tuple[np.ndarray, list[dict]]:
    return np.load(out / "features.npy"), [json.loads(line) for line in (out / "features.jsonl").read_text().splitlines()]


def test_cli_skips_broken_videos_and_resumes_after_an_interruption(hf_model, videos, tmp_path, monkeypatch, capsys):
    _, weights = hf_model
    folder, paths, broken = videos
    fresh = tmp_path / "fresh"
    assert main(["features", "-w", str(weights), "-i", str(folder), "-o", str(fresh), "--precision", "fp32"]) == 1  # one broken
    captured = capsys.readouterr()
    assert f"skipped {broken}: " in captured.err and "1 of 4 videos could not be read" in captured.out
    rows, records = _read(fresh)
    assert [r["path"] for r in records] == paths  # sorted input order, the broken one skipped
    np.testing.assert_allclose(rows, Predictor.from_weights(weights).features(paths)[0], rtol=1e-5, atol=1e-6)

    calls = []
    real = TorchEngine.features

    def interrupted(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    out = tmp_path / "resumed"
    monkeypatch.setattr(TorchEngine, "features", interrupted)
    assert main(["features", "-w", str(weights), "-i", str(folder), "-o", str(out), "--precision", "fp32"]) != 0
    assert not (out / "features.npy").exists()  # only whole parts on disk, never a half file
    calls.clear()
    monkeypatch.setattr(TorchEngine, "features", lambda self, batch: (calls.append(1), real(self, batch))[1])
    assert main(["features", "-w", str(weights), "-i", str(folder), "-o", str(out), "--precision", "fp32"]) == 1  # the broken video again
    assert len(calls) == 1  # the two videos written before the interruption are not computed again
    got_rows, got_records = _read(out)
    assert got_records == records
    np.testing.assert_array_equal(got_rows, rows)
    assert sorted(p.name for p in out.iterdir()) == ["features.jsonl", "features.npy"]

    calls.clear()  # a third run finds everything done
    assert main(["features", "-w", str(weights), "-i", str(folder), "-o", str(out)]) == 1
    assert calls == [] and _read(out)[1] == records


def test_bad_arguments_are_one_line(hf_model, videos, tmp_path, capsys):
    _, weights = hf_model
    folder, paths, _ = videos
    for extra in (["--window", "-1"], ["--stride", "2"], ["--batch_size", "0"], ["--window", "nan"]):
        assert main(["features", "-w", str(weights), "-i", paths[0], "-o", str(tmp_path / "x"), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
    (tmp_path / "file").write_text("")
    assert main(["features", "-w", str(weights), "-i", paths[0], "-o", str(tmp_path / "file")]) == 1
    garbage = tmp_path / "g"
    garbage.mkdir()
    (garbage / "features.npy").write_bytes(b"nonsense")
    (garbage / "features.jsonl").write_text("{}\n")
    assert main(["features", "-w", str(weights), "-i", paths[0], "-o", str(garbage)]) == 1
    assert (garbage / "features.npy").read_bytes() == b"nonsense"  # not overwritten
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_torchrun_two_processes_write_what_one_process_writes(hf_model, videos, tmp_path):
    _, weights = hf_model
    folder, _, _ = videos
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "timesformer", "features", "-w", str(weights), "-i", str(folder), "--precision", "fp32"]
    one = subprocess.run([sys.executable, *args, "-o", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 1 and "1 of 4 videos could not be read" in one.stdout, one.stderr  # the broken one
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args, "-o", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode != 0 and "1 of 4 videos could not be read" in two.stdout, two.stderr[-3000:]
    rows_one, records_one = _read(tmp_path / "one")
    rows_two, records_two = _read(tmp_path / "two")
    assert records_two == records_one and len(records_one) == 3
    np.testing.assert_allclose(rows_two, rows_one, rtol=0, atol=1e-6)
