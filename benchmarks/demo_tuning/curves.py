"""Print the per-epoch validation curves of results.jsonl as a Markdown table (for results.md)."""

import json
import sys
from pathlib import Path

KEYS = ("colors", "input_scale", "time_embed_std", "patch", "obj", "train", "batch", "lr", "wd",
        "warmup_epochs", "schedule", "clip")


def main(path: str = "results.jsonl") -> None:
    print("| tag | attention | seed | settings | epochs to ≥0.95 | best | cpu s | curve (val top-1 per epoch) |")
    print("|---|---|---|---|---|---|---|---|")
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        a = r["args"]
        settings = " ".join(f"{k}={a[k]}" for k in KEYS if k in a)
        hit = next((i + 1 for i, v in enumerate(r["curve"]) if v >= 0.95), "-")
        curve = " ".join(f"{v:.2f}" for v in r["curve"])
        print(f"| {r['tag']} | {r['attention']} | {r['seed']} | {settings} | {hit} | {max(r['curve']):.3f} | "
              f"{r['cpu_s']} | {curve} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
