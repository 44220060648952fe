"""Figures of a run, drawn from its saved results (the trajectories `Dataset` and the
summary), the theory beside the measurement. matplotlib is imported lazily and only its
object-oriented API is used, so no global backend is touched.

Every function takes `(dataset, summary)` as `load_results` returns them and gives a
`matplotlib.figure.Figure`; `FIGURES` lists them in report order with their captions.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_WIDTH, _HEIGHT = 7.0, 4.2
_TIME = "t (gradient-flow time)"


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, _HEIGHT), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def _var(ds: Any, name: str) -> np.ndarray | None:
    return np.asarray(ds[name].values) if name in ds.data_vars else None


def _cert(summary: dict[str, Any]) -> dict[str, float]:
    c = summary["certificate"]
    return {
        k: (float(v) if isinstance(v, int | float | str) else math.nan)
        for k, v in c.items()
        if k
        not in (
            "reasons",
            "notes",
            "beta_kind",
            "centering",
            "beta_estimates",
            "hypotheses_hold",
            "alpha_condition",
        )
    }


def _positive(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y) & (y > 0)
    return t[keep], y[keep]


def _fine(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A series at every solver step when recorded (`step_loss_w`, `step_dist_w`), merged
    with its save times; else at the save times."""
    t = np.asarray(ds["t"].values)
    y = _var(ds, name)
    steps = _var(ds, f"step_{name}")
    if y is None or steps is None or "step_t" not in ds.coords:
        return t, y
    tt = np.concatenate([t, np.asarray(ds["step_t"].values)])
    yy = np.concatenate([y, steps])
    order = np.argsort(tt, kind="stable")
    return tt[order], yy[order]


def plot_losses(ds: Any, summary: dict[str, Any]) -> Any:
    """Both losses against `t`, with the theorem's envelope `R0·exp(−tα²σ_min²/2)`."""
    fig, ax = _figure()
    c = _cert(summary)
    t = np.asarray(ds["t"].values)
    for name, label, style in (
        ("loss_w", "network (gradient flow)", dict(color="C0", lw=2)),
        ("loss_u", "linearisation (tangent flow)", dict(color="C1", lw=2, ls="--")),
    ):
        tt, y = _fine(ds, name)
        if y is not None:
            ax.plot(*_positive(tt, y), label=label, **style)
    gd = _var(ds, "loss_gd")
    if gd is not None:
        tg = _var(ds, "ts_gd")
        ax.plot(
            *_positive(tg if tg is not None else t, gd),
            "o",
            ms=3,
            color="C2",
            label="gradient descent",
        )
    rate = c["alpha"] ** 2 * c["sigma_min"] ** 2
    tt = np.linspace(0.0, t[-1], 400)
    ax.plot(
        tt,
        c["R0"] * np.exp(-rate * tt / 2),
        color="k",
        ls=":",
        lw=1.5,
        label="theorem: R0·exp(−tα²σ²_min/2)",
    )
    ax.plot(
        tt,
        c["R0"] * np.exp(-2 * rate * tt),
        color="0.5",
        ls="-.",
        lw=1,
        label="tangent bound: R0·exp(−2tα²σ²_min)",
    )
    ax.set_yscale("log")
    lows = [
        np.nanmin(y[y > 0])
        for y in (_var(ds, "loss_w"), _var(ds, "loss_u"))
        if y is not None and np.any(y > 0)
    ]
    if lows:
        ax.set_ylim(bottom=max(min(lows) / 10, 1e-300))
    ax.set_xlabel(_TIME)
    ax.set_ylabel("loss  R = ½‖αf − y‖²")
    ax.set_title("Training loss and the theorem's envelope")
    ax.legend(fontsize=8)
    return fig


def _hline(ax: Any, y: float, label: str, **style: Any) -> None:
    if math.isfinite(y) and y > 0:
        ax.axhline(y, label=label, **style)


