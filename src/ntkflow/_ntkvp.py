"""Kernel-vector products `K_w v = J_w (J_wᵀ v)` without forming `J` or `K`.

One VJP (`J_wᵀ v`, a backward pass) and one JVP (a forward pass) per vector, for any model:
memory `O(p + n)` per vector. `NTKVectorProducts` forms `K` column block by column block
from them; `ntk_operator` gives the products themselves to iterative eigensolvers
(`ntk_spectrum` at scale), so `K` need not exist at all.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.sparse.linalg import LinearOperator

from ._jacobian import AbstractNTKMethod
from ._problem import Problem


@eqx.filter_jit
def ntk_vp(problem: Problem, w: Float[Array, " p"], V: Float[Array, "b n"]) -> Float[Array, "b n"]:
    """`K_w v` for each row `v` of `V`: `J_w (J_wᵀ v)`, by a VJP then a JVP."""
    _, vjp = jax.vjp(problem.f, w)
    _, jvp = jax.linearize(problem.f, w)
    return jax.vmap(lambda v: jvp(vjp(v)[0]))(V)


class NTKVectorProducts(AbstractNTKMethod):
    """`K_w` column block by column block, `K E_B = J (Jᵀ E_B)` for blocks `E_B` of
    `chunk` columns of the identity: memory `O(chunk·p + n²)`, any model. Slower than
    `StructuredDense` and usually than `JacobianContraction`; it is the reference for
    models where neither applies well and the building block of `ntk_operator`.

    **Arguments:**

    - `chunk`: columns of `K` per batch of products.
    """

    chunk: int = eqx.field(static=True, default=64)

    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        n = problem.n
        K = np.empty((n, n), dtype=problem.dtype)
        eye = jnp.eye(self.chunk, n, dtype=problem.dtype)
        for start in range(0, n, self.chunk):
            # Rows start … start + chunk of the identity; the last block is padded by
            # rolling, and its extra rows are dropped.
            block = jnp.roll(eye, start, axis=1)
            valid = min(self.chunk, n - start)
            K[start : start + valid] = np.asarray(ntk_vp(problem, w, block))[:valid]
        return jnp.asarray(K)


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
