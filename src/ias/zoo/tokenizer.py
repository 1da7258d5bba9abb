"""The zoo's character-level fast tokenizer (a real `tokenizer.json`, loadable anywhere)."""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
STEP_TAG = "<step>"
# Every character the arith task and its prompts can hold; anything else maps to <unk>.
MAX_LENGTH = 256  # the zoo models' context
CHARS = list(string.digits + string.ascii_letters + " +-*/=.,:;?!()[]{}\\$#'\"_^&%<>|~@`\n")


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character, plus the PRM step tag as a special token.

    Policies and the PRM share this vocabulary, so a PRM can start from a policy's weights.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS + [STEP_TAG])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # "." would skip newlines in this regex engine; "[\s\S]" takes every character.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=[STEP_TAG],
    )
    # transformers declares this property's setter apart from its getter, so mypy sees it read-only.
    fast.add_bos_token = True  # type: ignore[misc]
    fast.padding_side = "left"
    return fast


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder) -> None:
    """Save, naming the generic fast-tokenizer class so older transformers and vLLM load it too."""
    import json
    from pathlib import Path

    tokenizer.save_pretrained(folder)
    config_path = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_max_length"] = MAX_LENGTH
    config_path.write_text(json.dumps(config, indent=2) + "\n")
