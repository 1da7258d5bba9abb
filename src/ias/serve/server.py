"""Running the app under uvicorn: a bound socket (port 0 picks a free one), graceful shutdown.

On SIGTERM (or SIGINT) the server drains: requests in flight finish, new ones get 503 with
Retry-After, and once none is left (or `grace_s` has passed) uvicorn stops. A second
signal stops it at once.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ias.errors import UserError
from ias.methods.sources import LiveSource
from ias.policy.base import Policy
from ias.serve.app import ServeState, create_app
from ias.serve.limits import ServeLimits
from ias.serve.reasoning import Reasoner, ReasoningScheduler
from ias.serve.scheduler import Scheduler


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServeState, grace_s: float):
        super().__init__(config)
        self.state, self.grace_s = state, grace_s

    def handle_exit(self, sig, frame) -> None:  # uvicorn's signal hook
        if self.state.draining:
            return super().handle_exit(sig, frame)
        self.state.draining = True
        threading.Thread(target=self._drain, name="ias-serve-drain", daemon=True).start()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace_s
        while (self.state.in_flight > 0 or self.state.depth > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.should_exit = True


class Server:
    """`ias serve` bound to its address: `serve_forever()` here, `shutdown()` from elsewhere."""

    def __init__(
        self,
        policy: Policy,
        model_name: str,
        host: str = "127.0.0.1",
        port: int = 8000,
        limits: ServeLimits | None = None,
        fail_first: int = 0,
        grace_s: float = 30.0,
        reasoner: Reasoner | None = None,
        source: LiveSource | None = None,
    ):
        limits = limits or ServeLimits()
        if reasoner and source is None:
            raise ValueError("a server with a reasoner needs the LiveSource its questions are answered from")
        scheduler = Scheduler(policy, max_pending=limits.max_queue)
        reasoning = ReasoningScheduler(source, limits.max_queue) if reasoner and source is not None else None
        self.state = ServeState(
            policy, model_name, limits, scheduler, fail_first=fail_first, reasoner=reasoner, reasoning=reasoning
        )
        try:
            self.socket = socket.create_server((host, port), backlog=2048, reuse_port=False)
        except OSError as err:
            self.server_close()
            raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port") from None
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=int(grace_s) + 1,
        )
        self._uvicorn = _Uvicorn(config, self.state, grace_s)
        self._stopped = threading.Event()

    @property
    def model_name(self) -> str:
        return self.state.model_name

    @property
    def completions(self) -> int:
        return self.state.completions

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait until it has."""
        self._uvicorn.should_exit = True
        self._stopped.wait(timeout=60)

    def server_close(self) -> None:
        if hasattr(self, "socket"):
            self.socket.close()
        self.state.scheduler.close()
        if self.state.reasoning is not None:
            self.state.reasoning.close()
