"""Prompt rendering (`ias.prompting`): the zoo's raw prompt unchanged, chat templates for
chat models, user overrides, and prompts longer than the policy's context as errors."""

import json
import shutil

import pytest

from ias.calibration.montecarlo import Trajectory, prefix_targets
from ias.errors import UserError
from ias.models import resolve_model
from ias.policy.base import SamplingParams, load_policy
from ias.prompting import render_prompt, task_messages
from ias.tasks.arith import ARITH_EXAMPLES, ARITH_INSTRUCTION
from ias.tasks.base import get_task
from ias.tasks.files import CHAT_INSTRUCTION
from ias.types import Problem, split_steps

CHAT_TEMPLATE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}"
    + CHAT_TEMPLATE
)


def _chat_copy(folder, template: str):
    """The weak zoo policy with a chat template added to its tokenizer: a real chat policy
    whose context (256 characters) is far shorter than a chat prompt."""
    shutil.copytree(resolve_model("arith-weak"), folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = template
    config_file.write_text(json.dumps(config))
    return load_policy(str(folder))


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    return _chat_copy(tmp_path_factory.mktemp("chat") / "model", CHAT_TEMPLATE)


def test_zoo_prompts_stay_byte_identical(zoo_policy):
    task = get_task("arith")
    assert not zoo_policy.tokenizer.chat_template
    for problem in task.problems("test", 50):
        assert render_prompt(task, problem, zoo_policy) == problem.question + "\n\n" == task.prompt(problem)
        steps = ["3*4=12 so 2+12", "2+12=14"]
        continued = render_prompt(task, problem, zoo_policy, steps)
        assert continued == problem.question + "\n\n3*4=12 so 2+12\n\n2+12=14\n\n"


def test_chat_models_get_the_task_instruction_examples_and_question(chat):
    task = get_task("arith")
    problem = task.problems("test", 1)[0]
    prompt = render_prompt(task, problem, chat)
    expected = f"<|im_start|>system\n{ARITH_INSTRUCTION}<|im_end|>\n"
    for question, solution in ARITH_EXAMPLES:
        expected += f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{solution}<|im_end|>\n"
    expected += f"<|im_start|>user\n{problem.question}<|im_end|>\n<|im_start|>assistant\n"
    assert prompt == expected
    assert render_prompt(task, problem, chat, ["a", "b"]) == prompt + "a\n\nb\n\n"
    gsm8k = get_task("gsm8k")
    question = gsm8k.problems("test", 1)[0]
    assert task_messages(gsm8k, question) == [
        {"role": "system", "content": CHAT_INSTRUCTION},
        {"role": "user", "content": question.question},
    ]


def test_instructions_name_the_delimiter_and_the_answer_format():
    arith = get_task("arith")
    for instruction in (ARITH_INSTRUCTION, CHAT_INSTRUCTION):
        assert "blank line" in instruction and "\\boxed{}" in instruction
    # The examples are solutions in the task's own format that its grader reads as right.
    assert [arith.extract(solution) for _, solution in ARITH_EXAMPLES] == ["13", "5", "23"]
    for question, solution in ARITH_EXAMPLES:
        assert len(split_steps(solution)) >= 2 and "\n\n" in solution
        assert arith.grade(Problem("x", question, arith.extract(solution)), solution)
    assert "{" not in CHAT_INSTRUCTION.replace("\\boxed{}", "")


def test_a_template_that_refuses_a_system_turn_gets_the_instruction_in_the_first_user_turn(tmp_path):
    policy = _chat_copy(tmp_path / "model", NO_SYSTEM_TEMPLATE)
    task = get_task("arith")
    prompt = render_prompt(task, task.problems("test", 1)[0], policy)
    first_question = ARITH_EXAMPLES[0][0]
    assert prompt.startswith(f"<|im_start|>user\n{ARITH_INSTRUCTION}\n\n{first_question}<|im_end|>\n")
    assert "system" not in prompt


def test_user_overrides_of_template_and_chat(zoo_policy, chat):
    problem = get_task("arith").problems("test", 1)[0]
    template = "Q: {question}\nPut it in \\boxed{}.\n"
    raw = get_task("arith", prompt_template=template, chat=False)
    assert render_prompt(raw, problem, chat) == f"Q: {problem.question}\nPut it in \\boxed{{}}.\n"
    assert render_prompt(get_task("arith", chat=False), problem, chat) == problem.question + "\n\n"
    as_chat = get_task("arith", prompt_template=template)
    assert render_prompt(as_chat, problem, chat) == (
        f"<|im_start|>user\nQ: {problem.question}\nPut it in \\boxed{{}}.\n<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(get_task("arith", chat="auto"), problem, zoo_policy) == problem.question + "\n\n"
    with pytest.raises(UserError, match="has no chat template; drop --chat"):
        render_prompt(get_task("arith", chat=True), problem, zoo_policy)
    with pytest.raises(UserError, match="no \\{question\\} field"):
        get_task("gsm8k", prompt_template="no field here")
    with pytest.raises(UserError, match="chat must be true, false or auto"):
        get_task("arith", chat="sometimes")
    with pytest.raises(UserError, match="does not take option"):
        get_task("arith", chat_template="x")  # only the two prompt options are taken by every task


def test_a_prompt_longer_than_the_context_is_an_error_never_cut(chat, zoo_policy):
    task = get_task("arith")
    problem = task.problems("test", 1)[0]
    prompt = render_prompt(task, problem, chat)
    assert len(prompt) > chat.max_model_len  # the chat prompt does not fit a 256-character model
    with pytest.raises(UserError, match="more than the model's 255 usable positions"):
        chat.sample([prompt], 1, SamplingParams(max_tokens=4), [0])
    # A prefix continuation that outgrows the context stops the rollout the same way.
    long_steps = ["1+1=2 so " + "2+0" * 20] * 5
    trajectory = Trajectory(problem, 0, "\n\n".join(long_steps), long_steps, False)
    with pytest.raises(UserError, match="shorten it"):
        prefix_targets(zoo_policy, task, [trajectory], 1, 20, SamplingParams(max_tokens=4), 0)


@pytest.mark.slow
def test_cli_prompt_options_reach_the_run_and_its_config(tmp_path, chat, cli):
    template = tmp_path / "prompt.txt"
    template.write_text("{question}\n\n")  # the zoo's own prompt, written out
    out = tmp_path / "run"
    common = ["solve", "--limit", "2", "--n", "2", "--prm", "none", "--selection", "majority"]
    result = cli(*common, "--prompt-template", str(template), "--no-chat", "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["task_options"] == {"prompt_template": "{question}\n\n", "chat": False}
    result = cli(*common, "--policy", chat.name, "--out", str(tmp_path / "long"))
    assert result.returncode == 2 and "usable positions; shorten it" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli(*common, "--prompt-template", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "cannot read --prompt-template" in result.stderr