def plot_distances(ds: Any, summary: dict[str, Any]) -> Any:
    """`‖w(t) − w0‖` and `‖u(t) − w0‖` with the bound `B'` and the ball radius `B`."""
    fig, ax = _figure()
    c = _cert(summary)
    t = np.asarray(ds["t"].values)
    for name, label, style in (
        ("dist_w", "‖w(t) − w0‖ (network)", dict(color="C0", lw=2)),
        ("dist_u", "‖u(t) − w0‖ (linearisation)", dict(color="C1", lw=2, ls="--")),
        ("dist_gd", "‖w_k − w0‖ (gradient descent)", dict(color="C2", ls="", marker="o", ms=3)),
    ):
        tt, y = _fine(ds, name) if name != "dist_gd" else (t, _var(ds, name))
        if y is not None:
            ax.plot(*_positive(tt, y), label=label, **style)
    _hline(ax, c["B_prime"], "B' (theorem's distance bound)", color="C3", ls="--")
    _hline(ax, c["B"], "B (radius of the proof's ball)", color="C4", ls="-.")
    _hline(ax, c["tangent_distance_bound"], "tangent flow's bound", color="0.5", ls=":")
    exit_time = summary.get("verification", {}).get("exit_time")
    if isinstance(exit_time, int | float):
        ax.axvline(exit_time, color="C4", lw=1, alpha=0.6, label=f"exit time T = {exit_time:.3g}")
    ax.set_yscale("log")
    ax.set_xscale("log")  # the path moves on every time scale from 1/(α²λ_max) to t1
    ax.set_xlabel(_TIME + ", log scale")
    ax.set_ylabel("distance from w0 (parameter-space norm)")
    ax.set_title("How far the parameters move")
    ax.legend(fontsize=8)
    return fig


def plot_singular_values(ds: Any, summary: dict[str, Any]) -> Any:
    """`σ_min(J_t)`, `σ_max(J_t)` with the ball lemma's `σ_min/2` and `3σ_max/2`."""
    fig, ax = _figure()
    c = _cert(summary)
    t = np.asarray(ds["t"].values)
    smin, smax = _var(ds, "sigma_min_t"), _var(ds, "sigma_max_t")
    if smin is not None and smax is not None:
        ax.plot(*_positive(t, smin), color="C0", lw=2, label="σ_min(J_w(t))")
        ax.plot(*_positive(t, smax), color="C1", lw=2, label="σ_max(J_w(t))")
    _hline(ax, c["sigma_min"] / 2, "lemma: σ_min/2", color="C0", ls=":")
    _hline(ax, 1.5 * c["sigma_max"], "lemma: 3σ_max/2", color="C1", ls=":")
    dist = _var(ds, "dist_w")
    if dist is not None and math.isfinite(c["B"]):
        outside = dist > c["B"]
        if outside.any():
            ax.fill_between(
                t,
                0,
                1,
                where=outside,
                transform=ax.get_xaxis_transform(),
                color="0.85",
                label="outside the ball (lemma silent)",
            )
    ax.set_yscale("log")
    ax.set_xlabel(_TIME)
    ax.set_ylabel("singular value of the Jacobian")
    ax.set_title("Extreme singular values of J along the network's path")
    ax.legend(fontsize=8)
    return fig


def plot_gaps(ds: Any, summary: dict[str, Any]) -> Any:
    """The distances between the flows: `‖αf(w) − αf_0(u)‖` and `‖w − u‖`."""
    fig, ax = _figure()
    for name, label, color in (
        ("gap_f", "‖αf(w(t)) − αf_0(u(t))‖ (function space)", "C0"),
        ("gap_w", "‖w(t) − u(t)‖ (parameter space)", "C1"),
        ("gap_gd", "‖w_k − w(kη)‖ (descent vs flow)", "C2"),
    ):
        tt, y = _fine(ds, name)
        if y is not None:
            ax.plot(*_positive(tt, y), color=color, lw=2, label=label)
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel(_TIME + ", log scale")
    ax.set_ylabel("gap")
    ax.set_title("Network against its linearisation")
    ax.legend(fontsize=8)
    return fig


def plot_kernel_drift(ds: Any, summary: dict[str, Any]) -> Any:
    """The relative kernel drift `‖K_{w(t)} − K0‖_op / ‖K0‖_op`."""
    fig, ax = _figure()
    t = np.asarray(ds["t"].values)
    y = _var(ds, "kernel_drift")
    if y is not None:
        ax.plot(t, y, color="C0", lw=2, label="‖K_w(t) − K0‖_op / ‖K0‖_op")
    ax.set_xlabel(_TIME)
    ax.set_ylabel("relative kernel drift")
    ax.set_title("How much the neural tangent kernel moves")
    ax.legend(fontsize=8)
    return fig


