"""The figures of one run, drawn from its saved results (the trajectories `Dataset` and
the summary): losses, distances, singular values, gaps, kernel drift, spectrum and test
loss. `FIGURES` lists them in report order with their captions; `make_figures` draws
those the data allow and `save_figures` renders them to PNG files.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    _HEIGHT,
    _cert,
    _empty,
    _exit_time,
    _figure,
    _fine,
    _Panel,
    _times,
    _var,
    stopped_at,
)

_TIME = "t (gradient-flow time)"
# The network's gradient flow and its linearisation look the same in every figure.
_NETWORK: dict[str, Any] = dict(color="C0", lw=2)
_LINEAR: dict[str, Any] = dict(color="C1", lw=2, ls="--")
_LIMIT: dict[str, Any] = dict(color="C4", lw=1.5, ls=(0, (1, 1)))


def _time_label(ax: Any) -> str:
    return _TIME + (", log scale" if ax.get_xscale() == "log" else "")


def _stop_line(panel: _Panel, ds: Any, summary: dict[str, Any]) -> None:
    stop = stopped_at(summary, ds)
    if stop is not None and math.isfinite(stop[0]):
        panel.vline(
            stop[0],
            color="C3",
            lw=1.5,
            ls=(0, (4, 2)),
            label=f"the solve stopped: t = {stop[0]:.3g} < t1 = {stop[1]:.3g}",
        )


def plot_losses(ds: Any, summary: dict[str, Any]) -> Any:
    """Both losses against `t`, with the theorem's envelope `R0·exp(−tα²σ_min²/2)`."""
    fig, (ax,) = _figure()
    c = _cert(summary)
    t = _times(ds)
    p = _Panel()
    for name, label, style in (
        ("loss_w", "network (gradient flow)", _NETWORK),
        ("loss_u", "linearisation (tangent flow)", _LINEAR),
    ):
        tt, y = _fine(ds, name)
        p.line(tt, y, label=label, **style)
    if "loss_inf" in ds:
        p.line(t, _var(ds, "loss_inf"), label="infinite width (tangent flow of Θ)", **_LIMIT)
    tg = _var(ds, "ts_gd")
    p.line(
        tg if tg is not None else t,
        _var(ds, "loss_gd"),
        fmt="o",
        ms=3,
        color="C2",
        label="gradient descent",
    )
    rate = c["alpha"] ** 2 * c["sigma_min"] ** 2
    finite_t = t[np.isfinite(t)]
    loss = (summary.get("certificate") or {}).get("loss", "squared")
    # The envelopes are the squared loss's: another loss's decay is of R − inf R.
    if loss == "squared" and finite_t.size and math.isfinite(rate) and math.isfinite(c["R0"]):
        tt = np.linspace(0.0, float(finite_t.max()), 400)
        p.line(
            tt,
            c["R0"] * np.exp(-rate * tt / 2),
            guide=True,
            color="k",
            ls=":",
            lw=1.5,
            label="theorem: R0·exp(−tα²σ²_min/2)",
        )
        p.line(
            tt,
            c["R0"] * np.exp(-2 * rate * tt),
            guide=True,
            color="0.5",
            ls="-.",
            lw=1,
            label="tangent bound: R0·exp(−2tα²σ²_min)",
        )
    _stop_line(p, ds, summary)
    p.draw(ax, y="auto", empty=_empty(summary, "no finite training loss"))
    ax.set_xlabel(_TIME)
    if loss == "squared":
        ax.set_ylabel("loss  R = ½‖αf − y‖²")
        ax.set_title("Training loss and the theorem's envelope")
    else:
        ax.set_ylabel(f"loss  R(αf) ({loss})")
        ax.set_title("Training loss")
    return fig


