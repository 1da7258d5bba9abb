"""Figures drawn off-screen and saved atomically: the plots of `ias eval` and `ias calib-eval`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float]) -> Any:
    """A figure drawn off-screen without pyplot: no global backend switch (a notebook calling
    the API keeps its own), no figure registry to leak into, laid out at every save."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="tight")


def save_figure(fig: Any, path: str | Path) -> None:
    """Write a PNG atomically (a temporary file renamed): a crash leaves the old plot or none."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, format="png")
    os.replace(tmp, path)
