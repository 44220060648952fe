"""Sweep grids: the `[sweep]` table checked (values of one kind, distinct), its points'
experiment documents, and `SweepError`, the one-line error of a bad sweep.
"""

import dataclasses
import hashlib
import itertools
import json
from typing import Any

from .._errors import InputError


class SweepError(InputError):
    """A bad sweep specification or output directory: one line for the user.

    `directory` is set when the error is about the sweep directory itself (the CLI then
    says where that path came from: `--out`, or the experiment's `[output] dir`). A
    `message` may name the way to resume as `{resume}`: the library's (`resume=True`) in
    the error's text, another caller's with `worded` (the CLI's `--resume`)."""

    def __init__(self, message: str, *, directory: bool = False):
        self.template = message
        self.directory = directory
        super().__init__(message=self.worded())

    def worded(self, resume: str = "resume=True") -> str:
        """The message with the way to resume named `resume`."""
        return self.template.replace("{resume}", resume)


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


# `[sweep.fit]`: the range of each swept variable the scaling laws are fitted over.
FIT = "fit"
_FIT_KEYS = {"alpha": "problem.alpha", "width": "model.width", "widths": "model.widths"}


def fit_ranges(fit: Any, *, where: str = "[sweep.fit]") -> dict[str, tuple[float, float]]:
    """`[sweep.fit]` (`alpha_min = 10`, `alpha_max`, `width_min`, `width_max`) as
    `{swept key: (low, high)}`; `where` names the setting in errors (`fit_range=` for a
    Python sweep, whose `{"alpha": (10, None)}` is turned into these keys first).

    **Raises:** `SweepError` for an unknown key, a bound that is not a number ≥ 0, or an
    empty range.
    """
    if fit is None:
        return {}
    if not isinstance(fit, dict):
        raise SweepError(f"{where} must be a table, e.g. alpha_min = 10; got {fit!r}")
    out: dict[str, list[float]] = {}
    for key, value in fit.items():
        name, _, end = str(key).rpartition("_")
        if name not in _FIT_KEYS or end not in ("min", "max"):
            known = ", ".join(f"{n}_min, {n}_max" for n in ("alpha", "width"))
            raise SweepError(f"{where} has no setting {key!r}; use {known}")
        bounds = out.setdefault(_FIT_KEYS[name], [0.0, float("inf")])
        if value is None:  # (open: given explicitly, it still turns the default range off)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise SweepError(f"{where} {key} must be a number ≥ 0, got {value!r}")
        bounds[0 if end == "min" else 1] = float(value)
    for swept, (lo, hi) in out.items():
        if lo > hi:
            raise SweepError(f"{where}: the {swept} range [{lo:g}, {hi:g}] is empty")
    if "model.width" in out:  # (a width bound applies to either way of sweeping widths)
        out.setdefault("model.widths", out["model.width"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def make_grid(sweep: dict[str, Any]) -> Grid:
    """Validate a `[sweep]` table: dotted `SECTION.KEY` names mapping to non-empty lists
    (besides the run `SETTINGS`).

    **Raises:** `SweepError`.
    """
    sweep_settings(sweep)
    fit_ranges(sweep.get(FIT))
    sweep = {k: v for k, v in sweep.items() if k not in (*SETTINGS, FIT)}
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
