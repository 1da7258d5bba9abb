"""The PRM protocol: batched scoring of (question, steps) pairs, one score per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ias.errors import UserError, check_options


@dataclass
class StepScores:
    """A PRM's reading of one solution: one probability per step (one for t=0 if no steps).

    `skipped` names why nothing could be read (input longer than the model allows, a step
    holding the tag); skipped items have no scores and still count their tokens as 0.
    """

    scores: list[float] = field(default_factory=list)
    tokens: int = 0
    skipped: str | None = None
    hidden: Any = None  # the last hidden state at each tag (n_tags x width), when asked for
    quantiles: list[list[float]] | None = None  # calibrated quantiles per step (CalibratedPRM)
    raw_scores: list[float] | None = None  # the PRM's own scores, before calibration


class PRM(Protocol):
    name: str

    def score(self, items: Sequence[tuple[str, list[str]]]) -> list[StepScores]:
        """Scores of many (question, steps) pairs in batched model calls."""
        ...


PRMFactory = Callable[..., PRM]
_BACKENDS: dict[str, PRMFactory] = {}


def register_prm(name: str) -> Callable[[PRMFactory], PRMFactory]:
    def add(factory: PRMFactory) -> PRMFactory:
        _BACKENDS[name] = factory
        return factory

    return add


def load_prm(model: str, backend: str = "hf", **options) -> PRM:
    """A PRM from a zoo name or a local folder (format from `ias_prm.json` or `prm_format=`)."""
    import ias.prm.hf  # noqa: F401  (registers the default backend)

    if backend not in _BACKENDS:
        raise UserError(f"unknown PRM backend '{backend}'; known: {', '.join(sorted(_BACKENDS))}")
    check_options(f"PRM backend '{backend}'", _BACKENDS[backend], options)
    return _BACKENDS[backend](model, **options)
