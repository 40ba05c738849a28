"""End-to-end predict on a folder of videos (`Predictor` with its default feed: inline on a
CPU the model fills, ahead in threads otherwise) against the model alone on the same,
already decoded clips, and against PaddleVideo's way: each video decoded by its pipeline,
then run, one after the other."""

from __future__ import annotations

import os

from .flops import timesformer_flops
from .session import BenchSession
from .timing import interleaved, paired_speedup


def predict_folder(session: BenchSession) -> list[str]:
    """`--predict-videos` links to the bench's videos (cycled) in one folder, as a user's folder of clips."""
    folder = session.workdir / "predict_videos"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(session.options.predict_videos):
        source = session.videos[i % len(session.videos)].resolve()
        link = folder / f"video_{i:04d}{source.suffix}"
        os.symlink(source, link)
        paths.append(str(link))
    return paths


def bench_predict(session: BenchSession) -> None:
    from ..data.paddlevideo_reference import paddlevideo_test_tensor
    from ..inference import Predictor
    from ..model.checkpoints import save_model

    options, c = session.options, session.config
    precision = session.predict_precision()
    weights = options.weights or save_model(session.model(), session.workdir / "bench_model.safetensors")
    predictor = Predictor.from_weights(weights, device=str(session.device), precision=precision)
    paths = predict_folder(session)
    folder = str(session.workdir / "predict_videos")
    decoded = [predictor.load_clip(path).unsqueeze(0) for path in paths]

    def model_only():
        return [predictor.engine(clip) for clip in decoded]

    def sequential():  # paddlevideo_test_tensor gives PaddleVideo's [3, 3*T, H, W]: views already on T
        return [predictor.engine(paddlevideo_test_tensor(path, c.num_frames, c.img_size).unsqueeze(0)) for path in paths]

    cases = {"predict": lambda: predictor.predict(folder, top_k=1), "model-only": model_only, "sequential": sequential}
    timings = interleaved(cases, session.device, options.repeat, min(options.warmup, 1), f"predict {len(paths)} videos")
    views, count = predictor.spec.views, len(paths)
    flops = views * timesformer_flops(c, count)
    notes = {
        "predict": f"{count} videos in a folder, {views} views each, {predictor.feed()}; clips/s = videos/s",
        "model-only": "the same clips decoded beforehand: the model's rate",
        "sequential": "PaddleVideo-style: its pipeline decodes a video, then the model runs, one video after another",
    }
    for name, timing in timings.items():
        session.record("predict", name, timing, precision, 1, clips=count, flops=flops, note=notes[name])
    session.ratio("predict", "predict_vs_model_only", paired_speedup(timings["predict"], timings["model-only"]),
                  "model-only time / end-to-end time (1: decoding fully hidden)", precision=precision)  # fmt: skip
    session.ratio("predict", "predict_vs_sequential", paired_speedup(timings["predict"], timings["sequential"]),
                  "sequential decode-then-run time / ours (>1: ours faster)", precision=precision)  # fmt: skip
