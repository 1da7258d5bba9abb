"""The `ias` command: thin subcommands over the library; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from ias.errors import UserError


def _int_at_least(least: int):
    """An argparse type: a whole number >= `least`, with a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got '{text}'"
        ) from None


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE; true/false become booleans, numbers ints or floats (digits=3, lr=1e-3)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for number in (int, float):
        try:
            return key, number(value)
        except ValueError:
            pass
    return key, value


def _task_args(p: argparse.ArgumentParser, default: str | None = "arith") -> None:
    p.add_argument("--task", default=default, required=default is None,
                   help="arith, gsm8k, math500, jsonl:PATH or hf:NAME")
    p.add_argument("--path", help="data file for file-backed tasks (default: shared/data or IAS_DATA_DIR)")
    p.add_argument("--task-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="task option, repeatable: field mapping for jsonl (question_field=problem, "
                        "solution_field=solution...), difficulty knobs for arith (digits=3, max_ops=2)")
    p.add_argument("--prompt-template", metavar="FILE",
                   help="text file with {question}: replaces the task's prompt (the chat message for chat models)")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="render prompts with the policy's chat template (default: when it has one)")


def _task_options(args: argparse.Namespace) -> dict:
    options = {**dict(args.task_opt), **({"path": args.path} if args.path else {})}
    if args.prompt_template:  # the text itself is the option, so a run folder records what was asked
        try:
            options["prompt_template"] = Path(args.prompt_template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read --prompt-template {args.prompt_template}: {e}") from None
    if args.chat is not None:
        options["chat"] = args.chat
    return options


def _dataset_args(p: argparse.ArgumentParser, out_default: str) -> None:
    """Options every command that runs over a dataset shares."""
    _task_args(p)
    p.add_argument("--split", default="test", help="split of the task (arith: test, calib, train, seed:N)")
    p.add_argument("--limit", type=_positive_int, help="only the split's first N problems")
    p.add_argument("--seed", type=int, default=0, help="run seed; same seed, same records")
    p.add_argument("--out", default=out_default, help="output folder; an existing one is resumed")


def _prm_args(p: argparse.ArgumentParser, allow_none: bool = False) -> None:
    """The PRM and how to read it: one declaration for every command that scores."""
    p.add_argument("--prm", default="arith-prm",
                   help="zoo name or local PRM folder" + ("; 'none' for no PRM" if allow_none else ""))
    p.add_argument("--prm-format", help="PRM reading format when the folder has no ias_prm.json")
    p.add_argument("--prm-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="PRM loading option, repeatable: device=cuda, dtype=bfloat16, batch_size=16, max_length=4096")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default="arith-weak", help="zoo name or local HF model folder")
    _prm_args(p, allow_none=True)
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the policy's own)")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (default: the policy's own)")
    p.add_argument("--max-tokens", type=_positive_int, help="most tokens per sample")


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value:g}")
    return value


def _positive_float(text: str) -> float:
    value = _nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def _backend_args(p: argparse.ArgumentParser) -> None:
    """Which engine samples the policy, and its options."""
    p.add_argument("--backend", default="hf", choices=["hf", "vllm", "openai"],
                   help="policy backend: hf (transformers, here), vllm (needs the 'vllm' extra) or openai "
                        "(an OpenAI-compatible server; the policy is its served model name)")
    p.add_argument("--backend-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, repeatable: openai: base_url=http://HOST:PORT/v1, tokenizer=NAME_OR_FOLDER, "
                        "concurrency, timeout_s, max_retries, api_key (better: $OPENAI_API_KEY); "
                        "hf: device, dtype, batch_size; vllm: tensor_parallel_size, dtype, max_model_len, kv_cache_gb, "
                        "gpu_memory_utilization, enable_prefix_caching, any vllm EngineArgs field (enforce_eager=true)")


def _backend_options(args: argparse.Namespace) -> dict:
    return {"backend": args.backend, "backend_options": dict(args.backend_opt)}


def _executor_args(p: argparse.ArgumentParser) -> None:
    """Where the batched work runs: here, or sharded over Ray actors (docs/ray.md)."""
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (this process) or ray (actors on a Ray cluster; needs the 'ray' extra)")
    p.add_argument("--workers", type=_positive_int, default=1, help="Ray actors, each with its own model replicas")
    p.add_argument("--ray-address", help="Ray cluster to join: 'auto' or HOST:PORT (default: start a local one)")
    p.add_argument("--ray-num-cpus", type=_nonnegative_float, default=1.0, help="CPUs per Ray actor")
    p.add_argument("--ray-num-gpus", type=_nonnegative_float, default=0.0,
                   help="GPUs per Ray actor (transformers models then go to its GPU)")


