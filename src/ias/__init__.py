"""ias: instance-adaptive test-time scaling of LLM reasoning with calibrated process reward models."""

from ias.api import calib_eval, calibrate, evaluate, rollout, solve
from ias.calibration.store import load_targets
from ias.methods.engine import Answer
from ias.policy.base import SamplingParams, load_policy
from ias.prm.base import load_prm
from ias.solver import Solver
from ias.specs import (
    AskRun,
    EvalRun,
    EvalSettings,
    ExecutorSpec,
    MethodSpec,
    PolicySpec,
    PRMSpec,
    RolloutRun,
    RolloutSettings,
    SamplingSpec,
    SolveRun,
    TaskSpec,
)
from ias.tasks.base import get_task
from ias.version import __version__

__all__ = [
    "solve",
    "rollout",
    "calibrate",
    "calib_eval",
    "evaluate",
    "load_targets",
    "load_policy",
    "load_prm",
    "get_task",
    "SamplingParams",
    "Solver",
    "Answer",
    "__version__",
    "SolveRun",
    "RolloutRun",
    "EvalRun",
    "AskRun",
    "TaskSpec",
    "PolicySpec",
    "PRMSpec",
    "SamplingSpec",
    "ExecutorSpec",
    "MethodSpec",
    "EvalSettings",
    "RolloutSettings",
]
