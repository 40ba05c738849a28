"""`data folder ROOT -o DIR`: one sub-folder per class -> PaddleVideo lists, labels.txt, config.yaml.

Each video's split comes from a hash of its path relative to ROOT and `--seed`, compared with
the split fractions: the same ROOT and `--seed` always give the same split, and videos added later
do not move the old ones. Two fix-ups keep every class trainable and validated: a class that the
hash leaves without a val video gives its lowest-hash video to val, and one left without a
train video gives its highest-hash video back to train. Only such a fixed-up video can move
when the class grows.

PaddleVideo's lists split lines on whitespace, so a video whose path holds whitespace is listed
through a symlink under DIR/links/ (the video itself is never touched).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from ...errors import UserError
from ...utils import atomic_write_text, check_distinct_paths, first_line
from ..files import find_videos, is_video_file
from . import check_workers, default_workers, ordered_map

SPLITS = ("train", "val", "test")
DEFAULT_BASE = "configs/timesformer_k400_videos.yaml"


@dataclass
class FolderOptions:
    root: Path
    out_dir: Path
    val: float = 0.2
    test: float = 0.0
    seed: int = 0
    base: str = DEFAULT_BASE
    weights: str | None = None
    workers: int | None = None  # decode checks; default: cores, at most 8


@dataclass
class FolderSummary:
    classes: list[str]
    counts: dict[str, dict[str, int]]  # class -> split -> videos
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    lists: dict[str, Path] = field(default_factory=dict)  # split -> list file
    labels_file: Path | None = None
    config_file: Path | None = None

    @property
    def num_videos(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def summary_line(self) -> str:
        reasons = Counter(_reason_kind(reason) for _, reason in self.skipped)
        why = f" ({', '.join(f'{n} {kind}' for kind, n in sorted(reasons.items()))})" if reasons else ""
        return f"{self.num_videos} videos in {len(self.classes)} classes, {len(self.skipped)} skipped{why}"


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def split_position(relative_path: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, path): where the video falls among the split fractions."""
    digest = hashlib.sha256(f"{seed}\0{relative_path}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(relative_paths: list[str], seed: int, val: float, test: float) -> dict[str, str]:
    """Split one class's videos (relative paths) into train / val / test; see the module docstring."""
    position = {p: split_position(p, seed) for p in relative_paths}
    split = {p: "test" if u < test else "val" if u < test + val else "train" for p, u in position.items()}
    by_position = sorted(relative_paths, key=lambda p: (position[p], p))
    if "val" not in split.values():
        candidates = [p for p in by_position if split[p] == "train"] or by_position
        split[candidates[0]] = "val"
    if "train" not in split.values():  # with >= 2 videos, a test video or a second val video is there
        spare = [p for p in reversed(by_position) if split[p] == "test"]
        spare += [p for p in reversed(by_position) if split[p] == "val"][:-1]
        split[spare[0]] = "train"
    return split


def check_video(path: Path) -> str | None:
    """Why `path` is not a readable video (opened with PyAV, one frame decoded), or None."""
    import av

    from ..video import open_video

    try:
        with open_video(path) as container:
            if not container.streams.video:
                return "unreadable: no video stream"
            for _ in container.decode(video=0):
                return None
            return "unreadable: no frame decodes"
    except (av.FFmpegError, OSError, EOFError, ValueError) as err:
        why = getattr(err, "strerror", None) or first_line(err)
        return f"unreadable: {why}"


def _check_fraction(name: str, value: float) -> None:
    if not (0.0 <= value < 1.0):
        raise UserError(f"--{name} {value}: expected a fraction in [0, 1)")


def scan_classes(root: Path) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """Class name -> its video files (nested folders included), and the files left out with why."""
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected one sub-folder of videos per class)")
    classes: dict[str, list[Path]] = {}
    skipped: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append((str(entry), "not in a class folder: files directly in ROOT are left out"))
            continue
        if "\n" in entry.name or entry.name != entry.name.strip():
            raise UserError(f"{entry}: a class folder name may not start or end with whitespace or hold a line break")
        videos = find_videos(entry)
        others = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith(".") and not is_video_file(p))
        skipped.extend((str(p), f"not a video file: extension {p.suffix or '(none)'}") for p in others)
        if videos:
            classes[entry.name] = videos
        else:
            skipped.append((str(entry), "empty class: no video files in the folder"))
    if not classes:
        raise UserError(f"{root}: no class folder holds a video (expected ROOT/<class>/<video>.mp4)")
    return classes, skipped


def _list_path(video: Path, root: Path, links: Path) -> str:
    """The path written in a list (relative to ROOT, the config's data_prefix), or a symlink's."""
    relative = video.relative_to(root).as_posix()
    if not any(c.isspace() for c in relative):
        return relative
    links = links.resolve()
    link = links / f"{hashlib.sha256(relative.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}{video.suffix.lower()}"
    if any(c.isspace() for c in str(link)):
        raise UserError(f"{video}: its path holds whitespace, which PaddleVideo lists cannot; it is listed through a "
                        f"link in {links}, whose path has whitespace too: choose an -o folder without spaces")  # fmt: skip
    target = video.resolve()
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        links.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return str(link)


