"""The transformers policy backend: batched sampling with our own loop over the KV cache.

`generate` spends most of its time growing a dynamic cache and cannot give every row its
own random stream. This loop prefills each distinct prompt once, fans the cache out to
its `n` samples, drops finished rows as it goes, and draws every token from a
counter-based stream keyed by (row seed, position), so a sample is the same whatever
batch it lands in.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ias.confidence import exits_now
from ias.models import hub_errors, resolve_model
from ias.policy.base import SamplingParams, check_prompts, mix64, register_policy, sample_offsets, uniforms
from ias.prompting import encode_prompts
from ias.types import Sample


@dataclass
class _Row:
    prompt: int  # index into the prompt list
    sample: int  # j in 0..n-1
    seed: np.uint64 | np.ndarray  # mix64 of two ints: a numpy uint64
    ids: list[int]
    text: str = ""
    logprobs: list[float] | None = None
    finish: str | None = None


@register_policy("hf")
class HFPolicy:
    """A causal LM from transformers, sampled in batches of `batch_size` rows."""

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 256,
        max_model_len: int | None = None,
        progress: bool = False,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(model)
        self.name = model
        with hub_errors(model):
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        # transformers wraps `to` with functools.wraps, whose stub types the call as unbound.
        self.model.to(device).eval()  # type: ignore[arg-type]
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress  # a bar over the samples of calls larger than one batch
        self.max_model_len = max_model_len or int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self.eos_ids = _eos_ids(self.tokenizer, self.model)
        # transformers 5 renamed the cache argument; older versions only know the old name.
        forward_args = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = min(self.eos_ids) if self.eos_ids else 0
        config = self.model.generation_config
        self.defaults = SamplingParams(
            temperature=1.0 if config.temperature is None else float(config.temperature),
            top_p=1.0 if config.top_p is None else float(config.top_p),
            max_tokens=min(256, self.max_model_len),
        )
        self._vocab = len(self.tokenizer)
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(self._vocab)))
        pieces = [self.tokenizer.convert_tokens_to_string([t]) if t else "" for t in vocab]
        # A character-level vocabulary (the zoo's) spells any text as the concatenation of its
        # tokens' pieces, so stop strings are found in a running text. Byte-level and
        # SentencePiece pieces are not exact (a split character, a dropped leading space):
        # their stops are looked for in a decode of the last tokens.
        self._pieces = (
            pieces if all(len(p) <= 1 for p in pieces if p not in self.tokenizer.all_special_tokens) else None
        )

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts)  # too long is our error below

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        seeds: Sequence[int],
        first: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        encoded = self.encode(prompts)
        check_prompts(encoded, seeds, self.max_model_len)
        offsets = sample_offsets(first, prompts)
        rows = [
            _Row(i, j, mix64(int(seeds[i]), offsets[i] + j), [], logprobs=[] if _needs_logprobs(params) else None)
            for i in range(len(prompts))
            for j in range(n)
        ]
        # Long prompts together: less padding. The order does not change any sample.
        rows.sort(key=lambda r: (-len(encoded[r.prompt]), r.prompt, r.sample))
        quiet = not self.progress or len(rows) <= self.batch_size
        with tqdm(total=len(rows), desc="sampling", unit="sample", disable=quiet, leave=False) as bar:
            for start in range(0, len(rows), self.batch_size):
                self._generate(rows[start : start + self.batch_size], encoded, params)
                bar.update(min(self.batch_size, len(rows) - start))
        done = {(r.prompt, r.sample): self._to_sample(r, len(encoded[r.prompt]), params) for r in rows}
        return [[done[i, j] for j in range(n)] for i in range(len(prompts))]

    def _to_sample(self, row: _Row, prompt_tokens: int, params: SamplingParams) -> Sample:
        text = self._decode(row.ids)
        stop_hit = None
        if row.finish == "stop":
            cut, stop_hit = _first_stop(text, params.stop)
            text = text[:cut]
        return Sample(
            text=text,
            prompt_tokens=prompt_tokens,
            generated_tokens=len(row.ids),
            finish_reason=row.finish or "length",
            logprobs=row.logprobs if params.logprobs else None,
            stop=stop_hit,
        )

    @torch.inference_mode()
    def _generate(self, rows: list[_Row], encoded: list[list[int]], params: SamplingParams) -> None:
        from transformers import DynamicCache

        prompts = sorted({r.prompt for r in rows})
        slot = {p: k for k, p in enumerate(prompts)}
        width = max(len(encoded[p]) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for k, p in enumerate(prompts):
            ids[k, width - len(encoded[p]) :] = torch.tensor(encoded[p])
            mask[k, width - len(encoded[p]) :] = 1
        cache = DynamicCache()
        logits = self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), cache)
        fan_out = torch.tensor([slot[r.prompt] for r in rows])
        cache.batch_select_indices(fan_out.to(self.device))
        logits, mask = logits[fan_out], mask[fan_out]
        positions = mask.sum(-1, keepdim=True)
        limits = [min(params.max_tokens, self.max_model_len - len(encoded[r.prompt])) for r in rows]
        active = list(range(len(rows)))
        longest_stop = max((len(s) for s in params.stop), default=0)
        for step in range(max(limits)):
            tokens, logprobs = self._pick(logits, np.array([rows[a].seed for a in active]), step, params)
            keep = []
            for k, a in enumerate(active):
                row, token = rows[a], int(tokens[k])
                row.ids.append(token)
                if row.logprobs is not None:
                    row.logprobs.append(float(logprobs[k]))
                if token in self.eos_ids:
                    row.finish = "eos"
                    continue
                if longest_stop and self._stopped(row, token, params.stop, longest_stop):
                    row.finish = "stop"
                elif (
                    params.exit_below is not None
                    and row.logprobs is not None  # kept whenever exit_below is set (_needs_logprobs)
                    and exits_now(row.logprobs, params.exit_below, params.exit_window)
                ):
                    row.finish = "exit"  # DeepConf: its confidence fell; what it would write is never computed
                elif len(row.ids) >= limits[a]:
                    row.finish = "length"
                else:
                    keep.append(k)
            if not keep:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep)
                cache.batch_select_indices(index.to(self.device))
                tokens, mask, positions = tokens[index], mask[index], positions[index]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
            logits = self._forward(tokens[:, None], mask, positions, cache)
            positions = positions + 1

    def _stopped(self, row: _Row, token: int, stops: Sequence[str], longest: int) -> bool:
        """Whether the text written so far now holds a stop string (it held none before)."""
        if self._pieces is not None:
            row.text += self._pieces[token]
            tail = row.text[-(longest + 1) :]
        else:  # a character is at most 4 byte tokens; 2 more for a cut character or space at the start
            tail = self._decode(row.ids[-(4 * longest + 2) :])
        return any(s in tail for s in stops)

    def _decode(self, ids: list[int]) -> str:
        """The text of one sequence of ids (transformers types `decode` as str, or list[str] for a batch)."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if not isinstance(text, str):
            raise TypeError(f"the tokenizer decoded one sequence into {type(text).__name__}")
        return text

    def _forward(self, ids, mask, positions, cache) -> torch.Tensor:
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self._cache_arg: cache},
            logits_to_keep=1,
        )
        # Ids past the tokenizer's vocabulary (a model padded to a round size, as Qwen2.5 is)
        # write no text: they are never drawn.
        return out.logits[:, -1, : self._vocab].float().cpu()

    @staticmethod
    def _pick(logits: torch.Tensor, seeds: np.ndarray, step: int, params: SamplingParams):
        """Sample one token per row by inverse CDF on that row's own uniform."""
        logp = torch.log_softmax(logits, dim=-1)
        if params.temperature == 0:
            tokens = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / params.temperature, dim=-1)
            order = None
            if params.top_p < 1:
                probs, order = _descending(probs, params.top_p)
                before = probs.cumsum(-1) - probs
                probs = probs.masked_fill(before >= params.top_p, 0.0)
            cdf = probs.double().cumsum(-1)
            u = torch.from_numpy(uniforms(seeds, step)) * cdf[:, -1]
            tokens = (cdf <= u[:, None]).sum(-1).clamp(max=logits.shape[-1] - 1)
            if order is not None:
                tokens = order.gather(1, tokens[:, None])[:, 0]
        return tokens, logp.gather(1, tokens[:, None])[:, 0]


def _needs_logprobs(params: SamplingParams) -> bool:
    """Log-probabilities are kept when asked for, and when the early exit reads them."""
    return params.logprobs or params.exit_below is not None


#: Tokens ranked before a full sort is needed: a nucleus is nearly always far smaller.
NUCLEUS_CANDIDATES = 256


def _descending(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities in descending order with their token ids, as far as the nucleus needs:
    the top NUCLEUS_CANDIDATES when they hold `top_p` of every row's mass (the tokens after
    them are outside the nucleus, so the draw is the one a full sort gives), else all of them.
    Sorting a 49k vocabulary at every step took a sixth of SmolLM2's sampling time."""
    if probs.shape[-1] > NUCLEUS_CANDIDATES:
        top, order = probs.topk(NUCLEUS_CANDIDATES, dim=-1)
        if bool((top.cumsum(-1)[:, -1] >= top_p).all()):
            return top, order
    return probs.sort(dim=-1, descending=True)


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str | None]:
    hits = [(text.find(s), s) for s in stops if s in text]
    return min(hits) if hits else (len(text), None)


def _eos_ids(tokenizer, model) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is not None:
        ids.update([eos] if isinstance(eos, int) else eos)
    return ids
