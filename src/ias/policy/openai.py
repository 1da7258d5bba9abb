"""The OpenAI-compatible policy backend: `/v1/completions` of vLLM, SGLang, llama.cpp, TGI, `ias serve`.

Raw completions, not chat: rollouts continue partial solutions, so the prompt is sent as
written (chat templates are applied on this side, with `tokenizer`).

One request per prompt carries `n` and the prompt's seed. The server gives choice j its own
random stream (vLLM and `ias serve`: from (seed, j); vLLM seeds choice j with `seed + j`),
so sample j of prompt i depends only on (seeds[i], j) *as long as the server honours
`seed`*: reproducibility is the server's. Requests run `concurrency` at a time; 429, 5xx,
dropped connections and timeouts are retried `max_retries` times with exponential backoff
and jitter (a `Retry-After` is honoured, up to a minute).

Token counts. `prompt_tokens` is the response's `usage.prompt_tokens` (the prompt, counted
once per request). Servers give generated tokens as one total per request; each choice
gets its exact count when logprobs were asked (one per token), else the total is split in
proportion to each choice's weight: its tokens (with `tokenizer`; characters without),
counting the stop string it ended on and one token for an end of text. Without `usage`,
the counts are the tokenizer's (and without a tokenizer that is an error: pass one).

Finish reasons: "length" -> "length"; "stop" with the server saying which stop string
matched (vLLM `stop_reason`, SGLang `matched_stop`) -> "stop" and that string; "stop" with
the server saying none matched (EOS, a stop token) -> "eos"; a server that does not say
is read as "stop" when stop strings were asked (the string itself only when there is one),
"eos" otherwise. TGI's "stop_sequence" and "eos_token" map to "stop" and "eos".
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Sequence

from ias.errors import PromptTooLong, UserError
from ias.policy.base import SamplingParams, register_policy, sample_offsets
from ias.types import Sample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_MAX_RETRY_AFTER_S = 60.0
_MAX_BACKOFF_S = 8.0
# Words a server uses when it refuses a field it does not know or support.
_REFUSAL = re.compile(
    r"support|unknown|unrecogni[sz]ed|unexpected|not allowed|not permitted|extra|only one|"
    r"must be|invalid|not implemented"
)
_FIELDS = ("logprobs", "stop", "seed", "top_p", "n")


@register_policy("openai")
class OpenAIPolicy:
    """A model served behind an OpenAI-compatible `/v1/completions` endpoint.

    `model` is the served model name. `tokenizer` (a zoo name, folder or hub id of the same
    model) counts tokens locally, caps `max_tokens` to the server's context, renders chat
    templates, and its `generation_config.json` gives the default sampling settings
    (overridden by `temperature`, `top_p`, `max_tokens`). `api_key` defaults to
    `$OPENAI_API_KEY`, `base_url` to `$OPENAI_BASE_URL`; a URL with no path gets `/v1`.
    """

    #: A later sample costs the earlier ones too (a server starts a seed's stream at choice 0).
    offsets_are_free = False
    #: A server cannot be told to stop a sample on its confidence: callers finish and trim.
    stops_on_confidence = False

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        tokenizer: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        backoff_s: float = 0.5,
    ):
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise UserError("the openai backend needs the server's address: --backend-opt base_url=http://HOST:PORT/v1")
        if int(concurrency) < 1 or float(timeout_s) <= 0 or int(max_retries) < 0 or float(backoff_s) < 0:
            raise UserError(
                "the openai backend needs concurrency >= 1, timeout_s > 0, max_retries >= 0, backoff_s >= 0"
            )
        self.name = str(model)
        self.base_url = _normalise_url(str(base_url))
        self.concurrency = int(concurrency)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._http = _Http(
            self.base_url, None if key is None else str(key), float(timeout_s), int(max_retries), float(backoff_s)
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="ias-openai")
        self.tokenizer: PreTrainedTokenizerBase | None = None
        generation: dict[str, Any] = {}
        if tokenizer is not None:
            self.tokenizer, generation = _load_tokenizer(str(tokenizer))
        overrides = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.defaults = SamplingParams(**{**generation, **{k: v for k, v in overrides.items() if v is not None}})
        self.max_model_len = self._check_model()

    def _check_model(self) -> int | None:
        """The served model must be the one asked for; returns its context length when the server says."""
        listing = self._http.request("GET", "/models", optional=True)
        if listing is None:  # a server without /models: the first completion will tell
            return None
        served = {str(m.get("id")): m for m in listing.get("data") or [] if isinstance(m, dict)}
        if served and self.name not in served:
            raise UserError(
                f"the server at {self.base_url} serves {', '.join(sorted(served))}, not '{self.name}'; "
                "pass one of them as the policy"
            )
        length = served.get(self.name, {}).get("max_model_len")
        return int(length) if isinstance(length, int) else None

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        seeds: Sequence[int],
        first: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        """A server starts a seed's stream at its first choice: prompt i with `first[i]` > 0 asks
        for first[i] + n choices and keeps the last n (the server computes the others too)."""
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt is required")
        if n < 1:
            raise ValueError("n must be >= 1")
        offsets = sample_offsets(first, prompts)
        if params.exit_below is not None:
            raise UserError(
                "the early exit (exit_below) stops samples in the hf backend only: "
                "a server cannot be told to stop a sample on its confidence"
            )
        prompt_ids = [self._encode(p) for p in prompts] if self.tokenizer is not None else None
        bodies = [
            self._body(p, offsets[i] + n, params, int(s), None if prompt_ids is None else len(prompt_ids[i]), i)
            for i, (p, s) in enumerate(zip(prompts, seeds))
        ]
        responses = self._post_all(bodies)
        return [
            self._samples(response, offsets[i] + n, params, None if prompt_ids is None else len(prompt_ids[i]))[
                offsets[i] :
            ]
            for i, response in enumerate(responses)
        ]

    def _encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError("counting prompt tokens needs the tokenizer option")
        return self.tokenizer(text, verbose=False)["input_ids"]

    def _body(self, prompt: str, n: int, params: SamplingParams, seed: int, prompt_len: int | None, i: int) -> dict:
        max_tokens = params.max_tokens
        if self.max_model_len is not None and prompt_len is not None:
            if prompt_len >= self.max_model_len:
                raise PromptTooLong(i, prompt_len, self.max_model_len)
            max_tokens = min(max_tokens, self.max_model_len - prompt_len)  # as the hf backend: bounded by the context
        body: dict[str, Any] = {
            "model": self.name,
            "prompt": prompt,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.logprobs:
            body["logprobs"] = 1  # 1 rather than 0: some servers read 0 as "none"
        return body

    def _post_all(self, bodies: list[dict]) -> list[dict]:
        """All requests, `concurrency` in flight; the first failure stops the rest and is raised."""
        abort = threading.Event()
        futures = [self._pool.submit(self._http.request, "POST", "/completions", b, abort=abort) for b in bodies]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [error for f in futures if f in done and (error := f.exception()) is not None]
        if errors:
            abort.set()
            for f in futures:
                f.cancel()
            wait(futures)
            raise errors[0]
        return [f.result() for f in futures]

    def _samples(self, response: dict, n: int, params: SamplingParams, local_prompt_len: int | None) -> list[Sample]:
        choices = sorted(response.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise UserError(
                f"the server at {self.base_url} returned {len(choices)} choices for n={n}: it does not "
                "support `n`; use a server that does (vLLM, SGLang, `ias serve`)"
            )
        usage = response.get("usage") or {}
        texts = [str(c.get("text") or "") for c in choices]
        finishes = [self._finish(c, params) for c in choices]
        read = [self._logprobs(c) for c in choices] if params.logprobs else None
        prompt_tokens = usage.get("prompt_tokens", local_prompt_len)
        if prompt_tokens is None:
            raise self._no_usage()
        if read is not None:
            generated = [len(lp) for lp in read]
        else:
            weights = [self._weight(t, f, s) for t, (f, s) in zip(texts, finishes)]
            total = usage.get("completion_tokens")
            if total is None:
                if self.tokenizer is None:
                    raise self._no_usage()
                generated = weights
            else:
                generated = split_total(int(total), weights)
        logprobs: Sequence[list[float] | None] = read if read is not None else [None] * n
        return [
            Sample(text=t, prompt_tokens=int(prompt_tokens), generated_tokens=g, finish_reason=f, logprobs=lp, stop=s)
            for t, g, (f, s), lp in zip(texts, generated, finishes, logprobs)
        ]

    def _weight(self, text: str, finish: str, stop: str | None) -> int:
        """A choice's tokens as generated: its text, the stop string it ended on, one for an end of text."""
        written = text + (stop or "")
        count = len(self.tokenizer(written, add_special_tokens=False)["input_ids"]) if self.tokenizer else len(written)
        return count + (finish == "eos")

    def _finish(self, choice: dict, params: SamplingParams) -> tuple[str, str | None]:
        reason = choice.get("finish_reason")
        if reason == "length":
            return "length", None
        if reason in ("eos_token", "eos"):
            return "eos", None
        if reason in ("stop", "stop_sequence"):
            for key in ("stop_reason", "matched_stop"):
                if key in choice:
                    said = choice[key]
                    return ("stop", said) if isinstance(said, str) else ("eos", None)  # None or a stop token id
            if not params.stop:
                return "eos", None
            return "stop", params.stop[0] if len(params.stop) == 1 else None
        raise UserError(f"the server at {self.base_url} ended a sample with finish_reason {reason!r}")

    def _logprobs(self, choice: dict) -> list[float]:
        values = (choice.get("logprobs") or {}).get("token_logprobs")
        if not isinstance(values, list) or any(v is None for v in values):
            raise UserError(
                f"the server at {self.base_url} returned no token logprobs: it does not support "
                "`logprobs`; use a server that does (vLLM, SGLang, `ias serve`)"
            )
        return [float(v) for v in values]

    def _no_usage(self) -> UserError:
        return UserError(
            f"the server at {self.base_url} reports no token usage; pass the model's tokenizer to count "
            "them here: --backend-opt tokenizer=NAME_OR_FOLDER"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def split_total(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (equally when all are 0), summing exactly to it:
    floors first, then the largest remainders get one more (ties to the earlier choice)."""
    if not weights:
        return []
    mass = sum(weights)
    shares = [total * w / mass for w in weights] if mass > 0 else [total / len(weights)] * len(weights)
    counts = [int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda k: (-(shares[k] - counts[k]), k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def _normalise_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"base_url '{url}' is not an http(s) URL such as http://127.0.0.1:8000/v1")
    path = parsed.path.rstrip("/") or "/v1"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def _load_tokenizer(name: str):
    """The tokenizer of a zoo name, folder or hub id, and its generation_config's sampling settings."""
    from transformers import AutoTokenizer, GenerationConfig

    from ias.models import hub_errors, resolve_model

    path = resolve_model(name)
    with hub_errors(name):
        tokenizer = AutoTokenizer.from_pretrained(path)
    try:
        config = GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the plain defaults
        return tokenizer, {}
    settings = {"temperature": config.temperature, "top_p": config.top_p}
    return tokenizer, {k: float(v) for k, v in settings.items() if v is not None}


class _Http:
    """JSON over HTTP with retries: 429, 5xx, dropped connections and timeouts are tried again."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float, max_retries: int, backoff_s: float):
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        optional: bool = False,
        abort: threading.Event | None = None,
    ) -> Any:
        """The decoded JSON answer; `optional`: None when the server has no such path (404, 405)."""
        data = None if body is None else json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            if abort is not None and abort.is_set():
                raise UserError("cancelled: another request to the server failed")
            retry_after = None
            try:
                request = urllib.request.Request(self.base_url + path, data=data, headers=self.headers, method=method)
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise UserError(
                        f"the server at {self.base_url} answered {path} with something other "
                        "than JSON; check base_url (it usually ends in /v1)"
                    ) from None
            except urllib.error.HTTPError as err:
                message = _error_message(err)
                if err.code == 429 or err.code >= 500:
                    last = f"answered {err.code} ({message})"
                    retry_after = _seconds(err.headers.get("Retry-After"))
                elif optional and err.code in (404, 405):
                    return None
                else:
                    raise self._refused(err.code, message, path, body) from None
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError) or isinstance(err, TimeoutError):
                    last = f"gave no answer within {self.timeout_s:g} s (raise timeout_s or lower concurrency)"
                else:
                    last = f"could not be reached ({reason}); start it or fix base_url"
            if attempt < self.max_retries:  # woken early when a sibling request fails: its error shows at once
                (abort or threading.Event()).wait(self._delay(attempt, retry_after))
        tries = self.max_retries + 1
        raise UserError(f"the server at {self.base_url} {last}, {tries} {'try' if tries == 1 else 'tries'}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S)
        ceiling = min(_MAX_BACKOFF_S, self.backoff_s * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # exponential, with jitter so clients spread out

    def _refused(self, status: int, message: str, path: str, body: dict | None) -> UserError:
        where = f"the server at {self.base_url}"
        if status in (400, 422):
            field = _unsupported_field(message, body or {})
            if field:
                return UserError(
                    f"{where} does not support `{field}` ({message}); use a server that does "
                    "(vLLM, SGLang, `ias serve`)"
                )
            hint = ""
            if "context length" in message.lower() and "max_tokens" in (body or {}):
                hint = (
                    "; with --backend-opt tokenizer=NAME_OR_FOLDER prompts and max_tokens are checked "
                    "against the context before sending"
                )
            return UserError(f"{where} rejected the request ({status}: {message}){hint}")
        if status in (401, 403):
            return UserError(f"{where} refused the request ({status}: {message}); check api_key or $OPENAI_API_KEY")
        if status == 404:
            model = (body or {}).get("model")
            return UserError(
                f"{where} has no {path}{f' or no model {model!r}' if model else ''} ({message}); "
                "check base_url (it usually ends in /v1) and the model name"
            )
        return UserError(f"{where} answered {status} ({message})")


def _error_message(err: urllib.error.HTTPError) -> str:
    """The server's one-line reason: OpenAI's `error.message`, TGI's `error`, FastAPI's `detail`."""
    try:
        raw = err.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):  # cut while reading the error body: the status says enough
        raw = ""
    text = raw
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        found = data.get("error", data.get("message", data.get("detail")))
        if isinstance(found, dict):
            found = found.get("message", found)
        if found is not None:
            text = found if isinstance(found, str) else json.dumps(found)
    text = " ".join(text.split()) or (err.reason or "")
    return text[:300]


def _unsupported_field(message: str, body: dict) -> str | None:
    """Which sent field a 400 refuses (`n`, `stop`, `logprobs`...), when its message names one."""
    lower = message.lower()
    if not _REFUSAL.search(lower):
        return None
    for field in _FIELDS:
        if field in body and re.search(rf"(?<![\w.]){field}(?![\w])", lower):
            return field
    if "choice" in lower and body.get("n", 1) > 1:  # "only one completion choice is allowed"
        return "n"
    return None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: our own backoff instead
        return None
