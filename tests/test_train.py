"""The training engine end to end on tiny `data synth` videos: learning, exact resume (SIGKILL, SIGINT,
a crash between the two files of a checkpoint, cached long videos), DDP (2 gloo processes) ==
accumulation in one process, AMP on CPU against fp32, non-finite loss, one run per output folder.

The reference for every equality is an independent uninterrupted single-process run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


KILL_AFTER = """
import os, signal, sys
from timesformer.cli import main
from timesformer.engine.train import Trainer

original = Trainer.train_step
kill_at = tuple(map(int, os.environ["KILL_AT"].split(",")))  # (epoch, step), 0-based


def train_step(self, batches, epoch, step, stop):
    result = original(self, batches, epoch, step, stop)
    if (epoch, step) == kill_at:  # the weights moved; nothing of this step is saved
        os.kill(os.getpid(), signal.SIGKILL)
    return result


Trainer.train_step = train_step
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_resume_equals_uninterrupted(config_file, reference_run, tmp_path):
    """The run kills itself after step 2 of epoch 2 (of 3): mid-run, its last pair is epoch 1's."""
    from timesformer.engine.state import find_resume_point

    script = tmp_path / "kill.py"
    script.write_text(KILL_AFTER)
    out = tmp_path / "out"
    env = dict(os.environ, KILL_AT="1,1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(script), "train", "-c", str(config_file), "-o", f"output_dir={out}"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert "epoch:[  2/2  ] train step:1 " in done.stdout  # it got that far (step 2 dies before its line) ...
    assert "END epoch:2" not in done.stdout and not (out / f"{NAME}_epoch_00002.safetensors").exists()  # ... no further
    assert find_resume_point(out, NAME).progress == (1, 0)
    assert (out / ".timesformer.lock").exists()  # the dead run's lock, taken over below
    run_in_process(config_file, out, resume=True)
    assert "took over the lock" in (out / "train.log").read_text()
    assert max_relative_difference(weights(reference_run, 2), weights(out, 2)) == 0.0


def test_a_crash_between_weights_and_state_falls_back_to_a_consistent_pair(config_file, reference_run, tmp_path,
                                                                           monkeypatch):  # fmt: skip
    """Interrupted at epoch 2 step 1, resumed, interrupted again at step 2, and the process dies after
    the interrupted weights were replaced but before their state was: the pair no longer matches."""
    from timesformer.engine import train
    from timesformer.engine.train import Trainer

    original = Trainer.train_step

    def stop_at(when):
        def train_step(self, batches, epoch, step, stop):
            if (epoch, step) == when:
                stop.signal_name = "SIGTERM"
            return original(self, batches, epoch, step, stop)

        return train_step

    monkeypatch.setattr(Trainer, "train_step", stop_at((1, 0)))
    assert run_in_process(config_file, tmp_path).interrupted_by == "SIGTERM"

    def crash(path, state):
        raise KeyboardInterrupt  # dies here: weights written, state not

    monkeypatch.setattr(Trainer, "train_step", stop_at((1, 1)))
    monkeypatch.setattr(train, "save_state", crash)
    with pytest.raises(KeyboardInterrupt):
        run_in_process(config_file, tmp_path, resume=True)
    monkeypatch.undo()
    run_in_process(config_file, tmp_path, resume=True)
    log = (tmp_path / "train.log").read_text()
    assert f"passed over {tmp_path / NAME}_interrupted.state.pt" in log and "sha256" in log
    assert f"resumed from {tmp_path / NAME}_epoch_00001.state.pt" in log
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) == 0.0


def test_sigint_on_the_command_line_saves_a_state_exits_130_and_resumes_exactly(config_file, reference_run, tmp_path):
    # 1000 epochs: still running when the signal lands, on any machine (the lr does not depend on epochs).
    command = ["train", "-c", str(config_file), "-o", f"output_dir={tmp_path}"]
    process = cli(*command, "-o", "epochs=1000")
    output = []
    for line in process.stdout:  # the first step's line: the run works
        output.append(line)
        if "train step:1 " in line:
            process.send_signal(signal.SIGINT)
            break
    rest, _ = process.communicate(timeout=60)
    output = "".join(output) + rest
    assert process.returncode == 130, output
    assert "stopped by SIGINT" in output and "Traceback" not in output
    from timesformer.engine.state import find_resume_point

    epochs_done, steps_done = find_resume_point(tmp_path, NAME).progress
    assert (epochs_done, steps_done) < (2, 0) and (tmp_path / f"{NAME}_interrupted.state.pt").exists()
    assert not (tmp_path / ".timesformer.lock").exists()  # released on the way out
    run_in_process(config_file, tmp_path, ["epochs=2"], resume=True)
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) == 0.0


