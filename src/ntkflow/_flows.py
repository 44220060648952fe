"""The two gradient flows side by side (docs/theory.md, "The two gradient flows").

- Gradient flow of the network: `ẇ = −α J_wᵀ (α f(w) − y)`, integrated by diffrax with
  adaptive, error-controlled steps. The vector field is `−∇_w R(α f(w))`, one VJP: the
  Jacobian is never formed. The state is the displacement `δ = w − w0`, so the relative
  tolerance applies to how far the network has moved, not to the size of its weights
  (in the lazy regime `‖δ‖ = O(1/α)` is many orders below `‖w0‖`).
- Tangent flow of the linearised network: in closed form (`TangentFlow`), or as an ODE
  through `jax.linearize` (one JVP and one VJP per evaluation).
- Gradient descent, optionally (`_gd.py`).
"""

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jaxtyping import Array, ArrayLike, Float

from ._diagnostics import kernel_diagnostics, test_predictions
from ._exponential import ExponentialNTK
from ._gd import gradient_descent
from ._initial_kernel import InitialKernel, as_initial_kernel
from ._problem import Problem
from ._progress import RichProgressMeter
from ._rounding import motion_resolution, residual_rounding
from ._solution import FlowSolution, FlowStatus
from ._tangent import TangentFlow

# The default horizon: the time at which the theorem's envelope R0·exp(−tα²σ_min²/2)
# reaches this fraction of R0.
AUTO_HORIZON_DROP = 1e-6
# `rtol="auto"`: this, unless the dtype cannot resolve it (`_relative_tolerance`).
DEFAULT_RTOL = 1e-8
# The gradient flow is not integrated when its resolution `ρ` (`motion_resolution`) is
# coarser than this: rounding would be most of what it shows (`FlowStatus.UNRESOLVED`).
MAX_RTOL = 1e-2
# Smallest step, as a fraction of the horizon. An explicit solver on the stiffest lazy
# problems steps at about t1/(30·cond(K0)); this leaves room for cond(K0) up to ~1e11.
DTMIN_FRACTION = 1e-13


def default_solver() -> diffrax.AbstractSolver:
    """Tsit5 with the bounded scan: same steps as diffrax's default stage loop, about half
    the cost per evaluation on CPU."""
    return diffrax.Tsit5(scan_kind="bounded")


_SOLVERS = {
    "exponential": ExponentialNTK,
    "tsit5": lambda: diffrax.Tsit5(scan_kind="bounded"),
    "dopri5": lambda: diffrax.Dopri5(scan_kind="bounded"),
    "dopri8": lambda: diffrax.Dopri8(scan_kind="bounded"),
    "bosh3": lambda: diffrax.Bosh3(scan_kind="bounded"),
}


SOLVER_NAMES = ("auto", *_SOLVERS)
# `solver="auto"` takes the exponential integrator from this cond(K0) up (`bench/flows.py`).
AUTO_EXPONENTIAL_COND = 100.0
# ... while the traced kernel fits: a whole Jacobian of at most this many bytes (models
# without dense-layer structure) and at most this many outputs (an eigh per step).
AUTO_EXPONENTIAL_MAX_JACOBIAN_BYTES = 2**30
AUTO_EXPONENTIAL_MAX_N = 4096


