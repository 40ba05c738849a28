"""The HTTP API and the page: `create_app(service, options)` -> a FastAPI app.

Uploads stream into a temporary file (removed when the request ends, whatever happens),
are checked from the container's header, decoded in a thread pool, and their clips join
the batch queue; every error is a 4xx/5xx with `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import UserError, VideoReadError
from .batching import BatchQueue
from .gate import BodyTooLarge, Gate, GateState
from .metrics import ServerMetrics
from .model_service import ModelService, NotAvailable, VideoLimits, VideoRejected, upload_suffix

STATIC_DIR = Path(__file__).parent / "static"
TEMP_PREFIX = "timesformer-serve-"
CHUNK = 1 << 16
RAW_TYPES = ("application/octet-stream",)  # besides video/*

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "400": {"description": "empty upload, missing `file` field, or a bad query value"},
        "401": {"description": "missing or wrong bearer token"},
        "413": {"description": "the upload is over --max_upload_mb"},
        "415": {"description": "neither multipart/form-data nor a video content type"},
        "422": {"description": "not a video, truncated, or too many frames / pixels to decode safely"},
        "503": {"description": "the server is shutting down"},
    },
}


@dataclass
class ServeOptions:
    max_batch: int = 8
    max_wait_ms: float = 20.0
    max_upload_mb: float = 200.0
    workers: int = 2  # threads decoding uploads
    token: str | None = None
    limits: VideoLimits = field(default_factory=VideoLimits)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class Upload:
    path: Path
    name: str  # the client's file name, for messages and `video_id`


def create_app(service: ModelService, options: ServeOptions, gate_state: GateState | None = None) -> Gate:
    """The ASGI app: the gate (drain, auth, size limit, metrics) in front of the FastAPI routes."""
    decode_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="decode")
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
    state = gate_state or GateState()
    metrics = ServerMetrics(queue_depth=lambda: queue.depth, in_flight=lambda: state.in_flight)
    queue = BatchQueue(
        service.probabilities, model_thread, options.max_batch, options.max_wait_ms / 1000, metrics.record_batch
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        try:
            yield
        finally:
            await queue.stop()
            decode_pool.shutdown(wait=True, cancel_futures=True)
            model_thread.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(
        title="timesformer serve",
        description="TimeSformer video classification over HTTP. Upload a video as multipart field `file` "
        "or as a raw body with a video content type. Errors are `{\"error\": \"...\"}`.",
        lifespan=lifespan,
    )
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    in_model_thread = _runner(model_thread)
    in_decode_pool = _runner(decode_pool)

    @contextlib.contextmanager
    def counted_as_decoded(upload: Upload):
        """422 naming the upload (not the server's temporary file) for a video that cannot be used."""
        try:
            yield
        except VideoRejected as err:
            metrics.record_video(False)
            raise ApiError(422, f"{upload.name}: {err}") from None
        except VideoReadError as err:
            metrics.record_video(False)
            raise ApiError(422, f"{upload.name}: {err.reason}") from None
        metrics.record_video(True)

    async def decoded(upload: Upload, load=service.load_clip):
        def check_and_load():
            service.check_video(upload.path, options.limits)
            return load(upload.path)

        with counted_as_decoded(upload):
            return await in_decode_pool(check_and_load)

    async def timeline(upload: Upload, window: float, stride: float, top_k: int) -> list[dict]:
        """Windows are decoded by the predictor's own reader thread while the model thread scores them."""
        with counted_as_decoded(upload):
            info = await in_decode_pool(service.check_video, upload.path, options.limits)
            count = info.window_count(window, stride)
            if count > options.limits.max_windows:
                raise ApiError(400, f"window={window:g}, stride={stride:g}: {count} windows over {info.seconds:.1f} s of video, "
                               f"over the server's limit of {options.limits.max_windows}")  # fmt: skip
            return await in_model_thread(service.timeline, upload.path, window, stride, top_k, options.max_batch)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz", summary="200 once the model is loaded")
    async def healthz():
        return {
            "status": "ok", "model": service.description, "num_classes": service.num_classes,
            "clip_seconds": service.clip_seconds, "max_upload_mb": options.max_upload_mb,
        }  # fmt: skip

    @app.get("/labels", summary="the class names, by class id")
    async def labels():
        return {"num_classes": service.num_classes, "labels": service.labels}

    @app.get("/metrics", summary="Prometheus text", response_class=PlainTextResponse)
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/predict", summary="top-k classes of a video (or per window with ?window=S)", openapi_extra=UPLOAD_BODY)
    async def predict(
        request: Request,
        top_k: int = Query(5, ge=1, le=1000, description="classes to return"),
        window: float | None = Query(None, gt=0, le=1e6, description="seconds per window: a timeline along the video"),
        stride: float | None = Query(None, gt=0, le=1e6, description="seconds between window starts (default: window)"),
    ):
        started = time.perf_counter()
        if stride is not None and window is None:
            raise ApiError(400, "stride needs window (seconds per window)")
        async with received_video(request) as upload:
            if window is not None:
                rows = await timeline(upload, window, stride or window, top_k)
                return {"video_id": upload.name, "window": window, "stride": stride or window, "timeline": rows,
                        "seconds": time.perf_counter() - started}  # fmt: skip
            probs = await queue.submit(await decoded(upload))
        classes, scores, names = service.top_k(probs, top_k)
        return {"video_id": upload.name, "topk_class": classes, "topk_scores": scores, "topk_label": names,
                "seconds": time.perf_counter() - started}  # fmt: skip

    @app.post("/features", summary="the video's embedding", openapi_extra=UPLOAD_BODY)
    async def features(request: Request):
        started = time.perf_counter()
        service.require_torch("features")
        async with received_video(request) as upload:
            vector = await in_model_thread(service.features, await decoded(upload))
        return {"video_id": upload.name, "dimension": int(vector.shape[0]), "features": vector.tolist(),
                "seconds": time.perf_counter() - started}  # fmt: skip

    @app.post("/explain", summary="attention heat map: PNG, or the overlay MP4 with ?format=mp4", openapi_extra=UPLOAD_BODY)
    async def explain(request: Request, format: str = Query("png", pattern="^(png|mp4)$")):
        service.require_torch("attention maps")
        async with received_video(request) as upload:
            clip = await decoded(upload, service.load_explain_clip)
        if format == "mp4":
            return Response(await in_model_thread(service.explain_mp4, clip), media_type="video/mp4")
        return Response(await in_model_thread(service.explain_png, clip, upload.name), media_type="image/png")

    @contextlib.asynccontextmanager
    async def received_video(request: Request) -> AsyncIterator[Upload]:
        multipart = _is_multipart(request)  # 415 before anything is read or written
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                client_name = await _receive_body(request, multipart, out)
            if path.stat().st_size == 0:
                raise ApiError(400, f"{client_name}: empty upload (0 bytes)")
            # PyAV guesses some containers from the name: give the file the upload's extension.
            named = path.with_name(path.name + upload_suffix(client_name, request.headers.get("content-type")))
            path = path.rename(named)
            yield Upload(path, client_name)
        finally:
            path.unlink(missing_ok=True)

    return Gate(app, state, metrics, options.token, options.max_upload_bytes)


def _is_multipart(request: Request) -> bool:
    """True for a form upload, False for a raw video body; 415 for anything else."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return True
    if kind.startswith("video/") or kind in RAW_TYPES:
        return False
    raise ApiError(415, f"content type {kind or 'none'}: send multipart/form-data (field 'file') or a video/* body")


async def _receive_body(request: Request, multipart: bool, out) -> str:
    """Write the upload into `out`; the client's file name (or "upload")."""
    if not multipart:
        async for chunk in request.stream():
            out.write(chunk)
        return "upload"
    form = await request.form(max_files=1, max_fields=16)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "multipart field 'file' is missing (send the video as file=@video.mp4)")
        while chunk := await upload.read(CHUNK):
            out.write(chunk)
        return Path(upload.filename or "upload").name
    finally:
        await form.close()


def _runner(executor: ThreadPoolExecutor):
    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    return run


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return error(err.status, err.message)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, err: BodyTooLarge):
        return JSONResponse({"error": str(err)}, status_code=413, headers={"connection": "close"})

    @app.exception_handler(NotAvailable)
    async def not_available(request, err: NotAvailable):
        return error(501, str(err))

    @app.exception_handler(UserError)
    async def user_error(request, err: UserError):
        return error(400, str(err))

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        return error(err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_query(request, err: RequestValidationError):
        problems = []
        for e in err.errors():
            where = ".".join(str(part) for part in e.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {e.get('msg', 'invalid')} (got {e.get('input')!r})")
        return error(400, "; ".join(problems))
