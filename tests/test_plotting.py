"""The figures draw for any results, choose their scales from the data, and draw only
what the data hold. Synthetic results (built here, no solve) keep these fast; a real run's
figures are covered by tests/test_results.py."""

import copy
import io
import math
from typing import Any

import numpy as np
import pytest
import xarray as xr

from ntkflow.plotting import (
    FIGURES,
    make_figures,
    plot_critical_alpha,
    plot_distances,
    plot_gaps,
    plot_kernel_drift,
    plot_lazy_active,
    plot_scaling,
    plot_singular_values,
    plot_test_loss,
    save_figures,
    stopped_at,
)
from ntkflow.report import render_report

T1 = 10.0
B = 0.5


def synthetic_results(saves: int = 11, steps: int = 40) -> tuple[xr.Dataset, dict]:
    """Results shaped like a run's: save times on `[0, t1]`, solver steps geometrically
    spaced from 1e-5 (the path moves on every time scale), the path leaving the ball of
    radius `B` at `t ≈ 0.4`."""
    t = np.linspace(0.0, T1, saves)
    st = np.geomspace(1e-5, T1, steps)

    def dist(x):
        return 0.8 * (1 - np.exp(-x / 0.6))

    def loss(x):
        return 2.0 * np.exp(-3 * x) + 1e-12

    series = {
        "loss_w": loss(t),
        "loss_u": loss(t) * 0.9,
        "dist_w": dist(t),
        "dist_u": dist(t) * 0.99,
        "gap_f": 1e-3 * t * np.exp(-t),
        "gap_w": 1e-2 * dist(t) ** 2,
        "sigma_min_t": 0.2 - 0.01 * dist(t),
        "sigma_max_t": 2.0 + 0.01 * dist(t),
        "kernel_drift": 1e-4 * dist(t),
        "loss_w_test": 0.5 + 0.1 * np.exp(-t),
        "loss_u_test": 0.5 + 0.12 * np.exp(-t),
        "acc_w_test": np.where(t > 0, 0.9, 0.0),
        "acc_u_test": np.where(t > 0, 0.85, 0.0),
    }
    data: dict[str, Any] = {name: ("t", v) for name, v in series.items()}
    data.update(
        step_loss_w=("step_t", loss(st)),
        step_dist_w=("step_t", dist(st)),
        step_gap_f=("step_t", 1e-3 * st * np.exp(-st)),
        step_gap_w=("step_t", 1e-2 * dist(st) ** 2),
        # (outputs 0 at t = 0, as under centring, where the accuracy above is 0)
        pred_w_test=(
            ("t", "test_point", "output"),
            np.where(t > 0, 1.0, 0.0)[:, None, None] * np.ones((saves, 5, 1)),
        ),
        ntk_eigenvalues=("mode", np.geomspace(0.04, 4.0, 8)),
    )
    ds = xr.Dataset(data, coords={"t": t, "step_t": st})
    ds["loss_w_test"].attrs["long_name"] = "gradient flow test loss: mean over test points"
    all_t = np.sort(np.concatenate([t, st]))
    exit_time = float(all_t[np.argmax(dist(all_t) > B)])
    summary = {
        "name": "synthetic",
        "certificate": {
            "n": 8,
            "p": 64,
            "alpha": 2.0,
            "R0": 2.0,
            "sigma_min": 0.2,
            "sigma_max": 2.0,
            "beta": 0.3,
            "beta_kind": "certified",
            "alpha_star": 1e4,
            "B": B,
            "B_prime": 300.0,
            "tangent_distance_bound": 50.0,
            "condition": 100.0,
            "hypotheses_hold": False,
            "reasons": ["α=2 < α*=1e+04"],
            "notes": [],
        },
        "verification": {
            "checks": [
                {
                    "name": "exit_time",
                    "holds": False,
                    "guaranteed": False,
                    "margin": -0.6,
                    "t": T1,
                    "value": 0.8,
                    "bound": B,
                    "error": 0.0,
                    "flow": "gradient",
                    "description": "‖w(t) − w0‖ ≤ B at every time computed",
                    "first_violation": exit_time,
                    "reason": None,
                }
            ],
            "exit_time": exit_time,
            "horizon": T1,
            "hypotheses_hold": False,
            "complete": True,
            "t_reached": T1,
            "status": "success",
            "message": "The flows were integrated to t1.",
        },
        "solver": {"t1": T1, "status": "success", "message": "ok", "stats": {}},
    }
    return ds, summary


