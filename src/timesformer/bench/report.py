"""The bench's table: machine (CPU model and ISA), one row per case, ratios, checks, and the
precision to run on this machine."""

from __future__ import annotations

import json


def _format(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def recommendation(report: dict) -> dict | None:
    """The fastest precision of our forward at the smallest batch measured, with its speedup over fp32."""
    rows = [r for r in report["results"] if r["what"] == "model" and r["impl"] == "ours"]
    if not rows:
        return None
    smallest = min(r["batch"] for r in rows)
    by_precision = {r["precision"]: r["median_s"] for r in rows if r["batch"] == smallest}
    fastest = min(by_precision, key=by_precision.get)
    advice = {"precision": fastest, "batch": smallest, "median_s": by_precision}
    if "fp32" in by_precision:
        advice["speedup_over_fp32"] = by_precision["fp32"] / by_precision[fastest]
    return advice


def format_row(row: dict, with_mfu: bool) -> str:
    fraction = row.get("peak_fraction")
    note = row.get("note", "")
    if row["what"] == "loader":
        rates = f"loader alone {_format(row.get('loader_clips_per_s'), '.2f')} clips/s"
        if row.get("train_step_clips_per_s"):
            rates += f" vs train step {row['train_step_clips_per_s']:.2f}"
        note = f"reader {row['reader_cost_s'] * 1e3:.0f} ms / batch {row['batch_cost_s'] * 1e3:.0f} ms; {rates}; {note}"
    if "compile_s" in row:
        note = f"compile {row['compile_s']:.1f} s"
    mfu = f" {_format(row.get('mfu') and 100 * row['mfu'], '.1f'):>6}" if with_mfu else ""
    return (
        f"{row['what']:<10} {row['impl']:<24} {row['precision'] or '-':<5} {_format(row['batch'], 'd'):>5} "
        f"{row['median_s'] * 1e3:>10.1f} {_format(row.get('clips_per_s'), '.2f'):>8} {_format(row.get('gflops'), '.0f'):>8} "
        f"{_format(fraction and 100 * fraction, '.0f'):>6}{mfu} {_format(row['peak_mem_mb'], '.0f'):>8}  {note}"
    )  # fmt: skip


def format_report(report: dict) -> str:
    machine, model = report["machine"], report["model_config"]
    with_mfu = any("mfu" in row for row in report["results"])
    lines = [
        f"machine: {machine['cpu_model']} ({machine['cpu_isa']}), {machine['usable_cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), device {machine['device']}"
        + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        + (f", load {machine['load_average'][0]:.1f}" if machine.get("load_average") else "")
        + (f", {machine['allocator']}" if machine.get("allocator") else ""),
        f"model: {model['attention_type']} D={model['embed_dim']} depth={model['depth']} "
        f"{model['num_frames']}x{model['img_size']}, {report['flops_per_clip'] / 1e9:.2f} GFLOP per clip",
        "",
        f"{'what':<10} {'impl':<24} {'prec':<5} {'batch':>5} {'median ms':>10} {'clips/s':>8} {'GFLOP/s':>8} "
        f"{'%peak':>6}{' %MFU' if with_mfu else ''} {'mem MiB':>8}  note",
    ]  # fmt: skip
    lines += [format_row(row, with_mfu) for row in report["results"]]
    if report["ratios"]:
        lines += ["", "ratios (medians of per-round ratios, interleaved runs):"]
        for r in report["ratios"]:
            where = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("what", "name", "value", "meaning"))
            lines.append(f"  {r['what']} {r['name']} [{where}]: {r['value']:.3f}  ({r['meaning']})")
    if report["checks"]:
        lines += ["", "checks:"]
        for name, value in report["checks"].items():
            lines.append(f"  {name}: {json.dumps(value)}")
    advice = report.get("recommendation")
    if advice:
        speedup = f", {advice['speedup_over_fp32']:.2f}x fp32's speed" if "speedup_over_fp32" in advice else ""
        lines += ["", f"recommended precision on this machine: {advice['precision']} (fastest forward measured at batch "
                      f"{advice['batch']}{speedup}; `--precision auto` picks {report['auto_precision']})"]  # fmt: skip
    return "\n".join(lines)
