"""The theory's scaling laws and critical α, read off a sweep's dataset.

Which laws a grid allows (vs `problem.alpha`, vs `model.width`), the slopes the theory
predicts, the points left out below the integrator's error floor, and the smallest α at
which every conclusion held, with why it is missing where none did (docs/theory.md,
"Scaling laws in `α`", "Scaling laws in the width", "Fitting the laws" and "Critical α and
looseness"). The fitting itself is `_scaling.fit_power_law`.
"""

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._quantities import FLOW_SCALARS
from ._grid import Grid
from ._scaling import ScalingFit, critical_alpha, fit_power_law, power_law_slope

# (quantity, theory's slope, kind, label): a "rate" is expected, a "bound" is an upper
# bound the quantity must fall at least as fast as. `None`: computed per grid (below).
ALPHA_LAWS = (
    ("sup_dist_w", -1.0, "rate", "sup_t ‖w(t) − w0‖"),
    ("sup_gap_f", -1.0, "bound", "sup_t ‖αf(w(t)) − αf_0(u(t))‖ (at most ∝ 1/α)"),
    ("sup_gap_w", -2.0, "rate", "sup_t ‖w(t) − u(t)‖ (−2 up to a log)"),
)
# The error budget that bounds each measured quantity from below: a point whose value is
# within FLOOR_FACTOR of it measures the integrator, not the network, and is left out.
ERROR_OF = {name: s.budget for name, s in FLOW_SCALARS.items() if s.budget is not None}
FLOOR_FACTOR = 2.0
WIDTH_LAWS = (
    (
        "sup_kernel_drift",
        -0.5,
        "bound",
        "sup_t ‖K_t − K0‖/‖K0‖ (at most ∝ m^-1/2: 2σ_max·β·‖w − w0‖ with β ∝ m^-1/2; the "
        "first-order change averages out and finer theory predicts ∝ 1/m, Dyer & "
        "Gur-Ari 2020)",
    ),
    (
        "rel_weight_change",
        None,
        "rate",
        "‖w(t1) − w0‖/‖w0‖ (‖w − w0‖ = O(1), ‖w0‖ ∝ √p: slope −½·dlog p/dlog m)",
    ),
    (
        "limit_kernel_distance",
        -0.5,
        "rate",
        "‖K0 − Θ‖_F/‖Θ‖_F, the empirical kernel's distance to its infinite-width limit "
        "(its fluctuation ∝ m^-1/2)",
    ),
    (
        "limit_sigma_min_distance",
        -0.5,
        "bound",
        "|σ_min(J0) − σ_min(Θ)|/σ_min(Θ) (at most ∝ m^-1/2, by Weyl's inequality)",
    ),
    (
        "limit_sigma_max_distance",
        -0.5,
        "bound",
        "|σ_max(J0) − σ_max(Θ)|/σ_max(Θ) (at most ∝ m^-1/2, by Weyl's inequality)",
    ),
    (
        "limit_alpha_star_distance",
        -0.5,
        "bound",
        "|α*(K0) − α*(Θ)|/α*(Θ), same β and R0 (at most ∝ m^-1/2 through σ_min, σ_max)",
    ),
)
ALPHA_KEY = "problem.alpha"
WIDTH_KEYS = ("model.width", "model.widths")


def _replicate_key(keys: Sequence[str]) -> str | None:
    for k in keys:
        if k.endswith(".seed"):
            return k
    return None


def _first_finite(a: np.ndarray) -> np.ndarray:
    """Along axis 0, the first finite entry of each column (the parameter count does not
    depend on the seed)."""
    out = np.full(a.shape[1], np.nan)
    for row in a[::-1]:
        out = np.where(np.isfinite(row), row, out)
    return out


def _numeric(values: Sequence[Any]) -> np.ndarray:
    """Grid values as numbers: a list of widths (`model.widths`) counts as its mean."""
    return np.asarray(
        [float(np.mean(v)) if isinstance(v, list | tuple) else float(v) for v in values]
    )


