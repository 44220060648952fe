"""Kernel-vector products `K_w v = J_w (J_wᵀ v)` without forming `J` or `K`.

One VJP (`J_wᵀ v`, a backward pass) and one JVP (a forward pass) per vector, for any model:
memory `O(p + n)` per vector. `NTKVectorProducts` forms `K` from such products with
one-hot `v` (the VJP is then one point's gradient); `ntk_operator` gives the products
themselves to iterative eigensolvers (`ntk_spectrum` at scale), so `K` need not exist.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.sparse.linalg import LinearOperator

from .._problem import Problem
from ._jacobian import AbstractNTKMethod, jacobian_rows, mirror_upper, padded_chunks


@eqx.filter_jit
def ntk_vp(problem: Problem, w: Float[Array, " p"], V: Float[Array, "b n"]) -> Float[Array, "b n"]:
    """`K_w v` for each row `v` of `V`: `J_w (J_wᵀ v)`, by a VJP then a JVP."""
    _, vjp = jax.vjp(problem.f, w)
    _, jvp = jax.linearize(problem.f, w)
    return jax.vmap(lambda v: jvp(vjp(v)[0]))(V)


@eqx.filter_jit
def _jvp_block(
    problem: Problem, w: Float[Array, " p"], Xj: Float[Array, " c *d"], G: Float[Array, "b p"]
) -> Float[Array, "ck b"]:
    """`J_J G ᵀ`: the directional derivatives of the outputs on the points `Xj` along
    each row of `G`, by one linearisation and a batch of JVPs (forward mode)."""
    _, lin = jax.linearize(lambda v: problem._raw(v, Xj).reshape(-1), w)
    return jax.vmap(lin)(G).T


class NTKVectorProducts(AbstractNTKMethod):
    """`K_w` from kernel-vector products `K e_i = J (Jᵀ e_i)`, block by block.

    `Jᵀ e_i` is the VJP of `f` with a one-hot cotangent; since output `i` depends on point
    `i` alone, it is that point's gradient `∇_w f(x_i)`, formed for `chunk` points at a
    time (`jacobian_rows`). The JVP `J (Jᵀ e_i)` is then evaluated one row block of
    `chunk` points at a time, and only on the blocks of the upper block triangle: `K` is
    symmetric, so half the JVPs are skipped and the lower triangle is mirrored. Memory
    `O(chunk·p + n²)`, any model whose outputs are per point (no batch statistics).

    **Arguments:**

    - `chunk`: points per block (default 256).
    """

    chunk: int = eqx.field(static=True, default=256)
    symmetric: ClassVar[bool] = True

    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        k = problem.data.k
        K = np.empty((problem.n, problem.n), dtype=np.dtype(problem.dtype))
        chunks = padded_chunks(problem.data.X, self.chunk)
        starts = np.cumsum([0] + [v * k for _, v in chunks])
        for i, (Xi, vi) in enumerate(chunks):
            G = jacobian_rows(problem, w, Xi)  # padded rows too: one compiled shape
            rows = slice(starts[i], starts[i + 1])
            for j in range(i, len(chunks)):
                Xj, vj = chunks[j]
                block = np.asarray(_jvp_block(problem, w, Xj, G))[: vj * k, : vi * k]
                K[rows, starts[j] : starts[j + 1]] = block.T
        return jnp.asarray(mirror_upper(K))


class _NTKOperator(LinearOperator):
    def __init__(self, problem: Problem, w: Array):
        super().__init__(np.float64, (problem.n, problem.n))
        self.problem, self.w = problem, w

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        V = jnp.asarray(np.asarray(X).T, dtype=self.problem.dtype)
        return np.asarray(ntk_vp(self.problem, self.w, V), dtype=np.float64).T

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.asarray(x).reshape(-1, 1))[:, 0]

    def _adjoint(self) -> "_NTKOperator":
        return self  # K is symmetric


def ntk_operator(problem: Problem, w: Float[Array, " p"] | None = None) -> LinearOperator:
    """`K_w` as a `scipy.sparse.linalg.LinearOperator` (symmetric, float64 products):
    each `matvec` is one VJP and one JVP; `K_w` is never formed."""
    return _NTKOperator(problem, problem.w0 if w is None else w)