def get_solver(name: str) -> diffrax.AbstractSolver:
    """A solver by name: `"exponential"` (`ExponentialNTK`, the NTK exponential
    integrator), or diffrax's `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`, each with the
    bounded stage scan. (`"auto"` needs the problem: see `choose_solver`.)"""
    try:
        return _SOLVERS[name.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(f"unknown solver={name!r}; use one of: {', '.join(_SOLVERS)}") from None


def choose_solver(problem: Problem, cond: float) -> diffrax.AbstractSolver:
    """`solver="auto"`: the exponential integrator when the flow is stiff
    (`cond(K0) ≥ 100`) and a kernel per step is affordable (at most 4096 outputs; a
    dense-layer model, or a Jacobian of at most 1 GiB), else Tsit5."""
    from ._structured import structured_applies

    itemsize = jnp.dtype(problem.dtype).itemsize
    affordable = problem.n <= AUTO_EXPONENTIAL_MAX_N and (
        structured_applies(problem)
        or problem.n * problem.p * itemsize <= AUTO_EXPONENTIAL_MAX_JACOBIAN_BYTES
    )
    if affordable and not cond < AUTO_EXPONENTIAL_COND:
        return ExponentialNTK()
    return default_solver()


def _evaluations(solver: diffrax.AbstractSolver, num_steps: int) -> int | None:
    """Vector-field evaluations of an explicit Runge–Kutta solve of `num_steps` (accepted
    and rejected) steps: `stages − 1` per step when the first stage reuses the last
    (FSAL), else `stages`, plus one initial evaluation. Exact to within the one or two
    evaluations diffrax's initial step-size selection adds."""
    if isinstance(solver, ExponentialNTK):  # F at w_k (in the linearisation), U_2, U_3
        return 2 + 3 * num_steps
    if not isinstance(solver, diffrax.AbstractERK):
        return None
    tableau: Any = solver.tableau
    stages = len(tableau.c) + 1
    if tableau.fsal:
        return 1 + (stages - 1) * num_steps
    return stages * num_steps


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
) -> diffrax.Solution:
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(steps=True, fn=scalars)]
    )
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=y0,
        # The problem, explicitly: `ExponentialNTK` reads it from `args` (the fields
        # ignore it: they carry their problem).
        args=problem,
        saveat=saveat,
        # A step below dtmin means the vector field is singular or non-finite ahead (the
        # controller keeps rejecting NaN steps): stop there rather than burn max_steps.
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, dtmin=DTMIN_FRACTION * (ts[-1] - ts[0]), force_dtmin=False
        ),
        max_steps=max_steps,
        throw=False,
        progress_meter=progress_meter,
    )


class _GradientField(eqx.Module):
    problem: Problem

    def __call__(self, t, delta, args):
        return -jax.grad(self.problem.loss)(self.problem.w0 + delta)


class _TangentField(eqx.Module):
    problem: Problem

    def __call__(self, t, delta, args):
        problem = self.problem
        f0, jvp = jax.linearize(problem.f, problem.w0)
        r = problem.scale * (f0 + jvp(delta)) - problem.y
        (g,) = jax.linear_transpose(jvp, problem.w0)(r)
        return -problem.scale * g


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
        return jnp.stack([0.5 * jnp.vdot(r, r), jnp.linalg.norm(delta), gap_f, gap_w])


def _integrate(
    field, problem, ts, solver, rtol, atol, max_steps, progress_meter, tangent=None, dt0=None
):
    start = time.perf_counter()
    sol = _solve(
        field,
        problem,
        _StepScalars(problem, tangent),
        jnp.zeros_like(problem.w0),
        jnp.asarray(ts, problem.dtype),
        solver,
        # Arrays, not Python floats: the 10× looser error-estimate solve reuses the
        # compiled solve instead of tracing a new one.
        jnp.asarray(rtol, problem.dtype),
        jnp.asarray(atol, problem.dtype),
        max_steps,
        progress_meter,
        None if dt0 is None else jnp.asarray(dt0, problem.dtype),
    )
    jax.block_until_ready(sol.ys)
    wall = time.perf_counter() - start
    assert sol.ts is not None and sol.ys is not None
    deltas = np.array(sol.ys[0], dtype=np.float64)
    # Saves the solve never reached hold diffrax's fill value (inf): make them NaN.
    deltas[~np.all(np.isfinite(deltas), axis=1)] = np.nan
    step_ts = np.asarray(sol.ts[1])
    step_vals = np.asarray(sol.ys[1])
    keep = np.isfinite(step_ts)
    stats: dict[str, Any] = {k: int(v) for k, v in sol.stats.items()}
    stats["vf_evaluations"] = _evaluations(solver, stats["num_steps"])
    stats["kernel_evaluations"] = stats["num_steps"] if isinstance(solver, ExponentialNTK) else 0
    stats["wall_s"] = wall
    stats["solver"] = type(solver).__name__
    stats["rtol"], stats["atol"] = float(rtol), float(atol)
    return {
        "deltas": deltas,
        "step_ts": step_ts[keep],
        "step_loss": step_vals[keep, 0],
        "step_dist": step_vals[keep, 1],
        "step_gap_f": step_vals[keep, 2],
        "step_gap_w": step_vals[keep, 3],
        "result": sol.result,
        "stats": stats,
    }


