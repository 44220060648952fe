"""The Jacobian `J_w` and the base of every way of computing the empirical NTK.

Rows of `J_w ∈ R^{n×p}` are per-example gradients `∇_w f(x_i; w)ᵀ` (docs/theory.md,
"Notation"). They are computed a chunk of points at a time (`vmap` of `jacrev` over the
points of a chunk, which beats `jacrev` of the whole batch on CPU) and, on CPU, written
straight into one host array; `K = J Jᵀ` is then one BLAS `?syrk` (half a GEMM's FLOPs,
since `K` is symmetric). Once `J` would exceed a memory budget it is formed block by block
and never whole: memory `O(chunk·p + n²)`.

This module is what the NTK methods (`JacobianContraction` here, `StructuredDense`,
`NTKVectorProducts`) build on; `_kernel` chooses among them. Imports go one way:
`_jacobian` ← the methods ← `_kernel`.
"""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._memory import available_bytes
from .._problem import Problem


@eqx.filter_jit
def jacobian_rows(
    problem: Problem, w: Float[Array, " p"], Xc: Float[Array, " c *d"]
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
            pad = jnp.broadcast_to(Xc[:1], (chunk - valid, *X.shape[1:]))
            Xc = jnp.concatenate([Xc, pad])
        out.append((Xc, valid))
    return out


def on_cpu() -> bool:
    """Whether JAX computes on the host, where NumPy's BLAS shares its memory."""
    return jax.default_backend() == "cpu"


def syrk(a: np.ndarray) -> np.ndarray:
    """`a aᵀ` by BLAS `?syrk` (half a GEMM's FLOPs): upper triangle, Fortran order."""
    from scipy.linalg import get_blas_funcs

    (fn,) = get_blas_funcs(("syrk",), (a,))
    return fn(1.0, a.T, trans=1)


def mirror_upper(K: np.ndarray, block: int = 256) -> np.ndarray:
    """Copy the upper triangle onto the lower one, in place (exactly symmetric). Done in
    square blocks: a whole-matrix transposed copy strides through memory and is ~7× slower
    at n = 2048."""
    n = K.shape[0]
    for i in range(0, n, block):
        for j in range(i + block, n, block):
            K[j : j + block, i : i + block] = K[i : i + block, j : j + block].T
        d = K[i : i + block, i : i + block]
        K[i : i + block, i : i + block] = np.triu(d) + np.triu(d, 1).T
    return K


def _rows(problem: Problem, w: Array, X: Array, chunk: int, *, host: bool) -> np.ndarray | Array:
    """`J_w` on the points `X`, `chunk` points per compiled call: with `host` (on CPU,
    outside a trace) one NumPy array filled in place (no concatenation copy), otherwise
    one JAX array."""
    k, p = problem.data.k, w.shape[0]
    chunks = padded_chunks(X, chunk)
    if not host:
        blocks = [jacobian_rows(problem, w, Xc)[: v * k] for Xc, v in chunks]
        return blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks)
    out = np.empty((X.shape[0] * k, p), dtype=np.dtype(problem.dtype))
    start = 0
    for Xc, v in chunks:
        out[start : start + v * k] = np.asarray(jacobian_rows(problem, w, Xc))[: v * k]
        start += v * k
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
    return jnp.asarray(_rows(problem, w, problem.data.X, chunk, host=False))


def default_budget() -> int:
    """The default memory budget for Jacobian blocks: a quarter of the memory available
    here (`_memory.available_bytes`), 1 GiB when that is unknown."""
    total = available_bytes()
    return total // 4 if total else 2**30


