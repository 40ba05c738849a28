"""`timesformer weights list | download NAME [-o DIR]`: the published TimeSformer weights."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("weights", help="list or download published weights (PaddleVideo, official, timm)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list the published weights").set_defaults(func=run)
    download = actions.add_parser(
        "download",
        help="download published weights (resumable), print size and sha256",
        description="Download published weights into DIR. An interrupted download resumes where it stopped. "
        "The environment variable TIMESFORMER_WEIGHTS_URL replaces every URL's directory (a mirror).",
    )
    download.add_argument("name", help="a name from `timesformer weights list`, or a Hugging Face Hub id "
                          "(facebook/timesformer-base-finetuned-k400; into the Hub cache unless -o is given)")
    download.add_argument("-o", "--output", default=".", metavar="DIR", help="directory to save into (default: .)")
    download.add_argument("--url", help="download from this URL instead of the published one")
    download.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    download.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..model.weights_registry import PUBLISHED, find_weights

    if args.action == "list":
        width = max(len(w.name) for w in PUBLISHED)
        for weights in PUBLISHED:
            print(f"{weights.name:<{width}}  {weights.description}\n{'':<{width}}  {weights.url}")
        return 0

    from ..download import download_file
    from ..model.hub import parse_hub_id, resolve_hub_id
    from ..utils import sha256_file

    hub = parse_hub_id(args.name)
    if hub is not None:  # Hugging Face Hub id: its cache, offline mode and HF_ENDPOINT apply
        if args.url:
            from ..errors import UserError

            raise UserError(f"--url: a Hub id ({args.name}) is fetched from the Hub (set HF_ENDPOINT for a mirror)")
        directory = resolve_hub_id(*hub, local_dir=None if args.output == "." else Path(args.output))
        print(f"{args.name}: {directory} (load it with -w {args.name} or -w {directory})")
        return 0
    weights = find_weights(args.name)
    url = args.url or weights.resolved_url()
    dest = Path(args.output) / weights.filename
    if dest.exists() and not dest.is_file():
        from ..errors import UserError

        raise UserError(f"-o {args.output}: {dest} exists and is not a file")
    print(f"downloading {weights.name} from {url}")
    path = download_file(url, dest, sha256=weights.sha256, progress=args.progress)
    print(f"saved {path} ({path.stat().st_size} bytes, sha256 {sha256_file(path)})")
    return 0
