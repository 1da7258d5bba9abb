"""Final-answer extraction from solution text, and a cheap answer normaliser.

Everything here is plain string work on bounded input: no regex that can backtrack
badly, no evaluation of the text, and only the tail of a long text is looked at.

`extract_answer` looks, in this order, for
  1. the last complete top-level `\\boxed{...}` / `\\fbox{...}` / `\\framebox{...}` (braces
     matched by counting),
     or `\\boxed 5` (the brace-less form),
  2. the last GSM8K-style `#### N` line,
  3. the last "The (final) answer is ..." / "Answer: ..." phrase.
"""

from __future__ import annotations

import re
from fractions import Fraction

#: How much of the end of a text `extract_answer` reads.
TAIL_CHARS = 4000

_BOX_COMMANDS = ("\\boxed", "\\fbox", "\\framebox")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_PHRASE_RE = re.compile(
    r"(?:\bthe\s+(?:final\s+)?answer\s+is\b|\b(?:final\s+)?answer\s*:)[ \t:]*([^\n]*)",
    re.IGNORECASE,
)
_INLINE_MATH_RE = re.compile(r"\$+([^$]+)\$+|\\\(([^\n]*?)\\\)|\\\[([^\n]*?)\\\]")


def extract_answer(text: str | None) -> str | None:
    """The final answer written in `text`, or None when it states none."""
    if not text:
        return None
    tail = text[-TAIL_CHARS:]
    boxed = last_boxed(tail)
    if boxed is not None:
        return boxed
    match = _last_match(_GSM8K_RE, tail)
    if match is not None:
        answer = _clean_phrase_answer(match.group(1))
        if answer:
            return answer
    match = _last_match(_PHRASE_RE, tail)
    if match is not None:
        answer = _clean_phrase_answer(match.group(1))
        if answer:
            return answer
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last complete, non-empty, outermost box (`\\boxed{}`, `\\fbox{}`,
    `\\framebox{}`) in `text`.

    A box nested in another (`\\boxed{\\boxed{5}}`) is unwrapped; a box left unclosed (a
    truncated generation) is not an answer.
    """
    found: str | None = None
    i = 0
    n = len(text)
    while True:
        start, command = _next_box(text, i)
        if start < 0:
            break
        j = start + len(command)
        if j < n and text[j].isalpha():  # \boxedfoo is another command
            i = j
            continue
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            end = _matching_brace(text, j)
            if end < 0:  # unclosed: nothing after it can be a complete outer box
                break
            content = text[j + 1 : end].strip()
            i = end + 1
        elif j > start + len(command):  # "\boxed 5": one token up to a space or `$`
            k = j
            while k < n and text[k] not in " \t\n$":
                k += 1
            content = text[j:k].strip()
            i = k
        else:
            i = j
            continue
        if content:
            found = content
    while found is not None:  # \boxed{\boxed{5}} -> 5
        inner = _whole_box(found)
        if inner is None:
            break
        found = inner
    return found


def _next_box(text: str, start: int) -> tuple[int, str]:
    best, best_command = -1, ""
    for command in _BOX_COMMANDS:
        k = text.find(command, start)
        if k >= 0 and (best < 0 or k < best):
            best, best_command = k, command
    return best, best_command


def _matching_brace(text: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at `open_at`, or -1; `\\{` and `\\}` are not braces."""
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _whole_box(s: str) -> str | None:
    for command in _BOX_COMMANDS:
        if s.startswith(command + "{") and _matching_brace(s, len(command)) == len(s) - 1:
            inner = s[len(command) + 1 : -1].strip()
            return inner or None
    return None


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007
        pass
    return last


def _clean_phrase_answer(s: str) -> str:
    """The answer in the rest of an "answer is ..." line: its math if any, else the
    text up to the end of the sentence."""
    s = s.strip().strip("*").strip()
    math = _INLINE_MATH_RE.search(s)
    if math is not None:
        return next(g for g in math.groups() if g is not None).strip()
    # The sentence ends at a period followed by a space (not the point of 3.5).
    end = re.search(r"\.(?:\s|$)", s)
    if end is not None:
        s = s[: end.start()]
    return s.strip().rstrip(".").strip().strip("*").strip()


# --- normalisation -----------------------------------------------------------------------

