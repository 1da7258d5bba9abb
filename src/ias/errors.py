"""Errors a user can act on: the CLI prints them as one line and exits 2."""

import inspect
from typing import Any, Callable


class UserError(Exception):
    """A mistake in what the user asked for (unknown name, missing file, bad value)."""


class PromptTooLong(UserError):
    """A prompt leaves the model no position to generate in (`index`: which prompt of a call)."""

    def __init__(self, index: int, tokens: int, max_model_len: int):
        super().__init__(
            f"prompt {index} has {tokens} tokens, more than the model's {max_model_len - 1} usable "
            "positions; shorten it or use a longer-context model"
        )
        self.index = index


class MissingExtraError(UserError):
    """An optional part was asked for but its extra is not installed."""

    def __init__(self, what: str, extra: str):
        super().__init__(f"{what} needs the '{extra}' extra: pip install -e '.[{extra}]' (in the ias clone)")


def check_options(what: str, factory: Callable[..., Any], options: dict) -> None:
    """A backend option its factory does not take is the user's typo, named with the real ones
    (a factory taking **kwargs checks its own)."""
    accepted = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        names = ", ".join(k for k in accepted if k != "model")
        raise UserError(f"{what} has no option {', '.join(unknown)}; its options: {names}")
