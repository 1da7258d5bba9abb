"""Final-answer extraction and the cheap normaliser."""

import time
from fractions import Fraction

import pytest

from ias.tasks.answers import TAIL_CHARS, extract_answer, last_boxed, normalize_answer, parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so the answer is \boxed{\frac{1}{\sqrt{2}}}.", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"first \boxed{1}, then \boxed{2}", "2"),
        (r"\fbox{7}", "7"),
        (r"\boxed {12}", "12"),
        (r"$\boxed 5$.", "5"),
        (r"\boxed{\boxed{3}}", "3"),
        (r"\boxed{a \{ b \}}", r"a \{ b \}"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        ("She makes 9 * 2 = $18.\n#### 18", "18"),
        ("#### 1,000", "1,000"),
        ("The answer is $\\frac{1}{2}$.", r"\frac{1}{2}"),
        ("So the final answer is 3.5. Done.", "3.5"),
        ("The answer is: 12", "12"),
        ("**Answer:** 42", "42"),
        ("Answer: x = 4\nthat is all", "x = 4"),
        # the box wins over the other forms
        ("The answer is 3.\n\n\\boxed{4}", "4"),
    ],
)
def test_extracts(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "no final answer in this text",
        r"\boxed{}",
        r"\boxed{  }",
        r"\boxedfoo{3}",
        r"\boxed{12",
        "####",
    ],
)
def test_no_answer(text):
    assert extract_answer(text) is None


def test_unclosed_last_box_keeps_last_complete_one():
    assert extract_answer(r"\boxed{5} but wait \boxed{\frac{6}{") == "5"
    assert last_boxed(r"\boxed{1}\boxed{}") == "1"


def test_only_the_tail_is_read_and_huge_input_is_fast():
    early = r"\boxed{1}" + "x" * (TAIL_CHARS + 10)
    assert extract_answer(early) is None
    start = time.perf_counter()
    assert extract_answer("{" * 5_000_000 + r"\boxed{" * 200_000) is None
    assert extract_answer("x" * 3_000_000 + "\n#### 7") == "7"
    assert extract_answer("The answer is " * 300_000 + r"\boxed{2}") == "2"
    normalize_answer(r"\text{" * 50_000 + "1" * 50_000)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("$18.00$", "18.00"),
        (r"\$1,250", "1250"),
        ("1,000,000", "1000000"),
        ("1{,}000", "1000"),
        ("(1,2)", "(1,2)"),
        ("18.", "18"),
        (r"10\!000", "10000"),
        (r"\dfrac{3}{4}", r"\frac{3}{4}"),
        (r"\tfrac12", r"\frac{1}{2}"),
        (r"\frac1{23}", r"\frac{1}{23}"),
        (r"\sqrt2", r"\sqrt{2}"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"25\%", "25"),
        (r"5\text{ cm}^2", "5"),
        (r"\text{Evelyn}", "Evelyn"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        ("x = 5", "5"),
        ("+7", "7"),
        ("\u22123", "-3"),
    ],
)
def test_normalize(raw, normal):
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize(
    "s, value",
    [
        ("12", Fraction(12)),
        ("-0.5", Fraction(-1, 2)),
        (".25", Fraction(1, 4)),
        ("3/4", Fraction(3, 4)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"-\frac{3}{4}", Fraction(-3, 4)),
        (r"\frac{-3}{4}", Fraction(-3, 4)),
    ],
)
def test_parse_number(s, value):
    assert parse_number(s) == value


@pytest.mark.parametrize("s", ["", "x", "1/0", r"\frac{1}{0}", "1e5", "1" * 100, r"\sqrt{2}", "(1,2)"])
def test_parse_number_rejects(s):
    assert parse_number(s) is None