_SPACE_COMMANDS = ("\\!", "\\,", "\\;", "\\:", "\\ ", "~", "\\qquad", "\\quad", "\\displaystyle")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|operatorname)"
_WHOLE_TEXT_RE = re.compile(_TEXT_CMD + r"\s*\{([^{}]*)\}")
_UNIT_RE = re.compile(r"^(.*?[0-9}.)])\s*" + _TEXT_CMD + r"\s*\{\s*[A-Za-z][^{}]*\}(?:\^\{?\d\}?)?$")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_LATEX_COMMA_RE = re.compile(r"(?<=\d)\{,\}(?=\d)")
_VAR_EQ_RE = re.compile(r"^[A-Za-z]\s*=\s*([^=<>]+)$")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])")
_FRAC_HALF_SHORT_A_RE = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*\{")
_FRAC_HALF_SHORT_B_RE = re.compile(r"\\frac\s*(\{[^{}]*\})\s*([0-9a-zA-Z])")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*([0-9a-zA-Z])")
# ASCII digits only: `\d` would also read full-width and Arabic-Indic digits (see screening.py).
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_RATIO_RE = re.compile(r"([+-]?\d+)/(\d+)", re.ASCII)
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{(\d+)\}", re.ASCII)
_REPEATING_RE = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d+)\}", re.ASCII)
SCALES = {"hundred": 10**2, "thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_SCALE_WORD = "|".join(SCALES)
_TEXT_SCALE_RE = re.compile(_TEXT_CMD + r"\s*\{\s*(" + _SCALE_WORD + r")\s*\}", re.IGNORECASE)
_SCALED_RE = re.compile(r"(.+?)(" + _SCALE_WORD + ")", re.IGNORECASE)
_ANY_SCALE_RE = re.compile(_SCALE_WORD, re.IGNORECASE)
_CHOICE_RE = re.compile(r"\(([A-Za-z]|\d+)\)")  # an answer choice or AIME answer in parentheses


def mentions_scale_word(s: str) -> bool:
    """Whether `s` holds a scale word (`million`, also inside `millions`), case aside."""
    return _ANY_SCALE_RE.search(s) is not None


def normalize_answer(s: str) -> str:
    """A cheap canonical form of an answer string, for exact comparison.

    Removes `$`, LaTeX spacing, `\\left`/`\\right`, degrees, percent signs, trailing
    `\\text{...}` units (not scale words: `5 \\text{ million}` is `5million`), thousands
    separators and trailing periods; `\\dfrac`/`\\tfrac` become `\\frac`, `\\frac12`
    becomes `\\frac{1}{2}` and `\\sqrt2` `\\sqrt{2}`; a leading `x =` is dropped; spaces
    are removed; an answer choice in parentheses (`(B)`, `(073)`) loses them.
    """
    s = s.strip().replace("\u2212", "-")  # a Unicode minus sign
    for command in _SPACE_COMMANDS:
        s = s.replace(command, " ")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _DEGREE_RE.sub("", s)
    s = _TEXT_SCALE_RE.sub(r" \1", s).strip()
    unit = _UNIT_RE.match(s)
    if unit is not None and not _ANY_SCALE_RE.search(s[unit.end(1) :]):  # "5 \text{ million}" is no unit
        s = unit.group(1)
    whole = _WHOLE_TEXT_RE.fullmatch(s)
    if whole is not None:
        s = whole.group(1)
    s = s.replace("\n", " ").strip()
    var = _VAR_EQ_RE.match(s)
    if var is not None:
        s = var.group(1)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT_A_RE.sub(r"\\frac{\1}{", s)
    s = _FRAC_HALF_SHORT_B_RE.sub(r"\\frac\1{\2}", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = s.replace(" ", "").replace("\t", "")
    s = _LATEX_COMMA_RE.sub("", s)
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    while s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    if s.startswith("+") and len(s) > 1:
        s = s[1:]
    choice = _CHOICE_RE.fullmatch(s)
    if choice is not None:
        s = choice.group(1)
    return s


#: Longest string `parse_number` accepts (keeps Fraction and int conversion cheap).
_MAX_NUMBER_CHARS = 60


def parse_number(s: str) -> Fraction | None:
    """The exact value of a plain number (`12`, `-0.5`, `3/4`, `\\frac{3}{4}`, the repeating
    decimal `0.\\overline{3}`, `5million`) given in normalised form, or None when `s` is
    anything else (digits must be ASCII)."""
    if not s or len(s) > _MAX_NUMBER_CHARS:
        return None
    if _NUMBER_RE.fullmatch(s):
        return Fraction(s)
    ratio = _RATIO_RE.fullmatch(s)
    if ratio is not None:
        num, den = int(ratio.group(1)), int(ratio.group(2))
        return Fraction(num, den) if den else None
    frac = _FRAC_RE.fullmatch(s)
    if frac is not None:
        num, den = int(frac.group(2)), int(frac.group(3))
        if not den:
            return None
        value = Fraction(num, den)
        return -value if frac.group(1) == "-" else value
    repeating = _REPEATING_RE.fullmatch(s)
    if repeating is not None:  # 0.1\overline{6} = 1/6 exactly
        sign, whole, fixed, cycle = repeating.groups()
        value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
        value += Fraction(int(cycle), (10 ** len(cycle) - 1) * 10 ** len(fixed))
        return -value if sign == "-" else value
    scaled = _SCALED_RE.fullmatch(s)
    if scaled is not None and not _ANY_SCALE_RE.search(scaled.group(1)):  # 5million = 5000000
        base = parse_number(scaled.group(1))
        return None if base is None else base * SCALES[scaled.group(2).lower()]
    return None
