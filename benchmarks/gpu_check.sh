#!/usr/bin/env bash
# The first run on a GPU, in under 5 minutes on one: CUDA parity (fp32 / TF32 / bf16 / fp16 vs
# CPU fp32), fp16 + GradScaler and bf16 training with resume, torchrun with 2 processes, ONNX
# Runtime CUDA predict, MFU at batch 32 bf16 with flash SDPA; one JSON of figures.
#   benchmarks/gpu_check.sh [--out gpu_check.json] [--steps parity,train,torchrun,onnx,mfu]
#   benchmarks/gpu_check.sh --dry-run        # every step on the CPU at tiny sizes
# Python: $PYTHON, else the repository's .venv, else python3. Details: benchmarks/gpu_check.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="python3"
exec "$python" "$here/gpu_check.py" "$@"
