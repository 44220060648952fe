"""Scaling laws on a log-log scale, with bootstrap intervals, and the empirical critical α.

The lazy-training theory predicts, with centring (Chizat, Oyallon & Bach, NeurIPS 2019,
Thm 2.4; docs/theory.md, "Scale and centring"): `sup_t ‖w − w0‖ ∝ α^{-1}`,
`sup_t ‖αf(w) − αf_0(u)‖ ∝ α^{-1}`, `sup_t ‖w − u‖ ∝ α^{-2}` up to a logarithm; and in
the NTK parametrisation, at fixed α, the kernel drift and the relative weight change
`‖w(t1) − w0‖/‖w0‖` `∝ m^{-1/2}` in the width `m`.
"""

import dataclasses
import math
from typing import Any

import numpy as np

from .._json import jsonable
from .._repr import concise

# How far outside its bootstrap interval a theory's slope may lie and still "agree".
AGREEMENT_TOLERANCE = 0.1


@concise
@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """A power law `y ≈ C·x^slope` fitted on a log-log scale.

    **Fields:** `quantity`, `against` (the swept key), `slope` (least squares on the
    log-mean over replicates), `low`, `high` (a 95% bootstrap interval), `theory` (the
    predicted slope), `intercept` (`log C`), `x`, `y` (the replicate-averaged points, a
    geometric mean), `replicates`, `method` (how the interval was bootstrapped), `where`
    (the values of the other swept keys this fit holds them at), `note`, `kind`
    (`"rate"`: the theory's slope is expected; `"bound"`: the theory only bounds it),
    `used` (the grid points the line was fitted through: those in `fit_range` with a
    usable value), `stderr` (the least-squares standard error of the slope, NaN with
    fewer than three points), `fit_range` (the `[low, high]` of `against` fitted over;
    `x`, `y` keep every grid point, for the figures).
    """

    quantity: str
    against: str
    slope: float
    low: float
    high: float
    theory: float
    intercept: float
    x: tuple[float, ...]
    y: tuple[float, ...]
    replicates: int
    method: str
    where: dict[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""
    kind: str = "rate"
    used: int = 0
    stderr: float = math.nan
    fit_range: tuple[float, float] = (0.0, math.inf)

    @property
    def agrees(self) -> bool:
        """For a `"rate"`: whether the theory's slope lies in the bootstrap interval widened
        by `AGREEMENT_TOLERANCE` (deterministic runs give intervals far narrower than the
        pre-asymptotic corrections a finite grid sees). For a `"bound"`: whether the
        quantity falls at least as fast, `high ≤ theory + AGREEMENT_TOLERANCE`."""
        tol = AGREEMENT_TOLERANCE
        if self.kind == "bound":
            return self.high <= self.theory + tol
        return self.low - tol <= self.theory <= self.high + tol

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"agrees": self.agrees})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScalingFit":
        """The inverse of `to_dict` (as read back from a sweep's summary.json)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        floats = ("slope", "low", "high", "theory", "intercept", "stderr")
        kw |= {k: float(kw[k]) for k in floats if k in kw}  # "nan"/"inf" strings back
        kw |= {k: tuple(float(v) for v in kw[k]) for k in ("x", "y", "fit_range") if k in kw}
        return cls(**kw)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN; NaN where a column has no finite value (no warning)."""
    finite = np.isfinite(a)
    count = finite.sum(axis=0)
    total = np.where(finite, a, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _slope(logx: np.ndarray, logy: np.ndarray) -> tuple[float, float]:
    """Least-squares line through the finite points; NaN when fewer than two distinct
    `x` remain (a line is not determined), never an exception."""
    ok = np.isfinite(logx) & np.isfinite(logy)
    if len(np.unique(logx[ok])) < 2:
        return math.nan, math.nan
    X = np.stack([logx[ok], np.ones(int(ok.sum()))], axis=1)
    try:
        (slope, intercept), *_ = np.linalg.lstsq(X, logy[ok], rcond=None)
    except np.linalg.LinAlgError:
        return math.nan, math.nan
    return float(slope), float(intercept)


def _stderr(logx: np.ndarray, logy: np.ndarray, slope: float, intercept: float) -> float:
    """The least-squares standard error of the slope, `sqrt(RSS/(k − 2) / Σ(x − x̄)²)`,
    over the finite points (NaN with fewer than three)."""
    ok = np.isfinite(logx) & np.isfinite(logy)
    k = int(ok.sum())
    if k < 3 or not math.isfinite(slope):
        return math.nan
    x, y = logx[ok], logy[ok]
    rss = float(np.sum((y - slope * x - intercept) ** 2))
    sxx = float(np.sum((x - x.mean()) ** 2))
    return math.sqrt(rss / (k - 2) / sxx) if sxx > 0 else math.nan


def power_law_slope(x: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of `log y` against `log x` (NaN if not determined)."""
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _slope(np.log(np.where(x > 0, x, np.nan)), np.log(np.where(y > 0, y, np.nan)))[0]


def fit_power_law(
    x: np.ndarray,
    y: np.ndarray,
    *,
    quantity: str,
    against: str,
    theory: float,
    n_boot: int = 2000,
    seed: int = 0,
    where: dict[str, Any] | None = None,
    note: str = "",
    kind: str = "rate",
    fit_range: tuple[float, float] = (0.0, math.inf),
) -> ScalingFit:
    """Fit `log y = slope·log x + c` with a bootstrap interval.

    **Arguments:**

    - `x`: the grid, shape `(k,)`, positive.
    - `y`: the measurements, shape `(r, k)` for `r` replicates (seeds) or `(k,)`.
      Non-positive or non-finite entries are ignored.
    - `theory`: the predicted slope.
    - `kind`: `"rate"` (the law is expected with this slope) or `"bound"` (the theory
      bounds the quantity: it must fall at least this fast).
    - `fit_range`: the `[low, high]` of `x` to fit over; the other grid points are kept
      in `x`, `y` (for the figures) but not fitted.
    - `n_boot`: bootstrap resamples. With `r ≥ 2` replicates the replicates are resampled
      (all grid points of a replicate together: the seeds are the independent units);
      with one, the grid points are (a pairs bootstrap).

    **Returns:** a `ScalingFit`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    positive = np.isfinite(y) & (y > 0)
    logy_all = np.where(positive, np.log(np.where(positive, y, 1.0)), np.nan)
    inside = (x >= fit_range[0]) & (x <= fit_range[1])
    logx = np.log(np.where((x > 0) & inside, x, np.nan))
    mean_log_all = _nanmean_rows(logy_all)
    mean_log = np.where(inside, mean_log_all, np.nan)
    slope, intercept = _slope(logx, mean_log)
    rng = np.random.default_rng(seed)
    r = y.shape[0]
    boots = []
    if r >= 2:
        method = f"bootstrap over {r} replicates ({n_boot} resamples)"
        for _ in range(n_boot):
            boots.append(_slope(logx, _nanmean_rows(logy_all[rng.integers(0, r, r)]))[0])
    else:
        method = f"pairs bootstrap over {len(x)} grid points ({n_boot} resamples)"
        for _ in range(n_boot):
            idx = rng.integers(0, len(x), len(x))
            boots.append(_slope(logx[idx], mean_log[idx])[0])
    boots = np.asarray([b for b in boots if math.isfinite(b)])
    usable = int(np.isfinite(mean_log).sum())
    if not math.isfinite(slope):
        note = (note + "; " if note else "") + (
            f"no fit: {usable} grid point(s) with a usable value (need two distinct "
            f"{against} values)"
        )
    low, high = (
        (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
        if boots.size
        else (math.nan, math.nan)
    )
    return ScalingFit(
        quantity=quantity,
        against=against,
        slope=slope,
        low=low,
        high=high,
        theory=theory,
        intercept=intercept,
        x=tuple(float(v) for v in x),
        y=tuple(float(math.exp(v)) if math.isfinite(v) else math.nan for v in mean_log_all),
        replicates=r,
        method=method,
        where=dict(where or {}),
        note=note,
        kind=kind,
        used=usable,
        stderr=_stderr(logx, mean_log, slope, intercept),
        fit_range=(float(fit_range[0]), float(fit_range[1])),
    )


def critical_alpha(alphas: np.ndarray, all_hold: np.ndarray) -> float:
    """The smallest `α` on the grid at which every conclusion held (`nan` if none)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    held = np.asarray(all_hold, dtype=bool)
    order = np.argsort(alphas)
    for i in order:
        if held[i]:
            return float(alphas[i])
    return math.nan
