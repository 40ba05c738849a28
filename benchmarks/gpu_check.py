"""The first run on a GPU: every CUDA path the CPU cannot prove, in a few minutes, one JSON.

    benchmarks/gpu_check.sh [--out gpu_check.json]          # on a machine with one or more GPUs
    benchmarks/gpu_check.sh --dry-run                       # the same steps on the CPU, tiny sizes

Steps (each recorded with its figures, "ok" and, when it fails, the error; the script goes on
and exits 1 if any step failed):
1. parity: TimeSformer-B logits on CUDA in fp32 (TF32 off), TF32, bf16 and fp16 autocast
   against CPU fp32 on the same weights and input, within the tolerances in TOLERANCES.
2. train: `timesformer train` on a small `data synth` set with bf16 AMP and with fp16 AMP
   (GradScaler); then 1 epoch + `--resume` to 2 against 2 straight epochs (bf16), weights
   within RESUME_TOLERANCE (GPU kernels are not bit-reproducible).
3. torchrun: 2 processes (on 1 GPU when there is only one).
4. onnx: `timesformer export` then `predict --model_file ... --use_gpu=True`; which ONNX
   Runtime provider ran (CUDA needs the `export-gpu` extra).
5. mfu: `timesformer bench` TimeSformer-B at batch 32, bf16 (flash SDPA) and fp32, against the
   GPU's datasheet peaks when the GPU is in PEAK_TFLOPS; flash attention checked to run.
6. compile: does torch.compile pay off at batch 32 bf16? The forward with `bench --compile`
   (whole model), and the training step (forward + backward + SGD, bench's `make_step`) eager
   against every Block compiled in place; compile times reported apart.
The JSON is rewritten after every step, so a run cut short keeps the figures it reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from timesformer.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
# max |logits - CPU fp32 logits| / max |CPU fp32 logits|, TimeSformer-B with random weights.
TOLERANCES = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2, "fp16": 1e-2}
STEPS = ("parity", "train", "torchrun", "onnx", "mfu", "compile")
RESUME_TOLERANCE = 1e-3  # max relative weight difference, resumed against uninterrupted
# Dense datasheet peaks (TFLOP/s, no sparsity) per GPU name fragment: bf16/fp16, TF32, fp32.
PEAK_TFLOPS = {
    "H200": {"bf16": 989, "fp16": 989, "tf32": 494, "fp32": 67},
    "H100 SXM": {"bf16": 989, "fp16": 989, "tf32": 494, "fp32": 67},
    "H100": {"bf16": 756, "fp16": 756, "tf32": 378, "fp32": 51},  # PCIe
    "A100": {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5},
    "L40S": {"bf16": 362, "fp16": 362, "tf32": 183, "fp32": 91.6},
    "L4": {"bf16": 121, "fp16": 121, "tf32": 60, "fp32": 30},
}


def peaks_for(name: str) -> dict[str, float] | None:
    return next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), None)


def timesformer(*args: str, timeout: float = 300, torchrun: int = 0) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)] if torchrun else [sys.executable]
    command = [*launcher, "-m", "timesformer", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"`timesformer {' '.join(args)}` exited {done.returncode}: " + " | ".join(tail))
    return done


# --------------------------------------------------------------------------- steps


def check_parity(device: torch.device, dry_run: bool) -> dict:
    from timesformer.model.timesformer import TimeSformer, TimeSformerConfig

    config = TimeSformerConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4) if dry_run else TimeSformerConfig()
    torch.manual_seed(0)
    model = TimeSformer(config).eval()
    x = torch.randn(2, 3, config.num_frames, config.img_size, config.img_size)
    with torch.inference_mode():
        reference = model(x)
    scale = reference.abs().max().item()
    model.to(device)
    modes = {"fp32": (False, None), "tf32": (True, None), "bf16": (False, torch.bfloat16), "fp16": (False, torch.float16)}
    if device.type == "cpu":
        modes = {k: v for k, v in modes.items() if k in ("fp32", "bf16")}  # no TF32 or fp16 autocast on CPU
    results, tf32_before = {}, torch.backends.cuda.matmul.allow_tf32
    try:
        for mode, (tf32, dtype) in modes.items():
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(x.to(device)).float().cpu()
            error = (logits - reference).abs().max().item() / scale
            results[mode] = dict(relative_error=error, tolerance=TOLERANCES[mode], ok=error <= TOLERANCES[mode],
                                 top1_equal=bool((logits.argmax(-1) == reference.argmax(-1)).all()))  # fmt: skip
    finally:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32_before
    return dict(modes=results, max_abs_logit=scale, ok=all(r["ok"] for r in results.values()))


def synth_data(work: Path, dry_run: bool) -> Path:
    data = work / "data"
    timesformer("data", "synth", str(data), "--train", "32" if dry_run else "64", "--val", "16", "--frames", "8", "--size", "32",
                "--colors", "gray", "--speed", "3", "4", "--workers", "2")  # fmt: skip
    return data


def train_args(data: Path, output_dir: Path, device: str, *overrides: str) -> list[str]:
    args = ["train", "-c", str(ROOT / "configs" / "demo_motion.yaml"), "--device", device,
            "-o", f"output_dir={output_dir}", "-o", "model_name=TimeSformer", "-o", "epochs=2", "-o", "save_interval=1", "-o", "log_interval=1",
            "-o", f"DATASET.train.file_path={data / 'train.list'}", "-o", f"DATASET.valid.file_path={data / 'val.list'}",
            "-o", f"DATASET.test.file_path={data / 'val.list'}"]  # fmt: skip
    for override in overrides:
        args += ["-o", override]
    return args


def max_relative_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    return max(((x[k] - y[k]).abs().max() / x[k].abs().max().clamp(min=1e-12)).item() for k in x)


def check_train(work: Path, data: Path, device: torch.device) -> dict:
    results = {}
    precisions = {"bf16": "amp_dtype=bfloat16", "fp16": "amp_dtype=float16"} if device.type == "cuda" else {"bf16": "amp_dtype=bfloat16"}
    for name, override in precisions.items():
        started = time.perf_counter()
        timesformer(*train_args(data, work / f"train_{name}", str(device), override), "--amp")
        log = (work / f"train_{name}" / "train.log").read_text()
        losses = [float(v) for v in re.findall(r"loss_avg: ([0-9.eE+-]+|nan|inf)", log)]
        amp = re.search(r"amp ([\w.]+)", log)  # the trainer scales fp16 losses with a GradScaler
        results[name] = dict(seconds=time.perf_counter() - started, epoch_losses=losses, amp=amp and amp.group(1),
                             ok=bool(losses) and all(v == v and v < 1e3 for v in losses))  # fmt: skip
    resumed = work / "train_resumed"
    timesformer(*train_args(data, resumed, str(device), "amp_dtype=bfloat16", "epochs=1"), "--amp")
    timesformer(*train_args(data, resumed, str(device), "amp_dtype=bfloat16"), "--amp", "--resume")
    diff = max_relative_difference(work / "train_bf16" / "TimeSformer_epoch_00002.safetensors", resumed / "TimeSformer_epoch_00002.safetensors")
    results["resume"] = dict(max_relative_weight_difference=diff, tolerance=RESUME_TOLERANCE, ok=diff <= RESUME_TOLERANCE)
    results["ok"] = all(r["ok"] for r in results.values() if isinstance(r, dict))
    return results


def check_torchrun(work: Path, data: Path, device: torch.device) -> dict:
    started = time.perf_counter()
    overrides = ("epochs=1", "GRADIENT_ACCUMULATION.global_batch_size=32")  # 16 per process x 2
    done = timesformer(*train_args(data, work / "torchrun", str(device).split(":")[0], *overrides), torchrun=2)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    return dict(processes=2, gpus=gpus, seconds=time.perf_counter() - started, ok=True,
                log_tail=done.stdout.strip().splitlines()[-2:])  # fmt: skip


def check_onnx(work: Path, data: Path, device: torch.device) -> dict:
    weights = work / "train_bf16" / "TimeSformer_epoch_00002.safetensors"
    timesformer("export", "-p", str(weights), "-o", str(work / "onnx"))
    video = next(line.split()[0] for line in (data / "val.list").read_text().splitlines() if line.strip())
    out = work / "predict.json"
    done = timesformer("predict", "--model_file", str(work / "onnx" / "TimeSformer.onnx"), "-i", video,
                       f"--use_gpu={device.type == 'cuda'}", "--json", str(out))  # fmt: skip
    printed = done.stdout + done.stderr
    provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in printed else "CPUExecutionProvider"
    return dict(provider=provider, ok=provider == "CUDAExecutionProvider" or device.type == "cpu",
                output=printed.strip().splitlines()[:3])  # fmt: skip


def check_mfu(work: Path, device: torch.device, dry_run: bool) -> dict:
    result = {}
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from timesformer.model.timesformer import TimeSformer

        model = TimeSformer().to(device).eval()
        x = torch.randn(2, 3, 8, 224, 224, device=device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            model(x)  # raises if the flash kernel cannot take the model's shapes
        result["flash_sdpa_runs"] = True
        del model
        torch.cuda.empty_cache()
    peaks = peaks_for(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    report = work / "bench.json"
    args = ["bench", "--device", str(device), "--what", "matmul,model,train", "--precision", "bf16,fp32",
            "--repeat", "5", "--warmup", "2", "--no-compare-transformers", "--json", str(report)]  # fmt: skip
    args += ["--preset", "tiny", "--batch", "2", "--matmul-size", "256"] if dry_run else ["--preset", "vit-b", "--batch", "32"]
    if peaks:
        args += ["--peak-tflops", ",".join(f"{k}={v}" for k, v in peaks.items())]
    timesformer(*args, timeout=420)
    bench = json.loads(report.read_text())
    result.update(peak_tflops=peaks, peak_gflops_measured=bench["peak_gflops"],
                  rows=[{k: r.get(k) for k in ("what", "impl", "precision", "batch", "median_s", "clips_per_s", "gflops", "mfu", "peak_mem_mb")}
                        for r in bench["results"]], ok=True)  # fmt: skip
    return result


def time_train_steps(model: torch.nn.Module, device: torch.device, batch: int, steps: int) -> dict:
    """bench's training step (bf16 autocast, forward + backward + SGD) on `model`: the first step
    (compiling, for a compiled model) apart from the median of the next `steps`."""
    from types import SimpleNamespace

    from timesformer.bench.timing import synchronize
    from timesformer.bench.train_step import make_step

    c = model.config
    x = torch.randn(batch, c.in_chans, c.num_frames, c.img_size, c.img_size, device=device)
    labels = torch.arange(batch, device=device) % c.num_classes
    step = make_step(SimpleNamespace(device=device), model, "bf16")(x, labels)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        step()  # returns loss.item(): the step has finished on the device
        synchronize(device)
        times.append(time.perf_counter() - started)
    median = statistics.median(times[1:])
    return dict(first_step_s=times[0], median_step_s=median, clips_per_s=batch / median)


def check_compile(work: Path, device: torch.device, dry_run: bool) -> dict:
    """Eager against torch.compile at batch 32 bf16 (tiny sizes in a dry run). Forward: `bench
    --compile`, the whole model compiled. Training step: every Block compiled in place (regional
    compilation: the blocks share one compiled graph, so compiling forward and backward takes
    seconds where the whole model takes minutes, and the step speed is the same question)."""
    import dataclasses

    from timesformer.model.timesformer import TimeSformer, TimeSformerConfig

    report = work / "bench_compile.json"
    args = ["bench", "--device", str(device), "--what", "model", "--precision", "bf16", "--compile",
            "--repeat", "5", "--warmup", "2", "--no-compare-transformers", "--json", str(report)]  # fmt: skip
    args += ["--preset", "tiny", "--batch", "2"] if dry_run else ["--preset", "vit-b", "--batch", "32"]
    timesformer(*args, timeout=300)
    bench = json.loads(report.read_text())
    forward = {row["impl"]: row for row in bench["results"] if row["what"] == "model"}
    eager, compiled = forward["ours"], forward.get("ours+compile")
    result = dict(forward=dict(eager_s=eager["median_s"], compiled_s=compiled and compiled["median_s"],
                               compile_s=compiled and compiled.get("compile_s"),
                               speedup=compiled and eager["median_s"] / compiled["median_s"],
                               error=bench["checks"].get("compile_errors")))  # fmt: skip

    batch, steps = (2, 2) if dry_run else (32, 5)
    config = TimeSformerConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4) if dry_run else TimeSformerConfig()
    config = dataclasses.replace(config, drop_path_rate=0.0)  # as bench's train step: the same work in both
    torch.manual_seed(0)
    model = TimeSformer(config).to(device).train()
    train = dict(eager=time_train_steps(model, device, batch, steps))
    for block in model.blocks:
        block.compile()
    train["compiled_blocks"] = time_train_steps(model, device, batch, steps)
    train["compile_s"] = train["compiled_blocks"]["first_step_s"] - train["eager"]["median_step_s"]
    train["speedup"] = train["eager"]["median_step_s"] / train["compiled_blocks"]["median_step_s"]
    result["train_step"] = train
    result.update(batch=batch, precision="bf16", ok=compiled is not None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="run every step on the CPU at tiny sizes (no GPU needed)")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON of figures (default: gpu_check.json)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run to run the steps on the CPU", file=sys.stderr)
        return 1
    device = torch.device("cpu" if args.dry_run else "cuda:0")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        print(f"gpu_check: --steps {args.steps}: use a subset of {','.join(STEPS)}", file=sys.stderr)
        return 2
    report = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
                  torch=torch.__version__, cuda=torch.version.cuda, started=time.strftime("%Y-%m-%d %H:%M:%S"), steps={})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        needs_data = {"train", "torchrun", "onnx"} & set(steps)
        data = synth_data(work, args.dry_run) if needs_data else None
        runners = {
            "parity": lambda: check_parity(device, args.dry_run),
            "train": lambda: check_train(work, data, device),
            "torchrun": lambda: check_torchrun(work, data, device),
            "onnx": lambda: check_onnx(work, data, device),
            "mfu": lambda: check_mfu(work, device, args.dry_run),
            "compile": lambda: check_compile(work, device, args.dry_run),
        }
        for step in steps:
            started = time.perf_counter()
            print(f"gpu_check: {step} ...", file=sys.stderr, flush=True)
            try:
                result = runners[step]()
            # A check harness: any failure of a step is the finding, recorded with its message,
            # and the remaining steps still run.
            except Exception as err:  # noqa: BLE001
                result = dict(ok=False, error=f"{type(err).__name__}: {str(err)[:2000]}")
            result["seconds"] = round(time.perf_counter() - started, 1)
            report["steps"][step] = result
            print(f"gpu_check: {step} {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)", file=sys.stderr, flush=True)
            report["ok"] = all(r["ok"] for r in report["steps"].values())
            atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
    print(f"gpu_check: {'all steps ok' if report['ok'] else 'some steps FAILED'}; figures in {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
