"""Engine building blocks against closed-form references: sampler layouts, LR schedules, the
PaddleVideo Momentum update, view averaging, saved states and the resume point."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from timesformer.engine.evaluate import average_views, topk_correct
from timesformer.engine.config.schema import LearningRateConfig, OptimizerConfig, WeightDecayConfig
from timesformer.engine.optim import build_optimizer, lr_at
from timesformer.engine.order import (
    BatchLayout,
    EvalBatchSampler,
    TrainBatchSampler,
    balanced_class_weights,
    class_balanced_order,
    epoch_permutation,
)
from timesformer.engine.state import (
    find_resume_point,
    interrupted_weights_path,
    load_state,
    save_state,
    state_path_for,
)
from timesformer.errors import CheckpointError, ConfigError, UserError


def step_sets(num_samples, global_batch, batch, world, epoch=0, seed=3, labels=None):
    """For each optimizer step: the set of (epoch, index) keys all ranks' micro-batches cover."""
    accumulation = global_batch // (batch * world)
    per_rank = []
    for rank in range(world):
        sampler = TrainBatchSampler(num_samples, BatchLayout(global_batch, batch, world, rank), seed, labels)
        sampler.set_epoch(epoch)
        micro = list(sampler)
        assert len(micro) == len(sampler) and all(len(m) == batch for m in micro)
        per_rank.append([sum(micro[s * accumulation : (s + 1) * accumulation], []) for s in range(sampler.steps_per_epoch)])
    return [sorted(sum((r[s] for r in per_rank), [])) for s in range(len(per_rank[0]))]


def test_every_layout_splits_the_same_global_batches():
    reference = step_sets(37, 8, 8, 1)  # one process, no accumulation
    assert len(reference) == 37 // 8  # the partial last global batch is dropped
    for batch, world in ((4, 1), (4, 2), (2, 2), (1, 4), (2, 4)):
        assert step_sets(37, 8, batch, world) == reference
    flat = [key for step in reference for key in step]
    assert len(set(flat)) == len(flat) == 32  # no sample twice in an epoch
    assert step_sets(37, 8, 8, 1, epoch=1) != reference  # a new order every epoch


# 3 classes: 30, 6 and 4 samples.
UNBALANCED = np.array([0] * 30 + [1] * 6 + [2] * 4)


def test_balanced_sampling_draws_classes_equally_and_splits_the_same_under_every_layout():
    reference = step_sets(40, 8, 8, 1, labels=UNBALANCED)
    for batch, world in ((4, 2), (2, 2), (1, 4), (2, 4)):
        assert step_sets(40, 8, batch, world, labels=UNBALANCED) == reference
    assert step_sets(40, 8, 8, 1, epoch=1, labels=UNBALANCED) != reference
    # Over many epochs each class is drawn ~1/3 of the time (a plain permutation: 75 % class 0).
    sampler = TrainBatchSampler(40, BatchLayout(8, 8), 3, UNBALANCED)
    drawn = np.concatenate([UNBALANCED[sampler.epoch_order(epoch)] for epoch in range(300)])
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [1 / 3] * 3, atol=0.02)
    assert (sampler.epoch_order(5) == class_balanced_order(UNBALANCED, 3, 5)).all()  # (seed, epoch) only


def test_balanced_class_weights_are_n_over_k_count():
    weights = balanced_class_weights(UNBALANCED, num_classes=4)  # class 3 never appears
    np.testing.assert_allclose(weights, [40 / (3 * 30), 40 / (3 * 6), 40 / (3 * 4), 0.0])
    assert np.dot(weights, np.bincount(UNBALANCED, minlength=4)) == pytest.approx(40)  # mean weight 1


def test_order_is_a_function_of_seed_and_epoch():
    assert (epoch_permutation(50, 1, 2) == epoch_permutation(50, 1, 2)).all()
    assert not (epoch_permutation(50, 1, 2) == epoch_permutation(50, 1, 3)).all()
    assert not (epoch_permutation(50, 2, 2) == epoch_permutation(50, 1, 2)).all()


def test_resumed_epoch_continues_at_its_step():
    layout = BatchLayout(4, 2, 1, 0)
    sampler = TrainBatchSampler(20, layout, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start_step=3)
    assert list(sampler) == full[3 * 2 :] and len(sampler) == len(full) - 6


