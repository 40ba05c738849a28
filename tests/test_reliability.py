"""Issue 6 end to end, through the real command line (`python -m timesformer ...`).

Broken videos of every kind, hostile weights, config mistakes and interrupted training,
each made here from scratch (see `brokenfiles.py`). The user must get one line naming the
file or key, the right exit status, and never a traceback (unless `--debug`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import brokenfiles
from conftest import EXAMPLE_AVI, FIXTURE, ROOT

K400 = ROOT / "configs" / "timesformer_k400_videos.yaml"
DEMO = ROOT / "configs" / "demo_motion.yaml"
# PaddleVideo's tiny fixture: ViT 96 wide, 2 blocks, 4 heads, 400 classes, 8 frames x 224.
TINY = ["-o", "MODEL.backbone.embed_dim=96", "-o", "MODEL.backbone.depth=2",
        "-o", "MODEL.backbone.num_heads=4", "-o", "MODEL.head.in_channels=96"]  # fmt: skip


def cli(*args, expect_traceback: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `python -m timesformer ARGS` from the repository root; no traceback unless asked."""
    result = subprocess.run(
        [sys.executable, "-m", "timesformer", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert ("Traceback" in output) == expect_traceback, output[-3000:]
    return result


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """Two good videos and the broken kinds, plus a list of all of them (absolute paths)."""
    d = tmp_path_factory.mktemp("media")
    # An H.264 MP4 with its index first (as web downloads are): cut in half, it still opens
    # and promises all its frames. The AVI is MPEG-4, as Kinetics and UCF101 ship.
    mp4 = brokenfiles.good_mp4(d / "good.mp4", frames=48, size=(128, 96), faststart=True)
    avi = EXAMPLE_AVI if EXAMPLE_AVI.exists() else brokenfiles.good_avi(d / "good.avi", frames=64, size=(128, 96))
    broken = brokenfiles.make_broken_set(d / "broken", mp4, avi)
    # FFmpeg's default MP4 keeps its index at the end: cut in half, it does not even open.
    moov_last = brokenfiles.good_mp4(d / "moov_last.mp4", frames=24, size=(64, 48))
    broken["truncated_mp4_index_last"] = brokenfiles.truncated(moov_last, d / "broken" / "truncated_index_last.mp4")
    good = [mp4, avi]
    lines = [f"{p} 5" for p in good] + [f"{p} 1" for p in broken.values()]
    list_file = d / "test.list"
    list_file.write_text("\n".join(lines) + "\n")
    return dict(dir=d, good=good, broken=broken, list=list_file)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """PaddleVideo's tiny checkpoint when ../shared is here, else the same architecture saved
    by us (these tests check behaviour on broken input, not numbers)."""
    if (FIXTURE / "model.pdparams").exists():
        return FIXTURE / "model.pdparams"
    import torch

    from timesformer.model.checkpoints import save_model
    from timesformer.model.timesformer import build_model

    torch.manual_seed(0)
    model = build_model(embed_dim=96, depth=2, num_heads=4, num_classes=400, num_frames=8, img_size=224)
    return save_model(model, tmp_path_factory.mktemp("weights") / "tiny.safetensors")


def _tiny_test_args(list_file: Path, weights: Path) -> list:
    return ["-c", K400, "-w", weights, *TINY,
            "-o", f"DATASET.test.file_path={list_file}", "-o", "DATASET.test.data_prefix="]  # fmt: skip


# --- broken videos ---------------------------------------------------------------------------


def test_test_command_evaluates_readable_videos_and_names_each_broken_one(media, tiny_weights):
    result = cli("test", *_tiny_test_args(media["list"], tiny_weights))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for kind, path in media["broken"].items():  # named, with a reason
        assert re.search(rf"{re.escape(str(path))}: \w", output), f"{kind} video {path} is not named:\n{output[-3000:]}"
    for path in media["good"]:
        assert not re.search(rf"skipped {re.escape(str(path))}\b", output), output[-3000:]
    # The final line counts the readable videos and the skipped ones.
    assert re.search(r"\b2 videos\b", output), output[-3000:]
    assert re.search(rf"\b{len(media['broken'])} skipped\b", output), output[-3000:]


def test_data_check_names_every_broken_video(media):
    result = cli("data", "check", media["list"], "--workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    named = {line.split(": ")[0] for line in output.splitlines() if ": " in line}
    assert {str(p) for p in media["broken"].values()} <= named, output
    assert not {str(p) for p in media["good"]} & named, output


def test_predict_on_garbage_fails_with_one_line_naming_it(media, tiny_weights):
    garbage = media["broken"]["random_avi"]
    result = cli("predict", "-c", K400, *TINY, "--input_file", garbage, "-w", tiny_weights)
    assert result.returncode == 1
    assert len(error_lines(result)) == 1 and str(garbage) in error_lines(result)[0], result.stderr
    assert "Current video file" not in result.stdout


def test_predict_on_a_list_predicts_good_videos_and_names_broken_ones(media, tiny_weights):
    result = cli("predict", "-c", K400, *TINY, "--input_file", media["list"], "-w", tiny_weights)
    assert result.returncode == 1, result.stdout + result.stderr
    for path in media["good"]:
        assert f"Current video file: {path}" in result.stdout, result.stdout
    errors = error_lines(result)
    for kind, path in media["broken"].items():
        assert any(str(path) in line for line in errors), f"{kind} video {path} is not named:\n{result.stderr}"
        assert f"Current video file: {path}" not in result.stdout, f"{kind} video {path} was predicted"


def test_ctrl_c_during_test_is_one_line_and_exit_130(media, tmp_path, tiny_weights):
    # 20,000 videos: hours of work on any machine, so the signal always lands mid-run.
    long_list = tmp_path / "long.list"
    long_list.write_text(f"{media['good'][1]} 5\n" * 20_000)
    command = [sys.executable, "-m", "timesformer", "test", *map(str, _tiny_test_args(long_list, tiny_weights))]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # printed once the model and the videos are ready
        if not first.startswith("[TEST] 20000 videos x 3 views"):
            process.kill()  # before reading its stderr, which would wait for 20,000 videos
            pytest.fail(first + process.stderr.read())
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    out = first + out
    assert process.returncode == 130, out + err
    assert "top1:" not in out  # interrupted, not finished
    assert "Traceback" not in out + err and err.strip().splitlines()[-1] == "timesformer test: interrupted", err


# --- hostile weights -------------------------------------------------------------------------


@pytest.mark.parametrize("maker, name", [(brokenfiles.hostile_pdparams, "evil.pdparams"), (brokenfiles.hostile_torch, "evil.pyth")])
def test_predict_refuses_hostile_weights_and_runs_nothing(media, tmp_path, maker, name):
    marker = tmp_path / "pwned"
    weights = maker(tmp_path / name, marker, "os_system")
    result = cli("predict", "-c", K400, *TINY, "--input_file", media["good"][0], "-w", weights)
    assert result.returncode != 0
    assert not marker.exists(), "the pickle's payload ran"
    assert len(error_lines(result)) == 1 and str(weights) in error_lines(result)[0], result.stderr
    assert "Current video file" not in result.stdout


@pytest.mark.parametrize("payload", sorted(brokenfiles.PAYLOADS))
@pytest.mark.parametrize("suffix", [".pdparams", ".pyth", ".pth", "legacy.pth", "transformers"])
def test_every_loader_refuses_hostile_pickles(tmp_path, payload, suffix):
    import torch

    from timesformer import load_model
    from timesformer.errors import CheckpointError

    marker = tmp_path / "pwned"
    if suffix == ".pdparams":
        path = brokenfiles.hostile_pdparams(tmp_path / "w.pdparams", marker, payload)
    elif suffix == "legacy.pth":  # torch's pre-1.6 format: a bare pickle, no zip
        path = tmp_path / "w.pth"
        torch.save({"model_state": {"x": brokenfiles.PAYLOADS[payload](marker)}}, path, _use_new_zipfile_serialization=False)
    elif suffix == "transformers":  # a transformers folder with a hostile pytorch_model.bin
        path = tmp_path / "hf"
        path.mkdir()
        (path / "config.json").write_text('{"model_type": "timesformer", "hidden_size": 96}')
        brokenfiles.hostile_torch(path / "pytorch_model.bin", marker, payload)
    else:
        path = brokenfiles.hostile_torch(tmp_path / f"w{suffix}", marker, payload)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert not marker.exists()
    assert "\n" not in str(caught.value) and "refused" in str(caught.value), caught.value
    assert "add_safe_globals" not in str(caught.value)  # no advice to allowlist the payload
    # The file really is hostile: an unrestricted loader runs the payload (synchronously).
    if suffix in (".pdparams", ".pyth"):
        brokenfiles.run_unsafely(path)
        assert marker.exists()


# --- config mistakes -------------------------------------------------------------------------


def test_unknown_test_override_is_refused_naming_the_key(media, tiny_weights):
    result = cli("test", *_tiny_test_args(media["list"], tiny_weights), "-o", "DATASET.test.batchsize=2")
    assert result.returncode == 1
    assert len(error_lines(result)) == 1 and "batchsize" in error_lines(result)[0], result.stderr
    assert "top1" not in result.stdout


def _main(args: list, capsys) -> tuple[int, str]:
    """The CLI in this process (quicker than a subprocess for errors found before any work)."""
    from timesformer.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def test_unknown_yaml_key_names_it_and_the_nearest_valid_key(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(DEMO.read_text().replace("        depth: 2", "        dept: 2"))
    code, err = _main(["train", "-c", config], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "MODEL.backbone.dept" in err and "MODEL.backbone.depth" in err, err


def test_unknown_override_key_names_the_nearest_valid_key(capsys):
    code, err = _main(["train", "-c", DEMO, "-o", "log_intervall=3"], capsys)
    assert code == 1 and err.count("\n") == 1 and "log_intervall" in err and "log_interval" in err.replace("log_intervall", ""), err


@pytest.mark.parametrize("where", ["yaml", "override"])
def test_wrong_type_names_the_key(tmp_path, capsys, where):
    if where == "yaml":
        config = tmp_path / "wrong_type.yaml"
        config.write_text(DEMO.read_text().replace("        depth: 2", "        depth: two"))
        args = ["train", "-c", config]
    else:
        args = ["train", "-c", DEMO, "-o", "MODEL.backbone.depth=two"]
    code, err = _main(args, capsys)
    assert code == 1 and err.count("\n") == 1 and "MODEL.backbone.depth" in err and "two" in err, err


def test_missing_list_file_names_the_key_and_path(tmp_path, capsys, tiny_weights):
    missing = tmp_path / "nowhere" / "val.list"
    code, err = _main(["test", *_tiny_test_args(missing, tiny_weights)], capsys)
    assert code == 1 and err.count("\n") == 1 and str(missing) in err and "DATASET.test.file_path" in err, err


def test_an_unwritable_output_path_is_one_line(tmp_path, capsys, tiny_weights):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, err = _main(["convert", tiny_weights, blocker / "out.safetensors"], capsys)
    assert code == 1 and err.count("\n") == 1 and str(blocker) in err, err


@pytest.mark.parametrize("command", ["data check", "test"])
def test_a_list_that_is_not_text_is_one_line(tmp_path, capsys, tiny_weights, command):
    binary = tmp_path / "val.list"
    binary.write_bytes(b"\xff\xfe\x00garbage 1\n")
    args = ["data", "check", binary] if command == "data check" else ["test", *_tiny_test_args(binary, tiny_weights)]
    code, err = _main(args, capsys)
    assert code == 1 and err.count("\n") == 1 and str(binary) in err, err


def test_a_label_outside_the_classes_is_one_line(tmp_path, capsys, media):
    good = media["good"][0]
    train_list = tmp_path / "train.list"
    train_list.write_text(f"{good} 0\n{good} 7\n")
    args = ["train", "-c", DEMO, "-o", f"DATASET.train.file_path={train_list}", "-o", f"DATASET.valid.file_path={train_list}",
            "-o", "epochs=1", "-o", "DATASET.batch_size=2", "-o", "GRADIENT_ACCUMULATION.global_batch_size=2",
            "-o", "DATASET.num_workers=0", "-o", f"output_dir={tmp_path / 'out'}"]  # fmt: skip
    try:
        code, err = _main(args, capsys)
    except IndexError as crash:  # what happens today: cross_entropy's "Target 7 is out of bounds"
        pytest.fail(f"traceback: {crash}")
    assert code == 1 and err.count("\n") == 1 and "7" in err and str(train_list) in err, err


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "train.list"
    result = cli("train", "-c", DEMO, "-o", f"DATASET.train.file_path={missing}", "--debug", expect_traceback=True)
    assert result.returncode != 0 and "ConfigError" in result.stderr and str(missing) in result.stderr


# --- crashes: broken training data, SIGTERM, resume, atomic files ----------------------------


def _no_temporaries(directory: Path) -> None:
    leftovers = [p.name for p in directory.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert not leftovers, leftovers


def test_training_warns_once_per_broken_video_survives_sigterm_and_resumes(tmp_path, media):
    from timesformer import load_model
    from timesformer.engine.state import load_state

    data = tmp_path / "synth"
    made = cli("data", "synth", data, "--train", "6", "--val", "2", "--frames", "8", "--size", "32", "--workers", "1")
    assert made.returncode == 0, made.stderr
    broken = [media["broken"]["random_avi"], media["broken"]["missing"]]
    train_list = data / "train_with_broken.list"
    train_list.write_text((data / "train.list").read_text() + "".join(f"{p} 0\n" for p in broken))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "timesformer", "train", "-c", DEMO,
               "-o", f"DATASET.train.file_path={train_list}", "-o", f"DATASET.valid.file_path={data / 'val.list'}",
               "-o", "epochs=2", "-o", "DATASET.batch_size=1", "-o", "GRADIENT_ACCUMULATION.global_batch_size=1",
               "-o", "log_interval=1", "-o", "save_interval=1", "-o", f"output_dir={out}"]  # fmt: skip

    # Stop it with SIGTERM in the second epoch, after the first epoch's checkpoint.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "epoch:[  2/2" in line and "step:1 " in line:
            process.send_signal(signal.SIGTERM)
            break
    try:
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    output = "".join(lines) + rest
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "SIGTERM" in output and "--resume" in output, output[-3000:]
    warnings = {str(path): sum(str(path) in line for line in output.splitlines()) for path in broken}
    first_output = output
    state_file = out / "TimeSformer_demo_interrupted.state.pt"
    assert state_file.is_file() and load_state(state_file)["epochs_done"] == 1
    load_model(out / "TimeSformer_demo_interrupted.safetensors")
    load_model(out / "TimeSformer_demo_epoch_00001.safetensors")
    _no_temporaries(out)

    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "resumed from" in output, output[-3000:]
    model = load_model(out / "TimeSformer_demo_epoch_00002.safetensors")
    assert model.config.num_classes == 4
    _no_temporaries(out)
    # Atomic writes keep the mode a plain open() gives (tempfile's private 0600 would not).
    umask = os.umask(0o022)
    os.umask(umask)
    for path in out.glob("*_epoch_*"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))
    # Every index is drawn in epoch 1, so each broken video was met in both epochs (and by
    # either DataLoader worker): it must still be warned about exactly once.
    assert warnings == {str(path): 1 for path in broken}, first_output[-3000:]


WRITER = """
import sys, time
from timesformer.utils import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_a_killed_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the complete old file")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert target.read_bytes() == b"the complete old file"
