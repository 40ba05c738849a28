"""`timesformer demo`: the seed's claim on any laptop, end to end, in a few minutes.

A square moves right, left, up or down; one frame, or the frames without their order, cannot
tell right from left. The demo writes such a dataset as real video files (`data synth`), trains
TimeSformer with divided space-time attention and, as the baseline, with space-only attention
(each frame alone, frames averaged: order-blind), tests both, exports the divided model to
ONNX and predicts a few videos with it. Every step runs the same code as its command
(`timesformer data synth / train / test / export / predict`); only the arguments are chosen here.

Expected: divided ≈ 1.0 top-1, space-only ≈ 0.5 (it can learn the axis, never the direction).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError
from .utils import atomic_path, atomic_write_text

ATTENTION_TYPES = ("divided_space_time", "space_only")


@dataclass(frozen=True)
class DemoData:
    """The `data synth` dataset the demo trains on (the style is tuned with the config)."""

    train: int = 2000
    val: int = 200
    frames: int = 8
    size: int = 32
    object_size: int = 6
    speed_range: tuple[float, float] = (3.0, 4.0)  # pixels per frame (2-3 left the order plateau later)
    noise: float = 8.0  # 0..255
    colors: str = "gray"  # with random colours a model trained from scratch stays at chance for long


# `--quick`: the same steps on a handful of videos for one epoch (a smoke test, not a result).
QUICK_DATA = DemoData(train=32, val=8)
QUICK_OVERRIDES = ("epochs=1",)


@dataclass
class DemoOptions:
    workdir: Path = Path("demo_run")
    device: str = "cpu"
    seed: int = 0
    quick: bool = False
    config: Path | None = None  # default: configs/demo_motion.yaml
    predict_videos: int = 4  # val videos shown with their predicted label, one per class


@dataclass
class ModelReport:
    top1: float
    top5: float
    best_val_top1: float | None
    train_seconds: float
    test_seconds: float
    weights: str
    curve: list[dict] = field(default_factory=list)  # per epoch: epoch, val_top1, train_loss, train_top1


def find_demo_config() -> Path:
    """The demo config shipped in the package (`configs/` of a checkout links there)."""
    return Path(__file__).resolve().parent / "configs" / "demo_motion.yaml"


def run_command(argv: list[str]) -> int:
    """Run one `timesformer` subcommand in this process, through the CLI's own parser."""
    from .cli import build_parser

    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def read_curve(metrics_file: Path) -> list[dict]:
    """Per-epoch validation top-1 and training loss / top-1 from a run's metrics.jsonl."""
    epochs: dict[int, dict] = {}
    if not metrics_file.is_file():
        return []
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "train_epoch":
            epochs.setdefault(record["epoch"], {"epoch": record["epoch"]}).update(
                train_loss=record["loss"], train_top1=record["top1"])  # fmt: skip
        elif record.get("event") == "valid":
            epochs.setdefault(record["epoch"], {"epoch": record["epoch"]})["val_top1"] = record["top1"]
    return [epochs[e] for e in sorted(epochs)]


