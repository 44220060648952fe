"""The two gradient flows side by side (docs/theory.md, "The two gradient flows").

`solve_flows` is the one entry point. It resolves the settings every solve shares (save
times, tolerances against the dtype's resolution, the solver), then computes, each by its
own piece:

- the tangent flow `u(t)` of the linearised network, by a tangent-flow strategy
  (`_tangent_methods`: `ClosedForm`, `TangentODE`);
- the network's gradient flow `w(t)` (`_gradient_flow.solve_gradient_flow`, integrated by
  `_integrate` with a solver from `_solvers`) and its error budget
  (`_gradient_flow.error_budget`);
- the kernel diagnostics and test predictions (`_diagnostics`);
- gradient descent, optionally (`_gd`);

and gathers them, with how each ended, into a `FlowSolution`. A new integrator plugs in
at `_solvers`, a new tangent-flow method at `_tangent_methods`; the loss enters only
through `Problem` (its `loss`, `loss_gradient` and `residual`): a loss other than the
square has no closed-form tangent flow (`tangent="auto"` integrates it), and the
exponential integrator's linear part carries its Hessian.
"""

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jaxtyping import ArrayLike, Float

from ._accuracy import solve_to_accuracy
from ._adams import Accuracy, ExponentialAdams
from ._diagnostics import diagnostics_method, kernel_diagnostics, test_predictions
from ._exponential import ExponentialNTK, InitialFactors
from ._gd import gradient_descent
from ._gradient_flow import (
    MAX_RTOL,
    ErrorBudget,
    GradientPath,
    error_budget,
    solve_gradient_flow,
)
from ._initial_kernel import InitialKernel, as_initial_kernel
from ._integrate import SolveSettings, gradient_norms, losses
from ._problem import Problem
from ._progress import RichProgressMeter, meter as progress_meter
from ._rounding import motion_resolution, residual_rounding
from ._save_times import save_times
from ._sharding import split_problem
from ._solution import FlowSolution, FlowStatus, GDStats, SolveStats
from ._solvers import (
    SOLVER_NAMES as SOLVER_NAMES,
    as_solver,
    choose_solver as choose_solver,
    default_solver as default_solver,
    get_solver as get_solver,
)
from ._tangent import TangentFlow
from ._tangent_methods import AbstractTangentMethod, TangentPath, get_tangent_method

# `rtol="auto"`: this, unless the dtype cannot resolve it (`_relative_tolerance`).
DEFAULT_RTOL = 1e-8
# `ExponentialAdams` with `rtol="auto"`: the gaps to this fraction of their supremum, the
# distance and the loss to `ADAMS_RTOL` (`_accuracy`).
ADAMS_GAP_RTOL = 1e-3
ADAMS_RTOL = 1e-6
# Its first step, as a fraction of the fastest mode's time scale 1/(α²λ_max).
ADAMS_FIRST_STEP = 1e-3
# A Runge–Kutta pair's first step, likewise (its re-solve's is `LOOSEN^(1/5)` longer:
# `_integrate.integrate`).
RK_FIRST_STEP = 1e-2
FLOWS = ("gradient", "tangent")
# Saved states beyond this many bytes are refused (lower `saveat`).
MAX_SAVED_BYTES = 8 * 2**30


def _relative_tolerance(problem: Problem, rtol: float | str, motion: float) -> tuple[float, float]:
    """`rtol` resolved against the flow's resolution `ρ` (`motion_resolution`): `"auto"`
    is `max(1e-8, 1000ε, ρ)`; a number below `ρ` is raised to `ρ` with a warning.
    Returns `(rtol, ρ)`."""
    rho = motion_resolution(problem, motion)
    eps = float(jnp.finfo(problem.dtype).eps)
    if rtol == "auto":
        return max(DEFAULT_RTOL, 1000 * eps, rho), rho
    rtol = float(rtol)
    if rtol < rho <= MAX_RTOL:  # (beyond MAX_RTOL nothing is integrated: UNRESOLVED says so)
        warnings.warn(
            f"rtol={rtol:g} is below what {jnp.dtype(problem.dtype).name} resolves for this "
            f"problem (ρ ≈ {rho:.2g}: rounding moves the residual by that fraction of its "
            f"motion along the flow); using rtol={rho:.2g}. Use float64, or lower α (the "
            "rounding of α f grows like α)",
            RuntimeWarning,
            stacklevel=4,
        )
        return rho, rho
    return max(rtol, rho), rho


