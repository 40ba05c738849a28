"""List datasets: PaddleVideo's list formats, and broken videos handled per split."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from test_video import encode_video, write_frame_folder  # tests/ is on sys.path under pytest
from timesformer.data.datasets import FrameListDataset, VideoListDataset, collate_samples, read_entries
from timesformer.data.pipeline import VideoPipeline
from timesformer.errors import UserError

TEST = VideoPipeline(num_seg=4, short_side_min=48, short_side_max=48, crop_size=48)
TRAIN = VideoPipeline(num_seg=4, mode="train", short_side_min=48, short_side_max=56, crop="random", crop_size=40, flip=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("list_videos")
    for name, frames in (("a", 24), ("b", 30), ("c", 36)):
        encode_video(root / f"{name}.mp4", frames)
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "text.mp4").write_text("not a video\n")
    return root


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_list_prefix_suffix_and_blank_lines(tmp_path):
    listing = write_list(tmp_path / "l.txt", ["ApplyEyeMakeup/v_1 0", "", "  ", "/abs/v_2 7", "x 3"])
    entries = read_entries(listing, "videos", data_prefix="/data/ucf", suffix=".avi")
    assert [(e.path, e.label) for e in entries] == [
        ("/data/ucf/ApplyEyeMakeup/v_1.avi", 0),
        ("/abs/v_2.avi", 7),  # os.path.join, as PaddleVideo joins
        ("/data/ucf/x.avi", 3),
    ]
    frames = read_entries(write_list(tmp_path / "f.txt", ["dir/v_1 120 5"]), "frames", data_prefix="root")
    assert (frames[0].path, frames[0].num_frames, frames[0].label) == ("root/dir/v_1", 120, 5)


@pytest.mark.parametrize("bad", ["path label", "path 1.5", "a b c d"])
def test_malformed_line_names_file_and_line(tmp_path, bad):
    listing = write_list(tmp_path / "l.txt", ["ok 1", "", bad])
    with pytest.raises(UserError, match=r"l\.txt line 3: (expected|label .* is not a whole number)"):
        VideoListDataset(listing)


def test_unlabeled_or_wrong_kind_of_list(tmp_path):
    with pytest.raises(UserError, match="'just_a_path' has no label"):
        VideoListDataset(write_list(tmp_path / "a.txt", ["just_a_path"]))
    with pytest.raises(UserError, match="a list of frames where a list of videos"):
        VideoListDataset(write_list(tmp_path / "b.txt", ["dir 10 1"]))


def test_missing_or_empty_list(tmp_path):
    with pytest.raises(UserError, match="list file not found"):
        VideoListDataset(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="empty"):
        VideoListDataset(write_list(tmp_path / "empty.txt", [""]))


def test_test_split_never_substitutes(videos, tmp_path):
    listing = write_list(tmp_path / "val.list", ["a 0", "broken 1", "missing 2", "c 3"])
    dataset = VideoListDataset(listing, data_prefix=str(videos), suffix=".mp4", pipeline=TEST, mode="test")
    items = [dataset[(0, i)] for i in range(len(dataset))]
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    assert items[0]["clip"].shape == (3, 3, 4, 48, 48) and items[0]["error"] is None
    assert items[1]["clip"] is None and items[1]["label"] == 1 and items[1]["error"]
    assert items[2]["clip"] is None and "not found" in items[2]["error"]
    assert torch.equal(dataset[3]["clip"], items[3]["clip"])  # an int key is epoch 0
    batch = collate_samples(items)
    assert batch["clip"].shape == (2, 3, 3, 4, 48, 48)
    assert batch["label"].tolist() == [0, 3] and batch["index"].tolist() == [0, 3]
    assert [(i, Path(p).name) for i, p, _ in batch["failed"]] == [(1, "broken.mp4"), (2, "missing.mp4")]
    assert all(reason for _, _, reason in batch["failed"])
    empty = collate_samples(items[1:3])
    assert empty["clip"] is None and len(empty["failed"]) == 2 and empty["label"].numel() == 0


def test_train_split_substitutes_deterministically_and_warns_once(videos, tmp_path):
    listing = write_list(tmp_path / "train.list", ["a.mp4 0", "broken.mp4 1", "b.mp4 2", "c.mp4 3"])
    dataset = VideoListDataset(listing, data_prefix=str(videos), pipeline=TRAIN, mode="train", seed=3)
    with pytest.warns(UserWarning, match="broken.mp4"):
        first = dataset[(2, 1)]
    assert first["index"] == 1 and first["error"] is None and first["clip"].shape == (1, 3, 4, 40, 40)
    assert Path(first["path"]).name != "broken.mp4"
    assert first["label"] == {"a.mp4": 0, "b.mp4": 2, "c.mp4": 3}[Path(first["path"]).name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same file is not warned about twice
        again = dataset[(2, 1)]
    assert again["path"] == first["path"] and torch.equal(again["clip"], first["clip"])
    # a fresh dataset (another worker) draws the same substitute
    other = VideoListDataset(listing, data_prefix=str(videos), pipeline=TRAIN, mode="train", seed=3)
    with pytest.warns(UserWarning):
        assert torch.equal(other[(2, 1)]["clip"], first["clip"])
    # augmentation depends on (seed, epoch, index)
    assert torch.equal(dataset[(5, 2)]["clip"], other[(5, 2)]["clip"])


def test_train_split_gives_up_after_bounded_tries(videos, tmp_path):
    listing = write_list(tmp_path / "bad.list", ["broken.mp4 0", "text.mp4 1"])
    dataset = VideoListDataset(listing, data_prefix=str(videos), pipeline=TRAIN, mode="train", max_tries=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="4 videos in a row could not be read"):
            dataset[0]


def test_frame_list_dataset(tmp_path):
    write_frame_folder(tmp_path / "frames" / "v1", 10)
    listing = write_list(tmp_path / "frames.list", ["v1 10 4", "v2 10 5"])
    dataset = FrameListDataset(listing, data_prefix=str(tmp_path / "frames"), pipeline=TEST, mode="valid")
    good, missing = dataset[0], dataset[1]
    assert good["clip"].shape == (3, 3, 4, 48, 48) and good["label"] == 4
    assert missing["clip"] is None and "not found" in missing["error"]
