"""Tiny, randomly initialised PRMs of real architectures, built from configs (no downloads).

`tiny_qwen2_prm` mimics Qwen2.5-Math-PRM (2-class token head read at `<extra_0>`, chat
layout); `tiny_mistral_shepherd` mimics Math-Shepherd (causal LM read at ` ки` through the
logits of `+` and `-`). The Mistral one has a character-level WordLevel tokenizer like the
zoo's; the Qwen2 one a byte-level BPE with no merges (see `_byte_level_tokenizer` for why).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ias.prm.format import FORMATS

CHARS = list(string.digits + string.ascii_letters + " +-*/=.,:;?!()[]{}\\$#'\"_^&%<>|~@`\n")

QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen2's pre-tokenizer split (as in transformers' Qwen2Tokenizer).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

SMALL = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    # Ten times the usual 0.02, so that random heads give scores spread over (0, 1)
    # rather than all near 0.5, and comparisons between readings mean something.
    initializer_range=0.2,
)


def _char_tokenizer(specials: list[str], extra: list[str]) -> Tokenizer:
    """One token per character; `specials` and `extra` (non-special) as whole added tokens."""
    vocab = {tok: i for i, tok in enumerate(specials + CHARS + ["<unk>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # "." would skip newlines in this regex engine; "[\s\S]" takes every character.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials + ["<unk>"])
    if extra:
        tok.add_tokens(extra)
    return tok


def _build(model_cls, config, seed: int):
    torch.manual_seed(seed)
    return model_cls(config).eval()


def _byte_level_tokenizer(specials: list[str]) -> Tokenizer:
    """A byte-level BPE with no merges (one token per byte), built like Qwen2's.

    transformers 5 loads any `model_type: qwen2` folder with `Qwen2Tokenizer`, whatever
    `tokenizer_config.json` says, and that class rebuilds a byte-level BPE from the saved
    vocab: a character-level WordLevel vocab would silently lose spaces and newlines.
    """
    vocab = {tok: i for i, tok in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], continuing_subword_prefix="", end_of_word_suffix=""))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return tok


def tiny_qwen2_prm(folder: str | Path) -> Path:
    """A 2-label `Qwen2ForTokenClassification` with a Qwen-style chat template (no ias_prm.json)."""
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    folder = Path(folder)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_tokenizer(specials),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = QWEN_CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(fast),
        num_labels=2,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        # One token per byte: the qwen-prm chat layout (system prompt included) alone
        # takes ~110 tokens, so 128 would leave almost no room for a question and steps.
        **{**SMALL, "max_position_embeddings": 256},
    )
    model = _build(Qwen2ForTokenClassification, config, seed=0)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_mistral_shepherd(folder: str | Path) -> Path:
    """A `MistralForCausalLM` with `ки` as one added token and bos `<s>`; carries its format."""
    from transformers import MistralConfig, MistralForCausalLM

    folder = Path(folder)
    tok = _char_tokenizer(["<s>", "</s>"], ["ки"])
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = MistralConfig(
        vocab_size=len(fast),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=None,
        sliding_window=None,
        tie_word_embeddings=False,
        **SMALL,
    )
    model = _build(MistralForCausalLM, config, seed=1)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    FORMATS["math-shepherd"].save(folder)
    return folder
