"""Every registered method's settings as command-line flags, declared once from the registry.

Each settings dataclass field becomes one flag (`n_max` -> `--n-max`), shared by every
method that has a field of that name; its type comes from the field's default (bool fields
as `--calibrated/--no-calibrated`). Flags default to "not given", so each method keeps its
own defaults, and a flag the chosen method lacks is refused by `make_method` in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable

from ias.methods import method_class, method_names

#: Settings that are objects, not knobs (a fitted confidence map comes from `--tuning`).
NOT_FLAGS = frozenset({"confidence_map"})
_PREFIX = "setting_"


@dataclasses.dataclass
class Flag:
    name: str
    kind: type
    methods: list[str]


def setting_flags() -> list[Flag]:
    """One flag per setting name across every registered method (int and float: float)."""
    flags: dict[str, Flag] = {}
    for method in method_names():
        for f in dataclasses.fields(method_class(method)):
            kind = type(f.default) if f.default is not dataclasses.MISSING else None
            if f.name in NOT_FLAGS or kind not in (bool, int, float, str):
                continue
            if f.name not in flags:
                flags[f.name] = Flag(f.name, kind, [method])
                continue
            flag = flags[f.name]
            flag.methods.append(method)
            if flag.kind is not kind:
                flag.kind = float if {flag.kind, kind} == {int, float} else str
    return list(flags.values())


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """The settings flags of every registered method on `parser`, in one group."""
    group = parser.add_argument_group("strategy settings (each strategy's defaults unless given)")
    for flag in setting_flags():
        option = "--" + flag.name.replace("_", "-")
        if option in parser._option_string_actions:  # a command option already (--temperature): named by method
            option = f"--{flag.methods[0]}-{flag.name.replace('_', '-')}"
        used_by = "setting of " + ", ".join(flag.methods)
        if flag.kind is bool:
            group.add_argument(
                option, dest=_PREFIX + flag.name, action=argparse.BooleanOptionalAction, default=None, help=used_by
            )
        else:
            group.add_argument(
                option,
                dest=_PREFIX + flag.name,
                type=_PARSERS[flag.kind],
                default=None,
                metavar=flag.kind.__name__.upper(),
                help=used_by,
            )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags given on the command line, by field name."""
    return {
        key[len(_PREFIX) :]: value for key, value in vars(args).items() if key.startswith(_PREFIX) and value is not None
    }


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


_PARSERS: dict[type, Callable[[str], Any]] = {int: _whole, float: _number, str: str}
