"""IAS Best-of-N (SPEC section 5): N from the question's calibrated chance of success."""

from __future__ import annotations

from dataclasses import dataclass

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, ReadQuestion, Solving, choose, question_estimate
from ias.scaling.budget import n_ias


@register_method("ias-bon")
@dataclass(frozen=True)
class IASBestOfN:
    """Best of N_IAS(p) samples: the fewest whose chance that one is right reaches
    `coverage`, p the question's calibrated `estimate` (`lower`: its lowest quantile, the
    paper's; `median`). `calibrated=False`: the PRM's raw score budgets and ranks."""

    coverage: float = 0.99
    estimate: str = "lower"
    n_min: int = 1
    n_max: int = 64
    calibrated: bool = True

    def __post_init__(self) -> None:
        if self.estimate not in ("lower", "median"):
            raise UserError(f"--estimate must be lower or median, got {self.estimate!r}")
        n_ias(0.5, self.coverage, self.n_min, self.n_max)  # refuses bad coverage and bounds

    def solve(self, question: Question) -> Solving:
        reading = yield ReadQuestion()
        p = question_estimate(reading, self.estimate, self.calibrated)
        n = n_ias(p, self.coverage, self.n_min, self.n_max)
        samples = yield Draw(n, note={"p": round(p, 6)})
        return choose(samples, "best", self.calibrated)