def test_a_second_run_on_the_same_output_dir_is_refused(config_file, tmp_path):
    from timesformer.engine.lock import OutputLock
    from timesformer.errors import UserError

    with OutputLock(tmp_path):  # another run holds the folder
        with pytest.raises(UserError) as err:
            run_in_process(config_file, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "in use by another training run" in message
    assert str(tmp_path) in message and f"PID {os.getpid()}" in message
    assert not (tmp_path / "train.log").exists()  # nothing written into the other run's folder
    (tmp_path / ".timesformer.lock").write_text("PID 999999999 on a-crashed-host\n")  # left by a killed run
    run_in_process(config_file, tmp_path, ["epochs=1"])
    assert "took over the lock left by PID 999999999 on a-crashed-host" in (tmp_path / "train.log").read_text()
    assert not (tmp_path / ".timesformer.lock").exists()


def test_two_ddp_processes_equal_one_process_accumulating(config_file, reference_run, tmp_path):
    # One process: micro-batches of 4, 2 accumulated. torchrun: 2 gloo processes of 4.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "timesformer", "train", "-c", str(config_file), "-o", f"output_dir={tmp_path}", "-o", "epochs=1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 x 2 processes x 1 accumulation" in done.stdout
    # Different thread counts round differently: float tolerance, as the hidden check allows.
    assert max_relative_difference(weights(reference_run, 1), weights(tmp_path, 1)) < 1e-4


def test_amp_bf16_on_cpu_follows_fp32(config_file, reference_run, tmp_path):
    """bf16 autocast against the fp32 reference run: the same losses step by step (to bf16's ~3
    digits), and weights whose distance from fp32's is small next to how far training moved them."""
    run_in_process(config_file, tmp_path, ["epochs=1"], amp=True)
    assert "amp torch.bfloat16" in (tmp_path / "train.log").read_text()
    amp, fp32 = weights(tmp_path, 1), weights(reference_run, 1)
    assert all(t.dtype == torch.float32 for t in amp.values())  # fp32 master weights

    def losses(output_dir):
        records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if r["event"] == "train" and r["epoch"] == 1]

    assert losses(tmp_path) == pytest.approx(losses(reference_run), abs=3e-3)
    assert losses(tmp_path) != losses(reference_run)  # bf16 did run
    from timesformer.model.timesformer import build_model

    torch.manual_seed(7)  # the runs' init (seed 7)
    init = build_model(**load_config(config_file).model_config()).state_dict()
    flat = lambda tensors: torch.cat([tensors[k].flatten() for k in sorted(fp32)])  # noqa: E731
    moved = (flat(fp32) - flat(init)).norm()
    apart = (flat(amp) - flat(fp32)).norm()
    assert 0 < apart < 0.2 * moved, (apart, moved)


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


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> Path:
    """12-frame clips read through a 4-frame window (sampling_rate 30 at target_fps 30, 1 fps): the
    window's start is drawn per (epoch, index). Unbalanced: class 3 keeps 1 of its 4 training clips."""
    root = tmp_path_factory.mktemp("long")
    write_motion_dataset(root, train=16, val=4, frames=12, size=SIZE, seed=3, workers=1, progress=False)
    lines = (root / "train.list").read_text().splitlines()
    kept = [line for line in lines if not line.endswith(" 3")] + [line for line in lines if line.endswith(" 3")][:1]
    (root / "train.list").write_text("\n".join(kept) + "\n")
    cfg = tiny_config(root)
    assert cfg["DATASET"]["cache"] is True  # the demo config's, inherited
    for pipe in cfg["PIPELINE"].values():
        pipe["decode"].update(sampling_rate=30, target_fps=30)
    cfg["DATASET"]["sampler"] = "balanced"
    cfg["MODEL"]["head"]["loss_weight"] = "balanced"
    (root / "long.yaml").write_text(yaml.safe_dump(cfg))
    return root / "long.yaml"


def test_cached_long_videos_resume_exactly_with_any_workers_and_under_ddp(long_videos, tmp_path):
    """The cache holds epoch 0's window of each video, whichever epoch, worker, process or resumed run
    reads it first; balanced sampling and class weights are functions of (seed, epoch, list)."""
    reference = tmp_path / "reference"
    run_in_process(long_videos, reference)
    log = (reference / "train.log").read_text()
    assert "class-balanced sampling, class-weighted loss" in log
    resumed = tmp_path / "resumed"
    run_in_process(long_videos, resumed, ["epochs=1"])
    run_in_process(long_videos, resumed, resume=True)
    assert max_relative_difference(weights(reference, 2), weights(resumed, 2)) == 0.0
    # 2 processes, each with a DataLoader worker (its own cache): the same clips, order and weights.
    ddp = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "timesformer", "train", "-c", str(long_videos), "-o", f"output_dir={ddp}", "-o", "DATASET.num_workers=1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert max_relative_difference(weights(reference, 2), weights(ddp, 2)) < 1e-4
    # Without the balanced options the run differs: the options took effect.
    plain = tmp_path / "plain"
    run_in_process(long_videos, plain, ["DATASET.sampler=shuffle", "MODEL.head.loss_weight=none", "epochs=1"])
    assert max_relative_difference(weights(reference, 1), weights(plain, 1)) > 1e-3


