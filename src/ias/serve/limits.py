"""What the operator of `ias serve` allows (plain data: the CLI builds it without the server stack)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """What the operator lets one request ask for, and how long anything may take."""

    api_key: str | None = None  # requests need `Authorization: Bearer KEY` (all routes but /health)
    max_request_bytes: int = 4 << 20
    max_prompt_chars: int = 200_000
    max_n: int = 1024
    max_samples: int = 4096  # prompts x n of one request
    max_queue: int = 256  # requests waiting or running; past it, 429
    request_timeout_s: float = 600.0
    read_timeout_s: float = 30.0
    access_log: bool = True
