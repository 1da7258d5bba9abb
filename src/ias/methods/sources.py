"""Where an engine's samples come from: the live policy and PRM, or a shared pool.

`LiveSource` draws with the policy (sample j of a question seeded by (run seed, question
id, j), whatever the wave) and reads with the PRM, one call per kind of request. `PoolSource`
serves a pool in which every question already has N samples (`ias eval`), cutting a sample
where the live early exit would have stopped it and sampling live past the pool's end. The same method
on the same seeds therefore gives the same answers and spends the same tokens on both.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import defaultdict
from typing import Sequence

from ias.confidence import live_exit
from ias.errors import PromptTooLong, UserError
from ias.methods.base import Draw, Extend, Question, QuestionReading, ReadSteps, Scored
from ias.policy.base import Policy, SamplingParams, derive_seed
from ias.prm.base import PRM, StepScores
from ias.prompting import render_prompt
from ias.scaling.pool import PoolProblem, PoolSample
from ias.scaling.select import aggregate
from ias.tasks.base import Task
from ias.types import STEP_DELIMITER, Sample, split_steps


class LiveSource:
    """Requests answered by the real policy and PRM. `grade`: grade every sample against
    the problem's reference (a run over a dataset; `ias ask` has no reference)."""

    def __init__(
        self, task: Task, policy: Policy, prm: PRM | None, params: SamplingParams, seed: int, grade: bool = True
    ):
        self.task, self.policy, self.prm, self.params, self.seed, self.grade = task, policy, prm, params, seed, grade

    def read_questions(self, questions: Sequence[Question]) -> list[QuestionReading]:
        readings = self._prm().score([(q.problem.question, []) for q in questions])
        return [question_reading(r) for r in readings]

    def draw(self, asks: Sequence[tuple[Question, int, Draw]]) -> list[list[Scored]]:
        drawn: list[list[Sample]] = [[] for _ in asks]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (_, _, ask) in enumerate(asks):
            groups[(ask.logprobs, ask.exit_below, ask.exit_window)].append(i)
        for (logprobs, exit_below, window), idx in groups.items():
            trim = exit_below is not None and not getattr(self.policy, "stops_on_confidence", True)
            params = dataclasses.replace(
                self.params,
                logprobs=self.params.logprobs or logprobs or trim,
                exit_below=None if trim else exit_below,
                exit_window=window,
            )
            for i, samples in zip(idx, self._sample([asks[i] for i in idx], params)):
                drawn[i] = [_trimmed(s, exit_below, window) for s in samples] if trim else samples
            if trim and not self._said_trim:
                self._said_trim = True
                print(
                    f"ias: {type(self.policy).__name__} cannot stop a sample on its confidence: DeepConf's "
                    "later samples are finished, then trimmed where the exit would have stopped them "
                    "(their tokens are counted in full)",
                    file=sys.stderr,
                )
        to_read = [(i, j) for i, (_, _, ask) in enumerate(asks) if ask.read for j in range(len(drawn[i]))]
        readings = (
            self._prm().score([(asks[i][0].problem.question, split_steps(drawn[i][j].text)) for i, j in to_read])
            if to_read
            else []
        )
        by_sample = dict(zip(to_read, readings))
        return [
            [self._scored(q, first + j, s, by_sample.get((i, j)), ask.logprobs) for j, s in enumerate(drawn[i])]
            for i, (q, first, ask) in enumerate(asks)
        ]

    def _sample(self, asks: Sequence[tuple[Question, int, Draw]], params: SamplingParams) -> list[list[Sample]]:
        """Each ask's samples first .. first + count - 1, in one policy call: `n = count` when
        every ask wants as many, else one sample per prompt row (sample j of a seed is the same
        sample either way), so questions at different wave sizes still share the call; for a
        backend whose offsets are not free (a server), one call per wave size."""
        prompts = [self._prompt(q) for q, _, _ in asks]
        seeds = [derive_seed(self.seed, q.id) for q, _, _ in asks]
        counts = [ask.count for _, _, ask in asks]
        if len(set(counts)) > 1 and not getattr(self.policy, "offsets_are_free", True):
            out: list[list[Sample]] = [[] for _ in asks]  # a server: one call per wave size
            for count in sorted(set(counts)):
                idx = [i for i, c in enumerate(counts) if c == count]
                got = self.policy.sample(
                    [prompts[i] for i in idx], count, params, [seeds[i] for i in idx], first=[asks[i][1] for i in idx]
                )
                for i, samples in zip(idx, got):
                    out[i] = samples
            return out
        if len(set(counts)) == 1:
            return self.policy.sample(prompts, counts[0], params, seeds, first=[first for _, first, _ in asks])
        rows = [(i, first + j) for i, (_, first, ask) in enumerate(asks) for j in range(ask.count)]
        got = self.policy.sample(
            [prompts[i] for i, _ in rows], 1, params, [seeds[i] for i, _ in rows], first=[j for _, j in rows]
        )
        out = [[] for _ in asks]
        for (i, _), (sample,) in zip(rows, got):
            out[i].append(sample)
        return out

    def extend(self, asks: Sequence[tuple[Question, Extend]]) -> list[list[list[Sample]]]:
        jobs = [(i, b) for i, (_, ask) in enumerate(asks) for b in range(len(ask.prefixes))]
        out: list[list[list[Sample]]] = [[[] for _ in ask.prefixes] for _, ask in asks]
        by_shape: dict[tuple[int, bool], list[tuple[int, int]]] = defaultdict(list)
        for i, b in jobs:
            by_shape[(asks[i][1].counts[b], asks[i][1].to_end)].append((i, b))
        for (count, to_end), idx in by_shape.items():
            stop = self.params.stop if to_end else tuple(dict.fromkeys([*self.params.stop, STEP_DELIMITER]))
            params = dataclasses.replace(self.params, stop=stop)
            prompts = [self._prompt(asks[i][0], asks[i][1].prefixes[b]) for i, b in idx]
            seeds = [derive_seed(self.seed, asks[i][0].id, *asks[i][1].key, b) for i, b in idx]
            for (i, b), samples in zip(idx, self._continue(prompts, count, params, seeds)):
                out[i][b] = samples
        return out

    def _continue(self, prompts: list[str], count: int, params: SamplingParams, seeds: list[int]) -> list[list[Sample]]:
        """`count` continuations of each partial solution; one that already fills the policy's
        context cannot grow: it gets one empty continuation ended by length (so it finishes
        as it stands), and the others are drawn as asked."""
        try:
            return self.policy.sample(prompts, count, params, seeds)
        except PromptTooLong as err:
            full = err.index
            rest = [k for k in range(len(prompts)) if k != full]
            drawn = iter(self._continue([prompts[k] for k in rest], count, params, [seeds[k] for k in rest]))
            return [[Sample("", 0, 0, "length")] if k == full else next(drawn) for k in range(len(prompts))]

    def read_steps(self, asks: Sequence[tuple[Question, ReadSteps]]) -> list[list[StepScores]]:
        flat = [(q.problem.question, list(steps)) for q, ask in asks for steps in ask.solutions]
        readings = iter(self._prm().score(flat))
        return [[next(readings) for _ in ask.solutions] for _, ask in asks]

    _said_trim = False

    def _prompt(self, question: Question, steps: Sequence[str] = ()) -> str:
        return render_prompt(self.task, question.problem, self.policy, list(steps))

    def _prm(self) -> PRM:
        if self.prm is None:
            raise UserError("this strategy reads a PRM; pass --prm (or use a strategy that only votes)")
        return self.prm

    def _scored(
        self, question: Question, index: int, sample: Sample, reading: StepScores | None, logprobs: bool
    ) -> Scored:
        answer = question.extract(sample.text)
        correct = self.task.grade(question.problem, sample.text) if self.grade else None
        score, lower, raw = last_step(reading)
        return Scored(
            index,
            sample.text,
            answer,
            score,
            lower,
            raw,
            sample.generated_tokens,
            reading.tokens if reading else 0,
            sample.finish_reason,
            tuple(sample.logprobs) if logprobs and sample.logprobs is not None else None,
            correct,
            sample.prompt_tokens,
            tuple(reading.scores) if reading and reading.scores else None,
            tuple(reading.quantiles[-1]) if reading and reading.quantiles and score is not None else None,
        )