def plot_curves(reports: dict[str, ModelReport], path: Path) -> bool:
    """Validation top-1 and training loss per epoch of both models; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for name, report in reports.items():
        epochs = [row["epoch"] for row in report.curve]
        ax_acc.plot(epochs, [row.get("val_top1", float("nan")) for row in report.curve], marker="o", label=name)
        ax_loss.plot(epochs, [row.get("train_loss", float("nan")) for row in report.curve], marker="o", label=name)
    ax_acc.axhline(0.5, color="gray", linestyle=":", linewidth=1)  # what order-blind attention can reach
    ax_acc.set(xlabel="epoch", ylabel="validation top-1", ylim=(0, 1.02), title="direction of motion (4 classes)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def evaluate_weights(cfg, weights: Path, device: str):
    """`timesformer test -c CFG -w WEIGHTS`, returning its result instead of only printing it."""
    from .engine import distributed
    from .engine.evaluate import run_test
    from .engine.logging import RunLogger

    ctx = distributed.setup(device)
    try:
        return run_test(cfg, str(weights), ctx, RunLogger(None, enabled=ctx.is_main))
    finally:
        distributed.teardown(ctx)


def pick_predict_videos(val_list: Path, count: int) -> list[str]:
    """The first `count` val videos, one per class in turn (the list is ordered by label i % 4)."""
    return [line.split()[0] for line in val_list.read_text().splitlines()[:count]]


def run_demo(options: DemoOptions) -> dict:
    """Every step of the demo; returns (and writes) the summary."""
    from .data.synth import write_motion_dataset
    from .engine.config import load_config
    from .engine.state import best_weights_path

    start = time.perf_counter()
    workdir = Path(options.workdir).resolve()
    config = Path(options.config) if options.config else find_demo_config()
    data = QUICK_DATA if options.quick else DemoData()
    extra = list(QUICK_OVERRIDES) if options.quick else []

    print(f"[demo] 1/5 writing {data.train + data.val} motion videos to {workdir / 'data'}", flush=True)
    synth = write_motion_dataset(
        workdir / "data", train=data.train, val=data.val, frames=data.frames, size=data.size, seed=options.seed,
        object_size=data.object_size, speed_range=data.speed_range, noise=data.noise, colors=data.colors,
    )  # fmt: skip
    data_overrides = [
        f"DATASET.train.file_path={synth.train_list}",
        f"DATASET.valid.file_path={synth.val_list}",
        f"DATASET.test.file_path={synth.val_list}",
    ]

    reports: dict[str, ModelReport] = {}
    for step, attention in enumerate(ATTENTION_TYPES, start=2):
        output_dir = workdir / attention
        if output_dir.exists():  # a fresh run: metrics.jsonl and checkpoints are append / resume files
            _clear_run_dir(output_dir)
        overrides = data_overrides + extra + [
            f"MODEL.backbone.attention_type={attention}",
            f"output_dir={output_dir}",
        ]
        print(f"[demo] {step}/5 training {attention} -> {output_dir}", flush=True)
        tick = time.perf_counter()
        argv = ["train", "-c", str(config), "--validate", "--seed", str(options.seed), "--device", options.device]
        if run_command(argv + [arg for o in overrides for arg in ("-o", o)]) != 0:
            raise UserError(f"demo: training {attention} stopped early (see {output_dir / 'train.log'})")
        train_seconds = time.perf_counter() - tick

        cfg = load_config(config, overrides)
        weights = best_weights_path(output_dir, cfg.model_name)
        tick = time.perf_counter()
        result = evaluate_weights(cfg, weights, options.device)
        curve = read_curve(output_dir / "metrics.jsonl")
        val = [row["val_top1"] for row in curve if "val_top1" in row]
        reports[attention] = ModelReport(
            top1=result.top1, top5=result.top5, best_val_top1=max(val) if val else None,
            train_seconds=round(train_seconds, 1), test_seconds=round(time.perf_counter() - tick, 1),
            weights=str(weights), curve=curve,
        )  # fmt: skip

    divided_weights = reports["divided_space_time"].weights
    export_dir = workdir / "export"
    print(f"[demo] 4/5 exporting divided_space_time to {export_dir / 'TimeSformer.onnx'}", flush=True)
    label_file = str(synth.labels_file)
    if run_command(["export", "-c", str(config), "-p", divided_weights, "-o", str(export_dir),
                    "--label_file", label_file] + [f"--override={o}" for o in data_overrides]) != 0:  # fmt: skip
        raise UserError("demo: export failed")

    print("[demo] 5/5 predicting a few validation videos with the ONNX model", flush=True)
    predict_list = workdir / "predict.list"
    atomic_write_text(predict_list, "".join(f"{v}\n" for v in pick_predict_videos(synth.val_list, options.predict_videos)))
    predictions_file = workdir / "predictions.json"
    use_gpu = "True" if options.device.startswith("cuda") else "False"
    run_command(["predict", "-c", str(config), "--input_file", str(predict_list), "--model_file",
                 str(export_dir / "TimeSformer.onnx"), "--label_file", label_file, f"--use_gpu={use_gpu}",
                 "--json", str(predictions_file)])  # fmt: skip
    predictions = json.loads(predictions_file.read_text()) if predictions_file.is_file() else []

    plot_file = workdir / "curves.png"
    plotted = plot_curves(reports, plot_file)
    summary = {
        **{name: asdict(report) for name, report in reports.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "videos": data.train + data.val,
        "data_dir": str(synth.out_dir),
        "onnx_model": str(export_dir / "TimeSformer.onnx"),
        "predictions": [
            {"video": p["video_id"], "label": p["topk_label"][0] if p["topk_label"] else None,
             "score": p["topk_scores"][0]}
            for p in predictions
        ],  # fmt: skip
        "plot": str(plot_file) if plotted else None,
        "config": str(config),
        "device": options.device,
        "seed": options.seed,
        "quick": options.quick,
    }
    atomic_write_text(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    print_table(summary, workdir, plotted)
    return summary


def _clear_run_dir(output_dir: Path) -> None:
    """Remove a previous demo run's logs, checkpoints and states (only the kinds of files training writes)."""
    for path in output_dir.iterdir():
        if path.is_file() and path.suffix in (".safetensors", ".pt", ".jsonl", ".log"):
            path.unlink()


def print_table(summary: dict, workdir: Path, plotted: bool) -> None:
    rows = [("model", "test top-1", "best val top-1", "train s", "test s")]
    for name in ATTENTION_TYPES:
        r = summary[name]
        best = "-" if r["best_val_top1"] is None else f"{r['best_val_top1']:.3f}"
        rows.append((name, f"{r['top1']:.3f}", best, f"{r['train_seconds']:.0f}", f"{r['test_seconds']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"\ntotal {summary['seconds']:.0f} s on {summary['device']}; {summary['videos']} videos in {summary['data_dir']}")
    print(f"summary: {workdir / 'summary.json'}")
    print(f"ONNX model: {summary['onnx_model']}")
    print(f"curves: {summary['plot']}" if plotted else "curves: skipped (pip install matplotlib to plot them)")
    print("Divided space-time attention compares frames, so it can tell → from ←; space-only attention "
          "sees each frame alone and stays near 0.5 (the axis, never the direction).")
