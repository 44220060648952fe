"""The horizon and the save times of `solve_flows` (docs/theory.md, "Horizon and
tolerances"; docs/flows.md, "Save times").

The flows move on every time scale from the fastest mode's, `t_fast = 1/(α²Lλ_max(K0))`,
to the horizon, `cond(K0)` and more times longer: the kernel drift and the gaps are
settled within the first decades, the loss decays over the last. So `saveat=n` saves at
`t = 0` and `n − 1` times evenly spaced in `log t` from `t_fast/100` to `t1`
(`spacing="log"`, the default) — or evenly in `t` (`spacing="linear"`), which puts
a single save in the first `1/n` of the horizon.
"""

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ._errors import InputError

# The default horizon: the time at which the theorem's envelope R0·exp(−tα²σ_min²/2)
# reaches this fraction of R0.
AUTO_HORIZON_DROP = 1e-6
# `spacing="log"`: the first save after 0, as a fraction of the fastest time scale (the
# fastest mode has moved by 1% of its way there).
LOG_FIRST_SAVE = 1e-2


def _linear(t1: float, count: int, t_fast: float) -> np.ndarray:
    del t_fast
    return np.linspace(0.0, t1, count)


def _log(t1: float, count: int, t_fast: float) -> np.ndarray:
    """`0` and `count − 1` times evenly spaced in `log t` from `t_fast/100` to `t1` (from
    `t1/(count − 1)` when that is earlier: a horizon shorter than the fastest scale)."""
    if count == 2:
        return np.array([0.0, t1])
    first = t1 / (count - 1)
    if math.isfinite(t_fast) and t_fast > 0:
        first = min(first, LOG_FIRST_SAVE * t_fast)
    times = np.geomspace(first, t1, count - 1)
    times[-1] = t1
    return np.concatenate([[0.0], times])


SPACINGS: dict[str, Callable[[float, int, float], np.ndarray]] = {
    "log": _log,
    "linear": _linear,
}


def auto_horizon(sigma_min: float, alpha: float, mu: float) -> float:
    """`t1 = 2 ln(1/AUTO_HORIZON_DROP)/(μα²σ_min²)`: when the theorem's envelope
    `R0·exp(−tμα²σ_min²/2)` reaches `AUTO_HORIZON_DROP·R0`."""
    if not sigma_min > 0:
        raise ValueError(
            "t1='auto' needs σ_min(J_0) > 0 (the envelope's rate), but σ_min = 0; give "
            "t1 explicitly"
        )
    return 2.0 * math.log(1.0 / AUTO_HORIZON_DROP) / (mu * alpha**2 * sigma_min**2)


def _given_times(saveat: npt.ArrayLike) -> np.ndarray:
    ts = np.asarray(saveat, dtype=np.float64).reshape(-1)
    if ts.size < 2 or not np.all(np.isfinite(ts)) or ts[0] < 0 or np.any(np.diff(ts) <= 0):
        raise ValueError(
            "saveat must be an int or an increasing array of ≥ 2 finite times ≥ 0, got "
            f"saveat={saveat!r}"
        )
    return ts


def save_times(
    t1: float | str,
    saveat: int | npt.ArrayLike,
    sigma_min: float,
    alpha: float,
    mu: float,
    t_fast: float,
    *,
    spacing: str = "log",
) -> tuple[float, np.ndarray]:
    """The horizon and the save times (starting at 0).

    **Arguments:**

    - `t1`: the horizon, or `"auto"` (`auto_horizon`; with an array `saveat`, its last
      time).
    - `saveat`: a number of save times, spaced by `spacing`, or an increasing array of
      times (0 is prepended if absent).
    - `sigma_min`, `alpha`, `mu`: the envelope's rate `μα²σ_min²/2`, for `t1="auto"`.
    - `t_fast`: the fastest time scale `1/(α²Lλ_max(K0))`, where `spacing="log"` starts.
    - `spacing`: `"log"` or `"linear"` (module docstring).
    """
    if spacing not in SPACINGS:
        raise InputError("spacing", spacing, f"one of {sorted(SPACINGS)}")
    if isinstance(saveat, int | np.integer) and not isinstance(saveat, bool):
        if saveat < 2:
            raise InputError(
                "saveat",
                saveat,
                "≥ 2 save times",
                message=f"saveat must be ≥ 2 save times, got saveat={saveat}",
            )
        ts = None
    else:
        ts = _given_times(saveat)
    if t1 == "auto":
        t1 = float(ts[-1]) if ts is not None else auto_horizon(sigma_min, alpha, mu)
    if isinstance(t1, str) or not math.isfinite(t1) or t1 <= 0:
        raise InputError("t1", t1, "'auto' or a finite time > 0")
    if ts is None:
        ts = SPACINGS[spacing](float(t1), int(saveat), t_fast)  # pyright: ignore[reportArgumentType]
    elif ts[-1] > t1 * (1 + 1e-12):
        raise ValueError(f"saveat times must lie in [0, t1={t1:g}], got max {ts[-1]:g}")
    if ts[0] != 0.0:
        ts = np.concatenate([[0.0], ts])
    return float(t1), ts