def test_global_batch_larger_than_the_data_is_refused():
    with pytest.raises(ConfigError, match="global_batch_size"):
        TrainBatchSampler(5, BatchLayout(8, 4, 1, 0), seed=0)


def test_eval_shards_cover_every_sample_once():
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            for batch in EvalBatchSampler(7, 2, world, rank):
                assert len(batch) <= 2
                seen += [index for _, index in batch]
        assert sorted(seen) == list(range(7))


def test_multistep_decay_as_paddlevideo():
    # K400 recipe: lr 0.005, x0.1 at epochs 11 and 14, stepped once per epoch.
    schedule = LearningRateConfig("MultiStepDecay", 0.005, milestones=[11, 14], gamma=0.1)
    expected = [0.005] * 11 + [0.0005] * 3 + [0.00005]
    got = [lr_at(schedule, 15, epoch, step=7, steps_per_epoch=10) for epoch in range(15)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_warmup_then_cosine():
    schedule = LearningRateConfig("CosineAnnealingDecay", 1.0, warmup_epochs=2, warmup_start_lr=0.1, iter_step=True)
    assert lr_at(schedule, 10, 0, 0, 4) == pytest.approx(0.1)
    assert lr_at(schedule, 10, 1, 0, 4) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(schedule, 10, 2, 0, 4) == pytest.approx(1.0)
    assert lr_at(schedule, 10, 6, 0, 4) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(schedule, 10, 9, 3, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7.75 / 8)))


def test_momentum_is_paddle_nesterov_with_l2():
    # Paddle Momentum (use_nesterov, L2Decay): g' = g + wd*p; v = mu*v + g'; p -= lr*(g' + mu*v)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    spec = OptimizerConfig("Momentum", momentum=0.9, use_nesterov=True, weight_decay=WeightDecayConfig(value=1e-2))
    optimizer = build_optimizer(spec, model, lr=0.1)
    params = [p.detach().clone() for p in model.parameters()]
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(3):
        x = torch.randn(4, 3)
        optimizer.zero_grad()
        model(x).square().sum().backward()
        for i, p in enumerate(model.parameters()):
            g = p.grad + 1e-2 * params[i]
            velocity[i] = 0.9 * velocity[i] + g
            params[i] = params[i] - 0.1 * (g + 0.9 * velocity[i])
        optimizer.step()
        for p, ref in zip(model.parameters(), params):
            torch.testing.assert_close(p.detach(), ref, rtol=1e-6, atol=1e-7)


def test_no_weight_decay_names_get_their_own_group():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    spec = OptimizerConfig("AdamW", weight_decay=WeightDecayConfig(value=0.05), no_weight_decay_name="1.")
    groups = build_optimizer(spec, model, lr=1e-3).param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in groups] == [2, 2]


def test_view_averaging_score_and_prob():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0], [0.0, 0.0], [0.0, 6.0]])
    score = average_views(logits, 3, "score")
    torch.testing.assert_close(score, torch.tensor([[1.0, 2 / 3], [1.0, 2.0]]))
    prob = average_views(logits, 3, "prob")
    torch.testing.assert_close(prob, logits.softmax(-1).view(2, 3, 2).mean(1))
    top1, top5 = topk_correct(torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]]), torch.tensor([2, 0]), k=2)
    assert top1.tolist() == [False, True] and top5.tolist() == [True, True]


def _save_point(directory, name, epochs, steps, write_weights=True):
    weights = (
        interrupted_weights_path(directory, name) if steps else directory / f"{name}_epoch_{epochs:05d}.safetensors"
    )
    content = f"weights {epochs} {steps}".encode()
    if write_weights:
        weights.write_bytes(content)
    state = {"epochs_done": epochs, "steps_done": steps, "seed": 0, "global_batch_size": 8, "best_top1": None,
             "weights": weights.name, "weights_sha256": hashlib.sha256(content).hexdigest(), "optimizer": {},
             "scaler": {}, "rng": {"torch": torch.get_rng_state()}, "m": torch.arange(3.0)}  # fmt: skip
    save_state(state_path_for(weights), state)
    return weights


