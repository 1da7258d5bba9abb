"""Training the zoo PRM: Monte-Carlo labels from the strong policy, plus planted errors.

Labels from rollouts alone teach a PRM how hard a problem is, not whether a step is right
(`6-3=4` and `6-3=3` look alike to it). So every labelled trajectory also yields a copy
with one planted mistake (a wrong result or a miscopied number), continued consistently
from the mistake and labelled by where that leads (almost always 0), and half of them a
copy that breaks off in a malformed step (labelled 0), so garbage never scores high. The PRM starts from
the strong policy's weights (the way real PRMs start from an LLM), so it already reads
arithmetic and learns to judge it.
"""

from __future__ import annotations

import random
import re
import time
from collections import defaultdict
from pathlib import Path

import torch

from ias.calibration.montecarlo import prefix_targets, sample_trajectories
from ias.models import resolve_model
from ias.policy.hf import HFPolicy
from ias.prm.format import FORMATS, prm_input, tag_token_id
from ias.prm.likelihood import from_policy
from ias.tasks.arith import make_arith, solve_steps
from ias.types import split_steps
from ias.zoo.specs import PRMSpec
from ias.zoo.tokenizer import save_tokenizer
from ias.zoo.train_policy import length_bucketed, run_steps

STEP_RE = re.compile(r"^(\d+)([-+*])(\d+)=(\d+)(?: so ([\d+*-]+))?$")


def _tokens(expression: str) -> list:
    parts = re.findall(r"\d+|[-+*]", expression)
    return [int(p) if p.isdigit() else p for p in parts]


def plant_error(steps: list[str], rng: random.Random) -> tuple[list[str], int] | None:
    """A copy of a solution with one planted mistake at step k, continued consistently.

    Returns (steps, k) or None when the solution has no step to corrupt.
    """
    candidates = [(k, match) for k, s in enumerate(steps) if (match := STEP_RE.match(s))]
    if not candidates:
        return None
    k, match = rng.choice(candidates)
    a, op, b, value, rest = match.groups()
    value = int(value)
    if rest is None or rng.random() < 0.6:
        wrong = value + rng.choice([-10, -2, -1, 1, 2, 10]) if value >= 10 else value + rng.choice([1, 2, 3])
        if rest is not None:
            rest = re.sub(rf"(?<!\d){value}(?!\d)", str(wrong), rest, count=1)
        value = wrong
    else:
        numbers = [m for m in re.finditer(r"\d+", rest)]
        target = rng.choice(numbers)
        digits = list(target.group())
        i = rng.randrange(len(digits))
        digits[i] = str((int(digits[i]) + rng.choice([1, 2, 9])) % 10)
        rest = rest[: target.start()] + "".join(digits) + rest[target.end() :]
    head = f"{a}{op}{b}={value}"
    if rest is None:
        return steps[:k] + [head, f"\\boxed{{{value}}}"], k
    tail = solve_steps(_tokens(rest))
    if tail is None:  # the mistake made a negative number: state the answer as the policy might
        tail = ["\\boxed{0}"]
    return steps[:k] + [f"{head} so {rest}"] + tail, k


JUNK = "0123456789+-*= so{}\\\n."


def garble(steps: list[str], rng: random.Random) -> tuple[list[str], int] | None:
    """A copy of a solution that breaks off in a malformed step (as weak samples do)."""
    if not steps:
        return None
    k = rng.randrange(len(steps))
    cut = rng.randrange(len(steps[k]))
    junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(1, 4)))
    broken = (steps[k][:cut] + junk).replace("\n\n", "\n").strip()
    if not broken or broken == steps[k]:
        return None
    return steps[:k] + [broken], k


def build_examples(trajectories, targets, task, rng: random.Random) -> list[tuple[str, list[str], list[float]]]:
    """(question, steps, label per tag) examples; label -1 marks a tag without a target."""
    by_prefix = {(t.problem_id, t.traj, t.t): t.p for t in targets}
    examples = []
    t0 = defaultdict(list)
    for tr in trajectories:
        pid = tr.problem.id
        labels = [by_prefix.get((pid, tr.index, k + 1), -1.0) for k in range(len(tr.steps))]
        if tr.steps:
            examples.append((tr.problem.question, tr.steps, labels))
        if (pid, tr.index, 0) in by_prefix:
            t0[pid].append(by_prefix[(pid, tr.index, 0)])
        planted = plant_error(tr.steps, rng)
        if planted is not None:
            steps, k = planted
            outcome = float(task.grade(tr.problem, steps[-1]))
            examples.append((tr.problem.question, steps, labels[:k] + [outcome] * (len(steps) - k)))
        broken = garble(tr.steps, rng) if rng.random() < 0.5 else None
        if broken is not None:
            steps, k = broken
            examples.append((tr.problem.question, steps, labels[:k] + [0.0]))
    questions = {tr.problem.id: tr.problem.question for tr in trajectories}
    for pid, values in t0.items():
        examples.append((questions[pid], [], [sum(values) / len(values)]))
    return examples