def _trimmed(sample: Sample, threshold: float, window: int) -> Sample:
    """A sample finished in full, marked where the live exit would have stopped it (its
    finish reason `exit`: left out of DeepConf's vote); its generated tokens stay counted."""
    end = live_exit(sample.logprobs or [], sample.finish_reason, threshold, window)
    return sample if end is None else dataclasses.replace(sample, finish_reason="exit")


def last_step(reading: StepScores | None) -> tuple[float | None, float | None, float | None]:
    """A solution's score, lowest quantile and raw score at its last step (None: unread)."""
    if reading is None:
        return None, None, None
    score = aggregate(reading.scores, "last")
    if score == float("-inf"):
        return None, None, None
    lower = reading.quantiles[-1][0] if reading.quantiles else None
    raw = reading.raw_scores[-1] if reading.raw_scores else score
    return score, lower, None if raw is None or math.isnan(raw) else raw


def question_reading(reading: StepScores) -> QuestionReading:
    """The PRM's reading of a question alone as a method sees it."""
    usable = bool(reading.scores) and not reading.skipped
    score = reading.scores[0] if usable else None
    score = None if score is None or math.isnan(score) else score
    lower = reading.quantiles[0][0] if usable and reading.quantiles else None
    raw = reading.raw_scores[0] if usable and reading.raw_scores else score
    return QuestionReading(score, lower, raw, reading.tokens)


