"""The tangent flow in closed form (docs/theory.md, "The two gradient flows").

The linearised network `f_0(u) = f(w0) + J_0 (u − w0)` trained by gradient flow,
`u̇ = −α J_0ᵀ (α f_0(u) − y)`, `u(0) = w0`, is a linear ODE. With `r0 = α f(w0) − y`,
`K0 = J_0 J_0ᵀ = V Λ Vᵀ` and `E(t) = exp(−α² K0 t)`:

    α f_0(u(t)) − y = E(t) r0,
    u(t) − w0 = J_0ᵀ c(t),   c(t) = −(1/α) V φ_t(Λ) Vᵀ r0,   φ_t(λ) = (1 − e^{−α²λt})/λ.

`φ_t(λ) = α² t · (1 − e^{−x})/x` with `x = α²λt` is evaluated with `expm1`, so it stays
accurate as `λ → 0` (its limit is `α² t`) and nothing is divided by `λ`. The limit
`u∞ = w0 − (1/α) J_0ᵀ K0⁺ r0` is the minimum-norm interpolant of the tangent model (the
pseudo-inverse drops eigenvalues below the numerical-rank tolerance).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar, ScalarLike

from ._problem import Problem
from ._repr import concise
from .ntk._initial_kernel import InitialKernel, as_initial_kernel


def _phi(lam: Array, t: ScalarLike, alpha2: ScalarLike) -> Any:
    """`(1 − e^{−α²λt})/λ`, stably: `α² t · (−expm1(−x))/x` with `x = α²λt ≥ 0`."""
    x = alpha2 * lam * t
    safe = jnp.where(x > 0, x, 1.0)
    ratio = jnp.where(x > 0, -jnp.expm1(-safe) / safe, 1.0)
    return alpha2 * t * ratio


@concise
class TangentFlow(eqx.Module):
    """The tangent flow's closed form for one problem.

    Built from the problem's `InitialKernel` (its eigendecomposition is not recomputed),
    or from a `K0` array (factored here).

    **Fields:** `problem`, `eigenvalues` (of `K0`, ascending, clipped at 0),
    `eigenvectors` (`V`), `r0` (`α f(w0) − y`), `rank_tolerance` (the spectrum's
    numerical-rank tolerance: eigenvalues at or below it are treated as 0 in `u∞`).
    """

    problem: Problem
    eigenvalues: Float[Array, " n"]
    eigenvectors: Float[Array, "n n"]
    r0: Float[Array, " n"]
    # An array, not a static float: problems differing in it share compiled solves.
    rank_tolerance: Float[Array, ""]

    def __init__(self, problem: Problem, kernel: InitialKernel | Float[Array, "n n"]):
        kernel = as_initial_kernel(problem, kernel)
        dtype = problem.dtype
        self.problem = problem
        self.eigenvalues = jnp.maximum(jnp.asarray(kernel.eigenvalues, dtype), 0.0)
        self.eigenvectors = jnp.asarray(kernel.eigenvectors, dtype)
        self.r0 = problem.r0
        self.rank_tolerance = jnp.asarray(kernel.spectrum.tolerance, dtype)

    def _rotate(self, scale: Float[Array, " n"]) -> Float[Array, " n"]:
        """`V diag(scale) Vᵀ r0`."""
        V = self.eigenvectors
        return V @ (scale * (V.T @ self.r0))

    def _time(self, t: ScalarLike) -> Array:
        """`t` in the problem's dtype (a float64 time would promote a float32 problem's
        arrays)."""
        return jnp.asarray(t, self.r0.dtype)

    def residual(self, t: ScalarLike) -> Float[Array, " n"]:
        """`α f_0(u(t)) − y = E(t) r0`."""
        t = self._time(t)
        a2 = self.problem.alpha_array**2
        return self._rotate(jnp.exp(-a2 * self.eigenvalues * t))

    def loss(self, t: ScalarLike) -> Scalar:
        """`R(α f_0(u(t))) = ½‖E(t) r0‖²`."""
        r = self.residual(t)
        return 0.5 * jnp.vdot(r, r)

    def coefficients(self, t: ScalarLike) -> Float[Array, " n"]:
        """`c(t)` with `u(t) − w0 = J_0ᵀ c(t)`."""
        t = self._time(t)
        a = self.problem.alpha_array
        return -self._rotate(_phi(self.eigenvalues, t, a * a)) / a

    def limit_coefficients(self) -> Float[Array, " n"]:
        """`c∞ = −(1/α) K0⁺ r0`, so `u∞ − w0 = J_0ᵀ c∞`."""
        lam = self.eigenvalues
        keep = lam > self.rank_tolerance
        inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
        return -self._rotate(inv) / self.problem.alpha_array

    def distance_to_limit(self, t: ScalarLike) -> Scalar:
        """`‖u(t) − u∞‖`, without cancellation: in the eigenbasis `c(t) − c∞` has entries
        `e^{−α²λt}(vᵀr0)/(αλ)` on the kept modes and `−φ_t(λ)(vᵀr0)/α` on the others."""
        t = self._time(t)
        a = self.problem.alpha_array
        lam = self.eigenvalues
        proj = self.eigenvectors.T @ self.r0
        keep = lam > self.rank_tolerance
        kept = jnp.exp(-a * a * lam * t) * proj / (a * jnp.where(keep, lam, 1.0))
        z = jnp.where(keep, kept, -_phi(lam, t, a * a) * proj / a)
        return jnp.sqrt(jnp.sum(lam * z * z))

    def displacement_norm(self, c: Float[Array, " n"]) -> Scalar:
        """`‖J_0ᵀ c‖ = sqrt(cᵀ K0 c)`, from the eigendecomposition."""
        z = self.eigenvectors.T @ c
        return jnp.sqrt(jnp.sum(self.eigenvalues * z * z))

    def distance(self, t: ScalarLike) -> Scalar:
        """`‖u(t) − w0‖`."""
        return self.displacement_norm(self.coefficients(t))

    def displacement(self, c: Float[Array, " n"]) -> Float[Array, " p"]:
        """`J_0ᵀ c ∈ R^p` by one vector-Jacobian product (no Jacobian)."""
        _, vjp = jax.vjp(self.problem.f, self.problem.w0)
        (out,) = vjp(jnp.asarray(c, self.r0.dtype))
        return out
