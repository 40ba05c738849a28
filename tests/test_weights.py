"""`timesformer weights list / download` against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from timesformer.cli import main
from timesformer.errors import UserError
from timesformer.model.weights_registry import BASE_URL_ENV, PUBLISHED, find_weights


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring `Range: bytes=N-` so that resuming can be exercised."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            with open(self.translate_path(self.path), "rb") as f:
                data = f.read()
        except OSError:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.server.ranges.append(start)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    httpd.ranges = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd.ranges
    httpd.shutdown()
    httpd.server_close()


def test_list_names_the_seed_weights(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/ViT_base_patch16_224_pretrained.pdparams" in out
    assert "https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TimeSformer_k400.pdparams" in out
    assert "TimeSformer_divST_8x32_224_K400" in out
    assert len({w.name for w in PUBLISHED}) == len(PUBLISHED)


def test_download_from_mirror_prints_size_and_sha256(tmp_path, server, monkeypatch, capsys):
    root, base, _ = server
    payload = bytes(range(256)) * 4099
    (root / "TimeSformer_k400.pdparams").write_bytes(payload)
    monkeypatch.setenv(BASE_URL_ENV, base)
    out_dir = tmp_path / "weights"
    assert main(["weights", "download", "TimeSformer_k400", "-o", str(out_dir), "--no-progress"]) == 0
    assert (out_dir / "TimeSformer_k400.pdparams").read_bytes() == payload
    out = capsys.readouterr().out
    assert str(len(payload)) in out and hashlib.sha256(payload).hexdigest() in out


def test_download_resumes_a_partial_file(tmp_path, server, capsys):
    root, base, ranges = server
    payload = b"0123456789" * 50_000
    (root / "mirror.pyth").write_bytes(payload)
    out_dir = tmp_path / "weights"
    out_dir.mkdir()
    name = find_weights("TimeSformer_divST_8x32_224_K400").filename
    (out_dir / f"{name}.part").write_bytes(payload[:123_456])
    assert main(["weights", "download", "timesformer_divst_8x32_224_k400", "-o", str(out_dir),
                 "--url", f"{base}/mirror.pyth", "--no-progress"]) == 0
    assert ranges == [123_456]  # only the rest was asked for
    assert (out_dir / name).read_bytes() == payload
    assert hashlib.sha256(payload).hexdigest() in capsys.readouterr().out


def test_unknown_name_suggests_close_one():
    with pytest.raises(UserError, match="did you mean TimeSformer_k400"):
        find_weights("TimeSformer_k40")
    assert main(["weights", "download", "nope"]) == 1