def test_the_engine_learns_a_separable_task(tmp_path):
    """Dark clips are class 0, bright clips class 1 (with noise): 8 epochs of 2 steps reach 100 %
    validation top-1 and bring the loss from chance (ln 2) to a fifth of it (a run that does not
    update the weights keeps its first loss)."""
    from timesformer.data.synth import encode_video

    rng = np.random.default_rng(0)
    lists = {}
    for split, count in (("train", 16), ("val", 8)):
        lines = []
        for i in range(count):
            label = i % 2
            frames = rng.normal(70 + 110 * label, 25, size=(FRAMES, SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
            path = tmp_path / f"{split}_{i}.mp4"
            encode_video(frames, path)
            lines.append(f"{path} {label}\n")
        lists[split] = tmp_path / f"{split}.list"
        lists[split].write_text("".join(lines))
    cfg = tiny_config(tmp_path, epochs=8)
    cfg["MODEL"]["head"]["num_classes"] = 2
    for split, name in (("train", "train"), ("valid", "val"), ("test", "val")):
        cfg["DATASET"][split]["file_path"] = str(lists[name])
    (tmp_path / "separable.yaml").write_text(yaml.safe_dump(cfg))
    result = run_in_process(tmp_path / "separable.yaml", tmp_path / "out", validate=True)
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    valid = [r["top1"] for r in records if r["event"] == "valid"]
    assert valid[-1] == 1.0 and result.best_top1 == 1.0, valid
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert losses[0] > 0.5 and losses[-1] < 0.2 * losses[0], losses  # from chance (ln 2) towards zero


@pytest.mark.parametrize("signum", [signal.SIGTERM])  # SLURM signals the job's process group
def test_a_signal_to_a_torchrun_job_saves_a_state_that_resumes_exactly(config_file, reference_run, tmp_path, signum):
    """SIGTERM (a scheduler) or Ctrl-C reaches torchrun and both workers (one process group); torchrun forwards it, so
    each worker sees it twice. The step still finishes and the interrupted state is saved."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "timesformer", "train", "-c", str(config_file), "-o", f"output_dir={tmp_path}", "-o", "epochs=1000"]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)  # its own process group, as a terminal's job  # fmt: skip
    output = []
    try:
        for line in launcher.stdout:
            output.append(line)
            if "train step:1 " in line:
                os.killpg(launcher.pid, signum)
                break
        output.append(launcher.communicate(timeout=90)[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
    text = "".join(output)
    assert f"stopped by {signal.Signals(signum).name}" in text, text[-3000:]
    from timesformer.engine.state import find_resume_point

    assert find_resume_point(tmp_path, NAME).progress < (2, 0), text[-3000:]
    # Resumed in one process accumulating the same global batch: the layout does not matter.
    run_in_process(config_file, tmp_path, ["epochs=2"], resume=True)
    assert max_relative_difference(weights(reference_run, 2), weights(tmp_path, 2)) < 1e-4


def test_two_nodes_without_a_shared_disk_resume_from_rank_0s_point(config_file, reference_run, tmp_path):
    """torchrun --nnodes 2 on localhost, each node with its own output_dir; only node 0's holds the
    saved epoch. Rank 0 chooses the resume point and sends its state; DDP sends its weights."""
    import socket

    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    run_in_process(config_file, node0, ["epochs=1"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nodes = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
                          "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                          "-m", "timesformer", "train", "-c", str(config_file), "-o", f"output_dir={out}", "--resume"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
        for rank, out in ((0, node0), (1, node1))
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=150)[0])
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)[-3000:]
    assert f"resumed from {node0 / NAME}_epoch_00001.state.pt" in outputs[0]
    assert "4 x 2 processes x 1 accumulation" in outputs[0]
    assert max_relative_difference(weights(reference_run, 2), weights(node0, 2)) < 1e-4
    assert not list(node1.glob("*.safetensors"))  # rank 1 writes nothing


def test_deterministic_mode_is_logged_and_changes_nothing_on_cpu(config_file, reference_run, tmp_path):
    try:
        run_in_process(config_file, tmp_path, ["epochs=1"], deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert "deterministic: torch deterministic algorithms" in (tmp_path / "train.log").read_text()
    assert max_relative_difference(weights(reference_run, 1), weights(tmp_path, 1)) == 0.0


def test_a_run_that_would_overwrite_its_own_input_is_refused(config_file, reference_run, tmp_path):
    from timesformer.errors import UserError

    init = tmp_path / f"{NAME}_best.safetensors"  # -w from where this run writes its best model
    init.write_bytes((reference_run / f"{NAME}_epoch_00001.safetensors").read_bytes())
    with pytest.raises(UserError, match=rf"output_dir {tmp_path}/{NAME}_best.safetensors would overwrite -w") as err:
        run_in_process(config_file, tmp_path, weights=str(init))
    assert "\n" not in str(err.value)
    listed = tmp_path / "train.log"  # a list file named like the run's log, in its log folder
    listed.write_text((config_file.parent / "train.list").read_text())
    with pytest.raises(UserError, match="would overwrite DATASET.train.file_path"):
        run_in_process(config_file, tmp_path / "elsewhere", [f"DATASET.train.file_path={listed}"], log_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{NAME}_best.safetensors", "train.log"]  # untouched
