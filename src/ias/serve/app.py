"""The ASGI app of `ias serve` (Starlette): routes, limits, auth, errors, access logs.

Every answer that is not a success is an OpenAI error object with the field at fault; a
request never sees a traceback. Bodies are read with a size cap (refused by their
Content-Length before anything is read) and a read timeout (a client announcing more than
it sends is answered 408, not held forever). A sampling request waits for the scheduler at
most `request_timeout_s`, and is dropped when its client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ias.errors import UserError
from ias.policy.base import Policy
from ias.serve.limits import ServeLimits
from ias.serve.metrics import Metrics
from ias.serve.reasoning import (
    Reasoner,
    ReasoningJob,
    ReasoningScheduler,
    Ticket,
    final_event,
    response as reasoning_response,
    wave_event,
)
from ias.serve.requests import BadRequest, SamplingJob, chat_job, completion_job
from ias.serve.responses import new_id, sse, stream_chunk, usage, usage_chunk, whole_response
from ias.serve.scheduler import Job, QueueFull, Scheduler
from ias.types import Sample


@dataclass
class ServeState:
    """What the routes share: the policy behind its scheduler, limits, counters."""

    policy: Policy
    model_name: str
    limits: ServeLimits
    scheduler: Scheduler
    metrics: Metrics = field(default_factory=Metrics)
    fail_first: int = 0  # testing aid: answer the first K completion requests with 503
    completions: int = 0  # completion requests received, failed ones included
    in_flight: int = 0
    draining: bool = False  # after SIGTERM: in-flight requests finish, new ones get 503
    reasoner: Reasoner | None = None  # with a strategy: completions are answered by it
    reasoning: ReasoningScheduler | None = None

    @property
    def depth(self) -> int:
        """Requests submitted to a scheduler and not yet answered."""
        return self.scheduler.depth + (self.reasoning.depth if self.reasoning else 0)

    def count_answer(self, answer) -> None:
        """An answered question's samples and tokens, for /metrics."""
        self.metrics.samples += answer.n_samples
        self.metrics.generated_tokens += answer.generated_tokens
        self.metrics.prompt_tokens += answer.prompt_tokens

    def count(self, results: list[list[Sample]]) -> None:
        """An answered request's samples and tokens, for /metrics."""
        spent = usage(results)
        self.metrics.samples += sum(len(group) for group in results)
        self.metrics.generated_tokens += spent["completion_tokens"]
        self.metrics.prompt_tokens += spent["prompt_tokens"]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def create_app(state: ServeState) -> Starlette:
    async def health(request: Request) -> Response:
        if state.draining:
            raise BadRequest("shutting down", status=503, headers={"Retry-After": "5"})
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(
            state.metrics.render(state.depth, state.in_flight), media_type="text/plain; version=0.0.4"
        )

    async def models(request: Request) -> Response:
        entry: dict[str, Any] = {"id": state.model_name, "object": "model", "created": 0, "owned_by": "ias"}
        length = getattr(state.policy, "max_model_len", None)
        if isinstance(length, int):
            entry["max_model_len"] = length
        return JSONResponse({"object": "list", "data": [entry]})

    async def completions(request: Request) -> Response:
        body = await read_json(request, state.limits)
        state.completions += 1
        if state.fail_first > 0:
            state.fail_first -= 1
            raise BadRequest("injected failure (--fail-first)", status=503, headers={"Retry-After": "1"})
        if state.reasoner is not None:
            return await reason(request, state.reasoner.job(body, False, state.model_name, state.limits), False, state)
        return await answer(
            request, completion_job(body, state.model_name, state.policy.defaults, state.limits), chat=False
        )

    async def chat_completions(request: Request) -> Response:
        body = await read_json(request, state.limits)
        if state.reasoner is not None:
            return await reason(request, state.reasoner.job(body, True, state.model_name, state.limits), True, state)
        return await answer(request, chat_job(body, state.policy, state.model_name, state.limits), chat=True)

    async def answer(request: Request, job: SamplingJob, chat: bool) -> Response:
        if job.stream:
            return stream_answer(request, job, chat, state)
        results = await wait_for_job(request, submit(state, job), state)
        state.count(results)
        return JSONResponse(whole_response(chat, state.model_name, results, job.params))

    routes = [
        Route("/health", handled(health, state, open_route=True)),
        Route("/metrics", handled(metrics, state)),
        Route("/v1/models", handled(models, state)),
        Route("/v1/completions", handled(completions, state), methods=["POST"]),
        Route("/v1/chat/completions", handled(chat_completions, state), methods=["POST"]),
    ]

    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})


