"""Generated tokens/s of each policy backend by batch size, and `ias eval`'s own overhead.

Throughput: for each batch size B, calls of B distinct arith prompts (one sample each,
the policy's own sampling settings, `--max-tokens`) are repeated with fresh seeds until
`--min-seconds` have passed; tokens/s = generated tokens / wall time of those calls, after
one warm-up call. Backends: hf always; vllm where it is importable; openai when
`--base-url` names a server.

Overhead: one `ias eval` run (`--eval-limit` problems, `--eval-n-max` samples, every
strategy) per backend, with the policy and PRM wrapped in timing proxies; the share
of its wall time spent outside `policy.sample` and `prm.score` is our orchestration
(grading, bookkeeping, replaying the strategies, writing records, plots and report).
Loading the models is not counted. Prints one JSON line:

    python benchmarks/throughput.py --sizes 1,4,16,64,256 --max-tokens 128
    python benchmarks/throughput.py --vllm-opt enforce_eager=true --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import ias
import ias.loaders
from ias.cli import key_value
from ias.policy.base import SamplingParams, derive_seed
from ias.tasks.base import get_task


class Timed:
    """Delegates to `inner`, adding the wall time of its `sample` and `score` calls to `spent`."""

    TIMED = ("sample", "score")

    def __init__(self, inner: Any, spent: dict[str, float], key: str):
        self._inner, self._spent, self._key = inner, spent, key

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self.TIMED:
            return value

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self._spent[self._key] += time.perf_counter() - started

        return timed


def throughput(policy, prompts: list[str], sizes: list[int], max_tokens: int, min_seconds: float) -> dict:
    params = SamplingParams(temperature=policy.defaults.temperature, top_p=policy.defaults.top_p, max_tokens=max_tokens)
    policy.sample(prompts[:4], 1, params, [0, 1, 2, 3])  # warm-up: lazy initialisation, compiled shapes
    figures = {}
    for size in sizes:
        tokens = calls = 0
        elapsed = 0.0
        while elapsed < min_seconds or calls == 0:
            batch = [prompts[(calls * size + k) % len(prompts)] for k in range(size)]
            seeds = [derive_seed(calls, k) for k in range(size)]
            started = time.perf_counter()
            rows = policy.sample(batch, 1, params, seeds)
            elapsed += time.perf_counter() - started
            tokens += sum(s.generated_tokens for row in rows for s in row)
            calls += 1
        figures[str(size)] = {
            "tokens_per_s": round(tokens / elapsed, 1),
            "calls": calls,
            "tokens_per_call": round(tokens / calls, 1),
            "s_per_call": round(elapsed / calls, 4),
        }
    return figures


def eval_overhead(model: str, prm: str, backend: str, options: dict, limit: int, n_max: int) -> dict:
    """One `ias eval` with timed policy and PRM; loading happens before the clock starts."""
    spent = {"policy": 0.0, "prm": 0.0}
    plain_policy, plain_prm = ias.loaders._policy, ias.loaders._prm
    policy = Timed(plain_policy(model, backend, ias.loaders._hashable(options)), spent, "policy")
    scorer = Timed(plain_prm(prm, None), spent, "prm")
    ias.loaders._policy = lambda *args, **kwargs: policy
    ias.loaders._prm = lambda *args, **kwargs: scorer
    try:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = ias.evaluate(
                policy=model,
                prm=prm,
                n_max=n_max,
                limit=limit,
                out=Path(out) / "eval",
                backend=backend,
                backend_options=options,
                progress=False,
            )
            wall = time.perf_counter() - started
    finally:
        ias.loaders._policy, ias.loaders._prm = plain_policy, plain_prm
    outside = wall - spent["policy"] - spent["prm"]
    return {
        "wall_s": round(wall, 2),
        "policy_s": round(spent["policy"], 2),
        "prm_s": round(spent["prm"], 2),
        "other_s": round(outside, 2),
        "overhead_share": round(outside / wall, 4),
        "generated_tokens": summary["pool"]["usage"]["generated_tokens"],
        "problems": limit,
        "n_max": n_max,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arith-weak")
    parser.add_argument("--prm", default="arith-prm")
    parser.add_argument("--sizes", default="1,4,16,64,256", help="batch sizes (prompts per call)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time spent per batch size, at least")
    parser.add_argument(
        "--backends", default="hf,vllm,openai", help="those to try (vllm: if importable; openai: with --base-url)"
    )
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    parser.add_argument("--vllm-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--hf-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--base-url", help="an OpenAI-compatible server serving --served-model")
    parser.add_argument("--served-model", help="its model name (default: --model)")
    parser.add_argument("--eval-limit", type=int, default=32, help="problems of the overhead run (0: skip it)")
    parser.add_argument("--eval-n-max", type=int, default=16)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # fewer than the cores when others share them: OpenMP spins badly
    sizes = [int(s) for s in args.sizes.split(",")]
    task = get_task("arith")
    prompts = [task.prompt(p) for p in task.problems("test", max(*sizes, 4))]  # 4: the warm-up call
    wanted = args.backends.split(",")
    backends: dict[str, tuple[str, dict]] = {}
    if "hf" in wanted:
        backends["hf"] = (args.model, dict(args.hf_opt))
    if "vllm" in wanted and importlib.util.find_spec("vllm") is not None:
        backends["vllm"] = (args.model, dict(args.vllm_opt))
    if "openai" in wanted and args.base_url:
        backends["openai"] = (args.served_model or args.model, {"base_url": args.base_url, "tokenizer": args.model})
    figures: dict[str, Any] = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "sizes": sizes,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}",
        "throughput": {},
        "load_s": {},
        "eval_overhead": {},
    }
    for name, (model, options) in backends.items():
        started = time.perf_counter()
        policy = ias.loaders._policy(model, name, ias.loaders._hashable(options))  # the cached instance eval reuses
        figures["load_s"][name] = round(time.perf_counter() - started, 1)
        figures["throughput"][name] = throughput(policy, prompts, sizes, args.max_tokens, args.min_seconds)
        if args.eval_limit:
            figures["eval_overhead"][name] = eval_overhead(
                model, args.prm, name, options, args.eval_limit, args.eval_n_max
            )
        if hasattr(policy, "close"):
            policy.close()
        ias.loaders._policy.cache_clear()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