def _accuracy(problem: Problem, rtol: float | str, rho: float, dist_u_inf: float) -> Accuracy:
    """What `ExponentialAdams` holds each step to (docs/flows.md, "The accuracy policy"):
    with `rtol="auto"`, the gaps to `1e-3` and the distance and loss to `1e-6` of their
    scale, or what the dtype resolves (`max(1000ε, ρ)`) where coarser; a number `rtol` is
    used for all three (an expert's override). The distance's scale starts at
    `‖u∞ − w0‖`."""
    floor = max(1000 * float(jnp.finfo(problem.dtype).eps), rho)
    if rtol == "auto":
        gap, dist = max(ADAMS_GAP_RTOL, floor), max(ADAMS_RTOL, floor)
    else:
        gap = dist = max(float(rtol), rho)
    scales = (math.inf, math.inf, dist_u_inf)
    return Accuracy(gap=gap, dist=dist, loss=dist, scales=scales, floor=floor)


def _check_arguments(flows: Sequence[str], rtol: Any, atol: Any, max_steps: Any) -> tuple:
    flows = tuple(flows)
    if set(flows) - set(FLOWS) or not flows:
        raise ValueError(
            f"flows must be a non-empty subset of ('gradient', 'tangent'), got flows={flows!r}"
        )
    if rtol != "auto" and not (
        isinstance(rtol, int | float) and not isinstance(rtol, bool) and 0 < rtol < 1
    ):
        raise ValueError(f"rtol must be 'auto' or a number in (0, 1), got rtol={rtol!r}")
    if atol != "auto" and not (isinstance(atol, int | float) and math.isfinite(atol) and atol > 0):
        raise ValueError(f"atol must be 'auto' or a number > 0, got atol={atol!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer ≥ 1, got max_steps={max_steps!r}")
    return flows


def loss_curvature(problem: Problem) -> float:
    """The loss's curvature that sets the flows' time scale (docs/theory.md, "Losses other
    than the square"): its `μ` when strongly convex (1 for the squared loss), else the
    curvature at `z0 = α f(w0)` along the first gradient `g0 = ∇R(z0)`,
    `μ0 = g0ᵀ∇²R(z0)g0/‖g0‖²` (an estimate of the early rate, not a bound)."""
    loss = problem.objective
    if loss.strongly_convex:
        return float(loss.mu)  # pyright: ignore[reportArgumentType]
    z0 = problem.alpha_array * problem.f(problem.w0)
    g0 = problem.loss_gradient(z0)
    gg = float(jnp.vdot(g0, g0))
    if not gg > 0:
        return 1.0  # at a minimiser already: any scale will do
    _, hg = jax.jvp(problem.loss_gradient, (z0,), (g0,))
    mu0 = float(jnp.vdot(g0, hg)) / gg
    return mu0 if math.isfinite(mu0) and mu0 > 0 else 1.0


def _rate_scale(problem: Problem) -> float:
    """The loss's `L`, which scales the fastest rate `α²Lλ_max(K0)` (1 for the squared
    loss, and when `L` is unknown or 0)."""
    L = problem.objective.L
    return 1.0 if L is None or not L > 0 else L