class PoolSource:
    """Requests answered from pool records (`ias eval`'s: every sample graded and read, the
    question read), sample j of a question being its record's sample j (`ias eval` hands in
    records in each of its orderings, `ias.scaling.adaptive.reorder`). Past the pool's end,
    `live` (if any) samples. Step-level requests go to `live`: a search cannot be replayed
    on whole samples."""

    def __init__(self, records: Sequence[PoolProblem], live: LiveSource | None = None):
        self.records = {r.id: r for r in records}
        self.live = live
        self._scored: dict[str, list[Scored]] = {}
        self._unscored: dict[str, list[Scored]] = {}

    def read_questions(self, questions: Sequence[Question]) -> list[QuestionReading]:
        out = []
        for q in questions:
            r = self.records[q.id].reading()
            out.append(QuestionReading(r.score, r.quantiles[0] if r.quantiles else None, r.raw(), r.prm_tokens))
        return out

    def draw(self, asks: Sequence[tuple[Question, int, Draw]]) -> list[list[Scored]]:
        out = []
        for q, first, ask in asks:
            pool = self._pool(q.id) if ask.read else self._unread(q.id)
            end = min(first + ask.count, len(pool))
            got = (
                pool[first:end]
                if ask.exit_below is None
                else [_cut(s, ask.exit_below, ask.exit_window) for s in pool[first:end]]
            )
            if first + ask.count > end:
                if self.live is None:
                    raise UserError(
                        f"the pool holds {len(pool)} samples of {q.id}; the method asked for {first + ask.count}"
                    )
                more = dataclasses.replace(ask, count=first + ask.count - end)
                got = got + self.live.draw([(q, end, more)])[0]
            out.append(got)
        return out

    def extend(self, asks: Sequence[tuple[Question, Extend]]) -> list[list[list[Sample]]]:
        return self._live().extend(asks)

    def read_steps(self, asks: Sequence[tuple[Question, ReadSteps]]) -> list[list[StepScores]]:
        return self._live().read_steps(asks)

    def _live(self) -> LiveSource:
        if self.live is None:
            raise UserError("a step-level search runs live, not on a pool of whole samples")
        return self.live

    def _pool(self, qid: str) -> list[Scored]:
        """The question's samples in this ordering, read once. A method that did not ask
        for log-probabilities is given them anyway: it does not read them."""
        if qid not in self._scored:
            self._scored[qid] = [pool_sample(row, j) for j, row in enumerate(self.records[qid].samples)]
        return self._scored[qid]

    def _unread(self, qid: str) -> list[Scored]:
        """The question's samples as a method that reads no PRM gets them: no scores, no PRM tokens."""
        if qid not in self._unscored:
            self._unscored[qid] = [
                dataclasses.replace(
                    s, score=None, lower=None, raw_score=None, prm_tokens=0, step_scores=None, quantiles=None
                )
                for s in self._pool(qid)
            ]
        return self._unscored[qid]


def _cut(sample: Scored, threshold: float, window: int) -> Scored:
    """A pool sample cut where the live exit would have stopped it (its text is then
    unknown: it holds no answer)."""
    if sample.logprobs is None:
        raise UserError("the pool has no token log-probabilities for the early exit")
    end = live_exit(sample.logprobs, sample.finish_reason, threshold, window)
    if end is None:
        return sample
    return dataclasses.replace(
        sample,
        text="",
        answer=None,
        correct=False,
        generated_tokens=end + 1,
        finish_reason="exit",
        logprobs=sample.logprobs[: end + 1],
    )


def pool_sample(row: PoolSample, index: int) -> Scored:
    """A pool record's sample as a method sees it."""
    return Scored(
        index,
        row.text,
        row.answer,
        row.score,
        row.quantiles[0] if row.quantiles else None,
        row.raw(),
        row.generated_tokens,
        row.prm_tokens,
        row.finish_reason,
        row.logprobs,
        row.correct,
        row.prompt_tokens,
        row.step_scores or None,
        row.quantiles or None,
    )
