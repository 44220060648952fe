"""`β`, the Lipschitz constant of the Jacobian: `‖J_w − J_v‖_op ≤ β ‖w − v‖`.

Certified bounds where docs/theory.md, "Smoothness", proves one; estimates otherwise, each a
*lower* bound on the true supremum and labelled as such:

- curvature at `w0`: `β(w0) = sup_{‖d‖=1} ‖DJ(w0)[d]‖_op = sup_{‖v‖=1} ‖Σ_i v_i H_i(w0)‖_op`
  (`H_i` the Hessian of `f_i`), maximised by an alternating power method on
  Hessian-vector products;
- ball sampling: the secant `‖J_v − J_{w0}‖_op / ‖v − w0‖` at random points `v` on the
  sphere of radius `B` around `w0`, its operator norm by power iteration on
  Jacobian-vector products.
"""

import dataclasses
import math
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ._centering import Antisymmetric, NoCentering
from ._mlp_beta import MLPBall
from ._problem import Problem, as_key
from ._repr import concise
from .models import MLP, Shallow

BetaKind = Literal["certified", "user", "estimate", "infinite"]


@concise
@dataclasses.dataclass(frozen=True)
class BetaEstimate:
    """One value of `β` and where it comes from.

    **Fields:**

    - `value`: the value.
    - `kind`: `"certified"` (a proven upper bound), `"user"` (given by the user, e.g.
      `certify(problem, beta=…)`: a proof that rests on it), `"estimate"` (a lower bound
      on the true supremum: not a proof) or `"infinite"` (no finite `β` exists).
    - `method`: how it was obtained.
    - `radius`: the radius of the ball around `w0` on which it is valid or was sampled
      (`inf` for a global bound).
    - `note`: a sentence for reports.
    """

    value: float
    kind: BetaKind
    method: str
    radius: float = math.inf
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _shallow_trained_width(problem: Problem) -> tuple[Shallow, int] | None:
    """The shallow model and the width of the network actually trained (the doubling
    trick duplicates every hidden unit), or `None` when no certified bound applies."""
    model = problem.model
    if not isinstance(model, Shallow) or problem.data.k != 1:
        return None
    if type(problem.centering) is Antisymmetric:
        return model, 2 * model.width
    if isinstance(problem.centering, NoCentering):  # `none` and `subtract`
        return model, model.width
    return None


def certified_beta(problem: Problem, sigma_min: float | None = None) -> BetaEstimate | None:
    """The certified `β` of docs/theory.md, "Smoothness", for a shallow network or an `MLP`,
    or `None` if none is known.

    - `MLP`: `MLPBall`'s layer-wise bound (docs/theory.md, "Deep networks: a certified
      β"), at the consistent radius `r = B = σ_min/(2β(r))`. Needs `sigma_min`.

    - `Shallow(train="hidden")`: `β = (sup|σ''|/√m) · sqrt(Σ_i ‖x_i‖⁴)`, valid everywhere.
    - `Shallow(train="all")`: `β(r) = m^{-1/2} (√2 sup|σ'| ‖X‖_F + (A0 + r) sup|σ''|
      sqrt(Σ_i ‖x_i‖⁴))`, valid on the ball of radius `r`; taken at the consistent radius
      `r = B = σ_min/(2β(r))` (the positive root of a quadratic), so the bound holds on
      exactly the ball the theorem uses. Needs `sigma_min`.

    With antisymmetric centring the trained network is a shallow network of width `2m`
    (each unit duplicated with its output weight negated), so `m` is `2·width`.
    """
    if isinstance(problem.model, MLP):
        return _mlp_beta(problem, sigma_min)
    found = _shallow_trained_width(problem)
    if found is None:
        return None
    model, m = found
    act = model.activation
    if not act.smooth:
        return BetaEstimate(
            math.inf, "infinite", "activation", note=f"{act.name} is not smooth: β = ∞"
        )
    X = np.asarray(problem.data.X, dtype=np.float64)
    sq = np.sum(X * X, axis=1)
    s4 = math.sqrt(float(np.sum(sq * sq)))
    if model.train == "hidden":
        beta = act.sup_d2 / math.sqrt(m) * s4
        return BetaEstimate(
            beta,
            "certified",
            "shallow-hidden bound",
            note=f"(sup|σ''|/√m)·sqrt(Σ‖x_i‖⁴) with sup|σ''| = {act.sup_d2:.6g}, m = {m}",
        )
    if sigma_min is None:
        raise ValueError("certified_beta for Shallow(train='all') needs sigma_min")
    params = problem.unravel(problem.w0)
    a = [p["a"] for p in (params if isinstance(params, tuple) else (params,))]
    A0 = float(max(jnp.max(jnp.abs(x)) for x in a))
    c1 = math.sqrt(2.0) * act.sup_d1 * float(np.linalg.norm(X)) + A0 * act.sup_d2 * s4
    c1 /= math.sqrt(m)
    c2 = act.sup_d2 * s4 / math.sqrt(m)
    # B = σ_min / (2 β(B)) with β(r) = c1 + c2 r  ⇔  2 c2 B² + 2 c1 B − σ_min = 0.
    if c2 > 0:
        radius = (-2 * c1 + math.sqrt(4 * c1 * c1 + 8 * c2 * sigma_min)) / (4 * c2)
    else:
        radius = sigma_min / (2 * c1) if c1 > 0 else math.inf
    beta = c1 + c2 * radius
    return BetaEstimate(
        beta,
        "certified",
        "shallow-all ball bound",
        radius=radius,
        note=(
            f"β(r) = m^(-1/2)(√2·sup|σ'|·‖X‖_F + (A0 + r)·sup|σ''|·sqrt(Σ‖x_i‖⁴)), certified "
            f"on the ball of radius r = B = {radius:.6g} (A0 = {A0:g}, m = {m})"
        ),
    )


