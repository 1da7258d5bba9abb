"""File-backed tasks on the real shared data and on small files written here."""

import json
import sys
from pathlib import Path

import pytest

import ias.tasks.files  # noqa: F401  (registers the tasks)
from ias.errors import MissingExtraError, UserError
from ias.tasks.base import get_task
from ias.tasks.check import data_check
from ias.tasks.files import DATA_DIR_ENV, GSM8K_PROMPT, find_data_file
from ias.types import split_steps


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- the shared data ---------------------------------------------------------------------


def test_gsm8k_rows():
    task = get_task("gsm8k")
    assert task.name == "gsm8k" and task.splits == ("test", "train")
    problems = task.problems("test")
    assert len(problems) == 1319
    first = problems[0]
    assert first.id == "gsm8k-test-00000"
    assert first.question.startswith("Janet")
    assert first.answer == "18"
    assert "<<" not in first.solution and first.solution.endswith("#### 18")
    assert first.meta["steps"] == 2
    assert [p.id for p in task.problems("test", limit=3)] == [f"gsm8k-test-0000{i}" for i in range(3)]
    assert task.problems("train", limit=1)[0].id == "gsm8k-train-00000"
    assert any("," in p.answer for p in problems)  # 1,000-style answers are kept as written


def test_math500_rows_and_prompt():
    task = get_task("math500")
    problems = task.problems("test")
    assert len(problems) == 500
    p = problems[0]
    assert p.id == "math500-test-00000"
    assert p.answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert p.meta["level"] == 2 and p.meta["subject"] == "Precalculus"
    prompt = task.prompt(p)
    assert p.question in prompt and r"\boxed{}" in prompt and "blank line" in prompt
    assert task.extract(p.solution) == p.answer
    assert task.grade(p, p.solution)
    assert not task.grade(p, r"so \boxed{(3, \pi)}")
    assert not task.grade(p, "no answer")


def test_grade_a_policy_style_solution():
    task = get_task("gsm8k")
    p = task.problems("test", limit=1)[0]
    solution = "16-3-4=9 eggs are sold.\n\n9*2=18 dollars.\n\n\\boxed{18}"
    assert len(split_steps(solution)) == 3
    assert task.grade(p, solution)
    assert task.grade(p, "The answer is $18.00.")
    assert not task.grade(p, "\\boxed{19}")


def test_data_check_gsm8k_all_agree():
    result = data_check(get_task("gsm8k"), "test")
    assert result["rows"] == 1319
    assert result["agree"] == 1319, result["disagree_examples"]


def test_data_check_math500_agrees():
    result = data_check(get_task("math500"), "test")
    assert result["task"] == "math500" and result["rows"] == 500
    assert result["agree"] >= 0.99 * 500, result["disagree_examples"]


def test_data_check_reports_disagreements(tmp_path):
    rows = [
        {"question": "1+1?", "answer": "2", "solution": "1+1=2\n\n\\boxed{2}"},
        {"question": "2+2?", "answer": "4", "solution": "2+2=5\n\n\\boxed{5}"},
        {"question": "3+3?", "answer": "6"},
    ]
    task = get_task(f"jsonl:{write_jsonl(tmp_path / 'd.jsonl', rows)}", solution_field="solution")
    result = data_check(task, "test")
    assert result["rows"] == 3 and result["agree"] == 1 and result["no_solution"] == 1
    assert result["disagree_examples"] == [
        {"id": "d-test-00001", "extracted": "5", "answer": "4"},
        {"id": "d-test-00002", "extracted": None, "answer": "6"},
    ]


# --- where the files are -----------------------------------------------------------------


def test_path_data_dir_and_env(tmp_path, monkeypatch):
    rows = [
        {"question": "q1", "answer": "a\n#### 7"},
        {"question": "q2", "answer": "b <<1+1=2>>2\n#### 2"},
    ]
    file = write_jsonl(tmp_path / "mine.jsonl", rows)
    by_path = get_task("gsm8k", path=str(file)).problems("test")
    assert [(p.answer, p.solution) for p in by_path] == [("7", "a\n#### 7"), ("2", "b 2\n#### 2")]

    (tmp_path / "root" / "gsm8k").mkdir(parents=True)
    write_jsonl(tmp_path / "root" / "gsm8k" / "test.jsonl", rows[:1])
    assert len(get_task("gsm8k", data_dir=str(tmp_path / "root")).problems("test")) == 1
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "root"))
    assert len(get_task("gsm8k").problems("test")) == 1
    with pytest.raises(UserError, match=DATA_DIR_ENV):
        get_task("gsm8k").problems("train")  # no train file there


