"""One flow integrated by diffrax on the displacement `δ = w − w0` (docs/theory.md, "The
two gradient flows"; docs/flows.md).

The state is `δ`, so the relative tolerance applies to how far the network has moved, not
to the size of its weights (in the lazy regime `‖δ‖ = O(1/α)` is many orders below
`‖w0‖`). Each solve records the state at the save times and, at every solver step, the
loss, `‖δ‖` and (given the tangent flow's closed form) the gaps to it: the checks see
between the save times. `ending` says in words how a solve ended.
"""

import dataclasses
import time
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._adams import Accuracy, ExponentialAdams, solve_adams
from ._exponential import ExponentialNTK, InitialFactors
from ._problem import Problem, residuals_at
from ._solvers import evaluations, kernel_evaluations
from ._stats import FlowStatus, SolveStats
from ._tangent import TangentFlow

# Smallest step, as a fraction of the horizon. An explicit solver on the stiffest lazy
# problems steps at about t1/(30·cond(K0)); this leaves room for cond(K0) up to ~1e11.
DTMIN_FRACTION = 1e-13
# ... or this fraction of the first step, when smaller: a horizon of 1e10 fastest time
# scales (cond(K0) ~ 1e11) would otherwise put the floor above the first step.
DTMIN_OF_FIRST_STEP = 1e-6


def step_floor(span: Any, first_step: Any) -> Any:
    """The smallest step a solve may take before it is called non-finite ahead:
    `min(DTMIN_FRACTION·span, DTMIN_OF_FIRST_STEP·first_step)` (floats or traced)."""
    return jnp.minimum(DTMIN_FRACTION * span, DTMIN_OF_FIRST_STEP * first_step)


@dataclasses.dataclass(frozen=True, eq=False)
class SolveSettings:
    """What every solve of one `solve_flows` call shares: the horizon `t1`, the save times
    `ts` (from 0 to at most `t1`), the `solver`, the tolerances on `δ`, the step budget,
    the progress meter, the first step `dt0` (`None`: diffrax picks it), `K0`'s
    factors for the exponential integrators (`initial`), and what `ExponentialAdams`
    holds its local errors to (`accuracy`; `rtol`/`atol` are diffrax's)."""

    t1: float
    ts: np.ndarray
    solver: diffrax.AbstractSolver | ExponentialAdams
    rtol: float
    atol: float
    max_steps: int
    meter: diffrax.AbstractProgressMeter
    dt0: float | None = None
    initial: InitialFactors | None = None
    accuracy: Accuracy | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class StepSeries:
    """At every accepted solver step: its time, the loss, `‖δ‖` and the gaps
    `‖αf(w) − αf_0(u)‖`, `‖w − u‖` to the closed-form tangent flow (NaN without it)."""

    ts: np.ndarray
    loss: np.ndarray
    dist: np.ndarray
    gap_f: np.ndarray
    gap_w: np.ndarray

    @classmethod
    def empty(cls) -> "StepSeries":
        e = np.zeros(0)
        return cls(e, e, e, e, e)


@dataclasses.dataclass(frozen=True, eq=False)
class Path:
    """One flow at the save times: `deltas` (`δ(t_i)`, NaN rows where the solve did not
    reach), its `steps`, diffrax's `result` (`None`: not integrated), its `stats` and,
    from `ExponentialAdams`, the suprema `(‖w − u‖, ‖αf(w) − αf_0(u)‖, ‖w − w0‖)` over its
    steps (`sups`) and what it held each step's local error to in `w` and in the residual
    (`targets`, `_adams._local_targets`)."""

    deltas: np.ndarray
    steps: StepSeries
    result: Any
    stats: SolveStats
    sups: tuple[float, float, float] | None = None
    targets: tuple[float, float] | None = None

    @property
    def reached_all(self) -> bool:
        successful = bool(self.result == diffrax.RESULTS.successful)
        return successful and bool(np.all(np.isfinite(self.deltas)))


class GradientField(eqx.Module):
    """The network's gradient flow: `δ̇ = −∇_w R(α f(w0 + δ)) = −α J_wᵀ ∇R(α f(w))`, one
    VJP (the loss's gradient: the Jacobian is never formed)."""

    problem: Problem

    def __call__(self, t, delta, args):
        return -jax.grad(self.problem.loss)(self.problem.w0 + delta)


