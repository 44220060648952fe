"""Short representations of ntkflow's results: what a user looks at first (the verdict,
α*, the checks, shapes), never every value. `@concise` gives a frozen result class a
`__repr__` under `MAX_CHARS` characters and a `_repr_html_` table for notebooks; a class
lists what comes first in `_overview()` (label, value pairs), else its fields are shown
in order, arrays as their dtype and shape (`f64[100,12]`)."""

import dataclasses
import enum
import html
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

MAX_CHARS = 2000
_TEXT = 100  # the longest string shown whole

T = TypeVar("T")


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not np.isscalar(value)


def _dtype(dtype: Any) -> str:
    d = np.dtype(dtype)
    return {"f": "f", "c": "c", "i": "i", "u": "u", "b": "bool"}.get(d.kind, d.kind) + (
        "" if d.kind == "b" else str(8 * d.itemsize)
    )


def brief(value: Any) -> str:
    """One short line for a value: an array's dtype and shape (a 0-d one's number), a
    number to 4 digits, a long string cut, a collection's length, an xarray dataset's
    sizes, a result by its class's own brief repr."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, str):
        return repr(value if len(value) <= _TEXT else value[: _TEXT - 1] + "…")
    if _is_array(value):
        if getattr(value, "ndim", 1) == 0:
            return brief(value.item())
        return f"{_dtype(value.dtype)}[{','.join(str(s) for s in value.shape)}]"
    if hasattr(value, "data_vars") and hasattr(value, "sizes"):
        sizes = ", ".join(f"{k}: {v}" for k, v in dict(value.sizes).items())
        return f"xarray.Dataset({len(value.data_vars)} variables; {sizes})"
    if isinstance(value, dict):
        keys = list(value)
        shown = ", ".join(map(str, keys[:6])) + (", …" if len(keys) > 6 else "")
        return f"{{{len(keys)} keys: {shown}}}"
    if isinstance(value, list | tuple):
        items = [brief(v) for v in value[:4]]
        if len(value) <= 4 and sum(map(len, items)) <= 80:
            return (
                ("[" if isinstance(value, list) else "(")
                + ", ".join(items)
                + ("]" if isinstance(value, list) else ")")
            )
        return f"[{len(value)} × {type(value[0]).__name__}]" if value else "[]"
    if getattr(type(value), "_concise", False):
        return f"{type(value).__name__}(…)"
    text = repr(value)
    return text if len(text) <= _TEXT else f"{type(value).__name__}(…)"


def _items(obj: Any) -> list[tuple[str, Any]]:
    overview = getattr(obj, "_overview", None)
    if overview is not None:
        return list(overview())
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.repr]


def _lines(obj: Any) -> Iterable[tuple[str, str]]:
    for label, value in _items(obj):
        yield label, value if isinstance(value, _Shown) else brief(value)


class _Shown(str):
    """A value already written for display (a list of checks, say), shown as is."""


def shown(text: str) -> _Shown:
    """`text` as an overview's value, shown as written (not quoted)."""
    return _Shown(text)


def short_repr(obj: Any) -> str:
    """`Name(label=value, …)` one item per line, at most `MAX_CHARS` characters."""
    name = type(obj).__name__
    out, used = [f"{name}("], len(name) + 2
    items = list(_lines(obj))
    for i, (label, value) in enumerate(items):
        line = f"  {label}={value},"
        if used + len(line) + 40 > MAX_CHARS:
            out.append(f"  … {len(items) - i} more: {', '.join(k for k, _ in items[i:])}"[:200])
            break
        out.append(line)
        used += len(line) + 1
    out.append(")")
    return "\n".join(out)


def html_repr(obj: Any) -> str:
    """The same items as a two-column HTML table, for notebooks."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left;white-space:pre-wrap'>{html.escape(v)}</td></tr>"
        for k, v in _lines(obj)
    )
    return f"<table><caption>{html.escape(type(obj).__name__)}</caption>{rows}</table>"


def concise(cls: type[T]) -> type[T]:
    """Give a result class the short `__repr__` and `_repr_html_` (applied above
    `@dataclasses.dataclass`, which would otherwise write its own)."""
    target: Any = cls
    target.__repr__ = short_repr
    target._repr_html_ = html_repr
    target._concise = True
    return cls


def count_checks(checks: Iterable[Any]) -> str:
    """`12 held, 1 failed, 2 inconclusive` for a list of `Check`s."""
    checks = list(checks)
    held = sum(c.holds is True for c in checks)
    failed = sum(c.holds is False for c in checks)
    return f"{held} held, {failed} failed, {len(checks) - held - failed} inconclusive"


def check_lines(checks: Iterable[Any], verdict: Callable[[Any], str]) -> _Shown:
    """One line per check, `name: verdict`, for an overview."""
    return shown("".join(f"\n    {c.name}: {verdict(c)}" for c in checks))