def test_missing_data_is_a_one_line_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--path"):
        get_task("gsm8k", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="data_dir"):
        get_task("math500", data_dir=str(tmp_path)).problems("test")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(UserError) as error:
        find_data_file("math500", "test")
    assert "math500/test.jsonl" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="no split"):
        get_task("math500").problems("train")


# --- jsonl:PATH and malformed rows -------------------------------------------------------


def test_jsonl_task_fields(tmp_path):
    rows = [
        {"uid": "p-1", "problem": "What is 1/2 + 1/4?", "final": "\\frac{3}{4}", "level": 2},
        {"uid": "p-2", "problem": "What is 2*3?", "final": 6},
    ]
    file = write_jsonl(tmp_path / "set.jsonl", rows)
    task = get_task(f"jsonl:{file}", question_field="problem", answer_field="final", id_field="uid")
    problems = task.problems("test")
    assert [p.id for p in problems] == ["p-1", "p-2"]
    assert problems[1].answer == "6" and problems[0].meta["level"] == 2
    assert task.grade(problems[0], "so \\boxed{0.75}")
    assert task.grade(problems[1], "The answer is 6.")
    # defaults: `question` or else `problem`, `answer`; ids from the file name
    default = get_task(f"jsonl:{write_jsonl(tmp_path / 'x.jsonl', [{'problem': 'p', 'answer': 1}])}")
    assert default.problems("anything")[0].id == "x-anything-00000"
    # a GSM8K-style answer field
    gsm = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "2+2=4\n#### 4"}])
    p = get_task(f"jsonl:{gsm}", answer_from_solution=True).problems("test")[0]
    assert p.answer == "4" and p.solution.endswith("#### 4")


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            ['{"question": "q", "answer": "1"}', '{"question": "q2", "answer": '],
            r"bad\.jsonl:2: not valid JSON",
        ),
        (['["q", "1"]'], r"bad\.jsonl:1: a row must be a JSON object"),
        (['{"question": "q"}'], r"bad\.jsonl:1: missing field 'answer'"),
        (['{"question": "  ", "answer": "1"}'], r"bad\.jsonl:1: field 'question' is empty"),
        (['{"question": {"a": 1}, "answer": "1"}'], r"bad\.jsonl:1: field 'question' must be text"),
        (
            [
                '{"question": "q", "answer": "1", "id": "a"}',
                "",
                '{"question": "r", "answer": "2", "id": "a"}',
            ],
            r"bad\.jsonl:3: duplicate id 'a'",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, lines, message):
    file = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(UserError, match=message):
        get_task(f"jsonl:{file}", id_field="id" if "duplicate" in message else None).problems("test")


def test_malformed_gsm8k_answer(tmp_path):
    file = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(UserError, match=r"bad\.jsonl:1: .*#### N"):
        get_task("gsm8k", path=str(file)).problems("test")


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        get_task(f"jsonl:{tmp_path / 'none.jsonl'}")


def test_prompt_template_is_plain_text():
    text = GSM8K_PROMPT.format(question="What is {x}?")
    assert "What is {x}?" in text and "\\boxed{}" in text


# --- hf:NAME -----------------------------------------------------------------------------


def test_hf_without_datasets_names_the_extra(monkeypatch):
    # Make `import datasets` fail as it does where the extra is not installed.
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[hf\]'"):
        get_task("hf:openai/gsm8k", config="main")


def test_hf_loads_a_local_json_dataset(tmp_path):
    file = write_jsonl(tmp_path / "h.jsonl", [{"question": "1+1?", "answer": "so\n#### 2"}])
    task = get_task("hf:json", data_files=str(file), splits={"test": "train"}, answer_from_solution=True)
    p = task.problems("test")[0]
    assert p.id == "json-test-00000" and p.answer == "2"


def test_list_and_dict_options_from_the_command_line_are_comma_separated_text(tmp_path):
    """`--task-opt meta_fields=level,subject` and `--task-opt splits=test=train` arrive as text."""
    file = write_jsonl(tmp_path / "m.jsonl", [{"question": "q", "answer": 1, "level": "easy", "subject": "alg"}])
    meta = get_task(f"jsonl:{file}", meta_fields="level,subject").problems("test")[0].meta
    assert meta["level"] == "easy" and meta["subject"] == "alg"
    hf_file = write_jsonl(tmp_path / "h.jsonl", [{"question": "1+1?", "answer": "so\n#### 2"}])
    task = get_task("hf:json", data_files=str(hf_file), splits="test=train", answer_from_solution=True)
    assert task.problems("test")[0].answer == "2"
    with pytest.raises(UserError, match="splits must be NAME or OURS=THEIRS"):
        get_task("hf:json", data_files=str(hf_file), splits="test=")
