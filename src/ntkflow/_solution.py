"""`FlowSolution`: what `solve_flows` returns, and its xarray form."""

import dataclasses
import enum
import json
from typing import Any

import numpy as np

from ._json import jsonable


class FlowStatus(enum.Enum):
    """How a solve ended. The values are messages a user can act on; `FlowSolution.message`
    adds the times and numbers."""

    SUCCESS = "The flows were integrated to t1."
    MAX_STEPS = (
        "The maximum number of solver steps was reached before t1. Increase `max_steps`, "
        "loosen `rtol`, or shorten `t1`."
    )
    NONFINITE = (
        "The gradient flow produced NaN or inf. Lower α, check the model for overflow, or "
        "shorten `t1`."
    )
    GD_DIVERGED = "Gradient descent diverged: lower `gd_step` below 2/(α² λ_max(K0))."
    UNRESOLVED = (
        "The gradient flow was not integrated: in this dtype the network cannot resolve its "
        "own motion. Lower α or use float64."
    )


# Per-save-time series, with what they are (the docs and the xarray attributes use these).
SERIES = {
    "loss_w": "gradient flow loss R(αf(w(t)))",
    "loss_u": "tangent flow loss R(αf_0(u(t)))",
    "dist_w": "‖w(t) − w0‖",
    "dist_u": "‖u(t) − w0‖",
    "gap_f": "‖αf(w(t)) − αf_0(u(t))‖",
    "gap_w": "‖w(t) − u(t)‖",
    "sigma_min_t": "σ_min(J_{w(t)})",
    "sigma_max_t": "σ_max(J_{w(t)})",
    "kernel_drift": "‖K_{w(t)} − K0‖_op / ‖K0‖_op",
    "dist_u_to_limit": "‖u(t) − u∞‖",
    "err_w": "error budget of w(t): ‖w_tight − w_loose‖",
    "err_loss_w": "error budget of the gradient-flow loss",
    "err_res_w": "error budget of αf(w(t)): ‖r_tight − r_loose‖",
    "round_res_w": "estimated rounding error of αf(w(t)) − y (docs/theory.md, Rounding)",
    "loss_w_test": "gradient flow test loss: mean over test points of ½‖αf(w; x) − y‖²",
    "loss_u_test": "tangent flow test loss: mean over test points of ½‖αf_0(u; x) − y‖²",
    "acc_w_test": "gradient flow test accuracy: fraction of test points classified right",
    "acc_u_test": "tangent flow test accuracy: fraction of test points classified right",
    "loss_gd": "gradient descent loss at t = kη",
    "dist_gd": "‖w_k − w0‖ (gradient descent)",
    "gap_gd": "‖w_k − w(kη)‖ (gradient descent vs flow)",
    "ts_gd": "gradient descent times kη",
}


