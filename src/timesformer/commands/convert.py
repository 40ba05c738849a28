"""`timesformer convert SRC DST.safetensors`: any checkpoint format -> ours (config inside)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "convert",
        help="convert a checkpoint (PaddleVideo, official, transformers, timm/ViT) to .safetensors",
        description="Read any supported checkpoint, infer its architecture, and write our .safetensors "
        "(the config travels in its metadata, so `timesformer.load_model(DST)` needs no other argument).",
    )
    parser.add_argument("src", help="checkpoint file (.pdparams, .pyth, .pth, .safetensors, .npz) or transformers directory")
    parser.add_argument("dst", help="output file, ending in .safetensors")
    parser.add_argument("--num_heads", type=int, help="attention heads (default: what the file states, else width // 64)")
    parser.add_argument("--norm_eps", type=float, help="LayerNorm epsilon (default: what the file states, else 1e-6)")
    parser.add_argument("--num_frames", type=int, help="frames, for space_only checkpoints that do not store them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..model.checkpoints import model_from_checkpoint, read_checkpoint, save_model
    from ..utils import check_distinct_paths, sha256_file

    dst = Path(args.dst)
    if dst.suffix != ".safetensors":
        raise UserError(f"{dst}: the output must end in .safetensors")
    check_distinct_paths({"SRC": args.src}, {"DST": dst})
    overrides = {name: getattr(args, name) for name in ("num_heads", "norm_eps", "num_frames") if getattr(args, name) is not None}
    checkpoint = read_checkpoint(args.src)
    model = model_from_checkpoint(checkpoint, args.src, **overrides)
    print(f"read {args.src} ({checkpoint.source}): {len(checkpoint.state)} tensors")
    config = model.config
    heads_from = "given" if "num_heads" in overrides else "from the file" if "num_heads" in checkpoint.config else "embed_dim // 64"
    print(
        f"inferred: attention_type={config.attention_type} embed_dim={config.embed_dim} depth={config.depth} "
        f"num_heads={config.num_heads} ({heads_from}) mlp_ratio={config.mlp_ratio:g} num_frames={config.num_frames} "
        f"img_size={config.img_size} patch_size={config.patch_size} in_chans={config.in_chans} "
        f"num_classes={config.num_classes} qkv_bias={config.qkv_bias} norm_eps={config.norm_eps:g}"
    )
    if checkpoint.ignored:
        print(f"ignored {len(checkpoint.ignored)} keys: {', '.join(checkpoint.ignored)}")
    else:
        print("ignored keys: none")
    save_model(model, dst, metadata={"converted_from": Path(args.src).name})
    print(f"wrote {dst} ({dst.stat().st_size} bytes, sha256 {sha256_file(dst)})")
    return 0
