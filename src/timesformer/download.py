"""Resumable, retried, verified HTTP downloads (standard library only).

A download goes to `DEST.part`. When it is interrupted, the next try (or the next run)
asks the server for the rest with an HTTP `Range` request and appends to the part file;
a server that ignores `Range` sends the whole file again and the part file restarts.
Only a complete file whose sha256 matches (when one is known) is renamed to `DEST`, so
`DEST` is never half-written.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import __version__
from .errors import UserError
from .utils import first_line, sha256_file

CHUNK = 1 << 20
NAME_MAX = 255  # bytes in one file name (ext4, APFS, NTFS)
# Worth another try: the network, the server being busy, or a server-side failure.
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class _RetryableError(Exception):
    pass


@dataclass
class DownloadItem:
    url: str
    dest: Path
    sha256: str | None = None


@dataclass
class DownloadResult:
    item: DownloadItem
    path: Path | None  # None when it failed
    error: str | None = None
    present: bool = False  # the file was already there (complete, its sha256 matching when known): not fetched


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def file_name_from_url(url: str, where: str | None = None) -> str:
    """The file name a URL's path ends in (percent-decoded), checked to be a plain, writable
    name: not empty, `.` or `..`, no control characters (`%00`), at most 250 bytes."""
    shown = url if len(url) <= 120 else url[:119] + "…"
    prefix = f"{where}: {shown}" if where else shown
    try:
        name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    except ValueError as err:  # urlparse: "Invalid IPv6 URL" (an unclosed `[`)
        raise UserError(f"{prefix}: not a URL ({first_line(err)})") from None
    if not name or name in (".", ".."):
        raise UserError(f"{prefix}: the URL names no file")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UserError(f"{prefix}: the URL's file name holds a control character (such as %00)")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX - len(".part"):
        raise UserError(f"{prefix}: the URL's file name is longer than {NAME_MAX - len('.part')} bytes")
    return name


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest` and return `dest`; a complete `dest` is kept, not fetched.

    Up to `retries` more tries after a network or server failure, waiting `backoff`,
    2·`backoff`, 4·`backoff`… seconds, each resuming where the last stopped. A sha256
    mismatch removes the part file and raises `UserError`.
    """
    from tqdm import tqdm

    dest = Path(dest)
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=True)
    try:
        return _fetch(url, dest, sha256, retries, backoff, timeout, _bar_start(bar), bar.update)
    finally:
        bar.close()


def download_many(
    items: Iterable[DownloadItem],
    workers: int = 4,
    *,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> list[DownloadResult]:
    """Download `items` with `workers` threads and one byte-progress bar for all of them.

    A failed item does not stop the others; each result carries its path or its error.
    """
    from tqdm import tqdm

    items = list(items)
    names = [item.dest.resolve() for item in items]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise UserError(f"{duplicate}: two URLs would be saved to this same file")
    bar = tqdm(desc=f"{len(items)} files", unit="B", unit_scale=True, unit_divisor=1024, disable=not progress)
    lock = threading.Lock()

    def one(item: DownloadItem) -> DownloadResult:
        # What this item has added to the shared bar, so that a retry that restarts
        # the file (or learns its size) corrects the bar instead of counting twice.
        counted = {"total": 0, "done": 0}

        def on_start(total: int | None, done: int) -> None:
            with lock:
                bar.total = (bar.total or 0) + (total or done) - counted["total"]
                bar.update(done - counted["done"])
                counted.update(total=total or done, done=done)

        def on_bytes(n: int) -> None:
            with lock:
                bar.update(n)
                counted["done"] += n

        try:
            if _already_there(item.url, item.dest, item.sha256):
                on_start(item.dest.stat().st_size, item.dest.stat().st_size)
                return DownloadResult(item, item.dest, present=True)
            return DownloadResult(item, _fetch(item.url, item.dest, item.sha256, retries, backoff, timeout, on_start, on_bytes))
        except UserError as err:
            return DownloadResult(item, None, str(err))

    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            return list(pool.map(one, items))
    finally:
        bar.close()


def _bar_start(bar) -> Callable[[int | None, int], None]:
    def start(total: int | None, done: int) -> None:
        bar.reset(total=total)
        bar.update(done)

    return start


def _fetch(
    url: str,
    dest: Path,
    sha256: str | None,
    retries: int,
    backoff: float,
    timeout: float,
    on_start: Callable[[int | None, int], None],
    on_bytes: Callable[[int], None],
) -> Path:
    sha256 = sha256.lower() if sha256 else None
    if _already_there(url, dest, sha256):
        on_start(dest.stat().st_size, dest.stat().st_size)
        return dest
    if dest.parent.exists() and not dest.parent.is_dir():
        raise UserError(f"{dest.parent}: exists and is not a folder; cannot save {dest.name} there")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, on_start, on_bytes)
            break
        except _RetryableError as err:
            if attempt == retries:
                raise UserError(f"{url}: download failed after {retries + 1} tries ({err}); run again to resume from {part}") from None
            time.sleep(backoff * 2**attempt)
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256:
            part.unlink()
            raise UserError(f"{url}: sha256 {actual} does not match the expected {sha256}; removed the download")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    return dest


def _already_there(url: str, dest: Path, sha256: str | None) -> bool:
    """True when `dest` is a complete earlier download (its sha256 matching, when known).

    A folder or other non-file in its place, or a file with the wrong sha256, is an error:
    it is never reported as downloaded.
    """
    if not dest.exists() and not dest.is_symlink():
        return False
    if not dest.is_file():
        raise UserError(f"{dest}: exists and is not a file, so {url} cannot be saved there")
    if sha256 is not None and sha256_file(dest) != sha256.lower():
        raise UserError(f"{dest}: already exists with a different sha256 than {url} should have; delete it to download again")
    return True


def _transfer(url: str, part: Path, timeout: float, on_start, on_bytes) -> None:
    """Append the rest of `url` to `part`; raise `_RetryableError` for what a retry may fix."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"timesformer/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # The part file already holds everything (or more than) the server has.
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == offset:
                on_start(total, offset)
                return
            part.unlink()
            raise _RetryableError(f"HTTP 416 for a {offset}-byte partial file; restarting") from None
        if err.code in RETRY_STATUS:
            raise _RetryableError(f"HTTP {err.code} {err.reason}") from None
        raise UserError(f"{url}: HTTP {err.code} {err.reason}") from None
    except ValueError as err:  # urllib's complaint about a malformed or unknown-scheme URL
        raise UserError(f"{url}: {err}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise UserError(f"{url}: the server's TLS certificate is not trusted ({reason.verify_message})") from None
        raise _RetryableError(str(reason)) from None

    with response:
        if response.status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the server ignored Range and sends the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            offset, mode = 0, "wb"
        on_start(total, offset)
        received = offset
        try:
            with open(part, mode) as f:
                while block := response.read(CHUNK):
                    f.write(block)
                    received += len(block)
                    on_bytes(len(block))
        except (http.client.HTTPException, OSError) as err:
            raise _RetryableError(f"connection lost after {received} bytes: {err!r}") from None
    if total is not None and received != total:
        raise _RetryableError(f"got {received} of {total} bytes")


def _total_from_content_range(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", (value or "").strip())
    return int(match.group(1)) if match else None
