"""`timesformer data folder ROOT -o DIR`: class folders -> lists, labels.txt and a config that trains."""

from __future__ import annotations

from pathlib import Path

import pytest

import brokenfiles
from timesformer.cli import main
from timesformer.data.prepare.folder import assign_splits, split_position
from timesformer.engine.config import load_config


def tiny_video(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return brokenfiles.write_video(path, frames=2, size=(16, 16), seed=seed)


def read_list(path: Path) -> list[tuple[str, int]]:
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def odd_tree(tmp_path_factory) -> Path:
    """Classes with spaces, unicode, nested folders, uppercase extensions, junk, an empty class."""
    root = tmp_path_factory.mktemp("odd") / "my videos"
    tiny_video(root / "zebra crossing" / "a clip.mp4", 1)
    tiny_video(root / "zebra crossing" / "deep" / "er" / "b.MP4", 2)
    tiny_video(root / "zebra crossing" / "c.avi", 3)
    tiny_video(root / "Ünïcode ✓" / "vidéo 1.mp4", 4)
    tiny_video(root / "Ünïcode ✓" / "vidéo 2.MOV", 5)
    tiny_video(root / "apple" / "1.mp4", 6)
    tiny_video(root / "apple" / "2.mp4", 7)
    tiny_video(root / "apple" / "3.mp4", 8)
    (root / "apple" / "notes.txt").write_text("not a video")
    (root / "apple" / "broken.mp4").write_bytes(b"\x00garbage" * 50)
    (root / "empty class").mkdir()
    (root / "empty class" / "readme.md").write_text("nothing here")
    (root / "stray.mp4").write_bytes(b"")
    return root


def test_odd_names_become_lists_labels_and_a_loadable_config(odd_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "split"
    assert main(["data", "folder", str(odd_tree), "-o", str(out), "--base", "configs/demo_motion.yaml"]) == 0
    printed = capsys.readouterr().out
    # Classes sorted by name; the empty one named and left out.
    assert [line.split(" ", 1)[1] for line in (out / "labels.txt").read_text().splitlines()] == [
        "apple", "zebra crossing", "Ünïcode ✓"]  # fmt: skip
    assert "8 videos in 3 classes, 5 skipped (1 empty class, 2 not a video file, 1 not in a class folder, 1 unreadable)" in printed
    for name in ("notes.txt", "broken.mp4", "empty class", "stray.mp4"):
        assert name in printed
    entries = read_list(out / "train.list") + read_list(out / "val.list")
    assert not (out / "test.list").exists()
    assert len(entries) == 8
    for path, _ in entries:
        assert " " not in path  # PaddleVideo splits lines on whitespace
    labels = {i: n for i, n in enumerate(["apple", "zebra crossing", "Ünïcode ✓"])}
    cfg = load_config(out / "config.yaml")
    prefix = cfg.DATASET.train.data_prefix
    assert prefix == str(odd_tree.resolve())
    for path, label in entries:
        video = Path(prefix) / path  # an absolute link path stays absolute
        assert video.resolve().parent.relative_to(odd_tree.resolve()).parts[0] == labels[label]
    assert {label for _, label in read_list(out / "val.list")} == {0, 1, 2}  # every class validated
    assert {label for _, label in read_list(out / "train.list")} == {0, 1, 2}
    assert cfg.MODEL.head.num_classes == 3
    assert cfg.DATASET.valid.file_path == str((out / "val.list").resolve())
    assert cfg.DATASET.test.file_path == str((out / "val.list").resolve())
    assert cfg.output_dir == str((out / "output").resolve())
    assert cfg.MODEL.backbone.img_size == 32  # the rest is the base config


def test_a_class_with_one_video_is_an_error_naming_it(tmp_path: Path, capsys):
    tiny_video(tmp_path / "root" / "a" / "1.mp4")
    tiny_video(tmp_path / "root" / "a" / "2.mp4")
    tiny_video(tmp_path / "root" / "lonely" / "1.mp4")
    assert main(["data", "folder", str(tmp_path / "root"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'lonely'" in err[0] and "at least 2" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--val", "1.5"], "--val 1.5"),
    (["--val", "0"], "--val 0"),
    (["--val", "0.6", "--test", "0.5"], ">= 1"),
    (["--seed", "-1"], "--seed -1"),
    (["--base", "nowhere.yaml"], "nowhere.yaml"),
])  # fmt: skip
def test_bad_flags_fail_in_one_line(tmp_path: Path, capsys, flags, message):
    tiny_video(tmp_path / "root" / "a" / "1.mp4")
    assert main(["data", "folder", str(tmp_path / "root"), "-o", str(tmp_path / "out"), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_output_inside_root_or_missing_root_fails(tmp_path: Path, capsys):
    tiny_video(tmp_path / "root" / "a" / "1.mp4")
    assert main(["data", "folder", str(tmp_path / "root"), "-o", str(tmp_path / "root" / "split")]) == 1
    assert main(["data", "folder", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "inside ROOT" in err[0] and "not a folder" in err[1]
    assert main(["data", "folder", str(tmp_path / "root"), "-o", str(tmp_path / "out"), "--base",
                 str(tmp_path / "out" / "config.yaml")]) == 1  # fmt: skip
    assert "config file not found" in capsys.readouterr().err


def test_split_is_stable_when_videos_are_added():
    old = [f"cls/{i:04d}.mp4" for i in range(200)]
    before = assign_splits(old, seed=5, val=0.2, test=0.1)
    after = assign_splits(old + [f"cls/new_{i}.mp4" for i in range(300)], seed=5, val=0.2, test=0.1)
    assert {p: after[p] for p in old} == before
    counts = {s: list(after.values()).count(s) for s in ("train", "val", "test")}
    # The hash is uniform: 500 videos split near 70 / 20 / 10 (binomial sd ~ 10, 9, 7).
    assert abs(counts["train"] - 350) < 40 and abs(counts["val"] - 100) < 35 and abs(counts["test"] - 50) < 25
    assert assign_splits(old, seed=6, val=0.2, test=0.1) != before  # the seed matters


def test_split_position_is_a_hash_of_seed_and_path():
    import hashlib

    digest = hashlib.sha256("3\0a/b.mp4".encode()).digest()
    assert split_position("a/b.mp4", 3) == int.from_bytes(digest[:8], "big") / 2**64


def test_every_small_class_gets_a_train_and_a_val_video():
    for seed in range(50):
        split = assign_splits(["c/1.mp4", "c/2.mp4"], seed, val=0.2, test=0.0)
        assert sorted(split.values()) == ["train", "val"]
        split = assign_splits(["c/1.mp4", "c/2.mp4", "c/3.mp4"], seed, val=0.3, test=0.3)
        assert {"train", "val"} <= set(split.values())


def test_same_root_and_seed_give_the_same_files_and_weights_are_recorded(tmp_path: Path, capsys):
    for c in ("b", "a"):
        for i in range(3):
            tiny_video(tmp_path / "root" / c / f"{i}.mp4", i)
    args = ["data", "folder", str(tmp_path / "root"), "--base", "configs/demo_motion.yaml", "--test", "0.3"]
    assert main([*args, "-o", str(tmp_path / "one"), "--weights", "some/model.safetensors"]) == 0
    assert main([*args, "-o", str(tmp_path / "two")]) == 0
    for name in ("train.list", "val.list", "test.list", "labels.txt"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    assert load_config(tmp_path / "one" / "config.yaml").MODEL.backbone.pretrained == "some/model.safetensors"
    assert load_config(tmp_path / "one" / "config.yaml").DATASET.test.file_path.endswith("test.list")
    printed = capsys.readouterr().out
    assert "6 videos in 2 classes, 0 skipped" in printed
