"""The network's gradient flow and its error budget (docs/theory.md, "The two gradient
flows" and "The gradient flow's budget").

`solve_gradient_flow` integrates `ẇ = −α J_wᵀ ∇R(α f(w))` (`GradientField`: one VJP per
evaluation) with the chosen solver, or declines when the dtype cannot resolve the motion
(`FlowStatus.UNRESOLVED`). `error_budget` re-solves it at 10× looser tolerances and takes
the difference as the error budget of every gradient-flow quantity.
"""

import dataclasses

import diffrax
import jax.numpy as jnp
import numpy as np

from ._exponential import ExponentialNTK
from ._integrate import (
    GradientField,
    Path,
    SolveSettings,
    ending,
    gradient_norms,
    integrate,
    losses,
    not_integrated,
    residuals,
)
from ._problem import Problem
from ._stats import FlowStatus, SolveStats
from ._tangent import TangentFlow

# The gradient flow is not integrated when its resolution `ρ` (`motion_resolution`) is
# coarser than this: rounding would be most of what it shows (`FlowStatus.UNRESOLVED`).
MAX_RTOL = 1e-2
# The error estimate's re-solve loosens both tolerances by this factor.
LOOSEN = 10.0


@dataclasses.dataclass(frozen=True, eq=False)
class GradientPath:
    """The gradient flow's `path` (its `stats` with the resolution `ρ`), its `residuals`
    (`α f(w(t_i)) − y`) and `loss` (`R`) at the save times, and how it ended
    (`status`, `message`, `t_reached`)."""

    path: Path
    residuals: np.ndarray
    loss: np.ndarray
    status: FlowStatus
    message: str
    t_reached: float

    @property
    def stats(self) -> SolveStats:
        return self.path.stats


@dataclasses.dataclass(frozen=True, eq=False)
class ErrorBudget:
    """The gradient flow's error budget at the save times: `err_w` (`‖w_tight − w_loose‖`),
    `err_loss_w` (of the loss), `err_res_w` (of `α f(w) − y`); NaN where either solve
    stopped short. `stats` says how the looser solve went."""

    err_w: np.ndarray
    err_loss_w: np.ndarray
    err_res_w: np.ndarray
    stats: SolveStats


def solve_gradient_flow(
    problem: Problem,
    settings: SolveSettings,
    *,
    resolution: float,
    tangent: TangentFlow | None = None,
) -> GradientPath:
    """The gradient flow over `settings.ts`, unless its `resolution` `ρ` is above
    `MAX_RTOL`; with the closed-form `tangent` flow, the gaps to it at every step."""
    dtype = jnp.dtype(problem.dtype).name
    if resolution > MAX_RTOL:
        path = not_integrated(
            settings, problem.p, "unresolved: the dtype cannot resolve the motion"
        )
        status, t_reached = FlowStatus.UNRESOLVED, 0.0
        message = (
            f"The gradient flow was not integrated: in {dtype} the network cannot resolve "
            f"its own motion (rounding moves the residual by ρ ≈ {resolution:.2g} of how "
            f"far it moves along the flow, so no tolerance below {MAX_RTOL:g} is "
            "meaningful). Lower α (the rounding of α f grows like α) or use float64."
        )
    else:
        path = integrate(GradientField(problem), problem, settings, tangent=tangent)
        status, message, t_reached = ending(path, settings, flow="gradient")
    path = dataclasses.replace(path, stats=dataclasses.replace(path.stats, resolution=resolution))
    r = residuals(problem, path.deltas)
    return GradientPath(
        path=path,
        residuals=r,
        loss=losses(problem, r),
        status=status,
        message=message,
        t_reached=t_reached,
    )