class TangentField(eqx.Module):
    """The tangent flow as an ODE: `δ̇ = −α J_0ᵀ ∇R(α(f(w0) + J_0 δ))` through
    `jax.linearize` (one JVP and one VJP per evaluation); `∇R(z) = z − y` for the squared
    loss."""

    problem: Problem

    def __call__(self, t, delta, args):
        problem = self.problem
        f0, jvp = jax.linearize(problem.f, problem.w0)
        z = problem.alpha_array * (f0 + jvp(delta))
        r = z - problem.y if problem.squared else problem.loss_gradient(z)
        (g,) = jax.linear_transpose(jvp, problem.w0)(r)
        return -problem.alpha_array * g


class _StepScalars(eqx.Module):
    """Loss, distance and (given the tangent flow's closed form) the gaps
    `‖αf(w(t)) − αf_0(u(t))‖` and `‖w(t) − u(t)‖` at every solver step: the checks, the
    figures and the sup-over-time scaling laws see between the save times (the gaps peak
    early, when evenly spaced saves are sparse). The parameter gap costs one VJP at `w0`
    per step (`u(t) − w0 = J_0ᵀ c(t)`)."""

    problem: Problem
    tangent: TangentFlow | None

    def __call__(self, t, delta, args):
        w = self.problem.w0 + delta
        r = self.problem.residual(w)
        if self.tangent is not None:
            gap_f = jnp.linalg.norm(r - self.tangent.residual(t))
            u = self.tangent.displacement(self.tangent.coefficients(t))
            gap_w = jnp.linalg.norm(delta - u)
        else:
            gap_f = gap_w = jnp.full((), jnp.nan, r.dtype)
        loss = self.problem.loss_of_residual(r)
        return jnp.stack([loss, jnp.linalg.norm(delta), gap_f, gap_w])


def _first_step(dt0: float, solver: Any, loosen: float) -> float:
    """The first step of a solve `loosen`× looser: a Runge–Kutta pair's grows like the
    fifth root of the tolerance (its local error is of order 5), so that the re-solve
    differs from its first step on — with the same first step both solves took the same
    steps through the first decades of the flow, and their difference, the budget, was
    zero there. The exponential integrator's re-solve differs by its embedded solution."""
    if isinstance(solver, ExponentialNTK):
        return dt0
    return dt0 * loosen**0.2


def _controller(solver: Any, ts: Array, rtol: Array, atol: Array, dtmin: Array) -> Any:
    """The PID controller; a step below `dtmin` means the vector field is singular or
    non-finite ahead (the controller keeps rejecting NaN steps): stop there rather than
    burn max_steps. With `ExponentialNTK` the steps land on the save times: a save inside
    its (second-order) step would be the interpolant's, whose error the embedded re-solve
    shares (docs/theory.md, "The gradient flow's budget"). Not for a re-solve by the same
    method at looser tolerances: clipped to the saves, both would take the same steps and
    their difference, the budget, would be zero."""
    pid = diffrax.PIDController(rtol=rtol, atol=atol, dtmin=dtmin, force_dtmin=False)
    if isinstance(solver, ExponentialNTK):
        return diffrax.ClipStepSizeController(pid, step_ts=ts)
    return pid


@eqx.filter_jit
def _solve(
    vector_field: Any,
    problem: Problem,
    scalars: Any,
    y0: Float[Array, " p"],
    ts: Float[Array, " s"],
    solver: diffrax.AbstractSolver,
    rtol: Float[Array, ""],
    atol: Float[Array, ""],
    max_steps: int,
    progress_meter: diffrax.AbstractProgressMeter,
    dt0: Float[Array, ""] | None = None,
    initial: InitialFactors | None = None,
) -> diffrax.Solution:
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(steps=True, fn=scalars)]
    )
    span = ts[-1] - ts[0]
    dtmin = DTMIN_FRACTION * span if dt0 is None else step_floor(span, dt0)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=y0,
        # The problem, explicitly, and K0's factors: `ExponentialNTK` reads them from
        # `args` (the fields ignore it: they carry their problem).
        args=problem if initial is None else (problem, initial),
        saveat=saveat,
        stepsize_controller=_controller(solver, ts, rtol, atol, dtmin),
        max_steps=max_steps,
        throw=False,
        progress_meter=progress_meter,
    )


