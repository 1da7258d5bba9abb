"""DeepConf's early exit, live against its replay. Prints one JSON line.

    python benchmarks/deepconf_exit.py [--problems 40] [--warmup 16] [--later 48] [--window 8]

Per arith problem: `--warmup` samples set the threshold (the 10% lowest of their lowest
windowed confidence, as `ias eval`'s deepconf); the next `--later` samples (indices after the
warm-up, `first=`) are drawn twice: in full, where the replay reads where each would stop
(`live_exit`, tokens up to there: what `ias eval` counts), and live with `exit_below`, where the hf backend stops
them while writing. Figures: tokens the replay counts, tokens generated live, tokens of the
full samples, how often live and replay cut at the same token, and the wall time of the
live and full draws.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from ias.confidence import live_exit
from ias.loaders import sampling_params
from ias.policy.base import derive_seed, load_policy
from ias.prompting import render_prompt
from ias.scaling.budget import deepconf_threshold, lowest_window_confidence
from ias.tasks.base import get_task


def live_cut(sample) -> int | None:
    return sample.generated_tokens - 1 if sample.finish_reason == "exit" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--later", type=int, default=48)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--keep", type=float, default=0.9)
    args = parser.parse_args()
    policy = load_policy("arith-weak")
    params = dataclasses.replace(sampling_params(policy), logprobs=True)
    problems = get_task("arith").problems("test", args.problems)
    task = get_task("arith")
    prompts = [render_prompt(task, p, policy) for p in problems]
    seeds = [derive_seed(0, p.id) for p in problems]

    warm = policy.sample(prompts, args.warmup, params, seeds)
    thresholds = [
        deepconf_threshold([lowest_window_confidence(s.logprobs, args.window) for s in row], args.keep) for row in warm
    ]
    started = time.monotonic()
    full = policy.sample(prompts, args.later, params, seeds, first=[args.warmup] * len(prompts))
    full_s = time.monotonic() - started
    replay_tokens, replay_cuts = 0, []
    for row, threshold in zip(full, thresholds):
        for s in row:
            cut = live_exit(s.logprobs, s.finish_reason, threshold, args.window)
            replay_tokens += s.generated_tokens if cut is None else cut + 1
            replay_cuts.append(cut)

    started = time.monotonic()
    live = []
    for prompt, seed, threshold in zip(prompts, seeds, thresholds):  # one threshold per problem: a call each
        exit_params = dataclasses.replace(params, exit_below=threshold, exit_window=args.window)
        live += policy.sample([prompt], args.later, exit_params, [seed], first=[args.warmup])[0]
    live_s = time.monotonic() - started
    whole = [s for row in full for s in row]
    same = sum(live_cut(s) == cut for s, cut in zip(live, replay_cuts))
    print(
        json.dumps(
            {
                "problems": len(problems),
                "later_samples": len(live),
                "window": args.window,
                "full_tokens": sum(s.generated_tokens for s in whole),
                "replay_tokens": replay_tokens,
                "live_tokens": sum(s.generated_tokens for s in live),
                "live_exits": sum(s.finish_reason == "exit" for s in live),
                "same_cut_share": round(same / len(live), 4),
                "full_wall_s": round(full_s, 2),
                "live_wall_s": round(live_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
