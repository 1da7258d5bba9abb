"""The grader on hostile answers: wrong answers dressed up as right ones are refused, every
call ends within its bound, and a timed-out verdict is said, never silent."""

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ias.tasks.answers import extract_answer
from ias.tasks.grading import DECIMAL_PLACES, answers_match, grade_answer

# Each was accepted as equal to its reference by the grader before issue 15.
DISGUISED_WRONG = [
    (r"0.\overline{9}", "0"),
    (r"5 \text{ million}", "5"),
    (r"5 \text{ thousand}", "5"),
    (r"5 \text{ hundred}", "5"),
    (r"5 \text{ billion}", "5"),
    (r"5 \text{ million dollars}", "5"),
    ("5 million", "5"),
    ("10^{1\n0^{10}}", "0"),
    ("4\x002", "4"),
    ("-----1-----", "0"),
    (r"\log_0 1", "0"),
    (r"\log_{1} 1", "0"),
]


@pytest.mark.parametrize("pred, ref", DISGUISED_WRONG)
def test_disguised_wrong_answers_are_refused(pred, ref):
    assert not answers_match(extract_answer(r"\boxed{" + pred + "}"), ref, timeout=2)


@pytest.mark.parametrize(
    "pred, ref",
    [
        (r"0.\overline{9}", "1"),  # a repeating decimal is its exact value
        (r"0.1\overline{6}", r"\frac{1}{6}"),
        (r"5 \text{ million}", "5000000"),
        ("2.5 thousand", "2500"),
        (r"\textbf{(073)}", "073"),  # AIME: zero-padded integers and answer-choice wrappers
        ("073", "73"),
        (r"\text{(C)}", "C"),
        ("(B)", r"\textbf{(B)}"),
    ],
)
def test_exact_forms_of_right_answers_are_accepted(pred, ref):
    assert answers_match(pred, ref)


def test_framebox_is_a_final_answer():
    assert extract_answer(r"so it is $\framebox{204}$") == "204"
    assert answers_match(extract_answer(r"$\framebox{204}$"), "204")
    assert extract_answer(r"\boxed{\textbf{(073)}}") == r"\textbf{(073)}"


@pytest.mark.parametrize("pred", ["３", "٣", "۳", "\u0663\u0664", "1\u200b2", "x²", "½"])
def test_lookalike_characters_are_not_read_as_ascii(pred):
    """Policy: an answer whose digits are not ASCII (full-width, Arabic-Indic, ...) or that
    holds a compatibility lookalike (superscripts, vulgar fractions) is not equal: the grader
    does not guess what a character stands for."""
    for ref in ("3", "34", "12", "x2", "x^2", r"\frac{1}{2}"):
        assert not answers_match(pred, ref)


def test_decimal_close_to_a_constant_within_the_stated_tolerance():
    assert DECIMAL_PLACES == 6
    assert answers_match("3.14159265", r"\pi")
    assert answers_match("3.1415927", r"\pi")
    assert not answers_match("3.141592", r"\pi")
    assert not answers_match("3.14", r"\pi")
    assert answers_match("1.4142136", r"\sqrt{2}")
    assert not answers_match("1.41421", r"\sqrt{2}")
    # plain numbers stay exact
    assert not answers_match("0.333333", r"\frac{1}{3}")


def test_a_timeout_is_said_and_not_equal():
    answers_match("q+1", "1+q")  # the helper is started outside the timed part
    start = time.monotonic()
    verdict = grade_answer(r"(10^{9})! - 9^{9^{9}}", "7", timeout=0.5)
    assert time.monotonic() - start < 3 * 0.5 + 1 + 1
    assert verdict.timed_out and not verdict.equal
    fast = grade_answer("2", "2")
    assert fast.equal and not fast.timed_out


# --- the adversarial corpus ------------------------------------------------------------

