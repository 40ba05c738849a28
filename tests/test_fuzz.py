"""Fuzzing every reader of a user's file: checkpoints in each format we read, the shipped
configs, list files (PaddleVideo video and frame lists, UCF101 and Kinetics annotations,
link lists, label lists) and videos.

Each reader gets its real, valid input mutated (bit flips, cut short, chunks repeated or
dropped, tokens such as `inf`, `-1`, `&a`, NUL or a BOM spliced in) and plain random bytes.
Whatever it is given, it must either work or raise `UserError` with one line of at most
`MAX_MESSAGE` characters, within `MAX_SECONDS`, inside an address-space limit of
`MEMORY_LIMIT` (a file that asks for a huge allocation must be refused, not tried).

The bulk runs in one subprocess (this file run as a script) under `RLIMIT_AS`; a few cases go
through the CLI in their own subprocesses. Seeded: a failure names its case, which this file
run by hand reproduces (`python tests/test_fuzz.py --corpus DIR --only CASE`).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEED = 20261201
CASES_PER_READER = 40
CLI_SEEDS = 1  # mutated files per CLI command (each run starts Python and torch: ~2 s)
MAX_SECONDS = 5.0  # one read of a file of a few KB
MAX_MESSAGE = 1000  # characters in the error line
MEMORY_LIMIT = 6 << 30  # address space: torch, FFmpeg and the readers' working memory fit easily
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "timesformer" / "configs"

TOKENS = [
    b"inf", b"-inf", b"nan", b".inf", b".nan", b"-1", b"0", b"1e309", b"9" * 60, b"\x00", b"\xff\xfe", b"\xef\xbb\xbf",
    "١٢".encode(), b"&a", b"*a", b"!!python/object:os.system", b"[" * 64, b"{", b"\n", b" ", b",", b":", b"'", b'"',
    b"%00", b"../", b"\r", b"\t", b"null", b"true", b"[]", b"{}",
]


# ------------------------------------------------------------------ the corpus of real files


def make_corpus(root: Path) -> dict[str, list[Path]]:
    """{reader name: valid files it reads}, all tiny, made here."""
    import av
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from timesformer import build_model, save_model

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_frames=2, num_classes=3)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    ours = save_model(model, root / "ours.safetensors")
    save_file(state, str(root / "plain.safetensors"))
    torch.save(state, root / "plain.pth")
    torch.save({"epoch": 1, "model_state": {f"model.{k}": v for k, v in state.items()}}, root / "official.pyth")
    with open(root / "paddle.pdparams", "wb") as f:  # Paddle saves numpy arrays, Linear weights [in, out]
        arrays = {k: (v.t() if v.ndim == 2 and k.endswith(".weight") else v).numpy() for k, v in state.items()}
        pickle.dump(arrays, f, protocol=2)
    np.savez(root / "plain.npz", **{k: v.numpy() for k, v in state.items()})
    hf = root / "hf"
    hf.mkdir(exist_ok=True)
    config = {"image_size": 32, "patch_size": 16, "num_channels": 3, "num_frames": 2, "hidden_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "layer_norm_eps": 1e-6, "qkv_bias": True,
              "attention_type": "divided_space_time"}  # fmt: skip
    (hf / "config.json").write_text(json.dumps(config))
    save_file({f"timesformer.{k}": v for k, v in state.items()}, str(hf / "model.safetensors"))

    video = root / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(8):
            frame = np.full((32, 32, 3), i * 30, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    from timesformer.data.prepare.frames import extract_video_frames

    extract_video_frames(str(video), root / "frames")  # img_00001.jpg ...

    lists = root / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "videos.list").write_text(f"{video} 0\n{video} 2\n")
    (lists / "frames.list").write_text("frames/a 8 0\nframes/b 12 1\n")
    (lists / "classInd.txt").write_text("1 Run\n2 Jump\n")
    (lists / "trainlist01.txt").write_text("Run/v_Run_g01_c01.avi 1\nJump/v_Jump_g01_c01.avi 2\n")
    (lists / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,val\n\"passing American football (in game)\",x,0,10,val\n"
    )
    (lists / "links.txt").write_text("http://127.0.0.1:9/a/part1.tar\n# comment\nhttp://127.0.0.1:9/b.bin " + "a" * 64 + "\n")
    (lists / "labels.txt").write_text("0 abseiling\n1 air_drumming\n2 jumping\n")
    return {
        "checkpoint": [ours, root / "plain.safetensors", root / "plain.pth", root / "official.pyth",
                       root / "paddle.pdparams", root / "plain.npz"],  # fmt: skip
        "transformers": [hf / "config.json"],
        "config": sorted(CONFIGS.glob("*.yaml")),
        "video_list": [lists / "videos.list", lists / "frames.list"],
        "ucf101": [lists / "classInd.txt", lists / "trainlist01.txt"],
        "k400": [lists / "val.csv"],
        "links": [lists / "links.txt"],
        "labels": [lists / "labels.txt"],
        "video": [video],
        "video_to_end": [video],
        "image": [root / "frames" / "img_00001.jpg"],
    }


# ------------------------------------------------------------------ mutations


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of `data`: (what was done, the bytes)."""
    kind = rng.choice(["flip", "flip", "cut", "repeat", "drop", "token", "token", "random"])
    b = bytearray(data)
    if kind == "random" or not b:
        return "random", rng.randbytes(rng.randrange(0, 4096))
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "cut":
        del b[rng.randrange(len(b)) :]
    elif kind == "repeat":
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 256))
        b[i:i] = b[i:j] * rng.randint(1, 8)
    elif kind == "drop":
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 256)]
    else:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b) + 1)
            j = i + (rng.randint(0, 8) if rng.random() < 0.5 else 0)  # insert, or replace a few bytes
            b[i:j] = rng.choice(TOKENS)
    return kind, bytes(b)


