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
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._accuracy import solve_to_accuracy
from ._adams import Accuracy, ExponentialAdams
from ._diagnostics import diagnostics_method, kernel_diagnostics, test_series
from ._exponential import ExponentialNTK, InitialFactors
from ._flow_options import FLOWS as FLOWS, FlowOptions
from ._gd import gradient_descent
from ._gradient_flow import (
    MAX_RTOL,
    ErrorBudget,
    GradientPath,
    error_budget,
    solve_gradient_flow,
)
from ._integrate import SolveSettings, gradient_norms, losses
from ._paths import Budget, FlowPath, Gaps, Steps
from ._problem import Problem
from ._progress import RichProgressMeter, meter as progress_meter
from ._rounding import motion_resolution, residual_rounding
from ._save_times import save_times
from ._solution import FlowSolution
from ._solvers import (
    SOLVER_NAMES as SOLVER_NAMES,
    as_solver,
    choose_solver as choose_solver,
    default_solver as default_solver,
    get_solver as get_solver,
)
from ._stats import FlowStatus
from ._tangent import TangentFlow
from ._tangent_methods import TangentPath, get_tangent_method
from .ntk._initial_kernel import InitialKernel, as_initial_kernel
from .ntk._sharding import split_problem

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


def loss_curvature(problem: Problem) -> float:
    """The loss's curvature that sets the flows' time scale (docs/theory.md, "Losses other
    than the square"): its `μ` when strongly convex (1 for the squared loss), else the
    curvature at `z0 = α f(w0)` along the first gradient `g0 = ∇R(z0)`,
    `μ0 = g0ᵀ∇²R(z0)g0/‖g0‖²` (an estimate of the early rate, not a bound)."""
    loss = problem.objective
    if loss.strongly_convex:
        return float(loss.mu)  # pyright: ignore[reportArgumentType]
    z0 = problem.alpha_array * problem.f0
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


@eqx.filter_jit
def _motion_arrays(tangent: TangentFlow, mu: Float[Array, ""]) -> Float[Array, "2"]:
    problem = tangent.problem
    lam = tangent.eigenvalues
    if problem.squared:
        c_inf = tangent.limit_coefficients()
        z = tangent.eigenvectors.T @ c_inf
        motion = problem.alpha_array * jnp.linalg.norm(lam * z)
        return jnp.stack([motion, tangent.displacement_norm(c_inf)])
    g0 = problem.loss_gradient(tangent.r0 + problem.y) / mu
    keep = lam > tangent.rank_tolerance
    z = tangent.eigenvectors.T @ g0
    motion = jnp.linalg.norm(jnp.where(keep, z, 0.0))
    dist = jnp.sqrt(jnp.sum(jnp.where(keep, z * z / jnp.where(keep, lam, 1.0), 0.0)))
    return jnp.stack([motion, dist / problem.alpha_array])


def _motion(problem: Problem, tangent: TangentFlow, mu: float) -> tuple[float, float]:
    """How far the residual moves along the flow, and `‖u∞ − w0‖`: the tangent flow's for
    the squared loss (`α‖K0 c∞‖` and `‖J_0ᵀ c∞‖`); for another loss, the same for the
    Newton-like target `z0 − ∇R(z0)/μ` (`μ` from `loss_curvature`): scales for the
    tolerances, not bounds. One compiled program (`tangent` holds `problem`)."""
    motion, dist = np.asarray(_motion_arrays(tangent, jnp.asarray(mu, problem.dtype)))
    return float(motion), float(dist)


def _settings(
    problem: Problem,
    tangent: TangentFlow,
    kernel: InitialKernel,
    t1: float | str,
    options: FlowOptions,
    meter: diffrax.AbstractProgressMeter,
) -> tuple[SolveSettings, float, float]:
    """The settings every solve shares, the flow's resolution `ρ` and the tangent flow's
    total displacement `‖u∞ − w0‖` (docs/theory.md, "Horizon and tolerances")."""
    lam = np.asarray(tangent.eigenvalues)
    mu = loss_curvature(problem)
    fastest = problem.alpha**2 * float(lam[-1]) * _rate_scale(problem)
    t_fast = 1.0 / fastest if fastest > 0 else math.inf
    saveat, solver, rtol, atol = options.saveat, options.solver, options.rtol, options.atol
    t1, ts = save_times(
        t1, saveat, kernel.sigma_min_resolved, problem.alpha, mu, t_fast, spacing=options.spacing
    )
    if len(ts) * problem.p * 8 * len(options.flows) > MAX_SAVED_BYTES:
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
        t1, ts, solver, rtol, float(atol), options.max_steps, meter, dt0, initial, accuracy
    )
    return settings, resolution, dist_u_inf


