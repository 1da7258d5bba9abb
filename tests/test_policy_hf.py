"""The transformers policy on the shipped weak model: seeds, stops, limits, logprobs."""

import dataclasses
import math

import numpy as np
import pytest

from ias.confidence import live_exit
from ias.errors import UserError
from ias.policy.base import SamplingParams, derive_seed, load_policy
from ias.scaling.budget import lowest_window_confidence

PROMPTS = ["Compute 12+7*3.\n\n", "Compute 5-2.\n\n", "Compute 48+27-9*2.\n\n"]


@pytest.fixture(scope="module")
def policy():
    return load_policy("arith-weak", batch_size=5)


def test_a_sample_depends_only_on_its_seed_and_index(policy):
    params = SamplingParams(temperature=1.0, max_tokens=80)
    together = policy.sample(PROMPTS, 3, params, [1, 2, 3])
    alone = policy.sample(PROMPTS[2:], 3, params, [3])
    assert [s.text for s in together[2]] == [s.text for s in alone[0]]
    more = policy.sample(PROMPTS[2:], 5, params, [3])  # asking for more samples keeps the first ones
    assert [s.text for s in more[0][:3]] == [s.text for s in alone[0]]
    other = policy.sample(PROMPTS[2:], 3, params, [4])
    assert [s.text for s in other[0]] != [s.text for s in alone[0]]


def test_later_samples_without_the_earlier_ones(policy):
    """`first` starts each prompt at a sample index: samples 2..4 of a seed are the same
    whether drawn after 0..1 or on their own, whatever each prompt's start."""
    params = SamplingParams(temperature=1.0, max_tokens=80)
    whole = policy.sample(PROMPTS, 5, params, [1, 2, 3])
    later = policy.sample(PROMPTS, 3, params, [1, 2, 3], first=[2, 0, 1])
    assert later == [whole[0][2:5], whole[1][0:3], whole[2][1:4]]
    with pytest.raises(ValueError, match="first-sample indices"):
        policy.sample(PROMPTS[:1], 1, params, [1], first=[-1])
    with pytest.raises(ValueError, match="one first-sample index per prompt"):
        policy.sample(PROMPTS[:2], 1, params, [1, 2], first=[0])


def test_counts_logprobs_and_finish_reasons(policy):
    params = SamplingParams(temperature=1.0, max_tokens=120, logprobs=True)
    for group, prompt in zip(policy.sample(PROMPTS, 2, params, [7, 8, 9]), PROMPTS):
        for s in group:
            assert s.prompt_tokens == len(policy.encode([prompt])[0])
            assert s.finish_reason == "eos"
            assert s.generated_tokens == len(s.logprobs) == len(s.text) + 1  # characters + EOS
            assert all(lp <= 0 and math.isfinite(lp) for lp in s.logprobs)


def test_stop_strings_end_a_step(policy):
    params = SamplingParams(temperature=1.0, max_tokens=120, stop=("\n\n",))
    for group in policy.sample(PROMPTS, 2, params, [1, 2, 3]):
        for s in group:
            assert "\n\n" not in s.text
            assert s.finish_reason in ("stop", "eos")
            if s.finish_reason == "stop":
                assert s.stop == "\n\n" and s.generated_tokens == len(s.text) + 2


def test_max_tokens_is_a_recorded_length_stop(policy):
    [[s]] = policy.sample(PROMPTS[2:], 1, SamplingParams(max_tokens=5), [0])
    assert s.finish_reason == "length" and s.generated_tokens == 5 and len(s.text) == 5


def test_greedy_is_deterministic_and_top_p_narrows(policy):
    greedy = policy.sample(PROMPTS, 2, SamplingParams(temperature=0, max_tokens=80), [1, 2, 3])
    for group in greedy:
        assert group[0].text == group[1].text
    narrow = policy.sample(PROMPTS[:1], 8, SamplingParams(top_p=0.01, max_tokens=80), [5])
    assert len({s.text for s in narrow[0]}) == 1 and narrow[0][0].text == greedy[0][0].text


def test_prompt_longer_than_the_context_is_an_error(policy):
    with pytest.raises(UserError, match="tokens, more than"):
        policy.sample(["1+" * 200], 1, SamplingParams(), [0])


def test_bad_sampling_settings_are_user_errors():
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"max_tokens": 0}):
        with pytest.raises(UserError):
            SamplingParams(**bad)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "arith-test-00001") == derive_seed(0, "arith-test-00001")
    seeds = {derive_seed(s, pid, j) for s in range(3) for pid in ("a", "b") for j in range(4)}
    assert len(seeds) == 24 and all(0 <= s < 2**63 for s in seeds)