def find_base_config(base: str) -> Path:
    """`base` as given, else a config shipped in the package (so `configs/x.yaml` works anywhere)."""
    path = Path(base)
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parents[2] / "configs" / path.name
    if not path.is_absolute() and shipped.is_file():
        return shipped
    raise UserError(f"--base {base}: config file not found")


def write_config(base: Path, out: Path, lists: dict[str, Path], root: Path, num_classes: int,
                 output_dir: Path, weights: str | None, labels_file: Path, source_root: Path) -> None:  # fmt: skip
    """The base config with the data, class count, output folder and (optionally) init filled in."""
    from ...engine.config import load_config

    load_config(base)  # a broken base fails here, naming its own file
    raw = yaml.safe_load(base.read_text())
    raw["MODEL"]["head"]["num_classes"] = num_classes
    if weights is not None:
        raw["MODEL"]["backbone"]["pretrained"] = weights
    dataset = raw.setdefault("DATASET", {})
    for split, list_split in (("train", "train"), ("valid", "val"), ("test", "test" if "test" in lists else "val")):
        section = dataset.setdefault(split, {})
        section.update(format="VideoDataset", data_prefix=str(root), file_path=str(lists[list_split]), suffix="")
    raw["output_dir"] = str(output_dir)
    header = (
        f"# Written by `timesformer data folder {source_root}` from {base}.\n"
        f"# Class names (ids in order): {labels_file}\n"
        f"# Train: timesformer train -c {out} --validate [-w WEIGHTS]\n"
    )
    atomic_write_text(out, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    load_config(out)


def prepare_folder(options: FolderOptions) -> FolderSummary:
    """Scan ROOT, check each video, split, write DIR/{train,val,test}.list, labels.txt, config.yaml."""
    _check_fraction("val", options.val)
    _check_fraction("test", options.test)
    if options.val == 0:
        raise UserError("--val 0: every class needs a validation video; give a fraction like 0.2")
    if options.val + options.test >= 1:
        raise UserError(f"--val {options.val} + --test {options.test} >= 1: nothing would be left to train on")
    if options.seed < 0:
        raise UserError(f"--seed {options.seed}: must be >= 0")
    workers = default_workers() if options.workers is None else check_workers(options.workers)
    root, out_dir = Path(options.root).resolve(), Path(options.out_dir).resolve()
    if out_dir == root or root in out_dir.parents:
        raise UserError(f"-o {options.out_dir} is inside ROOT {options.root}: it would be read as a class folder; "
                        "choose a folder outside ROOT")  # fmt: skip
    base = find_base_config(options.base)
    split_names = [s for s in SPLITS if s != "test" or options.test > 0]
    outputs = {f"-o {s}.list": out_dir / f"{s}.list" for s in split_names}
    outputs.update({"-o labels.txt": out_dir / "labels.txt", "-o config.yaml": out_dir / "config.yaml"})
    weights_file = options.weights if options.weights and Path(options.weights).exists() else None  # or a Hub id
    check_distinct_paths({"ROOT": root, "--base": base, "--weights": weights_file}, outputs)

    classes, skipped = scan_classes(root)
    videos = [v for paths in classes.values() for v in paths]
    checks = ordered_map(check_video, videos, workers if len(videos) >= 16 else 1)
    reasons = dict(zip(videos, tqdm(checks, total=len(videos), desc="checking videos", unit="video", leave=False,
                                    disable=len(videos) < 100)))  # fmt: skip
    skipped += [(str(v), r) for v, r in reasons.items() if r]

    names = sorted(classes)
    lines: dict[str, list[str]] = {s: [] for s in split_names}
    counts: dict[str, dict[str, int]] = {}
    for label, name in enumerate(names):
        readable = [v for v in classes[name] if reasons[v] is None]
        if len(readable) < 2:
            raise UserError(f"class {name!r} ({root / name}): {len(readable)} readable video(s); every class needs "
                            "at least 2 (one to train on, one to validate)")  # fmt: skip
        relative = {v.relative_to(root).as_posix(): v for v in readable}
        split = assign_splits(list(relative), options.seed, options.val, options.test)
        counts[name] = {s: 0 for s in split_names}
        for rel, video in sorted(relative.items()):
            lines[split[rel]].append(f"{_list_path(video, root, out_dir / 'links')} {label}\n")
            counts[name][split[rel]] += 1

    summary = FolderSummary(names, counts, skipped)
    for split_name in split_names:
        summary.lists[split_name] = out_dir / f"{split_name}.list"
        atomic_write_text(summary.lists[split_name], "".join(lines[split_name]))
    summary.labels_file = out_dir / "labels.txt"
    atomic_write_text(summary.labels_file, "".join(f"{i} {name}\n" for i, name in enumerate(names)))
    summary.config_file = out_dir / "config.yaml"
    write_config(base, summary.config_file, summary.lists, root, len(names), out_dir / "output",
                 options.weights, summary.labels_file, Path(options.root))  # fmt: skip
    return summary
