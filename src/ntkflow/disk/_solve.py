"""Linear algebra on a kernel that does not fit in memory, one pass over the disk per
product (docs/theory.md, "Kernels on disk"): `(K + μI)⁻¹B` by conjugate gradients with a
randomized Nyström preconditioner (Frangella, Tropp & Udell, *Randomized Nyström
Preconditioning*, SIAM J. Matrix Anal. Appl. 44, 2023), and `f(K + μI) b` for the
gradient-flow functions by the Lanczos process (Saad, *Analysis of some Krylov subspace
approximations to the matrix exponential operator*, SIAM J. Numer. Anal. 29, 1992)."""

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg

from ._store import DiskArray

LOG = logging.getLogger("ntkflow.disk")
"""Each solve's passes over the disk and its result, at level INFO."""


class DiskSolveError(RuntimeError):
    """An on-disk solve that did not reach its tolerance (nothing is returned then)."""


@dataclasses.dataclass(frozen=True)
class DiskSolver:
    """Settings of the solves on a `DiskArray` kernel.

    **Arguments:**

    - `rank`: the Nyström preconditioner's rank (one pass over `K` with `rank` columns;
      memory `n × rank`).
    - `rtol`: the relative residual `‖B − (K + μI)X‖/‖B‖` conjugate gradients must reach
      (checked on the true residual, recomputed when the recurrence's reaches half of it;
    a restart that does not halve it stops the solve), and the relative change at
      which the Lanczos approximations stop.
    - `maxiter`: passes over `K` allowed per solve (conjugate gradients) or per
      right-hand side (Lanczos).
    - `seed`: the Nyström sketch's random seed.
    - `progress`: a progress bar over the passes (with the residual).
    """

    rank: int = 256
    rtol: float = 1e-10
    maxiter: int = 1000
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        for name, lo in (("rank", 1), ("maxiter", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer ≥ {lo}, got {name}={value!r}")
        if not 0 < self.rtol < 1:
            raise ValueError(f"rtol must be in (0, 1), got rtol={self.rtol!r}")


class _Meter:
    """A progress bar over the passes over the disk, with the latest residual."""

    def __init__(self, description: str, solver: DiskSolver):
        self.bar = self.task = None
        if solver.progress:
            from .._progress import rich_bar

            self.bar = rich_bar(counts=True)
            self.bar.start()
            self.task = self.bar.add_task(description, total=solver.maxiter)

    def tick(self, **fields: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclasses.dataclass(frozen=True)
class Nystrom:
    """The preconditioner `P⁻¹ = (λ̂_r + μ) U (Λ̂ + μI)⁻¹ Uᵀ + (I − U Uᵀ)` from the rank-`r`
    Nyström approximation `U Λ̂ Uᵀ ≈ K` (Frangella et al. 2023, Algorithm 2.1 and eq. 5.3)."""

    U: np.ndarray
    lam: np.ndarray
    mu: float

    def __call__(self, R: np.ndarray) -> np.ndarray:
        UtR = self.U.T @ R
        scale = (self.lam[-1] + self.mu) / (self.lam + self.mu)
        return R + self.U @ ((scale[:, None] - 1.0) * UtR)


def nystrom(K: DiskArray, mu: float, *, rank: int, seed: int) -> Nystrom:
    """The Nyström preconditioner of `K + μI` from one pass `Y = K Ω` over the disk, `Ω`
    an orthonormalised Gaussian sketch; a shift `ν` (of the order of rounding) keeps
    the small Cholesky factorisation stable and is taken off the eigenvalues."""
    n = K.shape[0]
    rank = min(rank, n)
    Omega = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, rank)))[0]
    Y = K @ Omega
    nu = np.sqrt(n) * np.spacing(np.linalg.norm(Y, 2))
    Y = Y + nu * Omega
    C = scipy.linalg.cholesky(Omega.T @ Y, lower=False)  # (ΩᵀY_ν) = CᵀC
    B = scipy.linalg.solve_triangular(C, Y.T, trans=1, lower=False).T  # Y_ν C⁻¹
    U, sigma, _ = np.linalg.svd(B, full_matrices=False)
    lam = np.maximum(sigma**2 - nu, 0.0)
    return Nystrom(U, lam, mu)


