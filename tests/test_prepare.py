"""`data ucf101 / k400 / extract-frames / check / download ucf101` on tiny trees made here."""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from timesformer.cli import main
from timesformer.data.prepare.k400 import kinetics400_labels

CLASSES = ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]


def write_avi(path: Path, frames: int = 6, size: tuple[int, int] = (32, 24), seed: int = 0) -> np.ndarray:
    """An MPEG-4 AVI, as UCF101's; returns the frames written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    images = np.random.default_rng(seed).integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(images[:, ::4, ::4], 4, 1), 4, 2)[:, :h, :w]  # blocky: survives JPEG
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return images


def make_ucf_tree(root: Path) -> None:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    # Official files have CRLF endings and 1-based ids.
    (ann / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(CLASSES, 1)))
    train = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyLipstick/v_ApplyLipstick_g08_c01.avi", "Archery/v_Archery_g08_c01.avi"]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi"]
    label = {c: i for i, c in enumerate(CLASSES, 1)}
    for n in (1, 2):
        (ann / f"trainlist0{n}.txt").write_text("".join(f"{p} {label[p.split('/')[0]]}\r\n" for p in train))
        (ann / f"testlist0{n}.txt").write_text("".join(f"{p}\r\n" for p in test))
    for i, p in enumerate(train + test):
        if p != "Archery/v_Archery_g01_c01.avi":  # one annotated video is not on disk
            write_avi(root / "videos" / p, seed=i)


def test_ucf101_video_lists(tmp_path, capsys):
    make_ucf_tree(tmp_path)
    assert main(["data", "ucf101", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing: Archery/v_Archery_g01_c01.avi" in out
    for n in (1, 2):
        assert (tmp_path / f"ucf101_train_split_{n}_videos.txt").read_text().splitlines() == [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0",
            "ApplyLipstick/v_ApplyLipstick_g08_c01.avi 1",
            "Archery/v_Archery_g08_c01.avi 2",
        ]
        assert (tmp_path / f"ucf101_val_split_{n}_videos.txt").read_text().splitlines() == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 0"]
    assert not (tmp_path / "ucf101_train_split_3_videos.txt").exists()


def test_ucf101_rawframes_after_extract_frames(tmp_path):
    make_ucf_tree(tmp_path)
    assert main(["data", "extract-frames", str(tmp_path / "videos"), "--out", str(tmp_path / "rawframes"), "--workers", "2"]) == 0
    frame_dir = tmp_path / "rawframes" / "ApplyLipstick" / "v_ApplyLipstick_g08_c01"
    assert sorted(os.listdir(frame_dir)) == [f"img_{i:05d}.jpg" for i in range(1, 7)]
    assert (tmp_path / "rawframes" / "labels.txt").read_text().splitlines() == [f"{i} {c}" for i, c in enumerate(CLASSES)]
    assert main(["data", "ucf101", "--root", str(tmp_path), "--format", "rawframes"]) == 0
    assert (tmp_path / "ucf101_train_split_1_rawframes.txt").read_text().splitlines() == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 6 0",
        "ApplyLipstick/v_ApplyLipstick_g08_c01 6 1",
        "Archery/v_Archery_g08_c01 6 2",
    ]


def test_ucf101_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "ucf101", "--root", str(tmp_path / "nope")]) == 1
    (tmp_path / "videos").mkdir()
    assert main(["data", "ucf101", "--root", str(tmp_path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 2 and "nope" in err[0] and "classInd.txt" in err[1]


def test_extract_frames_from_list_decodes_to_the_video(tmp_path):
    images = write_avi(tmp_path / "vids" / "a.avi", frames=5, seed=3)
    (tmp_path / "list.txt").write_text("a 7\n")
    out = tmp_path / "frames"
    assert main(["data", "extract-frames", str(tmp_path / "list.txt"), "--out", str(out), "--data_prefix", str(tmp_path / "vids"), "--suffix", ".avi", "--workers", "1"]) == 0
    assert (out / "frames.list").read_text() == "a 5 7\n"
    with av.open(str(out / "a" / "img_00003.jpg")) as container:
        jpeg = next(container.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(tmp_path / "vids" / "a.avi")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][2]
    assert jpeg.shape == decoded.shape == images[2].shape
    assert np.abs(jpeg.astype(int) - decoded).mean() < 4  # JPEG quality 2 of the decoded frame
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch folders left


K400_CSV = """label,youtube_id,time_start,time_end,split
"passing American football (in game)",--abc123de,10,20,val
"massaging person's head",-xyz_7890AB,0,10,val
abseiling,missingVID1,31,41,val
archery,trainOnly01,5,15,train
"""


def test_k400_list_names_the_missing_video(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_avi(videos / "passing_American_football_(in_game)" / "--abc123de_000010_000020.mp4")
    write_avi(videos / "-xyz_7890AB_000000_000010.mp4")  # flat layout works too
    (tmp_path / "val.csv").write_text(K400_CSV)
    code = main(["data", "k400", "--root", str(tmp_path), "--split", "val", "--annotations", "val.csv", "--videos", str(videos)])
    assert code == 0
    out = capsys.readouterr().out
    assert "missingVID1" in out and "1 missing" in out
    assert (tmp_path / "val.list").read_text().splitlines() == [
        "passing_American_football_(in_game)/--abc123de_000010_000020.mp4 208",
        "-xyz_7890AB_000000_000010.mp4 196",
    ]


def test_k400_label_list_is_the_shared_one(tmp_path):
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "Kinetics-400_label_list.txt"
    if not shared.exists():
        pytest.skip(f"{shared} is absent")
    expected = {name: int(i) for i, name in (line.split() for line in shared.read_text().splitlines() if line.strip())}
    assert kinetics400_labels() == expected and len(expected) == 400


def test_k400_bad_header_and_unknown_label(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "val.csv").write_text("name,id\nx,y\n")
    assert main(["data", "k400", "--root", str(tmp_path)]) == 1
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nflying a kite,abc,0,10,val\n")
    assert main(["data", "k400", "--root", str(tmp_path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 2 and "youtube_id" in err[0] and "'flying a kite'" in err[1]


def test_check_names_broken_and_missing_videos(tmp_path, capsys):
    good = tmp_path / "good.avi"
    write_avi(good, frames=30)
    (tmp_path / "truncated.avi").write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # reads fine at its start
    (tmp_path / "random.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "text.avi").write_text("not a video\n")
    names = ["good", "truncated", "random", "empty", "text", "missing"]
    (tmp_path / "test.list").write_text("".join(f"{n} 0\n" for n in names))
    code = main(["data", "check", str(tmp_path / "test.list"), "--data_prefix", str(tmp_path), "--suffix", ".avi", "--workers", "2"])
    assert code == 1
    out = capsys.readouterr()
    text = out.out + out.err
    for name in names[1:]:
        assert f"{tmp_path / name}.avi: " in text
    assert f"{good}:" not in text
    assert "5 broken or missing" in text and "file not found" in text
    assert f"{tmp_path / 'truncated'}.avi: truncated" in text


def test_check_all_good_frames_list_exits_0(tmp_path, capsys):
    write_avi(tmp_path / "v" / "a.avi", frames=4)
    assert main(["data", "extract-frames", str(tmp_path / "v"), "--out", str(tmp_path / "f"), "--workers", "1"]) == 0
    assert main(["data", "check", str(tmp_path / "f" / "frames.list"), "--data_prefix", str(tmp_path / "f"), "--workers", "1"]) == 0
    # The list claims more frames than the folder holds.
    (tmp_path / "f" / "frames.list").write_text("a 9 0\n")
    assert main(["data", "check", str(tmp_path / "f" / "frames.list"), "--data_prefix", str(tmp_path / "f"), "--workers", "1"]) == 1
    assert "img_" in capsys.readouterr().out


def test_download_ucf101_from_a_mirror(tmp_path, monkeypatch, capsys):
    from test_download import RangeServer

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ucfTrainTestlist/classInd.txt", "1 ApplyEyeMakeup\r\n")
        zf.writestr("ucfTrainTestlist/trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
        zf.writestr("ucfTrainTestlist/testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    server = RangeServer()
    server.files["/ucf/UCF101TrainTestSplits-RecognitionTask.zip"] = buffer.getvalue()
    server.files["/ucf/UCF101.rar"] = b"Rar!\x1a\x07\x00 not really"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "ucf"
    try:
        # No extraction tool: a clear one-line error after the download.
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
        assert main(["data", "download", "ucf101", "--out", str(out), "--mirror", f"{server.url}/ucf"]) == 1
        assert "unrar" in capsys.readouterr().err
        assert (out / "annotations" / "trainlist01.txt").is_file() and (out / "UCF101.rar").is_file()

        # A stand-in `bsdtar` that "extracts" one video into the folder it is given.
        tools = tmp_path / "bin"
        tools.mkdir()
        fake = tools / "bsdtar"
        fake.write_text('#!/bin/sh\nmkdir -p "$4/UCF-101/ApplyEyeMakeup" && : > "$4/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"\n')
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
        assert main(["data", "download", "ucf101", "--out", str(out), "--mirror", f"{server.url}/ucf"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert (out / "videos" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi").is_file()
    assert main(["data", "ucf101", "--root", str(out)]) == 0
    assert (out / "ucf101_train_split_1_videos.txt").read_text() == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\n"
