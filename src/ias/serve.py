"""`ias serve`: an OpenAI-compatible HTTP server (`/v1/completions`, `/v1/models`, `/health`)
over any ias policy, so OpenAI clients can sample a zoo or local model.

Requests that arrive together and ask for the same `n` and settings are sampled in one
policy call. A request's samples depend only on its `seed` (choice j is the policy's sample
j of that seed), so batching never changes them, and the `openai` backend talking to this
server returns exactly what the policy would. A prompt list shares the request's seed.

Fields: model, prompt (a string or a list of them), n, temperature, top_p, max_tokens,
stop, seed (in [-2**63, 2**64); random when absent), logprobs (0 or 1: only the sampled
token's log-probability is given, in `token_logprobs`), stream (false only), user; anything
else is a 400, as OpenAI does. `fail_first` (testing aid) answers the first K completion requests with 503
and `Retry-After: 1`.
"""

from __future__ import annotations

import json
import queue
import secrets
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ias.errors import UserError
from ias.policy.base import Policy, SamplingParams
from ias.types import Sample

_FIELDS = {"model", "prompt", "n", "temperature", "top_p", "max_tokens", "stop", "seed", "logprobs", "stream", "user"}
_MAX_BODY = 32 << 20
_MAX_N = 1024
# Seeds the policies can hash: a signed or an unsigned 64-bit integer (beyond: OverflowError).
_SEED_RANGE = range(-(2**63), 2**64)


class BadRequest(Exception):
    """A request the server refuses: its HTTP status, message and the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass
class _Job:
    prompts: list[str]
    n: int
    params: SamplingParams
    seed: int
    done: threading.Event = field(default_factory=threading.Event)
    result: list[list[Sample]] | None = None
    error: BaseException | None = None


class Batcher:
    """One thread owns the policy; jobs that queue up meanwhile share a call when they can."""

    def __init__(self, policy: Policy, max_prompts: int = 64):
        self.policy = policy
        self.max_prompts = max_prompts
        self._queue: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._run, name="ias-serve-batcher", daemon=True).start()

    def sample(self, prompts: list[str], n: int, params: SamplingParams, seed: int) -> list[list[Sample]]:
        job = _Job(prompts, n, params, seed)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        self._queue.put(None)  # type: ignore[arg-type]  (the thread's signal to end)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            size = len(jobs[0].prompts)
            while size < self.max_prompts:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # end after this batch
                    break
                jobs.append(job)
                size += len(jobs[-1].prompts)
            groups: dict[tuple[int, SamplingParams], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.n, job.params), []).append(job)
            for (n, params), group in groups.items():
                self._call(group, n, params)

    def _call(self, group: list[_Job], n: int, params: SamplingParams) -> None:
        prompts = [p for job in group for p in job.prompts]
        seeds = [job.seed for job in group for _ in job.prompts]
        try:
            out = self.policy.sample(prompts, n, params, seeds)
        except Exception as err:  # noqa: BLE001  (reported to the requests, the server stays up)
            if len(group) > 1:  # one bad request must not fail the others: each on its own
                for job in group:
                    self._call([job], n, params)
                return
            group[0].error = err
            group[0].done.set()
            return
        start = 0
        for job in group:
            job.result = out[start : start + len(job.prompts)]
            start += len(job.prompts)
            job.done.set()


def parse_completion(body: Any, model_name: str, defaults: SamplingParams) -> tuple[list[str], int, SamplingParams, int]:
    """A `/v1/completions` body as (prompts, n, sampling settings, seed); BadRequest when invalid."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field `{unknown[0]}` (ias serve accepts {', '.join(sorted(_FIELDS))})", unknown[0])
    model = body.get("model", model_name)  # absent: the served one, as vLLM does
    if model != model_name:
        raise BadRequest(f"The model `{model}` does not exist; this server serves `{model_name}`", "model", 404)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("prompt must be a string or a non-empty list of strings", "prompt")
    if body.get("stream"):
        raise BadRequest("stream is not supported by ias serve", "stream")
    n = _integer(body, "n", 1, least=1)
    if n > _MAX_N:
        raise BadRequest(f"n must be <= {_MAX_N}, got {n}", "n")
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise BadRequest("stop must be a non-empty string or a list of them", "stop")
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or logprobs not in (0, 1)):
        raise BadRequest("logprobs must be 0 or 1: ias serve gives the sampled token's log-probability only", "logprobs")
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbits(63)
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed not in _SEED_RANGE:
        raise BadRequest(f"seed must be an integer in [-2**63, 2**64), got {seed!r}", "seed")
    settings = {
        "temperature": _number(body, "temperature", defaults.temperature),
        "top_p": _number(body, "top_p", defaults.top_p),
        "max_tokens": _integer(body, "max_tokens", defaults.max_tokens, least=1),
    }
    try:
        params = SamplingParams(**settings, stop=tuple(stops), logprobs=logprobs is not None)
    except UserError as err:
        raise BadRequest(str(err), str(err).split()[0]) from None
    return prompts, n, params, seed