def _truncated(ds: xr.Dataset, summary: dict, t_stop: float) -> tuple[xr.Dataset, dict]:
    """The same results cut at `t_stop`, as a solve that reached its step limit leaves
    them: NaN after the last good state, the verification incomplete."""
    out = ds.copy(deep=True)
    for name, var in out.data_vars.items():
        for dim in ("t", "step_t"):
            if dim in var.dims:
                out[name] = var.where(out[dim] <= t_stop)
    summary = copy.deepcopy(summary)
    message = f"The maximum number of solver steps was reached at t={t_stop}, before t1={T1}."
    summary["verification"].update(
        complete=False, t_reached=t_stop, status="max_steps", message=message, exit_time=None
    )
    summary["solver"].update(status="max_steps", message=message)
    return out, summary


def _degenerate():
    """Every kind of results a figure must survive, by name."""
    ds, summary = synthetic_results()
    nan = ds.copy(deep=True)
    for name in nan.data_vars:
        nan[name] = nan[name] * np.nan
    nan_summary = copy.deepcopy(summary)
    nan_summary["verification"]["exit_time"] = None
    nan_summary["certificate"].update(sigma_min="nan", B="inf", R0="nan", condition="nan")
    names = [str(n) for n in ds.data_vars]
    tangent = [n for n in names if "_u" in n or n.startswith(("gap", "step_gap"))]
    diagnostics = ["sigma_min_t", "sigma_max_t", "kernel_drift"]
    test = [n for n in names if n.endswith("_test")]
    no_flows = {k: v for k, v in summary.items() if k not in ("verification", "solver")}
    return {
        "complete": (ds, summary),
        "all_nan": (nan, nan_summary),
        "one_save": (ds.isel(t=[0], step_t=[]), summary),
        "one_save_no_steps": (ds.isel(t=[0]).drop_dims("step_t"), summary),
        "stopped_early": _truncated(ds, summary, 3e-4),
        "stopped_at_zero": _truncated(ds, summary, 0.0),
        "no_tangent_flow": (ds.drop_vars(tangent), summary),
        "no_diagnostics": (ds.drop_vars(diagnostics), summary),
        "no_test_split": (ds.drop_vars(test), summary),
        "certify_only": (ds[["ntk_eigenvalues"]], no_flows),
        "empty": (xr.Dataset(), no_flows),
    }


DEGENERATE = _degenerate()


def _drawn(ax) -> bool:
    """Whether `ax` shows data: a line with at least one point (reference lines aside)."""
    return any(len(line.get_xdata()) > 0 for line in ax.get_lines())


def _says_no_data(ax) -> bool:
    return any(text.get_text().startswith("no data") for text in ax.texts)


def _legend_matches_artists(ax) -> None:
    legend = ax.get_legend()
    if legend is None:
        return
    handles, labels = ax.get_legend_handles_labels()
    assert [t.get_text() for t in legend.get_texts()] == labels
    for handle in handles:
        if hasattr(handle, "get_xdata"):
            x = np.asarray(handle.get_xdata(), dtype=float)
            y = np.asarray(handle.get_ydata(), dtype=float)
            assert x.size and np.isfinite(x).any() and np.isfinite(y).any(), handle.get_label()


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_every_figure_draws_for_degenerate_results(kind, tmp_path):
    ds, summary = DEGENERATE[kind]
    for name, fn, _, _ in FIGURES:
        fig = fn(ds, summary)
        fig.savefig(io.BytesIO(), format="png", dpi=40)  # drawing is where log scales fail
        for ax in fig.axes:
            if not ax.axison:  # a text panel
                continue
            assert _drawn(ax) != _says_no_data(ax), (kind, name)
            _legend_matches_artists(ax)
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.get_text() for t in axis.get_ticklabels()]
                assert not any("times" in label for label in labels), (kind, name, labels)
    paths = save_figures(tmp_path / "figures", ds, summary, dpi=40)
    assert set(paths) == set(make_figures(ds, summary))
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert "<h2>Verdict</h2>" in render_report(summary, paths)