# ------------------------------------------------------------------ readers


def read_checkpoint_file(path: Path) -> None:
    from timesformer.model.checkpoints import model_from_checkpoint, read_checkpoint

    model_from_checkpoint(read_checkpoint(path), path)


def read_transformers_dir(path: Path) -> None:
    read_checkpoint_file(path.parent)


def read_config(path: Path) -> None:
    from timesformer.engine.config import load_config

    load_config(path)


def read_video_list(path: Path) -> None:
    from timesformer.data.prepare.lists import read_list

    read_list(path, "/data")


def read_ucf101(path: Path) -> None:
    from timesformer.data.prepare.ucf101 import read_class_index, read_split_file

    if path.name.startswith("classInd"):
        read_class_index(path)
    else:
        read_split_file(path, {"Run": 0, "Jump": 1})


def read_k400(path: Path) -> None:
    from timesformer.data.prepare.k400 import write_k400_list

    videos = path.parent / "k400_videos"
    videos.mkdir(exist_ok=True)
    write_k400_list(path.parent, "val", path, videos, progress=False)


def read_links(path: Path) -> None:
    from timesformer.data.prepare.links import read_link_list

    read_link_list(path, path.parent / "downloads")


def read_label_file(path: Path) -> None:
    from timesformer.data.labels import read_labels

    read_labels(path)


def read_video(path: Path) -> None:
    from timesformer.data.video import read_clip

    read_clip(path, 4, "test")


def read_video_to_end(path: Path) -> None:
    from timesformer.data.prepare.check import check_entry
    from timesformer.data.prepare.lists import ListEntry

    check_entry(ListEntry(path.name, str(path), 0), "videos", num_seg=4, full=True)  # `data check`: reasons, not raises


def read_image_file(path: Path) -> None:
    from timesformer.data.video import read_image

    read_image(path)


READERS = {
    "checkpoint": read_checkpoint_file,
    "transformers": read_transformers_dir,
    "config": read_config,
    "video_list": read_video_list,
    "ucf101": read_ucf101,
    "k400": read_k400,
    "links": read_links,
    "labels": read_label_file,
    "video": read_video,
    "video_to_end": read_video_to_end,
    "image": read_image_file,
}


