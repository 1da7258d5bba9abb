"""`ias-adaptive`'s tuned settings from `ias eval --tune-split` (its `tune/tuning.json`), live.

The tuning pool (other problems than any evaluated) chose the knobs and fitted the map from
a chosen sample's calibrated score to its chance of being right; a live run reads both so
that it decides as the evaluation's `ias-adaptive` did. Flags given explicitly win.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ias.errors import UserError

#: The only method a tuning file configures.
TUNED_METHOD = "ias-adaptive"


def tuning_file(path: str | Path) -> Path:
    """The tuning.json at `path`: the file itself, or an eval folder's `tune/tuning.json`."""
    path = Path(path)
    for candidate in (path, path / "tune" / "tuning.json", path / "tuning.json"):
        if candidate.is_file():
            return candidate
    raise UserError(f"--tuning {path}: no tuning.json there (written by `ias eval --tune-split`)")


def tuned_settings(path: str | Path) -> dict[str, Any]:
    """`ias-adaptive`'s settings from the tuning file at `path`, its confidence map included."""
    from ias.methods.ias_adaptive import ConfidenceMap

    file = tuning_file(path)
    try:
        tuned = json.loads(file.read_text(encoding="utf-8"))["adaptive"]
        settings = dict(tuned["settings"])
        mapping = ConfidenceMap.from_dict(tuned.get("confidence_map") or {"method": "identity"})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"--tuning {file}: not a tuning file with ias-adaptive's settings ({e!r})") from None
    return {**settings, "confidence_map": mapping}