def test_resume_point_is_the_most_advanced_complete_one(tmp_path):
    assert find_resume_point(tmp_path, "M") is None
    _save_point(tmp_path, "M", 1, 0)
    _save_point(tmp_path, "M", 2, 0)
    _save_point(tmp_path, "M", 3, 0, write_weights=False)  # its weights never landed
    notes = []
    point = find_resume_point(tmp_path, "M", notes)
    assert point.progress == (2, 0) and point.weights.name == "M_epoch_00002.safetensors"
    assert len(notes) == 1 and "M_epoch_00003.state.pt" in notes[0] and "missing" in notes[0]
    torch.testing.assert_close(point.state["m"], torch.arange(3.0))
    _save_point(tmp_path, "M", 2, 5)  # interrupted mid-epoch 3
    assert find_resume_point(tmp_path, "M").progress == (2, 5)
    _save_point(tmp_path, "M", 4, 0)
    assert find_resume_point(tmp_path, "M").progress == (4, 0)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_a_pair_whose_weights_changed_is_passed_over_saying_so(tmp_path):
    """The crash window: weights re-saved, the state beside them not yet. The hash tells them apart."""
    _save_point(tmp_path, "M", 1, 0)
    _save_point(tmp_path, "M", 1, 2)  # interrupted at epoch 2 step 2
    interrupted = interrupted_weights_path(tmp_path, "M")
    interrupted.write_bytes(b"weights of a later interruption, whose state never landed")
    notes = []
    point = find_resume_point(tmp_path, "M", notes)
    assert point.progress == (1, 0) and point.weights.name == "M_epoch_00001.safetensors"
    assert len(notes) == 1 and "M_interrupted.state.pt" in notes[0] and "sha256" in notes[0]
    (tmp_path / "M_epoch_00001.safetensors").write_bytes(b"changed too")
    assert find_resume_point(tmp_path, "M") is None


def test_a_state_from_before_pairs_had_hashes_resumes_unverified_saying_so(tmp_path):
    weights = _save_point(tmp_path, "M", 2, 0)
    state = torch.load(state_path_for(weights), weights_only=True)
    del state["weights_sha256"]
    state["version"] = 1  # what the previous release wrote
    torch.save(state, state_path_for(weights))
    notes = []
    point = find_resume_point(tmp_path, "M", notes)
    assert point.progress == (2, 0) and point.weights == weights
    assert len(notes) == 1 and "no hash" in notes[0] and "M_epoch_00002.state.pt" in notes[0]
    state["version"] = 7  # a future or foreign version is refused, naming it
    torch.save(state, state_path_for(weights))
    with pytest.raises(CheckpointError, match="version 7"):
        load_state(state_path_for(weights))


@pytest.mark.parametrize("drop, value", [
    ("weights_sha256", None), ("optimizer", None), ("epochs_done", None), ("rng", None),
    ("epochs_done", "3"), ("steps_done", -1), ("weights", "../../etc/passwd"), ("weights", 7), ("best_top1", "x"),
])  # fmt: skip
def test_a_hand_made_state_missing_or_mistyping_a_field_is_one_line(tmp_path, drop, value):
    weights = _save_point(tmp_path, "M", 1, 0)
    state = torch.load(state_path_for(weights), weights_only=True)
    if value is None:
        del state[drop]
    else:
        state[drop] = value
    torch.save(state, state_path_for(weights))
    with pytest.raises(CheckpointError, match="M_epoch_00001.state.pt") as err:
        load_state(state_path_for(weights))
    assert "\n" not in str(err.value) and drop in str(err.value) or "negative" in str(err.value)
    notes = []
    assert find_resume_point(tmp_path, "M", notes) is None and "M_epoch_00001.state.pt" in notes[0]


def test_state_refuses_foreign_files(tmp_path):
    bad = tmp_path / "x.state.pt"
    bad.write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="x.state.pt"):
        load_state(bad)
    torch.save({"a": 1}, bad)
    with pytest.raises(CheckpointError, match="not a timesformer training state"):
        load_state(bad)
    torch.save([1, 2], bad)
    with pytest.raises(CheckpointError, match="not a timesformer training state"):
        load_state(bad)
    # Bytes that start a pickle but reference a memo slot never stored: torch's weights-only
    # unpickler raises KeyError on them, which must still be a one-line CheckpointError.
    bad.write_bytes(b"\x80\x02h\x05.")
    with pytest.raises(CheckpointError, match="not a readable training state"):
        load_state(bad)


