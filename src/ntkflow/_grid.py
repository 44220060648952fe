"""Sweep grids: the `[sweep]` table checked (values of one kind, distinct), its points'
experiment documents, and `SweepError`, the one-line error of a bad sweep.
"""

import dataclasses
import hashlib
import itertools
import json
from typing import Any


class SweepError(ValueError):
    """A bad sweep specification or output directory: one line for the user.

    `directory` is set when the error is about the sweep directory itself (the CLI then
    says where that path came from: `--out`, or the experiment's `[output] dir`)."""

    def __init__(self, message: str, *, directory: bool = False):
        super().__init__(message)
        self.directory = directory


def _kind(value: Any) -> str:
    """The kind of a grid value, for the one-kind-per-key rule."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _same(value: Any) -> Any:
    """A value as the experiment sees it, for the distinctness rule: `1` and `1.0` are
    one number, `[1, 2]` and `[1.0, 2.0]` one list."""
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        return (type(value).__name__, repr(value))
    if isinstance(value, list):
        return ("list", tuple(_same(v) for v in value))
    return ("number", float(value))


@dataclasses.dataclass(frozen=True)
class Grid:
    """The Cartesian product of the swept keys' values, in the order given."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    def points(self) -> list[dict[str, Any]]:
        return [
            dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*self.values)
        ]

    def dims(self) -> list[str]:
        """netCDF dimension names: the dotted key with `.` → `_` (`problem_alpha`)."""
        return [k.replace(".", "_") for k in self.keys]


# `[sweep]` keys that say how the sweep runs rather than what it sweeps (`executor =
# "ray"`, `address = "auto"`); they never change a point's numbers.
SETTINGS = ("executor", "address")


def sweep_settings(sweep: dict[str, Any] | None) -> dict[str, str]:
    """The run settings of a `[sweep]` table (`SETTINGS`), each a non-empty string.

    **Raises:** `SweepError`.
    """
    settings = {k: v for k, v in (sweep or {}).items() if k in SETTINGS}
    for key, value in settings.items():
        if not isinstance(value, str) or not value.strip():
            raise SweepError(
                f'[sweep] {key} must be a non-empty string, e.g. executor = "ray", got {value!r}'
            )
    return settings


def make_grid(sweep: dict[str, Any]) -> Grid:
    """Validate a `[sweep]` table: dotted `SECTION.KEY` names mapping to non-empty lists
    (besides the run `SETTINGS`).

    **Raises:** `SweepError`.
    """
    sweep_settings(sweep)
    sweep = {k: v for k, v in sweep.items() if k not in SETTINGS}
    if not sweep:
        raise SweepError(
            "the experiment has no [sweep] section; add e.g. "
            '`"problem.alpha" = [1, 10, 100]` under [sweep]'
        )
    keys, values = [], []
    for key, vals in sweep.items():
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise SweepError(
                f'[sweep] key {key!r} must be "SECTION.KEY", e.g. "problem.alpha", or one of '
                f"the settings {', '.join(SETTINGS)}"
            )
        if parts[0] == "sweep":
            raise SweepError(f"[sweep] key {key!r}: the sweep cannot sweep itself")
        if not isinstance(vals, list) or not vals:
            raise SweepError(f"[sweep] {key}: must be a non-empty list of values, got {vals!r}")
        kinds = sorted({_kind(v) for v in vals})
        if len(kinds) > 1:
            raise SweepError(
                f"[sweep] {key}: values must all be of one kind, got {vals!r} (a mix of "
                f"{' and '.join(kinds)}s); write numbers without quotes, e.g. [1.0, 2.0]"
            )
        seen: dict[Any, Any] = {}
        for v in vals:
            if _same(v) in seen:
                raise SweepError(
                    f"[sweep] {key}: values must be distinct, got {vals!r} ({seen[_same(v)]!r} "
                    f"and {v!r} are the same value); drop one"
                )
            seen[_same(v)] = v
        keys.append(key)
        values.append(tuple(vals))
    return Grid(tuple(keys), tuple(values))


def point_document(base: dict[str, Any], assignment: dict[str, Any]) -> dict[str, Any]:
    """The experiment document of one grid point (`base` without its sweep, plus the
    point's values)."""
    doc = json.loads(json.dumps(base))
    doc.pop("sweep", None)
    for key, value in assignment.items():
        section, name = key.split(".")
        doc.setdefault(section, {})[name] = value
    return doc


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
