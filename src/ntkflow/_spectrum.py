"""The spectrum of `K = J Jᵀ`, and the singular values `σ_min = σ_n(J)`, `σ_max = σ_1(J)`.

Dense `eigh` while it is cheap (every eigenvalue, `O(n³)`); beyond that, only the two
extremes: `λ_max` by Lanczos (`scipy.sparse.linalg.eigsh`, ARPACK) on kernel-vector
products, and `λ_min` by Lanczos on `K⁻¹` through a Cholesky factor (shift-invert at 0).
Lanczos alone finds a small `λ_min` slowly when small eigenvalues cluster — their gaps,
relative to `λ_max`, are tiny — while on `K⁻¹` it is the *largest* eigenvalue, separated
by relative gaps of order one. A Cholesky factorisation that fails proves `K` is not
numerically positive definite: `σ_min` is then reported as 0.
"""

import dataclasses
import math
from typing import Any

import numpy as np
from jaxtyping import ArrayLike, Float

from ._repr import concise

# `method="auto"` uses dense `eigh` up to this many rows.
DENSE_MAX_N = 4096
# OpenBLAS 0.3.31's Cholesky (`potrf`, through SciPy and NumPy alike) crashes the process
# (SIGSEGV) on matrices of 2 GiB or more (n ≥ 16,384 in float64); beyond that the
# shift-invert path is not taken.
CHOLESKY_MAX_BYTES = 2**31 - 1


@concise
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The spectrum of a kernel `K = J Jᵀ`, and the singular values of `J` it gives.

    **Fields:**

    - `eigenvalues`: the eigenvalues of `K` that were computed, ascending (float64 NumPy
      array): all of them (`complete=True`, dense `eigh`), or `[λ_min, λ_max]`.
    - `sigma_min`: `σ_n(J) = sqrt(λ_min(K))` (0 when `n > p` or `λ_min ≤ 0`).
    - `sigma_max`: `σ_1(J) = sqrt(λ_max(K))`.
    - `tolerance`: the numerical-rank tolerance `n·ε·λ_max` on eigenvalues.
    - `n`, `p`: the Jacobian's shape.
    - `method`: `"dense"` or `"iterative"`; `complete`: whether every eigenvalue is there.
    """

    eigenvalues: np.ndarray
    sigma_min: float
    sigma_max: float
    tolerance: float
    n: int
    p: int
    method: str = "dense"
    complete: bool = True

    @property
    def condition(self) -> float:
        """`λ_max(K)/λ_min(K) = (σ_max/σ_min)²` (`inf` when `σ_min = 0`)."""
        return self.sigma_max**2 / self.sigma_min**2 if self.sigma_min > 0 else math.inf

    @property
    def rank_deficient(self) -> bool:
        """Whether `J` has (numerically) dependent rows: `n > p` or `λ_min ≤ tolerance`."""
        return self.n > self.p or float(self.eigenvalues[0]) <= self.tolerance


def _extremes(K: Any, n: int, tol: float) -> tuple[float, float]:
    """`(λ_min, λ_max)` of a symmetric PSD `K` (array or `LinearOperator`)."""
    import scipy.linalg
    from scipy.sparse import linalg as sla

    eigsh: Any = sla.eigsh  # (SciPy's stubs type `tol` as int)
    LinearOperator: Any = sla.LinearOperator
    aslinearoperator: Any = sla.aslinearoperator
    rng = np.random.default_rng(0)  # a fixed start vector: reproducible results
    v0 = rng.standard_normal(n)
    # A JAX array is not an operator SciPy understands: as NumPy, without a copy on CPU.
    Kd = None if isinstance(K, LinearOperator) else np.asarray(K)
    op = aslinearoperator(K if Kd is None else Kd)
    lam_max = float(eigsh(op, k=1, which="LA", v0=v0, tol=tol, return_eigenvectors=False)[0])
    if Kd is None or Kd.nbytes >= CHOLESKY_MAX_BYTES:
        # No matrix to factor (or too large for LAPACK's potrf here): Lanczos for the
        # smallest eigenvalue directly (slower when small eigenvalues cluster).
        lam_min = float(eigsh(op, k=1, which="SA", v0=v0, tol=tol, return_eigenvectors=False)[0])
        return lam_min, lam_max
    try:
        # In K's own precision: a float32 K carries float32 rounding anyway.
        factor = scipy.linalg.cho_factor(Kd, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 0.0, lam_max  # not numerically positive definite
    inv = LinearOperator(
        (n, n),
        matvec=lambda x: scipy.linalg.cho_solve(factor, x.astype(Kd.dtype)).astype(np.float64),
        dtype=np.float64,
    )
    mu = float(eigsh(inv, k=1, which="LA", v0=v0, tol=tol, return_eigenvectors=False)[0])
    return (1.0 / mu if mu > 0 else 0.0), lam_max


def _span(K: np.ndarray) -> str:
    """The range of `|K_ij|`, for messages."""
    a = np.abs(K[np.isfinite(K)])
    return f"|K_ij| in [{a.min():.3g}, {a.max():.3g}]" if a.size else "no finite values"


def _check_finite(K: np.ndarray) -> None:
    """The kernel at `w0` must be finite for any spectrum to mean something: inputs of a
    huge scale (1e200) overflow `J Jᵀ` long before the network's outputs do."""
    bad = ~np.isfinite(K)
    if bad.any():
        raise ValueError(
            f"the empirical NTK K0 is not finite ({int(bad.sum())} of its {K.size} entries "
            "are NaN or inf): the inputs or the parameters are too large for its dtype; "
            "standardise the inputs (zero mean, unit variance per feature) or rescale them"
        )