def _motion(problem: Problem, tangent: TangentFlow, mu: float) -> tuple[float, float]:
    """How far the residual moves along the flow, and `‖u∞ − w0‖`: the tangent flow's for
    the squared loss (`α‖K0 c∞‖` and `‖J_0ᵀ c∞‖`); for another loss, the same for the
    Newton-like target `z0 − ∇R(z0)/μ` (`μ` from `loss_curvature`): scales for the
    tolerances, not bounds."""
    if problem.squared:
        c_inf = tangent.limit_coefficients()
        z = tangent.eigenvectors.T @ c_inf
        motion = float(problem.alpha * jnp.linalg.norm(tangent.eigenvalues * z))
        return motion, float(tangent.displacement_norm(c_inf))
    g0 = problem.loss_gradient(tangent.r0 + problem.y) / mu
    lam = tangent.eigenvalues
    keep = lam > tangent.rank_tolerance
    z = tangent.eigenvectors.T @ g0
    motion = float(jnp.linalg.norm(jnp.where(keep, z, 0.0)))
    dist = float(jnp.sqrt(jnp.sum(jnp.where(keep, z * z / jnp.where(keep, lam, 1.0), 0.0))))
    return motion, dist / problem.alpha


def _settings(
    problem: Problem,
    tangent: TangentFlow,
    kernel: InitialKernel,
    *,
    t1: float | str,
    saveat: int | npt.ArrayLike,
    spacing: str,
    solver: diffrax.AbstractSolver | ExponentialAdams | str,
    rtol: float | str,
    atol: float | str,
    max_steps: int,
    meter: diffrax.AbstractProgressMeter,
    saved_flows: int,
) -> tuple[SolveSettings, float, float]:
    """The settings every solve shares, the flow's resolution `ρ` and the tangent flow's
    total displacement `‖u∞ − w0‖` (docs/theory.md, "Horizon and tolerances")."""
    lam = np.asarray(tangent.eigenvalues)
    mu = loss_curvature(problem)
    fastest = problem.alpha**2 * float(lam[-1]) * _rate_scale(problem)
    t_fast = 1.0 / fastest if fastest > 0 else math.inf
    t1, ts = save_times(
        t1, saveat, kernel.sigma_min_resolved, problem.alpha, mu, t_fast, spacing=spacing
    )
    if len(ts) * problem.p * 8 * saved_flows > MAX_SAVED_BYTES:
        raise ValueError(
            f"saving {len(ts)} states of p={problem.p} parameters needs more than 8 GiB; "
            "lower saveat"
        )
    if isinstance(solver, str):
        cond = float(lam[-1] / lam[0]) if lam[0] > 0 else math.inf
        # How many of the fastest mode's time scales the horizon spans.
        span = t1 * fastest
        solver = choose_solver(problem, cond, span=span)
    # How far the residual moves along the flow (‖α J_0 (u∞ − w0)‖ = α‖K0 c∞‖) and ‖u∞ − w0‖.
    motion, dist_u_inf = _motion(problem, tangent, mu)
    requested = rtol
    rtol, resolution = _relative_tolerance(problem, rtol, motion)
    if atol == "auto":
        scale = dist_u_inf / math.sqrt(problem.p)
        atol = rtol * (scale if scale > 0 else 1e-12)
    # The exponential integrator starts on the fastest mode's time scale: a first step
    # across the fast transient samples the remainder N_k only after it, where the error
    # estimate cannot see what the step missed (docs/flows.md).
    dt0 = initial = accuracy = None
    if isinstance(solver, ExponentialNTK | ExponentialAdams):
        if fastest > 0:
            dt0 = min(t1, t_fast)
        # Its first step is at w0: K0 and its eigendecomposition, not formed again.
        dtype = problem.dtype
        initial = InitialFactors(
            jnp.asarray(kernel.K, dtype),
            jnp.asarray(kernel.eigenvalues, dtype),
            jnp.asarray(kernel.eigenvectors, dtype),
        )
    elif fastest > 0:  # (a first step of its own, not diffrax's: see RK_FIRST_STEP)
        dt0 = min(t1, RK_FIRST_STEP * t_fast)
    if isinstance(solver, ExponentialAdams):
        accuracy = _accuracy(problem, requested, resolution, dist_u_inf)
        # It starts well inside the fastest mode's time scale: its first steps have no
        # history (order 1), and its error control grows them fast.
        dt0 = ADAMS_FIRST_STEP * (t1 if dt0 is None else dt0)
        rtol = accuracy.dist
    if isinstance(meter, RichProgressMeter):  # (the time reached, the share of log t)
        scale = t_fast if fastest > 0 else math.nan
        meter = dataclasses.replace(meter, t1=float(t1), scale=scale)
    settings = SolveSettings(
        t1, ts, solver, rtol, float(atol), max_steps, meter, dt0, initial, accuracy
    )
    return settings, resolution, dist_u_inf