def _fit_range(
    ds: Any,
    sel: dict[str, int],
    against: str,
    x: np.ndarray,
    ranges: dict[str, tuple[float, float]],
    rep_dim: str | None,
) -> tuple[tuple[float, float], str]:
    """The `[low, high]` of `against` a law is fitted over, and the note saying so: the
    user's (`[sweep.fit]`, `fit_range=`); else, for α, the points the runs showed lazy —
    from the smallest α at which every check held (`α_emp`, at every replicate) — when
    at least two are; else every point."""
    name = "alpha" if against == ALPHA_KEY else "width"
    if against in ranges:
        lo, hi = ranges[against]
        used = int(((x >= lo) & (x <= hi)).sum())
        return (lo, hi), f"fitted over {name} in [{lo:g}, {hi:g}] ({used} of {len(x)} points)"
    if against != ALPHA_KEY or "all_hold" not in ds:
        return (0.0, math.inf), ""
    held = ds["all_hold"].isel(sel)
    if rep_dim:
        held = held.transpose(rep_dim, against.replace(".", "_"))
    held = np.atleast_2d(np.asarray(held.values, dtype=np.float64) == 1.0)
    a_emp = critical_alpha(x, np.asarray(held.all(axis=0)))
    lazy = int((x >= a_emp).sum()) if math.isfinite(a_emp) else 0
    if lazy >= 2:
        return (a_emp, math.inf), (
            f"fitted over the lazy points, α ≥ α_emp = {a_emp:g} where every check held "
            f"({lazy} of {len(x)} points; set [sweep.fit] alpha_min to choose)"
        )
    why = "no α held every check" if lazy == 0 else f"only α = {a_emp:g} held every check"
    return (0.0, math.inf), (
        f"{why}: fitted over all {len(x)} points, pre-asymptotic ones included"
    )


def scaling_fits(
    ds: Any, grid: Grid, centering: str, ranges: dict[str, tuple[float, float]] | None = None
) -> list[ScalingFit]:
    """Every scaling law the grid allows: vs `problem.alpha` and vs `model.width`, each at
    every combination of the other swept keys, replicated over a swept `*.seed` key, over
    the range `_fit_range` gives (`ranges`: the user's, by swept key)."""
    ranges = dict(ranges or {})
    fits = []
    keys = list(grid.keys)
    rep = _replicate_key(keys)
    for against, laws in ((ALPHA_KEY, ALPHA_LAWS), *((k, WIDTH_LAWS) for k in WIDTH_KEYS)):
        if against not in keys or len(grid.values[keys.index(against)]) < 3:
            continue
        if any(not isinstance(v, int | float | list) for v in grid.values[keys.index(against)]):
            continue
        x_dim = against.replace(".", "_")
        rep_dim = rep.replace(".", "_") if rep else None
        others = [k for k in keys if k not in (against, rep)]
        other_dims = [k.replace(".", "_") for k in others]
        for combo in itertools.product(*(range(len(grid.values[keys.index(k)])) for k in others)):
            sel = dict(zip(other_dims, combo, strict=True))
            where = {k: grid.values[keys.index(k)][i] for k, i in zip(others, combo, strict=True)}
            x = _numeric(grid.values[keys.index(against)])
            span, range_note = _fit_range(ds, sel, against, x, ranges, rep_dim)
            for quantity, theory, kind, label in laws:
                if quantity not in ds:
                    continue
                if (
                    quantity.startswith("limit_")
                    and not np.isfinite(np.asarray(ds[quantity].values, dtype=np.float64)).any()
                ):
                    continue  # no limit computed (a model without one, or `limit = false`)
                if theory is None:  # −½ · d log p / d log m, from the points' p
                    pa = ds["p"].isel(sel)
                    p = np.asarray(
                        (pa.transpose(rep_dim, x_dim) if rep_dim else pa).values, dtype=float
                    )
                    if rep_dim:
                        p = _first_finite(p)
                    theory = -0.5 * power_law_slope(x, p)
                arr = ds[quantity].isel(sel)
                if rep_dim:
                    arr = arr.transpose(rep_dim, x_dim)
                y = np.asarray(arr.values, dtype=np.float64)
                note = label
                if quantity in ERROR_OF:
                    err = ds[ERROR_OF[quantity]].isel(sel)
                    if rep_dim:
                        err = err.transpose(rep_dim, x_dim)
                    e = np.asarray(err.values, dtype=np.float64)
                    floor = np.isfinite(e) & (y <= FLOOR_FACTOR * e)
                    if floor.any():
                        y = np.where(floor, np.nan, y)
                        note += (
                            f"; {int(floor.sum())} value(s) within {FLOOR_FACTOR:g}× of the "
                            "integrator's error budget left out (lower rtol to keep them)"
                        )
                if against == ALPHA_KEY and centering == "none":
                    note += "; without centring f(w0) ≠ 0 and the 1/α laws need not hold"
                if quantity == "sup_gap_f" and centering == "antisymmetric":
                    note += (
                        "; with antisymmetric centring f is odd in w − w0 along the flow, "
                        "its second-order term cancels and the gap can fall faster"
                    )
                if range_note:
                    note += f"; {range_note}"
                meta: dict[str, Any] = dict(
                    quantity=quantity, against=against, theory=theory, where=where
                )
                try:
                    fits.append(fit_power_law(x, y, note=note, kind=kind, fit_range=span, **meta))
                except Exception as e:  # a fit that cannot be made must not lose the sweep
                    why = f"fit unavailable ({type(e).__name__}: {' '.join(str(e).split())})"
                    nan = math.nan
                    fits.append(
                        ScalingFit(
                            slope=nan, low=nan, high=nan, intercept=nan, x=tuple(map(float, x)),
                            y=(nan,) * len(x), replicates=0, method="none",
                            note=f"{note}; {why}", kind=kind, **meta,
                        )
                    )  # fmt: skip
    return fits


