"""The kernel at initialisation, `K0 = J_0 J_0ᵀ`, formed once and factored once.

Everything ntkflow says at `w0` comes from `K0` (docs/theory.md, "Numerical rank" and
"The two gradient flows"): the certificate's `σ_min`, `σ_max` and rank rule, the tangent
flow's closed form `V φ_t(Λ) Vᵀ r0`, the flows' horizon and solver choice, and the
kernel drift's normalisation `‖K0‖_op`. An `InitialKernel` holds `K0` with its spectrum and,
where `K0` is small enough for a dense eigensolver, its eigendecomposition `K0 = V Λ Vᵀ`, so
that `certify` builds it and `solve_flows` and the diagnostics reuse it.
"""

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._problem import Problem
from .._repr import concise
from .._spectrum import DENSE_MAX_N, Spectrum, dense_eigh, ntk_spectrum, spectrum_from_eigenvalues
from ._jacobian import AbstractNTKMethod
from ._kernel import empirical_ntk


@concise
@dataclasses.dataclass(frozen=True)
class InitialKernel:
    """`K0 = J_0 J_0ᵀ` of a problem, with its spectrum and eigendecomposition.

    **Fields:**

    - `K`: `K0`, in the problem's dtype (a JAX array).
    - `spectrum`: its `Spectrum` (`σ_min`, `σ_max`, the numerical-rank tolerance).

    **Properties:** `eigenvalues` (`Λ`, ascending, float64, as computed: may dip below 0
    by rounding) and `eigenvectors` (`V`, in `K`'s precision), NumPy arrays from one
    dense `eigh`: taken together with the spectrum when `n ≤ DENSE_MAX_N`, on first use
    beyond (where the spectrum's two extremes come from Lanczos); `sigma_min_resolved`
    (`σ_min`, or 0 when `K0` is numerically rank-deficient: docs/theory.md, "Numerical
    rank"); `norm` (`‖K0‖_op = λ_max`).
    """

    K: Float[Array, "n n"]
    spectrum: Spectrum
    _factors: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @functools.cached_property
    def _eig(self) -> tuple[np.ndarray, np.ndarray]:
        if self._factors is not None:
            return self._factors
        return dense_eigh(np.asarray(self.K), vectors=True)

    @property
    def eigenvalues(self) -> np.ndarray:
        return self._eig[0]

    @property
    def eigenvectors(self) -> np.ndarray:
        return self._eig[1]

    @property
    def n(self) -> int:
        return self.spectrum.n

    @property
    def sigma_min_resolved(self) -> float:
        """`σ_min(J_0)`, or 0 when `n > p` or `λ_min(K0)` is at or below the rank
        tolerance."""
        return 0.0 if self.spectrum.rank_deficient else self.spectrum.sigma_min

    @property
    def norm(self) -> float:
        """`‖K0‖_op = λ_max(K0)`."""
        return max(float(self.spectrum.eigenvalues[-1]), 0.0)


def initial_kernel(
    problem: Problem,
    K: Float[ArrayLike, "n n"] | None = None,
    *,
    method: str | AbstractNTKMethod = "auto",
    devices: Any = None,
) -> InitialKernel:
    """Form `K0` (with the NTK `method` on `devices`, see `empirical_ntk`; or take the
    given `K`) and factor it once.

    **Raises:** `ValueError` when `K` is not `n × n`, not finite, or its eigensolver does
    not converge (see `ntk_spectrum`).
    """
    if K is None:
        K0 = empirical_ntk(problem, method=method, devices=devices)
    else:
        K0 = jnp.asarray(K, problem.dtype)
    if K0.shape != (problem.n, problem.n):
        raise ValueError(f"kernel must have shape {(problem.n, problem.n)}, got {K0.shape}")
    if problem.n > DENSE_MAX_N:
        return InitialKernel(K0, ntk_spectrum(K0, p=problem.p))
    lam, V = dense_eigh(np.asarray(K0), vectors=True)
    spectrum = spectrum_from_eigenvalues(lam, p=problem.p, dtype=np.asarray(K0).dtype)
    return InitialKernel(K0, spectrum, (lam, V))


def as_initial_kernel(
    problem: Problem, kernel: "InitialKernel | Float[ArrayLike, 'n n'] | None", **kwargs
) -> InitialKernel:
    """`kernel` if it is already an `InitialKernel` of this problem's size, else
    `initial_kernel(problem, kernel, **kwargs)`."""
    if isinstance(kernel, InitialKernel):
        if kernel.n != problem.n:
            raise ValueError(f"kernel is {kernel.n}×{kernel.n}, but the problem has n={problem.n}")
        return kernel
    return initial_kernel(problem, kernel, **kwargs)
