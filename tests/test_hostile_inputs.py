"""Hostile and careless inputs at the edges: path collisions between a command's inputs and
outputs, and list files (PaddleVideo lists, UCF101 / Kinetics annotations, link lists, label
lists) with bytes and numbers no real one holds. Each must end in one line naming the file
(and line) and what is wrong, with nothing written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from timesformer.cli import main
from timesformer.errors import UserError
from timesformer.utils import check_distinct_paths

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> str:
    """Run the CLI, require exit 1; return the one line it printed on stderr (besides progress bars)."""
    assert main([str(a) for a in argv]) == 1
    lines = [line for line in capsys.readouterr().err.strip().split("\n") if "%|" not in line]
    assert len(lines) == 1 and lines[0] and "Traceback" not in lines[0], lines
    return lines[0]


# ---------------------------------------------------------------- check_distinct_paths


def test_distinct_paths_pass(tmp_path):
    (tmp_path / "a").write_text("a")
    check_distinct_paths({"-p": tmp_path / "a", "-c": None}, {"-o": tmp_path / "b", "--json": [tmp_path / "c"]})


def test_same_file_by_every_spelling(tmp_path, monkeypatch):
    target = tmp_path / "w.bin"
    target.write_text("w")
    (tmp_path / "link.bin").symlink_to(target)
    os.link(target, tmp_path / "hard.bin")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for spelling in ["w.bin", "./w.bin", "sub/../w.bin", str(target), "link.bin", "hard.bin"]:
        with pytest.raises(UserError, match=rf"^-o {re.escape(str(Path(spelling)))} would overwrite -p .*w\.bin \(the same file\)"):
            check_distinct_paths({"-p": target}, {"-o": spelling})


def test_two_outputs_on_one_path(tmp_path):
    with pytest.raises(UserError, match=r"--json .*x\.json and --report .*x\.json are the same file"):
        check_distinct_paths({}, {"--json": tmp_path / "x.json", "--report": tmp_path / "d" / ".." / "x.json"})
    with pytest.raises(UserError, match="are the same file"):  # not yet existing, one through a symlinked folder
        (tmp_path / "alias").symlink_to(tmp_path)
        check_distinct_paths({}, {"-o": [tmp_path / "new.txt"], "--out": tmp_path / "alias" / "new.txt"})


# ---------------------------------------------------------------- commands refuse collisions


def test_export_refuses_outputs_on_inputs(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    labels = out / "TimeSformer.onnx"
    labels.write_text("a\nb\n")
    weights = tmp_path / "w.safetensors"  # never read: the check comes first
    err = run_cli(capsys, "export", "-p", weights, "-o", out, "--label_file", labels)
    assert "--label_file" in err and "TimeSformer.onnx" in err and "would overwrite" in err
    assert labels.read_text() == "a\nb\n"

    elsewhere = tmp_path / "TimeSformer.json"  # copied beside the model: onto the description
    elsewhere.write_text("a\n")
    err = run_cli(capsys, "export", "-p", weights, "-o", out, "--label_file", elsewhere)
    assert "TimeSformer.json" in err and "copy of --label_file" in err and "same file" in err

    config = out / "X.json"
    config.write_text("{}")
    err = run_cli(capsys, "export", "-p", weights, "-c", config, "-o", out, "--save_name", "X")
    assert "-c" in err and "X.json" in err and "would overwrite" in err

    err = run_cli(capsys, "export", "-p", out / "TimeSformer.onnx.data", "-o", out)
    assert "-p" in err and "would overwrite" in err

    for name in ("../escape", "", ".."):
        err = run_cli(capsys, "export", "-p", weights, "-o", out, "--save_name", name)
        assert "--save_name" in err
    assert sorted(p.name for p in out.iterdir()) == ["TimeSformer.onnx", "X.json"]


def test_convert_refuses_dst_on_src(tmp_path, capsys, monkeypatch):
    src = tmp_path / "m.safetensors"
    src.write_bytes(b"not really weights")
    (tmp_path / "alias.safetensors").symlink_to(src)
    monkeypatch.chdir(tmp_path)
    for dst in ("m.safetensors", str(src), "./x/../m.safetensors", "alias.safetensors"):
        err = run_cli(capsys, "convert", src, dst)
        assert err.startswith("timesformer convert: error: DST") and "would overwrite SRC" in err
    assert src.read_bytes() == b"not really weights"


def test_predict_and_features_refuse_outputs_on_the_videos_a_folder_or_list_names(tmp_path, capsys):
    """`-i` names a folder or a list: the videos in it are inputs too. The weights are never read:
    the check comes first."""
    folder = tmp_path / "videos"
    folder.mkdir()
    video = folder / "clip.mp4"
    video.write_bytes(b"a video's bytes")
    weights = tmp_path / "w.safetensors"
    err = run_cli(capsys, "predict", "-i", folder, "-w", weights, "--json", video)
    assert "--json" in err and "would overwrite -i" in err and "clip.mp4" in err
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{video} 0\n")
    err = run_cli(capsys, "predict", "-i", listing, "-w", weights, "--window", "2", "--json", video)
    assert "would overwrite -i" in err and "clip.mp4" in err

    out = tmp_path / "features"
    out.mkdir()
    (out / "features.npy").write_bytes(b"named as a video by the list")
    listing.write_text(f"{video} 0\n{out / 'features.npy'} 1\n")
    err = run_cli(capsys, "features", "-i", listing, "-w", weights, "-o", out)
    assert "would overwrite -i" in err and "features.npy" in err
    assert video.read_bytes() == b"a video's bytes" and (out / "features.npy").read_bytes() == b"named as a video by the list"


def test_extract_frames_refuses_its_list_over_the_input(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("frames.list", "labels.txt"):
        listing = out / name
        listing.write_text("a.mp4 0\n")
        err = run_cli(capsys, "data", "extract-frames", listing, "--out", out)
        assert "would overwrite LIST_OR_DIR" in err and name in err
        assert listing.read_text() == "a.mp4 0\n"


def test_k400_refuses_its_list_over_the_csv(tmp_path, capsys):
    root = tmp_path / "k400"
    (root / "videos").mkdir(parents=True)
    csv = root / "val.list"
    csv.write_text("label,youtube_id,time_start,time_end,split\n")
    err = run_cli(capsys, "data", "k400", "--root", root, "--split", "val", "--annotations", csv)
    assert "would overwrite --annotations" in err and csv.read_text().startswith("label,")
    for split in ("../escape", "/abs", ".hidden", "a b"):
        err = run_cli(capsys, "data", "k400", "--root", root, "--split", split)
        assert "--split" in err


def test_download_refuses_link_list_and_duplicate_names(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    links = out / "links.txt"
    links.write_text("http://127.0.0.1:9/mirror/links.txt\n")  # would be saved over the list itself
    err = run_cli(capsys, "data", "download", "--links", links, "--out", out)
    assert "would overwrite --links" in err and links.read_text().startswith("http://127.0.0.1:9/mirror/")
    links = tmp_path / "two.txt"
    links.write_text("http://127.0.0.1:9/a/x.bin\nhttp://127.0.0.1:9/b/x.bin\n")
    err = run_cli(capsys, "data", "download", "--links", links, "--out", out)
    assert "same file" in err and "x.bin" in err


def test_train_refuses_outputs_on_its_inputs(tmp_path, capsys):
    config = ROOT / "src" / "timesformer" / "configs" / "demo_motion.yaml"
    out = tmp_path / "out"
    out.mkdir()
    lists = tmp_path / "train.list"
    lists.write_text("a.mp4 0\n" * 64)  # more than a batch: the config's own checks pass
    base = ["train", "-c", config, "-o", f"output_dir={out}", "-o", f"DATASET.train.file_path={lists}",
            "-o", f"DATASET.valid.file_path={lists}", "-o", f"DATASET.test.file_path={lists}"]  # fmt: skip
    for name in ("TimeSformer_demo_best.safetensors", "TimeSformer_demo_epoch_00002.safetensors", "TimeSformer_demo_interrupted.state.pt"):
        weights = out / name
        weights.write_bytes(b"previous run")
        err = run_cli(capsys, *base, "-w", weights)
        assert err.startswith("timesformer train: error:") and name in err and "-w" in err
        assert weights.read_bytes() == b"previous run"
    log_list = tmp_path / "train.log"
    log_list.write_text("a.mp4 0\n" * 64)
    err = run_cli(capsys, *base, "-o", f"DATASET.train.file_path={log_list}", "--log_dir", tmp_path)
    assert "train.log would overwrite DATASET.train.file_path" in err
    (out / "metrics.jsonl").write_text("a.mp4 0\n" * 64)
    err = run_cli(capsys, *base, "-o", f"DATASET.valid.file_path={out / 'metrics.jsonl'}")
    assert "metrics.jsonl would overwrite DATASET.valid.file_path" in err


# ---------------------------------------------------------------- flags out of range


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["data", "synth", "{tmp}/s", "--size", "100000"], "--size 100000"),
        (["data", "synth", "{tmp}/s", "--frames", "5000", "--size", "4096"], "over 2 GiB"),
        (["data", "synth", "{tmp}/s", "--frames", "1000000000"], "--frames 1000000000"),
        (["data", "synth", "{tmp}/s", "--train", "10000000000000"], "--train 10000000000000"),
        (["data", "synth", "{tmp}/s", "--noise", "nan"], "--noise nan"),
        (["data", "synth", "{tmp}/s", "--speed", "1", "inf"], "--speed 1 inf"),
        (["data", "synth", "{tmp}/s", "--fps", "-1"], "--fps -1"),
        (["data", "synth", "{tmp}/s", "--workers", "100000"], "--workers 100000"),
        (["data", "check", "{tmp}/l.txt", "--num_seg", "0"], "--num_seg 0"),
        (["data", "check", "{tmp}/l.txt", "--num_seg", "99999999999"], "--num_seg 99999999999"),
        (["data", "check", "{tmp}/l.txt", "--workers", "-3"], "--workers -3"),
        (["data", "extract-frames", "{tmp}", "--out", "{tmp}/o", "--workers", "0"], "--workers 0"),
        (["data", "download", "--links", "{tmp}/l.txt", "--out", "{tmp}/o", "--retries", "-1"], "--retries -1"),
    ],
)
def test_flags_out_of_range_are_refused_before_work(tmp_path, capsys, argv, problem):
    (tmp_path / "l.txt").write_text("http://127.0.0.1:9/a.mp4 0\n" if "download" in argv else "a.mp4 0\n")
    (tmp_path / "v.mp4").write_bytes(b"")
    err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert problem in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.txt", "v.mp4"]  # nothing written


# ---------------------------------------------------------------- list files


BAD_NUMBERS = {
    "unicode digits": "١٢",
    "superscript": "²",
    "inf": "inf",
    "nan": "nan",
    "huge": "9" * 5000,
    "big": str(2**63),
    "negative": "-1",
    "float": "1e3",
    "underscore": "1_0",
}


@pytest.mark.parametrize("kind", sorted(BAD_NUMBERS))
def test_paddlevideo_list_numbers(tmp_path, capsys, kind):
    bad = BAD_NUMBERS[kind]
    for lines in ([f"v.mp4 {bad}"], [f"frames/v 8 {bad}"], [f"frames/v {bad} 0"]):
        listing = tmp_path / "val.list"
        listing.write_text("\n".join(["ok.mp4 0" if len(lines[0].split()) == 2 else "frames/ok 8 0", *lines]) + "\n")
        err = run_cli(capsys, "data", "check", listing)
        assert "val.list line 2:" in err and len(err) < 300, err


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"ok.mp4 0\n\xff\xfe.mp4 1\n", "line 2: byte 0xff is not UTF-8"),
        (b"ok.mp4 0\nx\x00y.mp4 1\n", "line 2: control character"),
        (b"\xef\xbb\xbf", "empty"),
    ],
)
def test_paddlevideo_list_bytes(tmp_path, capsys, content, problem):
    listing = tmp_path / "val.list"
    listing.write_bytes(content)
    err = run_cli(capsys, "data", "check", listing)
    assert problem in err


def test_bom_at_the_start_of_a_list_is_not_part_of_the_first_path(tmp_path, capsys):
    from timesformer.data.prepare.lists import read_list

    listing = tmp_path / "val.list"
    listing.write_bytes("\ufeffa.mp4 3\nb.mp4 1\n".encode())
    kind, entries = read_list(listing, str(tmp_path))
    assert kind == "videos" and [e.name for e in entries] == ["a.mp4", "b.mp4"] and entries[0].label == 3
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeff0 left\n1 right\n".encode())
    from timesformer.data.labels import read_labels

    assert read_labels(labels) == ["left", "right"]


def test_predict_input_list_with_bom_and_bad_bytes(tmp_path):
    from timesformer.inference.inputs import list_videos

    (tmp_path / "a.mp4").write_bytes(b"")
    listing = tmp_path / "videos.txt"
    listing.write_bytes("\ufeffa.mp4 0\n".encode())
    assert list_videos(listing) == [str(tmp_path / "a.mp4")]  # found beside the list, not "\ufeffa.mp4"
    listing.write_bytes(b"a.mp4\n\xff.mp4\n")
    with pytest.raises(UserError, match=r"videos\.txt line 2: byte 0xff is not UTF-8"):
        list_videos(listing)


def make_ucf101(root, class_index: bytes, trainlist: bytes):
    (root / "annotations").mkdir(parents=True)
    (root / "videos" / "Run").mkdir(parents=True)
    (root / "videos" / "Run" / "v_1.avi").write_bytes(b"")
    (root / "annotations" / "classInd.txt").write_bytes(class_index)
    (root / "annotations" / "trainlist01.txt").write_bytes(trainlist)
    (root / "annotations" / "testlist01.txt").write_bytes(b"Run/v_1.avi\n")


@pytest.mark.parametrize(
    "class_index, trainlist, problem",
    [
        (b"\xd9\xa1 Run\n", b"Run/v_1.avi 1\n", "classInd.txt line 1: class ID"),  # ١ as bytes
        ("² Run\n".encode(), b"Run/v_1.avi 1\n", "classInd.txt line 1: class ID"),
        (b"9" * 5000 + b" Run\n", b"Run/v_1.avi 1\n", "classInd.txt line 1: class ID"),
        (b"inf Run\n", b"Run/v_1.avi 1\n", "classInd.txt line 1: class ID"),
        (b"1 Run\n", b"Run/v_1.avi \xff\n", "trainlist01.txt line 1: byte 0xff"),
        (b"1 Run\n", b"Run/v_1.avi " + b"9" * 5000 + b"\n", "trainlist01.txt line 1: label"),
        (b"1 R\x00un\n", b"Run/v_1.avi 1\n", "classInd.txt line 1: control character"),
    ],
)
def test_ucf101_annotations(tmp_path, capsys, class_index, trainlist, problem):
    make_ucf101(tmp_path, class_index, trainlist)
    err = run_cli(capsys, "data", "ucf101", "--root", tmp_path)
    assert problem in err and len(err) < 400, err


def test_ucf101_bom_in_annotations(tmp_path, capsys):
    make_ucf101(tmp_path, "\ufeff1 Run\n".encode(), "\ufeffRun/v_1.avi 1\n".encode())
    assert main(["data", "ucf101", "--root", str(tmp_path)]) == 0
    lists = sorted(tmp_path.glob("ucf101_*split_1_videos.txt"))
    assert [p.read_text() for p in lists] == ["Run/v_1.avi 0\n", "Run/v_1.avi 0\n"]


@pytest.mark.parametrize(
    "row, problem",
    [
        ("abseiling,x,inf,10,val", "time_start/time_end"),
        ("abseiling,x,nan,10,val", "time_start/time_end"),
        ("abseiling,x,1e308,10,val", "time_start/time_end"),
        ("abseiling,x,١٢,10,val", "time_start/time_end"),
        ("abseiling,x," + "9" * 5000 + ",10,val", "time_start/time_end"),
        ("abseiling\udcff,x,0,10,val", "byte 0xff is not UTF-8"),
        ("not a class,x,0,10,val", "is not a Kinetics-400 class"),
    ],
)
def test_k400_csv(tmp_path, capsys, row, problem):
    root = tmp_path / "k400"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "x_000000_000010.mp4").write_bytes(b"")
    data = ("label,youtube_id,time_start,time_end,split\n" + row + "\n").encode("utf-8", "surrogateescape")
    (root / "val.csv").write_bytes(data)
    err = run_cli(capsys, "data", "k400", "--root", root, "--split", "val")
    assert "val.csv line 2" in err and problem in err and len(err) < 400, err
    assert not (root / "val.list").exists()


def test_k400_csv_with_bom_finds_its_header(tmp_path):
    root = tmp_path / "k400"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "x_000001_000011.mp4").write_bytes(b"")
    (root / "val.csv").write_bytes("\ufefflabel,youtube_id,time_start,time_end,split\nabseiling,x,1,11,val\n".encode())
    assert main(["data", "k400", "--root", str(root), "--split", "val"]) == 0
    assert (root / "val.list").read_text() == "x_000001_000011.mp4 0\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"http://127.0.0.1:9/a.bin\n\xc3\x28\n", "line 2: byte 0xc3 is not UTF-8"),
        (b"http://127.0.0.1:9/a.bin zz\n", "line 1: expected `URL [SHA256]`"),
        (b"http://127.0.0.1:9/a%00.bin\n", "line 1: http://127.0.0.1:9/a%00.bin: the URL's file name holds a control character"),
        (b"", "no URLs"),
    ],
)
def test_link_list_bytes(tmp_path, capsys, content, problem):
    links = tmp_path / "links.txt"
    links.write_bytes(content)
    err = run_cli(capsys, "data", "download", "--links", links, "--out", tmp_path / "out")
    assert problem in err, err


def test_label_file_ids_are_bounded(tmp_path):
    from timesformer.data.labels import read_labels

    for text, problem in [("0 a\n99999999999 b\n", "out of range"), ("0 a\n" + "9" * 5000 + " b\n", "out of range")]:
        path = tmp_path / "labels.txt"
        path.write_text(text)
        with pytest.raises(UserError, match=problem):
            read_labels(path)
    path.write_bytes(b"\xff\n")
    with pytest.raises(UserError, match=r"labels\.txt line 1: byte 0xff is not UTF-8"):
        read_labels(path)


def test_video_asking_for_huge_frames_is_refused_before_decoding(tmp_path):
    """A header (here YUV4MPEG's) may claim any frame size; it is refused before FFmpeg
    allocates a frame of it."""
    import resource
    import time

    from timesformer.data.video import read_clip
    from timesformer.errors import VideoReadError

    path = tmp_path / "huge.y4m"
    path.write_bytes(b"YUV4MPEG2 W12000 H12000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 1000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(VideoReadError, match=r"huge\.y4m: 12000x12000 frames: more than \d+ pixels"):
        read_clip(path, 8, "test")
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no 200 MB frame was made


# ---------------------------------------------------------------- absurd checkpoints, through the CLI

CLI_LOOP = """
import contextlib, io, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from timesformer.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as exc:  # what the test is looking for
            code, err = -1, io.StringIO(f"{type(exc).__name__}: {exc}")
    results.append([code, err.getvalue(), time.perf_counter() - started])
print(json.dumps(results))
"""


def test_absurd_checkpoints_are_refused_in_one_line(tmp_path):
    """Files that ask for absurd sizes or carry the wrong types (config metadata, arrays),
    read by `convert` in one process under a 4 GiB address-space limit: one line each, in
    seconds, nothing written."""
    import json
    import pickle
    import subprocess
    import sys

    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import save_file

    from timesformer import build_model, save_model

    model = build_model(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_frames=2, num_classes=3)
    good = save_model(model, tmp_path / "good.safetensors")
    with safe_open(str(good), "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["timesformer_config"])
    files = []
    for name, change in {"depth": 10**9, "num_heads": 0, "norm_eps": float("nan"), "embed_dim": "32",
                         "num_frames": 10**8, "num_classes": 10**12}.items():  # fmt: skip
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path), metadata=dict(metadata, timesformer_config=json.dumps(dict(config, **{name: change}))))
        files.append(path)
    path = tmp_path / "list.safetensors"
    save_file(state, str(path), metadata=dict(metadata, timesformer_config="[1, 2]"))
    files.append(path)
    np.savez(tmp_path / "strings.npz", **{"patch_embed.proj.weight": np.array(["a", "b"])})
    np.savez(tmp_path / "structured.npz", cls_token=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]))
    files += [tmp_path / "strings.npz", tmp_path / "structured.npz"]

    class HugeArray:  # pickled as numpy pickles arrays, claiming 10^7 x 10^7 float32 with 16 bytes of data
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct

            return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**7, 10**7), np.dtype("float32"), False, b"\0" * 16))

    with open(tmp_path / "huge.pdparams", "wb") as f:
        pickle.dump({"patch_embed.proj.weight": HugeArray()}, f, protocol=2)
    files.append(tmp_path / "huge.pdparams")

    argvs = [["convert", str(path), str(tmp_path / "out" / f"{path.stem}.safetensors")] for path in files]
    done = subprocess.run([sys.executable, "-c", CLI_LOOP, json.dumps(argvs)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for path, (code, err, seconds) in zip(files, json.loads(done.stdout.strip().splitlines()[-1])):
        lines = [line for line in err.strip().splitlines() if line]
        assert code == 1 and len(lines) == 1 and path.name in lines[0], (path.name, err[-500:])
        assert seconds < 10, (path.name, seconds)
    assert not (tmp_path / "out").exists()
