"""Resumable, retried, verified downloads against a local HTTP server with Range support."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading

import pytest

from timesformer.cli import main
from timesformer.download import DownloadItem, download_file, download_many, part_path
from timesformer.errors import UserError

BLOB = bytes(range(256)) * 1000  # 256000 bytes
SHA = hashlib.sha256(BLOB).hexdigest()


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes), honouring `Range: bytes=N-` unless the path is in `no_range`.

    `truncate_once` paths send half the body on their first request, then drop the
    connection; `fail_once` paths answer 503 the first time. `requests` records
    (path, Range header) of every request.
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, bytes] = {}
        self.no_range: set[str] = set()
        self.truncate_once: set[str] = set()
        self.fail_once: set[str] = set()
        self.status: dict[str, int] = {}  # path -> an error status it always answers
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path in srv.status:
            self.send_error(srv.status[self.path])
            return
        if self.path in srv.fail_once:
            srv.fail_once.discard(self.path)
            self.send_error(503)
            return
        if self.path not in srv.files:
            self.send_error(404)
            return
        data = srv.files[self.path]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and self.path not in srv.no_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in srv.truncate_once:
            srv.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = RangeServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_download_verifies_and_renames(server, tmp_path):
    server.files["/w.bin"] = BLOB
    dest = tmp_path / "sub" / "w.bin"
    assert download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == BLOB and not part_path(dest).exists()
    # A complete file is kept: no second request.
    download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False)
    assert len(server.requests) == 1


def test_resume_from_a_partial_file(server, tmp_path):
    server.files["/w.bin"] = BLOB
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(BLOB[:1000])
    download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False)
    assert server.requests == [("/w.bin", "bytes=1000-")]
    assert dest.read_bytes() == BLOB


def test_complete_part_file_is_finished_without_body(server, tmp_path):
    server.files["/w.bin"] = BLOB
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(BLOB)
    download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False)  # server answers 416
    assert dest.read_bytes() == BLOB


def test_dropped_connection_is_retried_and_resumed(server, tmp_path):
    server.files["/w.bin"] = BLOB
    server.truncate_once.add("/w.bin")
    server.fail_once.add("/w.bin")
    dest = tmp_path / "w.bin"
    download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False, backoff=0)
    assert dest.read_bytes() == BLOB
    # 503, then half the file, then the rest from where it stopped.
    assert server.requests == [("/w.bin", None), ("/w.bin", None), ("/w.bin", f"bytes={len(BLOB) // 2}-")]


def test_server_without_range_restarts_the_file(server, tmp_path):
    server.files["/w.bin"] = BLOB
    server.no_range.add("/w.bin")
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(b"stale bytes")
    download_file(f"{server.url}/w.bin", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == BLOB


def test_sha256_mismatch_removes_the_download(server, tmp_path):
    server.files["/w.bin"] = BLOB
    dest = tmp_path / "w.bin"
    with pytest.raises(UserError, match="sha256") as err:
        download_file(f"{server.url}/w.bin", dest, sha256="0" * 64, progress=False)
    assert "\n" not in str(err.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_not_found_fails_at_once(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        download_file(f"{server.url}/nope.bin", tmp_path / "nope.bin", progress=False, backoff=0)
    assert len(server.requests) == 1


def test_unreachable_server_gives_up_after_retries(tmp_path):
    with pytest.raises(UserError, match="after 3 tries"):
        download_file("http://127.0.0.1:9/x.bin", tmp_path / "x.bin", retries=2, progress=False, backoff=0)


def test_download_many_in_parallel_reports_each_failure(server, tmp_path):
    for i in range(4):
        server.files[f"/f{i}.bin"] = BLOB[i:]
    items = [DownloadItem(f"{server.url}/f{i}.bin", tmp_path / f"f{i}.bin") for i in range(4)]
    items.append(DownloadItem(f"{server.url}/missing.bin", tmp_path / "missing.bin"))
    items[1].sha256 = hashlib.sha256(BLOB[1:]).hexdigest()
    results = download_many(items, workers=3, progress=False, backoff=0)
    assert [r.path is not None for r in results] == [True, True, True, True, False]
    assert "missing.bin" in results[-1].error and "404" in results[-1].error
    for i in range(4):
        assert (tmp_path / f"f{i}.bin").read_bytes() == BLOB[i:]


def test_cli_link_list(server, tmp_path, capsys):
    server.files["/a/train_part1.tar"] = BLOB
    server.files["/a/train_part2.tar"] = BLOB[::-1]
    links = tmp_path / "train_link.list"
    links.write_text(
        f"{server.url}/a/train_part1.tar\n\n# a comment\n"
        f"{server.url}/a/train_part2.tar {hashlib.sha256(BLOB[::-1]).hexdigest()}\n"
    )
    out = tmp_path / "out"
    assert main(["data", "download", "--links", str(links), "--out", str(out), "--workers", "2"]) == 0
    assert (out / "train_part1.tar").read_bytes() == BLOB
    assert (out / "train_part2.tar").read_bytes() == BLOB[::-1]

    links.write_text(f"{server.url}/a/train_part1.tar\n{server.url}/a/gone.tar\n")
    assert main(["data", "download", "--links", str(links), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    # The file already there is not counted as downloaded, the one that failed is not either.
    assert "gone.tar" in captured.out + captured.err
    assert "downloaded 0 of 2 files" in captured.out and "1 already there" in captured.out and "1 failed" in captured.out


def test_cli_missing_link_list_is_one_line(tmp_path, capsys):
    assert main(["data", "download", "--links", str(tmp_path / "nope.list"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "nope.list" in err and "\n" not in err


def test_download_into_an_existing_folder_counts_only_real_downloads(server, tmp_path, capsys):
    """A URL that answers 404 or 500, or sends half its body, is never "downloaded", whatever
    the folder already holds (other files, a folder named like the URL's file)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.mp4").write_bytes(b"x")
    (out / "dir.bin").mkdir()  # a folder where a file would go
    server.status["/e500.bin"] = 500
    server.files["/half.bin"] = BLOB
    server.truncate_once.add("/half.bin")
    server.files["/dir.bin"] = BLOB
    names = ["missing.bin", "e500.bin", "half.bin", "dir.bin"]
    links = tmp_path / "links.txt"
    links.write_text("".join(f"{server.url}/{name}\n" for name in names))
    code = main(["data", "download", "--links", str(links), "--out", str(out), "--retries", "0"])
    text = capsys.readouterr().out
    assert code == 1
    assert "downloaded 0 of 4 files" in text and "4 failed" in text, text
    assert "HTTP 404" in text and "500" in text and f"got {len(BLOB) // 2} of {len(BLOB)} bytes" in text
    assert "is not a file" in text
    for name in names[:3]:
        assert not (out / name).exists()
    assert (out / "dir.bin").is_dir() and (out / "unrelated.mp4").read_bytes() == b"x"


@pytest.mark.parametrize(
    "url_path, problem",
    [("/a%00b.bin", "control character"), ("/..", "names no file"), ("/", "names no file"), ("/" + "n" * 300, "longer than")],
)
def test_link_list_url_file_names_are_checked(tmp_path, capsys, url_path, problem):
    links = tmp_path / "links.txt"
    links.write_text(f"http://127.0.0.1:9{url_path}\n")
    assert main(["data", "download", "--links", str(links), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "links.txt line 1" in err and problem in err and "\n" not in err
    assert not (tmp_path / "out").exists()
