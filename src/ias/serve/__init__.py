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
from dataclasses import dataclass
from typing import Any

from ias.errors import MissingExtraError
from ias.specs import AskRun, PolicySpec
from ias.tasks.base import Task


def _stack():
    try:
        from ias.serve import server
    except ImportError as err:
        if (err.name or "").split(".")[0] in ("starlette", "uvicorn", "pydantic", "pydantic_core"):
            raise MissingExtraError("ias serve", "serve") from None
        raise
    return server


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and what it allows (the policy and the strategy aside)."""

    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    fail_first: int = 0
    grace_s: float = 30.0
    limits: Any = None  # ServeLimits (needs the extra): the defaults when None


def make_server(
    policy,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    fail_first: int = 0,
    limits=None,
    grace_s: float = 30.0,
    strategy: str | None = None,
    prm=None,
    task: str | Task = "arith",
    settings: dict | None = None,
    tuning=None,
):
    """A bound server (port 0: a free one; see `.url`); call `serve_forever()` or run it in a thread.

    With a `strategy` (and a loaded, possibly calibrated `prm`), completions are answered by
    that method of `ias.methods` with `settings` (and ias-adaptive's `tuning` file); `task`
    (a name or a loaded task) formats the prompts and extracts the answers; each request's
    seed seeds its samples."""
    stack = _stack()
    if strategy is None:
        return stack.Server(policy, model_name, host, port, limits=limits, fail_first=fail_first, grace_s=grace_s)
    from ias.loaders import sampling_params
    from ias.methods.sources import LiveSource
    from ias.methods.tuning import tuned_variants
    from ias.serve.reasoning import Reasoner
    from ias.tasks.base import get_task

    the_task = get_task(task) if isinstance(task, str) else task
    reasoner = Reasoner(the_task, strategy, dict(settings or {}), tuned_variants(tuning) if tuning else None)
    source = LiveSource(the_task, policy, prm, sampling_params(policy), 0, grade=False)
    return stack.Server(
        policy,
        model_name,
        host,
        port,
        limits=limits,
        fail_first=fail_first,
        grace_s=grace_s,
        reasoner=reasoner,
        source=source,
    )


def serve(policy: PolicySpec, options: ServeOptions, reasoning: AskRun | None = None) -> None:
    """Load the policy (and with a `reasoning` spec its PRM, calibrator and task), print the URL
    (one line, flushed), serve until SIGTERM/SIGINT (draining first)."""
    _stack()  # a missing extra is said before the model loads
    from ias.loaders import load_optional_prm, load_policy_spec
    from ias.tasks.base import get_task

    loaded_prm, strategy, task, settings, tuning = None, None, None, None, None
    if reasoning is not None:
        loaded_prm = load_optional_prm(reasoning.prm)
        strategy, settings, tuning = reasoning.method.strategy, reasoning.method.settings, reasoning.method.tuning
        task = get_task(reasoning.task.name, **reasoning.task.options)
    loaded = load_policy_spec(policy)
    server = make_server(
        loaded,
        options.served_model_name or policy.model,
        options.host,
        options.port,
        options.fail_first,
        options.limits,
        options.grace_s,
        strategy=strategy,
        prm=loaded_prm,
        task=task or "arith",
        settings=settings,
        tuning=tuning,
    )
    answered_by = f" answering with {strategy}" if strategy else ""
    print(f"serving {server.model_name}{answered_by} at {server.url}", flush=True)  # the URL last: scripts read it
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("ias serve: stopped", file=sys.stderr)