def _tangent_series(problem: Problem, path: TangentPath) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {
        "loss_u": losses(problem, path.residuals),
        "dist_u": np.linalg.norm(path.deltas, axis=1),
        "dist_u_to_limit": path.dist_to_limit,
    }
    if not problem.squared:
        out["grad_u"] = gradient_norms(problem, path.residuals)
    return out


def _gradient_series(
    problem: Problem, flow: GradientPath, tangent: TangentPath | None
) -> dict[str, np.ndarray]:
    deltas, steps = flow.path.deltas, flow.path.steps
    out = {
        "loss_w": flow.loss,
        "dist_w": np.linalg.norm(deltas, axis=1),
        "round_res_w": residual_rounding(problem, deltas),
        "step_ts": steps.ts,
        "step_loss_w": steps.loss,
        "step_dist_w": steps.dist,
    }
    if not problem.squared:
        out["grad_w"] = gradient_norms(problem, flow.residuals)
    if tangent is None:
        return out
    closed = tangent.closed_form
    if closed is not None and len(steps.ts):
        # The tangent flow at the gradient flow's steps too (closed form: cheap), so both
        # are drawn at the same resolution.
        st = jnp.asarray(steps.ts, problem.dtype)
        out["step_loss_u"] = np.asarray(jax.lax.map(closed.loss, st, batch_size=512))
        out["step_dist_u"] = np.asarray(jax.lax.map(closed.distance, st, batch_size=512))
        out["step_gap_f"], out["step_gap_w"] = steps.gap_f, steps.gap_w
    out["gap_f"] = np.linalg.norm(flow.residuals - tangent.residuals, axis=1)
    out["gap_w"] = np.linalg.norm(deltas - tangent.deltas, axis=1)
    return out


def _ending(tangent: TangentPath | None, gradient: GradientPath | None) -> tuple[FlowStatus, str]:
    """The solve's status and message: a tangent ODE that stopped short first (the
    gradient flow's own ending, if also short, follows)."""
    status, message = FlowStatus.SUCCESS, "The flows were integrated to t1."
    if gradient is not None:
        status, message = gradient.status, gradient.message
    if tangent is not None and tangent.status is not FlowStatus.SUCCESS:
        if status is FlowStatus.SUCCESS:
            return tangent.status, tangent.message
        return status, f"{tangent.message} {message}"
    return status, message


def _meter(progress: bool | diffrax.AbstractProgressMeter) -> diffrax.AbstractProgressMeter:
    if isinstance(progress, diffrax.AbstractProgressMeter):
        return progress
    return progress_meter() if progress else diffrax.NoProgressMeter()


def _gradient_flow(
    problem: Problem,
    settings: SolveSettings,
    u: TangentPath | None,
    resolution: float,
    policy: bool,
    error_estimate: bool,
) -> tuple[GradientPath, ErrorBudget | None]:
    """The gradient flow and its error budget (`None` without the error estimate): by the
    accuracy policy (`_accuracy`: the budget is the controller, loose then tighter) for
    `ExponentialAdams` with `rtol="auto"`, else one solve and a re-solve 10× looser."""
    if policy and resolution <= MAX_RTOL and isinstance(settings.solver, ExponentialAdams):
        return solve_to_accuracy(problem, settings, resolution=resolution)
    along = None if u is None else u.closed_form  # gaps at every step, if cheap
    w = solve_gradient_flow(problem, settings, resolution=resolution, tangent=along)
    budget = None
    if error_estimate and np.isfinite(w.loss[1:]).any():
        budget = error_budget(problem, settings, w, tangent=along)
    return w, budget


