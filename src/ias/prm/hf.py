"""The transformers PRM backend: both reading formats, batched, never truncating."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import ias.prm.likelihood  # noqa: F401  (registers the zoo PRM's architecture with transformers)
from ias.models import resolve_model
from ias.prm.base import StepScores, register_prm
from ias.prm.format import load_format, prm_input


@register_prm("hf")
class HFPRM:
    """A PRM read at its step tags; inputs longer than the model allows are recorded skips."""

    def __init__(
        self,
        model: str,
        prm_format: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 64,
        max_length: int | None = None,
    ):
        from transformers import AutoConfig, AutoTokenizer

        path = resolve_model(model)
        self.name = model
        self.format = load_format(path if Path(path).is_dir() else None, prm_format)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        self.model = _load_model(path, config, self.format.reading, getattr(torch, dtype))
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = max_length or int(getattr(config, "max_position_embeddings", 1 << 30))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        if self.format.reading == "tokens":
            self.candidates = [
                self.tokenizer.encode(tok, add_special_tokens=False)[-1]
                for tok in (self.format.plus, self.format.minus)
            ]

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        return prm_input(self.format, self.tokenizer, question, steps)

    def score(self, items: Sequence[tuple[str, list[str]]], hidden: bool = False) -> list[StepScores]:
        """Step scores of many (question, steps) pairs; `hidden` also returns the last hidden
        state at every tag (what a calibration head learns from)."""
        results = [StepScores() for _ in items]
        encoded = {}
        for k, (question, steps) in enumerate(items):
            try:
                ids, tags = self.encode(question, steps)
            except ValueError as err:
                results[k].skipped = str(err)
                continue
            if len(ids) > self.max_length:
                results[k].skipped = f"PRM input has {len(ids)} tokens, the model allows {self.max_length}"
                continue
            encoded[k] = (ids, tags)
        order = sorted(encoded, key=lambda k: len(encoded[k][0]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            readings = self._read([encoded[k] for k in chunk], hidden)
            for k, (p, states) in zip(chunk, readings):
                results[k].tokens = len(encoded[k][0])
                if any(math.isnan(x) for x in p):
                    results[k].skipped = "the PRM returned NaN"
                else:
                    results[k].scores = p
                    results[k].hidden = states
        return results

    @torch.inference_mode()
    def _read(self, batch: list[tuple[list[int], list[int]]], hidden: bool = False) -> list[tuple[list[float], np.ndarray | None]]:
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, (seq, _) in enumerate(batch):
            ids[k, : len(seq)] = torch.tensor(seq)
            mask[k, : len(seq)] = 1
        output = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), output_hidden_states=hidden
        )
        logits = output.logits
        out = []
        for k, (_, tags) in enumerate(batch):
            at_tags = logits[k, tags].float()
            if self.format.reading == "tokens":
                p = torch.softmax(at_tags[:, self.candidates], dim=-1)[:, 0]
            else:
                p = torch.softmax(at_tags[:, :2], dim=-1)[:, 1]
            states = output.hidden_states[-1][k, tags].float().cpu().numpy() if hidden else None
            out.append((p.cpu().tolist(), states))
        return out


def _load_model(path: str, config, reading: str, dtype):
    """The right head for the reading format; custom PRM architectures by their declared class."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification

    if reading == "tokens":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if any("ProcessRewardModel" in a for a in (getattr(config, "architectures", None) or [])):
        # Qwen2.5-Math-PRM ships its own modelling code with a 2-class head at every token.
        return AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=True)
    return AutoModelForTokenClassification.from_pretrained(path, dtype=dtype)
