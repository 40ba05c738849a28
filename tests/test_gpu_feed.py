"""The training feed: pixel clips (uint8 when unscaled) normalized on the device equal the CPU
pipeline's float tensors; per-rank worker / decode thread sizing; predict's decode threads and
batch size on a GPU; fused optimizers and DDP options only where they apply."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from test_video import HEIGHT, encode_video  # tests/ is on sys.path under pytest
from timesformer.data.datasets import VideoListDataset, collate_samples
from timesformer.data.pipeline import VideoPipeline, sample_rng
from timesformer.data.video import (
    _seek, data_threads, open_video, read_clip, sample_frames, split_decode_threads, usable_cores,
)
from timesformer.engine.config.schema import OptimizerConfig, WeightDecayConfig
from timesformer.engine.loaders import clips_to_device, make_loader
from timesformer.engine.optim import build_optimizer, load_optimizer_state
from timesformer.errors import ConfigError, UserError
from timesformer.inference.engines import TorchEngine
from timesformer.inference.predictor import CPU_DECODE_THREADS, GPU_BATCH_SIZE, Predictor, decode_sizing
from timesformer.inference.spec import InferenceSpec

MEAN, STD = (0.45, 0.40, 0.35), (0.225, 0.25, 0.2)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return encode_video(tmp_path_factory.mktemp("feed") / "v.mp4", 40)


def list_of(tmp_path, video, count: int = 2):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{video} {i}\n" for i in range(count)))
    return listing


def test_unscaled_clips_travel_as_uint8_and_normalize_to_the_cpu_pipelines_tensor(tmp_path, video):
    pipeline = VideoPipeline(num_seg=4, short_side_min=HEIGHT, short_side_max=HEIGHT, crop_size=32, crop="uniform",
                             mean=MEAN, std=STD)  # fmt: skip
    pixels = VideoListDataset(list_of(tmp_path, video), pipeline=pipeline, normalize=False)
    floats = VideoListDataset(list_of(tmp_path, video), pipeline=pipeline)
    batch = collate_samples([pixels[0], pixels[1]])
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == (2, 3, 3, 4, 32, 32)
    cpu = collate_samples([floats[0], floats[1]])["clip"]
    assert batch["clip"].nbytes * 4 == cpu.nbytes  # a quarter of the bytes per clip
    on_device = clips_to_device(batch["clip"], pixels, CPU)
    assert on_device.dtype == torch.float32 and torch.equal(on_device, cpu.flatten(0, 1))
    assert torch.equal(clips_to_device(cpu, floats, CPU), on_device)  # a normalizing dataset's clips are not normalized twice
    # Against the closed form on the decoded frames: UniformCrop 32 of 64x48 at left 0, 32, 16.
    frames = torch.from_numpy(read_clip(video, 4, "test")).double().permute(3, 0, 1, 2)  # [3, T, H, W]
    mean, std = torch.tensor(MEAN).double().view(3, 1, 1, 1), torch.tensor(STD).double().view(3, 1, 1, 1)
    for view, left in enumerate((0, 32, 16)):
        expected = (frames[:, :, 8:40, left : left + 32] / 255 - mean) / std
        assert (on_device[view].double() - expected).abs().max() < 1e-5


def test_scaled_clips_stay_float_pixels_and_still_equal_the_cpu_pipeline(tmp_path, video):
    pipeline = VideoPipeline.for_mode("train", 4, short_side_min=56, short_side_max=72, crop_size=48, mean=MEAN, std=STD)
    pixels = VideoListDataset(list_of(tmp_path, video, 4), pipeline=pipeline, mode="train", seed=5, normalize=False)
    floats = VideoListDataset(list_of(tmp_path, video, 4), pipeline=pipeline, mode="train", seed=5)
    keys = [(2, i) for i in range(4)]
    batch = collate_samples([pixels[k] for k in keys])["clip"]
    # bilinear values are fractions: rounding them to uint8 would change the model's input
    assert batch.dtype == torch.float32 and not torch.equal(batch, batch.round())
    assert -1e-3 <= batch.min() and batch.max() <= 255 + 1e-3  # pixel values, not normalized
    assert torch.equal(clips_to_device(batch, pixels, CPU), collate_samples([floats[k] for k in keys])["clip"].flatten(0, 1))


def test_a_batch_of_scaled_and_unscaled_clips_stacks_as_float():
    unscaled = torch.randint(0, 256, (1, 3, 2, 4, 4), dtype=torch.uint8)
    scaled = torch.rand(1, 3, 2, 4, 4) * 255
    batch = collate_samples([dict(clip=unscaled, label=0, index=0, path="a", error=None),
                             dict(clip=scaled, label=1, index=1, path="b", error=None)])["clip"]  # fmt: skip
    assert batch.dtype == torch.float32 and torch.equal(batch[0], unscaled.float()) and torch.equal(batch[1], scaled)


def test_device_normalized_feed_matches_paddlevideos_tensor(tmp_path, example_avi, paddle_fixture):
    ref = np.load(paddle_fixture / "video_example.npz")["input"]  # [1, 3, 3 * 8, 224, 224], crops along T
    pipeline = VideoPipeline.for_mode("test", 8)
    dataset = VideoListDataset(list_of(tmp_path, example_avi, 1), pipeline=pipeline, normalize=False)
    clips = clips_to_device(collate_samples([dataset[0]])["clip"], dataset, CPU)  # [3 views, 3, 8, 224, 224]
    ours = clips.permute(1, 0, 2, 3, 4).reshape(ref.shape).numpy()
    assert np.abs(ours - ref).max() <= 2e-3


def test_sample_rng_keeps_the_pixel_and_float_paths_on_one_draw(video):
    pipeline = VideoPipeline.for_mode("train", 4, short_side_min=48, short_side_max=48, crop_size=40)
    pixels = pipeline(video, sample_rng(0, 1, 3), normalize=False)
    assert pixels.dtype == torch.uint8  # short side already 48: no scaling, exact integers
    assert torch.equal(pipeline.normalize(pixels), pipeline(video, sample_rng(0, 1, 3)))


# --------------------------------------------------------------------------- per-rank sizing


def test_eight_ranks_on_sixteen_cores_get_two_workers_of_one_decode_thread():
    threads = data_threads(4, cores=16, env={"LOCAL_WORLD_SIZE": "8"})
    assert (threads.workers, threads.decode_threads) == (2, 1)
    assert threads.describe() == "data: 2 workers x 1 thread per decode, 16 cores / 8 local ranks"
    roomy = data_threads(4, cores=64, env={"LOCAL_WORLD_SIZE": "8"})  # 8 cores each: 4 workers x 2 threads
    assert (roomy.workers, roomy.decode_threads) == (4, 2)
    alone = data_threads(0, cores=2, env={})  # no torchrun, no workers: the main process decodes with both cores
    assert (alone.workers, alone.decode_threads, alone.local_ranks) == (0, 2, 1)
    assert alone.describe() == "data: no workers (main process) x 2 threads per decode, 2 cores / 1 local rank"


@pytest.mark.parametrize("cores", [1, 2, 3, 16, 96])
@pytest.mark.parametrize("ranks", [1, 2, 8])
@pytest.mark.parametrize("workers", [0, 1, 4, 32])
def test_ranks_times_workers_times_decode_threads_never_exceed_the_cores(cores, ranks, workers):
    threads = data_threads(workers, cores=cores, env={"LOCAL_WORLD_SIZE": str(ranks)})
    decoders = max(threads.workers, 1)  # with no workers the main process decodes
    assert ranks * decoders * threads.decode_threads <= max(cores, ranks)
    assert threads.workers <= workers and threads.decode_threads >= 1
    if workers and cores >= ranks * workers:
        assert threads.workers == workers  # a cap, never a cut below what fits


@pytest.mark.parametrize("value", ["0", "eight", "-2"])
def test_a_broken_local_world_size_is_one_line(value):
    with pytest.raises(UserError, match=f"LOCAL_WORLD_SIZE='{value}'"):
        data_threads(4, cores=16, env={"LOCAL_WORLD_SIZE": value})


def test_a_negative_decode_thread_count_is_one_line():
    with pytest.raises(ConfigError, match="decode_threads: -1"):
        VideoPipeline(decode_threads=-1)


@pytest.mark.parametrize("threads, count, kind", [(1, 1, None), (3, 3, "AUTO"), (0, 0, "AUTO")])
def test_seek_sets_the_ffmpeg_threads_it_is_given(video, threads, count, kind):
    with open_video(video) as container:
        stream = _seek(container, str(video), 0, threads).streams.video[0]
        assert stream.thread_count == count
        if kind:
            assert stream.thread_type.name == kind


def test_a_decode_with_two_cores_or_more_converts_on_a_helper_thread(video):
    assert split_decode_threads(1) == (1, False)  # the workers fill the cores: convert in between
    assert split_decode_threads(2) == (1, True) and split_decode_threads(8) == (7, True)
    assert split_decode_threads(0) == split_decode_threads(usable_cores())
    for threads, converting_thread in [(1, "MainThread"), (2, "convert")]:
        names = set()
        frames = sample_frames(video, 4, "test", threads=threads,
                               convert=lambda rgb: names.add(threading.current_thread().name) or rgb)  # fmt: skip
        assert np.array_equal(np.stack(frames), read_clip(video, 4, "test"))
        assert len(names) == 1 and names.pop().startswith(converting_thread)


@pytest.mark.parametrize("container_format", ["mp4", "h264"])  # h264: no duration, the window is drawn twice
def test_helper_thread_keeps_every_random_draw_and_tensor(tmp_path, container_format):
    video = encode_video(tmp_path / f"v.{container_format}", 40, "h264", container_format=container_format)
    inline, helper = (VideoPipeline.for_mode("train", 4, short_side_min=40, short_side_max=60, crop_size=32,
                                             decode_threads=threads) for threads in (1, 2))  # fmt: skip
    for index in range(4):
        rng_inline, rng_helper = sample_rng(0, 1, index), sample_rng(0, 1, index)
        assert torch.equal(inline(video, rng_inline), helper(video, rng_helper))
        assert rng_inline.random() == rng_helper.random()  # the same draws, in the same order


def test_make_loader_decodes_as_the_plan_says(tmp_path, video):
    dataset = VideoListDataset(list_of(tmp_path, video, 2), pipeline=VideoPipeline(num_seg=2, short_side_min=HEIGHT,
                               short_side_max=HEIGHT, crop_size=32), normalize=False)  # fmt: skip
    loader = make_loader(dataset, [[0], [1]], data_threads(8, cores=6, env={"LOCAL_WORLD_SIZE": "2"}), CPU)
    assert loader.num_workers == 2 and dataset.pipeline.decode_threads == 1  # 3 cores each; 2 batches only
    assert not loader.pin_memory  # pinned for CUDA only


# --------------------------------------------------------------------------- predict on a GPU


def test_predict_decode_sizing_fills_a_gpu_and_leaves_the_cpu_to_the_model():
    gpu = decode_sizing(True, cores=16)
    assert (gpu.workers, gpu.decode_threads) == (16, 1)  # every core decodes one video
    assert (decode_sizing(True, 4, cores=16).workers, decode_sizing(True, 4, cores=16).decode_threads) == (4, 4)
    assert (decode_sizing(True, 0, cores=16).workers, decode_sizing(True, 0, cores=16).decode_threads) == (0, 16)
    # CPU: the model's threads fill the cores, so videos are decoded inline, FFmpeg choosing its threads
    full = decode_sizing(False, cores=16, model_threads=16)
    assert (full.workers, full.decode_threads) == (0, 0)
    # cores the model leaves free decode ahead, shared among at most CPU_DECODE_THREADS
    assert (decode_sizing(False, cores=16, model_threads=12).workers, decode_sizing(False, cores=16, model_threads=12).decode_threads) == (CPU_DECODE_THREADS, 2)
    assert (decode_sizing(False, cores=16, model_threads=15).workers, decode_sizing(False, cores=16, model_threads=15).decode_threads) == (1, 1)
    assert (decode_sizing(False, 5, cores=16).workers, decode_sizing(False, 5, cores=16).decode_threads) == (5, 0)  # asked for


class GpuStandIn:
    """An engine that says it runs on a GPU and records the batches it is given."""

    on_gpu = True

    def __init__(self):
        self.batch_sizes: list[int] = []

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        return np.zeros((len(batch), 2), np.float32)


def test_a_gpu_predictor_batches_gpu_batch_size_videos_and_decodes_with_every_core(tmp_path, video):
    spec = InferenceSpec(num_seg=2, target_size=32, short_size=HEIGHT, num_classes=2)
    engine = GpuStandIn()
    predictor = Predictor(engine, spec)
    assert predictor.batch_size == GPU_BATCH_SIZE and predictor.num_workers == usable_cores()
    assert predictor.pipeline.decode_threads == 1
    predictions = predictor.predict([str(video)] * (GPU_BATCH_SIZE + 2), top_k=1)
    assert len(predictions) == GPU_BATCH_SIZE + 2 and engine.batch_sizes == [GPU_BATCH_SIZE, 2]
    predictor.predict([str(video)] * 3, top_k=1, batch_size=2)  # an explicit batch size wins
    assert engine.batch_sizes[2:] == [2, 1]
    with pytest.raises(UserError, match="--batch_size 0"):
        predictor.predict([str(video)], batch_size=0)
    cpu = Predictor(TorchEngine(torch.nn.Linear(1, 1), spec), spec)  # the engine's device decides
    expected = decode_sizing(False)  # this machine's cores and torch threads
    assert (cpu.batch_size, cpu.num_workers, cpu.pipeline.decode_threads) == (1, expected.workers, expected.decode_threads)


# --------------------------------------------------------------------------- optimizer kernels


@pytest.mark.parametrize("name", ["Momentum", "AdamW"])
def test_optimizers_are_fused_on_cuda_only_and_resume_keeps_this_runs_choice(name):
    spec = OptimizerConfig(name, momentum=0.9, use_nesterov=True, weight_decay=WeightDecayConfig(value=1e-2))
    torch.manual_seed(0)
    plain_model, fused_model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    fused_model.load_state_dict(plain_model.state_dict())
    plain = build_optimizer(spec, plain_model, 0.1, CPU)
    assert all(group["fused"] is None for group in plain.param_groups)  # not passed on a CPU
    # On CUDA the flag is passed (torch's CPU build runs fused SGD / AdamW too, which shows it here).
    fused = build_optimizer(spec, fused_model, 0.1, torch.device("cuda"))
    assert all(group["fused"] is True for group in fused.param_groups)
    x = torch.randn(4, 3)
    for model, optimizer in ((plain_model, plain), (fused_model, fused)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().sum().backward()
            optimizer.step()
    for a, b in zip(plain_model.parameters(), fused_model.parameters()):  # the same update, up to rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    resumed = build_optimizer(spec, plain_model, 0.1, CPU)
    load_optimizer_state(resumed, fused.state_dict())  # a CUDA run's state resumed on a CPU
    assert all(group["fused"] is None for group in resumed.param_groups)
    saved = fused.state_dict()["state"][0]
    for key, value in resumed.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(saved[key]))


# --------------------------------------------------------------------------- bench loader


def test_bench_loader_reports_both_feeds_with_their_bytes_and_the_ranks_share(tmp_path, video, monkeypatch):
    from timesformer import cli

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--preset", "tiny", "--what", "train,loader", "--batch", "2", "--precision", "fp32",
                     "--repeat", "1", "--warmup", "0", "--videos", str(video), "--workers", "0,1",
                     "--no-compare-transformers", "--json", str(out)]) == 0  # fmt: skip
    rows = [row for row in json.loads(out.read_text())["results"] if row["what"] == "loader"]
    assert [row["impl"] for row in rows] == ["float feed, workers=0", "pixels feed, workers=0",
                                             "float feed, workers=1", "pixels feed, workers=1"]  # fmt: skip
    values = 3 * 4 * 32 * 32  # one view of the tiny preset: 3 channels x 4 frames x 32 x 32
    for row in rows:
        assert row["bytes_per_clip"] == values * (1 if row["feed_dtype"] == "uint8" else 4)
        assert row["loader_clips_per_s"] > 0 and row["train_step_clips_per_s"] > 0
        assert row["data_threads"].endswith(f"{usable_cores()} cores / 2 local ranks")
    assert rows[0]["feed_dtype"] == "float32"  # the CPU-normalized feed


def test_a_fused_optimizer_takes_the_trainers_grad_scaler_sequence():
    # The trainer's fp16 step: scale, backward, unscale_, clip, scaler.step, update. Fused SGD (as on
    # CUDA; torch's CPU build runs it too) must give the plain optimizer's weights, and skip a step
    # whose gradients overflowed.
    spec = OptimizerConfig("Momentum", momentum=0.9, use_nesterov=True, weight_decay=WeightDecayConfig(value=1e-2))
    torch.manual_seed(0)
    models = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(4, 3)
    for model, device in zip(models, (CPU, torch.device("cuda"))):
        optimizer = build_optimizer(spec, model, 0.1, device)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        for scale_up in (1.0, float("inf"), 1.0):  # the middle step overflows
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(model(x).square().sum() * scale_up).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        assert scaler.get_scale() == 2.0**9  # halved once: the overflow was seen and its step skipped
        assert all(torch.isfinite(p).all() for p in model.parameters())
    for plain, fused in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(plain, fused, rtol=1e-5, atol=1e-6)


def test_decoding_inline_or_ahead_gives_the_same_videos_errors_and_order(tmp_path):
    from timesformer.errors import VideoReadError
    from timesformer.inference.decode import decode_ahead

    def load(path: str) -> str:
        if "bad" in path:
            raise VideoReadError(path, "cannot be read")
        if "gone" in path:
            raise FileNotFoundError(path)
        return path.upper()

    paths = ["a", "bad1", "b", "gone", "c", "d", "bad2"]
    runs = {workers: list(decode_ahead(iter(paths), load, workers)) for workers in (0, 1, 3)}
    for got in runs.values():
        assert [path for path, _, _ in got] == paths
        assert [value for _, value, _ in got] == ["A", None, "B", None, "C", "D", None]
        assert [str(error.path) if error else None for _, _, error in got] == [None, "bad1", None, "gone", None, None, "bad2"]


@pytest.mark.parametrize("value", ["-1", "257"])
def test_num_workers_out_of_range_is_one_line(value, capsys):
    from timesformer.cli import main

    code = main(["predict", "-i", "nowhere.mp4", "-w", "nowhere.safetensors", "--num_workers", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("timesformer predict: error: --num_workers")
