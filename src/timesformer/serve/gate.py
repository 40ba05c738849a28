"""The ASGI middleware every request passes first: draining, auth, the body size limit, metrics.

Written as plain ASGI (not a Starlette `BaseHTTPMiddleware`) so that the size limit sees the
body as it streams in: a declared `Content-Length` over the limit is refused before any of
it is read, and a body without one is cut off at the limit (`BodyTooLarge`, raised from
`receive`, which the app turns into 413).
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass

from .metrics import ServerMetrics

PUBLIC_PATHS = ("/", "/healthz", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
ROUTES = ("/", "/healthz", "/labels", "/metrics", "/predict", "/features", "/explain", "/docs", "/openapi.json")


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"the upload is over the server's limit of {limit / 2**20:.3g} MB")


@dataclass
class GateState:
    """Shared with the server: it sets `draining` on SIGTERM and waits for `in_flight == 0`."""

    draining: bool = False
    in_flight: int = 0


async def send_error(send, status: int, message: str, headers: tuple = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def route_label(path: str) -> str:
    """A bounded set of metric labels: known routes, static files, and everything else."""
    if path in ROUTES:
        return path
    return "/static" if path.startswith(PUBLIC_PREFIXES) else "other"


class Gate:
    def __init__(self, app, state: GateState, metrics: ServerMetrics, token: str | None, max_body: int):
        self.app = app
        self.state = state
        self.metrics = metrics
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers
        self.state.in_flight += 1

        async def tracked_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._admit(scope, receive, tracked_send)
        finally:
            self.state.in_flight -= 1
            self.metrics.record_request(scope["method"], route_label(scope["path"]), status, time.perf_counter() - started)

    async def _admit(self, scope, receive, send):
        path = scope["path"]
        if self.state.draining:
            return await send_error(send, 503, "the server is shutting down", ((b"connection", b"close"),))
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.token and not public and not self._authorized(scope):
            return await send_error(
                send, 401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN'",
                ((b"www-authenticate", b"Bearer"),),
            )  # fmt: skip
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await send_error(send, 400, f"Content-Length {declared!r} is not a number of bytes")
            if int(declared) > self.max_body:
                return await send_error(send, 413, str(BodyTooLarge(self.max_body)), ((b"connection", b"close"),))
        await self.app(scope, self._limited(receive), send)

    def _authorized(self, scope) -> bool:
        scheme, _, given = (_header(scope, b"authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def _limited(self, receive):
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return limited_receive


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
