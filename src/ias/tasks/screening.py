"""Answers refused before any parsing: shapes that a lenient parser would read as something else.

math-verify is built to find an answer somewhere in free text, so on hostile input it reads
part of it (`4<NUL>2` as 4, `0.\\overline{9}` as 0, `5 \\text{ million}` as 5) and accepts a
wrong answer. `refusal(pred, ref)` names the first rule a predicted answer breaks, or None.
Each rule is a plain string check on bounded text, and applies only when the reference does
not itself have that shape (the reference is trusted data).

Policy for lookalike characters: an answer is compared as ASCII math. A decimal digit that is
not ASCII (full-width `３`, Arabic-Indic `٣`, ...) or a character that Unicode compatibility
normalisation (NFKC) rewrites (superscripts, vulgar fractions, ligatures) makes the answer not
equal: the grader does not guess what a character stands for. Unicode spaces and the minus
sign `−` are read as their ASCII forms first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from ias.tasks.answers import mentions_scale_word, normalize_answer, parse_number

#: Deepest `{}`/`()`/`[]` nesting an answer may have.
MAX_NESTING = 12

_SIGN_RUN_RE = re.compile(r"[+\-]\s*[+\-]")
_TRAILING_OPERATOR_RE = re.compile(r"[+\-*/^=_]\s*$")
_DEGENERATE_LOG_RE = re.compile(r"\\log\s*_\s*(?:\{\s*[+-]?[01](?:\.0*)?\s*\}|[01](?![0-9.]))")
_OPEN, _CLOSE = "{([", "})]"


def ascii_math(s: str) -> str:
    """Unicode spaces become a plain space and the minus sign `−` becomes `-`."""
    return "".join(" " if c.isspace() else "-" if c == "\u2212" else c for c in s)


def refusal(pred: str, ref: str) -> str | None:
    """Why `pred` is not equal to `ref` whatever a parser makes of it, or None."""
    for rule in RULES:
        reason = rule(pred)
        if reason is not None and rule(ref) is None:
            return reason
    return None


def control_character(s: str) -> str | None:
    """NUL and other control or invisible format characters (newlines and tabs are spaces)."""
    for c in s:
        if c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf"):
            return f"control character U+{ord(c):04X}"
    return None


def lookalike(s: str) -> str | None:
    """A non-ASCII digit, or a character NFKC rewrites (see the module's policy)."""
    s = ascii_math(s)
    for c in s:
        if not c.isascii() and (c.isdigit() or unicodedata.normalize("NFKC", c) != c):
            return f"lookalike character U+{ord(c):04X}"
    return None


def sign_run(s: str) -> str | None:
    """Repeated signs (`--1`, `+-2`) or an expression ending in an operator (`1-`)."""
    if _SIGN_RUN_RE.search(s) or _TRAILING_OPERATOR_RE.search(s):
        return "malformed signs"
    return None


def unbalanced(s: str) -> str | None:
    """Brackets that do not close in order, or nest deeper than `MAX_NESTING` (escaped
    `\\{`, `\\}` and half-open intervals `[a, b)` are allowed)."""
    depth = braces = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in _OPEN:
            depth += 1
            braces += c == "{"
        elif c in _CLOSE:
            depth -= 1
            braces -= c == "}"
            if braces < 0:
                return "unbalanced braces"
        if depth > MAX_NESTING:
            return f"nested deeper than {MAX_NESTING}"
        i += 1
    return "unbalanced braces" if braces else None


def degenerate_log(s: str) -> str | None:
    """A logarithm to base 0 or 1 is undefined (a parser may still simplify it to 0)."""
    return "logarithm to base 0 or 1" if _DEGENERATE_LOG_RE.search(s) else None


def unread_overline(s: str) -> str | None:
    """`\\overline` that is not a repeating decimal `parse_number` reads exactly."""
    if "\\overline" in s and parse_number(normalize_answer(s)) is None:
        return "\\overline outside a repeating decimal"
    return None


def unread_scale_word(s: str) -> str | None:
    """A scale word (`million`) that is not `<number> <word>`: a parser would drop it."""
    if mentions_scale_word(s) and parse_number(normalize_answer(s)) is None:
        return "scale word outside '<number> <word>'"
    return None


RULES: tuple[Callable[[str], str | None], ...] = (
    control_character,
    lookalike,
    sign_run,
    unbalanced,
    degenerate_log,
    unread_overline,
    unread_scale_word,
)
