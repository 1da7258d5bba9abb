"""ias: instance-adaptive test-time scaling of LLM reasoning with calibrated process reward models."""

from ias.api import solve
from ias.policy.base import SamplingParams, load_policy
from ias.prm.base import load_prm
from ias.tasks.base import get_task

__version__ = "0.1.0"
__all__ = ["solve", "load_policy", "load_prm", "get_task", "SamplingParams", "__version__"]
