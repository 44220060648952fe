"""What every figure builds on: the saved series and summary numbers read as floats
(`_var`, `_times`, `_fine`, `_number`, `_cert`), where a solve stopped (`stopped_at`), the
figure (`_figure`), and `_Panel`, which draws only what has finite values, on scales
chosen from the data. An axis is logarithmic only when what it shows spans at least
`_DECADES` decades, with readable tick labels (`_log_ticks`). matplotlib is imported
inside the functions that draw.
"""

import dataclasses
import math
import textwrap
from typing import Any, Literal

import numpy as np

_WIDTH, _HEIGHT = 7.0, 4.2
# An axis is logarithmic ("auto") when its positive values span this many decades: then
# at least two powers of ten are labelled.
_DECADES = 2.0
_NO_DATA = dict(ha="center", va="center", color="0.35", fontsize=10)

Scale = Literal["linear", "auto", "log"]


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