def _why_not(ds: Any, sel: dict[str, int], x_dim: str) -> str:
    """Why no α on the grid held every check: at each α, the checks that failed or were
    inconclusive and how the solve ended."""
    alphas = np.asarray(ds[x_dim].values, dtype=np.float64)
    names = sorted(str(v).removeprefix("holds_") for v in ds.data_vars if v.startswith("holds_"))
    said = []
    for j in np.argsort(alphas)[::-1]:  # the largest α first: closest to holding
        at = {**sel, x_dim: int(j)}
        status = str(ds["status"].isel(at).values)
        failed = [c for c in names if float(ds[f"holds_{c}"].isel(at).values) == 0.0]
        unsure = [c for c in names if math.isnan(float(ds[f"holds_{c}"].isel(at).values))]
        # (−1: the check does not apply to this point's loss, `_sweep_dataset.NOT_CHECKED`)
        parts = []
        if status in ("error", "missing"):
            said.append(f"at α={alphas[j]:.4g}: the point did not run ({status})")
            continue
        if status != "success":
            parts.append(f"the solve ended {status}")
        if failed:
            parts.append(f"{', '.join(failed)} failed")
        if unsure:
            parts.append(f"{', '.join(unsure)} inconclusive")
        said.append(f"at α={alphas[j]:.4g}: " + ("; ".join(parts) or "not every check held"))
    return "no α on the grid held every check (" + " | ".join(said) + ")"


def critical_alphas(ds: Any, grid: Grid) -> list[dict[str, Any]]:
    """Per combination of the other swept keys: the smallest α on the grid at which every
    conclusion held, and the looseness `α*/α_emp`; where none did, `why` says which
    checks failed or were inconclusive at each α."""
    keys = list(grid.keys)
    if ALPHA_KEY not in keys:
        return []
    x_dim = ALPHA_KEY.replace(".", "_")
    others = [k for k in keys if k != ALPHA_KEY]
    rows = []
    for combo in itertools.product(*(range(len(grid.values[keys.index(k)])) for k in others)):
        sel = {k.replace(".", "_"): i for k, i in zip(others, combo, strict=True)}
        held = np.asarray(ds["all_hold"].isel(sel).values) == 1.0
        alphas = np.asarray(ds[x_dim].values, dtype=np.float64)
        a_emp = critical_alpha(alphas, held)
        star = np.asarray(ds["alpha_star"].isel(sel).values, dtype=np.float64)
        finite = star[np.isfinite(star)]
        a_star = float(np.median(finite)) if finite.size else math.nan
        rows.append(
            {
                "where": {
                    k: grid.values[keys.index(k)][i] for k, i in zip(others, combo, strict=True)
                },
                "alpha_empirical": a_emp,
                "alpha_star": a_star,
                "looseness": a_star / a_emp if math.isfinite(a_emp) and a_emp > 0 else math.nan,
            }
        )
        if not math.isfinite(a_emp):
            rows[-1]["why"] = _why_not(ds, sel, x_dim)
    return rows


# Said wherever a sweep shows α* or the looseness computed with an estimated β.
BETA_ESTIMATE_CAVEAT = (
    "β is an estimate (sampled or curvature, a lower bound on the Jacobian's Lipschitz "
    "constant, not certified): α* and α*/α_emp are estimates, not the theorem's bound"
)


def annotate_beta(rows: list[dict[str, Any]], records: Iterable[dict[str, Any]]) -> None:
    """Give each critical-α row the kind of `β` behind its `α*` (`beta_kind`: the points'
    kind, or `"mixed"`) and, where any is an estimate, `beta_caveat`."""
    records = [r for r in records if r.get("beta_kind")]
    for row in rows:
        kinds = {
            r["beta_kind"]
            for r in records
            if all(r["assignment"].get(k) == v for k, v in row["where"].items())
        }
        row["beta_kind"] = next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else None)
        if "estimate" in kinds:
            row["beta_caveat"] = BETA_ESTIMATE_CAVEAT
