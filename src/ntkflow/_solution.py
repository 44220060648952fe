"""`FlowSolution`: what `solve_flows` returns, and its xarray form."""

import dataclasses
import enum
import json
from typing import Any

import numpy as np

from ._json import jsonable
from ._repr import concise, shown


class _Record:
    """Read access by key (`stats["gradient"]["num_steps"]`) to a frozen stats record, as
    to the dictionaries results held before the records were typed; `as_dict` is the
    record's JSON form."""

    _keep_none: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The fields, in order; those that are `None` are left out (they do not apply),
        except the ones named in `_keep_none`."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # pyright: ignore[reportArgumentType]
            if getattr(self, f.name) is not None or f.name in self._keep_none
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)


@dataclasses.dataclass(frozen=True)
class SolveStats(_Record):
    """How one flow was computed.

    **Fields:** `method` (the tangent flow's strategy, or how the error estimate was
    made), diffrax's step counts (`max_steps`, `num_accepted_steps`, `num_rejected_steps`,
    `num_steps`), `vf_evaluations` (vector-field evaluations, `None` when the solver's
    count is unknown), `kernel_evaluations` (the exponential integrator's steps:
    each forms an empirical NTK, except those from `w0`, which reuse `K0`'s factors),
    `wall_s`, `solver` (its class name), the tolerances `rtol`,
    `atol`, the flow's resolution `resolution` (`ρ`, docs/theory.md "Rounding"),
    `skipped` (why the flow was not integrated), `failed` (how a solve that was
    expected to finish ended) and, for the error estimate of an accuracy policy,
    `accuracy` (the targets, the solves it took and the budget it reached:
    `_accuracy.AccuracyReport.as_dict`). Fields that do not apply are `None`.
    """

    method: str | None = None
    max_steps: int | None = None
    num_accepted_steps: int | None = None
    num_rejected_steps: int | None = None
    num_steps: int | None = None
    vf_evaluations: int | None = None
    kernel_evaluations: int | None = None
    wall_s: float | None = None
    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    resolution: float | None = None
    skipped: str | None = None
    failed: str | None = None
    accuracy: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class GDStats(_Record):
    """How gradient descent ran: its step `η`, the `iterations` it took, the stability
    limit `2/(α² λ_max(K0))`, the iteration by which it diverged (`None` if it did not)
    and its wall time."""

    _keep_none = ("diverged_at",)

    step: float
    iterations: int
    stable_limit: float
    diverged_at: int | None
    wall_s: float


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
    "grad_w": "‖∇R(αf(w(t)))‖ (a loss other than the square)",
    "grad_u": "‖∇R(αf_0(u(t)))‖ (a loss other than the square)",
    "err_w": "error budget of w(t): ‖w_tight − w_loose‖",
    "err_loss_w": "error budget of the gradient-flow loss",
    "err_res_w": "error budget of αf(w(t)): ‖r_tight − r_loose‖",
    "round_res_w": "estimated rounding error of αf(w(t)) − y (docs/theory.md, Rounding)",
    "loss_w_test": "gradient flow test loss: mean over test points of R(αf(w; x)) (½‖αf − y‖²)",
    "loss_u_test": "tangent flow test loss: mean over test points of R(αf_0(u; x))",
    "acc_w_test": "gradient flow test accuracy: fraction of test points classified right",
    "acc_u_test": "tangent flow test accuracy: fraction of test points classified right",
    "loss_gd": "gradient descent loss at t = kη",
    "dist_gd": "‖w_k − w0‖ (gradient descent)",
    "gap_gd": "‖w_k − w(kη)‖ (gradient descent vs flow)",
    "ts_gd": "gradient descent times kη",
}


@concise
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

    `stats` maps each flow computed (`"tangent"`, `"gradient"`, `"error_estimate"`,
    `"gd"`) to how it was computed: a `SolveStats` (steps, vector-field and kernel
    evaluations, wall time, solver, tolerances) or, for gradient descent, a `GDStats`.
    `status` is a `FlowStatus`
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
    stats: dict[str, SolveStats | GDStats]
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
    grad_w: np.ndarray | None = None
    grad_u: np.ndarray | None = None
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
    # How `sigma_min_t`, `sigma_max_t`, `kernel_drift` were computed: "dense", "lanczos"
    # (Ritz values: `verify` never calls a ball-lemma check held on them), or None.
    diagnostics: str | None = None
    # The loss's name (`Problem.loss_name`): the series `loss_*` are of this loss.
    loss: str = "squared"

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
                "diagnostics": self.diagnostics,
                "loss": self.loss,
                "stats": {k: v.as_dict() for k, v in self.stats.items()},
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
        attrs["diagnostics"] = str(self.diagnostics or "none")  # (netCDF has no null)
        attrs = {k: (str(v) if isinstance(v, str) else v) for k, v in attrs.items()}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def _overview(self) -> list[tuple[str, Any]]:
        flows = ", ".join(f"{k}: t={v:.4g}" for k, v in self.reached.items())
        grad = self.stats.get("gradient") or {}
        series = [
            f.name
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        ]
        return [
            ("status", self.status),
            ("t1", self.t1),
            ("ts", self.ts),
            ("reached", shown(flows)),
            ("solver", shown(f"{grad.get('solver')}, {grad.get('num_steps')} steps")),
            (
                "series",
                shown(
                    f"{len(series)} arrays over ts or steps: {', '.join(series[:12])}"
                    + (", …" if len(series) > 12 else "")
                ),
            ),
        ]