def plot_distances(ds: Any, summary: dict[str, Any]) -> Any:
    """`‖w(t) − w0‖` and `‖u(t) − w0‖` with the bound `B'` and the ball radius `B`."""
    fig, (ax,) = _figure()
    c = _cert(summary)
    p = _Panel()
    for name, label, style in (
        ("dist_w", "‖w(t) − w0‖ (network)", _NETWORK),
        ("dist_u", "‖u(t) − w0‖ (linearisation)", _LINEAR),
    ):
        p.line(*_fine(ds, name), label=label, **style)
    tg = _var(ds, "ts_gd")
    p.line(
        tg if tg is not None else _times(ds),
        _var(ds, "dist_gd"),
        fmt="o",
        ms=3,
        color="C2",
        label=str(ds["dist_gd"].attrs.get("long_name", "gradient descent"))
        if "dist_gd" in ds
        else "",
    )
    p.hline(c["B_prime"], color="C3", ls="--", label="B' (theorem's distance bound)")
    p.hline(c["B"], color="C4", ls="-.", label="B (radius of the proof's ball)")
    p.hline(c["tangent_distance_bound"], color="0.5", ls=":", label="tangent flow's bound")
    exit_time = _exit_time(summary)
    if exit_time is not None:
        p.vline(exit_time, color="C4", lw=1, alpha=0.6, label=f"exit time T = {exit_time:.3g}")
    _stop_line(p, ds, summary)
    # The path moves on every time scale from 1/(α²λ_max) to t1: log time when it spans them.
    p.draw(ax, x="auto", empty=_empty(summary, "no finite distance from w0"))
    ax.set_xlabel(_time_label(ax))
    ax.set_ylabel("distance from w0 (parameter-space norm)")
    ax.set_title("How far the parameters move")
    return fig


def _outside(ds: Any, summary: dict[str, Any], radius: float) -> list[tuple[float, float]]:
    """The time intervals the path spent outside the ball `‖w − w0‖ ≤ B`: from each first
    sample outside (the first one is the exit time `T`) to the next sample inside, or the
    last sample."""
    tt, d = _fine(ds, "dist_w")
    exit_time = _exit_time(summary)
    out: list[tuple[float, float]] = []
    if d is not None and math.isfinite(radius):
        ok = np.isfinite(tt) & np.isfinite(d)
        tt, outside = tt[ok], d[ok] > radius
        i = 0
        while i < tt.size:
            if outside[i]:
                j = i
                while j + 1 < tt.size and outside[j + 1]:
                    j += 1
                end = tt[j + 1] if j + 1 < tt.size else tt[j]
                out.append((float(tt[i]), float(end)))
                i = j + 1
            i += 1
    if exit_time is not None:
        if out:
            out[0] = (min(out[0][0], exit_time), out[0][1])
        else:
            t = _times(ds)
            t = t[np.isfinite(t)]
            out.append((exit_time, float(t.max()) if t.size else exit_time))
    return out


def plot_singular_values(ds: Any, summary: dict[str, Any]) -> Any:
    """`σ_min(J_t)`, `σ_max(J_t)` with the ball lemma's `σ_min/2` and `3σ_max/2`, the times
    outside the ball (from the exit time `T`) shaded."""
    fig, (ax,) = _figure()
    c = _cert(summary)
    t = _times(ds)
    p = _Panel()
    p.line(t, _var(ds, "sigma_min_t"), color="C0", lw=2, marker=".", label="σ_min(J_w(t))")
    p.line(t, _var(ds, "sigma_max_t"), color="C1", lw=2, marker=".", label="σ_max(J_w(t))")
    p.hline(c["sigma_min"] / 2, color="C0", ls=":", label="lemma: σ_min/2")
    p.hline(1.5 * c["sigma_max"], color="C1", ls=":", label="lemma: 3σ_max/2")
    for i, (x0, x1) in enumerate(_outside(ds, summary, c["B"])):
        label = "outside the ball (lemma silent)" if i == 0 else None
        p.span(x0, x1, color="0.85", label=label)
    exit_time = _exit_time(summary)
    if exit_time is not None:
        p.vline(exit_time, color="C4", lw=1, alpha=0.6, label=f"exit time T = {exit_time:.3g}")
    p.draw(ax, x="auto", empty=_empty(summary, "no finite σ(J_t)", "diagnostics off?"))
    ax.set_xlabel(_time_label(ax))
    ax.set_ylabel("singular value of the Jacobian")
    ax.set_title("Extreme singular values of J along the network's path")
    return fig


def plot_gaps(ds: Any, summary: dict[str, Any]) -> Any:
    """The distances between the flows, `‖αf(w) − αf_0(u)‖` and `‖w − u‖`, at every solver
    step where recorded (older results: `‖w − u‖` at the save times only)."""
    fig, (ax,) = _figure()
    p = _Panel()
    steps = "step_t" in ds.coords
    for name, label, color in (
        ("gap_f", "‖αf(w(t)) − αf_0(u(t))‖ (function space)", "C0"),
        ("gap_w", "‖w(t) − u(t)‖ (parameter space)", "C1"),
        ("gap_gd", "‖w_k − w(kη)‖ (descent vs flow)", "C2"),
    ):
        if name != "gap_gd" and steps and f"step_{name}" not in ds.data_vars:
            label += ", at the saves only"
        p.line(*_fine(ds, name), color=color, lw=2, label=label)
    p.draw(ax, x="auto", empty=_empty(summary, "no finite gap between the flows"))
    ax.set_xlabel(_time_label(ax))
    ax.set_ylabel("gap")
    ax.set_title("Network against its linearisation")
    return fig


