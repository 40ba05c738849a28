"""`timesformer serve`: every route and error class, auth, the size limit, batching, temp files, SIGTERM.

Scores are checked against the model run by hand on the pipeline's test tensor (views
averaged, softmax), not against the server's own earlier output.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
pytest.importorskip("multipart", reason="the serve extra (python-multipart) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from brokenfiles import good_avi, good_mp4, random_bytes, text_file, truncated  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from timesformer.data.labels import kinetics400_label_file, read_labels  # noqa: E402
from timesformer.data.pipeline import preprocess  # noqa: E402
from timesformer.model.checkpoints import load_model, save_model  # noqa: E402
from timesformer.model.timesformer import build_model  # noqa: E402
from timesformer.serve import ModelService, ServeOptions, VideoLimits, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(img_size=32, patch_size=16, num_classes=400, embed_dim=32, depth=1, num_heads=2, num_frames=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny 400-class model (Kinetics-400 names) and videos of every kind."""
    d = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    save_model(build_model(**TINY), d / "tiny.safetensors")
    made = {
        "mp4": good_mp4(d / "clip.mp4", frames=24, size=(48, 40), seed=1),
        "avi": good_avi(d / "clip.avi", frames=24, size=(40, 48), seed=2),
        "long": good_mp4(d / "long.mp4", frames=250, size=(40, 32), fps=25, seed=3),  # 10 s
        "random": random_bytes(d / "noise.mp4", size=20_000),
        "text": text_file(d / "page.mp4"),
        "big_frames": good_mp4(d / "big.mp4", frames=4, size=(256, 192), seed=4),
    }
    made["truncated"] = truncated(good_mp4(d / "whole.mp4", frames=60, size=(48, 40), faststart=True), d / "cut.mp4", 0.4)
    made["weights"] = d / "tiny.safetensors"
    return made


@pytest.fixture(scope="module")
def service(files):
    return ModelService.load(weights=files["weights"])


def expected_probs(files, video: str) -> np.ndarray:
    """The model by hand: test tensor [V,3,T,H,W] -> view logits averaged -> softmax."""
    model = load_model(files["weights"])
    with torch.no_grad():
        logits = model(preprocess(files[video], num_seg=4, short_side_min=32, short_side_max=32, crop_size=32))
    return logits.mean(0).softmax(-1).numpy()


