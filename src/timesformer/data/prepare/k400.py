"""Kinetics-400: a PaddleVideo video list from the official CSV and a folder of clips.

The CSV (`label,youtube_id,time_start,time_end,split`, labels such as
`"passing American football (in game)"`) names each clip; downloaders save it as
`<youtube_id>_<time_start:06d>_<time_end:06d>.mp4` (some as `<youtube_id>.mp4`, or
`.mkv`/`.webm`), flat or in per-class folders. Labels map to the ids of
`Kinetics-400_label_list.txt` (PaddleVideo's order) by one rule: spaces become
underscores (parentheses and apostrophes stay, as in `massaging_person's_head`); when
that misses, the same comparison ignoring case.

The list goes to `ROOT/<split>.list` (PaddleVideo's `data/k400/val.list`), one
`path label` per clip, paths relative to the videos folder (PaddleVideo's
`data_prefix: data/k400/videos`). Clips not found are left out and reported by id.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ..files import VIDEO_EXTENSIONS, find_videos, read_text_lines
from ..labels import kinetics400_label_file, read_labels
from ...utils import atomic_write_text, first_line

REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
# The CSV's split column says "val" where users also say "valid" or "validate".
VAL_NAMES = {"val", "valid", "validate", "validation"}


@dataclass
class K400Summary:
    list_path: Path
    rows: int  # CSV rows of the split
    written: int
    missing: list[tuple[str, str]] = field(default_factory=list)  # (youtube_id, clip name `<id>_<start>_<end>`)


def kinetics400_labels() -> dict[str, int]:
    """{underscore name: id} from the label list the package ships."""
    return {name: index for index, name in enumerate(read_labels(kinetics400_label_file()))}


def label_id(label: str, labels: dict[str, int], folded: dict[str, int]) -> int | None:
    name = "_".join(label.split())
    return labels.get(name, folded.get(name.lower()))


def clip_name(youtube_id: str, start: str, end: str) -> str:
    """`<id>_<start:06d>_<end:06d>`; ValueError unless both times are plain seconds (`10`,
    `10.0`) below a day, as the CSV holds them."""
    times = []
    for text in (start, end):
        if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]*)?", text):
            raise ValueError(text)
        times.append(int(float(text)))
    return f"{youtube_id}_{times[0]:06d}_{times[1]:06d}"


def index_videos(videos: Path) -> dict[str, str]:
    """{file stem: path relative to `videos`} for every video under it (any depth).

    A clip saved in several containers maps to the one first in `VIDEO_EXTENSIONS`.
    """
    found: dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    for path in find_videos(videos):
        kept = found.get(path.stem)
        if kept is None or rank[path.suffix.lower()] < rank[kept.suffix.lower()]:
            found[path.stem] = path
    return {stem: path.relative_to(videos).as_posix() for stem, path in found.items()}


def write_k400_list(
    root: str | os.PathLike,
    split: str,
    annotations: str | os.PathLike,
    videos: str | os.PathLike,
    progress: bool = True,
) -> K400Summary:
    from tqdm import tqdm

    root, annotations, videos = Path(root), Path(annotations), Path(videos)
    if not annotations.is_file():
        raise UserError(f"{annotations}: Kinetics annotation CSV not found")
    if not videos.is_dir():
        raise UserError(f"{videos}: videos folder not found")
    rows = _read_rows(annotations, split)

    labels = kinetics400_labels()
    folded = {name.lower(): index for name, index in labels.items()}
    on_disk = index_videos(videos)
    summary = K400Summary(root / f"{split}.list", len(rows), 0)
    lines = []
    for number, row in tqdm(rows, desc=f"k400 {split}", unit="clip", disable=not progress):
        label = label_id(row["label"], labels, folded)
        if label is None:
            raise UserError(f"{annotations} line {number}: label {first_line(row['label'], 80)!r} is not a Kinetics-400 class")
        try:
            name = clip_name(row["youtube_id"], row["time_start"], row["time_end"])
        except ValueError:
            times = f"{first_line(row['time_start'], 40)!r}/{first_line(row['time_end'], 40)!r}"
            raise UserError(f"{annotations} line {number}: time_start/time_end {times} are not seconds (0 to 999999)") from None
        path = on_disk.get(name) or on_disk.get(row["youtube_id"])
        if path is None:
            summary.missing.append((row["youtube_id"], name))
        else:
            lines.append(f"{path} {label}\n")
    atomic_write_text(summary.list_path, "".join(lines))
    summary.written = len(lines)
    return summary


def _read_rows(annotations: Path, split: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of the CSV rows for `split` (all rows when there is no split column)."""
    lines = read_text_lines(annotations, "Kinetics annotation CSV")
    reader = csv.DictReader(lines)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise UserError(
                f"{annotations}: CSV header lacks {', '.join(missing)} "
                f"(expected label,youtube_id,time_start,time_end,split; got {first_line(','.join(header), 200) or 'nothing'})"
            )
        reader.fieldnames = header
        rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except csv.Error as err:
        raise UserError(f"{annotations} line {reader.line_num}: not CSV ({first_line(err)})") from None
    if "split" not in header:
        return rows
    wanted = VAL_NAMES if split in VAL_NAMES else {split}
    selected = [(n, row) for n, row in rows if row["split"] in wanted]
    if rows and not selected:
        found = sorted({row["split"] for _, row in rows})
        raise UserError(f"{annotations}: no rows with split {split!r} (the CSV has {', '.join(found)})")
    return selected
