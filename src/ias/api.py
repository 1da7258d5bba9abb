"""The Python API: what each CLI command does, as a function."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

from ias.calibration.calibrate import calibrated_prm
from ias.errors import UserError
from ias.executors import Executor, Recipe, check_executor, open_executor
from ias.policy.base import SamplingParams, load_policy
from ias.prm.base import load_prm
from ias.records import claim_run
from ias.runner import run_dataset
from ias.tasks.base import get_task

#: Ceilings on counts (README "Limits"): past them a run would grow memory for hours with no
#: progress, so it is refused up front. Samples per problem or prefix, and beams:
MAX_SAMPLES = 1024
#: Problems in one run (`limit`: an arith `seed:N` split draws that many) and per batch:
MAX_PROBLEMS = 1_000_000
MAX_BATCH_PROBLEMS = 1024
_CEILINGS = {"n": MAX_SAMPLES, "n_max": MAX_SAMPLES, "n_traj": MAX_SAMPLES, "n_mc": MAX_SAMPLES,
             "k_max": MAX_SAMPLES, "m_max": MAX_SAMPLES, "beam_rounds": MAX_SAMPLES, "beam_freq": MAX_SAMPLES,
             "limit": MAX_PROBLEMS, "tune_limit": MAX_PROBLEMS, "batch_problems": MAX_BATCH_PROBLEMS}


def check_counts(**counts: int | None) -> None:
    """Every given count is at most its ceiling (`_CEILINGS`); None is "not set"."""
    for name, value in counts.items():
        if value is not None and value > _CEILINGS[name]:
            raise UserError(f"--{name.replace('_', '-')} {value} is past the ceiling of {_CEILINGS[name]:,}; "
                            "ask for less (README: Limits)")


def solve(
    task: str = "arith",
    split: str = "test",
    policy: str = "arith-weak",
    prm: str | None = "arith-prm",
    strategy: str = "bon",
    n: int | None = None,
    out: str | Path = "runs/solve",
    limit: int | None = None,
    seed: int = 0,
    aggregation: str | None = None,
    selection: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    task_options: dict | None = None,
    prm_format: str | None = None,
    prm_options: dict | None = None,
    calibrator: str | Path | None = None,
    batch_problems: int = 32,
    progress: bool = True,
    backend: str = "hf",
    backend_options: dict | None = None,
    settings: dict | None = None,
    tuning: str | Path | None = None,
) -> dict:
    """Run a registered method (`ias.methods.method_names()`) over a task split, live; records
    and `summary.json` go to `out` (resumable).

    `settings` are the method's (`n_max`, `coverage`, `target`...; `n`, `selection`,
    `aggregation` are bon's and may be given as keywords). `tuning` (a `tuning.json` from
    `ias eval --tune-split`, or its eval folder) gives ias-adaptive its tuned settings and
    confidence map; explicit settings win. `task_options` go to the task (a data `path`, a
    jsonl field mapping, arith knobs). `calibrator` (a folder from `ias calibrate`) makes the
    PRM's step scores calibrated medians. `backend` (hf, vllm, openai) and its
    `backend_options` (e.g. {"base_url": ...}) load the policy.

    >>> summary = ias.solve(task="arith", policy="arith-weak", prm="arith-prm", n=16, out="runs/x")
    >>> summary["accuracy"], summary["usage"]["generated_tokens"]
    >>> ias.solve(strategy="ias-adaptive", calibrator="runs/cal", settings={"n_max": 64}, out="runs/a")
    """
    from ias.methods.base import Question
    from ias.methods.strategy import MethodStrategy, needs_prm

    method = live_method(strategy, settings, tuning, n=n, selection=selection, aggregation=aggregation)
    check_counts(batch_problems=batch_problems, limit=limit)
    the_task, problems = _problems(task, split, limit, task_options)
    if prm is None and needs_prm(method, Question(problems[0], the_task.extract)):
        raise UserError(f"selection '{method.selection}' needs a PRM; pass --prm or use --selection majority"
                        if strategy == "bon" else f"strategy '{strategy}' needs a PRM (it reads one); pass --prm")
    the_policy = _policy(policy, backend, _hashable(backend_options))
    the_prm = _prm(prm, prm_format, _hashable(prm_options)) if prm else None
    if calibrator is not None:
        if the_prm is None:
            raise UserError("--calibrator needs a PRM")
        the_prm = calibrated_prm(the_prm, calibrator)
    params = sampling_params(the_policy, temperature, top_p, max_tokens)
    config = {"task": task, "task_options": task_options or {}, "split": split, "policy": policy,
              "prm": prm, "calibrator": str(calibrator) if calibrator else None, "limit": limit,
              **(_prm_config(prm_format, prm_options, calibrator) if prm else {}), **_backend_config(backend)}
    claim_run(Path(out), "solve")  # after every check: a refused run leaves no folder behind
    return run_dataset(
        MethodStrategy(method), problems, the_task, the_policy, the_prm, params, seed, Path(out), config,
        batch_problems=batch_problems, progress=progress,
    )


def live_method(strategy: str, settings: dict | None = None, tuning: str | Path | None = None, **bon_keywords):
    """Method `strategy` with its settings: a tuning file's (ias-adaptive), then `settings`,
    then bon's keywords (`n`, `selection`, `aggregation`) where given; a setting the method
    lacks is a one-line error; sample counts are held to their ceilings."""
    from ias.methods import make_method, method_class
    from ias.methods.tuning import TUNED_METHOD, tuned_settings

    method_class(strategy)  # an unknown strategy is named first
    chosen: dict = {}
    if tuning is not None:
        if strategy != TUNED_METHOD:
            raise UserError(f"--tuning configures {TUNED_METHOD}, not strategy '{strategy}'")
        chosen.update(tuned_settings(tuning))
    chosen.update(settings or {})
    chosen.update({k: v for k, v in bon_keywords.items() if v is not None})
    check_counts(**{k: v for k, v in chosen.items() if k in _CEILINGS and isinstance(v, int)})
    return make_method(strategy, **chosen)


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
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    ray_num_cpus: float = 1.0,
    ray_num_gpus: float = 0.0,
    backend: str = "hf",
    backend_options: dict | None = None,
) -> dict:
    """Monte-Carlo calibration targets (SPEC §2) into `out/rollouts.jsonl`, resumable; returns the summary.

    `n_traj` trajectories per problem; every prefix t = 0 .. min(T, max_prefix+1)-1 is continued
    `n_mc` times with the policy's own sampling settings (overridden where given), and the
    whole trajectory's correctness is kept as the t = T target.

    `executor="ray"` shards the chunks over `workers` Ray actors (`ray_num_cpus` /
    `ray_num_gpus` each) on the cluster at `ray_address` (default: a local one); the store
    is the same as a local run's (docs/ray.md).

    >>> summary = ias.rollout(task="arith", split="calib", policy="arith-weak", n_traj=8, n_mc=8, out="runs/r")
    >>> rows = ias.load_targets("runs/r")  # flat (problem_id, traj, t, steps, question, correct, n, p)
    """
    from ias.calibration.rollout import rollout as run_rollout

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    check_counts(n_traj=n_traj, n_mc=n_mc, limit=limit, batch_problems=batch_problems)
    the_task = get_task(task, **(task_options or {}))
    recipe = Recipe(task, policy, dict(task_options or {}), backend=backend,
                    backend_options=dict(backend_options or {}))
    remote = _open_executor(executor, recipe, workers, ray_address, ray_num_cpus, ray_num_gpus)
    with remote or nullcontext():
        # with Ray, the actors hold the policy
        the_policy = policy if remote else _policy(policy, backend, _hashable(backend_options))
        params = sampling_params(remote or the_policy, temperature, top_p, max_tokens)
        claim_run(Path(out), "rollout")
        return run_rollout(
            the_task, split, the_policy, n_traj, n_mc, max_prefix, Path(out), seed, limit=limit,
            batch_problems=batch_problems, progress=progress, params=params,
            config={"task": task, "task_options": task_options or {}, "policy": policy, **_backend_config(backend)},
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
    the_prm = _prm(prm, prm_format, _hashable(prm_options))
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
    the_prm = _prm(prm, prm_format, _hashable(prm_options))
    claim_run(Path(out), "calib-eval")
    return evaluate(rollouts, the_prm, out, calibrator, compare, seed)


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
    prm_options: dict | None = None,
    batch_problems: int = 16,
    progress: bool = True,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    ray_num_cpus: float = 1.0,
    ray_num_gpus: float = 0.0,
    backend: str = "hf",
    backend_options: dict | None = None,
    tune_split: str | None = None,
    tune_limit: int | None = None,
    tolerance: float = 0.015,
    k_max: int = 8,
    m_max: int = 8,
    beam_freq: int = 1,
    beam_rounds: int = 16,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    orderings: int = 16,
) -> dict:
    """Every strategy on one shared pool of `n_max` samples per problem; returns `summary.json`.

    Without `calibrator` the IAS methods budget from the raw PRM (then `ias-bon` and
    `ias-bon-uncalibrated` coincide). `tune_split` (e.g. "calib", `tune_limit` problems) adds
    `ias-bon-tuned`: its estimate and coverage are chosen there, within `tolerance` of
    Best-of-`n_max`'s accuracy. `k_max`, `m_max`: the beam searches' most beams and samples per
    beam; `beam_freq` steps between PRM readings, `beam_rounds` readings before the beams are
    continued to the end (`max_tokens` bounds each call, not a whole beam). Each method's
    figures are expected over `orderings` seeded orderings of every question's pool (1: the
    pool as drawn, exactly what `ias solve` with the same seed does). `executor="ray"`
    (and `workers`, `ray_*`, as in `rollout`) produces the pool on Ray actors, each with its own policy and PRM replica.

    >>> s = ias.evaluate(policy="arith-weak", prm="arith-prm", calibrator="runs/cal", n_max=64, out="runs/eval")
    >>> s["methods"]["ias-bon"]["tokens"] / s["methods"]["bon@64"]["tokens"]
    """
    from ias.evaluation import STRATEGIES, TUNED, Budget, check_strategies, run_eval

    if tune_limit is not None and not tune_split:
        raise UserError("--tune-limit needs --tune-split (the split to tune on, e.g. calib)")
    if not 1 <= orderings <= MAX_SAMPLES:
        raise UserError(f"--orderings must be in 1 .. {MAX_SAMPLES}, got {orderings}")
    if min(n_max, k_max, m_max, beam_freq, beam_rounds) < 1 or not 0 < coverage < 1 or not 0 <= tolerance < 1:
        raise UserError(f"need n_max, k_max, m_max, beam_freq, beam_rounds >= 1, 0 < coverage < 1 and "
                        f"0 <= tolerance < 1; got {n_max}, {k_max}, {m_max}, {beam_freq}, {beam_rounds}, {coverage}, "
                        f"{tolerance}")
    check_counts(n_max=n_max, k_max=k_max, m_max=m_max, beam_freq=beam_freq, beam_rounds=beam_rounds, limit=limit,
                 tune_limit=tune_limit, batch_problems=batch_problems)
    names = check_strategies(strategies or [s for s in STRATEGIES if s != TUNED or tune_split])
    the_task, problems = _problems(task, split, limit, task_options)
    tune_problems = _problems(task, tune_split, tune_limit, task_options)[1] if tune_split else None
    plain = _prm(prm, prm_format, _hashable(prm_options))
    config = {"task": task, "task_options": task_options or {}, "split": split, "policy": policy, "prm": prm,
              "calibrator": str(calibrator) if calibrator else None, "limit": limit,
              **_prm_config(prm_format, prm_options, calibrator), **_backend_config(backend)}
    # The tuning split is no setting of the main pool (its records do not depend on it): its own pool's.
    tune_config = {**config, "split": tune_split, "limit": tune_limit} if tune_split else None
    recipe = Recipe(task, policy, dict(task_options or {}), prm=prm, prm_format=prm_format,
                    prm_options=dict(prm_options or {}),
                    calibrator=str(calibrator) if calibrator else None, backend=backend,
                    backend_options=dict(backend_options or {}))
    remote = _open_executor(executor, recipe, workers, ray_address, ray_num_cpus, ray_num_gpus)
    with remote or nullcontext():
        if remote:  # the actors hold the policy and the calibrated PRM; the raw PRM here reads questions
            the_policy, scored = None, None
        else:
            the_policy = _policy(policy, backend, _hashable(backend_options))
            scored = calibrated_prm(plain, calibrator) if calibrator else plain
        params = sampling_params(remote or the_policy, temperature, top_p, max_tokens)
        claim_run(Path(out), "eval")
        return run_eval(problems, the_task, the_policy, scored, plain, params, seed, Path(out), config, names,
                        Budget(coverage=coverage, n_max=n_max, k_max=k_max, m_max=m_max, beam_freq=beam_freq,
                               beam_rounds=beam_rounds),
                        batch_problems=batch_problems, progress=progress, executor=remote,
                        tune_problems=tune_problems, tune_config=tune_config, tolerance=tolerance,
                        orderings=orderings)


def _open_executor(kind: str, recipe: Recipe, workers: int, address: str | None,
                   num_cpus: float, num_gpus: float) -> Executor | None:
    """None for the local path (parts loaded here, cached); else an unstarted Ray executor."""
    check_executor(kind, workers, address, num_cpus, num_gpus)
    return open_executor(recipe, workers, address, num_cpus, num_gpus) if kind == "ray" else None


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
def _policy(model: str, backend: str = "hf", options: tuple = ()):
    """Loaded once per process: repeated `solve` calls on one model reuse it."""
    return load_policy(model, backend=backend, **dict(options))


def _hashable(options: dict | None) -> tuple:
    """Backend options as a sorted tuple, a cache key for `_policy`."""
    return tuple(sorted((options or {}).items()))


def _backend_config(backend: str) -> dict:
    """The backend as a run's config records it: only when not "hf", so run folders from
    before backends existed stay resumable. Its options are not recorded: an address or an
    API key must not land in files, and a server may move between resumes."""
    return {} if backend == "hf" else {"backend": backend}


SCORING_OPTIONS = ("max_length", "dtype")  # PRM options that change scores; device and batch_size do not


def _prm_config(prm_format: str | None, prm_options: dict | None, calibrator: str | Path | None) -> dict:
    """How the PRM scores, as a run's config records it (its format, the options that change
    scores, the calibrator's content hash), so a resume never mixes records scored two ways.
    Only what is set is recorded: a folder from before these keys, made with none of them set,
    stays resumable."""
    options = {k: v for k, v in sorted((prm_options or {}).items()) if k in SCORING_OPTIONS}
    config = {"prm_format": prm_format, "prm_options": options or None,
              "calibrator_sha": _calibrator_sha(calibrator) if calibrator else None}
    return {k: v for k, v in config.items() if v is not None}


def _calibrator_sha(folder: str | Path) -> str:
    """A short hash of the calibrator's `calibration.json`, its fitting time aside: a
    calibrator refitted to other numbers in the same folder is another calibrator, the same
    fit done again (as `ias demo` does on a rerun) is the same one."""
    from ias.calibration.calibrate import read_calibration

    info = read_calibration(folder)  # a folder without one is a one-line user error
    stable = {k: v for k, v in info.items() if k != "fit_seconds"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


@lru_cache(maxsize=2)
def _prm(model: str, prm_format: str | None, options: tuple = ()):
    """Loaded once per process; `options` (device, dtype, batch_size, max_length) go to the backend."""
    return load_prm(model, prm_format=prm_format, **dict(options))


def sampling_params(policy, temperature=None, top_p=None, max_tokens=None) -> SamplingParams:
    """The policy's shipped defaults (generation_config.json), overridden where given."""
    base = policy.defaults
    return SamplingParams(
        temperature=base.temperature if temperature is None else temperature,
        top_p=base.top_p if top_p is None else top_p,
        max_tokens=base.max_tokens if max_tokens is None else max_tokens,
    )