async def _not_found(request: Request, exc: Exception) -> Response:
    """An unknown route or method as an OpenAI error object naming the routes there are."""
    status = getattr(exc, "status_code", 404)
    return error_response(
        BadRequest(
            f"no route {request.method} {request.url.path} "
            "(ias serve has /v1/completions, /v1/chat/completions, /v1/models, "
            "/health, /metrics)",
            status=status,
        )
    )


def handled(route, state: ServeState, open_route: bool = False):
    """A route with the server's rules around it: auth, draining, errors as OpenAI objects,
    the access log and the metrics."""

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        state.in_flight += 1
        try:
            if not open_route:
                check_key(request, state.limits.api_key)
            if state.draining and not open_route:
                raise BadRequest(
                    "the server is shutting down; retry on another replica", status=503, headers={"Retry-After": "5"}
                )
            response = await route(request)
        except BadRequest as err:
            response = error_response(err)
        except ClientGone:
            response = Response(status_code=499)  # nobody reads it; logged as nginx does
        except UserError as err:  # e.g. a prompt longer than the model's context
            response = error_response(_failure(err))
        except Exception as err:  # noqa: BLE001  (the server stays up; the client sees why, the log how)
            traceback.print_exc()
            response = error_response(_failure(err))
        finally:
            state.in_flight -= 1
        elapsed = time.monotonic() - started
        state.metrics.observe(request.url.path, response.status_code, elapsed)
        if state.limits.access_log:
            access_log(request, response.status_code, elapsed)
        return response

    return endpoint


def check_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
        raise BadRequest(
            "a valid API key is required: send `Authorization: Bearer KEY`",
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


def error_response(err: BadRequest) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def access_log(request: Request, status: int, seconds: float) -> None:
    """One JSON line per request on stderr, for log pipelines."""
    client = request.client.host if request.client else None
    print(
        json.dumps(
            {
                "ts": round(time.time(), 3),
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "latency_ms": round(seconds * 1000, 1),
                "client": client,
            }
        ),
        file=sys.stderr,
        flush=True,
    )


async def read_json(request: Request, limits: ServeLimits) -> Any:
    """The JSON body, read within the size cap and the read timeout."""
    length = request.headers.get("content-length")
    too_large = BadRequest(
        f"the body is over {limits.max_request_bytes} bytes (--max-request-bytes)",
        status=413,
        headers={"Connection": "close"},
    )
    if length is not None and (not length.isdigit() or int(length) > limits.max_request_bytes):
        raise too_large
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_request_bytes:  # a chunked body without a Content-Length
                raise too_large
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), limits.read_timeout_s)
    except asyncio.TimeoutError:
        raise BadRequest(
            f"the body did not arrive within {limits.read_timeout_s:g} s", status=408, headers={"Connection": "close"}
        ) from None
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise BadRequest("the body is not valid JSON (or nested too deeply)") from None