def _tangent_path(problem: Problem, ts: np.ndarray, u: TangentPath) -> FlowPath:
    """The tangent flow's typed path (`FlowPath`) from its solve."""
    return FlowPath(
        ts,
        losses(problem, u.residuals),
        dist=np.linalg.norm(u.deltas, axis=1),
        grad=None if problem.squared else gradient_norms(problem, u.residuals),
        reached=u.t_reached,
        stats=u.stats,
        to_limit=u.dist_to_limit,
    )


def _gradient_path(
    problem: Problem, ts: np.ndarray, w: GradientPath, budget: ErrorBudget | None
) -> FlowPath:
    """The gradient flow's typed path from its solve and its error budget."""
    deltas, steps = w.path.deltas, w.path.steps
    return FlowPath(
        ts,
        w.loss,
        dist=np.linalg.norm(deltas, axis=1),
        grad=None if problem.squared else gradient_norms(problem, w.residuals),
        reached=w.t_reached,
        stats=w.stats,
        steps=Steps(steps.ts, steps.loss, steps.dist),
        budget=None
        if budget is None
        else Budget(budget.err_w, budget.err_loss_w, budget.err_res_w, budget.stats),
        rounding=residual_rounding(problem, deltas),
    )


def _compared(problem: Problem, u: TangentPath, w: GradientPath) -> tuple[Gaps, Steps | None]:
    """The gaps between the flows, and the tangent flow at the gradient flow's steps
    (closed form only: cheap there, so that both are drawn at the same resolution)."""
    steps, closed = w.path.steps, u.closed_form
    gap_f = np.linalg.norm(w.residuals - u.residuals, axis=1)
    gap_w = np.linalg.norm(w.path.deltas - u.deltas, axis=1)
    if closed is None or not len(steps.ts):
        return Gaps(gap_f, gap_w), None
    loss, dist = _closed_at(closed, jnp.asarray(steps.ts, problem.dtype))
    at_steps = Steps(steps.ts, np.asarray(loss), np.asarray(dist))
    return Gaps(gap_f, gap_w, steps.gap_f, steps.gap_w), at_steps


@eqx.filter_jit
def _closed_at(
    closed: TangentFlow, ts: Float[Array, " s"]
) -> tuple[Float[Array, " s"], Float[Array, " s"]]:
    """The tangent flow's loss and `‖u(t) − w0‖` at times `ts`, as one compiled program."""
    return jax.lax.map(closed.loss, ts, batch_size=512), jax.lax.map(
        closed.distance, ts, batch_size=512
    )


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
    options: FlowOptions,
) -> tuple[GradientPath, ErrorBudget | None]:
    """The gradient flow and its error budget (`None` without the error estimate): by the
    accuracy policy (`_accuracy`: the budget is the controller, loose then tighter) for
    `ExponentialAdams` with `rtol="auto"`, else one solve and a re-solve 10× looser."""
    policy = options.error_estimate and options.rtol == "auto"
    if policy and resolution <= MAX_RTOL and isinstance(settings.solver, ExponentialAdams):
        return solve_to_accuracy(problem, settings, resolution=resolution)
    along = None if u is None else u.closed_form  # gaps at every step, if cheap
    w = solve_gradient_flow(problem, settings, resolution=resolution, tangent=along)
    budget = None
    if options.error_estimate and np.isfinite(w.loss[1:]).any():
        budget = error_budget(problem, settings, w, tangent=along)
    return w, budget


def _gradient_descent(
    problem: Problem, closed: TangentFlow, step: float, ts: np.ndarray, delta_w: Any
) -> tuple[FlowPath, str | None]:
    """Gradient descent with step `step` as a typed path (with its gap to the gradient
    flow's saves `delta_w = w(t) − w0`, when given), and why it diverged (`None` if it
    did not)."""
    L = problem.objective.L
    lam_max = float(closed.eigenvalues[-1])
    gd = gradient_descent(problem, step, ts, lambda_max=lam_max, smoothness=1.0 if L is None else L)
    path = FlowPath(
        gd.ts,
        gd.loss,
        dist=np.linalg.norm(gd.deltas, axis=1),
        reached=gd.t_reached,
        stats=gd.stats,
        gap=None if delta_w is None else np.linalg.norm(gd.deltas - delta_w, axis=1),
    )
    return path, gd.divergence()


