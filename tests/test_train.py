"""The training engine end to end on tiny `data synth` videos: learning, exact resume (SIGKILL and
SIGTERM), DDP (2 gloo processes) == accumulation in one process, AMP on CPU, non-finite loss.

The reference for every equality is an independent uninterrupted single-process run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from timesformer.data.synth import write_motion_dataset
from timesformer.engine.config import load_config
from timesformer.engine.distributed import DistContext
from timesformer.engine.train import NonFiniteLossError, TrainOptions, train_model

ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE, CROP = 4, 16, 12
NAME = "Tiny"


def tiny_config(data: Path, **top) -> dict:
    """configs/demo_motion.yaml shrunk: 4 frames, 12 px crops (3 uniform views in test), width 32, depth 1,
    AdamW at a constant lr (so that epoch 1 does not depend on the number of epochs)."""
    cfg = yaml.safe_load((ROOT / "configs" / "demo_motion.yaml").read_text())
    backbone = cfg["MODEL"]["backbone"]
    backbone.update(num_seg=FRAMES, img_size=CROP, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                    drop_path_rate=0.0, pretrained=None)  # fmt: skip
    cfg["MODEL"]["head"]["in_channels"] = 32
    cfg["MODEL"]["runtime_cfg"]["test"]["num_seg"] = FRAMES
    for split, crop in (("train", "CenterCrop"), ("valid", "CenterCrop"), ("test", "UniformCrop")):
        pipe = cfg["PIPELINE"][split]
        pipe["decode"]["num_seg"] = pipe["sample"]["num_seg"] = FRAMES
        pipe["transform"] = [
            {"Normalization": {"mean": [0.45] * 3, "std": [0.225] * 3}},
            {"JitterScale": {"min_size": SIZE, "max_size": SIZE}},
            {crop: {"target_size": CROP}},
        ]
    dataset = cfg["DATASET"]
    dataset.update(batch_size=4, num_workers=0, test_batch_size=3)
    for split, name in (("train", "train"), ("valid", "val"), ("test", "val")):
        dataset[split].update(file_path=str(data / f"{name}.list"), data_prefix="")
    cfg["OPTIMIZER"] = {
        "name": "AdamW", "learning_rate": {"name": "MultiStepDecay", "learning_rate": 0.003, "milestones": []},
        "weight_decay": {"name": "L2", "value": 0.01}, "grad_clip": 1.0,
    }  # fmt: skip
    cfg["GRADIENT_ACCUMULATION"]["global_batch_size"] = 8
    cfg.update(model_name=NAME, epochs=2, log_interval=1, save_interval=1, seed=7)
    cfg.update(top)
    return cfg


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~40x slower on 2 OpenMP threads when the cores are busy (spinning barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_motion_dataset(root, train=24, val=8, frames=FRAMES, size=SIZE, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def config_file(data) -> Path:
    path = data / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data)))
    return path


def run_in_process(config_file: Path, output_dir: Path, overrides=(), **options):
    cfg = load_config(config_file, [f"output_dir={output_dir}", *overrides])
    return train_model(cfg, TrainOptions(**options), DistContext())


@pytest.fixture(scope="module")
def reference_run(config_file, tmp_path_factory) -> Path:
    """An uninterrupted 2-epoch run in this process."""
    output_dir = tmp_path_factory.mktemp("reference")
    run_in_process(config_file, output_dir)
    return output_dir


def weights(output_dir: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(output_dir / f"{NAME}_epoch_{epoch:05d}.safetensors")


def max_relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).abs().max() / a[k].abs().max().clamp(min=1e-12)).item() for k in a)


def cli(*args: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "timesformer", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)  # fmt: skip


def wait_for(predicate, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the run ended early:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_outputs_logs_and_learning(config_file, tmp_path):
    result = run_in_process(config_file, tmp_path, ["epochs=5"], validate=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["event"] == "train_epoch"]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.05, losses
    steps = [r for r in records if r["event"] == "train"]
    assert len(steps) == 5 * 3 and {"loss", "lr", "top1", "top5", "batch_cost", "reader_cost", "ips"} <= steps[0].keys()
    valid = [r for r in records if r["event"] == "valid"]
    assert len(valid) == 5 and all(r["count"] == 8 and r["skipped"] == 0 for r in valid)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if n.endswith(".safetensors")] == [f"{NAME}_best.safetensors"] + [
        f"{NAME}_epoch_{e:05d}.safetensors" for e in range(1, 6)
    ]
    assert len([n for n in names if n.endswith(".state.pt")]) == 5
    assert not [n for n in names if n.endswith(".tmp")]
    log = (tmp_path / "train.log").read_text()
    assert "Already save the best model (top1 acc)" in log and "batch_cost" in log and "eta" in log
    assert result.best_top1 == max(r["top1"] for r in valid)
    # Each epoch checkpoint loads as a model on its own.
    from timesformer import load_model

    model = load_model(tmp_path / f"{NAME}_epoch_00005.safetensors")
    assert model.config.embed_dim == 32 and model.config.num_frames == FRAMES


def test_sigkill_then_resume_equals_uninterrupted(config_file, reference_run, tmp_path):
    process = cli("train", "-c", str(config_file), "-o", f"output_dir={tmp_path}")
    wait_for(lambda: (tmp_path / f"{NAME}_epoch_00001.state.pt").exists(), process)
    process.kill()
    process.wait()
    run_in_process(config_file, tmp_path, resume=True)
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) == 0.0


def test_sigterm_saves_mid_epoch_state_and_resume_is_exact(config_file, reference_run, tmp_path):
    process = cli("train", "-c", str(config_file), "-o", f"output_dir={tmp_path}")
    log = tmp_path / "train.log"
    wait_for(lambda: log.exists() and "train step:1 " in log.read_text(), process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output and "--resume" in output
    assert (tmp_path / f"{NAME}_interrupted.state.pt").exists()
    result = run_in_process(config_file, tmp_path, resume=True)
    assert result.epochs_done == 2
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) == 0.0


def test_two_ddp_processes_equal_one_process_accumulating(config_file, reference_run, tmp_path):
    # One process: micro-batches of 4, 2 accumulated. torchrun: 2 gloo processes of 4.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "timesformer", "train", "-c", str(config_file), "-o", f"output_dir={tmp_path}", "-o", "epochs=1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 x 2 processes x 1 accumulation" in done.stdout
    # Different thread counts round differently: float tolerance, as the hidden check allows.
    assert max_relative_difference(weights(reference_run, 1), weights(tmp_path, 1)) < 1e-4


def test_amp_bf16_on_cpu(config_file, tmp_path):
    run_in_process(config_file, tmp_path, ["epochs=1"], amp=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "amp torch.bfloat16" in (tmp_path / "train.log").read_text()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if r["event"] == "train")
    assert all(t.dtype == torch.float32 for t in weights(tmp_path, 1).values())  # fp32 master weights


def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(config_file, tmp_path):
    # Epoch 2 multiplies the lr by 1e38: the weights overflow and the loss turns NaN.
    blow_up = ["OPTIMIZER.learning_rate.milestones=[1]", "OPTIMIZER.learning_rate.gamma=1e38",
               "OPTIMIZER.name=Momentum", "OPTIMIZER.grad_clip=null"]  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* at epoch 2 step \d/3.*epoch_00001") as err:
        run_in_process(config_file, tmp_path, blow_up)
    assert "\n" not in str(err.value)
    checkpoint = weights(tmp_path, 1)
    assert all(torch.isfinite(t).all() for t in checkpoint.values())
    assert not (tmp_path / f"{NAME}_epoch_00002.safetensors").exists()

    skipped = tmp_path / "skip"
    run_in_process(config_file, skipped, [*blow_up, "nonfinite_loss=skip"])
    records = [json.loads(line) for line in (skipped / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "skipped_step" and r["epoch"] == 2 for r in records)


def test_weights_initialize_fine_tuning(config_file, reference_run, tmp_path):
    # lr 0: the run must end with exactly the -w weights (AdamW's decay is scaled by lr too).
    start = reference_run / f"{NAME}_epoch_00002.safetensors"
    run_in_process(config_file, tmp_path, ["epochs=1", "OPTIMIZER.learning_rate.learning_rate=0.0"], weights=str(start))
    assert max_relative_difference(load_file(start), weights(tmp_path, 1)) == 0.0
    from timesformer.errors import ConfigError

    with pytest.raises(ConfigError, match="MODEL.backbone.pretrained.*nowhere.pdparams"):
        run_in_process(config_file, tmp_path / "p", ["MODEL.backbone.pretrained=nowhere.pdparams"])


def test_stop_in_the_middle_of_an_epoch_resumes_exactly(config_file, reference_run, tmp_path, monkeypatch):
    """The signal's effect pinned to a known step: after step 2 of 3 in epoch 1."""
    from timesformer.engine.train import Trainer
    from timesformer.engine.state import find_resume_point

    original = Trainer.train_step

    def signal_during_step_2(self, batches, epoch, step, stop):
        if (epoch, step) == (0, 1):
            stop.signal_name = "SIGINT"
        return original(self, batches, epoch, step, stop)

    monkeypatch.setattr(Trainer, "train_step", signal_during_step_2)
    result = run_in_process(config_file, tmp_path)
    assert result.interrupted_by == "SIGINT" and result.epochs_done == 0
    assert find_resume_point(tmp_path, NAME).progress == (0, 2)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run_in_process(config_file, tmp_path, resume=True).epochs_done == 2
    assert max_relative_difference(weights(reference_run, 1), weights(tmp_path, 1)) == 0.0
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) == 0.0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank-1 process through /proc")
def test_a_dead_ddp_rank_ends_the_job_clearly_and_resume_continues(config_file, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "timesformer", "train", "-c", str(config_file), "-o", f"output_dir={tmp_path}", "-o", "epochs=50"]  # fmt: skip
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (tmp_path / f"{NAME}_epoch_00001.state.pt").exists(), launcher)
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    rank1 = [pid for pid in children if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    os.kill(int(rank1[0]), signal.SIGKILL)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    message = [line for line in output.splitlines() if "lost contact with another process" in line]
    assert message and "rank 0" in message[0] and "--resume" in message[0] and "_epoch_0" in message[0], output

    from timesformer.engine.state import find_resume_point

    done = find_resume_point(tmp_path, NAME).progress[0]
    assert run_in_process(config_file, tmp_path, [f"epochs={done + 1}"], resume=True).epochs_done == done + 1
