"""`σ(J_{w(t)})` and the kernel drift along a trajectory without forming `K_{w(t)}`
(docs/flows.md, "Kernel diagnostics at scale").

The dense diagnostics form `K_w` and take two `eigh`s per save, `O(n³)`: at `n` in the
thousands that is most of a run. Here each save costs a few dozen kernel-vector products
`K_w v = J_w (J_wᵀ v)` (one VJP and one JVP each, `ntk_operator`), warm-started from the
previous save, since along a lazy flow the kernel moves little between saves:

- `λ_min(K_w)` and `λ_max(K_w)`: LOBPCG (Knyazev 2001; `scipy.sparse.linalg.lobpcg`)
  started from the previous save's extreme eigenvectors and preconditioned by
  `K0⁺ = V Λ⁻¹ Vᵀ` (the run's `InitialKernel`). Why this preconditioner: with
  `J_w = J_0 + E`, the eigenvalues of `K0^{-1/2} K_w K0^{-1/2}` are the squared singular
  values of `K0^{-1/2} J_w`, which lie in `[(1 − ‖E‖/σ_min)², (1 + ‖E‖/σ_min)²]`; in the
  theorem's regime `‖E‖ ≤ σ_min/2` (docs/theory.md, "The ball lemma") that is
  `[1/4, 9/4]`, a condition number of at most 9 whatever `cond(K0)` is.
- the drift `‖K_w − K0‖_op / ‖K0‖_op`: Lanczos (`eigsh`, largest magnitude) on
  `v ↦ K_w v − K0 v`, started from the previous save's vector.

An extreme is kept only when its eigen-residual `‖A x − θ x‖` is at most `1e-7·‖K0‖_op`
(ten times LOBPCG's tolerance; the symmetric residual bound then puts an eigenvalue of
`A` within that distance of `θ`), the drift only when ARPACK converged (`tol = 1e-6`);
otherwise it is NaN — not converged is not reported as a value.
"""

import math
import warnings
from typing import Any

import numpy as np
from scipy.sparse import linalg as sla

from ._problem import Problem
from .ntk._initial_kernel import InitialKernel
from .ntk._ntkvp import ntk_operator

_LinearOperator: Any = sla.LinearOperator  # (SciPy's stubs miss its keyword arguments)
# LOBPCG's tolerance, and the eigen-residual (both relative to ‖K0‖_op) below which a
# value is kept (`verify` adds the latter to the budget of σ(J_t)).
TOL = 1e-8
RESIDUAL = 10 * TOL
# LOBPCG iterations per extreme and save; Lanczos basis size for the drift.
MAX_ITERATIONS = 60
DRIFT_NCV = 12


class Warm:
    """The previous save's eigenvectors: `bottom`, `top` (of `K_w`) and `drift` (of
    `K_w − K0`)."""

    def __init__(self, kernel: InitialKernel):
        V = np.asarray(kernel.eigenvectors, dtype=np.float64)
        self.bottom, self.top = V[:, :1].copy(), V[:, -1:].copy()
        self.drift = V[:, -1].copy()


def _extreme(op: Any, X: np.ndarray, M: Any, *, largest: bool, scale: float):
    """One extreme eigenpair of `op` by LOBPCG from `X`, or `(nan, X)` unless its
    residual is below `RESIDUAL·scale`."""
    lobpcg: Any = sla.lobpcg
    with warnings.catch_warnings():
        # Not converging is handled below (NaN), not warned about per save.
        warnings.simplefilter("ignore", UserWarning)
        lam, vec = lobpcg(
            op, X, M=M, largest=largest, tol=TOL * scale, maxiter=MAX_ITERATIONS, verbosityLevel=0
        )
    x = vec[:, :1]
    theta = float(lam[0])
    residual = float(np.linalg.norm(op.matmat(x)[:, 0] - theta * x[:, 0]))
    if not math.isfinite(theta) or residual > RESIDUAL * scale:
        return math.nan, X
    return theta, x


def _drift(op: Any, K0: np.ndarray, v0: np.ndarray, norm: float) -> tuple[float, np.ndarray]:
    n = K0.shape[0]
    if n < 3:  # (too small for ARPACK: form the n × n difference)
        lam_all = np.linalg.eigvalsh(op.matmat(np.eye(n)) - K0)
        return float(np.max(np.abs(lam_all))) / norm, v0
    diff = _LinearOperator((n, n), matvec=lambda v: op.matvec(v) - K0 @ v, dtype=np.float64)
    eigsh: Any = sla.eigsh
    try:  # ARPACK raises unless the eigenvalue converged to `tol` (relative)
        lam, vec = eigsh(diff, k=1, which="LM", v0=v0, ncv=min(DRIFT_NCV, n), tol=1e-6)
    except sla.ArpackNoConvergence:
        return math.nan, v0
    return abs(float(lam[0])) / norm, vec[:, 0]


def iterative_diagnostics_at(
    problem: Problem,
    delta: np.ndarray,
    kernel: InitialKernel,
    K0: np.ndarray,
    warm: Warm,
    M: Any,
) -> tuple[float, float, float]:
    """`(σ_min(J_w), σ_max(J_w), drift)` at `w = w0 + δ` (`K0` the kernel's matrix in
    float64), updating `warm`."""
    import jax.numpy as jnp

    op = ntk_operator(problem, problem.w0 + jnp.asarray(delta, problem.dtype))
    scale = kernel.norm
    lo, warm.bottom = _extreme(op, warm.bottom, M, largest=False, scale=scale)
    # λ_max: unpreconditioned (K0⁺ damps the top of the spectrum, where it is sought).
    hi, warm.top = _extreme(op, warm.top, None, largest=True, scale=scale)
    drift, warm.drift = _drift(op, K0, warm.drift, scale)
    smin = math.nan if math.isnan(lo) else math.sqrt(max(lo, 0.0))
    smax = math.nan if math.isnan(hi) else math.sqrt(max(hi, 0.0))
    return smin, smax, drift


def preconditioner(kernel: InitialKernel) -> Any:
    """`K0⁺ = V Λ⁻¹ Vᵀ` as a `LinearOperator` (eigenvalues at the rank tolerance or below
    are left out)."""
    V = np.asarray(kernel.eigenvectors, dtype=np.float64)
    lam = np.asarray(kernel.eigenvalues, dtype=np.float64)
    keep = lam > kernel.spectrum.tolerance
    Vk, inv = V[:, keep], 1.0 / lam[keep]
    n = V.shape[0]
    return _LinearOperator(
        (n, n),
        matvec=lambda x: Vk @ (inv * (Vk.T @ np.ravel(x))),
        matmat=lambda X: Vk @ (inv[:, None] * (Vk.T @ X)),
        dtype=np.float64,
    )
