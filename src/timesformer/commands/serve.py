"""`timesformer serve (-w WEIGHTS [-c CONFIG] | --model_file X.onnx)`: an HTTP server and web page.

Routes: `POST /predict`, `/features`, `/explain`; `GET /healthz`, `/labels`, `/metrics`, `/`
(the page), `/docs`. Clips from concurrent requests are batched (`--max_batch`,
`--max_wait_ms`); SIGTERM lets the requests in flight finish and answers new ones with 503.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ..errors import UserError

TOKEN_ENV = "TIMESFORMER_TOKEN"


def register(sub) -> None:
    parser = sub.add_parser(
        "serve", help="HTTP inference server with a web page, batching and metrics",
        description="Serve a model over HTTP: top-k, features, attention maps and a page to drop videos on. "
        "Needs the `serve` extra: pip install 'timesformer[serve]'.",
    )  # fmt: skip
    parser.add_argument("-w", "--weights", help="checkpoint in any format load_model reads (runs PyTorch)")
    parser.add_argument("-c", "--config", help="YAML config (PaddleVideo schema) with -w: the architecture and test pipeline")
    parser.add_argument("--model_file", help="ONNX model from `timesformer export` (runs ONNX Runtime)")
    parser.add_argument("--label_file", help="class names, `id name` or one name per line (default: beside the ONNX model, "
                        "or Kinetics-400 for 400 classes)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--max_batch", type=int, default=8, help="most clips per model call (default: 8)")
    parser.add_argument("--max_wait_ms", type=float, default=20.0, help="longest a clip waits for a batch to fill (default: 20)")
    parser.add_argument("--max_upload_mb", type=float, default=200.0, help="largest upload accepted, in MB (default: 200)")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding uploads (default: 2)")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}; "
                        "prefer the variable, a flag shows in the process list)")  # fmt: skip
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="PyTorch autocast precision; auto: bf16 where the device computes it natively, else fp32 "
                        "(default: auto)")  # fmt: skip
    parser.set_defaults(func=run)


def check_arguments(args: argparse.Namespace) -> str | None:
    """One-line errors for every flag, before the model is loaded; returns the token."""
    if (args.weights is None) == (args.model_file is None):
        raise UserError("give either -w/--weights (a checkpoint, PyTorch) or --model_file (an exported ONNX model)")
    if args.config and args.model_file:
        raise UserError("-c/--config goes with -w; an ONNX model carries its own description")
    if args.model_file and args.precision not in ("auto", "fp32"):
        raise UserError(f"--precision {args.precision}: ONNX Runtime runs the exported fp32 model; drop the flag or use -w")
    files = (("-w/--weights", args.weights), ("-c/--config", args.config), ("--model_file", args.model_file),
             ("--label_file", args.label_file))  # fmt: skip
    for flag, path in files:
        if path is not None and not os.path.exists(path):
            raise UserError(f"{flag} {path}: file not found")
    bounds = {
        "--port": (args.port, 0, 65535), "--max_batch": (args.max_batch, 1, 1024),
        "--max_wait_ms": (args.max_wait_ms, 0, 60_000), "--max_upload_mb": (args.max_upload_mb, 1e-3, 1 << 20),
        "--workers": (args.workers, 1, 256),
    }  # fmt: skip
    for flag, (value, low, high) in bounds.items():
        if not low <= value <= high:  # NaN fails too
            raise UserError(f"{flag} {value}: must be between {low:g} and {high:g}")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is not None and (not token.strip() or any(c.isspace() for c in token) or not token.isprintable()):
        raise UserError(f"--token / ${TOKEN_ENV}: the token must be printable, without spaces, and not empty")
    if token is None and not _is_loopback(args.host):
        print(f"[serve] warning: --host {args.host} without --token: anyone who reaches this address can use the model",
              file=sys.stderr)  # fmt: skip
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    token = check_arguments(args)
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise UserError(f"timesformer serve needs the serve extra ({err.name} is missing): pip install 'timesformer[serve]'") from None
    from ..serve.app import ServeOptions, create_app
    from ..serve.gate import GateState
    from ..serve.model_service import ModelService
    from ..serve.server import bind, serve

    sock = bind(args.host, args.port)
    service = ModelService.load(
        weights=args.weights, config=args.config, model_file=args.model_file, precision=args.precision,
        label_file=args.label_file,
    )  # fmt: skip
    print(f"[serve] model: {service.description}, {service.num_classes} classes", file=sys.stderr, flush=True)
    options = ServeOptions(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_upload_mb=args.max_upload_mb,
        workers=args.workers, token=token,
    )  # fmt: skip
    state = GateState()
    serve(create_app(service, options, state), state, sock)
    return 0
