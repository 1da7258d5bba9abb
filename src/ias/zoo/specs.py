"""The recipes of the built-in models: sizes, seeds and training lengths.

Training any of them again with `ias zoo train NAME` follows the recipe exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PolicySpec:
    name: str
    seed: int
    hidden: int
    layers: int
    heads: int
    steps: int
    batch: int
    lr: float
    temperature: float  # the default sampling temperature shipped in generation_config.json
    bucket: int = 1  # batches sorted by length together (1: plain random batches)
    kind: str = "policy"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PRMSpec:
    name: str
    seed: int
    policy: str  # whose rollouts give the Monte-Carlo labels (and whose weights start it)
    problems: int  # train problems rolled out for labels
    verify_problems: int  # further train problems whose reference solutions teach checking
    n_traj: int
    n_mc: int
    steps: int
    batch: int
    lr: float
    head_lr_scale: float = 10.0  # the fresh head's learning rate over the body's
    bucket: int = 4  # batches sorted by length together
    kind: str = "prm"

    def to_dict(self) -> dict:
        return asdict(self)


SPECS: dict[str, PolicySpec | PRMSpec] = {
    "arith-weak": PolicySpec(
        name="arith-weak", seed=11, hidden=64, layers=2, heads=4, steps=1500, batch=64, lr=3e-3, temperature=1.3
    ),
    "arith-strong": PolicySpec(
        name="arith-strong",
        seed=12,
        hidden=128,
        layers=4,
        heads=4,
        steps=2500,
        batch=64,
        lr=2e-3,
        temperature=1.0,
        bucket=4,
    ),
    "arith-prm": PRMSpec(
        name="arith-prm",
        seed=13,
        policy="arith-strong",
        problems=2000,
        verify_problems=30000,
        n_traj=2,
        n_mc=4,
        steps=1000,
        batch=64,
        lr=2e-4,
    ),
}