def integrate(
    field: eqx.Module,
    problem: Problem,
    settings: SolveSettings,
    *,
    solver: diffrax.AbstractSolver | None = None,
    loosen: float = 1.0,
    tangent: TangentFlow | None = None,
) -> Path:
    """Integrate `δ̇ = field(t, δ)` from `δ = 0` over `settings.ts`.

    **Arguments:** the vector `field` (`GradientField`, `TangentField`), the `problem`,
    the shared `settings`; `solver` replaces `settings.solver`, `loosen` multiplies both
    tolerances (the error estimate's re-solve), `tangent` is the closed-form tangent flow
    whose gaps to this flow are recorded at every step.
    """
    chosen = settings.solver if solver is None else solver
    if isinstance(chosen, ExponentialAdams):
        return _integrate_adams(problem, settings, chosen, loosen)
    solver = chosen
    rtol, atol = settings.rtol * loosen, settings.atol * loosen
    start = time.perf_counter()
    sol = _solve(
        field,
        problem,
        _StepScalars(problem, tangent),
        jnp.zeros_like(problem.w0),
        jnp.asarray(settings.ts, problem.dtype),
        solver,
        # Arrays, not Python floats: the 10× looser error-estimate solve reuses the
        # compiled solve instead of tracing a new one.
        jnp.asarray(rtol, problem.dtype),
        jnp.asarray(atol, problem.dtype),
        settings.max_steps,
        settings.meter,
        None
        if settings.dt0 is None
        else jnp.asarray(_first_step(settings.dt0, solver, loosen), problem.dtype),
        settings.initial if isinstance(solver, ExponentialNTK) else None,
    )
    jax.block_until_ready(sol.ys)
    wall = time.perf_counter() - start
    assert sol.ts is not None and sol.ys is not None
    deltas = np.array(sol.ys[0], dtype=np.float64)
    # Saves the solve never reached hold diffrax's fill value (inf): make them NaN.
    deltas[~np.all(np.isfinite(deltas), axis=1)] = np.nan
    step_ts = np.asarray(sol.ts[1])
    vals = np.asarray(sol.ys[1])
    keep = np.isfinite(step_ts)
    counts = {k: int(v) for k, v in sol.stats.items()}
    stats = SolveStats(
        max_steps=counts.get("max_steps"),
        num_accepted_steps=counts["num_accepted_steps"],
        num_rejected_steps=counts["num_rejected_steps"],
        num_steps=counts["num_steps"],
        vf_evaluations=evaluations(solver, counts["num_steps"]),
        kernel_evaluations=kernel_evaluations(solver, counts["num_steps"]),
        wall_s=wall,
        solver=type(solver).__name__,
        rtol=float(rtol),
        atol=float(atol),
    )
    v = vals[keep]
    steps = StepSeries(step_ts[keep], v[:, 0], v[:, 1], v[:, 2], v[:, 3])
    return Path(deltas, steps, sol.result, stats)


def _integrate_adams(
    problem: Problem, settings: SolveSettings, solver: ExponentialAdams, loosen: float
) -> Path:
    """The gradient flow by `ExponentialAdams` (`_adams`), as a `Path`."""
    if settings.initial is None or settings.accuracy is None or settings.dt0 is None:
        raise ValueError("ExponentialAdams needs K0's factors, its accuracy and a first step")
    accuracy = settings.accuracy.loosened(loosen)
    out = solve_adams(
        problem,
        solver,
        settings.initial.lam,
        settings.initial.V,
        settings.ts,
        accuracy,
        # The first step grows with τ: solves at different tolerances then differ from
        # the first step on, so that their difference (the error budget) is never zero
        # where the error is not.
        h0=settings.dt0 * accuracy.tau**0.5,
        dtmin=float(step_floor(settings.t1, settings.dt0 * accuracy.tau**0.5)),
        max_steps=settings.max_steps,
        meter=settings.meter,
    )
    log = out.steps
    stats = SolveStats(
        max_steps=settings.max_steps,
        num_accepted_steps=out.num_accepted_steps,
        num_rejected_steps=out.num_steps - out.num_accepted_steps,
        num_steps=out.num_steps,
        vf_evaluations=evaluations(solver, out.num_steps),
        kernel_evaluations=out.refreshes,
        wall_s=out.wall_s,
        solver=type(solver).__name__,
        rtol=accuracy.dist * accuracy.tau,
    )
    steps = StepSeries(log[:, 0], log[:, 1], log[:, 2], log[:, 3], log[:, 4])
    return Path(out.deltas, steps, out.result, stats, out.sups, out.targets)