def default_threads() -> int | None:
    """Torch threads when `--threads` is not given: half the cores this process may use, at
    most 8, unless OMP_NUM_THREADS says otherwise (None: torch follows it). Torch's own default,
    a thread per core, collapses when the cores are shared: on 2 busy cores `ias demo` took
    26 min with it and about 6 with one thread."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // 2))


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: half the cores, at most 8; OMP_NUM_THREADS if set)")


def _apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads before any model work (left to torch when OMP_NUM_THREADS is set)."""
    threads = args.threads or default_threads()
    if threads:
        import torch

        torch.set_num_threads(threads)


def _executor_options(args: argparse.Namespace) -> dict:
    return {"executor": args.executor, "workers": args.workers, "ray_address": args.ray_address,
            "ray_num_cpus": args.ray_num_cpus, "ray_num_gpus": args.ray_num_gpus}


def _method_args(p: argparse.ArgumentParser, default: str) -> None:
    """The strategy, its calibrator and tuning, and every registered method's settings as flags."""
    from ias.methods import method_names
    from ias.methods.flags import add_setting_flags

    p.add_argument("--strategy", default=default, help="one of: " + ", ".join(method_names())
                   + (f" (default {default})" if default else ""))
    p.add_argument("--calibrator", help="calibrator folder from `ias calibrate` (scores become calibrated medians)")
    p.add_argument("--tuning", metavar="PATH",
                   help="ias-adaptive's tuned settings and confidence map: tune/tuning.json of `ias eval --tune-split` "
                        "(or its eval folder); flags given here win")
    add_setting_flags(p)


