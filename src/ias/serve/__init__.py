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
                limits=None, grace_s: float = 30.0, strategy: str | None = None, prm=None, task: str = "arith",
                settings: dict | None = None, tuning=None, seed: int = 0, task_options: dict | None = None):
    """A bound server (port 0: a free one; see `.url`); call `serve_forever()` or run it in a thread.

    With a `strategy` (and a loaded, possibly calibrated `prm`), completions are answered by
    that method of `ias.methods` with `settings` (and ias-adaptive's `tuning` file); `task`
    formats the prompts and extracts the answers; `seed` with each request's seed seeds its samples."""
    stack = _stack()
    if strategy is None:
        return stack.Server(policy, model_name, host, port, limits=limits, fail_first=fail_first, grace_s=grace_s)
    from ias.api import sampling_params
    from ias.methods.sources import LiveSource
    from ias.methods.tuning import tuned_settings
    from ias.serve.reasoning import Reasoner
    from ias.tasks.base import get_task

    the_task = get_task(task, **(task_options or {}))
    reasoner = Reasoner(the_task, strategy, dict(settings or {}), tuned_settings(tuning) if tuning else {})
    source = LiveSource(the_task, policy, prm, sampling_params(policy), seed, grade=False)
    return stack.Server(policy, model_name, host, port, limits=limits, fail_first=fail_first, grace_s=grace_s,
                        reasoner=reasoner, source=source)


def serve(model: str, backend: str = "hf", backend_options: dict | None = None, host: str = "127.0.0.1",
          port: int = 8000, served_model_name: str | None = None, fail_first: int = 0, limits=None,
          grace_s: float = 30.0, strategy: str | None = None, prm: str | None = None, calibrator=None,
          prm_format: str | None = None, prm_options: dict | None = None, task: str = "arith",
          settings: dict | None = None, tuning=None, task_options: dict | None = None) -> None:
    """Load the policy (and with a `strategy` the PRM and its calibrator), print the URL (one
    line, flushed), serve until SIGTERM/SIGINT (draining first)."""
    _stack()  # a missing extra is said before the model loads
    from ias.errors import UserError
    from ias.policy.base import load_policy

    if strategy is None and (prm or calibrator or settings or tuning):
        raise UserError("--prm, --calibrator, --tuning and strategy settings need --strategy")
    loaded_prm = None
    if prm is not None:
        from ias.calibration.calibrate import calibrated_prm
        from ias.prm.base import load_prm

        loaded_prm = load_prm(prm, prm_format=prm_format, **(prm_options or {}))
        if calibrator is not None:
            loaded_prm = calibrated_prm(loaded_prm, calibrator)
    elif calibrator is not None:
        raise UserError("--calibrator needs --prm")
    policy = load_policy(model, backend=backend, **(backend_options or {}))
    server = make_server(policy, served_model_name or model, host, port, fail_first, limits, grace_s,
                         strategy=strategy, prm=loaded_prm, task=task, settings=settings, tuning=tuning,
                         task_options=task_options)
    answered_by = f" answering with {strategy}" if strategy else ""
    print(f"serving {server.model_name}{answered_by} at {server.url}", flush=True)  # the URL last: scripts read it
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("ias serve: stopped", file=sys.stderr)
