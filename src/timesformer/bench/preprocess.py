"""Test-time preprocessing: `timesformer.preprocess` against PyAV's bare decode of every frame
(the floor) and against PaddleVideo's pipeline, per video, interleaved."""

from __future__ import annotations

from .clips import decode_all_frames, video_description
from .session import BenchSession
from .timing import interleaved, paired_speedup


def bench_preprocess(session: BenchSession) -> None:
    from ..data.paddlevideo_reference import paddlevideo_test_tensor

    c = session.config
    for path in session.videos:
        cases = {"pyav-decode": lambda path=path: decode_all_frames(path), "preprocess": session.preprocess_call(path),
                 "paddlevideo": lambda path=path: paddlevideo_test_tensor(path, c.num_frames, c.img_size)}  # fmt: skip
        timings = interleaved(cases, session.device, session.options.repeat, session.options.warmup, f"preprocess {path.name}")
        note = video_description(path)
        session.record("preprocess", "pyav-decode (floor)", timings["pyav-decode"], clips=1, video=str(path),
                       note=f"{note}, every frame, frame threads")  # fmt: skip
        session.record("preprocess", "timesformer.preprocess", timings["preprocess"], clips=1, video=str(path),
                       note=f"{note}, 3-crop test tensor")  # fmt: skip
        session.ratio("preprocess", "preprocess_vs_decode", paired_speedup(timings["pyav-decode"], timings["preprocess"]),
                      "preprocess time / bare decode time (<= 1: at or under the floor)", video=str(path))  # fmt: skip
        session.record("preprocess", "paddlevideo pipeline", timings["paddlevideo"], clips=1, video=str(path),
                       note=f"{note}, every window frame to RGB, normalize, then resize")  # fmt: skip
        session.ratio("preprocess", "paddlevideo_vs_preprocess", paired_speedup(timings["preprocess"], timings["paddlevideo"]),
                      "PaddleVideo's time / ours (>1: ours faster)", video=str(path))  # fmt: skip
