"""The policy protocol, sampling settings, the backend registry and reproducible seeds."""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from ias.errors import MissingExtraError, PromptTooLong, UserError, check_options
from ias.types import Sample


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: the same fields every backend understands.

    `stop` strings end a sample (they are not included in its text); `max_tokens` bounds
    the generated tokens; `logprobs` asks for each generated token's log-probability.
    `exit_below` (DeepConf's early exit, hf backend): a sample stops after the first token
    whose mean log-probability over the last `exit_window` tokens (a full window) is below
    it, with finish reason "exit"; the tokens it would have written are never computed.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    exit_below: float | None = None
    exit_window: int = 16

    def to_dict(self) -> dict:
        """The settings as a run folder records them (without the exit when it is off, as
        folders made before it record them)."""
        out = {**asdict(self), "stop": list(self.stop)}
        if self.exit_below is None:
            del out["exit_below"], out["exit_window"]
        return out

    def __post_init__(self) -> None:
        # NaN slips through comparisons (`nan < 0` is False) and would sample nothing.
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.exit_below is not None and not math.isfinite(self.exit_below):
            raise UserError(f"exit_below must be a finite log-probability, got {self.exit_below}")
        if self.exit_window < 1:
            raise UserError(f"exit_window must be >= 1, got {self.exit_window}")


class Policy(Protocol):
    """Generates continuations of prompts, `n` per prompt, reproducibly from seeds."""

    name: str
    defaults: SamplingParams  # the model's own sampling settings (e.g. its generation_config)

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        seeds: Sequence[int],
        first: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        """`n` samples for each prompt; sample j of prompt i depends only on (seeds[i], j).
        `first[i]` (default 0) starts prompt i at its sample `first[i]`: the call returns its
        samples first[i] .. first[i] + n - 1, the same as a call from 0 would, so a question's
        later samples are drawn without drawing its earlier ones again. A backend for which a
        later sample costs the earlier ones (a server) says so with `offsets_are_free = False`
        (default: free), and callers then avoid asking one sample at a time."""
        ...


def sample_offsets(first: Sequence[int] | None, prompts: Sequence[str]) -> list[int]:
    """Each prompt's first sample index (0 unless given): one whole number >= 0 per prompt."""
    if first is None:
        return [0] * len(prompts)
    if len(first) != len(prompts):
        raise ValueError("one first-sample index per prompt is required")
    if any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0 for f in first):
        raise ValueError("first-sample indices must be whole numbers >= 0")
    return [int(f) for f in first]


def check_prompts(encoded: Sequence[Sequence[int]], seeds: Sequence[int], max_model_len: int) -> None:
    """One seed per prompt, and every prompt has a token to condition on and room to
    generate: empty or too long is the user's error, never a crash or a silent cut."""
    if len(seeds) != len(encoded):
        raise ValueError("one seed per prompt is required")
    for i, ids in enumerate(encoded):
        if not ids:  # a tokenizer that adds no BOS (SmolLM2) encodes "" to nothing
            raise UserError(f"prompt {i} encodes to no tokens; give it some text")
        if len(ids) >= max_model_len:
            raise PromptTooLong(i, len(ids), max_model_len)


PolicyFactory = Callable[..., Policy]
_BACKENDS: dict[str, PolicyFactory] = {}


def register_policy(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    def add(factory: PolicyFactory) -> PolicyFactory:
        _BACKENDS[name] = factory
        return factory

    return add


# The module that registers each shipped backend, and the extra it needs (None: the core).
# Imported on demand, so the core imports without any extra.
_BACKEND_MODULES: dict[str, tuple[str, str | None]] = {
    "hf": ("ias.policy.hf", None),
    "vllm": ("ias.policy.vllm", "vllm"),
    "openai": ("ias.policy.openai", "openai"),
}


def load_policy(model: str, backend: str = "hf", **options) -> Policy:
    """A policy from a zoo name or a local model folder (a served model name for `openai`),
    on the named backend; `options` go to the backend (an unknown one is a user error)."""
    if backend not in _BACKENDS and backend in _BACKEND_MODULES:
        module, extra = _BACKEND_MODULES[backend]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if extra is None or err.name == module:
                raise
            raise MissingExtraError(f"the {backend} policy backend", extra) from None
    if backend not in _BACKENDS:
        known = sorted(set(_BACKENDS) | set(_BACKEND_MODULES))
        raise UserError(f"unknown policy backend '{backend}'; known: {', '.join(known)}")
    check_options(f"policy backend '{backend}'", _BACKENDS[backend], options)
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
