"""How much floating-point rounding moves the residual `α f(w) − y` (docs/theory.md,
"Rounding").

At large `α` the network's prediction `α f(w)` is a small difference of large numbers
(with centring, `f(w) = O(1/α)` is computed from network outputs of size `O(1)`), so the
residual's rounding error grows like `α·ε`: at `α = 1e15` in float64 it is of the order of
the targets themselves. Every loss a check compares with a bound must carry it.

There is no rigorous bound for an arbitrary model, so it is *estimated*: the residual is
evaluated again at parameters and inputs each moved by one unit roundoff in a random
direction (`w ⊙ (1 + ε ξ)`, `X ⊙ (1 + ε ζ)`, `ξ, ζ` random signs), which moves the result
by about as much as the rounding of one evaluation does (the *spread*). The budget is the
largest spread over a few probes, times a safety factor that covers the accumulation of
rounding inside sums (`log₂` of their length), plus the rounding of the last two
operations `ε(‖α f‖ + ‖y‖)`.

The spread at `w0`, against how far the residual moves along the flow, is the flow's
*resolution* `ρ`: the relative accuracy below which an error control chases rounding
noise (`motion_resolution`; `solve_flows` keeps `rtol ≥ ρ`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._problem import Problem

PROBES = 4
SAFETY = 16.0
ROWS = 8  # parameter vectors per compiled call: every call, any count, shares one program


def _spread(
    problem: Problem, W: Float[np.ndarray, "s p"], key: PRNGKeyArray
) -> Float[np.ndarray, "s 2"]:
    """The spread and the last operations' rounding at each row of `W` (in the problem's
    dtype), `ROWS` rows per call (the last block padded with `w0`)."""
    s = W.shape[0]
    W = np.concatenate([W, np.broadcast_to(np.asarray(problem.w0), (-s % ROWS, problem.p))])
    blocks = [_spread_block(problem, W[i : i + ROWS], key) for i in range(0, len(W), ROWS)]
    return np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])[:s]


@eqx.filter_jit
def _spread_block(
    problem: Problem, W: Float[ArrayLike, "rows p"], key: PRNGKeyArray
) -> Float[Array, "rows 2"]:
    dtype = problem.dtype
    eps = jnp.finfo(dtype).eps
    X = problem.data.X

    def residual_at(w, k):
        kw, kx = jax.random.split(k)
        w = w * (1 + eps * jax.random.rademacher(kw, w.shape, dtype))
        Xp = X * (1 + eps * jax.random.rademacher(kx, X.shape, dtype))
        return problem.alpha_array * problem.predict(w, Xp).reshape(-1) - problem.y

    def one(w):
        r = problem.residual(w)
        probes = jax.vmap(lambda k: residual_at(w, k))(jax.random.split(key, PROBES))
        moved = jnp.max(jnp.linalg.norm(probes - r[None, :], axis=1))
        last_ops = eps * (jnp.linalg.norm(r + problem.y) + jnp.linalg.norm(problem.y))
        return jnp.stack([moved, last_ops])

    return jax.vmap(one)(W)


def residual_rounding(
    problem: Problem, deltas: Float[np.ndarray, "s p"], *, key: int = 0
) -> Float[np.ndarray, " s"]:
    """An estimate of `‖fl(α f(w) − y) − (α f(w) − y)‖` at each `w = w0 + δ` (rows of
    `deltas`; NaN where a row is not finite). See the module docstring."""
    deltas = np.asarray(deltas)
    finite = np.all(np.isfinite(deltas), axis=1)
    w0 = np.asarray(problem.w0)
    W = w0[None, :] + np.nan_to_num(deltas).astype(w0.dtype)
    moved, last_ops = _spread(problem, W, jax.random.key(key)).T
    out = SAFETY * moved + last_ops
    out[~finite] = np.nan
    return out


def motion_resolution(problem: Problem, motion: float, *, key: int = 0) -> float:
    """The flow's resolution `ρ`: the residual's rounding spread at `w0` over `motion`,
    how far the residual moves along the flow (`‖α J_0 (u∞ − w0)‖`, the tangent flow's);
    never below the dtype's `ε`. An error control tighter than `ρ` chases rounding
    noise; at `ρ ≥ 1e-2` the network barely resolves its own motion."""
    eps = float(jnp.finfo(problem.dtype).eps)
    if not motion > 0:
        return eps
    W = np.asarray(problem.w0)[None, :]
    moved = float(_spread(problem, W, jax.random.key(key))[0, 0])
    return max(eps, moved / motion)
