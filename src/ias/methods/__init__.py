"""The method registry: every test-time scaling method, by name, with its settings.

Adding a method is one module (a frozen dataclass of settings with a `solve` generator,
see `ias.methods.base`) and one line in `_BUILTIN`. Modules register themselves with
`@register_method(name)` when first asked for, so importing `ias` loads none of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Protocol

from ias.errors import UserError
from ias.methods.base import Question, Solving

#: Each shipped method and the module that registers it.
_BUILTIN = {
    "bon": "ias.methods.bon",
    "ias-bon": "ias.methods.ias_bon",
    "ias-seq": "ias.methods.ias_seq",
    "fleet": "ias.methods.fleet",
    "ias-adaptive": "ias.methods.ias_adaptive",
    "adaptive-consistency": "ias.methods.consistency",
    "esc": "ias.methods.esc",
    "deepconf": "ias.methods.deepconf",
    "beam": "ias.methods.beam",
    "ias-beam": "ias.methods.beam",
    "particle-filtering": "ias.methods.particles",
}
_METHODS: dict[str, type[Any]] = {}


class Method(Protocol):
    """A method's settings with the generator that solves one question by them."""

    name: str

    def solve(self, question: Question) -> Solving: ...


def register_method(name: str) -> Callable[[type], type]:
    """Register a settings dataclass with a `solve` generator under `name`."""

    def add(cls: type) -> type:
        if not dataclasses.is_dataclass(cls) or not hasattr(cls, "solve"):
            raise TypeError(f"method '{name}' must be a dataclass with a solve() generator")
        setattr(cls, "name", name)  # any dataclass: its `name` is set here, not declared by it
        _METHODS[name] = cls
        return cls

    return add


def method_names() -> list[str]:
    """Every registered method's name (the shipped ones first)."""
    return list(dict.fromkeys([*_BUILTIN, *_METHODS]))


def method_class(name: str) -> type[Any]:
    """The settings class of method `name`; an unknown name is a one-line user error."""
    if name not in _METHODS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _METHODS:
        raise UserError(f"unknown strategy '{name}'; known: {', '.join(method_names())}")
    return _METHODS[name]


def setting_names(name: str) -> list[str]:
    """The settings method `name` takes (its dataclass fields)."""
    return [f.name for f in dataclasses.fields(method_class(name))]


def make_method(name: str, **settings: Any) -> Any:
    """Method `name` with `settings`; a setting it does not have is a one-line user error
    (bad values are refused by the method's own checks)."""
    known = setting_names(name)
    unknown = [k for k in settings if k not in known]
    if unknown:
        flag = unknown[0].replace("_", "-")
        raise UserError(
            f"--{flag} is not a setting of strategy '{name}'; its settings: "
            + (", ".join("--" + k.replace("_", "-") for k in known) or "none")
        )
    return method_class(name)(**settings)


def configure(name: str, shared: dict[str, Any]) -> Any:
    """Method `name` with those of the `shared` settings it has (a run's common knobs:
    `n_max`, `coverage`...), the rest at its defaults."""
    known = set(setting_names(name))
    return method_class(name)(**{k: v for k, v in shared.items() if k in known and v is not None})
