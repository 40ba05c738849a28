"""The videos README's performance figures were measured on: four kinds, as the tests make or
ship them. `python benchmarks/bench_videos.py OUT_DIR` writes three and copies PaddleVideo's
example.avi from ../shared/data when it is there; pass them all to `timesformer bench --videos`.

    clip_720p.mp4   1280x720 H.264, 10 s at 30 fps (texture-heavy: decoding dominates)
    clip_360p.avi   640x360 MPEG-4 part 2, 5 s
    clip_240p.avi   320x240 MPEG-2 (in AVI: a bare .mpg has no frame count, which PaddleVideo needs), 5 s
    example.avi     PaddleVideo's example (320x240 MPEG-4 part 2)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from timesformer.bench.clips import make_test_video

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "example.avi"


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = [
        make_test_video(out / "clip_720p.mp4", seconds=10.0, width=1280, height=720),
        make_test_video(out / "clip_360p.avi", seconds=5.0, width=640, height=360, codec="mpeg4"),
        make_test_video(out / "clip_240p.avi", seconds=5.0, width=320, height=240, codec="mpeg2video"),
    ]
    if EXAMPLE.is_file():
        made.append(Path(shutil.copyfile(EXAMPLE, out / EXAMPLE.name)))
    print(" ".join(str(p) for p in made))


if __name__ == "__main__":
    main(*sys.argv[1:2] or ["bench_videos"])
