"""One run per output folder: an exclusive `flock` on `<output_dir>/.timesformer.lock`.

The kernel releases a `flock` when its process dies, however it dies, so a lock file left behind
by a killed run never blocks the next one: the PID it names is reported as taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".timesformer.lock"


class OutputLock:
    """`with OutputLock(folder) as lock:` holds the folder for this process; `lock.note` says
    whether a stale lock was taken over (None otherwise)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.note: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"output_dir {self.folder}: a file is there, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(f"output_dir {self.folder}: cannot create it or its lock file ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"output_dir {self.folder}: cannot lock it ({err.strerror})") from None
            raise UserError(f"output_dir {self.folder} is in use by another training run ({holder}); "
                            f"wait for it to end or set another output_dir") from None  # fmt: skip
        previous = _read_holder(fd)
        if previous != "no process recorded":
            self.note = f"output_dir {self.folder}: took over the lock left by {previous}, which is no longer running"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):  # unlinked while held: no later run sees our PID
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "no process recorded"
