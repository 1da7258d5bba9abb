"""The Python API: what each CLI command does, as a function."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ias.errors import UserError
from ias.policy.base import SamplingParams, load_policy
from ias.prm.base import load_prm
from ias.runner import run_dataset
from ias.scaling.bon import BestOfN
from ias.tasks.base import get_task
from ias.calibration.calibrate import calibrated_prm

STRATEGIES = {"bon": BestOfN}


def solve(
    task: str = "arith",
    split: str = "test",
    policy: str = "arith-weak",
    prm: str | None = "arith-prm",
    strategy: str = "bon",
    n: int = 16,
    out: str | Path = "runs/solve",
    limit: int | None = None,
    seed: int = 0,
    aggregation: str = "last",
    selection: str = "best",
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    task_options: dict | None = None,
    prm_format: str | None = None,
    calibrator: str | Path | None = None,
    batch_problems: int = 32,
    progress: bool = True,
) -> dict:
    """Run a strategy over a task split; records and `summary.json` go to `out` (resumable).

    `task_options` go to the task (a data `path`, a jsonl field mapping, arith knobs).
    `calibrator` (a folder from `ias calibrate`) makes the PRM's step scores calibrated medians.

    >>> summary = ias.solve(task="arith", policy="arith-weak", prm="arith-prm", n=16, out="runs/x")
    >>> summary["accuracy"], summary["usage"]["generated_tokens"]
    """
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{strategy}'; known: {', '.join(STRATEGIES)}")
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if selection != "majority" and prm is None:
        raise UserError(f"selection '{selection}' needs a PRM; pass --prm or use --selection majority")
    the_task, problems = _problems(task, split, limit, task_options)
    the_policy = _policy(policy)
    the_prm = _prm(prm, prm_format) if prm else None
    if calibrator is not None:
        if the_prm is None:
            raise UserError("--calibrator needs a PRM")
        the_prm = calibrated_prm(the_prm, calibrator)
    params = sampling_params(the_policy, temperature, top_p, max_tokens)
    chosen = STRATEGIES[strategy](n=n, aggregation=aggregation, selection=selection)
    config = {"task": task, "task_options": task_options or {}, "split": split, "policy": policy,
              "prm": prm, "calibrator": str(calibrator) if calibrator else None, "limit": limit}
    return run_dataset(
        chosen, problems, the_task, the_policy, the_prm, params, seed, Path(out), config,
        batch_problems=batch_problems, progress=progress,
    )


def rollout(
    task: str = "arith",
    split: str = "calib",
    policy: str = "arith-weak",
    n_traj: int = 8,
    n_mc: int = 8,
    max_prefix: int = 20,
    out: str | Path = "runs/rollout",
    limit: int | None = None,
    seed: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    task_options: dict | None = None,
    batch_problems: int = 16,
    progress: bool = True,
) -> dict:
    """Monte-Carlo calibration targets (SPEC §2) into `out/rollouts.jsonl`, resumable; returns the summary.

    `n_traj` trajectories per problem; every prefix t = 0 .. min(T, max_prefix+1)-1 is continued
    `n_mc` times with the policy's own sampling settings (overridden where given), and the
    whole trajectory's correctness is kept as the t = T target.

    >>> summary = ias.rollout(task="arith", split="calib", policy="arith-weak", n_traj=8, n_mc=8, out="runs/r")
    >>> rows = ias.load_targets("runs/r")  # flat (problem_id, traj, t, steps, question, correct, n, p)
    """
    from ias.calibration.rollout import rollout as run_rollout

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    the_task = get_task(task, **(task_options or {}))
    the_policy = _policy(policy)
    params = sampling_params(the_policy, temperature, top_p, max_tokens)
    return run_rollout(
        the_task, split, the_policy, n_traj, n_mc, max_prefix, Path(out), seed, limit=limit,
        batch_problems=batch_problems, progress=progress, params=params,
        config={"task": task, "task_options": task_options or {}, "policy": policy},
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
    lora: dict | None = None,
) -> dict:
    """Fit a calibrator of `prm` for the policy of `rollouts`; returns its `calibration.json`.

    `method`: quantile-lora (the paper's: LoRA + quantile reader; `lora` overrides its
    settings, e.g. {"epochs": 10, "lr": 1e-3}), quantile-head, temperature, isotonic, histogram.

    >>> ias.calibrate("runs/r", prm="arith-prm", method="quantile-head", out="runs/cal")
    >>> ias.solve(..., prm="arith-prm", calibrator="runs/cal")
    """
    from ias.calibration.calibrate import calibrate as fit

    return fit(rollouts, _prm(prm, prm_format), method, out, levels, conformal, held_out, seed, lora)


def calib_eval(
    rollouts: str | Path,
    prm: str = "arith-prm",
    out: str | Path = "runs/calib-eval",
    calibrator: str | Path | None = None,
    compare: str | Path | None = None,
    seed: int = 0,
    prm_format: str | None = None,
) -> dict:
    """Calibration metrics of the raw PRM (and a calibrator, and with `compare` every method
    fitted on that rollout folder) on the targets of `rollouts`."""
    from ias.calibration.evaluate import calib_eval as evaluate

    return evaluate(rollouts, _prm(prm, prm_format), out, calibrator, compare, seed)


def evaluate(
    task: str = "arith",
    split: str = "test",
    policy: str = "arith-weak",
    prm: str = "arith-prm",
    calibrator: str | Path | None = None,
    strategies: tuple[str, ...] | list[str] | None = None,
    n_max: int = 64,
    coverage: float = 0.99,
    out: str | Path = "runs/eval",
    limit: int | None = None,
    seed: int = 0,
    task_options: dict | None = None,
    prm_format: str | None = None,
    batch_problems: int = 16,
    progress: bool = True,
) -> dict:
    """Every strategy on one shared pool of `n_max` samples per problem; returns `summary.json`.

    Without `calibrator` the IAS methods budget from the raw PRM (then `ias-bon` and
    `ias-bon-uncalibrated` coincide).

    >>> s = ias.evaluate(policy="arith-weak", prm="arith-prm", calibrator="runs/cal", n_max=64, out="runs/eval")
    >>> s["methods"]["ias-bon"]["tokens"] / s["methods"]["bon@64"]["tokens"]
    """
    from ias.evaluation import STRATEGIES, check_strategies, run_eval
    from ias.scaling.adaptive import Budget

    if n_max < 1 or not 0 < coverage < 1:
        raise UserError(f"need n_max >= 1 and 0 < coverage < 1, got {n_max} and {coverage}")
    names = check_strategies(strategies or STRATEGIES)
    the_task, problems = _problems(task, split, limit, task_options)
    plain = _prm(prm, prm_format)
    scored = calibrated_prm(plain, calibrator) if calibrator else plain
    the_policy = _policy(policy)
    config = {"task": task, "task_options": task_options or {}, "split": split, "policy": policy, "prm": prm,
              "calibrator": str(calibrator) if calibrator else None, "limit": limit}
    return run_eval(problems, the_task, the_policy, scored, plain, sampling_params(the_policy), seed, Path(out), config,
                    names, Budget(coverage=coverage, n_max=n_max), batch_problems=batch_problems, progress=progress)


def _problems(task: str, split: str, limit: int | None, task_options: dict | None):
    """The task and the problems a run over `split` solves; none is a user error."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    the_task = get_task(task, **(task_options or {}))
    problems = the_task.problems(split, limit)
    if not problems:
        raise UserError(f"task '{task}' split '{split}' has no problems")
    return the_task, problems


@lru_cache(maxsize=2)
def _policy(model: str):
    """Loaded once per process: repeated `solve` calls on one model reuse it."""
    return load_policy(model)


@lru_cache(maxsize=2)
def _prm(model: str, prm_format: str | None):
    return load_prm(model, prm_format=prm_format)


def sampling_params(policy, temperature=None, top_p=None, max_tokens=None) -> SamplingParams:
    """The policy's shipped defaults (generation_config.json), overridden where given."""
    base = policy.defaults
    return SamplingParams(
        temperature=base.temperature if temperature is None else temperature,
        top_p=base.top_p if top_p is None else top_p,
        max_tokens=base.max_tokens if max_tokens is None else max_tokens,
    )
