"""How a (question, steps) pair becomes PRM input: one function, used by training,
calibration and inference alike.

A PRM reads a score at a *step tag* placed after every step. Two reading formats exist
(SPEC §1): `classify` reads a 2-class head at each tag (Qwen2.5-Math-PRM, the zoo PRM);
`tokens` reads the LM logits of a `+` and a `-` token at each tag (Math-Shepherd).
The question alone (prefix t = 0) is scored by building the input with no steps: the
layout then places a single tag right after the question.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ias.errors import UserError

FORMAT_FILE = "ias_prm.json"


@dataclass(frozen=True)
class PRMFormat:
    """Where the tags go and how scores are read.

    layout "plain": question + question_sep + step_sep.join(step + step_tag).
    layout "chat": the tokenizer's chat template with `system`, the question as the user
    turn and "".join(step + step_tag) as the assistant turn (Qwen2.5-Math-PRM).
    """

    reading: str  # "classify" | "tokens"
    step_tag: str
    layout: str = "plain"
    question_sep: str = "\n\n"
    step_sep: str = "\n\n"
    system: str | None = None
    plus: str = "+"
    minus: str = "-"

    def __post_init__(self) -> None:
        if self.reading not in ("classify", "tokens"):
            raise UserError(f"PRM reading must be 'classify' or 'tokens', got '{self.reading}'")
        if self.layout not in ("plain", "chat"):
            raise UserError(f"PRM layout must be 'plain' or 'chat', got '{self.layout}'")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / FORMAT_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# The formats of the PRMs users run, by name (`--prm-format NAME`).
FORMATS: dict[str, PRMFormat] = {
    "zoo": PRMFormat(reading="classify", step_tag="<step>"),
    "qwen-prm": PRMFormat(
        reading="classify",
        step_tag="<extra_0>",
        layout="chat",
        system="Please reason step by step, and put your final answer within \\boxed{}.",
    ),
    "math-shepherd": PRMFormat(reading="tokens", step_tag=" ки", question_sep=" ", step_sep="\n"),
}


def prm_text(fmt: PRMFormat, question: str, steps: list[str], tokenizer=None) -> str:
    """The PRM input text: a tag after every step, or one tag after the question if no steps."""
    for step in steps:
        if fmt.step_tag.strip() in step:
            raise ValueError(f"a step contains the PRM step tag {fmt.step_tag!r}")
    if fmt.layout == "chat":
        body = "".join(step + fmt.step_tag for step in steps) if steps else fmt.step_tag
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": body}]
        if fmt.system:
            messages.insert(0, {"role": "system", "content": fmt.system})
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise UserError("this PRM format needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    body = fmt.step_sep.join(step + fmt.step_tag for step in steps) if steps else fmt.step_tag.lstrip()
    return question + fmt.question_sep + body


def tag_token_id(fmt: PRMFormat, tokenizer) -> int:
    """The token that marks a step's end: the last token of the encoded tag."""
    ids = tokenizer.encode(fmt.step_tag, add_special_tokens=False)
    if not ids:
        raise UserError(f"the tokenizer cannot encode the step tag {fmt.step_tag!r}")
    return ids[-1]


def check_format_tokens(fmt: PRMFormat, tokenizer, prm_name: str) -> None:
    """The format's marks (its step tag, and `+`/`-` when read from the LM head) are real tokens
    of this PRM's vocabulary: with another PRM's format every input would be an unreadable
    skip, or read at an unknown token, never scored."""
    marks = [fmt.step_tag] + ([fmt.plus, fmt.minus] if fmt.reading == "tokens" else [])
    unknown = getattr(tokenizer, "unk_token_id", None)
    for mark in marks:
        ids = tokenizer.encode(mark, add_special_tokens=False)
        if not ids or (unknown is not None and unknown in ids) or mark not in tokenizer.decode(ids):
            raise UserError(
                f"PRM '{prm_name}' has no token for {mark!r}, which its reading format needs; "
                "is --prm-format the PRM's own?"
            )


def prm_input(fmt: PRMFormat, tokenizer, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
    """Token ids of the PRM input and the positions of its tags (one per step, or one for t=0)."""
    text = prm_text(fmt, question, steps, tokenizer)
    # Over-long inputs are reported by the caller as skips; the tokenizer need not warn.
    ids = tokenizer(text, add_special_tokens=fmt.layout != "chat", verbose=False)["input_ids"]
    tag = tag_token_id(fmt, tokenizer)
    positions = [i for i, t in enumerate(ids) if t == tag]
    expected = max(1, len(steps))
    if len(positions) != expected:
        raise ValueError(f"found {len(positions)} step tags in the PRM input, expected {expected}")
    return ids, positions


def load_format(folder: str | Path | None, name: str | None = None) -> PRMFormat:
    """The format named by the user, else the one saved beside the model (`ias_prm.json`)."""
    if name:
        if name not in FORMATS:
            raise UserError(f"unknown PRM format '{name}'; known: {', '.join(FORMATS)}")
        return FORMATS[name]
    path = Path(folder) / FORMAT_FILE if folder else None
    if path is not None and path.exists():
        try:
            return PRMFormat(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise UserError(f"{path} is not a valid PRM format file: {err}") from None
    raise UserError(f"no PRM format for '{folder}': pass --prm-format ({', '.join(FORMATS)}) or add {FORMAT_FILE}")