def error_budget(
    problem: Problem,
    settings: SolveSettings,
    flow: GradientPath,
    *,
    tangent: TangentFlow | None = None,
) -> ErrorBudget:
    """Re-solve the gradient flow at `LOOSEN`× looser tolerances; the difference to
    `flow` is the budget (docs/theory.md, "The gradient flow's budget").

    The exponential integrator's re-solve advances with its embedded second-order
    solution: a looser tolerance alone can give the very same steps (one step over the
    whole horizon in the lazy regime) and a zero budget.
    """
    exponential = isinstance(settings.solver, ExponentialNTK)
    loose = integrate(
        GradientField(problem),
        problem,
        settings,  # the same meter: a different one would recompile the solve
        solver=ExponentialNTK(embedded=True) if exponential else None,
        loosen=LOOSEN,
        tangent=tangent,
    )
    how = "embedded 2nd-order solution, " if exponential else ""
    failed = None if bool(loose.result == diffrax.RESULTS.successful) else str(loose.result)
    stats = dataclasses.replace(
        loose.stats, method=f"re-solve ({how}{LOOSEN:g}× rtol/atol)", failed=failed
    )
    budget = budget_between(problem, flow, loose.deltas, residuals(problem, loose.deltas), stats)
    return at_least_local_targets(problem, flow, budget)


def budget_between(
    problem: Problem,
    flow: GradientPath,
    loose_deltas: np.ndarray,
    loose_residuals: np.ndarray,
    stats: SolveStats,
) -> ErrorBudget:
    """The error budget of `flow` from a looser solve of the same flow, given by its
    displacements and residuals at the save times (docs/theory.md,
    "The gradient flow's budget"): at each save time the largest difference of the two
    solutions' states and residuals up to it (integration errors accumulate; the two
    solves' errors can cross at a save, where the difference alone would be near zero),
    and the loss's budget propagated from the residual's, `‖∇R(z)‖e_r + L e_r²/2`, not the
    difference of the losses (which cancels when the two residuals' errors are orthogonal
    to `∇R`). NaN where either solve stopped short, and from there on: `verify` then calls
    a check there inconclusive rather than deciding it without a budget.
    (`at_least_local_targets` raises it to what one step was held to.)"""
    res_l = loose_residuals
    err_w = _running_max(np.linalg.norm(flow.path.deltas - loose_deltas, axis=1))
    err_res = _running_max(np.linalg.norm(flow.residuals - res_l, axis=1))
    err_loss = _loss_budget(problem, flow, err_res)
    if problem.objective.L is None:  # (unknown curvature: the first-order term, or the difference)
        err_loss = np.maximum(err_loss, np.abs(flow.loss - losses(problem, res_l)))
    return ErrorBudget(err_w=err_w, err_loss_w=err_loss, err_res_w=err_res, stats=stats)


def at_least_local_targets(
    problem: Problem, flow: GradientPath, budget: ErrorBudget
) -> ErrorBudget:
    """`budget` never below what `flow`'s solver held one step's local error to, in `w`
    and in the residual (`Path.targets`, `ExponentialAdams`: docs/theory.md, "The
    gradient flow's budget"), after `t = 0`; the loss's propagated again. Where the
    path has no targets, `budget` as it is."""
    if flow.path.targets is None:
        return budget
    target_w, target_r = flow.path.targets
    err_w, err_res = _at_least(budget.err_w, target_w), _at_least(budget.err_res_w, target_r)
    err_loss = _loss_budget(problem, flow, err_res)
    err_loss = np.where(np.isnan(err_loss), err_loss, np.maximum(err_loss, budget.err_loss_w))
    return dataclasses.replace(budget, err_w=err_w, err_res_w=err_res, err_loss_w=err_loss)


def _loss_budget(problem: Problem, flow: GradientPath, err_res: np.ndarray) -> np.ndarray:
    """The loss's budget from the residual's `e_r`: `‖∇R(z)‖e_r + L e_r²/2` (`L` taken as
    0 when unknown: the first-order term)."""
    smooth = problem.objective.L
    grad = gradient_norms(problem, flow.residuals)
    return grad * err_res + 0.5 * (smooth if smooth is not None else 0.0) * err_res**2


def _at_least(err: np.ndarray, target: float) -> np.ndarray:
    """`err` raised to `target` after `t = 0` (where both solves start at `w0`: exact);
    NaN stays NaN."""
    out = np.where(np.isnan(err), err, np.maximum(err, target))
    out[:1] = err[:1]
    return out


def _running_max(err: np.ndarray) -> np.ndarray:
    """`max_{s ≤ t} err(s)` along the save times; NaN from the first NaN on (`maximum`
    propagates NaN)."""
    return np.maximum.accumulate(err)
