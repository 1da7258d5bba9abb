"""Training the zoo's policies: tiny character-level Llamas that learn `arith` from its train split."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ias.tasks.arith import make_arith
from ias.zoo.specs import PolicySpec
from ias.zoo.tokenizer import MAX_LENGTH, build_char_tokenizer, save_tokenizer


def build_llama(tokenizer, hidden: int, layers: int, heads: int, seed: int):
    """A LlamaForCausalLM sized for the zoo (an architecture every engine serves)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 8 * 8,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def run_steps(model, optimizer, batches, loss_of, steps: int, peak_lr: float, desc: str, progress: bool) -> float:
    """The zoo's training loop: scheduled learning rate (times each group's `scale`), clipped
    gradients, a progress bar; returns the last loss and leaves the model in eval mode."""
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=2)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr) * group.get("scale", 1.0)
        loss = loss_of(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return loss.item()


def length_bucketed(items: list, batch: int, rng: random.Random, key, group: int):
    """Endless random batches of similar length: draw `group` batches' worth, sort, shuffle.

    Padding to the longest sequence of a random batch wastes about half the compute here;
    sorting too widely makes batches too alike to learn from, so `group` stays small
    (1 means plain random batches).
    """
    while True:
        pool = sorted(rng.sample(items, batch * group), key=key)
        chunks = [pool[i : i + batch] for i in range(0, len(pool), batch)]
        rng.shuffle(chunks)
        yield from chunks


def policy_batch(tokenizer, problems, task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention mask, labels); the loss covers the solution and EOS only."""
    prompts = [task.prompt(p) for p in problems]
    prompt_ids = tokenizer(prompts)["input_ids"]
    full_ids = tokenizer([pr + p.solution for pr, p in zip(prompts, problems)])["input_ids"]
    seqs = [ids + [tokenizer.eos_token_id] for ids in full_ids]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for k, (seq, prompt) in enumerate(zip(seqs, prompt_ids)):
        ids[k, : len(seq)] = torch.tensor(seq)
        mask[k, : len(seq)] = 1
        labels[k, len(prompt) : len(seq)] = torch.tensor(seq[len(prompt) :])
    return ids, mask, labels


def train_policy(spec: PolicySpec, out: Path, progress: bool = True) -> dict:
    """Train a policy from its recipe and save it with `save_pretrained`; returns timings."""
    from transformers import GenerationConfig

    start = time.time()
    torch.manual_seed(spec.seed)
    tokenizer = build_char_tokenizer()
    model = build_llama(tokenizer, spec.hidden, spec.layers, spec.heads, spec.seed)
    task = make_arith()
    problems = task.problems("train")
    rng = random.Random(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    batches = length_bucketed(problems, spec.batch, rng, lambda p: len(p.question) + len(p.solution), spec.bucket)

    def loss_of(batch):
        ids, mask, labels = policy_batch(tokenizer, batch, task)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    final_loss = run_steps(model, optimizer, batches, loss_of, spec.steps, spec.lr, f"train {spec.name}", progress)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=spec.temperature,
        top_p=1.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return {"train_seconds": round(time.time() - start, 1), "final_loss": round(final_loss, 4)}
