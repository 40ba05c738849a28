"""Run the app under uvicorn with a graceful SIGTERM / Ctrl-C.

The first signal starts draining: new requests get 503 while those in flight finish; once
none are left the server stops. A second signal stops it at once.
"""

from __future__ import annotations

import socket
import sys

import uvicorn

from ..errors import UserError
from .gate import GateState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: GateState):
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig, frame) -> None:
        if self.state.draining:
            self.should_exit = self.force_exit = True
            return
        self.state.draining = True
        print("[serve] shutting down: finishing the requests in flight, refusing new ones (503)", file=sys.stderr, flush=True)

    async def on_tick(self, counter: int) -> bool:
        if self.state.draining and self.state.in_flight == 0:
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"[serve] ready: http://{shown}:{port}/  (API docs: http://{shown}:{port}/docs)", flush=True)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the model loads: a taken port or an unknown host is
    a one-line error at once, not after a minute of loading."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise UserError(f"--host {host}: {err.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop (TIME_WAIT)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    return sock


def serve(app, state: GateState, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
    DrainingServer(config, state).run(sockets=[sock])