def _with_deltas(
    problem: Problem,
    path: FlowPath | None,
    deltas: np.ndarray | None,
    *,
    linear: bool,
    keep: bool,
) -> FlowPath | None:
    """`path` with, on a test split, its test series from its displacements `· − w0`,
    and those displacements as `params` when `keep`."""
    if path is None or deltas is None:
        return path
    test = test_series(problem, deltas, linear=linear) if problem.data.has_test else None
    return dataclasses.replace(path, params=deltas if keep else None, test=test)


def solve_flows(
    problem: Problem,
    t1: float | str = "auto",
    options: FlowOptions | None = None,
    *,
    kernel: InitialKernel | Float[ArrayLike, "n n"] | None = None,
    progress: bool | diffrax.AbstractProgressMeter = False,
    devices: Any = None,
    **settings: Any,
) -> FlowSolution:
    """Integrate the network's gradient flow `w(t)` and the tangent flow `u(t)` from the
    same `w0`, and record every quantity the theorem speaks of at the save times
    (docs/theory.md, "The two gradient flows").

    **Arguments:**

    - `problem`: the `Problem`.
    - `t1`: the horizon, or `"auto"`: the time at which the theorem's envelope
      `R0·exp(−tμα²σ_min²/2)` reaches `1e-6·R0` (`μ = 1` for the squared loss; for a
      loss that is not strongly convex, the curvature at `w0` along the first gradient,
      `loss_curvature`); with an array `saveat`, its last time.
    - `options`: a `FlowOptions` (save times, solver, tolerances, which flows, gradient
      descent, error estimate, diagnostics); its fields may also be given as keyword
      arguments (`settings`: `solve_flows(problem, saveat=50, rtol=1e-8)`), which
      replace those of `options`.
    - `kernel`: the problem's `InitialKernel` (e.g. `certify(problem).kernel`: `K0` is
      then neither formed nor factored again), or a `K0` array.
    - `progress`: `True` for a progress bar on stderr, or any diffrax progress meter.
    - `devices`: split the training points over devices (a count dividing `n`, devices,
      or a `Mesh`; what is split: docs/scale.md).

    **Returns:** a `FlowSolution`: one typed path per flow.
    """
    options = FlowOptions.merged(options, settings)
    diag_method = diagnostics_method(options.diagnostics)
    method = get_tangent_method(options.tangent, problem)
    options = dataclasses.replace(options, solver=as_solver(options.solver))
    problem, mesh = split_problem(problem, devices, strict=True)
    k0 = as_initial_kernel(problem, kernel, devices=mesh)
    closed = TangentFlow(problem, k0)
    resolved, resolution, dist_u_inf = _settings(problem, closed, k0, t1, options, _meter(progress))
    ts = resolved.ts
    u_solve = method.solve(closed, resolved) if "tangent" in options.flows else None
    w_solve = budget = None
    if "gradient" in options.flows:
        w_solve, budget = _gradient_flow(problem, resolved, u_solve, resolution, options)
    status, message = _ending(u_solve, w_solve)
    u = None if u_solve is None else _tangent_path(problem, ts, u_solve)
    w = None if w_solve is None else _gradient_path(problem, ts, w_solve, budget)
    gaps = kernel_path = None
    if u_solve is not None and w_solve is not None:
        gaps, at_steps = _compared(problem, u_solve, w_solve)
        u = dataclasses.replace(u, steps=at_steps)  # pyright: ignore[reportArgumentType]
    if w_solve is not None and diag_method is not None:
        deltas = w_solve.path.deltas
        kernel_path = kernel_diagnostics(
            problem, deltas, k0, method=diag_method, progress=progress is not False
        )
    delta_w = None if w_solve is None else w_solve.path.deltas
    delta_u = None if u_solve is None else u_solve.deltas
    keep = options.save_params
    w = _with_deltas(problem, w, delta_w, linear=False, keep=keep)
    u = _with_deltas(problem, u, delta_u, linear=True, keep=keep)
    gd = None
    if options.gd_step is not None:
        gd, diverged = _gradient_descent(problem, closed, options.gd_step, ts, delta_w)
        if diverged is not None:
            message += " " + diverged
            status = FlowStatus.GD_DIVERGED if status is FlowStatus.SUCCESS else status
    return FlowSolution(
        ts,
        resolved.t1,
        problem.alpha,
        R0=float(problem.loss_of_residual(closed.r0)),
        sigma_min0=k0.sigma_min_resolved,
        sigma_max0=math.sqrt(float(closed.eigenvalues[-1])),
        dist_u_inf=dist_u_inf,
        y_norm=float(np.linalg.norm(np.asarray(problem.y))),
        status=status,
        message=message,
        gradient=w,
        tangent=u,
        gd=gd,
        gaps=gaps,
        kernel=kernel_path,
        loss=problem.loss_name,
    )
