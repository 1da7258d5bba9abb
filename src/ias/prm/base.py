"""The PRM protocols: batched scoring of (question, steps) pairs, one score per step, and what
calibration reads of a PRM beyond its scores (`ReadablePRM`, `AdaptablePRM`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from ias.errors import UserError, check_options

if TYPE_CHECKING:  # torch stays out of `import ias.prm.base`
    import torch


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


Item = tuple[str, list[str]]  # (question, steps): one PRM input


@runtime_checkable
class PRM(Protocol):
    """What scaling needs from a PRM: its name (recorded in run folders) and batched scores."""

    name: str

    def score(self, items: Sequence[Item]) -> list[StepScores]:
        """Scores of many (question, steps) pairs in batched model calls."""
        ...


@runtime_checkable
class ReadablePRM(PRM, Protocol):
    """What calibration needs to read a PRM on rollouts: the input it builds (to tell which
    inputs fit), the longest it reads, and its hidden state at each tag when asked."""

    max_length: int

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of the PRM input and the positions of its tags; ValueError if unreadable."""
        ...

    def score(self, items: Sequence[Item], hidden: bool = False) -> list[StepScores]:
        """As `PRM.score`; with `hidden`, each reading also holds the last hidden state at its tags."""
        ...


class QuantileReading(Protocol):
    """What can take a PRM's reading layer's place: quantiles of success from the layer's input."""

    levels: tuple[float, ...]
    median_index: int
    shift: float  # conformal: subtracted from the lowest quantile

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class AdaptablePRM(ReadablePRM, Protocol):
    """What a calibrator that trains the PRM itself needs (quantile-lora): a fresh copy to
    adapt, its model, the reading layer a quantile reader replaces, and one forward that
    returns that layer's input."""

    model: Any  # the framework's model; an adapter wraps it in place
    device: torch.device
    quantile_reader: QuantileReading | None

    def fresh_copy(self) -> AdaptablePRM:
        """The same PRM loaded anew (adapters are injected in place: never into a shared one)."""
        ...

    def reading_layer(self) -> tuple[torch.nn.Linear, int, int]:
        """The linear layer the score is read from, and its positive and negative rows."""
        ...

    def batch_tensors(self, batch: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and attention mask of encoded inputs, on the PRM's device."""
        ...

    def forward_reading_inputs(self, ids: torch.Tensor, mask: torch.Tensor, hidden: bool = False) -> tuple[Any, Any]:
        """The model's output and the reading layer's input at every position."""
        ...


def require_readable(prm: PRM, why: str) -> ReadablePRM:
    """`prm` as a ReadablePRM, or a one-line error saying `why` it must be one."""
    if not isinstance(prm, ReadablePRM):
        raise UserError(
            f"{why} reads the PRM's own inputs and hidden states, which PRM '{prm.name}' "
            f"(a {type(prm).__name__}) does not offer; use a transformers PRM (backend 'hf')"
        )
    return prm


def require_adaptable(prm: PRM, why: str) -> AdaptablePRM:
    """`prm` as an AdaptablePRM, or a one-line error saying `why` it must be one."""
    if not isinstance(prm, AdaptablePRM):
        raise UserError(
            f"{why} changes the PRM's own weights: it needs a transformers PRM (backend 'hf'), "
            f"not {type(prm).__name__} '{prm.name}'"
        )
    return prm


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
