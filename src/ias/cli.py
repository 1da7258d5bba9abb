"""The `ias` command: thin subcommands over the library; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ias.errors import UserError
from ias.specs import (
    AskRun,
    EvalRun,
    PRMSpec,
    RolloutRun,
    SolveRun,
    add_flags,
    finite_at_least,
    from_keys,
    given_keys,
    key_value,
    read_config,
    whole_at_least,
)

_positive_int = whole_at_least(1)
_nonnegative_int = whole_at_least(0)
_nonnegative_float = finite_at_least(0.0)


def _positive_float(text: str) -> float:
    value = _nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got '{text}'"
        ) from None


def _task_args(p: argparse.ArgumentParser, name: str | None = "arith") -> None:
    """`--task` (where no run spec declares it: `name` is its default, None: required) and the
    flags that make up the task's options."""
    if name != "spec":
        p.add_argument(
            "--task", default=name, required=name is None, help="arith, gsm8k, math500, jsonl:PATH or hf:NAME"
        )
    p.add_argument("--path", help="data file for file-backed tasks (default: shared/data or IAS_DATA_DIR)")
    p.add_argument(
        "--task-opt",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable: field mapping for jsonl (question_field=problem, "
        "solution_field=solution...), difficulty knobs for arith (digits=3, max_ops=2)",
    )
    p.add_argument(
        "--prompt-template",
        metavar="FILE",
        help="text file with {question}: replaces the task's prompt (the chat message for chat models)",
    )
    p.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="render prompts with the policy's chat template (default: when it has one)",
    )


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


def _run_args(p: argparse.ArgumentParser, run_cls: type) -> None:
    """A run command's flags, each from its spec's declaration, plus `--config` and the task options."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a run's settings (YAML, or .toml): e.g. the config.yaml a run folder keeps; flags win",
    )
    add_flags(p, run_cls)
    _task_args(p, "spec")


def _run_spec(args: argparse.Namespace, run_cls: type, command: str) -> tuple[Any, dict]:
    """The config file's run (or the defaults) and the settings given as flags, by key."""
    run = read_config(args.config, run_cls, command) if getattr(args, "config", None) else run_cls()
    keys = given_keys(args, run_cls)
    options = _task_options(args)
    if options:
        keys["task_options"] = {**run.task.options, **options}
    if "method" in {f.name for f in dataclasses.fields(run_cls)}:
        from ias.methods.flags import given_settings

        settings = given_settings(args)
        if settings:
            keys["settings"] = {**run.method.settings, **settings}
    return run, keys


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
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch CPU threads (default: half the cores, at most 8; OMP_NUM_THREADS if set)",
    )


