"""The gradient flow's integrators, looked up by name (docs/flows.md, "Solvers").

`"adams"` is ntkflow's exponential Adams integrator on the deviation from the local
tangent path (`ExponentialAdams`, squared loss), `"exponential"` its NTK exponential
Runge–Kutta integrator (`ExponentialNTK`, any loss); the others are diffrax's explicit
Runge–Kutta methods with the bounded stage scan. `choose_solver` is `solver="auto"`.
This is where a new integrator plugs in: add it to `_SOLVERS` (and to
`choose_solver` if `"auto"` should pick it).
"""

from typing import Any

import diffrax

from ._adams import ExponentialAdams
from ._exponential import ExponentialNTK
from ._problem import Problem
from .ntk._kernel import get_ntk_method


def default_solver() -> diffrax.AbstractSolver:
    """Tsit5 with the bounded scan: same steps as diffrax's default stage loop, about half
    the cost per evaluation on CPU."""
    return diffrax.Tsit5(scan_kind="bounded")


# A gradient-flow integrator: a diffrax solver, or ntkflow's own loop (`ExponentialAdams`).
Solver = diffrax.AbstractSolver | ExponentialAdams

_SOLVERS = {
    "adams": ExponentialAdams,
    "exponential": ExponentialNTK,
    "tsit5": default_solver,
    "dopri5": lambda: diffrax.Dopri5(scan_kind="bounded"),
    "dopri8": lambda: diffrax.Dopri8(scan_kind="bounded"),
    "bosh3": lambda: diffrax.Bosh3(scan_kind="bounded"),
}

SOLVER_NAMES = ("auto", *_SOLVERS)
# `solver="auto"` takes the exponential integrator from this cond(K0) up (`bench/flows.py`).
AUTO_EXPONENTIAL_COND = 100.0
# ... or when the horizon spans this many of the fastest mode's time scales 1/(α²λ_max):
# an explicit solver's stable step is a few of them, so it would need thousands of steps
# (e.g. a t1 chosen far past convergence).
AUTO_EXPONENTIAL_SPAN = 3000.0
# ... while the traced kernel fits: a whole Jacobian of at most this many bytes (models
# without dense-layer structure) and at most this many outputs (an eigh per step).
AUTO_EXPONENTIAL_MAX_JACOBIAN_BYTES = 2**30
AUTO_EXPONENTIAL_MAX_N = 4096


def get_solver(name: str) -> Solver:
    """A solver by name: `"adams"` (`ExponentialAdams`, the exponential Adams integrator
    of the squared loss's flow), `"exponential"` (`ExponentialNTK`, the NTK exponential
    Runge–Kutta integrator), or diffrax's `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`,
    each with the bounded stage scan. (`"auto"` needs the problem: see `choose_solver`.)"""
    try:
        return _SOLVERS[name.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(f"unknown solver={name!r}; use one of: {', '.join(_SOLVERS)}") from None


def as_solver(solver: Any) -> Solver | str:
    """`solve_flows`' `solver` argument checked: a diffrax solver, a solver by name, or
    `"auto"` (returned as is: `choose_solver` needs the kernel's condition number)."""
    if solver is None:
        return default_solver()
    if isinstance(solver, str):
        return "auto" if solver.lower() == "auto" else get_solver(solver)
    if isinstance(solver, diffrax.AbstractSolver | ExponentialAdams):
        return solver
    raise ValueError(
        f"solver must be a name ({', '.join(SOLVER_NAMES)}) or a diffrax solver, got "
        f"solver={solver!r}"
    )


def choose_solver(problem: Problem, cond: float, *, span: float = 0.0) -> Solver:
    """`solver="auto"`: an exponential integrator when the flow is stiff — the exponential
    Adams one (`ExponentialAdams`) for the squared loss, whose local tangent path is in
    closed form, else `ExponentialNTK` — (`cond(K0) ≥ 100`,
    or a horizon that spans `span = t1·α²Lλ_max(K0) ≥ 3000` of the fastest mode's time
    scales) and a kernel per step is affordable (at most 4096 outputs; a
    model with the structured kernel, or a Jacobian of at most 1 GiB), else Tsit5. For a
    loss other than the square the stiffness is that of `H K0` (`H` the loss's Hessian), bounded by
    `cond(K0)·κ`; `cond(K0)` alone decides, as for the square."""
    method = get_ntk_method("auto", problem)  # (the kernel each step forms)
    affordable = (
        problem.n <= AUTO_EXPONENTIAL_MAX_N
        and method.traced_bytes(problem) <= AUTO_EXPONENTIAL_MAX_JACOBIAN_BYTES
    )
    stiff = not cond < AUTO_EXPONENTIAL_COND or span >= AUTO_EXPONENTIAL_SPAN
    if affordable and stiff:
        return ExponentialAdams() if problem.squared else ExponentialNTK()
    return default_solver()


def evaluations(solver: Solver, num_steps: int) -> int | None:
    """Vector-field evaluations of a solve of `num_steps` (accepted and rejected) steps.
    For an explicit Runge–Kutta method, `stages − 1` per step when the first stage reuses
    the last (FSAL), else `stages`, plus one initial evaluation: exact to within the one or
    two evaluations diffrax's initial step-size selection adds. `ExponentialNTK`: the
    field at `w_k` (in the linearisation) and at the two stages `U_2`, `U_3`. `None` for
    other solvers."""
    if isinstance(solver, ExponentialNTK):
        return 2 + 3 * num_steps
    if isinstance(solver, ExponentialAdams):
        return 1 + 2 * num_steps  # (PECE: two gradients a step, one at w0)
    if not isinstance(solver, diffrax.AbstractERK):
        return None
    tableau: Any = solver.tableau
    stages = len(tableau.c) + 1
    if tableau.fsal:
        return 1 + (stages - 1) * num_steps
    return stages * num_steps


def kernel_evaluations(solver: Solver, num_steps: int) -> int:
    """The exponential integrator's steps: each forms an empirical NTK and its `eigh`,
    except the steps from `w0` (they reuse `K0`'s, `InitialFactors`). 0 for the others."""
    return num_steps if isinstance(solver, ExponentialNTK) else 0
