"""The figures of a sweep, drawn from its `sweep.nc` and summary: each fitted power law
(`plot_scaling`), the empirical critical α against the theorem's α*
(`plot_critical_alpha`), the width study's distances to the infinite-width limit
(`plot_limit`) and, with a test split, the test losses against α (`plot_lazy_active`);
`save_sweep_figures` renders them to PNG files.
"""

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _HEIGHT, _figure, _number, _Panel


def _where_label(where: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in where.items())


def _floats(values: Any) -> np.ndarray:
    return np.asarray([_number(v) for v in values], dtype=np.float64)


def plot_scaling(fit: dict[str, Any]) -> Any:
    """One fitted power law on log-log axes (where its slope is a line's), with the
    theory's slope beside it."""
    fig, (ax,) = _figure()
    x, y = _floats(fit.get("x") or []), _floats(fit.get("y") or [])
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    p = _Panel()
    p.line(
        x[ok],
        y[ok],
        fmt="o",
        color="C0",
        ms=6,
        label=f"measured ({fit.get('replicates', '?')} replicate(s))",
    )
    slope, intercept = _number(fit.get("slope")), _number(fit.get("intercept"))
    if ok.sum() >= 2 and math.isfinite(slope) and math.isfinite(intercept):
        xx = np.geomspace(x[ok].min(), x[ok].max(), 50)
        low, high = _number(fit.get("low")), _number(fit.get("high"))
        p.line(
            xx,
            np.exp(intercept) * xx**slope,
            color="C0",
            label=f"fit: slope {slope:.3f} [{low:.3f}, {high:.3f}]",
        )
        theory = _number(fit.get("theory"))
        if math.isfinite(theory):
            # The theory's line through the data's geometric centre.
            cx, cy = np.exp(np.mean(np.log(x[ok]))), np.exp(np.mean(np.log(y[ok])))
            p.line(
                xx, cy * (xx / cx) ** theory, color="k", ls=":", label=f"theory: slope {theory:g}"
            )
    p.draw(ax, x="log", y="log", empty="no data: no positive finite value to fit")
    against = str(fit.get("against", ""))
    ax.set_xlabel(against)
    ax.set_ylabel(str(fit.get("note", "")).split(";")[0])
    where = _where_label(fit.get("where") or {})
    ax.set_title(
        f"{fit.get('quantity', '')} vs {against.split('.')[-1]}" + (f" ({where})" if where else "")
    )
    return fig


_LIMIT_LABELS = {
    "limit_kernel_distance": "‖K0 − Θ‖_F/‖Θ‖_F",
    "limit_sigma_min_distance": "|σ_min − σ_min(Θ)|/σ_min(Θ)",
    "limit_sigma_max_distance": "|σ_max − σ_max(Θ)|/σ_max(Θ)",
    "limit_alpha_star_distance": "|α* − α*(Θ)|/α*(Θ)",
}


def plot_limit(fits: list[dict[str, Any]]) -> Any:
    """The width study: each distance to the infinite-width limit against the width, with
    its fitted slope, and the theory's `m^{-1/2}` through the kernel's distance."""
    fig, (ax,) = _figure()
    p = _Panel()
    anchor = None
    for i, fit in enumerate(fits):
        x, y = _floats(fit.get("x") or []), _floats(fit.get("y") or [])
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        if not ok.any():
            continue
        slope = _number(fit.get("slope"))
        name = _LIMIT_LABELS.get(str(fit.get("quantity")), str(fit.get("quantity")))
        label = f"{name}: slope {slope:.2f}" if math.isfinite(slope) else name
        p.line(x[ok], y[ok], fmt="o-", color=f"C{i}", ms=5, label=label)
        if fit.get("quantity") == "limit_kernel_distance" and ok.sum() >= 2:
            anchor = (x[ok], y[ok])
    if anchor is not None:
        x, y = anchor
        cx, cy = np.exp(np.mean(np.log(x))), np.exp(np.mean(np.log(y)))
        xx = np.geomspace(x.min(), x.max(), 50)
        p.line(xx, cy * (xx / cx) ** -0.5, color="k", ls=":", label="theory: m^-1/2")
    p.draw(ax, x="log", y="log", empty="no data: no distance to the limit was computed")
    against = str(fits[0].get("against", "")) if fits else ""
    ax.set_xlabel(against)
    ax.set_ylabel("relative distance to the infinite-width limit")
    where = _where_label(fits[0].get("where") or {}) if fits else ""
    ax.set_title("Width study: distance to the limit" + (f" ({where})" if where else ""))
    return fig


