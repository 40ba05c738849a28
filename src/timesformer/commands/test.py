"""`timesformer test -c CFG -w WEIGHTS [-o K=V ...] [--report DIR]`: multi-view top-1 / top-5 over the test set.

Exact under torchrun: each video is evaluated by one rank and counted once. Unreadable videos are
named with their reason and counted as skipped; the command still succeeds.
"""

from __future__ import annotations

import argparse

from .train import add_config_arguments


def register(sub) -> None:
    parser = sub.add_parser(
        "test", help="top-1 / top-5 of weights on the config's test set",
        description="Multi-view test (the config's test pipeline, e.g. 3 UniformCrop views), views averaged "
        "by MODEL.runtime_cfg.test.avg_type. Prints one line per unreadable video and a final "
        "'[TEST] top1: ... top5: ... (N videos, K skipped)'.",
    )  # fmt: skip
    add_config_arguments(parser)
    parser.add_argument("-w", "--weights", required=True, help="weights to test (any format load_model reads)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--amp", action="store_true", help="run the model under bf16 autocast")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="also write DIR/report.json, per_class.csv, confusion_matrix.png and report.html")
    parser.add_argument("--label_file", default=None, help="class names for --report (default: the checkpoint's "
                        "id2label, labels.txt beside the test list, Kinetics-400 for 400 classes, else ids)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_amp_dtype
    from ..engine import distributed
    from ..engine.config import load_config
    from ..engine.evaluate import run_test
    from ..engine.logging import RunLogger
    from ..errors import UserError

    cfg = load_config(args.config, args.override)
    report_names = _report_class_names(args, cfg) if args.report else None
    ctx = distributed.setup(args.device)
    log = RunLogger(None, enabled=ctx.is_main)
    try:
        result = run_test(cfg, args.weights, ctx, log, resolve_amp_dtype(ctx.device, "bf16" if args.amp else "fp32"))
    finally:
        is_main = ctx.is_main
        distributed.teardown(ctx)
    if result.count == 0:
        raise UserError(f"{cfg.DATASET.test.file_path}: no readable video to test ({result.skipped} skipped)")
    if report_names is not None and is_main:  # every rank holds the whole result: one writes
        from ..report import report_from_eval, write_report

        avg_type = cfg.MODEL.runtime_cfg.test.avg_type
        report = report_from_eval(result, report_names, avg_type)
        written = write_report(report, args.report, f"Evaluation report: {cfg.model_name}",
                               f"weights {args.weights}, config {args.config}, test list {cfg.DATASET.test.file_path}")
        print(f"[TEST] report: {', '.join(str(p) for p in written)}")
    return 0


def _report_class_names(args: argparse.Namespace, cfg) -> list[str]:
    """Refuse a report that would overwrite an input, and find the class names, before testing."""
    from pathlib import Path

    from ..errors import UserError
    from ..model.hub import checkpoint_class_names
    from ..report import REPORT_FILES
    from ..report.classes import report_class_names
    from ..utils import check_distinct_paths

    if Path(args.report).exists() and not Path(args.report).is_dir():
        raise UserError(f"--report {args.report}: exists and is not a folder")
    test_list = cfg.DATASET.test.file_path
    inputs = {"-c": args.config, "-w": args.weights, "--label_file": args.label_file, "DATASET.test.file_path": test_list or None}
    check_distinct_paths(inputs, {f"--report {args.report}/": [Path(args.report) / name for name in REPORT_FILES]})
    return report_class_names(cfg.MODEL.head.num_classes, args.label_file, test_list or None,
                              checkpoint_class_names(args.weights))