async def wait_for_job(request: Request, job: Job | Ticket, state: ServeState) -> Any:
    """The job's result; the job is dropped when its client leaves or its time runs out."""
    result = asyncio.ensure_future(asyncio.wrap_future(job.future))
    gone = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait(
        {result, gone}, timeout=state.limits.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    gone.cancel()
    if result in done:
        return result.result()
    job.cancel()
    result.cancel()
    state.metrics.cancelled += 1
    if gone in done:
        raise ClientGone
    raise BadRequest(f"no answer within {state.limits.request_timeout_s:g} s (--request-timeout)", status=504)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def submit(state: ServeState, job: SamplingJob, on_unit=None) -> Job:
    try:
        return state.scheduler.submit(job.prompts, job.n, job.params, job.seed, on_unit)
    except QueueFull as err:
        raise BadRequest(f"the server is busy: {err}; retry later", status=429, headers={"Retry-After": "1"}) from None


def stream_answer(request: Request, job: SamplingJob, chat: bool, state: ServeState) -> Response:
    """Server-sent events: each prompt's choices as soon as they are sampled, then `[DONE]`.
    A client that leaves mid-stream (or a stream past the request timeout) drops the rest of the work."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    queued = submit(state, job, on_unit=lambda i, samples: loop.call_soon_threadsafe(wake.set))
    queued.future.add_done_callback(lambda _: loop.call_soon_threadsafe(wake.set))
    ident = new_id(chat)

    async def events() -> AsyncIterator[str]:
        deadline = loop.time() + state.limits.request_timeout_s
        sent: set[int] = set()
        try:
            while len(sent) < len(job.prompts):
                wake.clear()
                for i, samples in enumerate(queued.results):
                    if samples is not None and i not in sent:
                        sent.add(i)
                        yield stream_chunk(chat, state.model_name, ident, i * job.n, samples, job.params)
                if len(sent) == len(job.prompts):
                    break
                error = queued.future.exception() if queued.future.done() and not queued.future.cancelled() else None
                if error is not None:
                    yield sse(_failure(error).body())
                    return
                late = await _woken_or_late(wake, deadline, state)
                if late:
                    yield late
                    return
            results = queued.all_results()
            state.count(results)
            if job.include_usage:
                yield usage_chunk(chat, state.model_name, ident, results)
            yield sse("[DONE]")
        finally:
            if len(sent) < len(job.prompts):  # the client left, the time ran out, or sampling failed
                queued.cancel()
                state.metrics.cancelled += 1

    return StreamingResponse(events(), media_type="text/event-stream")


async def reason(request: Request, job: ReasoningJob, chat: bool, state: ServeState) -> Response:
    """A question answered by the server's method: whole, or streamed as its waves finish."""
    if job.stream:
        return stream_reasoning(request, job, chat, state)
    ticket = submit_question(state, job)
    answer = await wait_for_job(request, ticket, state)
    state.count_answer(answer)
    return JSONResponse(
        reasoning_response(chat, state.model_name, new_id(chat), int(time.time()), answer, job.strategy)
    )


def submit_question(state: ServeState, job: ReasoningJob, on_wave=None) -> Ticket:
    if state.reasoning is None:  # a server with a reasoner always has its scheduler (Server builds both)
        raise RuntimeError("this server answers no reasoning requests")
    try:
        return state.reasoning.submit(job, on_wave)
    except QueueFull as err:
        raise BadRequest(f"the server is busy: {err}; retry later", status=429, headers={"Retry-After": "1"}) from None


def stream_reasoning(request: Request, job: ReasoningJob, chat: bool, state: ServeState) -> Response:
    """Server-sent events: one after each wave (its decision and spend so far), then the
    answer with its `ias` block, the usage if asked, `[DONE]`. A client that leaves drops
    the question's remaining work."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    ticket = submit_question(state, job, on_wave=lambda _: loop.call_soon_threadsafe(wake.set))
    ticket.future.add_done_callback(lambda _: loop.call_soon_threadsafe(wake.set))
    ident, created, strategy = new_id(chat), int(time.time()), job.strategy

    async def events() -> AsyncIterator[str]:
        deadline = loop.time() + state.limits.request_timeout_s
        sent, finished = 0, False
        try:
            while True:
                wake.clear()
                answer = ticket.run.answer if ticket.run is not None else None
                if answer is not None and len(answer.waves) > sent:
                    sent = len(answer.waves)
                    yield sse(wave_event(chat, state.model_name, ident, created, answer, strategy))
                if ticket.future.done():
                    break
                late = await _woken_or_late(wake, deadline, state)
                if late:
                    yield late
                    return
            if ticket.future.cancelled():
                return
            error = ticket.future.exception()
            if error is not None:
                yield sse(_failure(error).body())
                return
            answer = ticket.future.result()
            finished = True
            state.count_answer(answer)
            yield sse(final_event(chat, state.model_name, ident, created, answer, strategy))
            if job.include_usage:
                yield sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk" if chat else "text_completion",
                        "created": created,
                        "model": state.model_name,
                        "choices": [],
                        "usage": reasoning_response(chat, state.model_name, ident, created, answer, strategy)["usage"],
                    }
                )
            yield sse("[DONE]")
        finally:
            if not finished:
                ticket.cancel()
                state.metrics.cancelled += 1

    return StreamingResponse(events(), media_type="text/event-stream")


async def _woken_or_late(wake: asyncio.Event, deadline: float, state: ServeState) -> str | None:
    """Wait for the stream's next wake-up; past `deadline` (loop time), the 504 event to send."""
    try:
        await asyncio.wait_for(wake.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        return None
    except asyncio.TimeoutError:
        limit = state.limits.request_timeout_s
        return sse(BadRequest(f"no answer within {limit:g} s (--request-timeout)", status=504).body())


def _failure(error: BaseException) -> BadRequest:
    """What a failed sampling call tells its client: the user's mistake (400) or ours (500)."""
    if isinstance(error, UserError):
        return BadRequest(str(error))
    return BadRequest(f"{type(error).__name__}: {error}", status=500)