def test_no_data_is_said_for_all_nan_results():
    ds, summary = DEGENERATE["all_nan"]
    for name, fn, _, _ in FIGURES:
        if name == "spectrum":
            continue  # the eigenvalues are NaN too, but the figure is the same code
        fig = fn(ds, summary)
        assert all(_says_no_data(ax) for ax in fig.axes if ax.axison), name


def test_truncated_results_mark_where_the_solve_stopped():
    ds, summary = DEGENERATE["stopped_early"]
    assert stopped_at(summary) == (3e-4, T1)
    fig = FIGURES[0][1](ds, summary)  # losses
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("the solve stopped: t = 0.0003 < t1 = 10") for label in labels)
    # Results that predate `verification.complete`: the solver's status says it, and the
    # time reached is read off the data.
    old = copy.deepcopy(summary)
    for key in ("complete", "t_reached", "status", "message"):
        del old["verification"][key]
    reached, t1 = stopped_at(old, ds)  # pyright: ignore[reportGeneralTypeIssues]
    assert reached == pytest.approx(float(ds["step_t"].where(ds["step_t"] <= 3e-4).max()))
    assert t1 == T1


def test_singular_values_shade_from_the_exit_time():
    ds, summary = synthetic_results()
    exit_time = summary["verification"]["exit_time"]
    saves = ds["t"].values
    # The exit falls between saves: shading from the first save outside would start later.
    first_save_outside = saves[np.argmax(ds["dist_w"].values > B)]
    assert exit_time < first_save_outside
    (ax,) = plot_singular_values(ds, summary).axes
    spans = list(ax.patches)
    assert spans and min(p.get_x() for p in spans) == pytest.approx(exit_time)
    assert "outside the ball (lemma silent)" in ax.get_legend_handles_labels()[1]


def test_gaps_are_drawn_at_every_step_when_recorded():
    ds, summary = synthetic_results()
    (ax,) = plot_gaps(ds, summary).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    gap_w = lines["‖w(t) − u(t)‖ (parameter space)"]
    x = np.asarray(gap_w.get_xdata())
    assert x.min() == pytest.approx(1e-5) and x.size > ds.sizes["t"]
    assert ax.get_xscale() == "log"  # the steps span six decades
    # Older results, without the per-step ‖w − u‖: the saves only, and the legend says so.
    (ax,) = plot_gaps(ds.drop_vars("step_gap_w"), summary).axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert "‖w(t) − u(t)‖ (parameter space), at the saves only" in labels


def _sweep(values: np.ndarray, alphas=(0.03, 0.3, 3.0, 30.0)) -> xr.Dataset:
    """A sweep dataset with two seeds: final test losses on the grid and test accuracies
    over the normalised time."""
    dims = ("problem_alpha", "problem_seed")
    coords = {"problem_alpha": list(alphas), "problem_seed": [0, 1], "t": [0.0, 0.5, 1.0]}
    acc = np.broadcast_to(np.asarray([0.0, 0.7, 0.9]), (len(alphas), 2, 3)).copy()
    acc[0, 0, 2] = np.nan  # a point stopped early: its last finite accuracy is 0.7
    return xr.Dataset(
        {
            "final_test_loss_w": (dims, values),
            "final_test_loss_u": (dims, values * 1.01),
            "acc_w_test": ((*dims, "t"), acc),
        },
        coords=coords,
    )


def test_lazy_active_scales_follow_the_data():
    narrow = np.linspace(9.4, 10.7, 8).reshape(4, 2)
    fig = plot_lazy_active(_sweep(narrow), {})
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "linear" and loss_ax.get_xscale() == "log"
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    ticks = [t.get_text() for t in loss_ax.get_yticklabels() if t.get_text()]
    assert ticks and not any("times" in t for t in ticks)
    # The last finite accuracy of each point, medians over the seeds.
    median = next(line for line in acc_ax.get_lines() if "median" in line.get_label())
    np.testing.assert_allclose(median.get_ydata(), [0.8, 0.9, 0.9, 0.9])
    wide = np.geomspace(1e-4, 10.0, 8).reshape(4, 2)
    loss_ax = plot_lazy_active(_sweep(wide), {}).axes[0]
    assert loss_ax.get_yscale() == "log"


