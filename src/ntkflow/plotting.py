"""Figures of a run, drawn from its saved results (the trajectories `Dataset` and the
summary), the theory beside the measurement. matplotlib is imported lazily and only its
object-oriented API is used, so no global backend is touched.

Every function takes `(dataset, summary)` as `load_results` returns them and gives a
`matplotlib.figure.Figure`; `FIGURES` lists them in report order with their captions.

Every figure draws for any results — all-NaN series, one save, a truncated solve, no
tangent flow, no diagnostics, no test split: what has no finite value is left out (and out
of the legend), and axes with nothing to show say "no data" and why. An axis is
logarithmic only when what it shows spans at least `_DECADES` decades (power laws, whose
slope is the point, always are), so that a narrow range never sits on a log axis with
unreadable tick labels.
"""

import dataclasses
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

_WIDTH, _HEIGHT = 7.0, 4.2
_TIME = "t (gradient-flow time)"
# An axis is logarithmic ("auto") when its positive values span this many decades: then
# at least two powers of ten are labelled.
_DECADES = 2.0
_NO_DATA = dict(ha="center", va="center", color="0.35", fontsize=10)

Scale = Literal["linear", "auto", "log"]
# The network's gradient flow and its linearisation look the same in every figure.
_NETWORK: dict[str, Any] = dict(color="C0", lw=2)
_LINEAR: dict[str, Any] = dict(color="C1", lw=2, ls="--")


def _figure(
    rows: int = 1, *, height: float = _HEIGHT, ratios: list[float] | None = None
) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, height), layout="constrained")
    if rows > 1:
        axes = fig.subplots(rows, 1, squeeze=False, height_ratios=ratios)[:, 0]
    else:
        axes = [fig.add_subplot()]
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    return fig, list(axes)


def _var(ds: Any, name: str) -> np.ndarray | None:
    if name not in ds.data_vars:
        return None
    return np.asarray(ds[name].values, dtype=np.float64)


def _times(ds: Any) -> np.ndarray:
    return np.asarray(ds["t"].values, dtype=np.float64) if "t" in ds.coords else np.zeros(0)


def _number(x: Any) -> float:
    """A summary value as a float: JSON's `"inf"`/`"nan"` strings and `None` included."""
    if isinstance(x, bool) or x is None:
        return math.nan
    if isinstance(x, int | float | str):
        try:
            return float(x)
        except ValueError:
            return math.nan
    return math.nan


def _cert(summary: dict[str, Any]) -> dict[str, float]:
    """The certificate's numbers; a missing one reads as NaN."""
    c = summary.get("certificate") or {}
    keys = ("alpha", "sigma_min", "sigma_max", "R0", "B", "B_prime", "condition")
    out = {k: _number(c.get(k)) for k in keys}
    out["tangent_distance_bound"] = _number(c.get("tangent_distance_bound"))
    return out