def not_integrated(settings: SolveSettings, p: int, why: str) -> Path:
    """A flow that was not integrated (`FlowStatus.UNRESOLVED`): the state at `t = 0`
    only."""
    deltas = np.full((len(settings.ts), p), np.nan)
    deltas[0] = 0.0
    stats = SolveStats(
        num_accepted_steps=0,
        num_rejected_steps=0,
        num_steps=0,
        vf_evaluations=0,
        kernel_evaluations=0,
        wall_s=0.0,
        solver=type(settings.solver).__name__,
        rtol=settings.rtol,
        skipped=why,
    )
    return Path(deltas, StepSeries.empty(), None, stats)


def residuals(problem: Problem, deltas: np.ndarray) -> np.ndarray:
    """`α f(w0 + δ) − y` at each row of `deltas` (NaN rows stay NaN)."""
    W = problem.w0[None, :] + jnp.asarray(np.nan_to_num(deltas), problem.dtype)
    r = np.array(residuals_at(problem, W))
    r[~np.all(np.isfinite(deltas), axis=1)] = np.nan
    return r


@eqx.filter_jit
def _losses(problem: Problem, R: Float[Array, "s n"]) -> Float[Array, " s"]:
    return jax.vmap(problem.loss_of_residual)(R)


@eqx.filter_jit
def _gradient_norms(problem: Problem, R: Float[Array, "s n"]) -> Float[Array, " s"]:
    return jax.vmap(lambda r: jnp.linalg.norm(problem.loss_gradient(r + problem.y)))(R)


def losses(problem: Problem, residuals: np.ndarray) -> np.ndarray:
    """The loss `R` at each row `α f(w) − y` of `residuals` (`½‖r‖²` for the squared loss;
    NaN rows stay NaN)."""
    if problem.squared:
        return 0.5 * np.sum(residuals**2, axis=1)
    out = np.array(_losses(problem, jnp.asarray(np.nan_to_num(residuals), problem.dtype)))
    out[~np.all(np.isfinite(residuals), axis=1)] = np.nan
    return out


def gradient_norms(problem: Problem, residuals: np.ndarray) -> np.ndarray:
    """`‖∇R(z)‖` at each row `z − y` of `residuals` (`‖r‖` for the squared loss; NaN rows
    stay NaN)."""
    if problem.squared:
        return np.linalg.norm(residuals, axis=1)
    out = np.array(_gradient_norms(problem, jnp.asarray(np.nan_to_num(residuals), problem.dtype)))
    out[~np.all(np.isfinite(residuals), axis=1)] = np.nan
    return out


def ending(path: Path, settings: SolveSettings, *, flow: str) -> tuple[FlowStatus, str, float]:
    """How `flow`'s solve ended, in words, with its last good state, and the time it
    reached (`t1` on success)."""
    ts, steps = settings.ts, path.steps
    if path.reached_all:
        return FlowStatus.SUCCESS, "The flows were integrated to t1.", float(ts[-1])
    good = np.isfinite(steps.loss) & np.isfinite(steps.dist)
    if good.any():
        i = int(np.nonzero(good)[0][-1])
        t_last = float(steps.ts[i])
        last = (
            f"the last good state is at t={t_last:.6g} (loss {steps.loss[i]:.6g}, "
            f"‖w − w0‖ = {steps.dist[i]:.6g}); saves after it are NaN"
        )
    else:
        t_last = float(ts[0])
        last = "no step was accepted after w0"
    if bool(path.result == diffrax.RESULTS.max_steps_reached):
        exponential = path.stats.solver in ("ExponentialNTK", "ExponentialAdams")
        hint = "" if exponential else "; solver='exponential' is not"
        return (
            FlowStatus.MAX_STEPS,
            f"The {flow} flow's solve reached its step limit (max_steps={settings.max_steps}) "
            f"at t={t_last:.6g}, before t1={ts[-1]:.6g}; {last}. Increase `max_steps` (the "
            f"flow is stiff when cond(K0) is large{hint}), loosen `rtol`, or shorten `t1`.",
            t_last,
        )
    return (
        FlowStatus.NONFINITE,
        f"The {flow} flow stopped at t={t_last:.6g} before t1={ts[-1]:.6g}: the step size "
        f"fell below {DTMIN_FRACTION:g}·t1 (or {DTMIN_OF_FIRST_STEP:g} of the first step, "
        "when smaller) because "
        "the vector field is NaN, infinite or "
        f"singular just ahead; {last}. Check the model for overflow or a "
        "singularity, lower α, or shorten `t1`.",
        t_last,
    )
