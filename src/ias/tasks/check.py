"""A check of a task's data and grader together: does every reference solution grade as correct?"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ias.tasks.base import Task
from ias.tasks.grading import MAX_HELPERS, recording_timeouts
from ias.types import Problem

#: How many disagreeing rows `data_check` reports.
MAX_EXAMPLES = 5


def data_check(task: Task, split: str) -> dict[str, Any]:
    """Grade every row's reference solution against its reference answer.

    Returns `{"task", "split", "rows", "agree", "no_solution", "grade_timeouts",
    "disagree_examples"}`, the examples being up to `MAX_EXAMPLES` rows `{"id", "extracted",
    "answer"}` in row order. A row without a reference solution counts as disagreeing (and in
    `no_solution`); a row whose grading timed out, as disagreeing (and in `grade_timeouts`).
    """
    problems = task.problems(split)

    def check(problem: Problem) -> tuple[bool, str | None]:
        if not problem.solution:
            return False, None
        extracted = task.extract(problem.solution)
        return task.grade(problem, problem.solution), extracted

    # Grading is thread-safe; the slow cases run in helper processes, so threads overlap them.
    with recording_timeouts() as timed_out, ThreadPoolExecutor(max_workers=max(1, MAX_HELPERS)) as pool:
        results = list(pool.map(check, problems))
    examples: list[dict[str, str | None]] = []
    for problem, (ok, extracted) in zip(problems, results, strict=True):
        if not ok and len(examples) < MAX_EXAMPLES:
            examples.append({"id": problem.id, "extracted": extracted, "answer": problem.answer})
    return {
        "task": task.name,
        "split": split,
        "rows": len(problems),
        "agree": sum(ok for ok, _ in results),
        "no_solution": sum(1 for p in problems if not p.solution),
        "grade_timeouts": sum(timed_out.values()),
        "disagree_examples": examples,
    }
