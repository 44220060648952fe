"""`InputError`: a bad input as data — the key, the value given and what to give instead —
so that every caller (the library's message, the CLI's line, a sweep's record) words it
from the same fields instead of rewriting a string."""

from typing import Any


class InputError(ValueError):
    """A bad input. `key` names the argument (or the file's key), `value` is what was
    given and `fix` what to give instead; `str(error)` is the one line they make,
    `"{key} must be {fix}, got {key}={value!r}"`, unless a `message` says more.
    Subclasses: `ConfigError` (an experiment file), `SweepError` (a sweep)."""

    def __init__(
        self,
        key: str | None = None,
        value: Any = None,
        fix: str | None = None,
        *,
        message: str | None = None,
    ):
        self.key, self.value, self.fix = key, value, fix
        if message is None:
            message = f"{key} must be {fix}, got {key}={value!r}"
        super().__init__(message)
