"""`timesformer data …`: make, fetch, convert and check video datasets.

    data synth OUT_DIR --train N --val M --frames T --size S --seed K
    data ucf101 --root DIR [--format videos|rawframes]
    data k400 --root DIR --split val [--annotations val.csv] [--videos VIDEO_DIR]
    data download --links FILE --out DIR [--workers N]
    data download ucf101 --out DIR
    data extract-frames LIST_OR_DIR --out DIR [--workers N]
    data folder ROOT -o DIR [--val 0.2] [--test 0] [--seed 0] [--base CONFIG] [--weights W]
    data check LIST [--data_prefix P] [--suffix S] [--workers N] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("data", help="prepare datasets: synth, folder, ucf101, k400, download, extract-frames, check")
    tasks = parser.add_subparsers(dest="data_command", metavar="TASK", required=True)

    synth = tasks.add_parser("synth", help="write a small motion-direction video dataset (→ ← ↑ ↓)")
    synth.add_argument("out_dir", metavar="OUT_DIR")
    synth.add_argument("--train", type=int, default=800, help="training clips (default 800)")
    synth.add_argument("--val", type=int, default=200, help="validation clips (default 200)")
    synth.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    synth.add_argument("--size", type=int, default=32, help="frame height and width, even (default 32)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--object_size", type=int, default=6, help="side of the moving square in pixels (default 6)")
    synth.add_argument("--speed", type=float, nargs=2, default=(2.0, 3.0), metavar=("MIN", "MAX"), help="pixels per frame (default 2 3)")
    synth.add_argument("--noise", type=float, default=8.0, help="std of pixel noise, 0..255 (default 8)")
    synth.add_argument("--colors", choices=("random", "gray"), default="random", help="random colours, or a bright gray square on a dark gray background (the demo's; default random)")
    synth.add_argument("--fps", type=int, default=1, help="frame rate; at 1 fps PaddleVideo's sampler with num_seg = frames takes every frame (default 1)")
    synth.add_argument("--workers", type=int, default=None, help="encoding processes (default: min(4, cores))")
    synth.set_defaults(func=run_synth)

    ucf = tasks.add_parser("ucf101", help="write PaddleVideo's UCF101 split lists from DIR/annotations and DIR/videos")
    ucf.add_argument("--root", required=True, help="holds annotations/ and videos/ (or rawframes/)")
    ucf.add_argument("--format", choices=("videos", "rawframes"), default="videos")
    ucf.set_defaults(func=run_ucf101)

    k400 = tasks.add_parser("k400", help="write a Kinetics-400 list (ROOT/<split>.list) from the official CSV")
    k400.add_argument("--root", required=True, help="where the list is written")
    k400.add_argument("--split", default="val", help="CSV split to take, also the list's name (default val)")
    k400.add_argument("--annotations", help="the official CSV (default ROOT/<split>.csv); relative paths also tried under ROOT")
    k400.add_argument("--videos", help="folder of <youtube_id>_<start>_<end>.mp4 clips, flat or per class (default ROOT/videos)")
    k400.set_defaults(func=run_k400)

    download = tasks.add_parser("download", help="download a link list or the UCF101 archive (resumable, parallel)")
    download.add_argument("dataset", nargs="?", choices=("ucf101",), help="a known dataset instead of --links")
    download.add_argument("--links", help="file with one URL per line (optionally `URL SHA256`)")
    download.add_argument("--out", required=True, help="download folder")
    download.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    download.add_argument("--retries", type=int, default=3, help="retries per file after a failure (default 3)")
    download.add_argument("--mirror", help="base URL replacing the UCF101 site (https://www.crcv.ucf.edu/data/UCF101/)")
    download.set_defaults(func=run_download)

    frames = tasks.add_parser("extract-frames", help="videos -> img_%%05d.jpg folders + OUT/frames.list")
    frames.add_argument("source", metavar="LIST_OR_DIR", help="a `path label` video list or a folder of videos")
    frames.add_argument("--out", required=True, help="folder for the frame folders and frames.list")
    frames.add_argument("--data_prefix", default="", help="prefix joined to the list's paths")
    frames.add_argument("--suffix", default="", help="suffix appended to the list's paths (e.g. .avi)")
    frames.add_argument("--workers", type=int, default=None, help="processes (default: cores, at most 8)")
    frames.set_defaults(func=run_extract_frames)

    folder = tasks.add_parser("folder", help="ROOT/<class>/<videos> -> train/val(/test) lists, labels.txt, config.yaml")
    folder.add_argument("root", metavar="ROOT", help="one sub-folder of videos per class (nested folders count)")
    folder.add_argument("-o", "--out", required=True, metavar="DIR", help="where the lists, labels.txt and config.yaml go")
    folder.add_argument("--val", type=float, default=0.2, help="fraction of each class for validation (default 0.2)")
    folder.add_argument("--test", type=float, default=0.0, help="fraction of each class for a test list (default 0: test on val)")
    folder.add_argument("--seed", type=int, default=0, help="fixes the split (default 0)")
    folder.add_argument("--base", default="configs/timesformer_k400_videos.yaml", help="config to start from (default: the K400 recipe; configs/demo_motion.yaml for small clips)")
    folder.add_argument("--weights", default=None, help="fine-tuning init recorded in the config (MODEL.backbone.pretrained)")
    folder.add_argument("--workers", type=int, default=None, help="processes for the decode check (default: cores, at most 8)")
    folder.set_defaults(func=run_folder)

    check = tasks.add_parser("check", help="decode every entry of a list; exit 1 if any is broken or missing")
    check.add_argument("list", metavar="LIST", help="a video list (`path label`) or frames list (`frame_dir num_frames label`)")
    check.add_argument("--data_prefix", default="", help="prefix joined to the list's paths")
    check.add_argument("--suffix", default="", help="suffix appended to video paths (e.g. .avi)")
    check.add_argument("--workers", type=int, default=None, help="processes (default: cores, at most 8)")
    check.add_argument("--num_seg", type=int, default=8, help="frames per clip, as the test reads them (default 8)")
    check.add_argument("--quick", action="store_true", help="only read the test window, skip decoding each video to its end")
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from ..data.synth import write_motion_dataset

    summary = write_motion_dataset(
        args.out_dir,
        train=args.train,
        val=args.val,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        object_size=args.object_size,
        speed_range=tuple(args.speed),
        noise=args.noise,
        fps=args.fps,
        colors=args.colors,
        workers=args.workers,
    )
    print(
        f"wrote {summary.num_train} train + {summary.num_val} val clips in {summary.seconds:.1f} s: "
        f"{summary.train_list}, {summary.val_list}, {summary.labels_file}"
    )
    return 0


def run_ucf101(args: argparse.Namespace) -> int:
    from ..data.prepare.ucf101 import write_ucf101_lists

    summary = write_ucf101_lists(args.root, args.format)  # inputs and lists have fixed, distinct names
    for name in summary.missing:
        print(f"missing: {name}")
    for path in summary.lists:
        print(f"wrote {path}")
    print(
        f"{len(summary.lists)} lists, {summary.entries} entries; {len(summary.missing)} annotated "
        f"{args.format} missing (left out); data_prefix: {Path(args.root) / args.format}"
    )
    return 0


def run_k400(args: argparse.Namespace) -> int:
    import re

    from ..data.prepare.k400 import write_k400_list
    from ..errors import UserError
    from ..utils import check_distinct_paths

    if not re.fullmatch(r"[\w-][\w.-]*", args.split):
        raise UserError(f"--split {args.split!r}: a split name such as val or train (letters, digits, - _ .)")
    root = Path(args.root)
    annotations = _under_root(args.annotations, root, f"{args.split}.csv")
    videos = _under_root(args.videos, root, "videos")
    check_distinct_paths({"--annotations": annotations, "--videos": videos}, {"the list ROOT/<split>.list": root / f"{args.split}.list"})
    summary = write_k400_list(root, args.split, annotations, videos)
    for youtube_id, name in summary.missing:
        print(f"missing: {youtube_id} (no {name}.mp4 under {videos})")
    print(
        f"wrote {summary.list_path}: {summary.written} of {summary.rows} {args.split} clips; "
        f"{len(summary.missing)} missing (left out); data_prefix: {videos}"
    )
    return 0


def _under_root(given: str | None, root: Path, default: str) -> Path:
    """A path as given when it exists, else under ROOT (so `--annotations val.csv` finds ROOT/val.csv)."""
    if given is None:
        return root / default
    path = Path(given)
    return path if path.exists() or path.is_absolute() else root / path


def run_download(args: argparse.Namespace) -> int:
    from ..errors import UserError

    if (args.dataset is None) == (args.links is None):
        raise UserError("data download: give either --links FILE or a dataset name (ucf101), not both or neither")
    if args.dataset == "ucf101":
        from ..data.prepare.ucf101 import BASE_URL, download_ucf101, find_rar_tool

        if find_rar_tool() is None:
            print("note: no unrar / 7z / bsdtar / unar found; the .rar will download but extracting it needs one of them")
        result = download_ucf101(args.out, args.mirror or BASE_URL)
        print(f"UCF101 ready: {result.annotations}, {result.videos}")
        print(f"next: timesformer data ucf101 --root {args.out}")
        return 0

    from ..data.prepare.links import read_link_list
    from ..download import download_many
    from ..utils import check_distinct_paths

    if args.workers < 1 or args.retries < 0:
        raise UserError(f"--workers {args.workers} --retries {args.retries}: need at least 1 worker and 0 or more retries")
    items = read_link_list(args.links, args.out)
    check_distinct_paths({"--links": args.links}, {f"the download of {item.url}": item.dest for item in items})
    results = download_many(items, workers=args.workers, retries=args.retries)
    failed = [r for r in results if r.error]
    present = [r for r in results if r.present]
    for r in failed:
        print(f"failed: {r.error}")
    kept = f"; {len(present)} already there (kept, not fetched again)" if present else ""
    print(f"downloaded {len(results) - len(failed) - len(present)} of {len(results)} files to {args.out}{kept}; {len(failed)} failed")
    return 1 if failed else 0


def run_extract_frames(args: argparse.Namespace) -> int:
    from ..data.prepare.frames import extract_frames
    from ..utils import check_distinct_paths

    out = Path(args.out)
    check_distinct_paths({"LIST_OR_DIR": args.source}, {"--out's frames.list": out / "frames.list", "--out's labels.txt": out / "labels.txt"})
    summary = extract_frames(args.source, args.out, args.data_prefix, args.suffix, args.workers)
    print(
        f"wrote {summary.list_path}: {summary.written} videos, {summary.frames} frames; "
        f"{len(summary.failed)} failed (left out); data_prefix: {args.out}"
    )
    return 1 if summary.failed else 0


def run_folder(args: argparse.Namespace) -> int:
    from ..data.prepare.folder import FolderOptions, prepare_folder

    options = FolderOptions(Path(args.root), Path(args.out), args.val, args.test, args.seed, args.base, args.weights, args.workers)
    summary = prepare_folder(options)
    for path, reason in summary.skipped:
        print(f"skipped {path}: {reason}")
    splits = list(summary.lists)
    width = max(len(name) for name in summary.classes + ["class"])
    print("  ".join(["class".ljust(width)] + [s.rjust(5) for s in splits]))
    for name in summary.classes:
        print("  ".join([name.ljust(width)] + [str(summary.counts[name][s]).rjust(5) for s in splits]))
    print(summary.summary_line())
    print(f"wrote {', '.join(str(p) for p in summary.lists.values())}, {summary.labels_file}, {summary.config_file}")
    print(f"next: timesformer train -c {summary.config_file} --validate" + ("" if args.weights else "   (-w WEIGHTS to fine-tune)"))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..data.prepare.check import check_list

    report = check_list(args.list, args.data_prefix, args.suffix, args.workers, args.num_seg, full=not args.quick)
    print(f"checked {report.total} entries of {args.list}: {report.total - len(report.broken)} ok, {len(report.broken)} broken or missing")
    return 1 if report.broken else 0
