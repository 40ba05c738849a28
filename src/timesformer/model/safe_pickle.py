"""Read PaddlePaddle `.pdparams` files (pickles of numpy arrays) without executing anything.

A pickle may name any importable callable; `pickle.load` would call it. This unpickler
resolves only the handful of globals that rebuilding numpy arrays needs and refuses every
other one, so a hostile file fails with a one-line `CheckpointError` before anything runs.
"""

from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path

import numpy as np

from ..errors import CheckpointError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # Protocol 2 stores bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): _latin1_encode,
        # Paddle's generic object save turns a tensor into tuple((name, array)).
        ("builtins", "tuple"): tuple,
    }
    core = np._core if hasattr(np, "_core") else np.core
    # numpy 1 pickles name `numpy.core...`, numpy 2 `numpy._core...`: the same functions.
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = core.multiarray.scalar  # 0-d values
        allowed[(f"{module}.numeric", "_frombuffer")] = core.numeric._frombuffer  # protocol 5
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction (plus plain containers, strings, numbers)."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("forbidden persistent id (not a plain pickle of arrays)")


def load_numpy_pickle(path: str | Path) -> object:
    """Unpickle `path` allowing only numpy arrays; any other request raises `CheckpointError`."""
    try:
        with open(path, "rb") as f:
            return NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to unpickle: {err} (only numpy arrays are allowed)") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise CheckpointError(f"{path}: not a readable PaddlePaddle pickle ({type(err).__name__}: {err})") from None