def plot_critical_alpha(rows: list[dict[str, Any]]) -> Any:
    """The empirical critical α against the theorem's α*, per setting; where there is no
    critical α on the grid, a cross at the bottom and the reason (`why`) below."""
    from matplotlib.transforms import blended_transform_factory

    whys = [
        (_where_label(r.get("where") or {}) or "all", str(r["why"]))
        for r in rows
        if r.get("why") and not math.isfinite(_number(r.get("alpha_empirical")))
    ]
    text = "\n".join(
        textwrap.fill(f"{where}: {why}", 110, subsequent_indent="    ") for where, why in whys
    )
    extra = 0.2 + 0.16 * (text.count("\n") + 1) if whys else 0.0
    fig, axes = _figure(
        2 if whys else 1, height=_HEIGHT + extra, ratios=[_HEIGHT, extra] if whys else None
    )
    ax = axes[0]
    labels = [_where_label(r.get("where") or {}) or "all" for r in rows]
    k = np.arange(len(rows), dtype=np.float64)
    emp = _floats(r.get("alpha_empirical") for r in rows)
    star = _floats(r.get("alpha_star") for r in rows)
    p = _Panel()
    p.line(k, star, fmt="s", color="C3", label="α* (theorem's sufficient scale)")
    p.line(k, emp, fmt="o", color="C0", label="empirical critical α (all checks held)")
    drawn = p.draw(ax, y="auto", empty="no data: no α* and no empirical critical α")
    missing = ~np.isfinite(emp)
    if drawn and missing.any():
        # No critical α on the grid: a cross on the axis, explained below the plot.
        ax.plot(
            k[missing],
            np.full(int(missing.sum()), 0.03),
            "x",
            color="C0",
            ms=9,
            mew=2,
            transform=blended_transform_factory(ax.transData, ax.transAxes),
            label="no critical α on the grid (why: below)" if whys else "no critical α on the grid",
        )
        ax.legend(fontsize=8)
    log = ax.get_yscale() == "log"
    for i in np.flatnonzero(np.isfinite(emp) & np.isfinite(star)):
        y = np.sqrt(emp[i] * star[i]) if log else (emp[i] + star[i]) / 2
        ax.annotate(f"×{star[i] / emp[i]:.3g}", (k[i], y), ha="center", fontsize=8)
    ax.set_xticks(k, labels, rotation=30, ha="right", fontsize=8)
    if len(rows):
        ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylabel("α")
    ax.set_title("How loose is the theorem? α*/α_empirical")
    if whys:
        axes[1].axis("off")
        axes[1].text(0.0, 1.0, text, va="top", ha="left", fontsize=7.5, transform=axes[1].transAxes)
    return fig


def _final(ds: Any, name: str, dim: str) -> np.ndarray | None:
    """A per-point final value as `(α, other points)`: a variable on the grid's keys,
    or the last finite value of a series over `t`."""
    if name not in ds.data_vars:
        return None
    arr = ds[name]
    others = [d for d in arr.dims if d not in (dim, "t")]
    order = [dim, *others] + (["t"] if "t" in arr.dims else [])
    values = np.asarray(arr.transpose(*order).values, dtype=np.float64)
    values = values.reshape(arr.sizes[dim], -1, *([arr.sizes["t"]] if "t" in arr.dims else []))
    if "t" in arr.dims:
        finite = np.isfinite(values)
        last = np.where(
            finite.any(axis=2), values.shape[2] - 1 - np.argmax(finite[..., ::-1], 2), 0
        )
        values = np.where(
            finite.any(axis=2), np.take_along_axis(values, last[..., None], 2)[..., 0], np.nan
        )
    return values


