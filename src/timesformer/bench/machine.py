"""What the figures were measured on: CPU model and ISA, cores, load, library versions, GPU."""

from __future__ import annotations

import os
import platform

import torch

from ..allocator import reuse_freed_memory
from ..cpu import cpu_info
from ..data.video import usable_cores


def machine_info(device: torch.device) -> dict:
    cpu = cpu_info()
    info = {
        "cpu_model": cpu.model_name,
        "cpu_isa": cpu.isa(),
        "cpu_features": cpu.to_dict(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "allocator": reuse_freed_memory(),  # process-wide: the same for ours and transformers
    }
    for package in ("transformers", "av", "numpy", "onnxruntime"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info
