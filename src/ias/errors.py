"""Errors a user can act on: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A mistake in what the user asked for (unknown name, missing file, bad value)."""


class MissingExtraError(UserError):
    """An optional part was asked for but its extra is not installed."""

    def __init__(self, what: str, extra: str):
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'ias[{extra}]'")
