"""UCF101: the official archives, and lists in PaddleVideo's names and format.

Layout under ROOT (what `data download ucf101 --out ROOT` produces):

    ROOT/annotations/classInd.txt          `1 ApplyEyeMakeup` (1-based)
    ROOT/annotations/trainlist01.txt       `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`
    ROOT/annotations/testlist01.txt        `ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`
    ROOT/videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi
    ROOT/rawframes/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01/img_00001.jpg   (extract-frames)

Lists written, for each split N present (PaddleVideo's `build_ucf101_file_list.py` names):

    ROOT/ucf101_{train,val}_split_N_videos.txt      `ApplyEyeMakeup/v_..._c01.avi 0`
    ROOT/ucf101_{train,val}_split_N_rawframes.txt   `ApplyEyeMakeup/v_..._c01 164 0`

Paths are relative to ROOT/videos (ROOT/rawframes), so a config sets `data_prefix` to that
folder; labels are 0-based (classInd's id - 1). Videos that are not on disk are left out
of the lists and reported, as PaddleVideo's script leaves them out (silently).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ...download import DownloadItem, download_many
from ...errors import UserError
from ...utils import atomic_path, atomic_write_text, first_line
from ..files import count_frames, parse_int, read_text_lines

BASE_URL = "https://www.crcv.ucf.edu/data/UCF101/"
ARCHIVE = "UCF101.rar"
SPLITS_ZIP = "UCF101TrainTestSplits-RecognitionTask.zip"
FORMATS = ("videos", "rawframes")
# Tools that extract .rar, with their command lines (archive, destination folder).
RAR_TOOLS = {
    "unrar": lambda rar, dest: ["unrar", "x", "-o+", "-idq", str(rar), f"{dest}{os.sep}"],
    "7z": lambda rar, dest: ["7z", "x", "-y", "-bd", f"-o{dest}", str(rar)],
    "7zz": lambda rar, dest: ["7zz", "x", "-y", "-bd", f"-o{dest}", str(rar)],
    "bsdtar": lambda rar, dest: ["bsdtar", "-xf", str(rar), "-C", str(dest)],
    "unar": lambda rar, dest: ["unar", "-q", "-f", "-o", str(dest), str(rar)],
}


@dataclass
class Ucf101Summary:
    lists: list[Path] = field(default_factory=list)
    entries: int = 0  # lines written, over all lists
    missing: list[str] = field(default_factory=list)  # annotation paths not on disk, once each


def read_class_index(path: Path) -> dict[str, int]:
    """classInd.txt (`1 ApplyEyeMakeup`) -> {class name: 0-based label}."""
    classes = {}
    for number, line in enumerate(read_text_lines(path, "UCF101 class index"), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise UserError(f"{path} line {number}: expected `ID ClassName`, got {first_line(line.strip(), 120)!r}")
        classes[fields[1]] = parse_int(fields[0], f"{path} line {number}", "class ID", 1, 100_000) - 1
    return classes


def read_split_file(path: Path, classes: dict[str, int]) -> list[tuple[str, int]]:
    """A trainlist (`Class/v_x.avi 1`) or testlist (`Class/v_x.avi`) -> [(path, 0-based label)].

    The label comes from the class folder through classInd; a 1-based label in the file,
    when present, must agree with it.
    """
    entries = []
    for number, line in enumerate(read_text_lines(path, "UCF101 split file"), 1):
        fields = line.replace("\\", "/").split()
        if not fields:
            continue
        name = fields[0]
        class_name = name.split("/")[0]
        if "/" not in name or class_name not in classes:
            raise UserError(f"{path} line {number}: {first_line(name, 120)!r} is not `Class/file.avi` with a class from classInd.txt")
        label = classes[class_name]
        if len(fields) > 1 and fields[1] != str(label + 1):
            raise UserError(f"{path} line {number}: label {first_line(fields[1], 40)!r} disagrees with classInd.txt ({class_name} is {label + 1})")
        entries.append((name, label))
    return entries


def write_ucf101_lists(root: str | os.PathLike, fmt: str = "videos", progress: bool = True) -> Ucf101Summary:
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")
    root = Path(root)
    annotations = root / "annotations"
    if not root.is_dir():
        raise UserError(f"{root}: UCF101 root folder not found")
    classes = read_class_index(annotations / "classInd.txt")
    media = root / fmt
    if not media.is_dir():
        hint = "Class/file.avi videos" if fmt == "videos" else "frame folders (timesformer data extract-frames)"
        raise UserError(f"{media}: folder not found (expected {hint})")

    splits = []
    for n in (1, 2, 3):
        train, test = annotations / f"trainlist{n:02d}.txt", annotations / f"testlist{n:02d}.txt"
        if train.is_file() != test.is_file():
            raise UserError(f"{train if not train.is_file() else test}: not found (its split {n} partner exists)")
        if train.is_file():
            splits.append((n, read_split_file(train, classes), read_split_file(test, classes)))
    if not splits:
        raise UserError(f"{annotations}: no trainlist0N.txt / testlist0N.txt split files")

    # Look each distinct file up once: splits share all videos.
    names = sorted({name for _, train, test in splits for name, _ in train + test})
    found: dict[str, str] = {}  # annotation path -> list line prefix
    for name in tqdm(names, desc=f"ucf101 {fmt}", unit="video", disable=not progress):
        if fmt == "videos":
            if (media / name).is_file():
                found[name] = name
        else:
            frame_dir = str(Path(name).with_suffix("").as_posix())
            frames = count_frames(media / frame_dir)
            if frames:
                found[name] = f"{frame_dir} {frames}"

    summary = Ucf101Summary(missing=[name for name in names if name not in found])
    for n, train, test in splits:
        for subset, entries in (("train", train), ("val", test)):
            lines = [f"{found[name]} {label}\n" for name, label in entries if name in found]
            path = root / f"ucf101_{subset}_split_{n}_{fmt}.txt"
            atomic_write_text(path, "".join(lines))
            summary.lists.append(path)
            summary.entries += len(lines)
    return summary


def find_rar_tool() -> str | None:
    return next((tool for tool in RAR_TOOLS if shutil.which(tool)), None)


@dataclass
class Ucf101Download:
    annotations: Path
    videos: Path


def download_ucf101(out_dir: str | os.PathLike, base_url: str = BASE_URL, progress: bool = True) -> Ucf101Download:
    """Fetch the official UCF101 archive and split files into `out_dir` and unpack them
    into the layout `write_ucf101_lists` reads. Reruns resume or skip what is done."""
    out = Path(out_dir)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    items = [DownloadItem(base_url + name, out / name) for name in (SPLITS_ZIP, ARCHIVE)]
    failed = [r.error for r in download_many(items, workers=2, progress=progress) if r.error]
    if failed:
        raise UserError(failed[0])

    annotations = out / "annotations"
    _unpack_split_files(out / SPLITS_ZIP, annotations)
    videos = out / "videos"
    if not videos.is_dir():
        _unpack_rar(out / ARCHIVE, out, videos)
    return Ucf101Download(annotations, videos)


def _unpack_split_files(archive: Path, annotations: Path) -> None:
    """The zip holds `ucfTrainTestlist/*.txt`; keep only those files, by base name."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".txt")]
            for member in members:
                with atomic_path(annotations / Path(member.filename).name) as tmp:
                    tmp.write_bytes(zf.read(member))
    except zipfile.BadZipFile as err:
        raise UserError(f"{archive}: not a valid zip file ({err}); delete it to download again") from None
    if not (annotations / "classInd.txt").is_file():
        raise UserError(f"{archive}: holds no classInd.txt")


def _unpack_rar(archive: Path, out: Path, videos: Path) -> None:
    """Extract with whichever tool is installed into a scratch folder, then move
    `UCF-101/` into place as `videos/` in one rename."""
    tool = find_rar_tool()
    if tool is None:
        raise UserError(
            f"{archive}: extracting .rar needs one of {', '.join(RAR_TOOLS)}; install one "
            "(e.g. `apt install unrar`, `apt install 7zip`, `brew install sevenzip`) and run this again"
        )
    scratch = out / ".ucf101_extract"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    print(f"extracting {archive} with {tool} …", flush=True)
    result = subprocess.run(RAR_TOOLS[tool](archive, scratch), capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise UserError(f"{archive}: {tool} failed ({reason[-1] if reason else f'exit {result.returncode}'})")
    extracted = scratch / "UCF-101"
    if not extracted.is_dir():
        raise UserError(f"{archive}: holds no UCF-101/ folder")
    os.replace(extracted, videos)
    shutil.rmtree(scratch, ignore_errors=True)
