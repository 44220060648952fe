"""The Jacobian `J_w` and the base of every way of computing the empirical NTK.

Rows of `J_w ∈ R^{n×p}` are per-example gradients `∇_w f(x_i; w)ᵀ` (docs/theory.md,
"Notation"). They are computed a chunk of points at a time (`vmap` of `jacrev` over the
points of a chunk, which beats `jacrev` of the whole batch on CPU) and contracted block by
block, so that `J` is never materialised whole once it would exceed a memory budget:
memory is `O(chunk·p + n²)`.

This module is what the NTK methods (`JacobianContraction` here, `StructuredDense`,
`NTKVectorProducts`) build on; `_kernel` chooses among them. Imports go one way:
`_jacobian` ← the methods ← `_kernel`.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._problem import Problem


@eqx.filter_jit
def _jacobian_rows(
    problem: Problem, w: Float[Array, " p"], Xc: Float[Array, "c d"]
) -> Float[Array, "ck p"]:
    """Rows of `J_w` for the points `Xc`: shape `(c·k, p)`."""

    def one(x: Array) -> Array:
        return jax.jacrev(lambda v: problem._raw(v, x[None]).reshape(-1))(w)

    rows = jax.vmap(one)(Xc)
    return rows.reshape(-1, w.shape[0])


def padded_chunks(X: Array, chunk: int) -> list[tuple[Array, int]]:
    """Split the rows of `X` into chunks of exactly `chunk` rows (the last one padded by
    repeating its first row) so that one compiled function serves every chunk."""
    n = X.shape[0]
    out = []
    for start in range(0, n, chunk):
        Xc = X[start : start + chunk]
        valid = Xc.shape[0]
        if valid < chunk and n > chunk:
            Xc = jnp.concatenate([Xc, jnp.broadcast_to(Xc[:1], (chunk - valid, X.shape[1]))])
        out.append((Xc, valid))
    return out


def jacobian(
    problem: Problem, w: Float[Array, " p"] | None = None, *, chunk: int = 256
) -> Float[Array, "n p"]:
    """The Jacobian `J_w = ∂f/∂w ∈ R^{n×p}` (default `w = w0`), materialised.

    Meant for small problems and tests; `empirical_ntk` never materialises `J` whole when
    it is large.

    **Arguments:**

    - `problem`: the `Problem`.
    - `w`: the flat parameter vector (default `problem.w0`).
    - `chunk`: points per vectorised Jacobian evaluation.
    """
    w = problem.w0 if w is None else w
    k = problem.data.k
    blocks = [
        _jacobian_rows(problem, w, Xc)[: valid * k]
        for Xc, valid in padded_chunks(problem.data.X, chunk)
    ]
    return jnp.concatenate(blocks, axis=0)


class AbstractNTKMethod(eqx.Module):
    """A way of computing the empirical NTK Gram matrix `K_w = J_w J_wᵀ`.

    `symmetric`: whether the result is exactly symmetric already (else `empirical_ntk`
    symmetrises it)."""

    symmetric: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        """`K_w` for the problem's training outputs."""


class JacobianContraction(AbstractNTKMethod):
    """Plain Jacobian contraction, chunked: `K[I, J] = J_I J_Jᵀ` block by block.

    When the whole Jacobian fits in `max_jacobian_bytes` it is formed once and contracted
    with one GEMM. Otherwise row blocks `J_I` of `chunk` points are formed; block row `I`
    of `K` recomputes `J_J` for every `J ≥ I`, so peak memory is two blocks plus `K`
    (`O(chunk·p + n²)`), at the price of recomputing each block about `n/(2·chunk)`
    times, which costs `O(n²p/chunk)` against the contraction's `O(n²p)`.

    **Arguments:**

    - `chunk`: points per Jacobian block (default: as many as fit in
      `max_jacobian_bytes / 2`, at most 256 for the materialising path's vmap).
    - `max_jacobian_bytes`: memory budget for Jacobian blocks (default 1 GiB).
    """

    chunk: int | None = eqx.field(static=True, default=None)
    max_jacobian_bytes: int = eqx.field(static=True, default=2**30)

    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        n_points, k, p = problem.data.n, problem.data.k, problem.p
        row_bytes = p * k * jnp.dtype(problem.dtype).itemsize
        if n_points * row_bytes <= self.max_jacobian_bytes:
            J = jacobian(problem, w, chunk=self.chunk or 256)
            return J @ J.T
        chunk = self.chunk or max(1, min(n_points, self.max_jacobian_bytes // (2 * row_bytes)))
        chunks = padded_chunks(problem.data.X, chunk)
        K = np.empty((problem.n, problem.n), dtype=problem.dtype)
        starts = np.cumsum([0] + [valid * k for _, valid in chunks])
        for i, (Xi, vi) in enumerate(chunks):
            Ji = _jacobian_rows(problem, w, Xi)[: vi * k]
            for j in range(i, len(chunks)):
                Xj, vj = chunks[j]
                Jj = Ji if j == i else _jacobian_rows(problem, w, Xj)[: vj * k]
                block = np.asarray(Ji @ Jj.T)
                K[starts[i] : starts[i + 1], starts[j] : starts[j + 1]] = block
                K[starts[j] : starts[j + 1], starts[i] : starts[i + 1]] = block.T
        return jnp.asarray(K)
