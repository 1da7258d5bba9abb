"""Request bodies of `ias serve` as pydantic models, and OpenAI-style errors.

Validation is strict where OpenAI clients and our reproducibility need it: unknown fields
are a 400 naming the field (as OpenAI answers), numbers must be finite JSON numbers (a
`NaN` or a huge integer is refused, never turned into a float that breaks sampling),
seeds are 64-bit integers (signed or not) because sample j of a seed must be the policy's
sample j of that seed. Every refusal carries the field at fault in `param`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ias.errors import UserError
from ias.policy.base import SamplingParams
from ias.prompting import chat_request_prompt
from ias.serve.limits import ServeLimits

# Seeds the policies can hash: a signed or an unsigned 64-bit integer (beyond: OverflowError).
SEED_RANGE = range(-(2**63), 2**64)


class BadRequest(Exception):
    """A request the server refuses: its HTTP status, message and the field at fault."""

    def __init__(
        self, message: str, param: str | None = None, status: int = 400, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.param, self.headers = status, param, headers or {}

    def body(self) -> dict:
        """The OpenAI error object."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.status}}


def _finite_number(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300 or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")  # 1e300: also ints too big for a float
    return float(value)


def _whole_number(value: Any, key: str, least: int) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
    return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _Sampling(BaseModel):
    """The fields every sampling request shares (OpenAI's names), validated strictly."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    model: str | None = None  # absent: the served one, as vLLM does
    n: Any = None
    temperature: Any = None
    top_p: Any = None
    max_tokens: Any = None
    stop: Any = None
    seed: Any = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("n", "max_tokens")
    @classmethod
    def _counts(cls, value: Any, info) -> Any:
        return _whole_number(value, info.field_name, 1)

    @field_validator("temperature", "top_p")
    @classmethod
    def _numbers(cls, value: Any, info) -> Any:
        return _finite_number(value, info.field_name)

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Any) -> tuple[str, ...]:
        stops = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError("stop must be a non-empty string or a list of them")
        return tuple(stops)

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: Any) -> int:
        if value is None:
            return secrets.randbits(63)
        if isinstance(value, bool) or not isinstance(value, int) or value not in SEED_RANGE:
            raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {value!r}")
        return value


class CompletionRequest(_Sampling):
    """`POST /v1/completions`: raw prompts."""

    prompt: Any
    logprobs: Any = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: Any) -> list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return prompts

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or value not in (0, 1)):
            raise ValueError("logprobs must be 0 or 1: ias serve gives the sampled token's log-probability only")
        return value


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(_Sampling):
    """`POST /v1/chat/completions`: a conversation, rendered by the policy's chat template."""

    messages: list[Message]
    max_completion_tokens: Any = None  # OpenAI's newer name for max_tokens
    logprobs: bool | None = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise ValueError("messages must hold at least one message")
        return value

    @field_validator("max_completion_tokens")
    @classmethod
    def _max_completion(cls, value: Any) -> Any:
        return _whole_number(value, "max_completion_tokens", 1)

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs is not given for chat by ias serve (use /v1/completions with logprobs=1)")
        return value


@dataclass(frozen=True)
class SamplingJob:
    """What a valid request asks the scheduler for, and how to answer it."""

    prompts: list[str]
    n: int
    params: SamplingParams
    seed: int
    stream: bool
    include_usage: bool


def parse(model: type[BaseModel], body: Any) -> Any:
    """`body` as `model`, or a BadRequest naming the first field at fault."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) if first["loc"] else None
        if first["type"] == "extra_forbidden":
            accepts = f" (ias serve accepts {', '.join(sorted(model.model_fields))})" if len(first["loc"]) == 1 else ""
            raise BadRequest(f"unknown field `{param}`{accepts}", param) from None
        message = first["msg"].removeprefix("Value error, ")
        raise BadRequest(message if param and param in message else f"{param}: {message}", param) from None


def completion_job(body: Any, model_name: str, defaults: SamplingParams, limits: ServeLimits) -> SamplingJob:
    request = parse(CompletionRequest, body)
    return _job(request, request.prompt, request.max_tokens, request.logprobs is not None, model_name, defaults, limits)


def chat_job(body: Any, policy, model_name: str, limits: ServeLimits) -> SamplingJob:
    request = parse(ChatRequest, body)
    longest = max(len(m.content) for m in request.messages)
    if longest > limits.max_prompt_chars:  # refused by length, before any template or tokenizer
        raise BadRequest(
            f"a message has {longest} characters; this server takes at most {limits.max_prompt_chars}", "messages"
        )
    if request.max_tokens is not None and request.max_completion_tokens is not None:
        raise BadRequest("give max_tokens or max_completion_tokens, not both", "max_completion_tokens")
    prompt = chat_request_prompt(policy, [m.model_dump(exclude_none=True, exclude={"name"}) for m in request.messages])
    max_tokens = request.max_completion_tokens if request.max_tokens is None else request.max_tokens
    return _job(request, [prompt], max_tokens, False, model_name, policy.defaults, limits)


def _job(
    request: _Sampling,
    prompts: list[str],
    max_tokens: int | None,
    logprobs: bool,
    model_name: str,
    defaults: SamplingParams,
    limits: ServeLimits,
) -> SamplingJob:
    """The request's sampling job, within the operator's limits."""
    if request.model is not None and request.model != model_name:
        raise BadRequest(f"The model `{request.model}` does not exist; this server serves `{model_name}`", "model", 404)
    n = request.n or 1
    if n > limits.max_n:
        raise BadRequest(f"n must be <= {limits.max_n} (this server's --max-n), got {n}", "n")
    if n * len(prompts) > limits.max_samples:
        raise BadRequest(
            f"prompts x n must be <= {limits.max_samples} (this server's --max-samples), got {len(prompts)} x {n}", "n"
        )
    longest = max(len(p) for p in prompts)
    if longest > limits.max_prompt_chars:  # refused by length, before any tokenizing
        raise BadRequest(
            f"a prompt has {longest} characters; this server takes at most {limits.max_prompt_chars}", "prompt"
        )
    try:
        params = SamplingParams(
            temperature=defaults.temperature if request.temperature is None else request.temperature,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            max_tokens=defaults.max_tokens if max_tokens is None else max_tokens,
            stop=request.stop,
            logprobs=logprobs,
        )
    except UserError as err:
        raise BadRequest(str(err), str(err).split()[0]) from None
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    if request.stream_options and not request.stream:
        raise BadRequest("stream_options needs stream: true", "stream_options")
    return SamplingJob(prompts, n, params, request.seed, request.stream, include_usage)