def plot_kernel_drift(ds: Any, summary: dict[str, Any]) -> Any:
    """The relative kernel drift `‖K_{w(t)} − K0‖_op / ‖K0‖_op`."""
    fig, (ax,) = _figure()
    p = _Panel()
    p.line(
        _times(ds),
        _var(ds, "kernel_drift"),
        color="C0",
        lw=2,
        marker=".",
        label="‖K_w(t) − K0‖_op / ‖K0‖_op",
    )
    p.draw(ax, x="auto", empty=_empty(summary, "no finite kernel drift", "diagnostics off?"))
    ax.set_xlabel(_time_label(ax))
    ax.set_ylabel("relative kernel drift")
    ax.set_title("How much the neural tangent kernel moves")
    return fig


def plot_spectrum(ds: Any, summary: dict[str, Any]) -> Any:
    """The eigenvalues of the empirical NTK at initialisation, largest first."""
    fig, (ax,) = _figure()
    c = _cert(summary)
    p = _Panel()
    lam = _var(ds, "ntk_eigenvalues")
    if lam is not None:
        lam = np.sort(lam)[::-1]
        p.line(np.arange(1, lam.size + 1), lam, fmt=".-", color="C0", label="eigenvalues of K0")
    p.hline(c["sigma_max"] ** 2, color="C1", ls=":", label="σ_max² = λ_max")
    p.hline(c["sigma_min"] ** 2, color="C3", ls=":", label="σ_min² = λ_min")
    p.draw(ax, empty="no data: no eigenvalues of K0 were saved")
    ax.set_xlabel("index (largest first)")
    ax.set_ylabel("eigenvalue of K0 = J0 J0ᵀ")
    ax.set_title(f"NTK spectrum at initialisation (condition number {c['condition']:.3g})")
    return fig


def _last(y: np.ndarray | None) -> float:
    if y is None:
        return math.nan
    finite = y[np.isfinite(y)]
    return float(finite[-1]) if finite.size else math.nan


def _test_loss_label(ds: Any) -> str:
    """Results written before the test loss became a mean hold the sum over test points."""
    long_name = str(ds["loss_w_test"].attrs.get("long_name", "")) if "loss_w_test" in ds else ""
    if "½‖αf(w; X_test) − y_test‖²" in long_name:
        return "test loss  ½‖αf(X_test) − y_test‖² (sum)"
    loss = str(ds.attrs.get("loss", "squared"))
    if loss != "squared":
        return f"test loss: mean of R(αf(x)) ({loss})"
    return "test loss: mean of ½‖αf(x) − y‖²"


def plot_test_loss(ds: Any, summary: dict[str, Any]) -> Any:
    """Held-out loss of both flows and, for class targets, their test accuracy."""
    accuracy = any(
        (a := _var(ds, name)) is not None and bool(np.isfinite(a).any())
        for name in ("acc_w_test", "acc_u_test")
    )
    fig, axes = _figure(2 if accuracy else 1, height=6.4 if accuracy else _HEIGHT)
    t = _times(ds)
    flows = (("w", "network", _NETWORK), ("u", "linearisation", _LINEAR))
    p = _Panel()
    for flow, label, style in flows:
        y = _var(ds, f"loss_{flow}_test")
        p.line(t, y, label=f"{label} (last: {_last(y):.3g})", **style)
    if "loss_inf_test" in ds:
        y = _var(ds, "loss_inf_test")
        p.line(t, y, label=f"infinite width (last: {_last(y):.3g})", **_LIMIT)
    p.draw(axes[0], x="auto", empty=_empty(summary, "no finite test loss"))
    axes[0].set_ylabel(_test_loss_label(ds))
    axes[0].set_title("Held-out loss" + (" and accuracy" if accuracy else ""))
    if accuracy:
        q = _Panel()
        for flow, label, style in flows:
            y = _untied(ds, flow, _var(ds, f"acc_{flow}_test"))
            q.line(t, y, label=f"{label} (last: {_last(y):.1%})", **style)
        xscale = "log" if axes[0].get_xscale() == "log" else "linear"
        q.draw(axes[1], x=xscale, y="linear", empty="no data")
        axes[1].set_ylim(-0.03, 1.03)
        axes[1].set_ylabel("test accuracy (fraction right;\nfrom the first non-zero outputs)")
    for ax in axes:
        ax.set_xlabel(_time_label(ax))
    return fig


