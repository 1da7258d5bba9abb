"""Step-level beam search, fixed (`beam`) or instance-adaptive (`ias-beam`: IAS-of-K / IAS-of-M).

Round 0 continues the question `n_init` times (the adaptive search: N_IAS of the question's
lowest calibrated quantile, at most `n_init`). Every round the PRM reads each new candidate
at its last step; candidates the policy finished, or whose text states the answer, leave
the search; of the unfinished ones the best K are kept and each is continued M times. The
fixed search keeps K = k_max and continues M = m_max; the adaptive one takes K from
IAS-of-K and M from IAS-of-M (SPEC §5). The last round (`max_rounds`) continues its beams to
the end. A round is `freq` steps: candidates still open after a step are continued once
more before the PRM reads them.

One statistic ranks candidates, counts the budget and chooses the answer: the lowest
calibrated quantile for the adaptive search, the PRM's score for the fixed one.
Continuation j of beam b in step s of round r is sample j of the seed (run seed, question
id, "beam", r, s, b), so an answer does not depend on the batch it was solved in. Each
round's first Extend carries the decision that made it (the previous round's candidates, the
beams kept, continuations per beam, the open candidates' statistics) into the answer's wave log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Choice, Extend, Question, ReadQuestion, ReadSteps, Solving, question_estimate, unit
from ias.methods.steps import Partial, grow, read
from ias.scaling.budget import ias_of_k, ias_of_m, n_ias
from ias.scaling.select import select


@dataclass(frozen=True)
class _Beam:
    """The settings both searches share and the search itself; `adaptive` is fixed per name."""

    n_init: int = 64
    k_max: int = 8
    m_max: int = 8
    freq: int = 1
    max_rounds: int = 16

    adaptive = False

    def __post_init__(self) -> None:
        for key in ("n_init", "k_max", "m_max", "freq", "max_rounds"):
            if getattr(self, key) < 1:
                raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")

    def solve(self, question: Question) -> Solving:
        p = question_estimate((yield ReadQuestion()), "lower") if self.adaptive else None
        width = self._first_width(p)
        note: dict = {"round": 0, **({"p": round(p, 6)} if p is not None else {}), "per_beam": width}
        beams, per_beam = [Partial()], [width]
        finished: list[Partial] = []
        for round_ in range(self.max_rounds):
            found = yield from self._expand(question, beams, per_beam, round_, note)
            read(found, (yield ReadSteps(tuple(c.steps for c in found))), self.adaptive)
            finished += [c for c in found if c.finished]
            open_ = sorted((c for c in found if not c.finished), key=lambda c: -c.stat)
            if not open_:
                break
            k, m = self._widths([c.stat for c in open_])
            beams, per_beam = open_[:k], [m] * k
            note = {
                "round": round_ + 1,
                "candidates": len(found),
                "kept": k,
                "per_beam": m,
                "open_stats": [round(c.stat, 6) for c in open_],
            }
        return _choice(finished)

    def _expand(
        self, question: Question, beams: list[Partial], per_beam: list[int], round_: int, note: dict
    ) -> Generator[Extend, list, list[Partial]]:
        """`freq` more steps of every beam's continuations (one Extend per step: a beam's M
        continuations share its prompt); the new candidates, finished or not, in order."""
        last = round_ == self.max_rounds - 1
        jobs = list(zip(beams, per_beam))
        found: list[Partial] = []
        for sub in range(self.freq):
            if not jobs:
                break
            groups = yield Extend(
                tuple(b.steps for b, _ in jobs),
                tuple(m for _, m in jobs),
                key=("beam", round_, sub),
                to_end=last,
                note=note if sub == 0 else {"round": round_, "step": sub},
            )
            still_open = []
            for (parent, _), group in zip(jobs, groups):
                for sample in group:
                    child = grow(question, parent, sample)
                    if child.finished or sub == self.freq - 1:
                        found.append(child)
                    else:
                        still_open.append((child, 1))
            jobs = still_open
        return found

    def _widths(self, stats: list[float]) -> tuple[int, int]:
        """How many beams to keep (K) and continuations per beam (M), from the open
        candidates' statistics sorted best first."""
        return min(self.k_max, len(stats)), self.m_max

    def _first_width(self, p: float | None) -> int:
        """Continuations of the question in round 0 (`p`: its lowest calibrated quantile,
        read by the adaptive search only)."""
        return self.n_init


def _choice(finished: list[Partial]) -> Choice:
    """The best finished candidate by the statistic (one with an answer before one
    without); its confidence is its PRM score at the last step, in [0, 1]. The caller
    grades the text."""
    i = select([c.answer for c in finished], [c.stat for c in finished], "best")
    if i is None:
        return Choice.of(None, 0.0)
    chosen = finished[i]
    return Choice(chosen.text, chosen.answer, unit(chosen.score))


@register_method("beam")
@dataclass(frozen=True)
class BeamSearch(_Beam):
    """Fixed beam search: `k_max` beams of `m_max` continuations each, ranked by PRM score."""


@register_method("ias-beam")
@dataclass(frozen=True)
class IASBeamSearch(_Beam):
    """Adaptive beam search: the first width is N_IAS of the question's lowest calibrated
    quantile (at most `n_init`); each round keeps IAS-of-K beams of IAS-of-M continuations
    (at most `k_max` x `m_max`, N_IAS capped at `n_max`) to reach `coverage`."""

    coverage: float = 0.99
    n_max: int = 64

    adaptive = True

    def __post_init__(self) -> None:
        super().__post_init__()
        n_ias(0.5, self.coverage, 1, self.n_max)  # refuses a bad coverage or n_max

    def _first_width(self, p: float | None) -> int:
        return n_ias(p if p is not None else 0.0, self.coverage, 1, self.n_init)

    def _widths(self, stats: list[float]) -> tuple[int, int]:
        k = ias_of_k(stats, self.k_max, self.m_max, self.coverage, self.n_max)
        return k, ias_of_m(stats[:k], self.m_max, self.coverage, self.n_max)
