"""Run the app under uvicorn with a graceful SIGTERM / Ctrl-C.

The first signal starts draining: new requests get 503 while those in flight finish; once
none are left the server stops. A second signal stops it at once.
"""

from __future__ import annotations

import sys

import uvicorn

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


def serve(app, state: GateState, host: str, port: int) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
    DrainingServer(config, state).run()