def _apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads before any model work (left to torch when OMP_NUM_THREADS is set)."""
    threads = args.threads or default_threads()
    if threads:
        import torch

        torch.set_num_threads(threads)


def _method_args(p: argparse.ArgumentParser) -> None:
    """Every registered method's settings as flags (the strategy itself is a spec flag, whose
    help gains the registered names)."""
    from ias.methods import method_names
    from ias.methods.flags import add_setting_flags
    from ias.methods.tuning import TUNED_METHOD

    add_setting_flags(p)
    _name_choices(p, "--strategy", [*method_names(), f"{TUNED_METHOD}@B (a mean budget of B samples; with --tuning)"])


def _name_choices(p: argparse.ArgumentParser, flag: str, names: Sequence[str]) -> None:
    """Append the names a flag takes to its help (known only here, not in the spec)."""
    action = p._option_string_actions.get(flag)
    if action is not None and action.help:
        action.help += "; one of: " + ", ".join(names)


def _prm_flags(p: argparse.ArgumentParser) -> None:
    """The PRM and how to read it, for the commands that take no run spec (calibrate, calib-eval)."""
    add_flags(p, EvalRun, parts=("prm",), skip=frozenset({"calibrator"}))


def _prm_spec(args: argparse.Namespace) -> tuple[str, PRMSpec]:
    """The PRM (its name, and its flags) of a command that needs one ('none' refused in one line)."""
    prm = from_keys(EvalRun, given_keys(args, EvalRun)).prm
    if prm.model is None:
        raise UserError(f"ias {args.command} needs a PRM (--prm)")
    return prm.model, prm


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
    _run_args(solve, SolveRun)
    _method_args(solve)

    ask = sub.add_parser("ask", help="answer one typed question with a strategy; print its confidence and cost")
    ask.add_argument("question", help='the question, e.g. "What is 17*23?"')
    add_flags(ask, AskRun, skip=frozenset({"split", "limit"}))
    _task_args(ask, "spec")
    ask.add_argument("--json", action="store_true", help="print the whole answer (samples, waves) as JSON")
    _method_args(ask)

    roll = sub.add_parser("rollout", help="Monte-Carlo success targets of prefixes (calibration data)")
    _run_args(roll, RolloutRun)

    cal = sub.add_parser("calibrate", help="fit a calibrator of a PRM for the policy of a rollout folder")
    cal.add_argument("--rollouts", required=True, help="folder written by `ias rollout`")
    _prm_flags(cal)
    cal.add_argument(
        "--method",
        default="quantile-head",
        help="quantile-lora (the paper's: LoRA + quantile reader), "
        "quantile-head (frozen PRM + small head, seconds), temperature, isotonic or histogram",
    )
    cal.add_argument(
        "--lora",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="quantile-lora setting, repeatable: rank, alpha, dropout, every (layer stride), "
        "epochs, lr, batch_rows (defaults: the paper's 2, 32, 0.1, 4, 3, 1e-4, 32)",
    )
    cal.add_argument("--levels", type=_levels, default=(0.1, 0.5, 0.9), help="quantile levels, e.g. 0.1,0.5,0.9")
    cal.add_argument(
        "--conformal",
        type=float,
        metavar="ALPHA",
        help="shift the lowest quantile so that P(p >= it) >= 1 - ALPHA on held-out problems",
    )
    cal.add_argument("--held-out", type=float, default=0.2, help="share of problems kept aside (metrics, conformal)")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", required=True, help="calibrator folder to write")

    ev = sub.add_parser("calib-eval", help="calibration metrics of a PRM (and calibrators) on rollouts")
    ev.add_argument("--rollouts", required=True, help="folder written by `ias rollout` (not the one fitted on)")
    _prm_flags(ev)
    ev.add_argument("--calibrator", help="calibrator folder from `ias calibrate`")
    ev.add_argument("--compare", metavar="FIT_ROLLOUTS", help="fit every method on this rollout folder and compare")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", required=True, help="folder for metrics.json, reliability.png, compare.json")

    evl = sub.add_parser("eval", help="every strategy (fixed, adaptive, peers) on one shared sample pool")
    _run_args(evl, EvalRun)
    from ias.evaluation import STRATEGIES

    _name_choices(evl, "--strategies", STRATEGIES)
    srv = _serve_parser(sub)
    data = sub.add_parser("data", help="inspect task data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="grade every reference solution against its answer")
    _task_args(check, None)
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


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    srv = sub.add_parser("serve", help="an OpenAI-compatible server (/v1/completions) over a policy (extra 'serve')")
    add_flags(srv, AskRun, parts=("policy",))
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    srv.add_argument("--port", type=_nonnegative_int, default=8000, help="port (0: a free one, printed)")
    srv.add_argument("--served-model-name", help="the model name clients ask for (default: --policy)")
    srv.add_argument(
        "--api-key",
        default=os.environ.get("IAS_API_KEY"),
        help="requests must send `Authorization: Bearer KEY` (default: $IAS_API_KEY; none: open)",
    )
    srv.add_argument("--max-request-bytes", type=_positive_int, default=4 << 20, help="largest body (default 4 MiB)")
    srv.add_argument(
        "--max-prompt-chars",
        type=_positive_int,
        default=200_000,
        help="longest prompt, refused by length before tokenizing (default 200000)",
    )
    srv.add_argument("--max-n", type=_positive_int, default=1024, help="largest n of a request (default 1024)")
    srv.add_argument(
        "--max-samples", type=_positive_int, default=4096, help="largest prompts x n of a request (default 4096)"
    )
    srv.add_argument(
        "--max-queue",
        type=_positive_int,
        default=256,
        help="requests waiting or running; past it, 429 with Retry-After (default 256)",
    )
    srv.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=600.0,
        help="seconds a request may wait for its samples; then 504 and its work is dropped",
    )
    srv.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=30.0,
        help="seconds to receive a request's body; then 408 (default 30)",
    )
    srv.add_argument(
        "--grace",
        type=_positive_float,
        default=30.0,
        help="on SIGTERM, seconds for in-flight requests to finish (new ones get 503)",
    )
    srv.add_argument("--no-access-log", action="store_true", help="no JSON access log line per request on stderr")
    srv.add_argument(
        "--fail-first",
        type=_nonnegative_int,
        default=0,
        metavar="K",
        help="testing aid: answer the first K completion requests with 503 (clients' retries)",
    )
    reasoning = srv.add_argument_group(
        "answering with a strategy (without --strategy: a plain sampling server)",
        "completions and chat completions are answered by the method, its compute adapted to each question",
    )
    add_flags(reasoning, AskRun, parts=("prm", "task", "method"), skip=frozenset({"split", "limit"}))
    _task_args(reasoning, "spec")
    _method_args(srv)  # its settings are a group of their own (groups do not nest in help)
    strategy = srv._option_string_actions["--strategy"]
    strategy.help = (strategy.help or "").replace("(default ias-adaptive)", "(default: none, a plain sampling server)")
    return srv


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
    return _COMMANDS[args.command](args)


def _run_demo(args: argparse.Namespace) -> int:
    import torch

    from ias.demo import run_demo

    print(f"torch threads: {torch.get_num_threads()} (--threads N to change)")
    run_demo(out=Path(args.out), quick=args.quick, seed=args.seed, problems=args.problems, n_max=args.n_max)
    return 0


def _run_solve(args: argparse.Namespace) -> int:
    from ias.api import solve
    from ias.report import print_summary

    run, keys = _run_spec(args, SolveRun, "solve")
    summary = solve(run, **keys)
    out = Path(keys.get("out", run.out))
    print_summary(summary)
    print(f"records: {out / 'records.jsonl'}  summary: {out / 'summary.json'}  config: {out / 'config.yaml'}")
    return 0


def _run_ask(args: argparse.Namespace) -> int:
    from ias.solver import answer_block, answer_json, ask

    run, keys = _run_spec(args, AskRun, "ask")
    answer = ask(args.question, run, **keys)
    print(json.dumps(answer_json(answer)) if args.json else answer_block(answer))
    return 0


def _run_rollout(args: argparse.Namespace) -> int:
    from ias.api import rollout

    run, keys = _run_spec(args, RolloutRun, "rollout")
    summary = rollout(run, **keys)
    out = Path(keys.get("out", run.out))
    total = summary["usage"]["total"]
    print(
        f"{summary['n_problems']} problems, {summary['n_trajectories']} trajectories, "
        f"{summary['n_prefix_targets']} prefix targets from {summary['n_rollouts']} rollouts; "
        f"policy accuracy {summary['trajectory_accuracy']}, mean p~ at t=0 {summary['mean_p_t0']}; "
        f"{total['generated_tokens']} tokens generated"
    )
    print(f"rollouts: {out / 'rollouts.jsonl'}  summary: {out / 'summary.json'}")
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    from ias.api import calibrate

    model, prm = _prm_spec(args)
    info = calibrate(
        args.rollouts,
        prm=model,
        method=args.method,
        out=args.out,
        levels=args.levels,
        conformal=args.conformal,
        held_out=args.held_out,
        seed=args.seed,
        prm_format=prm.format,
        prm_options=prm.options,
        lora=dict(args.lora),
    )
    shown = ("method", "levels", "policy", "prm", "fit_seconds", "metrics_held_out")
    print(json.dumps({k: info[k] for k in shown}))
    print(f"calibrator: {args.out}")
    return 0


def _run_calib_eval(args: argparse.Namespace) -> int:
    from ias.api import calib_eval
    from ias.report import print_calibration

    model, prm = _prm_spec(args)
    report = calib_eval(
        args.rollouts,
        prm=model,
        out=args.out,
        calibrator=args.calibrator,
        compare=args.compare,
        seed=args.seed,
        prm_format=prm.format,
        prm_options=prm.options,
    )
    print_calibration(report)
    print(f"metrics: {Path(args.out) / 'metrics.json'}  plot: {Path(args.out) / 'reliability.png'}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from ias.api import evaluate
    from ias.report import eval_table, tuning_line

    run, keys = _run_spec(args, EvalRun, "eval")
    summary = evaluate(run, **keys)
    out = Path(keys.get("out", run.out))
    print(eval_table(summary))
    if summary.get("tuning"):
        print(tuning_line(summary["tuning"]))
    print(f"summary: {out / 'summary.json'}  report: {out / 'report.md'}  config: {out / 'config.yaml'}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from ias.methods.flags import given_settings
    from ias.serve import ServeOptions, serve
    from ias.serve.limits import ServeLimits

    limits = ServeLimits(
        api_key=args.api_key or None,
        max_request_bytes=args.max_request_bytes,
        max_prompt_chars=args.max_prompt_chars,
        max_n=args.max_n,
        max_samples=args.max_samples,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        read_timeout_s=args.read_timeout,
        access_log=not args.no_access_log,
    )
    options = ServeOptions(
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        fail_first=args.fail_first,
        grace_s=args.grace,
        limits=limits,
    )
    run, keys = _run_spec(args, AskRun, "serve")
    if "strategy" not in keys and ({"calibrator", "tuning", "settings"} & set(keys) or given_settings(args)):
        raise UserError("--calibrator, --tuning and strategy settings need --strategy")
    reasoning = from_keys(AskRun, keys, run)
    serve(reasoning.policy, options, reasoning if "strategy" in keys else None)
    return 0


def _run_data(args: argparse.Namespace) -> int:
    from ias.tasks.base import get_task
    from ias.tasks.check import data_check

    task = get_task(args.task, **_task_options(args))
    print(json.dumps(data_check(task, args.split)))
    return 0


def _run_zoo(args: argparse.Namespace) -> int:
    from ias.zoo import info, train

    if args.zoo_command == "train":
        result = train(
            args.name, out=Path(args.out) if args.out else None, policy=args.policy, evaluate=not args.no_eval
        )
        print(json.dumps(result))
        return 0
    data = info()
    if args.json:
        print(json.dumps(data))
    else:
        from ias.report import print_zoo

        print_zoo(data)
    return 0


_COMMANDS = {
    "demo": _run_demo,
    "solve": _run_solve,
    "ask": _run_ask,
    "rollout": _run_rollout,
    "calibrate": _run_calibrate,
    "calib-eval": _run_calib_eval,
    "eval": _run_eval,
    "serve": _run_serve,
    "data": _run_data,
    "zoo": _run_zoo,
}


if __name__ == "__main__":
    sys.exit(main())
