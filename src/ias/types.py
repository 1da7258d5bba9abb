"""Plain data shared by every part of `ias`: problems, samples, usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STEP_DELIMITER = "\n\n"


@dataclass(frozen=True)
class Problem:
    """One question with its reference answer.

    `solution` is the reference step-by-step solution when the source has one; `meta`
    holds difficulty features (operations, digits, level, subject...) for reports.
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """Compute spent, counted exactly: tokens in and out of the policy, PRM tokens, samples."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prm_tokens: int = 0
    samples: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.generated_tokens + other.generated_tokens,
            self.prm_tokens + other.prm_tokens,
            self.samples + other.samples,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Sample:
    """One generated continuation of one prompt.

    `finish_reason` is "stop" (a stop string was hit, it is not included in `text`),
    "eos" (the model ended the text), "length" (max_tokens reached) or "exit" (its windowed
    confidence fell below `SamplingParams.exit_below`: stopped early, hf backend).
    `logprobs` holds the log-probability of each generated token under the sampling
    distribution's model (before temperature), when asked for.
    """

    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str
    logprobs: list[float] | None = None
    stop: str | None = None

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.generated_tokens, 0, 1)


def split_steps(solution: str, delimiter: str = STEP_DELIMITER) -> list[str]:
    """Split a solution into its non-empty steps (surrounding whitespace removed)."""
    return [s.strip() for s in solution.split(delimiter) if s.strip()]


def join_steps(steps: list[str], delimiter: str = STEP_DELIMITER) -> str:
    return delimiter.join(steps)
