"""How fast TimeSformer runs here, and how close to the machine's limit: `timesformer bench`
(also `python -m timesformer.bench`).

Every figure is the median of `repeat` timed runs after `warmup` untimed ones. Cases that are
compared (ours vs transformers, fp32 vs bf16, eager vs compiled, preprocess vs bare decode,
ONNX Runtime int8 vs fp32) run interleaved, one call of each per round, so that load from
other processes on a shared machine hits them alike; their ratios are medians of the
per-round ratios.

One module per job:
    options        BenchOptions (the flags, typed and checked), WHAT, PRESETS
    runner         run_bench(options): the whole run, the report, the JSON
    session        BenchSession: device, model under test, inputs; rows/ratios/checks recorded
    timing         interleaved rounds, Timing, paired_speedup;  memory: PeakMemory
    flops          timesformer_flops (analytic, 2 per multiply-add)
    clips          the synthetic test video, PyAV's bare decode (the floor)
    machine        CPU model and ISA, cores, load, versions;  report: the table, the advice
    transformers_model   transformers' TimeSformer with our architecture
    matmul, model_forward, train_step, preprocess, predict, onnx_runtime, loader: one benchmark each
"""

from .options import PRESETS, WHAT, BenchOptions

__all__ = ["BenchOptions", "PRESETS", "WHAT", "run_bench"]


def run_bench(options: BenchOptions) -> dict:
    """Run the bench (`timesformer.bench.runner.run_bench`); imported on call so that the
    options stay importable without torch."""
    from .runner import run_bench as run

    return run(options)