def test_scaling_fits_keep_log_axes_with_readable_ticks():
    fit = {
        "quantity": "sup_dist_w",
        "against": "model.width",
        "x": [64, 128, 256],
        "y": [1.0, 1.2, 1.4],
        "slope": 0.24,
        "intercept": -1.0,
        "low": 0.2,
        "high": 0.3,
        "theory": 0.0,
        "replicates": 1,
        "note": "sup ‖w − w0‖; a rate",
    }
    fig = plot_scaling(fit)
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    labels = [t.get_text() for t in [*ax.get_xticklabels(), *ax.get_yticklabels()]]
    assert any(labels) and not any("times" in label for label in labels)


def test_critical_alpha_draws_only_what_exists_and_says_why():
    why = "no α on the grid held every check: at α=10, exit_time failed from t=0.0012"
    rows = [
        {"where": {"problem.seed": 0}, "alpha_empirical": "nan", "alpha_star": 2e4, "why": why},
        {"where": {"problem.seed": 1}, "alpha_empirical": "nan", "alpha_star": 3e4, "why": why},
    ]
    fig = plot_critical_alpha(rows)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "empirical critical α (all checks held)" not in labels
    assert "α* (theorem's sufficient scale)" in labels
    assert any(label.startswith("no critical α on the grid") for label in labels)
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert any("exit_time failed from" in t for t in texts)
    rows[0].update(alpha_empirical=30.0)
    del rows[0]["why"]
    labels = plot_critical_alpha(rows).axes[0].get_legend_handles_labels()[1]
    assert "empirical critical α (all checks held)" in labels


def test_test_accuracy_panel_and_mean_loss_label():
    ds, summary = synthetic_results()
    fig = plot_test_loss(ds, summary)
    loss_ax, acc_ax = fig.axes
    assert "mean" in loss_ax.get_ylabel() and "accuracy" in acc_ax.get_ylabel()
    labels = acc_ax.get_legend_handles_labels()[1]
    assert labels == ["network (last: 90.0%)", "linearisation (last: 85.0%)"]
    # Results written while the test loss was a sum say so on the axis.
    old = ds.drop_vars(["acc_w_test", "acc_u_test"])
    old["loss_w_test"].attrs["long_name"] = "gradient flow test loss ½‖αf(w; X_test) − y_test‖²"
    (ax,) = plot_test_loss(old, summary).axes
    assert "(sum)" in ax.get_ylabel()
    assert math.isfinite(ds["loss_w_test"].values[-1])


def test_drift_and_singular_values_share_the_log_time_axis_and_ties_are_not_accuracy():
    ds, summary = synthetic_results()
    # Save times over three decades, as a run's: the early dynamics need a log axis.
    t = np.concatenate([[0.0], np.geomspace(1e-3, T1, 10)])
    ds = ds.assign_coords(t=t)
    for plot in (plot_kernel_drift, plot_singular_values, plot_distances):
        (ax,) = plot(ds, summary).axes
        assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel(), plot.__name__
    # At t = 0 every test output is exactly 0 (centring): each prediction ties, and that
    # is no accuracy of 0; the accuracy is drawn from the first non-zero outputs on.
    pred = np.ones_like(ds["pred_w_test"].values)
    pred[0] = 0.0
    ds["pred_w_test"] = (ds["pred_w_test"].dims, pred)
    ds = ds.assign(acc_w_test=("t", np.where(t > 0, 0.9, 0.0)))
    loss_ax, acc_ax = plot_test_loss(ds, summary).axes
    line = next(x for x in acc_ax.get_lines() if x.get_label().startswith("network"))
    assert np.min(line.get_xdata()) > 0 and np.all(np.asarray(line.get_ydata()) == 0.9)
    assert acc_ax.get_xscale() == loss_ax.get_xscale() == "log"


def test_lazy_active_says_median_only_over_several_settings():
    one = _sweep(np.linspace(1.0, 2.0, 8).reshape(4, 2)).isel(problem_seed=[0])
    labels = plot_lazy_active(one, {}).axes[0].get_legend_handles_labels()[1]
    assert labels == ["network", "linearisation (tangent model)"]
    two = _sweep(np.linspace(1.0, 2.0, 8).reshape(4, 2))
    labels = plot_lazy_active(two, {}).axes[0].get_legend_handles_labels()[1]
    assert all("(median over the other keys)" in label for label in labels)