def _fine(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A series at every solver step when recorded (`step_loss_w`, `step_dist_w`,
    `step_gap_f`, `step_gap_w`, …), merged with its save times; else at the save times."""
    t = _times(ds)
    y = _var(ds, name)
    steps = _var(ds, f"step_{name}")
    if y is None or steps is None or "step_t" not in ds.coords:
        return t, y
    tt = np.concatenate([t, np.asarray(ds["step_t"].values, dtype=np.float64)])
    yy = np.concatenate([y, steps])
    order = np.argsort(tt, kind="stable")
    return tt[order], yy[order]


def _exit_time(summary: dict[str, Any]) -> float | None:
    t = _number((summary.get("verification") or {}).get("exit_time"))
    return t if math.isfinite(t) else None


def stopped_at(summary: dict[str, Any], ds: Any = None) -> tuple[float, float] | None:
    """`(t_reached, t1)` when the solve stopped before `t1` (`verification.complete` is
    false, or the solver's status is not success in results without it), else `None`.
    `t_reached` is the verification's (or the solver's) time reached; in results that
    record neither, the last time the gradient flow's loss is finite in `ds`, else NaN."""
    ver = summary.get("verification") or {}
    solver = summary.get("solver") or {}
    if ver.get("complete") is not False and solver.get("status", "success") == "success":
        return None
    t1 = _number(solver.get("t1", ver.get("horizon")))
    reached = [_number(ver.get("t_reached"))]
    reached.append(_number((solver.get("reached") or {}).get("gradient")))
    finite = [t for t in reached if math.isfinite(t)]
    if not finite and ds is not None:
        tt, loss = _fine(ds, "loss_w")
        if loss is not None and np.isfinite(loss).any():
            finite.append(float(np.max(tt[np.isfinite(loss)])))
    return (min(finite) if finite else math.nan), t1


def _empty(summary: dict[str, Any], what: str, hint: str = "") -> str:
    """The "no data" note of an axes: what is missing and why (the solve's stop, if it
    stopped, else `hint`), wrapped to fit."""
    stop = stopped_at(summary)
    if stop is not None:
        text = f"no data: {what}; the solve stopped at t = {stop[0]:.3g}, before t1 = {stop[1]:.3g}"
    else:
        text = f"no data: {what}" + (f" ({hint})" if hint else "")
    return textwrap.fill(text, 60)


def _span(values: list[np.ndarray]) -> tuple[float, float] | None:
    """The smallest and largest positive finite value, or `None`."""
    v = np.concatenate([np.ravel(a) for a in values]) if values else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    return (float(v.min()), float(v.max())) if v.size else None


def _is_log(scale: Scale, values: list[np.ndarray]) -> bool:
    span = _span(values)
    if span is None or scale == "linear":
        return False
    return scale == "log" or math.log10(span[1] / span[0]) >= _DECADES


def _log_ticks(axis: Any, span: tuple[float, float] | None) -> None:
    """Readable labels on a log axis: plain numbers at 1, 2, 5 × 10^k over a few decades,
    evenly spaced plain numbers within one (matplotlib would label `6×10^0`)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if span is None:
        return
    decades = math.log10(span[1] / span[0])
    if decades >= 3:
        return
    axis.set_major_locator(MaxNLocator(5) if decades < 1 else LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


@dataclasses.dataclass
class _Panel:
    """What one axes shows, collected before drawing so that its scales can be chosen
    from the data: `lines` (data, or `guide` curves such as envelopes that neither choose
    the scale nor stretch a log axis), horizontal and vertical reference lines, and shaded
    time intervals. Only what has finite values is drawn, so the legend lists only what
    is drawn."""

    lines: list[tuple[np.ndarray, np.ndarray, bool, dict[str, Any]]] = dataclasses.field(
        default_factory=list
    )
    hlines: list[tuple[float, dict[str, Any]]] = dataclasses.field(default_factory=list)
    vlines: list[tuple[float, dict[str, Any]]] = dataclasses.field(default_factory=list)
    spans: list[tuple[float, float, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def line(self, x: Any, y: Any, *, guide: bool = False, **style: Any) -> None:
        if y is None:
            return
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), np.shape(y))
        self.lines.append((x, np.asarray(y, dtype=np.float64), guide, style))

    def hline(self, y: float, **style: Any) -> None:
        self.hlines.append((y, style))

    def vline(self, x: float, **style: Any) -> None:
        self.vlines.append((x, style))

    def span(self, x0: float, x1: float, **style: Any) -> None:
        self.spans.append((x0, x1, style))

    def draw(self, ax: Any, *, x: Scale = "linear", y: Scale = "auto", empty: str) -> bool:
        """Draw on `ax`; returns whether any data was drawn (else `ax` says `empty`)."""
        data = []
        for xs, ys, guide, _ in self.lines:
            finite = np.isfinite(xs) & np.isfinite(ys)
            if not guide and finite.any():
                data.append((xs[finite], ys[finite]))
        if not data:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, **_NO_DATA)
            ax.set_xticks([])
            ax.set_yticks([])
            return False
        refs = [np.asarray([v for v, _ in self.hlines], dtype=np.float64)]
        ylog = _is_log(y, [d[1] for d in data] + refs)
        xs_drawn = [d[0][d[1] > 0] if ylog else d[0] for d in data]
        xlog = _is_log(x, xs_drawn)

        def keep(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            ok = np.isfinite(xs) & np.isfinite(ys)
            if ylog:
                ok &= ys > 0
            if xlog:
                ok &= xs > 0
            return ok

        drawn_y, drawn_x = [], []
        for xs, ys, guide, style in self.lines:
            ok = keep(xs, ys)
            if ok.any():
                style = dict(style)
                fmt = style.pop("fmt", None)
                if ok.sum() == 1 and fmt is None:
                    style.setdefault("marker", "o")  # one point: a line would not show
                ax.plot(xs[ok], ys[ok], *([fmt] if fmt else []), **style)
                if not guide:
                    drawn_x.append(xs[ok])
                    drawn_y.append(ys[ok])
        for v, style in self.hlines:
            if math.isfinite(v) and (v > 0 or not ylog):
                ax.axhline(v, **style)
                drawn_y.append(np.asarray([v]))
        lo_x = _span(drawn_x)
        for v, style in self.vlines:
            if math.isfinite(v) and (v > 0 or not xlog):
                ax.axvline(v, **style)
        for x0, x1, style in self.spans:
            if xlog:
                x0 = max(x0, lo_x[0] if lo_x else x1)
            if math.isfinite(x0) and math.isfinite(x1) and x1 >= x0 and (x1 > 0 or not xlog):
                ax.axvspan(x0, x1, zorder=0, **style)
        if ylog:
            ax.set_yscale("log")
            span = _span(drawn_y)
            if span is not None and any(g for *_, g, _ in self.lines):
                # Guides (envelopes) decay to 1e-300: keep the axis on the data.
                ax.set_ylim(bottom=max(span[0] / 10, 1e-300))
            _log_ticks(ax.yaxis, span)
        if xlog:
            ax.set_xscale("log")
            _log_ticks(ax.xaxis, _span(drawn_x))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        return True


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
    if finite_t.size and math.isfinite(rate) and math.isfinite(c["R0"]):
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
    ax.set_ylabel("loss  R = ½‖αf − y‖²")
    ax.set_title("Training loss and the theorem's envelope")
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
        label="‖w_k − w0‖ (gradient descent)",
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
    p.draw(ax, empty=_empty(summary, "no finite σ(J_t)", "diagnostics off?"))
    ax.set_xlabel(_TIME)
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
    p.draw(ax, empty=_empty(summary, "no finite kernel drift", "diagnostics off?"))
    ax.set_xlabel(_TIME)
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
    p.draw(axes[0], empty=_empty(summary, "no finite test loss"))
    axes[0].set_ylabel(_test_loss_label(ds))
    axes[0].set_title("Held-out loss" + (" and accuracy" if accuracy else ""))
    if accuracy:
        q = _Panel()
        for flow, label, style in flows:
            y = _var(ds, f"acc_{flow}_test")
            q.line(t, y, label=f"{label} (last: {_last(y):.1%})", **style)
        q.draw(axes[1], y="linear", empty="no data")
        axes[1].set_ylim(-0.03, 1.03)
        axes[1].set_ylabel("test accuracy (fraction right)")
    axes[-1].set_xlabel(_TIME)
    return fig


# (name, function, needs, caption): `needs` is a variable the figure requires.
FIGURES: list[tuple[str, Callable[[Any, dict[str, Any]], Any], str, str]] = [
    (
        "losses",
        plot_losses,
        "t",
        "Training loss of the network's gradient flow and of the tangent flow (its "
        "linearisation), with the theorem's envelope R0·exp(−tα²σ_min²/2) "
        "(dotted) and the tangent flow's sharper R0·exp(−2tα²σ_min²). When the hypotheses "
        "hold, both losses must stay under the dotted line; on the log scale a straight "
        "line is linear (exponential) convergence. The network's curve, drawn at every "
        "solver step, flattens where it reaches the integrator's error floor (about "
        "(rtol·‖y‖)²). A dashed red line marks where a solve stopped before t1.",
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
        "the convergence rate (α²σ_min²) and, through α*, how large α must be; their ratio is "
        "the condition number, which makes the flow stiff for explicit solvers.",
    ),
    (
        "test_loss",
        plot_test_loss,
        "loss_w_test",
        "Loss on the held-out split, the mean over test points of ½‖αf(x) − y‖², for the "
        "network and its linearisation, and, when the targets are classes (±1, or one-hot), "
        "the fraction of test points each classifies right (the output's sign, or its "
        "argmax; an output of exactly 0 or a tie counts as wrong): whether the linearised "
        "model generalises as well as the network.",
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


# -- sweeps ----------------------------------------------------------------------------


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
            for j in range(per_alpha.shape[1]):
                p.line(alphas, per_alpha[:, j], color=color, alpha=0.25, lw=1)
            p.line(
                alphas,
                _median(per_alpha),
                fmt="o-",
                color=color,
                lw=2,
                label=f"{label} (median over the other keys)",
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
