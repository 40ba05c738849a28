"""`timesformer export -c CFG -p WEIGHTS -o OUT_DIR`: PaddleVideo's inference model, as ONNX.

Writes `OUT_DIR/TimeSformer.onnx` (input `[N, 3, 3*num_seg, 224, 224]`, the three test
crops stacked on T; output the view-averaged logits `[N, num_classes]`), its description
`OUT_DIR/TimeSformer.json` and the label list, after ONNX Runtime has reproduced PyTorch's
output on a random input.

`-o` is the output folder, as in PaddleVideo's export_model.py; a `-o KEY.PATH=VALUE`
(a config override, as `train`/`test` take them) is told apart by its `=`.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from ..errors import UserError
from ..utils import check_distinct_paths

OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]-]*=")  # `MODEL.backbone.depth=2`, not a folder name


def split_output_and_overrides(values: list[str], overrides: list[str]) -> tuple[str, list[str]]:
    """The output folder among `-o` values (exactly one) and the config overrides."""
    folders = [v for v in values if not OVERRIDE.match(v)]
    overrides = overrides + [v for v in values if OVERRIDE.match(v)]
    if len(folders) != 1:
        found = ", ".join(folders) if folders else "none"
        raise UserError(f"-o: give exactly one output folder (found: {found}); config overrides look like -o KEY.PATH=VALUE")
    return folders[0], overrides


def export_paths(
    out_dir: str, save_name: str, label_file: str | None, torch_export: bool, quantize: str | None = None
) -> dict[str, list[Path]]:
    """{flag: files it makes `export` write}, for the collision check before anything runs."""
    out = Path(out_dir)
    written = {"-o": [out / f"{save_name}.onnx", out / f"{save_name}.onnx.data", out / f"{save_name}.json"]}
    copy = out / Path(label_file).name if label_file is not None else None
    if copy is not None and copy.resolve() != Path(label_file).resolve():  # already in OUT_DIR: left as it is
        written["the copy of --label_file"] = [copy]
    if torch_export:
        written["--torch_export"] = [out / f"{save_name}.pt2"]
    if quantize:
        written["--quantize"] = [out / f"{save_name}.{quantize}.onnx", out / f"{save_name}.{quantize}.json"]
    return written


def register(sub) -> None:
    parser = sub.add_parser(
        "export", help="export weights to an ONNX inference model (checked with ONNX Runtime)",
        description="Export a TimeSformer to OUT_DIR/TimeSformer.onnx in PaddleVideo's inference layout "
        "(input [N, 3, 3*num_seg, H, W], output view-averaged logits) plus TimeSformer.json.",
    )  # fmt: skip
    parser.add_argument("-c", "--config", help="YAML config (PaddleVideo schema); default: the architecture the weights describe")
    parser.add_argument("-p", "--pretrained_params", "-w", "--weights", dest="weights", required=True,
                        help="weights to export (any format timesformer.load_model reads)")  # fmt: skip
    parser.add_argument("-o", "--output_path", dest="outputs", action="append", default=[], metavar="OUT_DIR",
                        help="output folder (also accepts config overrides KEY.PATH=VALUE, repeatable)")  # fmt: skip
    parser.add_argument("--override", action="append", default=[], metavar="KEY.PATH=VALUE", help="config override (repeatable)")
    parser.add_argument("--save_name", default="TimeSformer", help="file name stem (default: TimeSformer)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    parser.add_argument("--label_file", default=None, help="class names to ship beside the model (default: Kinetics-400 for 400 classes)")
    parser.add_argument("--torch_export", action="store_true", help="also write <save_name>.pt2 (torch.export program, dynamic batch)")
    parser.add_argument("--quantize", choices=("int8",),
                        help="also write <save_name>.int8.onnx: ONNX Runtime dynamic int8 quantization of the linear layers")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import DEFAULT_OPSET, export_onnx
    from ..inference.loading import load_checked_model

    out_dir, overrides = split_output_and_overrides(args.outputs, args.override)
    if args.label_file is not None and not os.path.isfile(args.label_file):
        raise UserError(f"--label_file {args.label_file}: file not found")
    if not args.save_name or Path(args.save_name).name != args.save_name or args.save_name in (".", ".."):
        raise UserError(f"--save_name {args.save_name!r}: give a plain file name stem, without folders")
    check_distinct_paths(
        {"-p": args.weights, "-c": args.config, "--label_file": args.label_file},
        export_paths(out_dir, args.save_name, args.label_file, args.torch_export, args.quantize),
    )
    model, spec = load_checked_model(args.weights, args.config, overrides)
    cfg = model.config
    print(
        f"Exporting {cfg.attention_type} TimeSformer (embed {cfg.embed_dim}, depth {cfg.depth}, "
        f"{spec.num_classes} classes) for input [N, 3, {spec.views * spec.num_seg}, {spec.target_size}, "
        f"{spec.target_size}] ..."
    )
    result = export_onnx(
        model,
        spec,
        out_dir,
        name=args.save_name,
        opset=args.opset or DEFAULT_OPSET,
        label_file=args.label_file,
        torch_export=args.torch_export,
    )
    print(
        f"ONNX Runtime vs PyTorch on a random batch of {result.check_batch}: max abs diff "
        f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    )
    print(f"Model: {result.onnx_path}" + (f" (weights in {result.onnx_path}.data)" if result.external_data else ""))
    print(f"Description: {result.spec_path}")
    if result.torch_export_path:
        print(f"torch.export program: {result.torch_export_path}")
    if args.quantize == "int8":
        from ..export.onnx import quantize_int8

        print(f"Int8 model (dynamic quantization, predict takes it as --model_file): {quantize_int8(result.onnx_path)}")
    print(f"Done in {result.seconds:.1f} s")
    return 0
