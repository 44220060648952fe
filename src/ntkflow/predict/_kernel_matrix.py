"""The training kernel as the predictors use it: `(K + μI)⁻¹ B` and `f(K + μI) B` for
functions `f` of its eigenvalues, in memory (one Cholesky, one `eigh`, cached) or on
disk (`DiskArray`: conjugate gradients and Lanczos, `disk/_solve.py`), behind one
interface, so that `gp_inference` and `gradient_descent_mse` are written once."""

import abc
import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ..disk._solve import DiskSolver, cg_solve, lanczos_apply
from ..disk._store import DiskArray
from ._layout import as_matrix, regularized


class AbstractKernelMatrix(abc.ABC):
    """`K + μI` on the training points: its `dtype`, `solve` and `apply`."""

    dtype: Any

    @abc.abstractmethod
    def solve(self, rhs: Any) -> jnp.ndarray:
        """`(K + μI)⁻¹ rhs` for `rhs` `(P, Q)`."""

    @abc.abstractmethod
    def apply(self, f: Callable[[Any], Any], R: Any) -> jnp.ndarray:
        """`f(K + μI) R` `(m, P, Q)` for `f` mapping eigenvalues `(k,)` (clipped at 0) to
        values `(m, k)`."""


class DenseMatrix(AbstractKernelMatrix):
    def __init__(self, K: jnp.ndarray):
        self.K, self.dtype = K, K.dtype

    @functools.cached_property
    def _cholesky(self) -> Any:
        return jsl.cho_factor(self.K)

    @functools.cached_property
    def _eigh(self) -> tuple[jnp.ndarray, jnp.ndarray]:
        lam, V = jnp.linalg.eigh(self.K)
        return jnp.maximum(lam, 0.0), V

    def solve(self, rhs):
        return jsl.cho_solve(self._cholesky, rhs)

    def apply(self, f, R):
        lam, V = self._eigh
        return jnp.einsum("pi,mi,iq->mpq", V, f(lam), V.T @ R)


class DiskMatrix(AbstractKernelMatrix):
    """A `DiskArray` kernel plus `μI`, never loaded: each product one pass over the
    disk (`DiskSolver` sets ranks and tolerances)."""

    def __init__(self, K: DiskArray, mu: float, solver: DiskSolver):
        self.K, self.mu, self.solver, self.dtype = K, mu, solver, jnp.dtype(K.dtype)

    def solve(self, rhs):
        return jnp.asarray(cg_solve(self.K, np.asarray(rhs), self.mu, self.solver)[0])

    def apply(self, f, R):
        R = np.asarray(R)

        def clipped(theta: np.ndarray) -> np.ndarray:
            return np.asarray(f(jnp.maximum(jnp.asarray(theta), 0.0)))

        columns = [
            lanczos_apply(self.K, R[:, q], self.mu, clipped, self.solver)[0]
            for q in range(R.shape[1])
        ]
        return jnp.asarray(np.stack(columns, axis=-1))


def kernel_matrix(
    k: Any, diag_reg: float, absolute: bool, solver: DiskSolver | None
) -> AbstractKernelMatrix:
    """The training kernel `k` (an array in neural-tangents' layout, or a `DiskArray`)
    plus its regularisation (`diag_reg`, relative to the mean diagonal unless
    `absolute`)."""
    if isinstance(k, DiskArray):
        mu = 0.0
        if diag_reg:
            mu = diag_reg if absolute else diag_reg * float(np.mean(k.diagonal()))
        return DiskMatrix(k, mu, solver or DiskSolver())
    return DenseMatrix(regularized(as_matrix(k), diag_reg, absolute))


def operand(k: Any) -> Any:
    """A test-train kernel as a matrix: a `DiskArray` stays on disk (it is read in row
    blocks by `times`), anything else through `as_matrix`."""
    if isinstance(k, DiskArray):
        k._matrix("a test-train kernel")
        return k
    return as_matrix(k)


def times(A: Any, X: Any) -> jnp.ndarray:
    """`A @ X`, streaming `A`'s rows from disk when it is a `DiskArray`."""
    if isinstance(A, DiskArray):
        return jnp.asarray(A @ np.asarray(X))
    return A @ X