class AbstractNTKMethod(eqx.Module):
    """A way of computing the empirical NTK Gram matrix `K_w = J_w J_wᵀ`.

    `symmetric`: whether the result is exactly symmetric already (else `empirical_ntk`
    symmetrises it)."""

    symmetric: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        """`K_w` for the problem's training outputs."""

    def traced(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        """`K_w` inside a traced computation (a jitted solve: one kernel per step), exactly
        symmetric: by default the contraction of the whole Jacobian (`n·p` numbers)."""
        J = jacobian(problem, w)
        K = J @ J.T
        return 0.5 * (K + K.T)

    def traced_bytes(self, problem: Problem) -> int:
        """The memory `traced` holds beyond `K` itself: the whole Jacobian's by default."""
        return problem.n * problem.p * np.dtype(problem.dtype).itemsize

    def ring_parts(self, problem: Problem, w: Float[Array, " p"]) -> tuple[Any, Any]:
        """The per-point factors and their block product for `_sharding.ring_kernel`:
        `features(X_block) → factors`, `block(a, b) → K[a, b]`.

        **Raises:** `ValueError` for a method without a sharded form."""
        raise ValueError(
            f"method={type(self).__name__} has no sharded form; with devices use 'auto', "
            "'structured' or 'jacobian'"
        )


class JacobianContraction(AbstractNTKMethod):
    """Jacobian contraction, `K = J Jᵀ`, for any model.

    When the whole Jacobian fits in `max_jacobian_bytes` it is formed once (per-example
    gradients, `chunk` points per compiled call) and contracted once: on CPU by BLAS
    `?syrk` on the upper triangle (half the FLOPs of the `J @ J.T` GEMM a plain recipe
    uses), elsewhere by an XLA GEMM. Otherwise row blocks `J_I` of as many points as fit
    in half the budget are formed; block row `I` of `K` recomputes `J_J` for every
    `J > I`, so peak memory is two blocks plus `K` (`O(chunk·p + n²)`), at the price of
    recomputing each block about `n/(2·block)` times.

    **Arguments:**

    - `chunk`: points per compiled Jacobian call (default 256), and the block size of the
      blocked path when given.
    - `max_jacobian_bytes`: memory budget for the Jacobian (default: a quarter of the
      memory available, `default_budget`).
    """

    chunk: int | None = eqx.field(static=True, default=None)
    max_jacobian_bytes: int | None = eqx.field(static=True, default=None)
    symmetric: ClassVar[bool] = True

    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        n_points, k, p = problem.data.n, problem.data.k, problem.p
        row_bytes = p * k * np.dtype(problem.dtype).itemsize
        budget = self.max_jacobian_bytes or default_budget()
        X = problem.data.X
        if n_points * row_bytes <= budget:
            J = _rows(problem, w, X, self.chunk or 256, host=on_cpu())
            if isinstance(J, np.ndarray):
                # syrk's upper triangle, mirrored; Fortran order, so its transpose (the
                # same symmetric matrix) is C order and JAX takes it without a copy.
                return jnp.asarray(mirror_upper(syrk(J)).T)
            K = J @ J.T
            return 0.5 * (K + K.T)
        block = self.chunk or max(1, min(n_points, budget // (2 * row_bytes)))
        return _blocked(problem, w, block)

    def ring_parts(self, problem: Problem, w: Float[Array, " p"]) -> tuple[Any, Any]:
        """A block's Jacobian rows, and `K[a, b] = J_a J_bᵀ`."""

        def features(x: Array) -> Array:
            return jacobian_rows(problem, w, x)

        def block(a: Array, b: Array) -> Array:
            return a @ b.T

        return features, block


def _blocked(problem: Problem, w: Array, block: int) -> Array:
    """`K = J Jᵀ` from row blocks of `J`: the upper block triangle (diagonal blocks by
    `syrk` on CPU), mirrored at the end."""
    X, k = problem.data.X, problem.data.k
    starts = list(range(0, X.shape[0], block))
    chunk = min(block, 256)
    host = on_cpu()
    K = np.empty((problem.n, problem.n), dtype=np.dtype(problem.dtype))
    for i in starts:
        Ji = _rows(problem, w, X[i : i + block], chunk, host=host)
        rows = slice(i * k, i * k + Ji.shape[0])
        if isinstance(Ji, np.ndarray):
            K[rows, rows] = syrk(Ji)
        else:
            K[rows, rows] = np.asarray(Ji @ Ji.T)
        for j in starts:
            if j <= i:
                continue
            Jj = _rows(problem, w, X[j : j + block], chunk, host=host)
            K[rows, j * k : j * k + Jj.shape[0]] = np.asarray(Ji @ Jj.T)
    return jnp.asarray(mirror_upper(K))