REFERENCES = ["42", "-7", "0", "1", r"\frac{3}{4}", r"2\sqrt{2}", "x+1", "(1,2)", r"\pi", "073"]
WRONG = {
    "42": ["43", "41", "-42", "420", "4.2"],
    "-7": ["7", "-8", "-6", "-70"],
    "0": ["1", "-1", "0.1", "10"],
    "1": ["0", "2", "-1", "0.9"],
    r"\frac{3}{4}": [r"\frac{4}{3}", "0.7", r"\frac{3}{5}", "3/5"],
    r"2\sqrt{2}": [r"3\sqrt{2}", r"2\sqrt{3}", "2.8", r"\sqrt{2}"],
    "x+1": ["x+2", "x-1", "2x+1", "x"],
    "(1,2)": ["(2,1)", "(1,3)", "(1,2,3)", "[3,4]"],
    r"\pi": ["3.14", "3", r"2\pi", r"\pi^2"],
    "073": ["74", "730", "0.73", "37"],
}
RIGHT = {
    "42": ["42", r"\boxed{42}", "42.0", r"\text{42}", r"42 \text{ apples}", r"\$42"],
    "-7": ["-7", r"-\frac{14}{2}", "x = -7"],
    "0": ["0", "0.0", "-0"],
    "1": ["1", r"\frac{2}{2}", r"0.\overline{9}"],
    r"\frac{3}{4}": ["0.75", "3/4", r"\dfrac{3}{4}"],
    r"2\sqrt{2}": [r"\sqrt{8}"],
    "x+1": ["1+x"],
    "(1,2)": [r"\left(1, 2\right)"],
    r"\pi": [r"\pi", "3.14159265"],
    "073": ["73", r"\textbf{(073)}"],
}
HOSTILE_CHARS = ["\x00", "\x01", "\x1b", "\x7f", "\u200b", "\ufeff", "\u202e", "３", "٣"]
WRAPPERS = [
    "{}",
    r"\boxed{{{}}}",
    r"\text{{{}}}",
    r"\left({}\right)",
    "  {}  ",
    "{} cm",
    r"{}\%",
    r"\boxed{{\boxed{{\boxed{{{}}}}}}}",
    "{{{{{{{{{}}}}}}}}}",
    "x = {}",
]
DECORATIONS = [  # the right answer made hostile: each is refused by policy
    "{}\x00",
    "\x00{}",
    "--{}",
    "{}--",
    "+-{}",
    "{}-----",
    r"{}.\overline{{9}}",
    r"\log_0 {}",
    r"\log_{{1}} {}",
    "{}\n\x002",
    r"\frac{{{}",
    "{}^{{",
]
SCALED = ["{} million", r"{} \text{{ thousand}}", r"{} \text{{ billion dollars}}", "{} hundredths"]
HEAVY = [  # must end within the bound and be not equal (tried on HEAVY_REFERENCES: each may time out)
    "10^{10^{10}}",
    "10^{1\n0^{10}}",
    r"9^{9^{9^{9}}}",
    r"(10^{9})!",
    r"\binom{10^{9}}{10^{8}}",
    "{" * 200 + "1" + "}" * 200,
    r"\sqrt{" * 60 + "2" + "}" * 60,
    "-" * 300 + "1",
    r"\frac{1}{" * 40 + "2" + "}" * 40,
    "1" + "0" * 900,
]
HEAVY_REFERENCES = ("0", "42", r"\pi")


def _corpus() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(wrong pairs, right pairs) for every reference, with seeded random mutations."""
    rng = random.Random(15)
    wrong, right = [], []
    for ref in REFERENCES:
        right += [(r, ref) for r in RIGHT[ref]]
        for value in WRONG[ref]:
            wrong += [(w.format(value), ref) for w in WRAPPERS]
        for shape in DECORATIONS:
            wrong.append((shape.format(ref), ref))
        if ref != "0":  # 0 million is 0
            wrong += [(shape.format(ref), ref) for shape in SCALED]
        if ref in HEAVY_REFERENCES:
            wrong += [(h, ref) for h in HEAVY]
        for _ in range(16):  # a hostile character at a random place in a right answer
            answer = rng.choice(RIGHT[ref])
            at = rng.randrange(len(answer) + 1)
            wrong.append((answer[:at] + rng.choice(HOSTILE_CHARS) + answer[at:], ref))
        if ref.lstrip("-").isdigit():  # a nonzero digit inserted into an integer changes it
            for _ in range(6):
                at = rng.randrange(ref.startswith("-"), len(ref) + 1)
                wrong.append((ref[:at] + str(rng.randint(1, 9)) + ref[at:], ref))
    return wrong, right


@pytest.mark.slow
def test_adversarial_corpus_no_wrong_answer_accepted_and_every_call_bounded():
    wrong, right = _corpus()
    assert len(wrong) > 700
    timeout = 1.0
    # The grader waits 3 x timeout + 1 s of wall time for its helper; allow a fresh helper's
    # start (after one is killed) and scheduling on a busy machine on top.
    bound = 3 * timeout + 1.0 + 2.0
    answers_match("q+1", "1+q")  # the helper is started outside the timed part

    def timed(pair: tuple[str, str]) -> tuple[bool, float]:
        start = time.monotonic()
        verdict = grade_answer(*pair, timeout=timeout)
        return verdict.equal, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=2) as pool:
        wrong_results = list(pool.map(timed, wrong))
        right_results = list(pool.map(timed, right))
    accepted = [pair for pair, (ok, _) in zip(wrong, wrong_results) if ok]
    assert accepted == []
    slow = [(pair, round(s, 2)) for pair, (_, s) in zip(wrong + right, wrong_results + right_results) if s > bound]
    assert slow == []
    rejected = [pair for pair, (ok, _) in zip(right, right_results) if not ok]
    assert rejected == []
