"""Both PRM reading formats end to end, on tiny random models of real architectures.

`qwen-prm`: a Qwen2 token-classification head read at `<extra_0>` in a chat layout.
`math-shepherd`: a Mistral causal LM read through the `+`/`-` logits at ` ки`.
Every HFPRM reading is checked against an independent computation: the text written out
by hand, tokenized, run unpadded through the concrete model class, read at the tag.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, MistralForCausalLM, Qwen2ForTokenClassification

from ias.errors import UserError
from ias.prm.base import load_prm
from ias.prm.format import FORMAT_FILE, FORMATS, PRMFormat, load_format, prm_input
from ias.prm.hf import HFPRM

QUESTION = "What is 12+30?"
STEPS = ["First, 12+30 = 42.", "So the answer\nis \\boxed{42}.", "ok"]
ITEMS = [
    (QUESTION, []),
    (QUESTION, STEPS[:1]),
    (QUESTION, STEPS),
    ("Is 7 prime?", ["Yes: no divisor\nbetween 2 and 6.", "\\boxed{yes}"]),
    ("2*3?", ["6"]),
]
TOL = dict(atol=1e-5, rtol=0)  # padding and batch shape change float sums slightly


@pytest.fixture(scope="module")
def qwen_prm(tiny_qwen_dir):
    return HFPRM(str(tiny_qwen_dir), prm_format="qwen-prm", batch_size=8)


@pytest.fixture(scope="module")
def shepherd_prm(tiny_shepherd_dir):
    return HFPRM(str(tiny_shepherd_dir), batch_size=8)  # format from ias_prm.json


# ---- the independent reference -------------------------------------------------------


def qwen_text(question: str, steps: list[str]) -> str:
    system = FORMATS["qwen-prm"].system
    body = "".join(s + "<extra_0>" for s in steps) if steps else "<extra_0>"
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n{body}<|im_end|>\n"
    )


def shepherd_text(question: str, steps: list[str]) -> str:
    return question + " " + ("\n".join(s + " ки" for s in steps) if steps else "ки")


@pytest.fixture(scope="module")
def qwen_reference(tiny_qwen_dir):
    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    model = Qwen2ForTokenClassification.from_pretrained(tiny_qwen_dir).eval()
    tag = tok.convert_tokens_to_ids("<extra_0>")

    @torch.inference_mode()
    def read(question, steps):
        ids = tok(qwen_text(question, steps), add_special_tokens=False)["input_ids"]
        pos = [i for i, t in enumerate(ids) if t == tag]
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        return ids, pos, torch.softmax(logits[pos], dim=-1)[:, 1]

    return read


@pytest.fixture(scope="module")
def shepherd_reference(tiny_shepherd_dir):
    tok = AutoTokenizer.from_pretrained(tiny_shepherd_dir)
    model = MistralForCausalLM.from_pretrained(tiny_shepherd_dir).eval()
    tag = tok.convert_tokens_to_ids("ки")
    plus, minus = tok.convert_tokens_to_ids("+"), tok.convert_tokens_to_ids("-")

    @torch.inference_mode()
    def read(question, steps):
        ids = tok(shepherd_text(question, steps))["input_ids"]  # with bos
        assert ids[0] == tok.bos_token_id
        pos = [i for i, t in enumerate(ids) if t == tag]
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        return ids, pos, torch.softmax(logits[pos][:, [plus, minus]], dim=-1)[:, 0]

    return read


@pytest.fixture(params=["qwen", "shepherd"])
def case(request):
    """(prm, reference, tag string) for each format."""
    name = request.param
    prm = request.getfixturevalue(f"{name}_prm")
    ref = request.getfixturevalue(f"{name}_reference")
    return prm, ref, "<extra_0>" if name == "qwen" else "ки"


# ---- the tiny models are what they claim to be ---------------------------------------


def test_tiny_models_load_as_their_architectures(qwen_prm, shepherd_prm, tiny_qwen_dir, tiny_shepherd_dir):
    assert type(qwen_prm.model).__name__ == "Qwen2ForTokenClassification"
    assert qwen_prm.model.config.num_labels == 2
    assert type(shepherd_prm.model).__name__ == "MistralForCausalLM"
    assert not (tiny_qwen_dir / FORMAT_FILE).exists()
    assert (tiny_shepherd_dir / FORMAT_FILE).exists()
    assert shepherd_prm.format == FORMATS["math-shepherd"]
    # The loaded tokenizers lose nothing (transformers 5 reloads qwen2 folders with
    # Qwen2Tokenizer whatever tokenizer_config.json says).
    for prm in (qwen_prm, shepherd_prm):
        text = "What is 12+30?\n\n  So \\boxed{42}."
        assert prm.tokenizer.decode(prm.tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert len(shepherd_prm.tokenizer.encode("ки", add_special_tokens=False)) == 1
    assert len(shepherd_prm.tokenizer.encode(" ки", add_special_tokens=False)) == 2


# ---- prm_input -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qwen-prm", "math-shepherd"])
def test_prm_input_places_one_tag_per_step(name, qwen_prm, shepherd_prm):
    prm = qwen_prm if name == "qwen-prm" else shepherd_prm
    fmt, tok = FORMATS[name], prm.tokenizer
    tag_id = tok.convert_tokens_to_ids(fmt.step_tag.strip())
    ids, positions = prm_input(fmt, tok, QUESTION, STEPS)
    assert len(positions) == len(STEPS)
    assert positions == [i for i, t in enumerate(ids) if t == tag_id]
    for k, (step, pos) in enumerate(zip(STEPS, positions)):
        assert ids[pos] == tag_id
        # What lies between the previous tag (or the start) and this one is the step.
        segment = tok.decode(ids[positions[k - 1] + 1 if k else 0 : pos + 1])
        if name == "qwen-prm":
            if k:
                assert segment == step + "<extra_0>"
            else:
                assert segment.startswith("<|im_start|>system\n" + fmt.system + "<|im_end|>\n")
                user = f"<|im_start|>user\n{QUESTION}<|im_end|>\n"
                assert segment.endswith(user + f"<|im_start|>assistant\n{step}<extra_0>")
        else:
            if k:
                assert segment == "\n" + step + " ки"
            else:
                assert segment == tok.bos_token + QUESTION + " " + step + " ки"
    tail = tok.decode(ids[positions[-1] + 1 :])
    assert tail == ("<|im_end|>\n" if name == "qwen-prm" else "")


@pytest.mark.parametrize("name", ["qwen-prm", "math-shepherd"])
def test_prm_input_without_steps_tags_the_question(name, qwen_prm, shepherd_prm):
    prm = qwen_prm if name == "qwen-prm" else shepherd_prm
    fmt, tok = FORMATS[name], prm.tokenizer
    ids, positions = prm_input(fmt, tok, QUESTION, [])
    assert len(positions) == 1
    (pos,) = positions
    assert ids[pos] == tok.convert_tokens_to_ids(fmt.step_tag.strip())
    before, after = tok.decode(ids[:pos]), tok.decode(ids[pos + 1 :])
    if name == "qwen-prm":
        assert before.endswith(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
        assert after == "<|im_end|>\n"
    else:
        assert before == tok.bos_token + QUESTION + " "
        assert after == ""


def test_prm_input_matches_the_hand_written_text(case):
    prm, ref, _ = case
    for question, steps in ITEMS:
        ids, positions = prm.encode(question, steps)
        ref_ids, ref_positions, _ = ref(question, steps)
        assert ids == ref_ids
        assert positions == ref_positions


# ---- scores --------------------------------------------------------------------------


def test_scores_equal_a_manual_reading(case):
    prm, ref, _ = case
    results = prm.score(ITEMS)
    every = []
    for (question, steps), res in zip(ITEMS, results):
        ids, _, expected = ref(question, steps)
        assert res.skipped is None
        assert res.tokens == len(ids)
        assert len(res.scores) == max(1, len(steps))
        assert torch.allclose(torch.tensor(res.scores), expected, **TOL), (res.scores, expected)
        every += res.scores
    # Random heads, but not degenerate: the comparison above distinguishes readings.
    assert all(0.0 < s < 1.0 for s in every)
    assert max(every) - min(every) > 0.05


def test_padding_and_batching_do_not_change_scores(case):
    prm, _, _ = case
    alone = [prm.score([item])[0].scores for item in ITEMS]
    together = prm.score(ITEMS)
    reversed_ = prm.score(ITEMS[::-1])[::-1]
    lengths = {len(prm.encode(*item)[0]) for item in ITEMS}
    assert len(lengths) == len(ITEMS)  # every item is padded differently in the batch
    for a, b, c in zip(alone, together, reversed_):
        assert torch.allclose(torch.tensor(a), torch.tensor(b.scores), **TOL)
        assert torch.allclose(torch.tensor(a), torch.tensor(c.scores), **TOL)


def test_small_batch_size_gives_the_same_scores(tiny_qwen_dir, qwen_prm):
    small = HFPRM(str(tiny_qwen_dir), prm_format="qwen-prm", batch_size=2)
    for a, b in zip(small.score(ITEMS), qwen_prm.score(ITEMS)):
        assert torch.allclose(torch.tensor(a.scores), torch.tensor(b.scores), **TOL)


def test_bad_items_are_skipped_without_disturbing_others(case):
    prm, _, tag = case
    good = prm.score(ITEMS)
    too_long = (QUESTION, ["x" * (prm.max_length + 1)])
    bad = [
        (QUESTION, ["one", f"two {tag} three"]),
        too_long,
        (f"What about {tag}?", ["fine"]),  # the tag in the question: one tag too many
    ]
    mixed = [bad[0], ITEMS[0], bad[1], ITEMS[1], ITEMS[2], bad[2], ITEMS[3], ITEMS[4]]
    results = prm.score(mixed)
    skipped = [results[0], results[2], results[5]]
    assert "step tag" in skipped[0].skipped
    assert f"the model allows {prm.max_length}" in skipped[1].skipped
    assert "step tags" in skipped[2].skipped
    for res in skipped:
        assert res.scores == [] and res.tokens == 0 and res.skipped
    kept = [results[i] for i in (1, 3, 4, 6, 7)]
    for a, b in zip(good, kept):
        assert b.skipped is None
        assert b.tokens == a.tokens
        assert torch.allclose(torch.tensor(a.scores), torch.tensor(b.scores), **TOL)


def test_max_length_argument_limits_inputs(tiny_shepherd_dir, shepherd_prm):
    limit = len(shepherd_prm.encode(*ITEMS[1])[0])
    prm = HFPRM(str(tiny_shepherd_dir), max_length=limit)
    results = prm.score([ITEMS[1], ITEMS[2]])
    assert results[0].skipped is None and results[0].tokens == limit
    assert results[1].skipped and results[1].scores == []
    assert shepherd_prm.max_length == 128  # from max_position_embeddings by default


# ---- format names and the ias_prm.json file ------------------------------------------


def test_unknown_format_name_is_a_user_error(tiny_qwen_dir):
    with pytest.raises(UserError, match="unknown PRM format"):
        HFPRM(str(tiny_qwen_dir), prm_format="no-such-format")
    with pytest.raises(UserError, match="unknown PRM format"):
        load_format(tiny_qwen_dir, "no-such-format")


def test_folder_without_format_file_is_a_user_error(tiny_qwen_dir):
    with pytest.raises(UserError, match=FORMAT_FILE):
        HFPRM(str(tiny_qwen_dir))
    with pytest.raises(UserError, match="--prm-format"):
        load_format(tiny_qwen_dir)


def test_format_file_round_trip(tiny_shepherd_dir, tmp_path):
    assert load_format(tiny_shepherd_dir) == FORMATS["math-shepherd"]
    # A name given by the user wins over the saved file.
    assert load_format(tiny_shepherd_dir, "qwen-prm") == FORMATS["qwen-prm"]
    for name, fmt in FORMATS.items():
        folder = tmp_path / name
        folder.mkdir()
        fmt.save(folder)
        assert load_format(folder) == fmt
    custom = PRMFormat(reading="tokens", step_tag="<tag>", plus="good", minus="bad", step_sep=" | ")
    custom.save(tmp_path)
    assert load_format(tmp_path) == custom
    (tmp_path / FORMAT_FILE).write_text('{"reading": "tokens"}')
    with pytest.raises(UserError, match="not a valid PRM format file"):
        load_format(tmp_path)


def test_load_prm_reads_the_saved_format(tiny_shepherd_dir):
    prm = load_prm(str(tiny_shepherd_dir), batch_size=4)
    assert isinstance(prm, HFPRM) and prm.format == FORMATS["math-shepherd"]


def test_reading_past_the_trained_positions_is_the_users_choice_and_said(capsys):
    """A GSM8K-length input is a recorded skip for the zoo PRM (256 positions); with
    max_length raised it is read, and the PRM says once that it reads past its training."""
    question, steps = "Compute " + "+".join(["1"] * 150) + ".", ["1+1=2", "\\boxed{150}"]
    plain = load_prm("arith-prm")
    assert "past the" not in capsys.readouterr().err
    [skipped] = plain.score([(question, steps)])
    assert skipped.skipped.startswith("PRM input has") and not skipped.scores
    longer = load_prm("arith-prm", max_length=1024)
    assert "reads up to 1024 tokens, past the 256 positions it was trained on" in capsys.readouterr().err
    [read] = longer.score([(question, steps)])
    assert read.skipped is None and len(read.scores) == 2 and all(0 <= s <= 1 for s in read.scores)
    longer.fresh_copy()  # loaded again for an adapter: nothing more is said
    assert "past the" not in capsys.readouterr().err
