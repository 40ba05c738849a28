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


class _ArrayType:
    """Stands for `numpy.ndarray` in a pickle, where numpy only passes it to `_reconstruct`:
    not callable, so a pickle cannot call ``ndarray(shape)`` to allocate what it likes."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("numpy.ndarray called directly (an array of any shape, before its data)")


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """numpy's `_reconstruct`, which numpy's own pickles call with shape ``(0,)`` and then
    fill from the pickled bytes (whose size numpy checks): a larger shape would allocate it."""
    if subtype is not _ArrayType:
        raise pickle.UnpicklingError(f"_reconstruct of {type(subtype).__name__}, not a numpy array")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n for n in shape) and np.prod(shape, dtype=object) <= 1):
        raise pickle.UnpicklingError(f"_reconstruct asks for an array of shape {str(shape)[:60]} before its data")
    if not (isinstance(dtype, (bytes, str)) and len(dtype) <= 8):  # a placeholder: the array's dtype comes with its data
        raise pickle.UnpicklingError(f"_reconstruct with dtype {str(dtype)[:40]!r}")
    return _CORE.multiarray._reconstruct(np.ndarray, shape, dtype)


def _dtype(spec: object, align: bool = False, copy: bool = False) -> np.dtype:
    """`numpy.dtype` for the plain scalar types arrays of weights have (no object arrays)."""
    if isinstance(spec, np.dtype):
        dtype = spec
    elif isinstance(spec, str) and len(spec) <= 8:
        try:
            dtype = np.dtype(spec, align, copy)
        except TypeError as err:
            raise pickle.UnpicklingError(f"dtype {spec!r}: {err}") from None
    else:
        raise pickle.UnpicklingError(f"dtype from {type(spec).__name__} {str(spec)[:40]!r}")
    if dtype.hasobject:
        raise pickle.UnpicklingError("an array of Python objects")
    return dtype


_CORE = np._core if hasattr(np, "_core") else np.core


def _numpy_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _ArrayType,
        ("numpy", "dtype"): _dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # Protocol 2 stores bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): _latin1_encode,
        # Paddle's generic object save turns a tensor into tuple((name, array)).
        ("builtins", "tuple"): tuple,
    }
    # numpy 1 pickles name `numpy.core...`, numpy 2 `numpy._core...`: the same functions.
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = _CORE.multiarray.scalar  # 0-d values
        allowed[(f"{module}.numeric", "_frombuffer")] = _CORE.numeric._frombuffer  # protocol 5: views the pickled bytes
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
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, OverflowError) as err:
        raise CheckpointError(f"{path}: not a readable PaddlePaddle pickle ({type(err).__name__}: {err})") from None
