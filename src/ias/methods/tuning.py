"""`ias-adaptive`'s tuned settings from `ias eval --tune-split` (its `tune/tuning.json`), live.

The tuning pool (other problems than any evaluated) chose the knobs and fitted the map from
a chosen sample's calibrated score to its chance of being right; a live run reads both so
that it decides as the evaluation's `ias-adaptive` did. The file holds the main setting
(`ias-adaptive`) and one per mean budget B (`ias-adaptive@B`: the most accurate setting whose
tokens on the tuning pool fit fixed N = B's); each is a strategy name of `ias solve`, `ias ask`,
`ias serve` and a served request's `ias.strategy`. Flags given explicitly win.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ias.errors import UserError

#: The only method a tuning file configures.
TUNED_METHOD = "ias-adaptive"
_VARIANT = re.compile(re.escape(TUNED_METHOD) + r"@([1-9][0-9]*)")


def base_method(strategy: str) -> str:
    """The registered method a strategy name runs: `ias-adaptive@8` is `ias-adaptive` (with
    the tuning file's settings for a mean budget of 8 samples); any other name is itself."""
    return TUNED_METHOD if _VARIANT.fullmatch(strategy) else strategy


def tuning_file(path: str | Path) -> Path:
    """The tuning.json at `path`: the file itself, or an eval folder's `tune/tuning.json`."""
    path = Path(path)
    for candidate in (path, path / "tune" / "tuning.json", path / "tuning.json"):
        if candidate.is_file():
            return candidate
    raise UserError(f"--tuning {path}: no tuning.json there (written by `ias eval --tune-split`)")


def tuned_variants(path: str | Path) -> dict[str, dict[str, Any]]:
    """Every strategy the tuning file at `path` configures (`ias-adaptive`, `ias-adaptive@B`...),
    each with its settings and the confidence map they share."""
    from ias.methods.ias_adaptive import ConfidenceMap

    file = tuning_file(path)
    try:
        tuned = json.loads(file.read_text(encoding="utf-8"))["adaptive"]
        mapping = ConfidenceMap.from_dict(tuned.get("confidence_map") or {"method": "identity"})
        variants = {TUNED_METHOD: dict(tuned["settings"])}
        variants.update({f"{TUNED_METHOD}@{int(b)}": dict(s) for b, s in (tuned.get("by_budget") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"--tuning {file}: not a tuning file with ias-adaptive's settings ({e!r})") from None
    return {name: {**settings, "confidence_map": mapping} for name, settings in variants.items()}


def tuned_for(strategy: str, variants: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The tuned settings of `strategy` from `variants` (`tuned_variants`; None: no file given):
    none for a method no file configures; a tuned-only name (`ias-adaptive@B`) without them is
    a one-line error naming what the file holds."""
    if base_method(strategy) != TUNED_METHOD:
        return {}
    if variants is None:
        if strategy == TUNED_METHOD:
            return {}
        raise UserError(f"strategy '{strategy}' is a tuned setting: give --tuning (tune/tuning.json of `ias eval`)")
    if strategy not in variants:
        raise UserError(f"the tuning file has no '{strategy}'; it holds: {', '.join(variants)}")
    return variants[strategy]
