"""The transformers policy on the shipped weak model: seeds, stops, limits, logprobs."""

import math

import pytest

from ias.errors import UserError
from ias.policy.base import SamplingParams, derive_seed, load_policy

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
