"""Tasks read from files: `gsm8k`, `math500`, `jsonl:PATH`, and `hf:NAME` (Hugging Face).

Where the built-in data lives, first match wins:
  1. the factory's `path=` (one JSONL file, used for whichever split is asked) or
     `data_dir=` (a folder holding `gsm8k/test.jsonl`... or the split files themselves);
  2. the environment variable `IAS_DATA_DIR` (same two layouts);
  3. a folder `shared/data` found going up from the current directory, then going up
     from this file (a checkout with `shared/` beside it or above it).

Rows are validated as they are read: a line that is not a JSON object, lacks a field or
has an empty question raises `UserError` naming the file and the line; nothing is skipped
silently (blank lines are not rows).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from ias.errors import MissingExtraError, UserError
from ias.tasks.answers import extract_answer
from ias.tasks.base import register_task
from ias.tasks.grading import answers_match
from ias.types import Problem

DATA_DIR_ENV = "IAS_DATA_DIR"

_INSTRUCTIONS = (
    "Solve the following math problem step by step. Separate the steps with a blank "
    "line, and put the final answer in \\boxed{{}}."
)

#: Prompt for `gsm8k` (a `str.format` template with `{question}`).
GSM8K_PROMPT = _INSTRUCTIONS + "\n\nProblem: {question}\n\nSolution:\n"
#: Prompt for `math500`.
MATH500_PROMPT = _INSTRUCTIONS + "\n\nProblem: {question}\n\nSolution:\n"
#: Prompt for `jsonl:PATH` and `hf:NAME` tasks.
GENERIC_PROMPT = _INSTRUCTIONS + "\n\nProblem: {question}\n\nSolution:\n"

#: For chat models (`ias.prompting`): the system turn of every file task; the question is
#: the user turn. The same request as the raw prompts above, in plain text (no format braces).
CHAT_INSTRUCTION = _INSTRUCTIONS.format()

_CALCULATOR_RE = re.compile(r"<<[^<>\n]*>>")


# --- locating the files ------------------------------------------------------------------


def find_data_file(
    source: str,
    split: str,
    *,
    path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """The JSONL file of a built-in source's split (`gsm8k`, `test` -> .../gsm8k/test.jsonl)."""
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"{source} data file not found: {file}; check --path")
        return file
    relative = Path(source) / f"{split}.jsonl"
    if data_dir is not None:
        found = _in_data_dir(Path(data_dir).expanduser(), source, split)
        if found is None:
            raise UserError(
                f"{source} {split} data not found in {data_dir} (looked for {relative} and "
                f"{split}.jsonl); check the data_dir option"
            )
        return found
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        found = _in_data_dir(Path(env).expanduser(), source, split)
        if found is None:
            raise UserError(
                f"{source} {split} data not found in {DATA_DIR_ENV}={env} (looked for "
                f"{relative}); fix {DATA_DIR_ENV} or pass --path FILE"
            )
        return found
    for root in _shared_data_dirs():
        file = root / relative
        if file.is_file():
            return file
    raise UserError(
        f"{source} {split} data not found: no shared/data/{relative.as_posix()} above "
        f"{Path.cwd()}; pass --path FILE or set {DATA_DIR_ENV} to the folder holding "
        f"{source}/{split}.jsonl"
    )


def _in_data_dir(root: Path, source: str, split: str) -> Path | None:
    for file in (root / source / f"{split}.jsonl", root / f"{split}.jsonl"):
        if file.is_file():
            return file
    return None


def _shared_data_dirs() -> list[Path]:
    found: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
    return found


# --- reading rows ------------------------------------------------------------------------


#: Longest row (bytes, without its newline) a JSONL data file may hold: a longer one is a
#: one-line error, never read whole (a 50 MB row used to hang the parser).
MAX_ROW_BYTES = 1 << 20