def _median(values: np.ndarray) -> np.ndarray:
    """The median of each row over its finite entries (NaN for a row with none)."""
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        row = row[np.isfinite(row)]
        if row.size:
            out[i] = float(np.median(row))
    return out


def plot_lazy_active(ds: Any, summary: dict[str, Any]) -> Any:
    """End-of-training test loss (and, for class targets, test accuracy) of the network and
    of its linearisation against α."""
    dim = "problem_alpha"
    alphas = np.asarray(ds[dim].values, dtype=np.float64)
    acc = {f: _final(ds, f"acc_{f}_test", dim) for f in ("w", "u")}
    accuracy = any(a is not None and bool(np.isfinite(a).any()) for a in acc.values())
    fig, axes = _figure(2 if accuracy else 1, height=6.4 if accuracy else _HEIGHT)
    flows = (("w", "network", "C0"), ("u", "linearisation (tangent model)", "C1"))
    panels = [(axes[0], {f: _final(ds, f"final_test_loss_{f}", dim) for f, _, _ in flows})]
    if accuracy:
        panels.append((axes[1], acc))
    for ax, values in panels:
        p = _Panel()
        for flow, label, color in flows:
            per_alpha = values[flow]
            if per_alpha is None:
                continue
            several = per_alpha.shape[1] > 1  # (one value of every other key: no median)
            if several:
                for j in range(per_alpha.shape[1]):
                    p.line(alphas, per_alpha[:, j], color=color, alpha=0.25, lw=1)
            p.line(
                alphas,
                _median(per_alpha),
                fmt="o-",
                color=color,
                lw=2,
                label=label + (" (median over the other keys)" if several else ""),
            )
        is_acc = ax is not axes[0]
        p.draw(ax, x="auto", y="linear" if is_acc else "auto", empty="no data: no finite value")
        if is_acc:
            ax.set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("test loss at t1: mean of ½‖αf(x) − y‖²")
    if accuracy:
        axes[1].set_ylabel("test accuracy at t1")
    axes[-1].set_xlabel(
        "α (problem.alpha)" + (", log scale" if axes[-1].get_xscale() == "log" else "")
    )
    axes[0].set_title("Lazy vs active: where laziness starts to cost generalisation")
    return fig


def save_sweep_figures(
    directory: str | Path, ds: Any, summary: dict[str, Any], *, dpi: int = 110
) -> dict[str, Path]:
    """Render a sweep's figures: one per scaling fit, the width study's distances to the
    limit, the critical α, and the test losses against α (lazy vs active) when the data
    have a test split."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    for i, fit in enumerate(summary.get("fits", [])):
        figures[f"scaling_{i:02d}_{fit['quantity']}"] = plot_scaling(fit)
    limits = [f for f in summary.get("fits", []) if str(f["quantity"]).startswith("limit_")]
    if limits:  # the first setting of the other keys
        first = limits[0].get("where")
        figures["limit_width"] = plot_limit([f for f in limits if f.get("where") == first])
    rows = summary.get("critical_alpha") or []
    if rows:
        figures["critical_alpha"] = plot_critical_alpha(rows)
    has_test = "final_test_loss_w" in ds and bool(
        np.isfinite(np.asarray(ds["final_test_loss_w"].values, dtype=float)).any()
    )
    if "problem_alpha" in ds.dims and has_test:
        figures["lazy_vs_active"] = plot_lazy_active(ds, summary)
    paths = {}
    for name, fig in figures.items():
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        paths[name] = path
    return paths
