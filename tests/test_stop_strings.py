"""Stop strings and prompt encoding with real tokenizers whose pieces are not the text:
byte-level BPE (a character split over byte tokens) and SentencePiece-style (a word's
leading space lives in its token). A sample with a stop string is the free sample cut at
the stop's first occurrence, on the same seed."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ias.policy.base import SamplingParams, load_policy
from ias.prompting import encode_prompts

WORDS = ["<unk>", "<s>", "</s>", "▁the", "▁answer", "▁is", "▁7", "▁so", "▁x", "▁é", "é"]


@pytest.fixture(scope="module")
def sentencepiece_policy(tmp_path_factory):
    """A tiny random Llama with a Llama-2/Mistral-style word tokenizer (Metaspace-like)."""
    folder = tmp_path_factory.mktemp("sp-policy")
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
    )  # 5 ids past the tokenizer, as padded vocabularies have
    LlamaForCausalLM(config).save_pretrained(folder)
    return load_policy(str(folder))


@pytest.mark.parametrize("stop", [" answer", "é", " x is"])
def test_a_stop_string_ends_the_sample_where_it_first_appears(sentencepiece_policy, stop):
    policy = sentencepiece_policy
    free = policy.sample(["the answer is"], 24, SamplingParams(temperature=1.0, max_tokens=40), [5])[0]
    stopped = policy.sample(["the answer is"], 24, SamplingParams(temperature=1.0, max_tokens=40, stop=(stop,)), [5])[0]
    hits = 0
    for a, b in zip(free, stopped):
        if stop in a.text:
            hits += 1
            assert b.finish_reason == "stop" and b.stop == stop and b.text == a.text[: a.text.index(stop)]
        else:
            assert b.text == a.text and b.finish_reason == a.finish_reason
    assert hits >= 1  # the stop occurred in a free sample


def test_ids_past_the_tokenizer_are_never_drawn(sentencepiece_policy):
    policy = sentencepiece_policy
    assert policy.model.config.vocab_size > len(policy.tokenizer)
    groups = policy.sample(["the"], 32, SamplingParams(temperature=3.0, max_tokens=30, logprobs=True), [1])
    assert all(s.generated_tokens > 0 for s in groups[0])  # hot sampling over every id, no IndexError


def test_a_chat_prompt_that_writes_the_bos_token_gets_no_second_one(sentencepiece_policy):
    tokenizer = sentencepiece_policy.tokenizer
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "the answer"}], tokenize=False)
    assert rendered.startswith("<s>")
    chat, plain = encode_prompts(tokenizer, [rendered, "the answer"])
    assert chat == plain == [1, 3, 4]
    assert sentencepiece_policy.encode([rendered]) == [[1, 3, 4]]
