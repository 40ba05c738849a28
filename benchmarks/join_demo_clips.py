"""Join demo validation clips of known classes end to end: a long video for `predict --window`.

    .venv/bin/python benchmarks/join_demo_clips.py DEMO_DATA/val.list OUT.mp4 [--order right,up,left,down,...]

Takes, for each class named in `--order`, the next clip of that class from the list (the
demo's clips: 8 frames at 1 fps), decodes them and writes them losslessly one after the
other at the same rate, so that the window [8k, 8k + 8) is exactly clip k. Prints the
segments as `start-end class`.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import av
import numpy as np

from timesformer.data.synth import DIRECTIONS, encode_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("val_list")
    parser.add_argument("out")
    parser.add_argument("--order", default="right,up,left,down,down,right,up,left")
    args = parser.parse_args()

    by_class: dict[int, list[str]] = defaultdict(list)
    for line in Path(args.val_list).read_text().splitlines():
        path, label = line.split()
        by_class[int(label)].append(path)
    frames, start = [], 0
    for name in args.order.split(","):
        path = by_class[DIRECTIONS.index(name)].pop(0)
        with av.open(path) as container:
            clip = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        frames += clip
        print(f"{start}-{start + len(clip)} {name} ({path})")
        start += len(clip)
    encode_video(np.stack(frames), Path(args.out), fps=1)


if __name__ == "__main__":
    main()
