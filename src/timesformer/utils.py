"""Small helpers shared by every stage: atomic writes and file hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the body succeeds.

    A crash or kill at any moment leaves either the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; give the final file the mode a plain open() would (after the
    # body: some writers, e.g. safetensors' save_file, recreate the file as 0600).
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


PathLike = str | os.PathLike


def _flat(paths: dict[str, PathLike | Iterable[PathLike] | None]) -> list[tuple[str, Path]]:
    """[(flag, path)] from {flag: path | [paths] | None}, None left out."""
    flat = []
    for flag, value in paths.items():
        if value is None:
            continue
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        flat.extend((flag, Path(v)) for v in values if v is not None)
    return flat


def _identities(path: Path) -> list[object]:
    """What makes two paths one file: the path with symlinks and `..` resolved, and for an
    existing file its (device, inode), which hard links share."""
    keys: list[object] = [path.resolve()]
    try:
        st = path.stat()
        keys.append((st.st_dev, st.st_ino))
    except OSError:  # not there yet: the resolved path decides
        pass
    return keys


def check_distinct_paths(
    inputs: dict[str, PathLike | Iterable[PathLike] | None],
    outputs: dict[str, PathLike | Iterable[PathLike] | None],
) -> None:
    """Raise `UserError` naming both flags when an output is an input or another output.

    Keys are what the user typed (`--label_file`, `-o`), values the paths each one reads or
    writes (a path, several, or None). List every file a command writes, including those it
    derives inside an output folder (`OUT/TimeSformer.onnx`), so that an input or another
    output placed there is caught before anything is written. Linear in the number of paths.
    """
    from .errors import UserError

    read: dict[object, tuple[str, Path]] = {}
    for flag, path in _flat(inputs):
        for key in _identities(path):
            read.setdefault(key, (flag, path))
    written: dict[object, tuple[str, Path]] = {}
    for out_flag, out_path in _flat(outputs):
        keys = _identities(out_path)
        for key in keys:
            if key in read:
                in_flag, in_path = read[key]
                raise UserError(
                    f"{out_flag} {out_path} would overwrite {in_flag} {in_path} (the same file): "
                    "an output may not replace an input; choose another path"
                )
            if key in written:
                other_flag, other_path = written[key]
                raise UserError(
                    f"{other_flag} {other_path} and {out_flag} {out_path} are the same file: "
                    "two outputs may not share a path; choose another one"
                )
        for key in keys:
            written[key] = (out_flag, out_path)


def first_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-blank line of an error (or text), cut to `limit` characters; the
    exception's type name when it says nothing. For one-line messages that quote a library's
    reason without its traceback-sized detail."""
    text = str(err).strip()
    if not text:
        return type(err).__name__ if isinstance(err, BaseException) else ""
    line = text.splitlines()[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"
