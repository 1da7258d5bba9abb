"""The task protocol and its registry: a task is a problem source plus a grader."""

from __future__ import annotations

from typing import Callable, Protocol

from ias.errors import UserError
from ias.types import Problem


class Task(Protocol):
    """A source of problems with a way to prompt a policy and grade its answers."""

    name: str

    @property
    def splits(self) -> tuple[str, ...]:
        """The names `problems` accepts (read-only: a task may compute them)."""
        ...

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """The split's problems in a fixed order; `limit` keeps the first N."""
        ...

    def prompt(self, problem: Problem) -> str:
        """The raw text a policy without a chat template continues to write a solution
        (`ias.prompting.render_prompt` decides which prompt a policy gets)."""
        ...

    def extract(self, text: str) -> str | None:
        """The final answer written in a solution, or None when there is none."""
        ...

    def grade(self, problem: Problem, text: str) -> bool:
        """Whether a solution's final answer equals the problem's reference answer."""
        ...


TaskFactory = Callable[..., Task]
_TASKS: dict[str, TaskFactory] = {}


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def add(factory: TaskFactory) -> TaskFactory:
        _TASKS[name] = factory
        return factory

    return add


def task_names() -> list[str]:
    _load_builtin_tasks()
    return sorted(_TASKS)


def get_task(spec: str, **options) -> Task:
    """Build a task from its name: `arith`, `gsm8k`, `math500`, `jsonl:PATH`, `hf:NAME`.

    Options are passed to the task's factory (a path, a field mapping, difficulty knobs),
    except the prompt options every task takes (`prompt_template`, `chat`): they are kept
    on the task as `task.prompting` for `ias.prompting.render_prompt`.
    """
    from ias.prompting import split_prompt_options

    _load_builtin_tasks()
    name, _, arg = spec.partition(":")
    if name not in _TASKS:
        raise UserError(f"unknown task '{spec}'; known: {', '.join(sorted(_TASKS))}")
    prompting, options = split_prompt_options(options)
    if arg:
        options = {"source": arg, **options}
    task = _TASKS[name](**options)
    if prompting is not None:
        # An optional attribute outside the protocol: render_prompt reads it with getattr.
        setattr(task, "prompting", prompting)
    return task


def _load_builtin_tasks() -> None:
    # Imported for their registration side effect; kept lazy so `ias --help` stays fast.
    import ias.tasks.arith  # noqa: F401
    import ias.tasks.files  # noqa: F401