def run_case(reader: str, source: Path, work: Path, rng: random.Random, case: str) -> dict | None:
    """Mutate `source` into `work` (same name: readers go by suffix) and read it; a dict
    describing the failure, or None when the reader behaved."""
    from timesformer.errors import UserError

    kind, data = mutate(source.read_bytes(), rng)
    target = work / source.name
    if reader == "transformers":  # the directory's weights stay valid: its config.json is the input
        target = work / "hf" / "config.json"
        (work / "hf").mkdir(parents=True, exist_ok=True)
        os.link(source.parent / "model.safetensors", work / "hf" / "model.safetensors")
    target.write_bytes(data)
    started = time.perf_counter()
    problem = None
    try:
        READERS[reader](target)
    except UserError as err:
        message = str(err)
        if "\n" in message or len(message) > MAX_MESSAGE or not message.strip():
            problem = f"UserError not one short line ({len(message)} chars): {message[:300]!r}"
    except BaseException as err:  # noqa: BLE001 - what the fuzz test is looking for
        problem = f"{type(err).__name__}: {str(err)[:300]}"
    seconds = time.perf_counter() - started
    if problem is None and seconds > MAX_SECONDS:
        problem = f"took {seconds:.1f} s"
    if problem is None:
        return None
    return {"case": case, "reader": reader, "source": source.name, "mutation": kind, "problem": problem}


def drive(corpus_dir: Path, seed: int, cases: int, only: str | None) -> list[dict]:
    import shutil

    corpus = make_corpus(corpus_dir / "corpus")
    failures = []
    for reader, sources in corpus.items():
        for i in range(cases):
            source = sources[i % len(sources)]
            case = f"{reader}:{i}"
            if only is not None and case != only:
                continue
            rng = random.Random(f"{seed}:{case}")
            work = corpus_dir / "work" / reader / str(i)
            work.mkdir(parents=True)
            try:
                failure = run_case(reader, source, work, rng, case)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if failure:
                failures.append(failure)
    return failures


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# ------------------------------------------------------------------ tests


def test_every_reader_survives_mutated_and_random_files(tmp_path):
    """The bulk: CASES_PER_READER cases per reader, in one memory-limited subprocess."""
    out = tmp_path / "failures.json"
    command = [sys.executable, __file__, "--corpus", str(tmp_path), "--cases", str(CASES_PER_READER), "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, preexec_fn=limit_memory, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and out.exists(), result.stderr[-3000:]
    failures = json.loads(out.read_text())
    report = "\n".join(f"{f['case']} ({f['source']}, {f['mutation']}): {f['problem']}" for f in failures[:15])
    assert not failures, f"{len(failures)} readers misbehaved (rerun one: python tests/test_fuzz.py --only CASE):\n{report}"


def mutated_copy(source: Path, dest: Path, seed: int) -> Path:
    rng = random.Random(seed)
    dest.write_bytes(mutate(source.read_bytes(), rng)[1])
    return dest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("fuzz") / "corpus")


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "{paddle.pdparams}", "{out}/c.safetensors"],
        ["convert", "{ours.safetensors}", "{out}/c.safetensors"],
        ["data", "check", "{videos.list}", "--workers", "1"],
        ["test", "-c", "{demo_motion.yaml}", "-w", "{out}/none.safetensors"],
    ],
)
def test_cli_on_mutated_files(tmp_path, corpus, argv):
    """Through the CLI, in a memory-limited subprocess: exit 0 or 1, one line on stderr
    besides progress bars, no traceback, within seconds."""
    files = {p.name: p for paths in corpus.values() for p in paths}
    for seed in range(CLI_SEEDS):
        out = tmp_path / str(seed)
        out.mkdir()
        args = []
        for arg in argv:
            if arg.startswith("{") and arg.strip("{}") in files:
                arg = str(mutated_copy(files[arg.strip("{}")], out / arg.strip("{}"), SEED + seed))
            args.append(arg.replace("{out}", str(out)))
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "timesformer", *args], preexec_fn=limit_memory,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        lines = [line for line in result.stderr.strip().splitlines() if "%|" not in line and line.strip()]
        assert result.returncode in (0, 1), result.stderr[-2000:]
        assert "Traceback" not in result.stderr and len(lines) <= 1, result.stderr[-2000:]
        assert time.perf_counter() - started < 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a scratch folder")
    parser.add_argument("--cases", type=int, default=CASES_PER_READER)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", help="one case, e.g. config:17")
    parser.add_argument("--out", help="write the failures here as JSON (else print them)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    failures = drive(Path(args.corpus), args.seed, args.cases, args.only)
    if args.out:
        Path(args.out).write_text(json.dumps(failures))
    else:
        for failure in failures:
            print(json.dumps(failure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
