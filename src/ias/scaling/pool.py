"""The pool's records as types: what `ias eval`'s Best-of-N pool writes for each problem
(`pool/records.jsonl`), what the replays, the oracles and the report read, and each method's
`Outcome` on a problem (eval's `records.jsonl`).

The JSON is the one written before these types existed: `to_json` writes the same keys in
the same order, so a record read and written back is the same bytes, and folders written
before them still load (`from_json` gives a key they lack its default; a key it does not
know is kept and written back after the known ones). `ias solve`'s method records
(`ias.methods.strategy`) are another shape and stay dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

from ias.errors import UserError
from ias.types import Usage


def _floats(values: Any) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)


def _list(values: tuple | None) -> list | None:
    return None if values is None else list(values)


def _required(data: Mapping[str, Any], key: str, what: str) -> Any:
    """`data[key]`, or one line naming what lacks it (a pool file edited by hand, or not a pool)."""
    if not isinstance(data, Mapping) or key not in data:
        raise UserError(f"{what} lacks '{key}': not a record of ias eval's pool")
    return data[key]


def _extra(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The keys of `data` that no field reads, kept so a record is written back whole."""
    return {k: v for k, v in data.items() if k not in known}


@dataclass(frozen=True)
class PoolSample:
    """One pool sample: its text, answer and grade, the PRM's reading (`score`: the aggregated,
    calibrated score, None if unread; `quantiles`: the calibrated quantiles at the last step,
    lowest first) and what it cost. `raw_score` is the raw PRM's last-step score, set in
    memory by `ias eval` for the uncalibrated methods (`has_raw`; without it, `raw()` is the
    score); pool files do not hold it."""

    text: str
    answer: str | None
    correct: bool
    score: float | None
    generated_tokens: int
    prm_tokens: int
    finish_reason: str
    step_scores: tuple[float, ...] | None = None
    quantiles: tuple[float, ...] | None = None
    prm_skipped: str | None = None
    prompt_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    raw_score: float | None = None
    has_raw: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = (
        "text",
        "answer",
        "correct",
        "step_scores",
        "score",
        "quantiles",
        "prm_skipped",
        "prompt_tokens",
        "generated_tokens",
        "prm_tokens",
        "finish_reason",
        "logprobs",
        "raw_score",
    )

    def raw(self) -> float | None:
        """The raw PRM's score where it was read, else the (calibrated) score."""
        return self.raw_score if self.has_raw else self.score

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolSample:
        def need(key: str) -> Any:
            return _required(data, key, "a pool sample")

        return cls(
            text=need("text"),
            answer=need("answer"),
            correct=bool(need("correct")),
            score=need("score"),
            generated_tokens=need("generated_tokens"),
            prm_tokens=need("prm_tokens"),
            finish_reason=need("finish_reason"),
            step_scores=_floats(data.get("step_scores")),
            quantiles=_floats(data.get("quantiles")),
            prm_skipped=data.get("prm_skipped"),
            prompt_tokens=data.get("prompt_tokens", 0),
            logprobs=_floats(data.get("logprobs")),
            raw_score=data.get("raw_score"),
            has_raw="raw_score" in data,
            extra=_extra(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "answer": self.answer,
            "correct": self.correct,
            "step_scores": _list(self.step_scores),
            "score": self.score,
            "quantiles": _list(self.quantiles),
            "prm_skipped": self.prm_skipped,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prm_tokens": self.prm_tokens,
            "finish_reason": self.finish_reason,
            **({"logprobs": list(self.logprobs)} if self.logprobs is not None else {}),
            **({"raw_score": self.raw_score} if self.has_raw else {}),
            **self.extra,
        }


@dataclass(frozen=True)
class PoolReading:
    """The PRM's reading of the question alone (t = 0), the difficulty estimate IAS budgets
    from: its score (the calibrated median with a calibrator), quantiles, cost and skip
    reason; `raw_score` as for `PoolSample`."""

    score: float | None
    quantiles: tuple[float, ...] | None = None
    prm_tokens: int = 0
    skipped: str | None = None
    raw_score: float | None = None
    has_raw: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = ("score", "quantiles", "prm_tokens", "skipped", "raw_score")

    def raw(self) -> float | None:
        return self.raw_score if self.has_raw else self.score

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolReading:
        return cls(
            score=_required(data, "score", "a question reading"),
            quantiles=_floats(data.get("quantiles")),
            prm_tokens=data.get("prm_tokens", 0),
            skipped=data.get("skipped"),
            raw_score=data.get("raw_score"),
            has_raw="raw_score" in data,
            extra=_extra(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "quantiles": _list(self.quantiles),
            "prm_tokens": self.prm_tokens,
            "skipped": self.skipped,
            **({"raw_score": self.raw_score} if self.has_raw else {}),
            **self.extra,
        }


@dataclass(frozen=True)
class PoolChoice:
    """One selection rule's choice over a problem's samples (`index` None: nothing to choose)."""

    index: int | None
    answer: str | None
    correct: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolChoice:
        return cls(data.get("index"), data.get("answer"), bool(data.get("correct", False)))

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "answer": self.answer, "correct": self.correct}


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage(
        data.get("prompt_tokens", 0), data.get("generated_tokens", 0), data.get("prm_tokens", 0), data.get("samples", 0)
    )


@dataclass(frozen=True)
class PoolProblem:
    """One problem of the pool: the problem, the reported choice (`selection`'s), every
    selection rule's choice, the usage, every sample in the order drawn and, when the pool
    read it, the question alone."""

    id: str
    question: str
    samples: tuple[PoolSample, ...]
    reference: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    correct: bool = False
    choices: dict[str, PoolChoice] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    question_reading: PoolReading | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = (
        "id",
        "question",
        "reference",
        "meta",
        "answer",
        "correct",
        "choices",
        "usage",
        "samples",
        "question_reading",
    )

    @property
    def p_true(self) -> float:
        """The question's true success rate in the pool: its share of right samples."""
        return sum(s.correct for s in self.samples) / len(self.samples)

    def with_raw_question(self, score: float | None) -> PoolProblem:
        """The record with the raw PRM's score of the question alone (None: unreadable)."""
        return replace(self, question_reading=replace(self.reading(), raw_score=score, has_raw=True))

    def with_raw_samples(self, scores: Sequence[float | None]) -> PoolProblem:
        """The record with each sample's raw PRM score (None: unreadable), in sample order."""
        if len(scores) != len(self.samples):
            raise ValueError(f"{len(scores)} raw scores for the {len(self.samples)} samples of {self.id}")
        return replace(self, samples=tuple(replace(s, raw_score=x, has_raw=True) for s, x in zip(self.samples, scores)))

    def reading(self) -> PoolReading:
        """The question's reading, which `ias eval`'s pool always holds."""
        if self.question_reading is None:
            raise UserError(f"pool record {self.id} has no reading of the question alone (not ias eval's pool)")
        return self.question_reading

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolProblem:
        what = f"pool record {data.get('id', '?')}" if isinstance(data, Mapping) else "a pool record"
        samples = _required(data, "samples", what)
        if not isinstance(samples, list) or not samples:
            raise UserError(f"{what} has no samples")
        reading = data.get("question_reading")
        return cls(
            id=_required(data, "id", what),
            question=_required(data, "question", what),
            samples=tuple(PoolSample.from_json(s) for s in samples),
            reference=data.get("reference", ""),
            meta=data.get("meta", {}),
            answer=data.get("answer"),
            correct=bool(data.get("correct", False)),
            choices={how: PoolChoice.from_json(c) for how, c in data.get("choices", {}).items()},
            usage=_usage(data.get("usage", {})),
            question_reading=PoolReading.from_json(reading) if reading is not None else None,
            extra=_extra(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "reference": self.reference,
            "meta": self.meta,
            "answer": self.answer,
            "correct": self.correct,
            "choices": {how: c.to_json() for how, c in self.choices.items()},
            "usage": self.usage.to_dict(),
            "samples": [s.to_json() for s in self.samples],
            **({"question_reading": self.question_reading.to_json()} if self.question_reading else {}),
            **self.extra,
        }


@dataclass
class Outcome:
    """What a method chose on one problem and what it spent. Averaged over orderings of the
    pool (`ias.scaling.adaptive.expected`), `correct` is the chance it is right and the counts
    are means. `confidence`: the chosen answer's chance of being right, as the method's user
    is told it."""

    answer: str | None
    correct: bool | float
    samples: int | float
    tokens: int | float
    prm_tokens: int | float
    confidence: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As eval's `records.jsonl` holds it: fractions to 4 places."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        def need(key: str) -> Any:
            return _required(data, key, "a method's outcome")

        return cls(
            need("answer"), need("correct"), need("samples"), need("tokens"), need("prm_tokens"), data.get("confidence")
        )


@dataclass(frozen=True)
class ProblemOutcomes:
    """One line of eval's `records.jsonl`: a problem's true success rate in the pool, its
    budget estimates (the calibrated lower bound and the raw PRM's score of the question)
    and every method's outcome."""

    id: str
    p_true: float
    p_lower: float
    p_uncalibrated: float
    methods: dict[str, Outcome]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProblemOutcomes:
        def need(key: str) -> Any:
            return _required(data, key, "an eval record")

        return cls(
            need("id"),
            need("p_true"),
            need("p_lower"),
            need("p_uncalibrated"),
            {name: Outcome.from_json(o) for name, o in need("methods").items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "p_true": round(self.p_true, 4),
            "p_lower": round(self.p_lower, 4),
            "p_uncalibrated": round(self.p_uncalibrated, 4),
            "methods": {name: o.to_json() for name, o in self.methods.items()},
        }