def test_gpus_relaunches_the_same_command_under_torchrun():
    from timesformer.cli import build_parser
    from timesformer.commands.train import relaunch_argv
    from timesformer.engine.distributed import torchrun_command

    args = build_parser().parse_args(
        ["train", "-c", "c.yaml", "--gpus", "0,1", "--validate", "-o", "epochs=2", "--override", "seed=3",
         "--resume", "-w", "w.pdparams", "--amp", "--amp_level", "O2", "--deterministic", "--strict_fp32"]
    )  # fmt: skip
    command = torchrun_command(2, relaunch_argv(args))
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    tail = command[7:]
    assert tail[:4] == ["timesformer", "train", "-c", "c.yaml"] and "--gpus" not in tail
    assert {"--validate", "--resume", "--amp", "--deterministic", "--strict_fp32"} <= set(tail)
    for pair in (["-o", "epochs=2"], ["-o", "seed=3"], ["--weights", "w.pdparams"], ["--amp_level", "O2"]):
        assert any(tail[i : i + 2] == pair for i in range(len(tail))), pair
    assert build_parser().parse_args(tail[1:]).override == ["epochs=2", "seed=3"]


def test_under_torchrun_a_repeated_signal_is_the_same_request():
    """torchrun forwards the signal its process group already delivered: each worker sees it twice.
    Outside torchrun the second one acts at once (KeyboardInterrupt), as a user pressing Ctrl-C twice means."""
    import os
    import signal
    import time

    from timesformer.engine.signals import StopRequest

    with StopRequest(repeated_is_one=True) as stop:
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the Python handler runs between the two
    assert stop.signal_name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert stop.signal_name == "SIGINT"
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)


def test_gpus_count_within_the_gpus_this_job_may_see():
    from timesformer.commands.train import visible_gpus

    assert visible_gpus("0,1", None) == ["0", "1"]
    assert visible_gpus("0,1", "4,6,7") == ["4", "6"]  # a scheduler gave this job GPUs 4, 6 and 7
    assert visible_gpus("2", "GPU-aaaa,GPU-bbbb,GPU-cccc") == ["GPU-cccc"]
    for requested, visible, words in (("3", "4,6,7", r"beyond the 3 GPU\(s\)"), ("0,0", None, "twice"),
                                      ("a", None, "expected GPU ids"), ("-1", None, "expected GPU ids")):  # fmt: skip
        with pytest.raises(UserError, match=words):
            visible_gpus(requested, visible)


def test_gpus_under_torchrun_is_refused_in_one_line(monkeypatch, capsys):
    from timesformer.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "-c", "configs/demo_motion.yaml", "--gpus", "0,1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "started by torchrun" in err[0] and "--gpus 0,1" in err[0], err


def test_device_per_rank_is_checked_against_the_visible_gpus(monkeypatch):
    from timesformer.devices import resolve_amp_dtype, resolve_device

    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")  # no GPU on this machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(UserError, match="local rank 3: only 2 GPUs are visible"):
        resolve_device("cuda", local_rank=3)
    with pytest.raises(UserError, match=r"only 2 GPU\(s\) visible"):
        resolve_device("cuda:5")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task=1
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 0)
    for name in ("tpu", "cuda:x", "", None):
        if name:
            with pytest.raises(UserError):
                resolve_device(name)
    # The one fp16 policy: refused on a CPU wherever it is asked for.
    assert resolve_amp_dtype("cuda", "fp16") == torch.float16 == resolve_amp_dtype("cuda:0", "float16")
    assert resolve_amp_dtype("cpu", "bf16") == torch.bfloat16 and resolve_amp_dtype("cpu", None) is None
    for precision in ("fp16", "float16"):
        with pytest.raises(UserError, match="fp16 needs a CUDA device; on CPU use bf16"):
            resolve_amp_dtype("cpu", precision)
    with pytest.raises(UserError, match="use fp32, bf16 or fp16"):
        resolve_amp_dtype("cpu", "int8")