def _mlp_beta(problem: Problem, sigma_min: float | None) -> BetaEstimate | None:
    """`MLPBall`'s bound at the consistent radius `r = σ_min/(2β(r))` (docs/theory.md,
    "Deep networks: a certified β"); `None` for a centring it does not know."""
    if not isinstance(problem.centering, (NoCentering, Antisymmetric)):
        return None
    model = problem.model
    assert isinstance(model, MLP)
    act = model.activation
    if not act.smooth:
        return BetaEstimate(
            math.inf, "infinite", "activation", note=f"{act.name} is not smooth: β = ∞"
        )
    if sigma_min is None:
        raise ValueError("certified_beta for an MLP needs sigma_min")
    if not sigma_min > 0:
        return None  # no ball: the theorem cannot apply (certify says why)
    ball = MLPBall(problem)
    radius = ball.consistent_radius(sigma_min)
    return BetaEstimate(
        ball.beta(radius),
        "certified",
        "mlp ball bound",
        radius=radius,
        note=(
            "layer-wise bound on sup ‖D²f‖ over the ball (operator and column norms of W_l "
            f"at w0 plus r, sup|σ'| = {act.sup_d1:.6g}, sup|σ''| = {act.sup_d2:.6g}, "
            f"‖h_l(x_i)‖ at w0), certified on the ball of radius r = B = {radius:.6g}"
        ),
    )


def _unit(x: Array) -> Array:
    return x / jnp.maximum(jnp.linalg.norm(x), jnp.finfo(x.dtype).tiny)


@eqx.filter_jit
def _curvature_power(
    problem: Problem, w: Float[Array, " p"], key: PRNGKeyArray, iters: int
) -> Scalar:
    """Alternating power method for `sup_{‖v‖=‖u‖=1} ‖Σ_i v_i H_i(w) u‖`.

    For unit `v`, `u`, both `‖Σ_i v_i H_i u‖` and `‖D²f(w)[u, u]‖` are ≤ `β(w)`, so the
    running maximum of both is a valid lower bound at every iteration.
    """

    def d2f(u: Array) -> Array:  # D²f(w)[u, u] ∈ R^n
        return jax.jvp(lambda x: jax.jvp(problem.f, (x,), (u,))[1], (w,), (u,))[1]

    def mv(v: Array, u: Array) -> Array:  # Σ_i v_i H_i u = ∇_w ⟨v, J_w u⟩ ∈ R^p
        return jax.grad(lambda x: jnp.vdot(v, jax.jvp(problem.f, (x,), (u,))[1]))(w)

    ku, kv = jax.random.split(key)
    u = _unit(jax.random.normal(ku, w.shape, w.dtype))
    v0 = _unit(jax.random.normal(kv, (problem.n,), w.dtype))

    def body(_, carry):
        u, v, best = carry
        z = d2f(u)
        v = jnp.where(jnp.linalg.norm(z) > 0, _unit(z), v)
        mu = mv(v, u)
        best = jnp.maximum(best, jnp.maximum(jnp.linalg.norm(z), jnp.linalg.norm(mu)))
        u = jnp.where(jnp.linalg.norm(mu) > 0, _unit(mu), u)
        return u, v, best

    _, _, best = jax.lax.fori_loop(0, iters, body, (u, v0, jnp.zeros((), w.dtype)))
    return best


