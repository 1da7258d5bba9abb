"""The built-in tiny models: trained by our own code, shipped inside the package.

Each shipped folder holds the HF files plus `zoo.json`: the recipe, the training time and
the figures measured right after training (so `ias zoo info` answers instantly).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ias.errors import UserError
from ias.models import ZOO_DIR, resolve_model
from ias.records import write_json
from ias.zoo.specs import SPECS, PolicySpec

INFO_FILE = "zoo.json"
EVAL_SEED = 1234
SPREAD_SAMPLES = 32
VERIFY_SAMPLES = 16


def train(name: str, out: Path | None = None, policy: str | None = None, evaluate: bool = True) -> dict:
    """Train zoo model `name` from its recipe into `out`, measure it, write its `zoo.json`."""
    if name not in SPECS:
        raise UserError(f"unknown zoo model '{name}'; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    out = out or Path("runs") / "zoo" / name
    if isinstance(spec, PolicySpec):
        from ias.zoo.train_policy import train_policy

        result = train_policy(spec, out)
    else:
        from ias.zoo.train_prm import train_prm

        result = train_prm(spec, out, policy_path=resolve_model(policy or spec.policy))
    info = {"name": name, "recipe": spec.to_dict(), **result, **_size(out)}
    if evaluate:
        started = time.time()
        info["figures"] = measure(name, out)
        info["eval_seconds"] = round(time.time() - started, 1)
    write_json(out / INFO_FILE, info)
    return {"name": name, "out": str(out), "train_seconds": info["train_seconds"], "figures": info.get("figures")}


def measure(name: str, folder: Path) -> dict:
    """Policies: the spread of per-problem success over the test split. PRM: how well it
    verifies the weak and the strong policy's samples."""
    from ias.policy.hf import HFPolicy
    from ias.tasks.arith import make_arith
    from ias.zoo.evaluate import prm_verification, success_spread

    task = make_arith()
    test = task.problems("test")
    if SPECS[name].kind == "policy":
        sampler = HFPolicy(str(folder), batch_size=512, progress=True)
        return success_spread(sampler, task, test, SPREAD_SAMPLES, EVAL_SEED)
    from ias.prm.hf import HFPRM

    prm = HFPRM(str(folder))
    return {
        policy: prm_verification(
            prm, HFPolicy(policy, batch_size=512, progress=True), task, test, VERIFY_SAMPLES, EVAL_SEED
        )
        for policy in ("arith-weak", "arith-strong")
    }


def info() -> dict:
    """What `ias zoo info --json` prints: every shipped model's size, seed and figures."""
    models = []
    for name in SPECS:
        folder = ZOO_DIR / name
        if not (folder / INFO_FILE).exists():
            models.append({"name": name, "shipped": False})
            continue
        saved = json.loads((folder / INFO_FILE).read_text())
        entry = {"name": name, "shipped": True, "kind": SPECS[name].kind, "seed": saved["recipe"]["seed"]}
        entry.update({k: saved[k] for k in ("params", "size_bytes", "train_seconds") if k in saved})
        figures = saved.get("figures") or {}
        if "success_hist" in figures:
            entry["success_hist"] = figures["success_hist"]
        entry["figures"] = figures
        models.append(entry)
    return {"models": models}


def _size(folder: Path) -> dict:
    from safetensors import safe_open

    params = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            params += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"params": params, "size_bytes": size}
