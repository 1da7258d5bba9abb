"""OpenAI response objects of `ias serve`: completions and chat completions, whole or as
stream chunks (server-sent events). Choice i*n + j is sample j of prompt i."""

from __future__ import annotations

import json
import time
import uuid

from ias.policy.base import SamplingParams
from ias.types import Sample


def finish_reason(sample: Sample) -> str:
    return "length" if sample.finish_reason == "length" else "stop"


def usage(results: list[list[Sample]]) -> dict:
    prompt_tokens = sum(group[0].prompt_tokens for group in results if group)
    completion_tokens = sum(s.generated_tokens for group in results for s in group)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_choice(index: int, sample: Sample, params: SamplingParams) -> dict:
    logprobs = None
    if params.logprobs:
        logprobs = {"tokens": None, "token_logprobs": sample.logprobs, "top_logprobs": None, "text_offset": None}
    return {
        "index": index,
        "text": sample.text,
        "logprobs": logprobs,
        "finish_reason": finish_reason(sample),
        "stop_reason": sample.stop,
    }


def chat_choice(index: int, sample: Sample, stream: bool) -> dict:
    message = {"role": "assistant", "content": sample.text}
    return {
        "index": index,
        ("delta" if stream else "message"): message,
        "logprobs": None,
        "finish_reason": finish_reason(sample),
    }


def envelope(kind: str, model_name: str, ident: str, choices: list[dict], **extra) -> dict:
    return {"id": ident, "object": kind, "created": int(time.time()), "model": model_name, "choices": choices, **extra}


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def whole_response(chat: bool, model_name: str, results: list[list[Sample]], params: SamplingParams) -> dict:
    """The whole answer: `text_completion` or `chat.completion`."""
    samples = [s for group in results for s in group]
    choices = [chat_choice(k, s, False) if chat else completion_choice(k, s, params) for k, s in enumerate(samples)]
    return envelope(
        "chat.completion" if chat else "text_completion", model_name, new_id(chat), choices, usage=usage(results)
    )


def stream_chunk(
    chat: bool, model_name: str, ident: str, first: int, samples: list[Sample], params: SamplingParams
) -> str:
    """One server-sent event holding a finished prompt's choices (indices from `first`)."""
    choices = [
        chat_choice(first + k, s, True) if chat else completion_choice(first + k, s, params)
        for k, s in enumerate(samples)
    ]
    return sse(envelope("chat.completion.chunk" if chat else "text_completion", model_name, ident, choices))


def usage_chunk(chat: bool, model_name: str, ident: str, results: list[list[Sample]]) -> str:
    return sse(
        envelope("chat.completion.chunk" if chat else "text_completion", model_name, ident, [], usage=usage(results))
    )


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
