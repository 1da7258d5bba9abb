"""The one place a (task, problem, policy) becomes the text the policy continues.

Two shapes of prompt exist:
  - *raw*: the task's own completion prompt (`task.prompt(problem)`), for base models and
    the zoo (whose prompt is the question and a blank line, byte for byte);
  - *chat*: the policy tokenizer's chat template over the task's instruction (naming the
    step delimiter, a blank line, and the answer format) as the system turn, its worked
    examples as earlier turns, and the question, with the assistant's turn opened.
`chat` is auto by default: chat when the policy's tokenizer has a chat template. A user
may replace the text (a template with `{question}`) and force chat on or off; both are
task options (`prompt_template`, `chat`), so run folders record them.

A prefix continuation is the rendered prompt followed by each step and the delimiter,
whatever the shape: what a policy continues is always what it would have written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ias.errors import UserError
from ias.types import STEP_DELIMITER, Problem

#: The task options this module owns (taken out before a task's factory sees the rest).
OPTION_KEYS = ("prompt_template", "chat")
QUESTION_FIELD = "{question}"


@dataclass(frozen=True)
class PromptOptions:
    """A user's prompt settings: `template` replaces the task's text (raw prompt or chat
    message) and must hold `{question}`; `chat` None means auto."""

    template: str | None = None
    chat: bool | None = None

    def __post_init__(self) -> None:
        if self.template is not None and QUESTION_FIELD not in self.template:
            raise UserError("the prompt template has no {question} field; add one where the question goes")
        if self.chat not in (None, True, False):
            raise UserError(f"chat must be true, false or auto, got {self.chat!r}")


def split_prompt_options(options: dict[str, Any]) -> tuple[PromptOptions | None, dict[str, Any]]:
    """(prompt settings, the remaining task options); None when none was given."""
    rest = {k: v for k, v in options.items() if k not in OPTION_KEYS}
    if not any(k in options for k in OPTION_KEYS):
        return None, rest
    chat = options.get("chat")
    if isinstance(chat, str):
        if chat.lower() not in ("auto", "true", "false"):
            raise UserError(f"chat must be true, false or auto, got '{chat}'")
        chat = None if chat.lower() == "auto" else chat.lower() == "true"
    template = options.get("prompt_template")
    if template is not None and not isinstance(template, str):
        raise UserError("prompt_template must be text holding {question}")
    return PromptOptions(template=template, chat=chat), rest


def render_prompt(task, problem: Problem, policy, steps: Sequence[str] = ()) -> str:
    """The text `policy` continues for `problem`, after the first `steps` of a solution."""
    options: PromptOptions = getattr(task, "prompting", None) or PromptOptions()
    tokenizer = getattr(policy, "tokenizer", None)
    if uses_chat(options, tokenizer, getattr(policy, "name", "the policy")):
        if options.template is not None:
            messages = [{"role": "user", "content": _fill(options.template, problem.question)}]
        else:
            messages = task_messages(task, problem)
        prompt = _apply_chat_template(tokenizer, messages)
    elif options.template is not None:
        prompt = _fill(options.template, problem.question)
    else:
        prompt = task.prompt(problem)
    return prompt + "".join(step + STEP_DELIMITER for step in steps)


def task_messages(task, problem: Problem) -> list[dict[str, str]]:
    """A task's chat: its instruction as the system turn, its worked examples as earlier
    turns (small models copy a shown format far better than a described one), the question.

    A task with neither gets its raw prompt as the one user turn.
    """
    instruction = getattr(task, "instruction", None)
    examples = tuple(getattr(task, "examples", ()))
    if not instruction and not examples:
        return [{"role": "user", "content": task.prompt(problem)}]
    messages = [{"role": "system", "content": instruction}] if instruction else []
    for question, solution in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
    return messages + [{"role": "user", "content": problem.question}]


def _apply_chat_template(tokenizer, messages: list[dict[str, str]]) -> str:
    """The chat text with the assistant's turn opened; templates that refuse a system turn
    get the instruction at the head of the first user turn instead."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except TemplateError as error:  # e.g. a template that raises "System role not supported"
        if messages[0]["role"] != "system" or len(messages) < 2:
            raise UserError(f"the policy's chat template failed: {error}") from None
    system, first, *rest = messages
    merged = {"role": "user", "content": system["content"] + "\n\n" + first["content"]}
    return tokenizer.apply_chat_template([merged, *rest], add_generation_prompt=True, tokenize=False)


def chat_request_prompt(policy, messages: Sequence[dict[str, str]]) -> str:
    """The text a policy continues for a client's chat (`ias serve`'s /v1/chat/completions):
    its tokenizer's chat template with the assistant's turn opened; a policy without one (the
    zoo) gets the raw shape its tasks use, the messages' texts each followed by a blank line."""
    tokenizer = getattr(policy, "tokenizer", None)
    if getattr(tokenizer, "chat_template", None):
        return _apply_chat_template(tokenizer, list(messages))
    return "".join(message["content"] + STEP_DELIMITER for message in messages)


def uses_chat(options: PromptOptions, tokenizer, policy_name: str = "the policy") -> bool:
    """Whether prompts go through the chat template: as asked, else when there is one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if options.chat is None:
        return has_template
    if options.chat and not has_template:
        raise UserError(f"chat prompts asked for (--chat), but {policy_name} has no chat template; drop --chat")
    return options.chat


def _fill(template: str, question: str) -> str:
    # Plain replacement, not str.format: templates hold LaTeX braces such as \boxed{}.
    return template.replace(QUESTION_FIELD, question)


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of rendered prompts, special tokens added once: a chat template that writes
    the BOS token into the text (Llama-3, Mistral, Gemma) gets no second one from the tokenizer."""
    bos = tokenizer.bos_token
    written = [bool(bos) and prompt.startswith(bos) for prompt in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    for has_bos in (False, True):
        index = [i for i, flag in enumerate(written) if flag == has_bos]
        if index:
            ids = tokenizer([prompts[i] for i in index], add_special_tokens=not has_bos, verbose=False)["input_ids"]
            for i, row in zip(index, ids):
                out[i] = list(row)
    return out