def cg_solve(
    K: DiskArray, B: np.ndarray, mu: float, solver: DiskSolver
) -> tuple[np.ndarray, int, float]:
    """`X = (K + μI)⁻¹ B` (columns of `B` at once, one pass over `K` per iteration) by
    preconditioned conjugate gradients; returns `X`, the passes made and the largest
    true relative residual.

    **Raises:** `DiskSolveError` when `solver.maxiter` passes do not reach `solver.rtol`.
    """
    B = np.asarray(B, np.float64)
    vector = B.ndim == 1
    B = B[:, None] if vector else B
    meter = _Meter("conjugate gradients (passes over the disk)", solver)
    try:
        precond = nystrom(K, mu, rank=solver.rank, seed=solver.seed)
        meter.tick()
        norm_b = np.linalg.norm(B, axis=0)
        norm_b = np.where(norm_b > 0, norm_b, 1.0)
        X = np.zeros_like(B)
        R = B.copy()
        passes, residual, previous = 1, np.inf, np.inf
        while passes < solver.maxiter - 1:
            budget = solver.maxiter - passes - 1  # (and one for the true residual)
            X, R, used = _pcg(K, mu, precond, X, R, norm_b, solver.rtol, budget, meter)
            R = B - (K @ X + mu * X)  # the true residual, not the recurrence's
            passes += used + 1
            residual = float(np.max(np.linalg.norm(R, axis=0) / norm_b))
            meter.tick(residual=residual)
            if residual <= solver.rtol:
                LOG.info("conjugate gradients: %d passes, residual %.2e", passes, residual)
                return (X[:, 0] if vector else X), passes, residual
            if residual > 0.5 * previous:  # a restart that did not halve it: stalled
                break
            previous = residual
    finally:
        meter.close()
    why = "stalled (rounding, at this kernel's conditioning)" if passes < solver.maxiter - 1 else ""
    raise DiskSolveError(
        f"conjugate gradients on the kernel on disk reached a relative residual of "
        f"{residual:.2e}, not rtol={solver.rtol:g}, in {passes} passes"
        f"{' and ' + why if why else ''}; add diag_reg, loosen rtol, or raise "
        "DiskSolver(rank=…, maxiter=…)"
    )


def _pcg(K, mu, precond, X, R, norm_b, rtol, budget, meter) -> tuple[np.ndarray, np.ndarray, int]:
    Z = precond(R)
    P = Z.copy()
    rz = np.sum(R * Z, axis=0)
    for it in range(1, budget + 1):
        AP = K @ P + mu * P
        pap = np.sum(P * AP, axis=0)
        alpha = np.divide(rz, pap, out=np.zeros_like(rz), where=pap > 0)
        X = X + alpha * P
        R = R - alpha * AP
        estimate = float(np.max(np.linalg.norm(R, axis=0) / norm_b))
        meter.tick(residual=estimate)
        if estimate <= 0.5 * rtol:
            return X, R, it
        Z = precond(R)
        rz_new = np.sum(R * Z, axis=0)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        P = Z + beta * P
        rz = rz_new
    return X, R, budget


def lanczos_apply(
    K: DiskArray,
    b: np.ndarray,
    mu: float,
    f: Callable[[np.ndarray], np.ndarray],
    solver: DiskSolver,
) -> tuple[np.ndarray, int]:
    """`f(K + μI) b` for a function `f` of the eigenvalues returning `(m, k)` values
    (one row per time), as `‖b‖ V_k f(T_k) e_1` on the Krylov basis `V_k` (fully
    reorthogonalised; one pass over `K` per step), stopped when the approximation moves
    by less than `solver.rtol` (relative) between checks: `(m, n)` and the passes made.

    **Raises:** `DiskSolveError` when `solver.maxiter` steps do not settle it.
    """
    b = np.asarray(b, np.float64)
    beta0 = float(np.linalg.norm(b))
    if beta0 == 0:
        return np.zeros((f(np.zeros(1)).shape[0], b.size)), 0
    meter = _Meter("Lanczos (passes over the disk)", solver)
    try:
        return _lanczos(K, b, beta0, mu, f, solver, meter)
    finally:
        meter.close()


def _lanczos(K, b, beta0, mu, f, solver, meter) -> tuple[np.ndarray, int]:
    V = [b / beta0]
    alphas: list[float] = []
    betas: list[float] = []
    previous: Any = None
    for step in range(1, solver.maxiter + 1):
        meter.tick()
        w = K @ V[-1] + mu * V[-1]
        alphas.append(float(V[-1] @ w))
        basis = np.stack(V, axis=1)
        w = w - basis @ (basis.T @ w)
        w = w - basis @ (basis.T @ w)  # twice is enough (Giraud et al. 2005)
        beta = float(np.linalg.norm(w))
        exhausted = beta <= 1e-14 * max(abs(a) for a in alphas)
        if step % 5 == 0 or exhausted or step == solver.maxiter:
            approx = _ritz(np.stack(V, axis=1), alphas, betas, f, beta0)
            if exhausted:
                return approx, step
            if previous is not None:
                change = np.linalg.norm(approx - previous, axis=1)
                size = np.maximum(np.linalg.norm(approx, axis=1), 1e-300)
                if np.all(change <= solver.rtol * size):
                    LOG.info("Lanczos: %d passes, last change %.2e", step, np.max(change / size))
                    return approx, step
            previous = approx
        betas.append(beta)
        V.append(w / beta)
    raise DiskSolveError(
        f"the Lanczos approximation of the gradient flow on the kernel on disk did not "
        f"settle to rtol={solver.rtol:g} in {solver.maxiter} passes; raise "
        "DiskSolver(maxiter=…), or ask for t=None"
    )


def _ritz(V, alphas, betas, f, beta0) -> np.ndarray:
    k = len(alphas)
    theta, S = scipy.linalg.eigh_tridiagonal(np.asarray(alphas), np.asarray(betas[: k - 1]))
    weights = f(theta) * S[0][None, :]  # (m, k)
    return beta0 * (weights @ S.T) @ V.T