def _gradient_descent(problem: Problem, closed: TangentFlow, step: float, ts, delta_w, out):
    """Gradient descent with step `step`, its series added to `out` (with its gap to the
    gradient flow's saves `delta_w`, when given)."""
    L = problem.objective.L
    lam_max = float(closed.eigenvalues[-1])
    gd = gradient_descent(problem, step, ts, lambda_max=lam_max, smoothness=1.0 if L is None else L)
    out["ts_gd"], out["loss_gd"] = gd.ts, gd.loss
    out["dist_gd"] = np.linalg.norm(gd.deltas, axis=1)
    if delta_w is not None:
        out["gap_gd"] = np.linalg.norm(gd.deltas - delta_w, axis=1)
    return gd


def solve_flows(
    problem: Problem,
    t1: float | str = "auto",
    *,
    saveat: int | npt.ArrayLike = 100,
    spacing: str = "log",
    solver: str | diffrax.AbstractSolver | ExponentialAdams = "auto",
    rtol: float | str = "auto",
    atol: float | str = "auto",
    flows: Sequence[str] = FLOWS,
    tangent: str | AbstractTangentMethod = "auto",
    gd_step: float | None = None,
    max_steps: int = 100_000,
    progress: bool | diffrax.AbstractProgressMeter = False,
    error_estimate: bool = True,
    save_params: bool = False,
    diagnostics: bool | str = True,
    kernel: InitialKernel | Float[ArrayLike, "n n"] | None = None,
    devices: Any = None,
) -> FlowSolution:
    """Integrate the network's gradient flow `w(t)` and the tangent flow `u(t)` from the
    same `w0`, and record every quantity the theorem speaks of at the save times.

    **Arguments:**

    - `problem`: the `Problem`.
    - `t1`: the horizon, or `"auto"`: the time at which the theorem's envelope
      `R0·exp(−tμα²σ_min²/2)` reaches `1e-6·R0` (`μ = 1` for the squared loss; for a
      loss that is not strongly convex, the curvature at `w0` along the first gradient,
      `loss_curvature`); with an array `saveat`, its last time.
    - `saveat`: an int (that many save times: 0 and the rest evenly spaced in `log t`
      from 1% of the fastest time scale `1/(α²Lλ_max)` to `t1`, or in `t` with
      `spacing="linear"`) or an increasing array of times (0 is prepended if absent).
    - `solver`: `"auto"` (an exponential integrator when the flow is stiff, see
      `choose_solver`), `"adams"` (`ExponentialAdams`, squared loss), `"exponential"`
      (`ExponentialNTK`), `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`, or any diffrax
      solver. The tangent flow's ODE (`tangent="ode"`) uses Tsit5 when the gradient
      flow's solver is exponential.
    - `rtol`, `atol`: the tolerances. With `ExponentialAdams`, `rtol="auto"` is the
      accuracy policy (docs/flows.md, "The accuracy policy"): the gaps `‖w − u‖`,
      `‖αf(w) − αf_0(u)‖` to `1e-3` of themselves, the distance and the loss to `1e-6`,
      solved loose first and tightened until the error budget shows it
      (`stats["error_estimate"]["accuracy"]` reports what it reached); a number is used
      for all of them, with one re-solve 10× looser for the budget. Otherwise they are
      the PID controller's on the displacement `w − w0`:
      `rtol="auto"` is `1e-8`, or what the dtype can resolve when that is coarser
      (`max(1e-8, 1000ε, ρ)` with the flow's resolution `ρ` from `motion_resolution`;
      float32: about `1e-4` or more); a number below `ρ` is raised to `ρ` with a
      `RuntimeWarning`. When `ρ > 1e-2` the gradient flow is not integrated
      (`FlowStatus.UNRESOLVED`): rounding would be most of what it shows.
      `atol="auto"` is `rtol` times the RMS entry of `u∞ − w0` (the scale of the motion).
    - `flows`: which of `"gradient"`, `"tangent"` to integrate.
    - `tangent`: how the tangent flow is computed: `"auto"` (the closed form for the
      squared loss, the ODE for any other), `"closed_form"` (`ClosedForm`: the
      eigendecomposition of `K0`; exact; squared loss only), `"ode"` (`TangentODE`:
      diffrax on `jax.linearize`), or an `AbstractTangentMethod`.
    - `gd_step`: if given, also run gradient descent with this step `η`.
    - `max_steps`: the solver's step budget.
    - `progress`: `True` for a progress bar on stderr, or any diffrax progress meter.
    - `error_estimate`: re-solve the gradient flow at 10× looser tolerances and use the
      difference as the error budget of every gradient-flow quantity (see `verify`).
    - `save_params`: keep `w(t) − w0` and `u(t) − w0` (`n_saves × p` numbers each).
    - `diagnostics`: `σ(J_{w(t)})` and the kernel drift at every save: `True`/`"dense"`
      (a kernel and two `eigh`s each), `"lanczos"` (iterative, no kernel formed:
      docs/flows.md, "Kernel diagnostics at scale") or `False`.
    - `kernel`: the problem's `InitialKernel` (e.g. `certify(problem).kernel`: `K0` is
      then neither formed nor factored again), or a `K0` array.
    - `devices`: split the training points over devices (a count dividing `n`, devices,
      or a `Mesh`; what is split: docs/scale.md).

    **Returns:** a `FlowSolution`.
    """
    flows = _check_arguments(flows, rtol, atol, max_steps)
    diag_method = diagnostics_method(diagnostics)
    method = get_tangent_method(tangent, problem)
    solver = as_solver(solver)
    meter = _meter(progress)
    problem, mesh = split_problem(problem, devices, strict=True)
    k0 = as_initial_kernel(problem, kernel, devices=mesh)
    closed = TangentFlow(problem, k0)
    settings, resolution, dist_u_inf = _settings(
        problem,
        closed,
        k0,
        t1=t1,
        saveat=saveat,
        spacing=spacing,
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        meter=meter,
        saved_flows=len(flows),
    )
    ts = settings.ts
    out: dict[str, Any] = {"ts": ts}
    stats: dict[str, SolveStats | GDStats] = {}
    reached: dict[str, float] = {}

    u: TangentPath | None = None
    w: GradientPath | None = None
    if "tangent" in flows:
        u = method.solve(closed, settings)
        out.update(_tangent_series(problem, u))
        stats["tangent"], reached["tangent"] = u.stats, u.t_reached
    if "gradient" in flows:
        policy = error_estimate and rtol == "auto"
        w, budget = _gradient_flow(problem, settings, u, resolution, policy, error_estimate)
        out.update(_gradient_series(problem, w, u))
        stats["gradient"], reached["gradient"] = w.stats, w.t_reached
        if budget is not None:
            out.update(err_w=budget.err_w, err_loss_w=budget.err_loss_w)
            out["err_res_w"], stats["error_estimate"] = budget.err_res_w, budget.stats
    status, message = _ending(u, w)
    delta_w = None if w is None else w.path.deltas
    delta_u = None if u is None else u.deltas

    if delta_w is not None and diag_method is not None:
        out.update(
            kernel_diagnostics(
                problem, delta_w, k0, method=diag_method, progress=progress is not False
            )
        )
    if problem.data.has_test:
        out.update(test_predictions(problem, delta_w, delta_u))
    if gd_step is not None:
        gd = _gradient_descent(problem, closed, gd_step, ts, delta_w, out)
        stats["gd"], reached["gd"] = gd.stats, gd.t_reached
        if (diverged := gd.divergence()) is not None:
            message += " " + diverged
            status = FlowStatus.GD_DIVERGED if status is FlowStatus.SUCCESS else status
    if save_params:
        out["params_w"], out["params_u"] = delta_w, delta_u
    return FlowSolution(
        **out,
        t1=settings.t1,
        alpha=problem.alpha,
        R0=float(problem.loss_of_residual(closed.r0)),
        sigma_min0=k0.sigma_min_resolved,
        sigma_max0=math.sqrt(float(closed.eigenvalues[-1])),
        dist_u_inf=dist_u_inf,
        y_norm=float(np.linalg.norm(np.asarray(problem.y))),
        stats=stats,
        status=status,
        message=message,
        reached=reached,
        diagnostics=None if delta_w is None else diag_method,
        loss=problem.loss_name,
    )