def _method_options(args: argparse.Namespace) -> dict:
    from ias.methods.flags import given_settings

    return {"strategy": args.strategy, "calibrator": args.calibrator, "tuning": args.tuning,
            "settings": given_settings(args)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ias", description="Instance-adaptive test-time scaling with calibrated process reward models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the built-in demo on the shipped zoo models (no downloads)")
    demo.add_argument("--out", default="ias-demo", help="output folder")
    demo.add_argument("--quick", action="store_true", help="a smaller run (60 problems, N_max 16): about a minute")
    demo.add_argument("--problems", type=_positive_int, help="test problems to evaluate (default 200; quick 60)")
    demo.add_argument("--n-max", type=_positive_int, help="samples per problem in the pool (default 64; quick 16)")
    demo.add_argument("--seed", type=int, default=0)

    solve = sub.add_parser("solve", help="run a strategy over a task split and summarise it")
    _dataset_args(solve, "runs/solve")
    _model_args(solve)
    _method_args(solve, "bon")
    solve.add_argument("--batch-problems", type=_positive_int, default=32, help="problems per batched call")
    _backend_args(solve)

    ask = sub.add_parser("ask", help="answer one typed question with a strategy; print its confidence and cost")
    ask.add_argument("question", help="the question, e.g. \"What is 17*23?\"")
    _task_args(ask)
    ask.add_argument("--seed", type=int, default=0, help="run seed; same seed, same answer")
    _model_args(ask)
    _method_args(ask, "ias-adaptive")
    ask.add_argument("--json", action="store_true", help="print the whole answer (samples, waves) as JSON")
    _backend_args(ask)

    roll = sub.add_parser("rollout", help="Monte-Carlo success targets of prefixes (calibration data)")
    _dataset_args(roll, "runs/rollout")
    roll.set_defaults(split="calib")
    roll.add_argument("--policy", default="arith-weak", help="zoo name or local HF model folder")
    roll.add_argument("--temperature", type=float, help="sampling temperature (default: the policy's own)")
    roll.add_argument("--top-p", type=float, help="nucleus sampling threshold (default: the policy's own)")
    roll.add_argument("--max-tokens", type=_positive_int, help="most tokens per sample")
    roll.add_argument("--n-traj", type=_positive_int, default=8, help="trajectories per problem")
    roll.add_argument("--n-mc", type=_positive_int, default=8, help="continuations per prefix")
    roll.add_argument("--max-prefix", type=_nonnegative_int, default=20,
                      help="continue prefixes t = 0 .. max-prefix (t = T is always kept, by correctness)")
    roll.add_argument("--batch-problems", type=_positive_int, default=16,
                      help="problems per chunk (two batched policy calls, one synced write)")
    _executor_args(roll)
    _backend_args(roll)

    cal = sub.add_parser("calibrate", help="fit a calibrator of a PRM for the policy of a rollout folder")
    cal.add_argument("--rollouts", required=True, help="folder written by `ias rollout`")
    _prm_args(cal)
    cal.add_argument("--method", default="quantile-head",
                     help="quantile-lora (the paper's: LoRA + quantile reader), "
                          "quantile-head (frozen PRM + small head, seconds), temperature, isotonic or histogram")
    cal.add_argument("--lora", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="quantile-lora setting, repeatable: rank, alpha, dropout, every (layer stride), "
                          "epochs, lr, batch_rows (defaults: the paper's 2, 32, 0.1, 4, 3, 1e-4, 32)")
    cal.add_argument("--levels", type=_levels, default=(0.1, 0.5, 0.9), help="quantile levels, e.g. 0.1,0.5,0.9")
    cal.add_argument("--conformal", type=float, metavar="ALPHA",
                     help="shift the lowest quantile so that P(p >= it) >= 1 - ALPHA on held-out problems")
    cal.add_argument("--held-out", type=float, default=0.2, help="share of problems kept aside (metrics, conformal)")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", required=True, help="calibrator folder to write")

    ev = sub.add_parser("calib-eval", help="calibration metrics of a PRM (and calibrators) on rollouts")
    ev.add_argument("--rollouts", required=True, help="folder written by `ias rollout` (not the one fitted on)")
    _prm_args(ev)
    ev.add_argument("--calibrator", help="calibrator folder from `ias calibrate`")
    ev.add_argument("--compare", metavar="FIT_ROLLOUTS", help="fit every method on this rollout folder and compare")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", required=True, help="folder for metrics.json, reliability.png, compare.json")

    from ias.evaluation import STRATEGIES as EVAL_STRATEGIES

    evl = sub.add_parser("eval", help="every strategy (fixed, adaptive, peers) on one shared sample pool")
    _dataset_args(evl, "runs/eval")
    evl.add_argument("--policy", default="arith-weak", help="zoo name or local HF model folder")
    _prm_args(evl)
    evl.add_argument("--calibrator",
                     help="calibrator folder from `ias calibrate` (IAS budgets from its lowest quantile)")
    evl.add_argument("--strategies",
                     help="comma-separated subset of: " + ", ".join(EVAL_STRATEGIES) + " (default: all)")
    evl.add_argument("--n-max", type=_positive_int, default=64, help="samples per problem in the pool (N_max)")
    evl.add_argument("--coverage", type=float, default=0.99, help="IAS target coverage C")
    evl.add_argument("--batch-problems", type=_positive_int, default=16, help="problems per pool chunk")
    evl.add_argument("--tune-split", metavar="SPLIT",
                     help="adds ias-bon-tuned: its estimate (lower quantile or median) and coverage are chosen on "
                          "this split's own pool (e.g. calib), never on the evaluated problems")
    evl.add_argument("--tune-limit", type=_positive_int, help="only the tuning split's first N problems")
    evl.add_argument("--tolerance", type=float, default=0.015,
                     help="tuning: the cheapest setting within this accuracy of bon@N_max (default 0.015)")
    evl.add_argument("--orderings", type=_positive_int, default=16,
                     help="each method's figures are expected over this many seeded orderings of every question's "
                          "pool (1: the pool as drawn, what `ias solve` with the same seed does; default 16)")
    evl.add_argument("--k-max", type=_positive_int, default=8, help="beam searches: most beams kept (K_max)")
    evl.add_argument("--m-max", type=_positive_int, default=8, help="beam searches: most samples per beam (M_max)")
    evl.add_argument("--beam-freq", type=_positive_int, default=1, help="beam searches: steps between PRM readings")
    evl.add_argument("--beam-rounds", type=_positive_int, default=16,
                     help="beam searches: PRM readings before the beams are continued to the end (default 16)")
    evl.add_argument("--temperature", type=float, help="sampling temperature (default: the policy's own)")
    evl.add_argument("--top-p", type=float, help="nucleus sampling threshold (default: the policy's own)")
    evl.add_argument("--max-tokens", type=_positive_int, help="most tokens per sample")
    _executor_args(evl)
    _backend_args(evl)

    srv = sub.add_parser("serve", help="an OpenAI-compatible server (/v1/completions) over a policy (extra 'serve')")
    srv.add_argument("--policy", default="arith-weak", help="zoo name or local HF model folder")
    _backend_args(srv)
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    srv.add_argument("--port", type=_nonnegative_int, default=8000, help="port (0: a free one, printed)")
    srv.add_argument("--served-model-name", help="the model name clients ask for (default: --policy)")
    srv.add_argument("--api-key", default=os.environ.get("IAS_API_KEY"),
                     help="requests must send `Authorization: Bearer KEY` (default: $IAS_API_KEY; none: open)")
    srv.add_argument("--max-request-bytes", type=_positive_int, default=4 << 20, help="largest body (default 4 MiB)")
    srv.add_argument("--max-prompt-chars", type=_positive_int, default=200_000,
                     help="longest prompt, refused by length before tokenizing (default 200000)")
    srv.add_argument("--max-n", type=_positive_int, default=1024, help="largest n of a request (default 1024)")
    srv.add_argument("--max-samples", type=_positive_int, default=4096,
                     help="largest prompts x n of a request (default 4096)")
    srv.add_argument("--max-queue", type=_positive_int, default=256,
                     help="requests waiting or running; past it, 429 with Retry-After (default 256)")
    srv.add_argument("--request-timeout", type=_positive_float, default=600.0,
                     help="seconds a request may wait for its samples; then 504 and its work is dropped")
    srv.add_argument("--read-timeout", type=_positive_float, default=30.0,
                     help="seconds to receive a request's body; then 408 (default 30)")
    srv.add_argument("--grace", type=_positive_float, default=30.0,
                     help="on SIGTERM, seconds for in-flight requests to finish (new ones get 503)")
    srv.add_argument("--no-access-log", action="store_true", help="no JSON access log line per request on stderr")
    srv.add_argument("--fail-first", type=_nonnegative_int, default=0, metavar="K",
                     help="testing aid: answer the first K completion requests with 503 (clients' retries)")
    reasoning = srv.add_argument_group(
        "answering with a strategy (without --strategy: a plain sampling server)",
        "completions and chat completions are answered by the method, its compute adapted to each question")
    _prm_args(reasoning)
    _task_args(reasoning)
    _method_args(srv, default=None)  # its settings are a group of their own (groups do not nest in help)

    data = sub.add_parser("data", help="inspect task data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="grade every reference solution against its answer")
    _task_args(check, default=None)
    check.add_argument("--split", default="test")

    zoo = sub.add_parser("zoo", help="the built-in tiny models")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    train = zoo_sub.add_parser("train", help="train a zoo model from its recipe")
    train.add_argument("name", help="arith-weak, arith-strong or arith-prm")
    train.add_argument("--out", help="folder to save to (default: a fresh folder under runs/zoo)")
    train.add_argument("--policy", help="for arith-prm: the policy folder whose rollouts label it")
    train.add_argument("--no-eval", action="store_true", help="skip the figures after training")
    info = zoo_sub.add_parser("info", help="sizes, seeds and measured figures of the zoo models")
    info.add_argument("--json", action="store_true", help="print JSON")
    for command in (demo, solve, ask, roll, cal, ev, evl, srv, train):  # the commands that run models
        _threads_arg(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as err:
        print(f"ias: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ias: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`ias zoo info | head`): nothing left to say
        sys.stderr.close()
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if "threads" in args:
        _apply_threads(args)
    if args.command == "demo":
        import torch

        from ias.demo import run_demo

        print(f"torch threads: {torch.get_num_threads()} (--threads N to change)")
        run_demo(out=Path(args.out), quick=args.quick, seed=args.seed, problems=args.problems, n_max=args.n_max)
        return 0
    if args.command == "solve":
        from ias.api import solve
        from ias.report import print_summary

        summary = solve(
            task=args.task, split=args.split, policy=args.policy,
            prm=None if args.prm == "none" else args.prm,
            out=args.out, limit=args.limit, seed=args.seed, temperature=args.temperature, top_p=args.top_p,
            max_tokens=args.max_tokens, task_options=_task_options(args), prm_format=args.prm_format,
            prm_options=dict(args.prm_opt),
            batch_problems=args.batch_problems, **_method_options(args), **_backend_options(args),
        )
        print_summary(summary)
        print(f"records: {Path(args.out) / 'records.jsonl'}  summary: {Path(args.out) / 'summary.json'}")
        return 0
    if args.command == "ask":
        from ias.solver import answer_block, answer_json, ask

        answer = ask(
            args.question, task=args.task, policy=args.policy, prm=None if args.prm == "none" else args.prm,
            seed=args.seed, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
            task_options=_task_options(args), prm_format=args.prm_format, prm_options=dict(args.prm_opt),
            **_method_options(args), **_backend_options(args),
        )
        print(json.dumps(answer_json(answer)) if args.json else answer_block(answer))
        return 0
    if args.command == "rollout":
        from ias.api import rollout

        summary = rollout(
            task=args.task, split=args.split, policy=args.policy, n_traj=args.n_traj, n_mc=args.n_mc,
            max_prefix=args.max_prefix, out=args.out, limit=args.limit, seed=args.seed,
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
            task_options=_task_options(args), batch_problems=args.batch_problems, **_executor_options(args),
            **_backend_options(args),
        )
        total = summary["usage"]["total"]
        print(f"{summary['n_problems']} problems, {summary['n_trajectories']} trajectories, "
              f"{summary['n_prefix_targets']} prefix targets from {summary['n_rollouts']} rollouts; "
              f"policy accuracy {summary['trajectory_accuracy']}, mean p~ at t=0 {summary['mean_p_t0']}; "
              f"{total['generated_tokens']} tokens generated")
        print(f"rollouts: {Path(args.out) / 'rollouts.jsonl'}  summary: {Path(args.out) / 'summary.json'}")
        return 0
    if args.command == "calibrate":
        from ias.api import calibrate

        info = calibrate(args.rollouts, prm=args.prm, method=args.method, out=args.out, levels=args.levels,
                         conformal=args.conformal, held_out=args.held_out, seed=args.seed, prm_format=args.prm_format,
                         prm_options=dict(args.prm_opt), lora=dict(args.lora))
        shown = ("method", "levels", "policy", "prm", "fit_seconds", "metrics_held_out")
        print(json.dumps({k: info[k] for k in shown}))
        print(f"calibrator: {args.out}")
        return 0
    if args.command == "calib-eval":
        from ias.api import calib_eval
        from ias.report import print_calibration

        report = calib_eval(args.rollouts, prm=args.prm, out=args.out, calibrator=args.calibrator,
                            compare=args.compare, seed=args.seed, prm_format=args.prm_format,
                            prm_options=dict(args.prm_opt))
        print_calibration(report)
        print(f"metrics: {Path(args.out) / 'metrics.json'}  plot: {Path(args.out) / 'reliability.png'}")
        return 0
    if args.command == "eval":
        from ias.api import evaluate
        from ias.report import eval_table, tuning_line

        summary = evaluate(
            task=args.task, split=args.split, policy=args.policy, prm=args.prm, calibrator=args.calibrator,
            strategies=args.strategies.split(",") if args.strategies else None, n_max=args.n_max,
            coverage=args.coverage, out=args.out, limit=args.limit, seed=args.seed, task_options=_task_options(args),
            prm_format=args.prm_format, prm_options=dict(args.prm_opt), batch_problems=args.batch_problems,
            **_executor_options(args),
            **_backend_options(args), tune_split=args.tune_split, tune_limit=args.tune_limit,
            tolerance=args.tolerance, k_max=args.k_max, m_max=args.m_max, beam_freq=args.beam_freq,
            beam_rounds=args.beam_rounds, temperature=args.temperature,
            top_p=args.top_p, max_tokens=args.max_tokens, orderings=args.orderings,
        )
        print(eval_table(summary))
        if summary.get("tuning"):
            print(tuning_line(summary["tuning"]))
        print(f"summary: {Path(args.out) / 'summary.json'}  report: {Path(args.out) / 'report.md'}")
        return 0
    if args.command == "serve":
        from ias.methods.flags import given_settings
        from ias.serve import serve
        from ias.serve.limits import ServeLimits

        limits = ServeLimits(api_key=args.api_key or None, max_request_bytes=args.max_request_bytes,
                             max_prompt_chars=args.max_prompt_chars, max_n=args.max_n, max_samples=args.max_samples,
                             max_queue=args.max_queue, request_timeout_s=args.request_timeout,
                             read_timeout_s=args.read_timeout, access_log=not args.no_access_log)
        reasoning = {}
        if args.strategy is not None:
            reasoning = {**_method_options(args), "prm": args.prm, "prm_format": args.prm_format,
                         "prm_options": dict(args.prm_opt), "task": args.task, "task_options": _task_options(args)}
        elif args.calibrator or args.tuning or given_settings(args):
            raise UserError("--calibrator, --tuning and strategy settings need --strategy")
        serve(args.policy, host=args.host, port=args.port, served_model_name=args.served_model_name,
              fail_first=args.fail_first, limits=limits, grace_s=args.grace, **_backend_options(args), **reasoning)
        return 0
    if args.command == "data":
        from ias.tasks.base import get_task
        from ias.tasks.check import data_check

        task = get_task(args.task, **_task_options(args))
        print(json.dumps(data_check(task, args.split)))
        return 0
    if args.command == "zoo":
        from ias.zoo import info, train

        if args.zoo_command == "train":
            result = train(args.name, out=Path(args.out) if args.out else None, policy=args.policy,
                           evaluate=not args.no_eval)
            print(json.dumps(result))
            return 0
        data = info()
        if args.json:
            print(json.dumps(data))
        else:
            from ias.report import print_zoo

            print_zoo(data)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
