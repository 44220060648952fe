"""How the tangent flow is computed: strategies looked up by name (docs/theory.md, "The
two gradient flows").

- `ClosedForm` (`"closed_form"`): `TangentFlow`'s eigendecomposition formula at every
  save time; exact, and cheap at any time, so the gradient flow's solve also records its
  gaps to it at every step.
- `TangentODE` (`"ode"`): diffrax on `jax.linearize` (one JVP and one VJP per
  evaluation); for when an eigendecomposition of `K0` is not wanted, and as an
  independent check of the closed form.

A new way to compute the tangent flow (e.g. for a loss without a closed form) is a new
`AbstractTangentMethod` added to `TANGENT_METHODS`.
"""

import abc
import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._adams import ExponentialAdams
from ._exponential import ExponentialNTK
from ._integrate import Path, SolveSettings, TangentField, ending, integrate
from ._problem import Problem
from ._solvers import default_solver
from ._stats import FlowStatus, SolveStats
from ._tangent import TangentFlow


@dataclasses.dataclass(frozen=True, eq=False)
class TangentPath:
    """The tangent flow at the save times: `deltas` (`u(t_i) − w0`), `residuals`
    (`α f_0(u(t_i)) − y`), `dist_to_limit` (`‖u(t_i) − u∞‖`), how it ended (`status`,
    `message`, `t_reached`), its `stats`, and `closed_form`: the `TangentFlow` to evaluate
    between the save times, or `None` when the path is known only at them."""

    deltas: np.ndarray
    residuals: np.ndarray
    dist_to_limit: np.ndarray | None
    status: FlowStatus
    message: str
    t_reached: float
    stats: SolveStats
    closed_form: TangentFlow | None


class AbstractTangentMethod(eqx.Module):
    """A way to compute the tangent flow `u(t)` at the save times."""

    @abc.abstractmethod
    def solve(self, tangent: TangentFlow, settings: SolveSettings) -> TangentPath:
        """The tangent flow of `tangent.problem` over `settings.ts`; `tangent` is the
        closed form built from the problem's `InitialKernel` (its `r0`, its limit)."""


@eqx.filter_jit
def _closed_form_path(
    tangent: TangentFlow, times: Float[Array, " s"]
) -> tuple[Float[Array, "s p"], Float[Array, "s n"], Float[Array, " s"]]:
    """`u(t) − w0`, the residual and `‖u(t) − u∞‖` at every time, as one compiled program
    (evaluated op by op, the closed form compiled dozens of small ones)."""
    deltas = jax.vmap(tangent.displacement)(jax.vmap(tangent.coefficients)(times))
    return deltas, jax.vmap(tangent.residual)(times), jax.vmap(tangent.distance_to_limit)(times)


class ClosedForm(AbstractTangentMethod):
    """The tangent flow from the eigendecomposition of `K0` (`TangentFlow`): exact."""

    def solve(self, tangent: TangentFlow, settings: SolveSettings) -> TangentPath:
        start = time.perf_counter()
        times = jnp.asarray(settings.ts, tangent.problem.dtype)
        deltas, residuals, dist_to_limit = _closed_form_path(tangent, times)
        return TangentPath(
            deltas=np.asarray(deltas),
            residuals=np.asarray(residuals),
            dist_to_limit=np.asarray(dist_to_limit),
            status=FlowStatus.SUCCESS,
            message="",
            t_reached=settings.t1,
            stats=SolveStats(method="closed_form", wall_s=time.perf_counter() - start),
            closed_form=tangent,
        )


class TangentODE(AbstractTangentMethod):
    """The tangent flow as an ODE on the linearisation, by diffrax, with the gradient
    flow's tolerances and solver (Tsit5 when that is the exponential integrator, which is
    built for the network's flow)."""

    def solve(self, tangent: TangentFlow, settings: SolveSettings) -> TangentPath:
        start = time.perf_counter()
        problem = tangent.problem
        if isinstance(settings.solver, ExponentialNTK | ExponentialAdams):
            # (and diffrax's own first step: `dt0` is the exponential integrator's)
            settings = dataclasses.replace(settings, solver=default_solver(), dt0=None)
        path: Path = integrate(TangentField(problem), problem, settings)
        status, message, t_reached = ending(path, settings, flow="tangent")
        deltas = path.deltas
        # α f_0(u) − y = r0 + α J_0 (u − w0): the linear model, not the network.
        _, jvp = jax.linearize(problem.f, problem.w0)
        lin = jax.vmap(jvp)(jnp.asarray(np.nan_to_num(deltas), problem.dtype))
        residuals = np.array(tangent.r0[None, :] + problem.alpha * lin)
        residuals[~np.all(np.isfinite(deltas), axis=1)] = np.nan
        if problem.squared:
            u_inf = np.asarray(tangent.displacement(tangent.limit_coefficients()))
            to_limit = np.linalg.norm(deltas - u_inf[None, :], axis=1)
        else:  # (the limit is the squared loss's minimum-norm interpolant only)
            to_limit = None
        stats = dataclasses.replace(path.stats, method="ode", wall_s=time.perf_counter() - start)
        return TangentPath(
            deltas=deltas,
            residuals=residuals,
            dist_to_limit=to_limit,
            status=status,
            message=message if status is not FlowStatus.SUCCESS else "",
            t_reached=t_reached,
            stats=stats,
            closed_form=None,
        )


TANGENT_METHODS: dict[str, type[AbstractTangentMethod]] = {
    "closed_form": ClosedForm,
    "ode": TangentODE,
}


def get_tangent_method(
    method: "str | AbstractTangentMethod", problem: Problem
) -> AbstractTangentMethod:
    """A tangent-flow strategy by name (`"auto"`: the closed form for the squared loss,
    the ODE for another; `"closed_form"`, `"ode"`), or one given."""
    if method == "auto":
        method = "closed_form" if problem.squared else "ode"
    if isinstance(method, AbstractTangentMethod):
        found = method
    else:
        try:
            found = TANGENT_METHODS[method]()
        except (KeyError, TypeError):
            raise ValueError(
                f"tangent must be 'auto', {', '.join(map(repr, TANGENT_METHODS))} or an "
                f"AbstractTangentMethod, got tangent={method!r}"
            ) from None
    if isinstance(found, ClosedForm) and not problem.squared:
        raise ValueError(
            f"tangent='closed_form' needs the squared loss (the tangent flow is then linear), "
            f"got loss={problem.loss_name!r}; use tangent='auto' or 'ode'"
        )
    return found
