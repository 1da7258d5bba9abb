"""The transformers PRM backend: both reading formats, batched, never truncating.

A PRM's score at a tag comes from one linear *reading layer* (the 2-class head, or the LM
head's `+`/`-` rows). A quantile reader (from `quantile-lora` calibration) can take that
layer's place: it reads the same input and returns quantiles of success instead.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Sequence

import torch

import ias.prm.likelihood  # noqa: F401  (registers the zoo PRM's architecture with transformers)
from ias.errors import UserError
from ias.models import hub_errors, resolve_model
from ias.prm.base import QuantileReading, StepScores, register_prm
from ias.prm.format import check_format_tokens, load_format, prm_input

_SAID_PAST_TRAINING: set[tuple[str, int]] = set()  # (PRM, max_length) already told on stderr


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

        check_prm_options(dtype, batch_size, max_length)
        self.options: dict[str, Any] = dict(
            prm_format=prm_format, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length
        )
        path = resolve_model(model)
        self.name = model
        self.format = load_format(path, prm_format)  # a hub id has no local ias_prm.json: --prm-format
        with hub_errors(model):
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            check_format_tokens(self.format, self.tokenizer, model)  # before loading weights: fail fast
            config = AutoConfig.from_pretrained(path)
            self.model = _load_model(path, config, self.format.reading, getattr(torch, dtype))
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        trained = int(getattr(config, "max_position_embeddings", 1 << 30))
        self.max_length = max_length or trained
        if self.max_length > trained and (model, self.max_length) not in _SAID_PAST_TRAINING:
            # The user's choice, said once per process (fresh copies load the PRM again): extrapolations.
            _SAID_PAST_TRAINING.add((model, self.max_length))
            print(
                f"ias: PRM '{model}' reads up to {self.max_length} tokens, past the {trained} positions it was "
                "trained on",
                file=sys.stderr,
            )
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        if self.format.reading == "tokens":
            self.candidates = [
                self.tokenizer.encode(tok, add_special_tokens=False)[-1]
                for tok in (self.format.plus, self.format.minus)
            ]
        # Set by quantile-lora calibration: reads quantiles in the reading layer's place.
        self.quantile_reader: QuantileReading | None = None

    def fresh_copy(self) -> HFPRM:
        """The same PRM loaded anew: adapters are injected in place, so never into a shared one."""
        return HFPRM(self.name, **self.options)

    def reading_layer(self) -> tuple[torch.nn.Linear, int, int]:
        """The linear layer whose output the score is read from, and its positive and negative rows."""
        if self.format.reading == "tokens":
            return self.model.get_output_embeddings(), self.candidates[0], self.candidates[1]
        head = getattr(self.model, "score", None) or getattr(self.model, "classifier", None)
        if isinstance(head, torch.nn.Sequential):  # Qwen2.5-Math-PRM: Linear, ReLU, Linear
            head = head[-1]
        if not isinstance(head, torch.nn.Linear):
            raise UserError(f"cannot find the 2-class head of PRM '{self.name}' (no linear `score` or `classifier`)")
        return head, 1, 0

    def batch_tensors(self, batch: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and attention mask of encoded inputs, on the PRM's device."""
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, (seq, _) in enumerate(batch):
            ids[k, : len(seq)] = torch.tensor(seq)
            mask[k, : len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    def forward_reading_inputs(self, ids: torch.Tensor, mask: torch.Tensor, hidden: bool = False):
        """The model's output and the reading layer's input at every position (one forward)."""
        layer = self.reading_layer()[0]
        captured: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda module, args, out: captured.__setitem__("x", args[0]))
        try:
            output = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
        finally:
            handle.remove()
        return output, captured["x"]

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
            for k, reading in zip(chunk, self._read([encoded[k] for k in chunk], hidden)):
                reading.tokens = len(encoded[k][0])
                if any(math.isnan(x) for x in reading.scores):
                    reading = StepScores(tokens=reading.tokens, skipped="the PRM returned NaN")
                results[k] = reading
        return results

    @torch.inference_mode()
    def _read(self, batch: list[tuple[list[int], list[int]]], hidden: bool = False) -> list[StepScores]:
        ids, mask = self.batch_tensors(batch)
        if self.quantile_reader is not None:
            output, inputs = self.forward_reading_inputs(ids, mask, hidden)
        else:
            output = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
        out = []
        for k, (_, tags) in enumerate(batch):
            reading = StepScores()
            if self.quantile_reader is not None:
                q = self.quantile_reader(inputs[k, tags].float())
                reading.quantiles = q.cpu().tolist()
                p = q[:, self.quantile_reader.median_index]
            else:
                at_tags = output.logits[k, tags].float()
                if self.format.reading == "tokens":
                    p = torch.softmax(at_tags[:, self.candidates], dim=-1)[:, 0]
                else:
                    p = torch.softmax(at_tags[:, :2], dim=-1)[:, 1]
            reading.scores = p.cpu().tolist()
            if hidden:
                reading.hidden = output.hidden_states[-1][k, tags].float().cpu().numpy()
            out.append(reading)
        return out


def _load_model(path: str, config, reading: str, dtype):
    """The right head for the reading format (custom PRM architectures by their declared
    class), refused when the checkpoint lacks weights the model needs."""
    with _quiet_transformers():  # its load report would print the missing weights before our one line
        model, info = _load_with_info(path, config, reading, dtype)
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers would fill them with random numbers: scores read from noise
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UserError(
            f"'{path}' has no trained weights for {shown}: it is not a PRM of the '{reading}' format "
            "(a policy given as --prm?); pass a PRM folder, or the --prm-format its weights fit"
        )
    return model


def _load_with_info(path: str, config, reading: str, dtype) -> tuple[Any, dict]:
    """The model and transformers' loading report (`output_loading_info`, a pair its stubs do not say)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification

    loaded: Any
    if reading == "tokens":
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, output_loading_info=True)
    elif any("ProcessRewardModel" in a for a in (getattr(config, "architectures", None) or [])):
        # Qwen2.5-Math-PRM ships its own modelling code with a 2-class head at every token.
        loaded = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=True, output_loading_info=True)
    else:
        loaded = AutoModelForTokenClassification.from_pretrained(path, dtype=dtype, output_loading_info=True)
    model, info = loaded
    return model, info


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_prm_options(dtype: str, batch_size: object, max_length: object) -> None:
    """Options that would make nothing readable (or crash mid-run) are refused at load."""
    if not isinstance(getattr(torch, str(dtype), None), torch.dtype) or not getattr(torch, dtype).is_floating_point:
        raise UserError(f"PRM option dtype must be a torch float type (float32, bfloat16, float16), got '{dtype}'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"PRM option batch_size must be a whole number >= 1, got {batch_size}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise UserError(f"PRM option max_length must be a whole number >= 1 (tokens the PRM reads), got {max_length}")