def _integer(body: dict, key: str, default: int, least: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadRequest(f"{key} must be an integer >= {least}, got {value!r}", key)
    return value


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300:
        raise BadRequest(f"{key} must be a finite number, got {value!r}", key)  # 1e300: also ints too big for a float
    return float(value)


def completion_response(model_name: str, results: list[list[Sample]], params: SamplingParams) -> dict:
    """The OpenAI `text_completion` object; choice i*n + j is sample j of prompt i."""
    choices = []
    for group in results:
        for sample in group:
            logprobs = None
            if params.logprobs:
                logprobs = {"tokens": None, "token_logprobs": sample.logprobs, "top_logprobs": None, "text_offset": None}
            choices.append({
                "index": len(choices), "text": sample.text, "logprobs": logprobs,
                "finish_reason": "length" if sample.finish_reason == "length" else "stop",
                "stop_reason": sample.stop,
            })
    prompt_tokens = sum(group[0].prompt_tokens for group in results if group)
    completion_tokens = sum(s.generated_tokens for group in results for s in group)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": model_name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class Server(ThreadingHTTPServer):
    """The HTTP server: a policy behind a batcher, the served name, the fault-injection count."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], policy: Policy, model_name: str, fail_first: int = 0,
                 verbose: bool = False):
        super().__init__(address, _Handler)
        self.policy = policy
        self.model_name = model_name
        self.batcher = Batcher(policy)
        self.verbose = verbose
        self.completions = 0  # completion requests received, failed ones included
        self._fail_left = fail_first
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()

    def take_failure(self) -> bool:
        """Counts a completion request; True while injected failures are left."""
        with self._lock:
            self.completions += 1
            if self._fail_left > 0:
                self._fail_left -= 1
                return True
            return False


def send_json(handler: BaseHTTPRequestHandler, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
    """One JSON reply with its length and any extra headers (Retry-After...)."""
    raw = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(raw)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's naming
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            entry = {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "ias"}
            length = getattr(self.server.policy, "max_model_len", None)
            if isinstance(length, int):
                entry["max_model_len"] = length
            self._send(200, {"object": "list", "data": [entry]})
        else:
            self._error(BadRequest(f"no route {path}", status=404))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path != "/v1/completions":
            self._drain()
            self._error(BadRequest(f"no route {path} (ias serve has /v1/completions)", status=404))
            return
        body = self._body()
        if body is None:
            return
        if self.server.take_failure():
            self._error(BadRequest("injected failure (--fail-first)", status=503), {"Retry-After": "1"})
            return
        try:
            prompts, n, params, seed = parse_completion(body, self.server.model_name, self.server.policy.defaults)
            results = self.server.batcher.sample(prompts, n, params, seed)
        except BadRequest as err:
            self._error(err)
            return
        except UserError as err:  # e.g. a prompt longer than the model's context
            self._error(BadRequest(str(err)))
            return
        except Exception as err:  # noqa: BLE001  (the server stays up; the client sees why, the log how)
            traceback.print_exc()
            self._error(BadRequest(f"{type(err).__name__}: {err}", status=500))
            return
        self._send(200, completion_response(self.server.model_name, results, params))

    def _body(self) -> Any:
        """The parsed JSON body, or None after answering why it is unusable."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(BadRequest("a Content-Length header is required", status=411))
            return None
        if int(length) > _MAX_BODY:
            self.close_connection = True
            self._error(BadRequest(f"the body is over {_MAX_BODY} bytes", status=413))
            return None
        try:
            return json.loads(self.rfile.read(int(length)))
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            self._error(BadRequest("the body is not valid JSON (or nested too deeply)"))
            return None

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= _MAX_BODY:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _error(self, err: BadRequest, headers: dict[str, str] | None = None) -> None:
        kind = "invalid_request_error" if err.status < 500 else "server_error"
        self._send(err.status, {"error": {"message": str(err), "type": kind, "param": err.param, "code": err.status}},
                   headers)

    def _send(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        send_json(self, status, data, headers)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(policy: Policy, model_name: str, host: str = "127.0.0.1", port: int = 8000, fail_first: int = 0,
                verbose: bool = False) -> Server:
    """A bound server (port 0: a free one; see `.url`); call `serve_forever()` or run it in a thread."""
    try:
        return Server((host, port), policy, model_name, fail_first=fail_first, verbose=verbose)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port") from None


def serve(model: str, backend: str = "hf", backend_options: dict | None = None, host: str = "127.0.0.1",
          port: int = 8000, served_model_name: str | None = None, fail_first: int = 0, verbose: bool = False) -> None:
    """Load the policy, print the URL (one line, flushed), serve until interrupted."""
    from ias.policy.base import load_policy

    policy = load_policy(model, backend=backend, **(backend_options or {}))
    server = make_server(policy, served_model_name or model, host, port, fail_first, verbose)
    print(f"serving {server.model_name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ias serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
