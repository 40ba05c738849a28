"""`reuse_freed_memory`: after it, a freed tensor's pages are reused, not faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt settings exist in glibc only"
)

# Forwards of one ViT-B-wide block (its tensors are ViT-B's, 2-10 MB each); reports the page
# faults of the last five.
_PROBE = """
import json, resource, sys, torch
from timesformer.allocator import reuse_freed_memory
from timesformer.model.timesformer import TimeSformer, TimeSformerConfig
state = reuse_freed_memory() if sys.argv[1] == "on" else "off"
model, clip = TimeSformer(TimeSformerConfig(depth=1)).eval(), torch.randn(1, 3, 8, 224, 224)
def once():
    with torch.no_grad():
        model(clip)
for _ in range(3):
    once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    once()
print(json.dumps({"state": state, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=environment, check=True)
    return json.loads(out.stdout)


def test_freed_memory_is_reused_without_page_faults():
    default, kept = _probe("off"), _probe("on")
    assert kept["state"] == "glibc malloc, freed memory kept for reuse"
    # glibc's defaults: 20,000-50,000 faults in five such forwards here; kept: ~3,500.
    assert kept["faults"] * 4 < default["faults"], (default, kept)


def test_a_users_own_malloc_settings_are_left_alone():
    code = "from timesformer import reuse_freed_memory; print(reuse_freed_memory())"
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "glibc malloc, the user's settings"


def test_the_command_line_turns_it_on():
    code = "import sys; from timesformer import allocator, cli; cli.main(['weights', 'list']); print(allocator._state, file=sys.stderr)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "glibc malloc, freed memory kept for reuse", out.stderr
