"""Every quantity of the flows named once: the series the results files hold (`SERIES`:
where each is on a `FlowSolution`'s typed paths, what it means, its dimensions, whether a
sweep keeps it) and the numbers of a run the scaling laws and sweeps use (`FLOW_SCALARS`:
what each is, how it is read from a run, its error budget). The summary, the datasets,
the sweeps, the laws and the report read the names from here; NumPy only, so that
reading saved results needs no JAX."""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Series:
    """A quantity of the flows that the results files hold, under its flat name (the key
    of `SERIES`): `at`, where it is on a `FlowSolution` (a dotted path through its typed
    records), `meaning` (the variable's `long_name` where `labelled`), `dims` in the
    files, `coordinate` (the name of the coordinate it is, if it is one) and
    `per_point` (a sweep keeps it for each point)."""

    at: str
    meaning: str
    dims: tuple[str, ...] = ("t",)
    labelled: bool = True
    per_point: bool = False
    coordinate: str | None = None


def _t(at: str, meaning: str, *, per_point: bool = False) -> Series:
    return Series(at, meaning, per_point=per_point)


def _step(at: str, meaning: str, **kw: Any) -> Series:
    return Series(at, meaning, ("step_t",), labelled=False, **kw)


# Every quantity of the flows, named once: `FlowSolution.series(name)` reads it from the
# typed paths, `to_xarray` writes it, a sweep keeps those marked `per_point`, and the
# docs (docs/results.md) and the figures read the same names.
SERIES: dict[str, Series] = {
    "loss_w": _t("gradient.loss", "gradient flow loss R(αf(w(t)))", per_point=True),
    "loss_u": _t("tangent.loss", "tangent flow loss R(αf_0(u(t)))", per_point=True),
    "dist_w": _t("gradient.dist", "‖w(t) − w0‖", per_point=True),
    "dist_u": _t("tangent.dist", "‖u(t) − w0‖", per_point=True),
    "gap_f": _t("gaps.f", "‖αf(w(t)) − αf_0(u(t))‖", per_point=True),
    "gap_w": _t("gaps.w", "‖w(t) − u(t)‖", per_point=True),
    "sigma_min_t": _t("kernel.sigma_min", "σ_min(J_{w(t)})", per_point=True),
    "sigma_max_t": _t("kernel.sigma_max", "σ_max(J_{w(t)})", per_point=True),
    "kernel_drift": _t("kernel.drift", "‖K_{w(t)} − K0‖_op / ‖K0‖_op", per_point=True),
    "dist_u_to_limit": _t("tangent.to_limit", "‖u(t) − u∞‖"),
    "grad_w": _t("gradient.grad", "‖∇R(αf(w(t)))‖ (a loss other than the square)"),
    "grad_u": _t("tangent.grad", "‖∇R(αf_0(u(t)))‖ (a loss other than the square)"),
    "err_w": _t("gradient.budget.dist", "error budget of w(t): ‖w_tight − w_loose‖"),
    "err_loss_w": _t("gradient.budget.loss", "error budget of the gradient-flow loss"),
    "err_res_w": _t("gradient.budget.residual", "error budget of αf(w(t)): ‖r_tight − r_loose‖"),
    "round_res_w": _t(
        "gradient.rounding",
        "estimated rounding error of αf(w(t)) − y (docs/theory.md, Rounding)",
    ),
    "loss_w_test": _t(
        "gradient.test.loss",
        "gradient flow test loss: mean over test points of R(αf(w; x)) (½‖αf − y‖²)",
        per_point=True,
    ),
    "loss_u_test": _t(
        "tangent.test.loss",
        "tangent flow test loss: mean over test points of R(αf_0(u; x))",
        per_point=True,
    ),
    "acc_w_test": _t(
        "gradient.test.acc",
        "gradient flow test accuracy: fraction of test points classified right",
        per_point=True,
    ),
    "acc_u_test": _t(
        "tangent.test.acc",
        "tangent flow test accuracy: fraction of test points classified right",
        per_point=True,
    ),
    "loss_gd": _t("gd.loss", "gradient descent loss at t = kη", per_point=True),
    "dist_gd": _t("gd.dist", "‖w_k − w0‖ (gradient descent)"),
    "gap_gd": _t("gd.gap", "‖w_k − w(kη)‖ (gradient descent vs flow)"),
    "ts_gd": _t("gd.ts", "gradient descent times kη"),
    "step_ts": _step(
        "gradient.steps.ts", "the gradient flow's accepted steps", coordinate="step_t"
    ),
    "step_loss_w": _step("gradient.steps.loss", "gradient flow loss at its steps"),
    "step_dist_w": _step("gradient.steps.dist", "‖w(t) − w0‖ at the gradient flow's steps"),
    "step_loss_u": _step("tangent.steps.loss", "tangent flow loss at the gradient flow's steps"),
    "step_dist_u": _step("tangent.steps.dist", "‖u(t) − w0‖ at the gradient flow's steps"),
    "step_gap_f": _step("gaps.step_f", "‖αf(w(t)) − αf_0(u(t))‖ at the gradient flow's steps"),
    "step_gap_w": _step("gaps.step_w", "‖w(t) − u(t)‖ at the gradient flow's steps"),
    "pred_w_test": Series(
        "gradient.test.pred",
        "α f(w(t)) on the test inputs",
        ("t", "test_point", "output"),
        labelled=False,
    ),
    "pred_u_test": Series(
        "tangent.test.pred",
        "α f_0(u(t)) on the test inputs",
        ("t", "test_point", "output"),
        labelled=False,
    ),
    "params_w": Series("gradient.params", "w(t) − w0", ("t", "param"), labelled=False),
    "params_u": Series("tangent.params", "u(t) − w0", ("t", "param"), labelled=False),
    "loss_inf": _t("limit.loss", "training loss of the infinite-width tangent flow"),
    "loss_inf_test": _t(
        "limit.test.loss", "mean test loss per point of the infinite-width tangent flow"
    ),
}