def _untied(ds: Any, flow: str, acc: np.ndarray | None) -> np.ndarray | None:
    """The test accuracy where the outputs say something: at times when every test output
    is exactly 0 (`f(w0) = 0` under centring) every prediction is a tie, and an accuracy
    of 0 there would be an artefact, not a result; those times are left out."""
    name = f"pred_{flow}_test"
    if acc is None or name not in ds:
        return acc
    pred = np.asarray(ds[name].values, dtype=np.float64)
    silent = np.all(pred.reshape(pred.shape[0], -1) == 0.0, axis=1)
    return np.where(silent, np.nan, acc)


# (name, function, needs, caption): `needs` is a variable the figure requires.
FIGURES: list[tuple[str, Callable[[Any, dict[str, Any]], Any], str, str]] = [
    (
        "losses",
        plot_losses,
        "t",
        "Training loss of the network's gradient flow and of the tangent flow (its "
        "linearisation), with the theorem's envelope R0·exp(−tα²σ_min²/2) "
        "(dotted) and the tangent flow's sharper R0·exp(−2tα²σ_min²). When the hypotheses "
        "hold, both losses must stay under the dotted line (for a loss other than the "
        "square no envelope is drawn: its decay is of R − inf R); on the log scale a straight "
        "line is linear (exponential) convergence. The network's curve, drawn at every "
        "solver step, flattens where it reaches the integrator's error floor (about "
        "(rtol·‖y‖)² for the squared loss). A dashed red line marks where a solve stopped "
        "before t1. With [output] limit (an MLP, Shallow or CNN, the square loss), a dotted "
        "purple line is the infinite-width network: the tangent flow of the limit kernel Θ.",
    ),
    (
        "distances",
        plot_distances,
        "dist_w",
        "Distance travelled from the initialisation by the network (‖w(t) − w0‖) and by its "
        "linearisation (‖u(t) − w0‖), with the theorem's bound B' and the radius B of the "
        "ball inside which the proof controls the Jacobian. The network stays in the NTK "
        "regime while its curve stays under B; the exit time T marks when it leaves. Time "
        "is on a log scale when the path spans the time scales from 1/(α²λ_max) to t1.",
    ),
    (
        "singular_values",
        plot_singular_values,
        "sigma_min_t",
        "Smallest and largest singular values of the Jacobian along the network's path, at "
        "the save times. The ball lemma promises σ_min(J) ≥ σ_min/2 and σ_max(J) ≤ 3σ_max/2 "
        "while the path is in the ball of radius B; shaded times are outside it, from the "
        "exit time T on, where the lemma says nothing.",
    ),
    (
        "gaps",
        plot_gaps,
        "gap_f",
        "How far the network is from its linearisation, at every solver step: in function "
        "space ‖αf(w(t)) − αf_0(u(t))‖ (O(1/α) with centring) and in parameter space "
        '‖w(t) − u(t)‖ (O(log α/α²)). Small gaps are what "lazy" means. Results written '
        "before the per-step ‖w − u‖ was recorded have it at the save times only.",
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
        "the convergence rate (α²σ_min², times μ for a strongly convex loss) and, through α*, "
        "how large α must be; their ratio is "
        "the condition number, which makes the flow stiff for explicit solvers.",
    ),
    (
        "test_loss",
        plot_test_loss,
        "loss_w_test",
        "Loss on the held-out split, the mean over test points of the loss of one point "
        "(½‖αf(x) − y‖² for the squared loss), for the "
        "network and its linearisation, and, when the targets are classes (±1, or one-hot), "
        "the fraction of test points each classifies right (the output's sign, or its "
        "argmax; an output of exactly 0 or a tie counts as wrong): whether the linearised "
        "model generalises as well as the network. With [output] limit, the dotted purple "
        "line is the infinite-width network's test loss (the tangent flow of Θ).",
    ),
]


def make_figures(ds: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """Every figure the data allow, in report order: `{name: Figure}`. A figure whose
    quantity was not computed at all (no test split, no flows) is left out; one whose
    values are all NaN is drawn and says "no data"."""
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