@eqx.filter_jit
def _secant_opnorm(
    problem: Problem,
    w: Float[Array, " p"],
    v: Float[Array, " p"],
    key: PRNGKeyArray,
    iters: int,
) -> Scalar:
    """`‖J_v − J_w‖_op` by power iteration on `(J_v − J_w)ᵀ(J_v − J_w)`, matrix-free.

    Every iterate's `‖ΔJ x‖` for unit `x` is a lower bound on the operator norm.
    """
    _, jvp_w = jax.linearize(problem.f, w)
    _, jvp_v = jax.linearize(problem.f, v)
    vjp_w = jax.linear_transpose(jvp_w, w)
    vjp_v = jax.linear_transpose(jvp_v, v)

    def body(_, carry):
        x, best = carry
        y = jvp_v(x) - jvp_w(x)
        best = jnp.maximum(best, jnp.linalg.norm(y))
        (gv,) = vjp_v(y)
        (gw,) = vjp_w(y)
        return _unit(gv - gw), best

    x0 = _unit(jax.random.normal(key, w.shape, w.dtype))
    _, best = jax.lax.fori_loop(0, iters, body, (x0, jnp.zeros((), w.dtype)))
    return best


def curvature_beta(
    problem: Problem,
    w: Float[Array, " p"] | None = None,
    *,
    key: int | PRNGKeyArray = 0,
    iters: int = 30,
    restarts: int = 2,
) -> BetaEstimate:
    """Estimate `β` by the local curvature `β(w) = sup_{‖d‖=1} ‖DJ(w)[d]‖_op`.

    A lower bound on the Lipschitz constant over any neighbourhood of `w` (default `w0`).
    """
    w = problem.w0 if w is None else w
    keys = jax.random.split(as_key(key), restarts)
    value = max(float(_curvature_power(problem, w, k, iters)) for k in keys)
    return BetaEstimate(
        value,
        "estimate",
        "curvature",
        radius=0.0,
        note=(
            f"sup over unit d of ‖DJ(w0)[d]‖_op by alternating power iteration ({iters} "
            f"iterations × {restarts} restarts): a lower bound on the true β"
        ),
    )


def sampled_beta(
    problem: Problem,
    radius: float,
    *,
    key: int | PRNGKeyArray = 0,
    samples: int = 8,
    iters: int = 20,
) -> BetaEstimate:
    """Estimate `β` by secants `‖J_v − J_{w0}‖_op / ‖v − w0‖` at `samples` random points on
    the sphere of the given radius around `w0`. A lower bound on `β` over that ball."""
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a finite number > 0, got radius={radius!r}")
    w0 = problem.w0
    best = 0.0
    for k in jax.random.split(as_key(key), samples):
        kd, kp = jax.random.split(k)
        d = _unit(jax.random.normal(kd, w0.shape, w0.dtype))
        v = w0 + radius * d
        best = max(best, float(_secant_opnorm(problem, w0, v, kp, iters)) / radius)
    return BetaEstimate(
        best,
        "estimate",
        "ball sampling",
        radius=radius,
        note=(
            f"max secant ‖J_v − J_0‖_op/‖v − w0‖ over {samples} random points at distance "
            f"{radius:.3g}: a lower bound on β over that ball"
        ),
    )


def beta_estimates(
    problem: Problem,
    sigma_min: float,
    *,
    key: int | PRNGKeyArray = 0,
    samples: int = 8,
    iters: int = 30,
) -> tuple[BetaEstimate, ...]:
    """Curvature at `w0`, then ball sampling on the sphere of radius `B = σ_min/(2β)`
    (with `β` the curvature estimate; skipped when that radius is not positive and
    finite)."""
    k1, k2 = jax.random.split(as_key(key))
    curv = curvature_beta(problem, key=k1, iters=iters)
    out = [curv]
    if curv.value > 0 and sigma_min > 0:
        radius = sigma_min / (2 * curv.value)
        out.append(sampled_beta(problem, radius, key=k2, samples=samples, iters=iters))
    return tuple(out)