def verification_examples(problems, task, rng: random.Random) -> list[tuple[str, list[str], list[float]]]:
    """Examples that need no rollout: a complete solution's last target is its correctness.

    Each reference solution is labelled 1 at its last step (t = T), a copy with a planted
    mistake by its outcome there, a copy that breaks off in a malformed step 0 there.
    Earlier tags carry no label (-1): their targets need rollouts, and labelling only the
    mistaken copies there would pull every intermediate score down. Fresh problems by the
    thousand keep the PRM from memorising instead of checking.
    """
    examples = []
    for problem in problems:
        steps = split_steps(problem.solution)
        examples.append((problem.question, steps, [-1.0] * (len(steps) - 1) + [1.0]))
        planted = plant_error(steps, rng)
        if planted is not None:
            wrong, _ = planted
            outcome = float(task.grade(problem, wrong[-1]))
            examples.append((problem.question, wrong, [-1.0] * (len(wrong) - 1) + [outcome]))
        broken = garble(steps, rng) if rng.random() < 0.5 else None
        if broken is not None:
            wrong, _ = broken
            examples.append((problem.question, wrong, [-1.0] * (len(wrong) - 1) + [0.0]))
    return examples


def train_prm(spec: PRMSpec, out: Path, policy_path: str | None = None, progress: bool = True) -> dict:
    """Label rollouts of `spec.policy`, plant errors, fine-tune the PRM, save it."""
    start = time.time()
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    task = make_arith()
    policy_path = resolve_model(policy_path or spec.policy)
    policy = HFPolicy(policy_path, batch_size=512, progress=progress)
    params = policy.defaults
    train = task.problems("train")
    problems = [train[i] for i in sorted(rng.sample(range(len(train)), spec.problems))]
    sampled = sample_trajectories(policy, task, problems, spec.n_traj, params, spec.seed)
    trajectories = [t for group in sampled for t in group]
    targets, _ = prefix_targets(policy, task, trajectories, spec.n_mc, 20, params, spec.seed)
    label_seconds = time.time() - start
    examples = build_examples(trajectories, targets, task, rng)
    taken = {p.id for p in problems}
    fresh = [p for p in train[: spec.verify_problems + len(taken)] if p.id not in taken][: spec.verify_problems]
    examples += verification_examples(fresh, task, rng)

    fmt = FORMATS["zoo"]
    tokenizer = policy.tokenizer
    encoded = [(prm_input(fmt, tokenizer, q, s), labels) for q, s, labels in examples]
    newline = tokenizer.convert_tokens_to_ids("\n")
    if not isinstance(newline, int):  # one token in, one id out; transformers types it as either
        raise TypeError(f"the tokenizer gave {newline!r} as the id of the newline token")
    model = from_policy(policy_path, tag_id=tag_token_id(fmt, tokenizer), start_ids=(newline, newline))
    model.lm_head.requires_grad_(False)  # keep the policy's own sense of what each step should say
    # The new head learns fast; the policy's body, which already reads arithmetic, slowly.
    groups = [
        {"params": list(model.model.parameters()), "scale": 1.0},
        {"params": list(model.score.parameters()), "scale": spec.head_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=0.01)
    batches = length_bucketed(encoded, spec.batch, rng, lambda item: len(item[0][0]), spec.bucket)
    final_loss = run_steps(
        model,
        optimizer,
        batches,
        lambda batch: _prm_loss(model, batch, tokenizer.pad_token_id),
        spec.steps,
        spec.lr,
        f"train {spec.name}",
        progress,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    fmt.save(out)
    return {
        "train_seconds": round(time.time() - start, 1),
        "label_seconds": round(label_seconds, 1),
        "examples": len(examples),
        "final_loss": round(final_loss, 4),
    }


def _prm_loss(model, batch, pad_id: int) -> torch.Tensor:
    """Cross-entropy of the 2-class head against soft success targets at every tag."""
    width = max(len(ids) for (ids, _), _ in batch)
    ids = torch.full((len(batch), width), pad_id)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for k, ((seq, tags), labels) in enumerate(batch):
        ids[k, : len(seq)] = torch.tensor(seq)
        mask[k, : len(seq)] = 1
        for pos, label in zip(tags, labels):
            if label >= 0:
                rows.append(k)
                cols.append(pos)
                targets.append(label)
    logits = model(input_ids=ids, attention_mask=mask).logits[rows, cols]
    logp = torch.log_softmax(logits.float(), dim=-1)
    target = torch.tensor(targets)
    return -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()
