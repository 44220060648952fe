"""An exponential integrator for the gradient flow: each step solves the local tangent flow
exactly and corrects for the nonlinearity (docs/theory.md, "The two gradient flows").

The gradient flow `δ̇ = F(δ) = −α J_wᵀ (α f(w) − y)`, `w = w0 + δ`, has Jacobian
`−α² J_wᵀ J_w − α Σ_i r_i ∇²f_i(w)`. Its first part has eigenvalues `α² λ_i(K_w)` and makes
explicit solvers take `~cond(K)·ln(1/ε)` steps; the second is small in the lazy regime
(docs/theory.md, "The proof's quantities": `‖r‖β ≪ ασ²`). At the start `w_k` of each step we split

    F(δ) = L_k (δ − δ_k) + N_k(δ),    L_k = −α² J_kᵀ J_k  (Gauss–Newton / NTK part),

and take an explicit *exponential Runge–Kutta* step (Hochbruck & Ostermann, *Exponential
integrators*, Acta Numerica 19, 2010, §2.3; the `D_i` form of Luan & Ostermann, 2014):
`L_k` is integrated exactly through the φ-functions `φ_j(z) = Σ_m z^m/(m+j)!` and only
`N_k` is approximated. With `Z = hL_k`, `c = (0, 1/3, 2/3)` and
`D_i = N_k(U_i) − N_k(w_k)`:

    U_2 = δ_k + (h/3) φ_1(Z/3) F_k
    U_3 = δ_k + (2h/3) φ_1(2Z/3) F_k + (4h/3) φ_2(2Z/3) D_2
    δ_{k+1} = δ_k + h φ_1(Z) F_k + (3h/2) φ_2(Z) D_3                  (order 3)
    δ̂_{k+1} = δ_k + h φ_1(Z) F_k + 3h φ_2(Z) D_2                     (order 2)

The pair is the exponential analogue of Heun's third-order method (Hochbruck & Ostermann
2005, SIAM J. Numer. Anal. 43); its order conditions `Σ b_i c_i = φ_2`,
`Σ b_i c_i²/2 = φ_3` (classically) and `Σ_j a_3j c_j = c_3² φ_2(c_3 Z)` (exactly) give
classical order 3, and stiff order 2: the third-order condition holds only as `Z → 0`,
its defect `φ_2(Z)/3 − φ_3(Z)` decaying like `1/|Z|` on the stiff modes. The difference
`δ_{k+1} − δ̂_{k+1} = (3h/2) φ_2(Z)(D_3 − 2D_2) = O(h³)` is the error estimate that drives
diffrax's PID controller; the step advances with the third-order solution. Dense output
`δ(t_k + θh) = δ_k + θh φ_1(θZ) F_k + (3h/2) θ² φ_2(θZ) D_3` is of order 2 and equals
`δ_{k+1}` at `θ = 1`.

For a model linear in its parameters, `N_k` is constant, every `D_i` vanishes and one
step is the exact solution for any `h`.

Matrix functions of `L_k` never form a `p × p` matrix: with `K_k = J_k J_kᵀ = V Λ Vᵀ`,

    φ_j(sL_k) J_kᵀ c = J_kᵀ V φ_j(−sα²Λ) Vᵀ c,
    φ_j(sL_k) v = v/j! − sα² J_kᵀ V φ_{j+1}(−sα²Λ) Vᵀ (J_k v),

(`φ_j(z) = 1/j! + z φ_{j+1}(z)`), so a step costs one empirical NTK with its
eigendecomposition, three evaluations of `F`, two JVPs and a few VJPs at `w_k`.
"""

import math
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from ._problem import Problem
from .ntk._kernel import get_ntk_method

# Below this |z| the φ-functions are summed as Taylor series (no cancellation).
_SERIES_BELOW = 1.0
_SERIES_TERMS = 24


def phi(j: int, z: Array) -> Array:
    """`φ_j(z) = Σ_{m≥0} z^m/(m+j)!` for `z ≤ 0`, elementwise and without cancellation:
    `φ_0 = e^z`, `φ_{j+1}(z) = (φ_j(z) − 1/j!)/z` for `|z| ≥ 1`, the Taylor series below."""
    if j == 0:
        return jnp.exp(z)
    small = jnp.abs(z) < _SERIES_BELOW
    zs = jnp.where(small, z, 0.0)
    series = jnp.zeros_like(z)
    for m in reversed(range(_SERIES_TERMS)):
        series = series * zs + 1.0 / math.factorial(m + j)
    zb = jnp.where(small, -1.0, z)
    big = jnp.expm1(zb)
    for i in range(1, j):
        big = big - zb**i / math.factorial(i)
    big = big / zb**j
    return jnp.where(small, series, big)


