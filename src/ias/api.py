"""The Python API: what each CLI command does, as a function."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from ias.errors import UserError
from ias.executors import Executor, Recipe, open_executor
from ias.loaders import (
    MAX_SAMPLES,
    check_counts,
    live_method,
    load_optional_prm,
    load_policy_spec,
    load_prm_spec,
    sampling_params,
)
from ias.records import claim_run
from ias.runner import run_dataset
from ias.specs import (
    EvalRun,
    ExecutorSpec,
    PRMSpec,
    RolloutRun,
    SolveRun,
    TaskSpec,
    from_keys,
    record_config,
    write_config,
)
from ias.tasks.base import Task, get_task


def solve(run: SolveRun | None = None, /, **keys: Any) -> dict:
    """Run a registered method (`ias.methods.method_names()`) over a task split, live; records,
    `summary.json` and the resolved `config.yaml` go to `run.out` (resumable).

    `run` is a `SolveRun` spec; keywords are its settings by key (`task`, `split`, `policy`,
    `prm`, `calibrator`, `strategy`, `settings`, `tuning`, `temperature`, `out`, `seed`...;
    `ias.specs.key_table(SolveRun)` lists them) and override it. `settings` are the method's
    (`n_max`, `coverage`, `target`...); bon's `n`, `selection` and `aggregation` may be given
    as keywords. `tuning` (a `tuning.json` from `ias eval --tune-split`, or its eval folder)
    gives ias-adaptive its tuned settings and confidence map; explicit settings win.

    >>> summary = ias.solve(task="arith", policy="arith-weak", prm="arith-prm", n=16, out="runs/x")
    >>> summary["accuracy"], summary["usage"]["generated_tokens"]
    >>> ias.solve(strategy="ias-adaptive", calibrator="runs/cal", settings={"n_max": 64}, out="runs/a")
    """
    from ias.methods.base import Question
    from ias.methods.strategy import MethodStrategy, needs_prm

    bon = {k: v for k in ("n", "selection", "aggregation") if (v := keys.pop(k, None)) is not None}
    run = from_keys(SolveRun, keys, run)
    if bon:
        run = replace(run, method=replace(run.method, settings={**run.method.settings, **bon}))
    method = live_method(run.method)
    check_counts(batch_problems=run.batch_problems, limit=run.task.limit)
    the_task, problems = _problems(run.task)
    if run.prm.model is None and needs_prm(method, Question(problems[0], the_task.extract)):
        raise UserError(
            f"selection '{method.selection}' needs a PRM; pass --prm or use --selection majority"
            if run.method.strategy == "bon"
            else f"strategy '{run.method.strategy}' needs a PRM (it reads one); pass --prm"
        )
    the_prm = load_optional_prm(run.prm)
    the_policy = load_policy_spec(run.policy)
    config = record_config(run)
    claim_run(Path(run.out), "solve")  # after every check: a refused run leaves no folder behind
    write_config(Path(run.out), run, "solve")
    return run_dataset(
        MethodStrategy(method),
        problems,
        the_task,
        the_policy,
        the_prm,
        sampling_params(the_policy, run.sampling),
        run.seed,
        Path(run.out),
        config,
        batch_problems=run.batch_problems,
        progress=run.progress,
    )


def rollout(run: RolloutRun | None = None, /, **keys: Any) -> dict:
    """Monte-Carlo calibration targets (SPEC §2) into `out/rollouts.jsonl`, resumable; returns the summary.

    `run` is a `RolloutRun` spec, keywords its settings by key (`n_traj` trajectories per
    problem; every prefix t = 0 .. min(T, max_prefix+1)-1 is continued `n_mc` times with the
    policy's own sampling settings, overridden where given; the whole trajectory's correctness
    is kept as the t = T target). `executor="ray"` shards the chunks over `workers` Ray actors
    (`ray_num_cpus` / `ray_num_gpus` each) on the cluster at `ray_address` (default: a local
    one); the store is the same as a local run's (docs/ray.md).

    >>> summary = ias.rollout(task="arith", split="calib", policy="arith-weak", n_traj=8, n_mc=8, out="runs/r")
    >>> rows = ias.load_targets("runs/r")  # flat (problem_id, traj, t, steps, question, correct, n, p)
    """
    from ias.calibration.rollout import rollout as run_rollout

    run = from_keys(RolloutRun, keys, run)
    if run.task.limit is not None and run.task.limit < 1:
        raise UserError(f"--limit must be >= 1, got {run.task.limit}")
    settings = run.rollout
    check_counts(n_traj=settings.n_traj, n_mc=settings.n_mc, limit=run.task.limit, batch_problems=run.batch_problems)
    the_task = get_task(run.task.name, **run.task.options)
    remote = _open_executor(run.executor, Recipe(run.task, run.policy))
    with remote or nullcontext():
        # with Ray, the actors hold the policy
        the_policy = run.policy.model if remote else load_policy_spec(run.policy)
        params = sampling_params(remote or the_policy, run.sampling)
        claim_run(Path(run.out), "rollout")
        write_config(Path(run.out), run, "rollout")
        return run_rollout(
            the_task,
            run.task.split,
            the_policy,
            settings,
            Path(run.out),
            run.seed,
            limit=run.task.limit,
            batch_problems=run.batch_problems,
            progress=run.progress,
            params=params,
            config=record_config(run),
            executor=remote,
        )


def calibrate(
    rollouts: str | Path,
    prm: str = "arith-prm",
    method: str = "quantile-head",
    out: str | Path = "runs/calibrator",
    levels: tuple[float, ...] = (0.1, 0.5, 0.9),
    conformal: float | None = None,
    held_out: float = 0.2,
    seed: int = 0,
    prm_format: str | None = None,
    prm_options: dict | None = None,
    lora: dict | None = None,
) -> dict:
    """Fit a calibrator of `prm` for the policy of `rollouts`; returns its `calibration.json`.

    `method`: quantile-lora (the paper's: LoRA + quantile reader; `lora` overrides its
    settings, e.g. {"epochs": 10, "lr": 1e-3}), quantile-head, temperature, isotonic, histogram.

    >>> ias.calibrate("runs/r", prm="arith-prm", method="quantile-head", out="runs/cal")
    >>> ias.solve(..., prm="arith-prm", calibrator="runs/cal")
    """
    from ias.calibration.calibrate import calibrate as fit
    from ias.calibration.store import require_rollouts

    require_rollouts(rollouts)
    the_prm = load_prm_spec(PRMSpec(prm, prm_format, dict(prm_options or {})))
    claim_run(Path(out), "calibrate")
    return fit(rollouts, the_prm, method, out, levels, conformal, held_out, seed, lora)


def calib_eval(
    rollouts: str | Path,
    prm: str = "arith-prm",
    out: str | Path = "runs/calib-eval",
    calibrator: str | Path | None = None,
    compare: str | Path | None = None,
    seed: int = 0,
    prm_format: str | None = None,
    prm_options: dict | None = None,
) -> dict:
    """Calibration metrics of the raw PRM (and a calibrator, and with `compare` every method
    fitted on that rollout folder) on the targets of `rollouts`."""
    from ias.calibration.evaluate import calib_eval as evaluate
    from ias.calibration.store import require_rollouts

    require_rollouts(rollouts)
    the_prm = load_prm_spec(PRMSpec(prm, prm_format, dict(prm_options or {})))
    claim_run(Path(out), "calib-eval")
    return evaluate(rollouts, the_prm, out, calibrator, compare, seed)


def evaluate(run: EvalRun | None = None, /, **keys: Any) -> dict:
    """Every strategy on one shared pool of `n_max` samples per problem; returns `summary.json`.

    `run` is an `EvalRun` spec, keywords its settings by key (`ias.specs.key_table(EvalRun)`).
    Without `calibrator` the IAS methods budget from the raw PRM (then `ias-bon` and
    `ias-bon-uncalibrated` coincide). `tune_split` (e.g. "calib", `tune_limit` problems) adds
    `ias-bon-tuned` and tunes `ias-adaptive` there. `k_max`, `m_max`: the beam searches' most
    beams and samples per beam; `beam_freq` steps between PRM readings, `beam_rounds` readings
    before the beams are continued to the end (`max_tokens` bounds each call, not a whole beam).
    Each method's figures are expected over `orderings` seeded orderings of every question's
    pool (1: the pool as drawn, exactly what `ias solve` with the same seed does).
    `executor="ray"` (and `workers`, `ray_*`, as in `rollout`) produces the pool on Ray actors,
    each with its own policy and PRM replica. The folder keeps the resolved `config.yaml`:
    `ias eval --config runs/eval/config.yaml` reruns it.

    >>> s = ias.evaluate(policy="arith-weak", prm="arith-prm", calibrator="runs/cal", n_max=64, out="runs/eval")
    >>> s["methods"]["ias-bon"]["tokens"] / s["methods"]["bon@64"]["tokens"]
    """
    from ias.evaluation import EvalParts, run_eval

    run = from_keys(EvalRun, keys, run)
    _check_eval(run)
    the_task, problems = _problems(run.task)
    tune_split, tune_limit = run.eval.tune_split, run.eval.tune_limit
    tune_problems = _problems(replace(run.task, split=tune_split, limit=tune_limit))[1] if tune_split else None
    plain = load_prm_spec(replace(run.prm, calibrator=None))
    remote = _open_executor(run.executor, Recipe(run.task, run.policy, run.prm))
    with remote or nullcontext():
        # with Ray the actors hold the policy and the calibrated PRM; the raw PRM here reads questions
        the_policy = None if remote else load_policy_spec(run.policy)
        scored = None if remote else load_prm_spec(run.prm)
        params = sampling_params(remote or the_policy, run.sampling)
        claim_run(Path(run.out), "eval")
        write_config(Path(run.out), run, "eval")
        parts = EvalParts(the_task, the_policy, scored, plain, params, remote)
        return run_eval(run, parts, problems, tune_problems)


def _check_eval(run: EvalRun) -> None:
    """An eval's settings, checked before anything loads."""
    from ias.evaluation import STRATEGIES, TUNED, check_strategies

    e = run.eval
    if e.tune_limit is not None and not e.tune_split:
        raise UserError("--tune-limit needs --tune-split (the split to tune on, e.g. calib)")
    if not 1 <= e.orderings <= MAX_SAMPLES:
        raise UserError(f"--orderings must be in 1 .. {MAX_SAMPLES}, got {e.orderings}")
    if (
        min(e.n_max, e.k_max, e.m_max, e.beam_freq, e.beam_rounds) < 1
        or not 0 < e.coverage < 1
        or not 0 <= e.tolerance < 1
    ):
        raise UserError(
            f"need n_max, k_max, m_max, beam_freq, beam_rounds >= 1, 0 < coverage < 1 and "
            f"0 <= tolerance < 1; got {e.n_max}, {e.k_max}, {e.m_max}, {e.beam_freq}, {e.beam_rounds}, "
            f"{e.coverage}, {e.tolerance}"
        )
    if run.prm.model is None:
        raise UserError("ias eval needs a PRM (--prm)")
    check_counts(
        n_max=e.n_max,
        k_max=e.k_max,
        m_max=e.m_max,
        beam_freq=e.beam_freq,
        beam_rounds=e.beam_rounds,
        limit=run.task.limit,
        tune_limit=e.tune_limit,
        batch_problems=run.batch_problems,
    )
    check_strategies(e.strategies or [s for s in STRATEGIES if s != TUNED or e.tune_split])


def _open_executor(spec: ExecutorSpec, recipe: Recipe) -> Executor | None:
    """None for the local path (parts loaded here, cached); else an unstarted Ray executor."""
    spec.check()
    return open_executor(recipe, spec) if spec.kind == "ray" else None


def _problems(spec: TaskSpec) -> tuple[Task, list]:
    """The task and the problems a run over its split solves; none is a user error."""
    if spec.limit is not None and spec.limit < 1:
        raise UserError(f"--limit must be >= 1, got {spec.limit}")
    the_task = get_task(spec.name, **spec.options)
    problems = the_task.problems(spec.split, spec.limit)
    if not problems:
        raise UserError(f"task '{spec.name}' split '{spec.split}' has no problems")
    return the_task, problems