def _unresolved(
    ts: np.ndarray, p: int, solver: diffrax.AbstractSolver, rtol: float
) -> dict[str, Any]:
    """What `_integrate` returns for a gradient flow not integrated (`UNRESOLVED`): the
    state at `t = 0` only."""
    deltas = np.full((len(ts), p), np.nan)
    deltas[0] = 0.0
    empty = np.zeros(0)
    return {
        "deltas": deltas,
        "step_ts": empty,
        "step_loss": empty,
        "step_dist": empty,
        "step_gap_f": empty,
        "step_gap_w": empty,
        "result": None,
        "stats": {
            "num_steps": 0,
            "num_accepted_steps": 0,
            "num_rejected_steps": 0,
            "vf_evaluations": 0,
            "kernel_evaluations": 0,
            "wall_s": 0.0,
            "solver": type(solver).__name__,
            "rtol": rtol,
            "skipped": "unresolved: the dtype cannot resolve the motion",
        },
    }


def _resolve_times(
    t1: float | str, saveat: int | npt.ArrayLike, sigma_min: float, alpha: float
) -> tuple[float, np.ndarray]:
    if isinstance(saveat, int | np.integer) and not isinstance(saveat, bool):
        if saveat < 2:
            raise ValueError(f"saveat must be ≥ 2 save times, got saveat={saveat}")
        ts = None
    else:
        ts = np.asarray(saveat, dtype=np.float64).reshape(-1)
        if ts.size < 2 or not np.all(np.isfinite(ts)) or ts[0] < 0 or np.any(np.diff(ts) <= 0):
            raise ValueError(
                "saveat must be an int or an increasing array of ≥ 2 finite times ≥ 0, got "
                f"saveat={saveat!r}"
            )
    if t1 == "auto":
        if ts is not None:
            t1 = float(ts[-1])
        elif sigma_min > 0:
            t1 = 2.0 * math.log(1.0 / AUTO_HORIZON_DROP) / (alpha**2 * sigma_min**2)
        else:
            raise ValueError(
                "t1='auto' needs σ_min(J_0) > 0 (the envelope's rate), but σ_min = 0; give "
                "t1 explicitly"
            )
    if isinstance(t1, str) or not math.isfinite(t1) or t1 <= 0:
        raise ValueError(f"t1 must be 'auto' or a finite time > 0, got t1={t1!r}")
    if ts is None:
        ts = np.linspace(0.0, t1, int(saveat))  # pyright: ignore[reportArgumentType]
    elif ts[-1] > t1 * (1 + 1e-12):
        raise ValueError(f"saveat times must lie in [0, t1={t1:g}], got max {ts[-1]:g}")
    if ts[0] != 0.0:
        ts = np.concatenate([[0.0], ts])
    return float(t1), ts


def _status(
    result: Any,
    deltas: np.ndarray,
    ts: np.ndarray,
    max_steps: int,
    steps: dict[str, Any],
    *,
    flow: str = "gradient",
) -> tuple[FlowStatus, str, float]:
    """How a flow's solve ended, in words, with the last good state, and the time it
    reached (`t1` on success)."""
    finite = np.all(np.isfinite(deltas), axis=1)
    if result == diffrax.RESULTS.successful and finite.all():
        return FlowStatus.SUCCESS, "The flows were integrated to t1.", float(ts[-1])
    good = np.isfinite(steps["step_loss"]) & np.isfinite(steps["step_dist"])
    if good.any():
        i = int(np.nonzero(good)[0][-1])
        t_last = float(steps["step_ts"][i])
        last = (
            f"the last good state is at t={t_last:.6g} (loss {steps['step_loss'][i]:.6g}, "
            f"‖w − w0‖ = {steps['step_dist'][i]:.6g}); saves after it are NaN"
        )
    else:
        t_last = float(ts[0])
        last = "no step was accepted after w0"
    if result == diffrax.RESULTS.max_steps_reached:
        return (
            FlowStatus.MAX_STEPS,
            f"The {flow} flow's solve reached its step limit (max_steps={max_steps}) at "
            f"t={t_last:.6g}, before t1={ts[-1]:.6g}; {last}. Increase `max_steps` (the "
            "flow is stiff when cond(K0) is large"
            + (
                ""
                if steps["stats"]["solver"] == "ExponentialNTK"
                else "; solver='exponential' is not"
            )
            + "), loosen `rtol`, or shorten `t1`.",
            t_last,
        )
    return (
        FlowStatus.NONFINITE,
        f"The {flow} flow stopped at t={t_last:.6g} before t1={ts[-1]:.6g}: the step size "
        f"fell below {DTMIN_FRACTION:g}·t1 because the vector field is NaN, infinite or "
        f"singular just ahead; {last}. Check the model for overflow or a "
        "singularity, lower α, or shorten `t1`.",
        t_last,
    )


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
            stacklevel=3,
        )
        return rho, rho
    return max(rtol, rho), rho


