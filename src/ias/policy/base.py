"""The policy protocol, sampling settings, the backend registry and reproducible seeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from ias.errors import UserError
from ias.types import Sample


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: the same fields every backend understands.

    `stop` strings end a sample (they are not included in its text); `max_tokens` bounds
    the generated tokens; `logprobs` asks for each generated token's log-probability.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    logprobs: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be >= 1, got {self.max_tokens}")


class Policy(Protocol):
    """Generates continuations of prompts, `n` per prompt, reproducibly from seeds."""

    name: str
    defaults: SamplingParams  # the model's own sampling settings (e.g. its generation_config)

    def sample(
        self, prompts: Sequence[str], n: int, params: SamplingParams, seeds: Sequence[int]
    ) -> list[list[Sample]]:
        """`n` samples for each prompt; sample j of prompt i depends only on (seeds[i], j)."""
        ...


PolicyFactory = Callable[..., Policy]
_BACKENDS: dict[str, PolicyFactory] = {}


def register_policy(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    def add(factory: PolicyFactory) -> PolicyFactory:
        _BACKENDS[name] = factory
        return factory

    return add


def load_policy(model: str, backend: str = "hf", **options) -> Policy:
    """A policy from a zoo name or a local model folder, on the named backend."""
    import ias.policy.hf  # noqa: F401  (registers the default backend)

    if backend not in _BACKENDS:
        raise UserError(f"unknown policy backend '{backend}'; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[backend](model, **options)




def mix64(*values: int | np.ndarray) -> np.ndarray:
    """A splitmix64-style hash of integers: independent streams from (seed, index, ...)."""
    with np.errstate(over="ignore"):
        x = np.uint64(0x243F6A8885A308D3)
        for v in values:
            x = (x ^ np.asarray(v).astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            x = x ^ (x >> np.uint64(30))
            x = x * np.uint64(0xBF58476D1CE4E5B9)
            x = x ^ (x >> np.uint64(27))
            x = x * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return np.asarray(x, dtype=np.uint64)


def uniforms(row_seeds: np.ndarray, position: int) -> np.ndarray:
    """One uniform in [0, 1) per row for a token position: the same whatever the batch."""
    bits = mix64(row_seeds, position) >> np.uint64(11)
    return bits.astype(np.float64) / float(1 << 53)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (run seed, problem id, sample index...), stable across runs."""
    ints = [p if isinstance(p, int) else _str_hash(p) for p in parts]
    return int(mix64(*ints)) & 0x7FFFFFFFFFFFFFFF


def _str_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