def test_the_nucleus_from_the_top_candidates_draws_what_a_full_sort_draws(monkeypatch):
    """Peaked rows take the top-k shortcut, a flat row falls back to the full sort; either way
    every token drawn is the one the whole sorted vocabulary gives."""
    import numpy as np
    import torch

    import ias.policy.hf as hf

    generator = torch.Generator().manual_seed(0)
    peaked = torch.randn((6, 5000), generator=generator) * 4
    flat = torch.randn((2, 5000), generator=generator) * 0.01  # the top 256 hold ~5% of the mass
    logits = torch.cat([peaked, flat])
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=1)
    probs = torch.softmax(logits[:6] / 0.7, dim=-1)
    assert hf._descending(probs, 0.9)[0].shape[-1] == hf.NUCLEUS_CANDIDATES  # the shortcut is taken
    seeds = np.arange(8, dtype=np.int64) * 7919
    batches = (logits[:6], logits)  # peaked only (the shortcut), and with the flat rows (the fallback)
    drawn = [[hf.HFPolicy._pick(rows, seeds[: len(rows)], step, params) for step in range(20)] for rows in batches]
    monkeypatch.setattr(hf, "NUCLEUS_CANDIDATES", 10**9)  # always the full sort
    for rows, picks in zip(batches, drawn):
        for step, (tokens, logprobs) in enumerate(picks):
            full_tokens, full_logprobs = hf.HFPolicy._pick(rows, seeds[: len(rows)], step, params)
            assert torch.equal(tokens, full_tokens) and torch.equal(logprobs, full_logprobs)
    assert len({int(t) for tokens, _ in drawn[1] for t in tokens[6:]}) > 20  # the flat rows drew widely


def test_nan_or_infinite_sampling_settings_are_user_errors():
    for bad in ({"temperature": math.nan}, {"temperature": math.inf}, {"top_p": math.nan}):
        with pytest.raises(UserError, match="must be"):
            SamplingParams(**bad)


def test_a_prompt_encoding_to_no_tokens_is_a_user_error(tmp_path):
    """A tokenizer that adds no BOS (as SmolLM2's) encodes "" to nothing: named, not a crash."""
    import json
    import shutil

    from ias.models import ZOO_DIR

    folder = shutil.copytree(ZOO_DIR / "arith-weak", tmp_path / "no-bos")
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None  # no <s> added
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    policy = load_policy(str(folder))
    assert policy.encode([""]) == [[]]
    with pytest.raises(UserError, match="^prompt 1 encodes to no tokens"):
        policy.sample(["Compute 5-2.\n\n", ""], 1, SamplingParams(max_tokens=5), [0, 1])


def test_the_early_exit_stops_a_sample_where_the_replay_cuts_it(policy):
    """DeepConf live: a sample stops after the first full window whose mean log-probability is
    below the threshold, exactly where `live_exit` cuts the same sample drawn in full; the
    tokens past it are never generated."""
    params = SamplingParams(temperature=1.0, max_tokens=80, logprobs=True)
    full = policy.sample(PROMPTS, 6, params, [1, 2, 3])
    window = 4
    threshold = float(np.median([lowest_window_confidence(s.logprobs, window) for row in full for s in row]))
    live = policy.sample(PROMPTS, 6, dataclasses.replace(params, exit_below=threshold, exit_window=window), [1, 2, 3])
    exited = 0
    for whole, cut_short in zip((s for row in full for s in row), (s for row in live for s in row)):
        cut = live_exit(whole.logprobs, whole.finish_reason, threshold, window)
        # The batch's make-up changes log-probabilities in their last bits (rows leave it at
        # other steps), never a drawn token here: texts and counts are equal, logprobs close.
        if cut is None:
            assert (cut_short.text, cut_short.generated_tokens, cut_short.finish_reason) == (
                whole.text,
                whole.generated_tokens,
                whole.finish_reason,
            )
            assert cut_short.logprobs == pytest.approx(whole.logprobs, abs=1e-5)
            continue
        exited += 1
        assert cut_short.finish_reason == "exit" and cut_short.generated_tokens == cut + 1
        assert cut_short.logprobs == pytest.approx(whole.logprobs[: cut + 1], abs=1e-5)
        assert whole.text.startswith(cut_short.text)
    assert 0 < exited < 18
    plain = policy.sample(
        PROMPTS[:1], 2, dataclasses.replace(params, logprobs=False, exit_below=threshold, exit_window=window), [1]
    )
    assert all(s.logprobs is None for s in plain[0])  # read to decide the exit, returned only when asked


def test_early_exit_settings_are_checked_and_recorded_only_when_on():
    with pytest.raises(UserError, match="exit_below must be a finite"):
        SamplingParams(exit_below=float("nan"))
    assert "exit_below" not in SamplingParams().to_dict()  # run folders made before it resume
