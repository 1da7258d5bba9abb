"""The live objects of a run's specs: its policy and PRM (loaded once per process, the PRM
calibrated when the spec names a calibrator), its sampling settings, its method, and the
ceilings on counts every entry point checks (the API, `ias.Solver`, `ias serve`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ias.calibration.calibrate import calibrated_prm
from ias.errors import UserError
from ias.policy.base import Policy, SamplingParams, load_policy
from ias.prm.base import PRM, load_prm
from ias.specs import MethodSpec, PolicySpec, PRMSpec, SamplingSpec

#: Ceilings on counts (README "Limits"): past them a run would grow memory for hours with no
#: progress, so it is refused up front. Samples per problem or prefix, and beams:
MAX_SAMPLES = 1024
#: Problems in one run (`limit`: an arith `seed:N` split draws that many) and per batch:
MAX_PROBLEMS = 1_000_000
MAX_BATCH_PROBLEMS = 1024
_CEILINGS = {
    "n": MAX_SAMPLES,
    "n_max": MAX_SAMPLES,
    "n_traj": MAX_SAMPLES,
    "n_mc": MAX_SAMPLES,
    "k_max": MAX_SAMPLES,
    "m_max": MAX_SAMPLES,
    "beam_rounds": MAX_SAMPLES,
    "beam_freq": MAX_SAMPLES,
    "limit": MAX_PROBLEMS,
    "tune_limit": MAX_PROBLEMS,
    "batch_problems": MAX_BATCH_PROBLEMS,
}


def check_counts(**counts: int | None) -> None:
    """Every given count is at most its ceiling (`_CEILINGS`); None is "not set"."""
    for name, value in counts.items():
        if value is not None and value > _CEILINGS[name]:
            raise UserError(
                f"--{name.replace('_', '-')} {value} is past the ceiling of {_CEILINGS[name]:,}; "
                "ask for less (README: Limits)"
            )


def live_method(spec: MethodSpec) -> Any:
    """The method of `spec` with its settings: a tuning file's (`ias-adaptive`, `ias-adaptive@B`),
    then the spec's settings; a setting the method lacks is a one-line error; sample counts are
    held to their ceilings."""
    from ias.methods import make_method, method_class
    from ias.methods.tuning import TUNED_METHOD, base_method, tuned_for, tuned_variants

    name = base_method(spec.strategy)
    method_class(name)  # an unknown strategy is named first
    if spec.tuning is not None and name != TUNED_METHOD:
        raise UserError(f"--tuning configures {TUNED_METHOD}, not strategy '{spec.strategy}'")
    chosen = dict(tuned_for(spec.strategy, tuned_variants(spec.tuning) if spec.tuning is not None else None))
    chosen.update(spec.settings)
    check_counts(**{k: v for k, v in chosen.items() if k in _CEILINGS and isinstance(v, int)})
    return make_method(name, **chosen)


def load_policy_spec(spec: PolicySpec) -> Policy:
    """The policy of `spec`, loaded once per process: repeated runs on one model reuse it."""
    return _policy(spec.model, spec.backend, _hashable(spec.options))


def load_optional_prm(spec: PRMSpec) -> PRM | None:
    """The PRM of `spec`, or None where it names none ('none'); a calibrator without a PRM is one line."""
    if spec.model is None:
        if spec.calibrator is not None:
            raise UserError("--calibrator needs a PRM (--prm)")
        return None
    return load_prm_spec(spec)


def load_prm_spec(spec: PRMSpec) -> PRM:
    """The PRM of `spec` (loaded once per process), calibrated when it names a calibrator."""
    if spec.model is None:
        raise UserError("no PRM given (--prm)")
    prm = _prm(spec.model, spec.format, _hashable(spec.options))
    return calibrated_prm(prm, spec.calibrator) if spec.calibrator is not None else prm


@lru_cache(maxsize=2)
def _policy(model: str, backend: str = "hf", options: tuple = ()) -> Policy:
    return load_policy(model, backend=backend, **dict(options))


@lru_cache(maxsize=2)
def _prm(model: str, prm_format: str | None, options: tuple = ()) -> PRM:
    return load_prm(model, prm_format=prm_format, **dict(options))


def _hashable(options: dict | None) -> tuple:
    """Options as a sorted tuple, a cache key."""
    return tuple(sorted((options or {}).items()))


def sampling_params(policy: Any, sampling: SamplingSpec | None = None) -> SamplingParams:
    """The policy's shipped defaults (generation_config.json), overridden where `sampling` says."""
    base, given = policy.defaults, sampling or SamplingSpec()
    return SamplingParams(
        temperature=base.temperature if given.temperature is None else given.temperature,
        top_p=base.top_p if given.top_p is None else given.top_p,
        max_tokens=base.max_tokens if given.max_tokens is None else given.max_tokens,
    )