def upload(path: Path, name: str | None = None):
    return {"file": (name or path.name, path.read_bytes(), "video/mp4")}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Every temporary file the server makes lands here, so the test can see none is left."""
    folder = tmp_path / "server_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_predict_matches_the_model_run_by_hand(service, files, private_tmp):
    with TestClient(create_app(service, ServeOptions())) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["num_classes"] == 400
        names = client.get("/labels").json()["labels"]
        assert names == read_labels(kinetics400_label_file())
        for video in ("mp4", "avi"):
            got = client.post("/predict?top_k=3", files=upload(files[video]))
            assert got.status_code == 200, got.text
            body = got.json()
            probs = expected_probs(files, video)
            top = np.argsort(-probs)[:3]
            assert body["video_id"] == files[video].name
            assert body["topk_class"] == top.tolist()
            np.testing.assert_allclose(body["topk_scores"], probs[top], atol=1e-5)
            assert body["topk_label"] == [names[c] for c in top]
            assert body["seconds"] > 0
        raw = client.post("/predict", content=files["mp4"].read_bytes(), headers={"content-type": "video/mp4"})
        assert raw.status_code == 200 and len(raw.json()["topk_class"]) == 5
    assert list(private_tmp.iterdir()) == []


def test_features_explain_and_timeline(service, files, private_tmp):
    with TestClient(create_app(service, ServeOptions())) as client:
        feats = client.post("/features", files=upload(files["mp4"])).json()
        model = load_model(files["weights"])
        with torch.no_grad():
            clips = preprocess(files["mp4"], num_seg=4, short_side_min=32, short_side_max=32, crop_size=32)
            want = model.forward_features(clips).mean(0).numpy()
        assert feats["dimension"] == TINY["embed_dim"]
        np.testing.assert_allclose(feats["features"], want, atol=1e-5)

        png = client.post("/explain", files=upload(files["mp4"]))
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        mp4 = client.post("/explain?format=mp4", files=upload(files["mp4"]))
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(mp4.content)) as container:  # one overlay frame per sampled frame
            assert sum(1 for _ in container.decode(video=0)) == TINY["num_frames"]

        # 10 s at 25 fps, windows of 4 s every 2 s: starts 0, 2, 4, 6 (a 5th would end at 12 s).
        timeline = client.post("/predict?window=4&stride=2&top_k=2", files=upload(files["long"]))
        assert timeline.status_code == 200, timeline.text
        rows = timeline.json()["timeline"]
        assert [r["start_s"] for r in rows] == [0.0, 2.0, 4.0, 6.0]
        assert all(r["end_s"] - r["start_s"] == 4.0 and len(r["topk_class"]) == 2 for r in rows)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("random", 422, "not a video"),
        ("text", 422, "not a video"),
        ("text_named_txt", 422, "not a video"),
        ("truncated", 422, "truncated"),
        ("empty", 400, "empty upload"),
        ("no_field", 400, "field 'file' is missing"),
        ("content_type", 415, "content type text/plain"),
        ("pixels", 422, "pixels per frame"),
        ("frames", 422, "frames are over"),
        ("too_large", 413, "over the server's limit"),
        ("top_k", 400, "top_k"),
        ("stride_alone", 400, "stride needs window"),
        ("windows", 400, "250 windows"),
        ("format", 400, "format"),
        ("route", 404, "not found"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem_and_leave_no_temp_file(case, status, words, service, files, private_tmp):
    limits = VideoLimits(max_frames=100 if case == "frames" else 100_000, max_pixels=128 * 128, max_windows=200)
    options = ServeOptions(max_upload_mb=0.5, limits=limits)
    requests = {
        "random": lambda c: c.post("/predict", files=upload(files["random"])),
        "text": lambda c: c.post("/predict", files=upload(files["text"])),
        "text_named_txt": lambda c: c.post("/predict", files=upload(files["text"], "notes.txt")),
        "truncated": lambda c: c.post("/predict", files=upload(files["truncated"])),
        "empty": lambda c: c.post("/predict", content=b"", headers={"content-type": "video/mp4"}),
        "no_field": lambda c: c.post("/predict", files={"video": ("a.mp4", b"abc", "video/mp4")}),
        "content_type": lambda c: c.post("/predict", content=b"hello", headers={"content-type": "text/plain"}),
        "pixels": lambda c: c.post("/features", files=upload(files["big_frames"])),
        "frames": lambda c: c.post("/predict?window=4", files=upload(files["long"])),
        "too_large": lambda c: c.post("/predict", content=b"\0" * 600_000, headers={"content-type": "video/mp4"}),
        "top_k": lambda c: c.post("/predict?top_k=-3", files=upload(files["mp4"])),
        "stride_alone": lambda c: c.post("/predict?stride=2", files=upload(files["mp4"])),
        "windows": lambda c: c.post("/predict?window=0.01&stride=0.04", files=upload(files["long"])),
        "format": lambda c: c.post("/explain?format=gif", files=upload(files["mp4"])),
        "route": lambda c: c.get("/nowhere"),
    }
    with TestClient(create_app(service, options)) as client:
        response = requests[case](client)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert words.lower() in error.lower()
        assert str(private_tmp) not in error and "timesformer-serve-" not in error  # no server paths leak
        assert client.post("/predict", files=upload(files["mp4"])).status_code == 200  # still serving
        metrics = client.get("/metrics").text
    assert list(private_tmp.iterdir()) == []
    if status == 422:
        assert 'timesformer_videos_decoded_total{result="rejected"} 1' in metrics


def test_size_limit_answers_before_the_body_is_read(service):
    """413 on a declared Content-Length without pulling the body; a body without one is cut off at the limit."""
    app = create_app(service, ServeOptions(max_upload_mb=1))
    limit = 2**20

    def run(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
        pulled, sent = 0, []

        async def receive():
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": b"\0" * (1 << 16), "more_body": pulled < chunks}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"video/mp4"), *headers], "scheme": "http", "server": ("t", 80),
                 "client": ("c", 1), "http_version": "1.1", "asgi": {"version": "3.0"}}  # fmt: skip
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], pulled

    status, pulled = run([(b"content-length", str(50 * limit).encode())], chunks=800)
    assert (status, pulled) == (413, 0)
    status, pulled = run([], chunks=800)  # chunked: 64 KiB at a time, 50 MiB offered
    assert status == 413 and pulled == limit // (1 << 16) + 1


def test_token_guards_every_route_but_the_page_and_healthz(service, files, monkeypatch):
    with TestClient(create_app(service, ServeOptions(token="s3cret"))) as client:
        for path in ("/", "/healthz", "/static/app.js", "/static/style.css"):
            assert client.get(path).status_code == 200, path
        for method, path in (("GET", "/labels"), ("GET", "/metrics"), ("GET", "/docs"), ("POST", "/predict"),
                             ("POST", "/features"), ("POST", "/explain")):  # fmt: skip
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert "token" in response.json()["error"]
        good = client.post("/predict", files=upload(files["mp4"]), headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert client.get("/labels", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_docs_and_metrics(service, files):
    with TestClient(create_app(service, ServeOptions())) as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert {"/predict", "/features", "/explain", "/healthz", "/labels", "/metrics"} <= set(schema["paths"])
        client.post("/predict", files=upload(files["mp4"]))
        client.post("/predict", content=b"x", headers={"content-type": "text/plain"})
        text = client.get("/metrics").text
    assert 'timesformer_requests_total{method="POST",route="/predict",status="200"} 1' in text
    assert 'timesformer_requests_total{method="POST",route="/predict",status="415"} 1' in text
    assert 'timesformer_batch_size_count 1' in text
    assert 'timesformer_videos_decoded_total{result="ok"} 1' in text
    assert re.search(r'timesformer_request_duration_seconds_count\{route="/predict"\} 2', text)
    assert "timesformer_queue_depth 0" in text


class ThreadedServer:
    """The real uvicorn server on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


