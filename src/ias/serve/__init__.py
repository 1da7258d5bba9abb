"""`ias serve`: an OpenAI-compatible server over any ias policy (extra `serve`: Starlette,
pydantic and uvicorn, the stack vLLM's server uses).

Routes: `POST /v1/completions` (sampling), `GET /v1/models` (with `max_model_len`),
`GET /health`, `GET /metrics` (Prometheus text). A request's samples depend only on its
`seed` (choice j is the policy's sample j of that seed), so batching never changes them and
the `openai` backend talking to this server returns exactly what the policy would.
Concurrent requests are interleaved fairly and batched by one scheduler (`scheduler.py`);
limits, auth and timeouts are the operator's (`ServeLimits`).
"""

from __future__ import annotations

import sys

from ias.errors import MissingExtraError


def _stack():
    try:
        from ias.serve import server
    except ImportError as err:
        if (err.name or "").split(".")[0] in ("starlette", "uvicorn", "pydantic", "pydantic_core"):
            raise MissingExtraError("ias serve", "serve") from None
        raise
    return server


def make_server(policy, model_name: str, host: str = "127.0.0.1", port: int = 8000, fail_first: int = 0,
                limits=None, grace_s: float = 30.0):
    """A bound server (port 0: a free one; see `.url`); call `serve_forever()` or run it in a thread."""
    return _stack().Server(policy, model_name, host, port, limits=limits, fail_first=fail_first, grace_s=grace_s)


def serve(model: str, backend: str = "hf", backend_options: dict | None = None, host: str = "127.0.0.1",
          port: int = 8000, served_model_name: str | None = None, fail_first: int = 0, limits=None,
          grace_s: float = 30.0) -> None:
    """Load the policy, print the URL (one line, flushed), serve until SIGTERM/SIGINT (draining first)."""
    _stack()  # a missing extra is said before the model loads
    from ias.policy.base import load_policy

    policy = load_policy(model, backend=backend, **(backend_options or {}))
    server = make_server(policy, served_model_name or model, host, port, fail_first, limits, grace_s)
    print(f"serving {server.model_name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("ias serve: stopped", file=sys.stderr)