@dataclasses.dataclass(frozen=True, eq=False)
class FlowSolution:
    """The two flows at the save times `ts`, with diagnostics and solver statistics.

    Every per-time series is a NumPy array over `ts` (see `SERIES` for their meaning), or
    `None` when not computed (e.g. `loss_u` without the tangent flow, `loss_gd` without
    `gd_step`). `step_ts`, `step_loss_w`, `step_dist_w` are the gradient flow's loss and
    distance at every accepted solver step (the checks use them between save times);
    `step_loss_u`, `step_dist_u` are the closed-form tangent flow's at the same times, and
    `step_gap_f`, `step_gap_w` the gaps `‖αf(w) − αf_0(u)‖` and `‖w − u‖` there.
    `pred_w_test`, `pred_u_test` are `α f` on the test inputs, shape `(saves, n_test, k)`;
    `params_w`, `params_u` are `w(t) − w0`, `u(t) − w0` when `save_params=True`.

    `stats` has, per flow, `num_steps`, `num_accepted_steps`, `num_rejected_steps`,
    `vf_evaluations`, `kernel_evaluations` (one per step of the exponential integrator),
    `wall_s`, the solver and tolerances. `status` is a `FlowStatus`
    and `message` says how the solve ended, with times and the fix; `reached` maps each
    flow computed (`"gradient"`, `"tangent"`, `"gd"`) to the time it reached (`t1` unless
    it stopped early): nothing past that time is shown (`verify` calls checks there
    inconclusive).
    """

    ts: np.ndarray
    t1: float
    alpha: float
    R0: float
    sigma_min0: float
    sigma_max0: float
    dist_u_inf: float
    y_norm: float
    stats: dict[str, Any]
    status: FlowStatus
    message: str
    loss_w: np.ndarray | None = None
    loss_u: np.ndarray | None = None
    dist_w: np.ndarray | None = None
    dist_u: np.ndarray | None = None
    gap_f: np.ndarray | None = None
    gap_w: np.ndarray | None = None
    sigma_min_t: np.ndarray | None = None
    sigma_max_t: np.ndarray | None = None
    kernel_drift: np.ndarray | None = None
    dist_u_to_limit: np.ndarray | None = None
    err_w: np.ndarray | None = None
    err_loss_w: np.ndarray | None = None
    err_res_w: np.ndarray | None = None
    round_res_w: np.ndarray | None = None
    step_ts: np.ndarray | None = None
    step_loss_w: np.ndarray | None = None
    step_dist_w: np.ndarray | None = None
    step_loss_u: np.ndarray | None = None
    step_dist_u: np.ndarray | None = None
    step_gap_f: np.ndarray | None = None
    step_gap_w: np.ndarray | None = None
    pred_w_test: np.ndarray | None = None
    pred_u_test: np.ndarray | None = None
    loss_w_test: np.ndarray | None = None
    loss_u_test: np.ndarray | None = None
    acc_w_test: np.ndarray | None = None
    acc_u_test: np.ndarray | None = None
    ts_gd: np.ndarray | None = None
    loss_gd: np.ndarray | None = None
    dist_gd: np.ndarray | None = None
    gap_gd: np.ndarray | None = None
    params_w: np.ndarray | None = None
    params_u: np.ndarray | None = None
    reached: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status is FlowStatus.SUCCESS

    def time_reached(self, flow: str) -> float:
        """The time up to which `flow` (`"gradient"`, `"tangent"`, `"gd"`) was computed:
        `t1` when it completed, the last good time when it stopped early (step limit,
        non-finite values, divergence)."""
        return float(self.reached.get(flow, self.t1))

    def scalars(self) -> dict[str, Any]:
        """The scalar fields, JSON-ready."""
        return jsonable(
            {
                "t1": self.t1,
                "alpha": self.alpha,
                "R0": self.R0,
                "sigma_min0": self.sigma_min0,
                "sigma_max0": self.sigma_max0,
                "dist_u_inf": self.dist_u_inf,
                "status": self.status.name.lower(),
                "message": self.message,
                "reached": self.reached,
                "stats": self.stats,
            }
        )

    def to_xarray(self) -> Any:
        """An `xarray.Dataset` with coordinate `t` (the save times) and one variable per
        tracked series, under the same names; the per-step series have coordinate
        `step_t`; test predictions dimensions `(t, test_point, output)`; parameters
        `param`."""
        import xarray as xr

        data_vars: dict[str, Any] = {}
        for name, long_name in SERIES.items():
            value = getattr(self, name)
            if value is not None:
                data_vars[name] = ("t", np.asarray(value), {"long_name": long_name})
        if self.step_ts is not None:
            for name in (
                "step_loss_w",
                "step_dist_w",
                "step_loss_u",
                "step_dist_u",
                "step_gap_f",
                "step_gap_w",
            ):
                value = getattr(self, name)
                if value is not None:
                    data_vars[name] = ("step_t", np.asarray(value))
        for name in ("pred_w_test", "pred_u_test"):
            value = getattr(self, name)
            if value is not None:
                # Points × outputs at each save (a flat `(saves, n_test)` is one output).
                value = np.asarray(value)
                value = value.reshape(value.shape[0], value.shape[1], -1)
                data_vars[name] = (("t", "test_point", "output"), value)
        for name in ("params_w", "params_u"):
            value = getattr(self, name)
            if value is not None:
                data_vars[name] = (("t", "param"), np.asarray(value))
        coords: dict[str, Any] = {"t": np.asarray(self.ts)}
        if self.step_ts is not None:
            coords["step_t"] = np.asarray(self.step_ts)
        scalars = self.scalars()
        attrs = {k: v for k, v in scalars.items() if k not in ("stats", "reached")}
        attrs["stats"] = json.dumps(scalars["stats"])
        attrs["reached"] = json.dumps(scalars["reached"])
        attrs = {k: (str(v) if isinstance(v, str) else v) for k, v in attrs.items()}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)