def ntk_spectrum(
    K: Float[ArrayLike, "n n"] | Any,
    *,
    p: int | None = None,
    method: str = "auto",
    tol: float = 1e-10,
) -> Spectrum:
    """Eigenvalues of `K` and the extreme singular values of `J`.

    **Arguments:**

    - `K`: the Gram matrix `J Jᵀ`, an array, or a `scipy.sparse.linalg.LinearOperator`
      (e.g. `ntk_operator(problem)`: `K` is then never formed).
    - `p`: the number of parameters; when `n > p`, `σ_min` is exactly 0 (`K` has rank
      ≤ p), whatever rounding gives.
    - `method`: `"dense"` (`eigh`: every eigenvalue), `"iterative"` (the two extremes:
      Lanczos, and Lanczos on the Cholesky-factored inverse), or `"auto"` (dense up to
      `n = 4096` and for arrays only).
    - `tol`: the iterative solver's relative tolerance on the eigenvalues.

    **Raises:** `ValueError` for an unknown method, `"dense"` on an operator, a kernel
    with NaN or inf entries, or an eigensolver that does not converge.
    """
    from scipy.sparse.linalg import LinearOperator

    operator = isinstance(K, LinearOperator)
    shape = tuple(K.shape) if operator else np.shape(K)
    if len(shape) != 2 or shape[0] != shape[1]:
        got = f"shape {shape}" if shape else type(K).__name__
        raise ValueError(
            f"ntk_spectrum needs a square kernel (n, n) or a LinearOperator, got {got}; for "
            "a Problem pass ntk_spectrum(empirical_ntk(problem), p=problem.p)"
        )
    n = int(shape[0])
    if method == "auto":
        method = "dense" if not operator and n <= DENSE_MAX_N else "iterative"
    if method not in ("dense", "iterative"):
        raise ValueError(f"method must be 'auto', 'dense' or 'iterative', got method={method!r}")
    if method == "dense" and operator:
        raise ValueError("method='dense' needs K as an array; use 'iterative' for an operator")
    dtype = np.float64 if operator else np.asarray(K).dtype
    n_params = n if p is None else p
    if method == "dense" or n <= 2:
        eig = dense_eigh(np.asarray(K), vectors=False)  # (checks K is finite)
        return spectrum_from_eigenvalues(eig, p=n_params, dtype=dtype)
    if not operator:
        _check_finite(np.asarray(K))
    lam_min, lam_max = _extremes(K, n, tol)
    return _spectrum(np.asarray([lam_min, max(lam_max, 0.0)]), n, n_params, dtype, False)


def dense_eigh(K: np.ndarray, *, vectors: bool) -> Any:
    """The eigenvalues of a finite symmetric `K` (ascending, float64), and with
    `vectors=True` its eigenvectors too (`(Λ, V)`, `V` in `K`'s precision): one dense
    LAPACK call.

    **Raises:** `ValueError` (with the fix) for NaN or inf entries or no convergence.
    """
    _check_finite(K)
    try:
        if vectors:
            lam, V = np.linalg.eigh(K)
            return lam.astype(np.float64), V
        return np.linalg.eigvalsh(K).astype(np.float64)
    except np.linalg.LinAlgError as e:
        raise ValueError(
            f"the eigensolver did not converge on the empirical NTK K0 ({K.shape[0]}×"
            f"{K.shape[0]}: {e}); its entries span {_span(K)}: standardise the inputs (zero "
            "mean, unit variance per feature) or rescale them"
        ) from None


def spectrum_from_eigenvalues(eig: np.ndarray, *, p: int, dtype: Any) -> Spectrum:
    """The `Spectrum` of a kernel with these (all, ascending) eigenvalues, computed in
    `dtype`, whose Jacobian has `p` columns."""
    return _spectrum(np.asarray(eig, np.float64), len(eig), p, dtype, True)


def _spectrum(eig: np.ndarray, n: int, p: int, dtype: Any, complete: bool) -> Spectrum:
    lam_min, lam_max = float(eig[0]), max(float(eig[-1]), 0.0)
    eps = float(np.finfo(dtype).eps)
    sigma_min = 0.0 if (n > p or lam_min <= 0.0) else math.sqrt(lam_min)
    return Spectrum(
        eigenvalues=eig,
        sigma_min=sigma_min,
        sigma_max=math.sqrt(lam_max),
        tolerance=n * eps * lam_max,
        n=n,
        p=p,
        method="dense" if complete else "iterative",
        complete=complete,
    )