def solve_flows(
    problem: Problem,
    t1: float | str = "auto",
    *,
    saveat: int | npt.ArrayLike = 100,
    solver: str | diffrax.AbstractSolver = "auto",
    rtol: float | str = "auto",
    atol: float | str = "auto",
    flows: Sequence[str] = ("gradient", "tangent"),
    tangent: str = "closed_form",
    gd_step: float | None = None,
    max_steps: int = 100_000,
    progress: bool | diffrax.AbstractProgressMeter = False,
    error_estimate: bool = True,
    save_params: bool = False,
    diagnostics: bool = True,
    kernel: InitialKernel | Float[ArrayLike, "n n"] | None = None,
) -> FlowSolution:
    """Integrate the network's gradient flow `w(t)` and the tangent flow `u(t)` from the
    same `w0`, and record every quantity the theorem speaks of at the save times.

    **Arguments:**

    - `problem`: the `Problem`.
    - `t1`: the horizon, or `"auto"`: the time at which the theorem's envelope
      `R0·exp(−tα²σ_min²/2)` reaches `1e-6·R0` (with an array `saveat`, its last time).
    - `saveat`: an int (that many evenly spaced times in `[0, t1]`) or an increasing array
      of times (0 is prepended if absent).
    - `solver`: `"auto"` (the exponential integrator when the flow is stiff, see
      `choose_solver`), `"exponential"` (`ExponentialNTK`), `"tsit5"`, `"dopri5"`,
      `"dopri8"`, `"bosh3"`, or any diffrax solver. The tangent flow's ODE
      (`tangent="ode"`) uses Tsit5 when the gradient flow's solver is exponential.
    - `rtol`, `atol`: the PID controller's tolerances on the displacement `w − w0`.
      `rtol="auto"` is `1e-8`, or what the dtype can resolve when that is coarser
      (`max(1e-8, 1000ε, ρ)` with the flow's resolution `ρ` from `motion_resolution`;
      float32: about `1e-4` or more); a number below `ρ` is raised to `ρ` with a
      `RuntimeWarning`. When `ρ > 1e-2` the gradient flow is not integrated
      (`FlowStatus.UNRESOLVED`): rounding would be most of what it shows.
      `atol="auto"` is `rtol` times the RMS entry of `u∞ − w0` (the scale of the motion).
    - `flows`: which of `"gradient"`, `"tangent"` to integrate.
    - `tangent`: `"closed_form"` (eigendecomposition of `K0`; exact) or `"ode"` (diffrax
      on `jax.linearize`).
    - `gd_step`: if given, also run gradient descent with this step `η`.
    - `max_steps`: the solver's step budget.
    - `progress`: show progress: `True` for a rich progress bar on stderr, or any diffrax
      progress meter.
    - `error_estimate`: re-solve the gradient flow at 10× looser tolerances and use the
      difference as the error budget of every gradient-flow quantity (see `verify`).
    - `save_params`: keep `w(t) − w0` and `u(t) − w0` (`n_saves × p` numbers each).
    - `diagnostics`: compute `σ(J_{w(t)})` and the kernel drift at every save time (one
      empirical NTK each).
    - `kernel`: the problem's `InitialKernel` (e.g. `certify(problem).kernel`: `K0` is
      then neither formed nor factored again), or a `K0` array.

    **Returns:** a `FlowSolution`.
    """
    flows = tuple(flows)
    unknown = set(flows) - {"gradient", "tangent"}
    if unknown or not flows:
        raise ValueError(
            f"flows must be a non-empty subset of ('gradient', 'tangent'), got flows={flows!r}"
        )
    if tangent not in ("closed_form", "ode"):
        raise ValueError(f"tangent must be 'closed_form' or 'ode', got tangent={tangent!r}")
    if rtol != "auto" and not (
        isinstance(rtol, int | float) and not isinstance(rtol, bool) and 0 < rtol < 1
    ):
        raise ValueError(f"rtol must be 'auto' or a number in (0, 1), got rtol={rtol!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer ≥ 1, got max_steps={max_steps!r}")
    if solver is None or (isinstance(solver, str) and solver.lower() != "auto"):
        solver = default_solver() if solver is None else get_solver(solver)
    elif not isinstance(solver, str | diffrax.AbstractSolver):
        raise ValueError(
            f"solver must be a name ({', '.join(SOLVER_NAMES)}) or a diffrax solver, got "
            f"solver={solver!r}"
        )
    if progress is True:
        meter: diffrax.AbstractProgressMeter = RichProgressMeter()
    elif progress is False:
        meter = diffrax.NoProgressMeter()
    else:
        meter = progress

    k0 = as_initial_kernel(problem, kernel)
    tf = TangentFlow(problem, k0)
    lam = np.asarray(tf.eigenvalues)
    sigma_max0 = math.sqrt(lam[-1])
    t1, ts = _resolve_times(t1, saveat, k0.sigma_min_resolved, problem.alpha)
    if isinstance(solver, str):
        cond = float(lam[-1] / lam[0]) if lam[0] > 0 else math.inf
        solver = choose_solver(problem, cond)
    n_save = len(ts)
    if n_save * problem.p * 8 * (2 if "tangent" in flows else 1) > 8 * 2**30:
        raise ValueError(
            f"saving {n_save} states of p={problem.p} parameters needs more than 8 GiB; "
            "lower saveat"
        )
    c_inf = tf.limit_coefficients()
    dist_u_inf = float(tf.displacement_norm(c_inf))
    # How far the residual moves along the flow: ‖α J_0 (u∞ − w0)‖ = α‖K0 c∞‖.
    z = tf.eigenvectors.T @ c_inf
    motion = float(problem.alpha * jnp.linalg.norm(tf.eigenvalues * z))
    rtol, resolution = _relative_tolerance(problem, rtol, motion)
    if atol == "auto":
        scale = dist_u_inf / math.sqrt(problem.p)
        atol_value = rtol * (scale if scale > 0 else 1e-12)
    elif isinstance(atol, int | float) and math.isfinite(atol) and atol > 0:
        atol_value = float(atol)
    else:
        raise ValueError(f"atol must be 'auto' or a number > 0, got atol={atol!r}")

    stats: dict[str, Any] = {}
    y = np.asarray(problem.y)
    out: dict[str, Any] = {"ts": ts}
    reached: dict[str, float] = {}
    t_status, t_message = FlowStatus.SUCCESS, ""

    # -- tangent flow ------------------------------------------------------------------
    delta_u = None
    if "tangent" in flows:
        start = time.perf_counter()
        C = jax.vmap(tf.coefficients)(jnp.asarray(ts, problem.dtype))
        res_u = np.asarray(jax.vmap(tf.residual)(jnp.asarray(ts, problem.dtype)))
        if tangent == "closed_form":
            delta_u = np.asarray(jax.vmap(tf.displacement)(C))
            stats["tangent"] = {"method": "closed_form"}
            reached["tangent"] = t1
        else:
            tsolver = default_solver() if isinstance(solver, ExponentialNTK) else solver
            ode = _integrate(
                _TangentField(problem), problem, ts, tsolver, rtol, atol_value, max_steps, meter
            )
            delta_u = ode["deltas"]
            t_status, t_message, reached["tangent"] = _status(
                ode["result"], delta_u, ts, max_steps, ode, flow="tangent"
            )
            # α f_0(u) − y = r0 + α J_0 (u − w0): the linear model, not the network.
            _, jvp = jax.linearize(problem.f, problem.w0)
            lin = jax.vmap(jvp)(jnp.asarray(np.nan_to_num(delta_u), problem.dtype))
            res_u = np.array(tf.r0[None, :] + problem.alpha * lin)
            res_u[~np.all(np.isfinite(delta_u), axis=1)] = np.nan
            stats["tangent"] = {"method": "ode", **ode["stats"]}
        stats["tangent"] = {**stats["tangent"], "wall_s": time.perf_counter() - start}
        out["loss_u"] = 0.5 * np.sum(res_u**2, axis=1)
        out["dist_u"] = np.linalg.norm(delta_u, axis=1)
        if tangent == "closed_form":
            times = jnp.asarray(ts, problem.dtype)
            out["dist_u_to_limit"] = np.asarray(jax.vmap(tf.distance_to_limit)(times))
        else:
            u_inf = np.asarray(tf.displacement(c_inf))
            out["dist_u_to_limit"] = np.linalg.norm(delta_u - u_inf[None, :], axis=1)
    else:
        res_u = None

    # -- gradient flow -----------------------------------------------------------------
    status, message = FlowStatus.SUCCESS, "The flows were integrated to t1."
    delta_w = None
    if "gradient" in flows:
        closed = tf if "tangent" in flows and tangent == "closed_form" else None
        # The exponential integrator starts on the fastest mode's time scale: a first step
        # across the fast transient samples the remainder N_k only after it, where the
        # error estimate cannot see what the step missed (docs/flows.md).
        dt0 = None
        if isinstance(solver, ExponentialNTK) and lam[-1] > 0:
            dt0 = min(t1, 1.0 / (problem.alpha**2 * float(lam[-1])))
        if resolution > MAX_RTOL:
            grad = _unresolved(ts, problem.p, solver, rtol)
        else:
            grad = _integrate(
                _GradientField(problem),
                problem,
                ts,
                solver,
                rtol,
                atol_value,
                max_steps,
                meter,
                closed,
                dt0,
            )
        delta_w = grad["deltas"]
        stats["gradient"] = {**grad["stats"], "resolution": resolution}
        W = problem.w0[None, :] + jnp.asarray(np.nan_to_num(delta_w), problem.dtype)
        res_w = np.array(jax.vmap(problem.residual)(W))
        res_w[~np.all(np.isfinite(delta_w), axis=1)] = np.nan
        out["loss_w"] = 0.5 * np.sum(res_w**2, axis=1)
        out["dist_w"] = np.linalg.norm(delta_w, axis=1)
        out["round_res_w"] = residual_rounding(problem, delta_w)
        out["step_ts"], out["step_loss_w"], out["step_dist_w"] = (
            grad["step_ts"],
            grad["step_loss"],
            grad["step_dist"],
        )
        if grad["result"] is None:
            status, reached["gradient"] = FlowStatus.UNRESOLVED, 0.0
            message = (
                f"The gradient flow was not integrated: in {jnp.dtype(problem.dtype).name} "
                "the network cannot resolve its own motion (rounding moves the residual "
                f"by ρ ≈ {resolution:.2g} of how far it moves along the flow, so no "
                f"tolerance below {MAX_RTOL:g} is meaningful). Lower α (the rounding of α f "
                "grows like α) or use float64."
            )
        else:
            status, message, reached["gradient"] = _status(
                grad["result"], delta_w, ts, max_steps, grad
            )
        if tangent == "closed_form" and "tangent" in flows and len(grad["step_ts"]):
            # The tangent flow at the gradient flow's steps too (closed form: cheap), so
            # both are drawn at the same resolution.
            st = jnp.asarray(grad["step_ts"], problem.dtype)
            out["step_loss_u"] = np.asarray(jax.lax.map(tf.loss, st, batch_size=512))
            out["step_gap_f"] = grad["step_gap_f"]
            out["step_gap_w"] = grad["step_gap_w"]
            out["step_dist_u"] = np.asarray(
                jax.lax.map(lambda t: tf.displacement_norm(tf.coefficients(t)), st, batch_size=512)
            )
        if res_u is not None and delta_u is not None:
            out["gap_f"] = np.linalg.norm(res_w - res_u, axis=1)
            out["gap_w"] = np.linalg.norm(delta_w - delta_u, axis=1)
        if error_estimate and np.isfinite(out["loss_w"][1:]).any():
            # The exponential integrator's re-solve advances with its embedded
            # second-order solution: a looser tolerance alone can give the very same steps
            # (one step over the whole horizon in the lazy regime) and a zero budget.
            exponential = isinstance(solver, ExponentialNTK)
            loose = _integrate(
                _GradientField(problem),
                problem,
                ts,
                ExponentialNTK(embedded=True) if exponential else solver,
                rtol * 10,
                atol_value * 10,
                max_steps,
                meter,  # the same meter: a different one would recompile the solve
                closed,
                dt0,
            )
            how = "embedded 2nd-order solution, " if exponential else ""
            stats["error_estimate"] = {
                "method": f"re-solve ({how}10× rtol/atol)",
                **loose["stats"],
            }
            # Where either solve stopped short the budget is NaN: `verify` then calls a
            # check there inconclusive rather than deciding it without a budget.
            dl = loose["deltas"]
            W_loose = problem.w0[None, :] + jnp.asarray(np.nan_to_num(dl), problem.dtype)
            res_l = np.array(jax.vmap(problem.residual)(W_loose))
            res_l[~np.all(np.isfinite(dl), axis=1)] = np.nan
            out["err_w"] = np.linalg.norm(delta_w - dl, axis=1)
            out["err_loss_w"] = np.abs(out["loss_w"] - 0.5 * np.sum(res_l**2, axis=1))
            out["err_res_w"] = np.linalg.norm(res_w - res_l, axis=1)
            if loose["result"] != diffrax.RESULTS.successful:
                stats["error_estimate"]["failed"] = str(loose["result"])

    if t_status is not FlowStatus.SUCCESS:
        # The tangent flow's ODE stopped short: say so first (the gradient flow's own
        # ending, if also short, follows).
        message = t_message if status is FlowStatus.SUCCESS else f"{t_message} {message}"
        status = t_status if status is FlowStatus.SUCCESS else status

    # -- kernel diagnostics and test predictions ---------------------------------------
    if delta_w is not None and diagnostics:
        out.update(kernel_diagnostics(problem, delta_w, k0, progress=progress is not False))
    if problem.data.has_test:
        out.update(test_predictions(problem, delta_w, delta_u))

    # -- gradient descent ----------------------------------------------------------------
    if gd_step is not None:
        gd = gradient_descent(problem, gd_step, ts, lambda_max=float(lam[-1]))
        out["ts_gd"], out["loss_gd"] = gd.ts, gd.loss
        out["dist_gd"] = np.linalg.norm(gd.deltas, axis=1)
        if delta_w is not None:
            out["gap_gd"] = np.linalg.norm(gd.deltas - delta_w, axis=1)
        stats["gd"] = {
            "step": gd.step,
            "iterations": int(gd.iterations[-1]),
            "stable_limit": gd.stable_limit,
            "diverged_at": gd.diverged_at,
            "wall_s": gd.wall_s,
        }
        good = np.isfinite(gd.loss)
        reached["gd"] = float(gd.ts[good][-1]) if good.any() else 0.0
        if gd.diverged_at is not None:
            gd_msg = (
                f" Gradient descent diverged by iteration {gd.diverged_at} "
                f"(t={gd.diverged_at * gd.step:.6g}) with η={gd.step:.4g} "
                f"(stable below 2/(α²λ_max) = {gd.stable_limit:.4g}); lower gd_step."
            )
            message += gd_msg
            if status is FlowStatus.SUCCESS:
                status = FlowStatus.GD_DIVERGED

    if save_params:
        out["params_w"], out["params_u"] = delta_w, delta_u
    return FlowSolution(
        **out,
        t1=t1,
        alpha=problem.alpha,
        R0=0.5 * float(np.sum((np.asarray(tf.r0)) ** 2)),
        sigma_min0=k0.sigma_min_resolved,
        sigma_max0=sigma_max0,
        dist_u_inf=dist_u_inf,
        y_norm=float(np.linalg.norm(y)),
        stats=stats,
        status=status,
        message=message,
        reached=reached,
    )