def traced_kernel(problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
    """`K_w`, traceable (inside a jitted solve), by the problem's method
    (`get_ntk_method("auto")`'s `traced`: structured derivatives for dense-layer models
    with an additive centring, else the contraction of the whole Jacobian)."""
    return get_ntk_method("auto", problem).traced(problem, w)


class _Eigen(eqx.Module):
    """The φ-function actions of `L_k = −α² J_kᵀ H_k J_k` at the start of a step, as
    coefficient vectors `c'` (the move itself is `J_kᵀ c'`). Arrays only, so the step's
    dense output carries it too.

    Squared loss (`S = None`, `H_k = I`): `K_k = V Λ Vᵀ` and `x = r_k`. Another loss:
    `H_k = S²` (`S` symmetric positive definite: the loss's Hessian at `z_k`, floored, see
    `_curvature`), `S K_k S = V Λ Vᵀ` and `x = S⁻¹ ∇R(z_k)`; then
    `φ_j(sL_k) J_kᵀ S = J_kᵀ S V φ_j(−sα²Λ) Vᵀ`."""

    alpha: Array
    lam: Array
    V: Array
    r: Array
    S: Array | None = None

    def rotate(self, g: Array, c: Array) -> Array:
        """`V diag(g) Vᵀ c`, or `S V diag(g) Vᵀ c` for a loss with curvature `S²`."""
        out = self.V @ (g * (self.V.T @ c))
        return out if self.S is None else self.S @ out

    def z(self, s: Any) -> Array:
        return -s * self.alpha * self.alpha * self.lam

    def row(self, j: int, s: Any) -> Array:
        """Coefficients `c'` with `φ_j(sL) F_k = J_kᵀ c'` (`F_k = −α J_kᵀ ∇R(z_k)`)."""
        return -self.alpha * self.rotate(phi(j, self.z(s)), self.r)

    def general(self, j: int, s: Any, Jv: Array) -> Array:
        """Coefficients `c'` with `φ_j(sL) v = v/j! + J_kᵀ c'`, given `J_k v`."""
        Jv = Jv if self.S is None else self.S @ Jv
        return -s * self.alpha * self.alpha * self.rotate(phi(j + 1, self.z(s)), Jv)


# A loss's curvature is floored at this fraction of its largest eigenvalue: the split's
# linear part may be any matrix (the remainder takes the rest), and the floor keeps
# `S⁻¹` (and the rounding it amplifies) within a factor 1e3.
CURVATURE_FLOOR = 1e-6


def _curvature(problem: Problem, z: Array) -> tuple[Array, Array, Array]:
    """`(H, S, S⁻¹)`: the loss's Hessian at `z` with its eigenvalues floored at
    `CURVATURE_FLOOR·max` (`H = S²`, `S` its symmetric square root)."""
    H = jax.hessian(problem.loss_at)(z)
    h, Q = jnp.linalg.eigh(0.5 * (H + H.T))
    tiny = jnp.finfo(z.dtype).tiny
    h = jnp.maximum(h, CURVATURE_FLOOR * jnp.maximum(h[-1], tiny))
    root = jnp.sqrt(h)[None, :]
    return (Q * h[None, :]) @ Q.T, (Q * root) @ Q.T, (Q / root) @ Q.T


class _Local(eqx.Module):
    """The local tangent flow at `w_k`: `K_k` and the eigendecomposition of the split's
    linear part, the JVP and VJP of `f` there, the loss's gradient `g` (`r_k` for the
    squared loss) and its floored Hessian `H` (`None`: the identity)."""

    eig: _Eigen
    K: Array
    jvp: Any
    vjp: Any
    g: Array
    H: Array | None

    @classmethod
    def at(cls, problem: Problem, delta: Array, initial: "InitialFactors | None") -> "_Local":
        """At `w = w0 + δ`; where `δ = 0` exactly, `K0` (and, for the squared loss, its
        eigendecomposition) are the `initial` ones (formed and factored once per run,
        `InitialKernel`), not formed again."""
        w = problem.w0 + delta
        f, jvp = jax.linearize(problem.f, w)
        vjp = jax.linear_transpose(jvp, w)
        a = problem.alpha_array

        def fresh() -> tuple[Array, Array, Array]:
            K = traced_kernel(problem, w)
            lam, V = jnp.linalg.eigh(K)
            return K, lam, V

        if problem.squared:
            if initial is None:
                K, lam, V = fresh()
            else:
                at_w0 = jnp.all(delta == 0)
                K, lam, V = jax.lax.cond(at_w0, lambda: (initial.K, initial.lam, initial.V), fresh)
            r = a * f - problem.y
            return cls(_Eigen(a, jnp.maximum(lam, 0.0), V, r), K, jvp, vjp, r, None)
        if initial is None:
            K = traced_kernel(problem, w)
        else:
            K = jax.lax.cond(
                jnp.all(delta == 0), lambda: initial.K, lambda: traced_kernel(problem, w)
            )
        z = a * f
        g = problem.loss_gradient(z)
        H, S, S_inv = _curvature(problem, z)
        KS = S @ K @ S
        lam, V = jnp.linalg.eigh(0.5 * (KS + KS.T))
        eig = _Eigen(a, jnp.maximum(lam, 0.0), V, S_inv @ g, S)
        return cls(eig, K, jvp, vjp, g, H)

    def lin(self, Jd: Array) -> Array:
        """`H_k J_k d` from `J_k d` (the linear part's action, before `−α² J_kᵀ`)."""
        return Jd if self.H is None else self.H @ Jd

    def JT(self, c: Array) -> Array:
        (out,) = self.vjp(c)
        return out

    def JT_batch(self, c1: ArrayLike, c2: ArrayLike) -> tuple[Array, Array]:
        """`J_kᵀ c1`, `J_kᵀ c2` in one batched VJP."""
        out = jax.vmap(self.JT)(jnp.stack([c1, c2]))
        return out[0], out[1]


def _field(problem: Problem, delta: Array) -> Array:
    return -jax.grad(problem.loss)(problem.w0 + delta)


class _ExponentialInterpolation(diffrax.AbstractLocalInterpolation):
    """Dense output of one step, `δ(t_k + θh) = δ_k + θh φ_1(θZ) F_k + b h θ² φ_2(θZ) D`
    (order 2): `b = 3/2`, `D = D_3` for the third-order solution, `b = 3`, `D = D_2` for
    the embedded one. One VJP at `w_k` per evaluation."""

    t0: Any
    t1: Any
    problem: Problem
    y0: Array
    eig: _Eigen
    D: Array
    JD: Array
    b: Any

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return self.evaluate(t1) - self.evaluate(t0)
        h = self.t1 - self.t0
        s = t0 - self.t0
        theta = s / jnp.where(h > 0, h, 1.0)
        # sφ_1(sL)F_k + b h θ² φ_2(sL) D, with φ_2(sL) D = D/2 + J_kᵀ general(2, s, J_k D)
        coef = s * self.eig.row(1, s) + (self.b * h * theta**2) * self.eig.general(2, s, self.JD)
        _, vjp = jax.vjp(self.problem.f, self.problem.w0 + self.y0)
        (move,) = vjp(coef)
        return self.y0 + (0.5 * self.b * h * theta**2) * self.D + move


class ExponentialNTK(diffrax.AbstractAdaptiveSolver):
    """The NTK exponential integrator (exponential Runge–Kutta 3(2) on the Gauss–Newton
    splitting, see the module docstring) as a diffrax solver, for `solve_flows`'s gradient
    flow: the term must be the gradient-flow field of a `Problem`, whose state is
    `δ = w − w0`, and `diffeqsolve`'s `args` that `Problem`, or `(Problem, InitialFactors)`
    to reuse `K0`'s eigendecomposition at the first step (as `solve_flows` does).

    Use it with `diffrax.PIDController` like any adaptive solver; `order` is 3, and the
    error estimate is that of the embedded second-order solution.

    **Arguments:**

    - `embedded`: advance with the embedded second-order solution instead (same steps'
      error estimate). `solve_flows` uses it for the error-estimate re-solve: unlike a
      re-solve at looser tolerances with the same method, it differs from the main
      solve even when both take the same steps (in the lazy regime, often one step).
    """

    # An array, not a static flag: the embedded re-solve reuses the main solve's compiled
    # program (a static flag recompiled it, ~3.5 s on the seed network).
    embedded: Bool[Array, ""]
    term_structure: ClassVar = diffrax.ODETerm
    interpolation_cls: ClassVar = _ExponentialInterpolation

    def __init__(self, embedded: bool = False):
        self.embedded = jnp.asarray(embedded)

    def order(self, terms):
        return 3

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        problem, initial = _problem_of(args)
        h = t1 - t0
        a = problem.alpha_array
        loc = _Local.at(problem, y0, initial)
        eig, g, K = loc.eig, loc.g, loc.K
        # Stage 2: U2 − δ_k = J_kᵀ a2, so J_k (U2 − δ_k) = K a2 and
        # L_k(U2 − δ_k) = −α²J_kᵀ H_k K a2. D = F(U) − F_k − L_k(U − δ_k)
        # = F(U) + J_kᵀ(α g_k + α² H_k J_k(U − δ_k)); both VJPs of a stage in one call.
        a2 = (h / 3) * eig.row(1, h / 3)
        move2, lin2 = loc.JT_batch(a2, a * g + a * a * loc.lin(K @ a2))
        U2 = y0 + move2
        D2 = _field(problem, U2) + lin2
        JD2 = loc.jvp(D2)
        # Stage 3: U3 − δ_k = (2h/3)φ_1(2Z/3)F_k + (4h/3)φ_2(2Z/3)D2
        #        = (2h/3) D2 + J_kᵀ b3.
        c3 = 2 * h / 3
        b3 = c3 * eig.row(1, c3) + (4 * h / 3) * eig.general(2, c3, JD2)
        JU3 = c3 * JD2 + K @ b3
        move3, lin3 = loc.JT_batch(b3, a * g + a * a * loc.lin(JU3))
        U3 = y0 + c3 * D2 + move3
        D3 = _field(problem, U3) + lin3
        JD3 = loc.jvp(D3)
        # δ_{k+1} = δ_k + hφ_1(Z)F_k + (3h/2)φ_2(Z)D3, error (3h/2)φ_2(Z)(D3 − 2D2).
        coef_y = h * eig.row(1, h) + (3 * h / 2) * eig.general(2, h, JD3)
        coef_e = (3 * h / 2) * eig.general(2, h, JD3 - 2 * JD2)
        move_y, move_e = loc.JT_batch(coef_y, coef_e)
        y1 = y0 + (3 * h / 4) * D3 + move_y
        y_error = (3 * h / 4) * (D3 - 2 * D2) + move_e
        # Embedded: δ̂_{k+1} = δ_k + hφ_1(Z)F_k + 3hφ_2(Z)D2 = δ_{k+1} − error.
        emb = self.embedded
        dense_info = dict(
            problem=problem,
            y0=y0,
            eig=eig,
            D=jnp.where(emb, D2, D3),
            JD=jnp.where(emb, JD2, JD3),
            b=jnp.where(emb, 3.0, 1.5).astype(y0.dtype),
        )
        y_out = jnp.where(emb, y1 - y_error, y1)
        return y_out, y_error, dense_info, None, diffrax.RESULTS.successful


class InitialFactors(eqx.Module):
    """`K0` and its eigendecomposition `V diag(lam) Vᵀ` in the problem's dtype: the
    integrator's first steps (at `δ = 0`) use them instead of forming `K0` again."""

    K: Array
    lam: Array
    V: Array


def _problem_of(args: Any) -> tuple[Problem, InitialFactors | None]:
    """The `Problem` whose gradient flow is being solved, and `K0`'s factors if given:
    `solve_flows` passes `(problem, InitialFactors)` as `diffeqsolve`'s `args` (a bare
    `Problem` also works: `K0` is then formed at the first step)."""
    problem, initial = args if isinstance(args, tuple) and len(args) == 2 else (args, None)
    if not isinstance(problem, Problem) or not (
        initial is None or isinstance(initial, InitialFactors)
    ):
        raise ValueError(
            "ExponentialNTK integrates the gradient flow of an ntkflow Problem: use it "
            "through solve_flows(..., solver='exponential'), not on another vector field"
        )
    return problem, initial
