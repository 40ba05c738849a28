"""Hugging Face Hub ids as weights, against a local server that speaks the Hub's HTTP API.

The server (127.0.0.1, a free port) serves one tiny transformers TimeSformer the way the Hub
does: `GET /api/models/{repo}/revision/{rev}` (the commit sha), `GET /api/models/{repo}/tree/{sha}`
(files, sizes, blob ids), and `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with the `X-Repo-Commit`
and `ETag` headers huggingface_hub checks. Each command runs in a fresh process so that
`HF_ENDPOINT`, `HF_HOME` and `HF_HUB_OFFLINE` are read as a user's shell sets them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed (pip install 'timesformer[hub]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: it writes the tiny Hub model")

REPO = "tiny-org/timesformer-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAMES = ["juggling", "archery", "tai chi"]


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    config = transformers.TimesformerConfig(
        image_size=32, patch_size=8, num_channels=3, num_frames=4, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=3,
        id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)},
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hubrepo")
    transformers.TimesformerForVideoClassification(config).save_pretrained(folder)
    (folder / "README.md").write_text("not fetched: only config and weights are")
    return folder


class HubHandler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, value) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _not_found(self, head: bool = False) -> None:
        self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                "X-Error-Message": "Repository not found"}, head)  # fmt: skip

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        type(self).requests.append(f"{self.command} {path}")
        model_api = f"/api/models/{REPO}"
        if path in (model_api, f"{model_api}/revision/main", f"{model_api}/revision/{COMMIT}"):
            return self._json({"id": REPO, "modelId": REPO, "sha": COMMIT, "private": False,
                               "siblings": [{"rfilename": name} for name in self.files]})  # fmt: skip
        if path.startswith(f"{model_api}/tree/"):
            return self._json([{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                               for name, data in self.files.items()])  # fmt: skip
        for prefix in (f"/{REPO}/resolve/main/", f"/{REPO}/resolve/{COMMIT}/"):
            if path.startswith(prefix) and path[len(prefix):] in self.files:
                data = self.files[path[len(prefix):]]
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": etag, "Accept-Ranges": "bytes"}, head)
        return self._not_found(head)

    def do_GET(self):
        self._route(head=False)

    def do_HEAD(self):
        self._route(head=True)


@pytest.fixture(scope="module")
def hub_server(hub_files: Path):
    HubHandler.files = {p.name: p.read_bytes() for p in sorted(hub_files.iterdir())}
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def hub_env(cache: Path, endpoint: str, offline: bool = False) -> dict[str, str]:
    return {"HF_ENDPOINT": endpoint, "HF_HOME": str(cache), "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}  # fmt: skip


# One process per network state (online, then offline), each doing what a user would: the CLI
# (`weights download`), `timesformer.load_model(id)` (logits of a fixed clip saved for the
# test), the class names, and an id that cannot be had.
SCRIPT = """
import contextlib, io, json, sys, torch, timesformer
from timesformer.cli import main
from timesformer.model.hub import checkpoint_class_names
repo, missing, out, folder = sys.argv[1:5]
results = {}
if folder != "-":
    results["download_rc"] = main(["weights", "download", repo, "-o", folder])
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["missing_rc"] = main(["weights", "download", missing])
results["missing_err"] = err.getvalue()
model = timesformer.load_model(repo)
torch.manual_seed(0)
torch.save(model(torch.randn(2, 3, 4, 32, 32)), out)
results["names"] = checkpoint_class_names(repo)
print(json.dumps(results))
"""


def run_script(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_ids_online_then_offline_from_the_cache(hub_server: str, hub_files: Path, tmp_path: Path):
    import torch

    import timesformer

    torch.manual_seed(0)
    expected = timesformer.load_model(hub_files)(torch.randn(2, 3, 4, 32, 32))  # the same files, read locally

    HubHandler.requests.clear()
    cache, out = tmp_path / "hf", tmp_path / "logits.pt"
    online = run_script(hub_env(cache, hub_server), REPO, "tiny-org/no-such-model", out, tmp_path / "w")
    assert any(r.startswith("GET /api/models/") for r in HubHandler.requests)
    assert not any("README.md" in r for r in HubHandler.requests)  # only config and weights are fetched
    assert torch.equal(torch.load(out), expected)
    assert online["names"] == NAMES  # config.json's id2label
    assert list(cache.rglob("model.safetensors")), "load_model went through HF_HOME's cache"
    # weights download -o DIR: the repository's files in DIR.
    assert online["download_rc"] == 0
    assert (tmp_path / "w" / "model.safetensors").read_bytes() == (hub_files / "model.safetensors").read_bytes()
    # An unknown repository: one line naming it.
    assert online["missing_rc"] == 1
    err = online["missing_err"].strip().splitlines()
    assert len(err) == 1 and "tiny-org/no-such-model" in err[0] and "no such repository" in err[0]

    # Offline (and the endpoint unreachable): the cache answers, the server is never asked.
    HubHandler.requests.clear()
    out.unlink()
    offline = run_script(hub_env(cache, "http://127.0.0.1:9", offline=True), REPO, "tiny-org/never-fetched", out, "-")
    assert HubHandler.requests == []
    assert torch.equal(torch.load(out), expected)
    assert offline["names"] == NAMES
    err = offline["missing_err"].strip().splitlines()
    assert offline["missing_rc"] == 1
    assert len(err) == 1 and "tiny-org/never-fetched" in err[0] and "not in the Hugging Face cache" in err[0]


def test_a_path_that_exists_is_never_a_hub_id(tmp_path: Path, monkeypatch):
    from timesformer.model.hub import parse_hub_id

    assert parse_hub_id("facebook/timesformer-base-finetuned-k400") == ("facebook/timesformer-base-finetuned-k400", None)
    assert parse_hub_id("facebook/timesformer-base-finetuned-k400@v1.0") == ("facebook/timesformer-base-finetuned-k400", "v1.0")
    assert parse_hub_id("output/TimeSformer_best.safetensors") is None  # a missing file, not an id
    assert parse_hub_id("/abs/org/name") is None and parse_hub_id("a/b/c") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_hub_id("org/name") is None


def test_class_names_come_from_id2label(hub_files: Path, tmp_path: Path):
    from timesformer.errors import CheckpointError
    from timesformer.model.hub import checkpoint_class_names

    assert checkpoint_class_names(hub_files) == NAMES
    from timesformer import Predictor

    assert Predictor.from_weights(hub_files).labels == NAMES  # predict and the server name classes so
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"id2label": {"0": "a", "2": "c"}}))
    with pytest.raises(CheckpointError, match="without gaps"):
        checkpoint_class_names(broken)
    assert checkpoint_class_names(tmp_path / "nothing.safetensors") is None