def nanmax(*arrays: Any) -> float:
    """The largest entry that is not NaN over all given arrays (`None` skipped; NaN if
    there is none)."""
    vals = [np.asarray(a, dtype=np.float64).ravel() for a in arrays if a is not None]
    v = np.concatenate(vals) if vals else np.zeros(0)
    v = v[~np.isnan(v)]
    return float(v.max()) if v.size else math.nan


def _last(a: Any) -> float:
    """The last finite entry (NaN if none)."""
    if a is None:
        return math.nan
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a[-1]) if a.size else math.nan


@dataclasses.dataclass(frozen=True)
class Run:
    """What a flow scalar is read from: the `FlowSolution`, its `Verification`, `‖w0‖`."""

    solution: Any
    verification: Any
    w0_norm: float


def _sup(*names: str) -> Callable[[Run], float]:
    """The supremum of the series `names` (`SERIES`) over their saves and steps."""
    return lambda r: nanmax(*(r.solution.series(n) for n in names))


def _final(name: str) -> Callable[[Run], float]:
    return lambda r: _last(r.solution.series(name))


def _relative_change(r: Run) -> float:
    return _last(r.solution.series("dist_w")) / r.w0_norm if r.w0_norm > 0 else math.nan


def _exit_time(r: Run) -> float:
    return r.verification.exit_time if r.verification.exit_time is not None else math.inf


def _num_steps(r: Run) -> int:
    gradient = r.solution.stats.get("gradient")
    return (gradient.get("num_steps") or 0) if gradient is not None else 0


@dataclasses.dataclass(frozen=True)
class Scalar:
    """A number of the flows: what it is (`meaning`), how it is read from a run
    (`read`), the scalar that bounds its integration error from above (`budget`), and
    whether a sweep's report shows it in its table of points (`table`)."""

    meaning: str
    read: Callable[[Run], Any]
    budget: str | None = None
    table: bool = False


# The numbers of the flows that the scaling laws and sweeps use (docs/theory.md, "Fitting
# the laws"), each named once, with what it is and how it is read from a run.
FLOW_SCALARS: dict[str, Scalar] = {
    "w0_norm": Scalar("‖w0‖", lambda r: r.w0_norm),
    "sup_dist_w": Scalar(
        "sup_t ‖w(t) − w0‖ (saves and solver steps)",
        _sup("dist_w", "step_dist_w"),
        budget="err_dist_w",
        table=True,
    ),
    "sup_dist_u": Scalar("sup_t ‖u(t) − w0‖", _sup("dist_u")),
    "sup_gap_f": Scalar(
        "sup_t ‖αf(w(t)) − αf_0(u(t))‖", _sup("gap_f", "step_gap_f"), budget="err_gap_f", table=True
    ),
    "sup_gap_w": Scalar("sup_t ‖w(t) − u(t)‖", _sup("gap_w", "step_gap_w"), budget="err_gap_w"),
    # The integrator's error budget on those (NaN without `error_estimate`).
    "err_dist_w": Scalar("the error budget of sup_dist_w", _sup("err_w")),
    "err_gap_f": Scalar("the error budget of sup_gap_f", _sup("err_res_w")),
    "err_gap_w": Scalar("the error budget of sup_gap_w", _sup("err_w")),
    "sup_kernel_drift": Scalar("sup_t ‖K_{w(t)} − K0‖/‖K0‖", _sup("kernel_drift"), table=True),
    "rel_weight_change": Scalar("‖w(t1) − w0‖/‖w0‖", _relative_change),
    "final_loss_w": Scalar("the gradient flow's loss at t1", _final("loss_w")),
    "final_loss_u": Scalar("the tangent flow's loss at t1", _final("loss_u")),
    "final_test_loss_w": Scalar(
        "the gradient flow's test loss at t1", _final("loss_w_test"), table=True
    ),
    "final_test_loss_u": Scalar(
        "the tangent flow's test loss at t1", _final("loss_u_test"), table=True
    ),
    "final_test_acc_w": Scalar("the gradient flow's test accuracy at t1", _final("acc_w_test")),
    "final_test_acc_u": Scalar("the tangent flow's test accuracy at t1", _final("acc_u_test")),
    "exit_time": Scalar("the first time w(t) left the ball (inf: never)", _exit_time),
    "num_steps": Scalar("the gradient flow's solver steps", _num_steps),
}


# The certificate's numbers a sweep keeps per point.
POINT_CERTIFICATE = (
    "alpha_star",
    "sigma_min",
    "sigma_max",
    "beta",
    "beta_kind",
    "R0",
    "B",
    "B_prime",
    "hypotheses_hold",
    "p",
)
