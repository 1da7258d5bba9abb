"""The built-in task `arith`: procedural multi-step arithmetic with step-by-step solutions.

A problem is an expression such as `Compute 47+18*3-25.`; its reference solution does one
operation per step (multiplication first, then left to right) and rewrites what is left,
so every step can be checked on its own:

    18*3=54 so 47+54-25

    47+54=101 so 101-25

    101-25=76

    \\boxed{76}

Splits are deterministic and disjoint: `test` is drawn first, `calib` avoids every test
question, `train` avoids both. Difficulty comes from the number of operations and the
operand digits, both recorded in `Problem.meta`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from ias.errors import UserError
from ias.tasks.answers import extract_answer
from ias.tasks.base import register_task
from ias.tasks.grading import answers_match
from ias.types import STEP_DELIMITER, Problem

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithConfig:
    """Difficulty knobs. Weights are relative; `mul_digits` bounds the right factor."""

    ops_weights: tuple[tuple[int, float], ...] = ((1, 0.2), (2, 0.3), (3, 0.3), (4, 0.2))
    digit_weights: tuple[tuple[int, float], ...] = ((1, 0.55), (2, 0.45))
    operators: str = "+-*"
    mul_digits: int = 1
    seed: int = 0
    sizes: tuple[tuple[str, int], ...] = (("test", 500), ("calib", 500), ("train", 200_000))


def _pick(rng: random.Random, weights: tuple[tuple[int, float], ...]) -> int:
    values, w = zip(*weights)
    return rng.choices(values, weights=w)[0]


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def solve_steps(tokens: list) -> list[str] | None:
    """The reference steps for an expression given as [n, op, n, op, n...].

    Returns None when an intermediate result would be negative (such problems are
    redrawn, so every number the model reads or writes is a plain non-negative integer).
    """
    tokens = list(tokens)
    steps = []
    while len(tokens) > 1:
        ops = tokens[1::2]
        i = 2 * ops.index("*") + 1 if "*" in ops else 1
        a, op, b = tokens[i - 1], tokens[i], tokens[i + 1]
        value = OPS[op](a, b)
        if value < 0:
            return None
        tokens[i - 1 : i + 2] = [value]
        step = f"{a}{op}{b}={value}"
        if len(tokens) > 1:
            step += " so " + "".join(str(t) for t in tokens)
        steps.append(step)
    steps.append(f"\\boxed{{{tokens[0]}}}")
    return steps


def draw_problem(rng: random.Random, config: ArithConfig) -> tuple[str, list[str], dict]:
    """One random problem: (expression, reference steps, difficulty features)."""
    while True:
        n_ops = _pick(rng, config.ops_weights)
        digits = _pick(rng, config.digit_weights)
        tokens: list = [_number(rng, digits)]
        for _ in range(n_ops):
            op = rng.choice(config.operators)
            d = min(digits, config.mul_digits) if op == "*" else digits
            tokens += [op, _number(rng, d)]
        steps = solve_steps(tokens)
        if steps is not None:
            expression = "".join(str(t) for t in tokens)
            return expression, steps, {"ops": n_ops, "digits": digits}


#: For chat models (`ias.prompting`): the step format and the answer format the grader reads.
ARITH_INSTRUCTION = (
    "Compute the expression one operation per step (multiplication first, then left to "
    "right), with a blank line after each step, and end with the answer in \\boxed{}."
)


def _worked_example(tokens: list) -> tuple[str, str]:
    """(question, solution) of an expression whose steps never go negative."""
    steps = solve_steps(tokens)
    if steps is None:
        raise ValueError(f"a worked example goes negative: {tokens}")
    return f"Compute {''.join(map(str, tokens))}.", STEP_DELIMITER.join(steps)


#: Worked examples in the task's own step format, made by its own solver.
ARITH_EXAMPLES = tuple(_worked_example(tokens) for tokens in ([7, "+", 2, "*", 3], [9, "-", 4], [5, "*", 3, "+", 8]))


@dataclass
class ArithTask:
    """The procedural arithmetic task; `split` may also be `seed:N` for fresh problems.

    `prompt` is the zoo's raw format (the question and a blank line); chat models get
    `instruction` and `examples` instead (see `ias.prompting`).
    """

    config: ArithConfig = field(default_factory=ArithConfig)
    name: str = "arith"
    instruction: str = ARITH_INSTRUCTION
    examples: tuple[tuple[str, str], ...] = ARITH_EXAMPLES

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.config.sizes)

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        sizes = dict(self.config.sizes)
        if split.startswith("seed:"):
            return self._extra(split, limit if limit is not None else 500)
        if split not in sizes:
            raise UserError(f"arith has no split '{split}'; splits: {', '.join(sizes)} or seed:N")
        n = sizes[split] if limit is None else min(limit, sizes[split])
        return _split_problems(self.config, split, n)

    def _extra(self, split: str, n: int) -> list[Problem]:
        try:
            seed = int(split.split(":", 1)[1])
        except ValueError:
            raise UserError(f"bad split '{split}': use seed:N with an integer N") from None
        rng = random.Random(f"arith-extra-{self.config.seed}-{seed}")
        return [_problem(f"arith-{split}-{i:05d}", *draw_problem(rng, self.config)) for i in range(n)]

    def prompt(self, problem: Problem) -> str:
        return problem.question + STEP_DELIMITER

    def extract(self, text: str) -> str | None:
        return extract_answer(text)

    def grade(self, problem: Problem, text: str) -> bool:
        return answers_match(self.extract(text), problem.answer)


def _problem(pid: str, expression: str, steps: list[str], meta: dict) -> Problem:
    answer = steps[-1][len("\\boxed{") : -1]
    return Problem(
        id=pid,
        question=f"Compute {expression}.",
        answer=answer,
        solution=STEP_DELIMITER.join(steps),
        meta={**meta, "steps": len(steps)},
    )


#: Consecutive draws of taken questions after which a split is judged exhausted: with one
#: question left among 1,000 the chance of a false alarm is e^-20.
MAX_MISSES = 20_000


@lru_cache(maxsize=8)
def _split_problems(config: ArithConfig, split: str, n: int) -> list[Problem]:
    """The first n problems of a split, avoiding every question of the splits before it."""
    order = [name for name, _ in config.sizes]
    taken: set[str] = set()
    for earlier in order[: order.index(split)]:
        taken |= {p.question for p in _split_problems(config, earlier, dict(config.sizes)[earlier])}
    before = len(taken)
    rng = random.Random(f"arith-{config.seed}-{split}")
    unique = split != "train"  # train is a stream: repeats are fine, leaks are not
    out: list[Problem] = []
    misses = 0
    while len(out) < n:
        expression, steps, meta = draw_problem(rng, config)
        question = f"Compute {expression}."
        if question in taken:
            misses += 1
            if misses == MAX_MISSES:  # the options allow fewer distinct questions than the splits need
                raise UserError(
                    f"arith with these options has too few distinct questions for split '{split}': found "
                    f"{len(out)} of {n} beside the {before} of the splits before it; allow more ops or digits, "
                    "or use a seed:N split"
                )
            continue
        misses = 0
        if unique:
            taken.add(question)
        out.append(_problem(f"arith-{split}-{len(out):05d}", expression, steps, meta))
    return out


@register_task("arith")
def make_arith(
    seed: int = 0,
    max_ops: int | None = None,
    digits: int | None = None,
    operators: str | None = None,
    **unknown,
) -> ArithTask:
    """`arith` with optional knobs: max number of operations, max operand digits, operators."""
    if unknown:
        raise UserError(f"arith does not take option(s): {', '.join(sorted(unknown))}")
    config = ArithConfig(seed=_whole("seed", seed, -MAX_SEED, MAX_SEED))
    if max_ops is not None:
        max_ops = _whole("max_ops", max_ops, 1, MAX_OPS)
        kept = tuple((k, w) for k, w in config.ops_weights if k <= max_ops) or ((max_ops, 1.0),)
        config = _replace(config, ops_weights=kept)
    if digits is not None:
        digits = _whole("digits", digits, 1, MAX_DIGITS)
        kept = tuple((k, w) for k, w in config.digit_weights if k <= digits)
        kept += tuple((k, 0.1) for k in range(len(config.digit_weights) + 1, digits + 1))
        config = _replace(config, digit_weights=kept)
    if operators is not None:
        if not operators or set(operators) - set(OPS):
            raise UserError(f"arith operators must be drawn from '+-*', got '{operators}'")
        config = _replace(config, operators=operators)
    return ArithTask(config)


#: Bounds of arith's options: operands stay far below Python's 4300-digit limit on int-to-text.
MAX_DIGITS = 100
MAX_OPS = 100
MAX_SEED = 2**63


def _whole(name: str, value: object, low: int, high: int) -> int:
    """An arith option that must be a whole number in [low, high]; anything else is one line."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = value if isinstance(value, (bool, int, float)) and len(repr(value)) < 40 else type(value).__name__
        raise UserError(f"arith {name} must be a whole number from {low} to {high}, got {shown}")
    return value


def _replace(config: ArithConfig, **changes) -> ArithConfig:
    from dataclasses import replace

    return replace(config, **changes)