def test_concurrent_requests_are_batched_and_score_as_alone(service, files):
    videos = [files["mp4"], files["avi"]] * 3
    alone = {v: expected_probs(files, key) for key, v in (("mp4", files["mp4"]), ("avi", files["avi"]))}
    # A long wait: all six requests meet in the queue, two batches at most (max_batch 4).
    with ThreadedServer(create_app(service, ServeOptions(max_batch=4, max_wait_ms=1500))) as url:
        def ask(path: Path):
            with httpx.Client(timeout=60) as client:
                return client.post(f"{url}/predict?top_k=400", files=upload(path)).json()

        with ThreadPoolExecutor(len(videos)) as pool:
            answers = list(pool.map(ask, videos))
        metrics = httpx.get(f"{url}/metrics").text
    for path, answer in zip(videos, answers):
        probs = np.zeros(400)
        probs[answer["topk_class"]] = answer["topk_scores"]
        np.testing.assert_allclose(probs, alone[path], atol=1e-5)
    batches = int(re.search(r"timesformer_batch_size_count (\d+)", metrics).group(1))
    assert batches < len(videos)  # some clips shared a model call
    assert 'timesformer_batch_size_bucket{le="4"} ' + str(batches) in metrics


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(files, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "timesformer", "serve", "-w", str(files["weights"]), "--port", "0",
               "--max_wait_ms", "5000"]  # fmt: skip  (the request waits in the queue while the test signals)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        url = f"http://127.0.0.1:{match.group(1)}"
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(lambda: httpx.post(f"{url}/predict", files=upload(files["mp4"]), timeout=60))
            deadline = time.monotonic() + 20  # until the request waits in the batch queue
            while "timesformer_queue_depth 1" not in httpx.get(f"{url}/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 4  # the signal is handled between two steps of the event loop
            while (refused := httpx.get(f"{url}/labels", timeout=10)).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
            assert not in_flight.done()
            finished = in_flight.result()
        assert finished.status_code == 200 and len(finished.json()["topk_class"]) == 5
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert [p for p in tmp_path.iterdir() if p.name.startswith("timesformer-serve-")] == []


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--port", "70000"], "--port 70000"),
        (["--max_batch", "0"], "--max_batch 0"),
        (["--max_upload_mb", "-1"], "--max_upload_mb -1"),
        (["--max_wait_ms", "nan"], "--max_wait_ms nan"),
        (["--workers", "0"], "--workers 0"),
        (["--token", ""], "token"),
        (["--model_file", "x.onnx"], "either -w"),
        (["--precision", "bf16", "--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_serve_flags_are_checked_before_loading(argv, words, files, capsys):
    from timesformer.cli import main

    assert main(["serve", "-w", str(files["weights"]), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


@pytest.fixture(scope="module")
def linear_onnx(tmp_path_factory):
    """A linear classifier over the whole input tensor as an ONNX file (made with onnx.helper, not
    exported: seconds, not a dynamo trace), with the description `timesformer export` writes."""
    onnx = pytest.importorskip("onnx", reason="onnx (the export extra) is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime (the export extra) is not installed")
    from onnx import TensorProto, helper, numpy_helper

    from timesformer.inference import InferenceSpec

    spec = InferenceSpec(num_seg=4, target_size=32, short_size=32, num_classes=7)
    weight = np.random.default_rng(0).normal(0, 0.01, (3 * 12 * 32 * 32, 7)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["data"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["scores"])],
        "linear", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 12, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 7])], [numpy_helper.from_array(weight, "W")],
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "TimeSformer.onnx")
    (folder / "TimeSformer.json").write_text(spec.to_json())
    return folder / "TimeSformer.onnx", weight


def test_onnx_model_predicts_and_answers_501_for_what_needs_pytorch(linear_onnx, files, private_tmp):
    from timesformer.inference import stack_views

    model_file, weight = linear_onnx
    clip = stack_views(preprocess(files["mp4"], num_seg=4, short_side_min=32, short_side_max=32, crop_size=32))
    logits = clip.numpy().reshape(-1).astype(np.float64) @ weight
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    with TestClient(create_app(ModelService.load(model_file=model_file), ServeOptions())) as client:
        answer = client.post("/predict?top_k=3", files=upload(files["mp4"])).json()
        assert answer["topk_class"] == np.argsort(-probs)[:3].tolist()
        np.testing.assert_allclose(answer["topk_scores"], np.sort(probs)[::-1][:3], atol=1e-4)
        for route in ("/features", "/explain"):
            response = client.post(route, files=upload(files["mp4"]))
            assert response.status_code == 501 and "PyTorch" in response.json()["error"]
    assert list(private_tmp.iterdir()) == []


def test_a_taken_port_is_one_line_before_the_model_loads(files, capsys):
    import socket

    from timesformer.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "-w", str(files["weights"]), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"timesformer serve: error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"]