def read_jsonl(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for every non-blank line, read as a stream of rows of at most
    `MAX_ROW_BYTES`; a bad or oversized line raises UserError."""
    rows = []
    try:
        with open(file, "rb") as f:
            number = 0
            while line := f.readline(MAX_ROW_BYTES + 2):  # the row, its newline, one byte more
                number += 1
                if len(line.rstrip(b"\r\n")) > MAX_ROW_BYTES:
                    raise UserError(
                        f"{file}:{number}: a row longer than {MAX_ROW_BYTES >> 20} MB (the limit per "
                        "row); shorten it or drop it"
                    )
                row = _parse_row(file, number, line)
                if row is not None:
                    rows.append((number, row))
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror or e}") from None
    return rows


def _parse_row(file: Path, number: int, line: bytes) -> dict[str, Any] | None:
    """One JSONL line as a row (None when blank)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{file}:{number}: not UTF-8 text") from None
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file}:{number}: not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # a number past Python's digit limit; nesting too deep
        raise UserError(f"{file}:{number}: not readable JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(row, dict):
        raise UserError(f"{file}:{number}: a row must be a JSON object")
    return row


@overload
def _text_field(row: dict, name: str, where: str, *, required: Literal[True] = True) -> str: ...


@overload
def _text_field(row: dict, name: str, where: str, *, required: bool) -> str | None: ...


def _text_field(row: dict, name: str, where: str, *, required: bool = True) -> str | None:
    if name not in row or row[name] is None:
        if required:
            raise UserError(f"{where}: missing field '{name}' (fields: {', '.join(map(str, row))})")
        return None
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: field '{name}' must be text, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN would become the answer "nan"
        raise UserError(f"{where}: field '{name}' is {value}, not a finite number or text")
    text = str(value).strip()
    if required and not text:
        raise UserError(f"{where}: field '{name}' is empty")
    return text


def split_gsm8k_answer(text: str, where: str = "gsm8k row") -> tuple[str, str]:
    """(solution, answer) of a GSM8K answer field: the answer follows the last `####`, the
    solution is what comes before, without its `<<...>>` calculator annotations."""
    before, sep, after = text.rpartition("####")
    answer = after.strip()
    if not sep or not answer:
        raise UserError(f"{where}: the answer field has no final '#### N' line")
    return _CALCULATOR_RE.sub("", before).strip(), answer


# --- the tasks ---------------------------------------------------------------------------


RowParser = Callable[[dict, str, str, int], Problem]


@dataclass
class FileTask:
    """A task whose problems come from rows (a JSONL file or a dataset) per split.

    `template` is the raw prompt (`str.format` with `{question}`); chat models get
    `instruction` and `examples` instead (see `ias.prompting`).
    """

    name: str
    splits: tuple[str, ...]
    template: str
    rows_of: Callable[[str], tuple[str, Iterable[tuple[int, dict]]]]
    parse_row: RowParser
    instruction: str = CHAT_INSTRUCTION
    examples: tuple[tuple[str, str], ...] = ()
    _cache: dict[str, list[Problem]] = field(default_factory=dict, repr=False)

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        if split not in self._cache:
            where, rows = self.rows_of(split)
            problems = []
            seen: dict[str, str] = {}
            for index, (number, row) in enumerate(rows):
                at = f"{where}:{number}"
                problem = self.parse_row(row, at, split, index)
                if problem.id in seen:
                    raise UserError(f"{at}: duplicate id '{problem.id}' (first at {seen[problem.id]})")
                seen[problem.id] = at
                problems.append(problem)
            if not problems:
                raise UserError(f"{where} holds no rows for split '{split}'; check the file or the split")
            self._cache[split] = problems
        problems = self._cache[split]
        return list(problems if limit is None else problems[: max(0, limit)])

    def prompt(self, problem: Problem) -> str:
        return self.template.format(question=problem.question)

    def extract(self, text: str) -> str | None:
        return extract_answer(text)

    def grade(self, problem: Problem, text: str) -> bool:
        return answers_match(self.extract(text), problem.answer)


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise UserError(f"task {name} has no split '{split}'; splits: {', '.join(splits)}")


def _file_rows(source: str, splits: tuple[str, ...], path, data_dir):
    if path is not None:
        find_data_file(source, splits[0], path=path)  # a missing file fails at once

    def rows_of(split: str):
        _check_split(source, split, splits)
        file = find_data_file(source, split, path=path, data_dir=data_dir)
        return str(file), read_jsonl(file)

    return rows_of


@register_task("gsm8k")
def gsm8k(path: str | None = None, data_dir: str | None = None) -> FileTask:
    """GSM8K: rows `question`, `answer` (a solution ending in `#### N`)."""
    splits = ("test", "train")

    def parse_row(row: dict, where: str, split: str, index: int) -> Problem:
        question = _text_field(row, "question", where)
        solution, answer = split_gsm8k_answer(_text_field(row, "answer", where), where)
        steps = [line for line in solution.split("\n") if line.strip()]
        return Problem(
            id=f"gsm8k-{split}-{index:05d}",
            question=question,
            answer=answer,
            solution=f"{solution}\n#### {answer}",
            meta={"source": "gsm8k", "split": split, "steps": len(steps)},
        )

    return FileTask("gsm8k", splits, GSM8K_PROMPT, _file_rows("gsm8k", splits, path, data_dir), parse_row)


@register_task("math500")
def math500(path: str | None = None, data_dir: str | None = None) -> FileTask:
    """MATH-500: rows `problem`, `solution`, `answer`, `subject`, `level`."""
    splits = ("test",)

    def parse_row(row: dict, where: str, split: str, index: int) -> Problem:
        meta: dict[str, Any] = {"source": "math500", "split": split}
        for key in ("level", "subject", "unique_id"):
            if row.get(key) is not None:
                meta[key] = row[key]
        return Problem(
            id=f"math500-{split}-{index:05d}",
            question=_text_field(row, "problem", where),
            answer=_text_field(row, "answer", where),
            solution=_text_field(row, "solution", where, required=False) or None,
            meta=meta,
        )

    return FileTask("math500", splits, MATH500_PROMPT, _file_rows("math500", splits, path, data_dir), parse_row)


def _generic_parser(
    source: str,
    question_field: str | None,
    answer_field: str,
    solution_field: str | None,
    id_field: str | None,
    answer_from_solution: bool,
    meta_fields: Iterable[str] | str,
) -> RowParser:
    meta_fields = _names(meta_fields)

    def parse_row(row: dict, where: str, split: str, index: int) -> Problem:
        q_field = question_field
        if q_field is None:  # default: `question`, else `problem`
            q_field = "question" if "question" in row or "problem" not in row else "problem"
        question = _text_field(row, q_field, where)
        answer = _text_field(row, answer_field, where)
        solution = None
        if solution_field is not None:
            solution = _text_field(row, solution_field, where, required=False) or None
        if answer_from_solution:
            extracted = extract_answer(answer)
            if extracted is None:
                raise UserError(f"{where}: no final answer found in field '{answer_field}'")
            solution = solution or answer
            answer = extracted
        problem_id = f"{source}-{split}-{index:05d}"
        if id_field is not None:
            problem_id = _text_field(row, id_field, where)
        meta = {"source": source, "split": split}
        meta.update({k: row[k] for k in meta_fields if row.get(k) is not None})
        return Problem(id=problem_id, question=question, answer=answer, solution=solution, meta=meta)

    return parse_row


@register_task("jsonl")
def jsonl(
    source: str | None = None,
    path: str | None = None,
    question_field: str | None = None,
    answer_field: str = "answer",
    solution_field: str | None = None,
    id_field: str | None = None,
    answer_from_solution: bool = False,
    meta_fields: Iterable[str] | str = ("level", "subject", "difficulty"),
    split: str = "test",
) -> FileTask:
    """Problems from any JSONL file: `get_task("jsonl:PATH", question_field=..., ...)`.

    `question_field` defaults to `question` (or `problem` when a row has no `question`);
    `answer_from_solution=True` reads the answer field as a solution and takes its final
    answer (`#### N`, `\\boxed{}`...). The file serves any split name asked for; `split`
    only names the default one listed in `splits`.
    """
    file_name = source or path
    if not file_name:
        raise UserError("the jsonl task needs a file: jsonl:PATH")
    file = Path(file_name).expanduser()
    if not file.is_file():
        raise UserError(f"jsonl task file not found: {file}; check the path after 'jsonl:'")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", file.stem) or "jsonl"

    def rows_of(split_name: str):
        return str(file), read_jsonl(file)

    parse_row = _generic_parser(
        stem,
        question_field,
        answer_field,
        solution_field,
        id_field,
        answer_from_solution,
        meta_fields,
    )
    return FileTask(f"jsonl:{file}", (split,), GENERIC_PROMPT, rows_of, parse_row)


def _names(value: Iterable[str] | str) -> tuple[str, ...]:
    """Field names from the API (a list) or the CLI (`--task-opt meta_fields=level,subject`)."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return tuple(value)


def _split_map(value: dict[str, str] | str) -> dict[str, str]:
    """Our split names -> the dataset's, from the API (a dict) or the CLI
    (`--task-opt splits=test=validation,train` : ours=theirs, or one name for both)."""
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise UserError(f"splits must be NAME or OURS=THEIRS, comma-separated; got {value!r}")
    pairs = [item.strip().partition("=") for item in value.split(",") if item.strip()]
    if not pairs or any(not ours or (sep and not theirs) for ours, sep, theirs in pairs):
        raise UserError(f"splits must be NAME or OURS=THEIRS, comma-separated; got {value!r}")
    return {ours: theirs or ours for ours, _, theirs in pairs}


@register_task("hf")
def hf(
    source: str | None = None,
    config: str | None = None,
    splits: dict[str, str] | str | None = None,
    question_field: str | None = None,
    answer_field: str = "answer",
    solution_field: str | None = None,
    id_field: str | None = None,
    answer_from_solution: bool = False,
    meta_fields: Iterable[str] | str = ("level", "subject", "difficulty"),
    **load_options: Any,
) -> FileTask:
    """Problems from a Hugging Face dataset: `get_task("hf:NAME", config=..., splits={"test":
    "test"}, question_field=..., answer_field=...)`. `splits` maps our split names to the
    dataset's (default: test and train, same names). Needs the `hf` extra (`datasets`)."""
    if not source:
        raise UserError("the hf task needs a dataset name: hf:NAME")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise MissingExtraError("the hf task loader", "hf") from None
    split_map = _split_map(splits) if splits else {"test": "test", "train": "train"}
    name = source

    def rows_of(split: str):
        _check_split(f"hf:{name}", split, tuple(split_map))
        import datasets

        try:
            data = datasets.load_dataset(name, config, split=split_map[split], **load_options)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"cannot load dataset {name} ({split_map[split]}): {e}") from None
        return f"hf:{name}[{split_map[split]}]", ((i + 1, dict(row)) for i, row in enumerate(data))

    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.split("/")[-1])
    parse_row = _generic_parser(
        stem,
        question_field,
        answer_field,
        solution_field,
        id_field,
        answer_from_solution,
        meta_fields,
    )
    return FileTask(f"hf:{name}", tuple(split_map), GENERIC_PROMPT, rows_of, parse_row)