def plot_spectrum(ds: Any, summary: dict[str, Any]) -> Any:
    """The eigenvalues of the empirical NTK at initialisation, largest first."""
    fig, ax = _figure()
    c = _cert(summary)
    lam = _var(ds, "ntk_eigenvalues")
    if lam is not None:
        lam = np.sort(lam)[::-1]
        k = np.arange(1, len(lam) + 1)
        ax.plot(k[lam > 0], lam[lam > 0], ".-", color="C0", label="eigenvalues of K0")
    _hline(ax, c["sigma_max"] ** 2, "σ_max² = λ_max", color="C1", ls=":")
    _hline(ax, c["sigma_min"] ** 2, "σ_min² = λ_min", color="C3", ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("index (largest first)")
    ax.set_ylabel("eigenvalue of K0 = J0 J0ᵀ")
    ax.set_title(f"NTK spectrum at initialisation (condition number {c['condition']:.3g})")
    ax.legend(fontsize=8)
    return fig


def plot_test_loss(ds: Any, summary: dict[str, Any]) -> Any:
    """Held-out loss of both flows."""
    fig, ax = _figure()
    t = np.asarray(ds["t"].values)
    for name, label, style in (
        ("loss_w_test", "network", dict(color="C0", lw=2)),
        ("loss_u_test", "linearisation", dict(color="C1", lw=2, ls="--")),
    ):
        y = _var(ds, name)
        if y is not None:
            ax.plot(t, y, label=label, **style)
    ax.set_xlabel(_TIME)
    ax.set_ylabel("test loss  ½‖αf(X_test) − y_test‖²")
    ax.set_title("Held-out loss")
    ax.legend(fontsize=8)
    return fig


# (name, function, needs, caption): `needs` is a variable the figure requires.
FIGURES: list[tuple[str, Callable[[Any, dict[str, Any]], Any], str, str]] = [
    (
        "losses",
        plot_losses,
        "t",
        "Training loss of the network's gradient flow and of the tangent flow (its "
        "linearisation) on a log scale, with the theorem's envelope R0·exp(−tα²σ_min²/2) "
        "(dotted) and the tangent flow's sharper R0·exp(−2tα²σ_min²). When the hypotheses "
        "hold, both losses must stay under the dotted line; a straight line here is linear "
        "(exponential) convergence. The network's curve, drawn at every solver step, "
        "flattens where it reaches the integrator's error floor (about (rtol·‖y‖)²).",
    ),
    (
        "distances",
        plot_distances,
        "dist_w",
        "Distance travelled from the initialisation by the network (‖w(t) − w0‖) and by its "
        "linearisation (‖u(t) − w0‖), with the theorem's bound B' and the radius B of the "
        "ball inside which the proof controls the Jacobian. The network stays in the NTK "
        "regime while its curve stays under B; the exit time T marks when it leaves. Time "
        "is on a log scale: the path moves on every time scale from 1/(α²λ_max) to t1.",
    ),
    (
        "singular_values",
        plot_singular_values,
        "sigma_min_t",
        "Smallest and largest singular values of the Jacobian along the network's path. The "
        "ball lemma promises σ_min(J) ≥ σ_min/2 and σ_max(J) ≤ 3σ_max/2 while the path is in "
        "the ball of radius B; shaded times are outside it, where the lemma says nothing.",
    ),
    (
        "gaps",
        plot_gaps,
        "gap_f",
        "How far the network is from its linearisation: in function space "
        "‖αf(w(t)) − αf_0(u(t))‖ (O(1/α) with centring) and in parameter space ‖w(t) − u(t)‖ "
        '(O(log α/α²)). Small gaps are what "lazy" means.',
    ),
    (
        "kernel_drift",
        plot_kernel_drift,
        "kernel_drift",
        "Relative change of the empirical NTK along the path, ‖K_w(t) − K0‖_op/‖K0‖_op. In "
        "the lazy regime it stays small (it shrinks like 1/√width); a kernel that moves a lot "
        "means feature learning.",
    ),
    (
        "spectrum",
        plot_spectrum,
        "ntk_eigenvalues",
        "Eigenvalues of the empirical NTK K0 = J0 J0ᵀ at initialisation. The smallest sets "
        "the convergence rate (α²σ_min²) and, through α*, how large α must be; their ratio is "
        "the condition number, which makes the flow stiff for explicit solvers.",
    ),
    (
        "test_loss",
        plot_test_loss,
        "loss_w_test",
        "Loss on the held-out split for the network and its linearisation: whether the "
        "linearised model generalises as well as the network.",
    ),
]


def make_figures(ds: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """Every figure the data allow, in report order: `{name: Figure}`."""
    out = {}
    for name, fn, needs, _ in FIGURES:
        if needs == "t" and "loss_w" not in ds and "loss_u" not in ds:
            continue
        if needs != "t" and needs not in ds:
            continue
        out[name] = fn(ds, summary)
    return out


def captions() -> dict[str, str]:
    return {name: caption for name, _, _, caption in FIGURES}


def save_figures(
    directory: str | Path, ds: Any, summary: dict[str, Any], *, dpi: int = 110
) -> dict[str, Path]:
    """Render every figure to `directory/NAME.png`; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in make_figures(ds, summary).items():
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        paths[name] = path
    return paths


# -- sweeps ----------------------------------------------------------------------------


def _where_label(where: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in where.items())


def plot_scaling(fit: dict[str, Any]) -> Any:
    """One fitted power law on log-log axes, with the theory's slope beside it."""
    fig, ax = _figure()
    x = np.asarray(fit["x"], dtype=np.float64)
    y = np.asarray([np.nan if isinstance(v, str) else v for v in fit["y"]], dtype=np.float64)
    ok = np.isfinite(y) & (y > 0)
    ax.plot(
        x[ok], y[ok], "o", color="C0", ms=6, label=f"measured ({fit['replicates']} replicate(s))"
    )
    if ok.sum() >= 2 and isinstance(fit["slope"], float):
        xx = np.geomspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(
            xx,
            np.exp(fit["intercept"]) * xx ** fit["slope"],
            color="C0",
            label=f"fit: slope {fit['slope']:.3f} [{fit['low']:.3f}, {fit['high']:.3f}]",
        )
        # The theory's line through the data's geometric centre.
        cx, cy = np.exp(np.mean(np.log(x[ok]))), np.exp(np.mean(np.log(y[ok])))
        ax.plot(
            xx,
            cy * (xx / cx) ** fit["theory"],
            color="k",
            ls=":",
            label=f"theory: slope {fit['theory']:g}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(fit["against"])
    ax.set_ylabel(fit["note"].split(";")[0])
    where = _where_label(fit.get("where") or {})
    ax.set_title(
        f"{fit['quantity']} vs {fit['against'].split('.')[-1]}" + (f" ({where})" if where else "")
    )
    ax.legend(fontsize=8)
    return fig


def plot_critical_alpha(rows: list[dict[str, Any]]) -> Any:
    """The empirical critical α against the theorem's α*, per setting."""
    fig, ax = _figure()
    labels = [_where_label(r["where"]) or "all" for r in rows]
    k = np.arange(len(rows))
    emp = np.asarray(
        [np.nan if isinstance(r["alpha_empirical"], str) else r["alpha_empirical"] for r in rows],
        dtype=np.float64,
    )
    star = np.asarray(
        [np.nan if isinstance(r["alpha_star"], str) else r["alpha_star"] for r in rows],
        dtype=np.float64,
    )
    ax.plot(k, star, "s", color="C3", label="α* (theorem's sufficient scale)")
    ax.plot(k, emp, "o", color="C0", label="empirical critical α (all checks held)")
    for i in range(len(rows)):
        if np.isfinite(emp[i]) and np.isfinite(star[i]):
            ax.annotate(
                f"×{star[i] / emp[i]:.3g}",
                (k[i], np.sqrt(emp[i] * star[i])),
                ha="center",
                fontsize=8,
            )
    ax.set_yscale("log")
    ax.set_xticks(k, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("α")
    ax.set_title("How loose is the theorem? α*/α_empirical")
    ax.legend(fontsize=8)
    return fig


def plot_lazy_active(ds: Any, summary: dict[str, Any]) -> Any:
    """End-of-training test loss of the network and of its linearisation against α."""
    fig, ax = _figure()
    dim = "problem_alpha"
    alphas = np.asarray(ds[dim].values, dtype=np.float64)
    for name, label, color in (
        ("final_test_loss_w", "network", "C0"),
        ("final_test_loss_u", "linearisation (tangent model)", "C1"),
    ):
        arr = ds[name]
        others = [d for d in arr.dims if d != dim]
        per_alpha = arr.transpose(dim, *others).values.reshape(len(alphas), -1)
        for j in range(per_alpha.shape[1]):
            ax.plot(alphas, per_alpha[:, j], color=color, alpha=0.25, lw=1)
        ax.plot(
            alphas,
            np.nanmedian(per_alpha, axis=1),
            "o-",
            color=color,
            lw=2,
            label=f"{label} (median over the other keys)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("α (problem.alpha)")
    ax.set_ylabel("test loss at t1  ½‖αf(X_test) − y_test‖²")
    ax.set_title("Lazy vs active: where laziness starts to cost generalisation")
    ax.legend(fontsize=8)
    return fig


def save_sweep_figures(
    directory: str | Path, ds: Any, summary: dict[str, Any], *, dpi: int = 110
) -> dict[str, Path]:
    """Render a sweep's figures: one per scaling fit, the critical α, and the test losses
    against α (lazy vs active) when the data have a test split."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    for i, fit in enumerate(summary.get("fits", [])):
        figures[f"scaling_{i:02d}_{fit['quantity']}"] = plot_scaling(fit)
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
