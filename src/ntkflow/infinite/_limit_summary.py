"""How far a run's kernel and certificate are from their infinite-width limit
(docs/theory.md, "Scaling laws in the width").

For a model with a limit (`MLP`, `Shallow`, `CNN`), the empirical `K0` of the certificate is
compared with the limit `Θ ⊗ I_k` (`infinite_kernel`), and the certificate's `σ_min`,
`σ_max`, `α*` with the same quantities computed from `Θ` (with the run's own `α`, `R0` and
`β`): relative distances whose decay in the width a sweep fits (`m^{-1/2}` for the kernel's
fluctuation; at most that for the spectrum, by Weyl's inequality).
"""

import math
from typing import Any

import numpy as np

from .._certificate import Certificate, theorem_constants
from .._losses import Squared
from .._paths import FlowPath, TestSeries
from .._problem import Problem
from .._spectrum import ntk_spectrum
from ..models import CNN, MLP, Shallow
from ._infinite import InfiniteKernel, infinite_kernel
from ._infinite_flow import infinite_flow

# The relative distances a sweep keeps and fits against the width.
LIMIT_DISTANCES = (
    "limit_kernel_distance",
    "limit_sigma_min_distance",
    "limit_sigma_max_distance",
    "limit_alpha_star_distance",
)
LIMIT_SCALARS = (*LIMIT_DISTANCES, "limit_sigma_min", "limit_sigma_max", "limit_alpha_star")


def has_limit(problem: Problem) -> bool:
    """Whether `infinite_kernel` covers the problem's model."""
    return isinstance(problem.model, MLP | Shallow | CNN)


def _relative(value: float, limit: float) -> float:
    if not (math.isfinite(value) and math.isfinite(limit)) or limit == 0:
        return math.nan
    return abs(value - limit) / abs(limit)


# The limit kernels' quadrature tolerance (`infinite_kernel`).
LIMIT_TOL = 1e-12


def limit_kernel(problem: Problem, *, tol: float = LIMIT_TOL) -> InfiniteKernel | None:
    """The limit kernel `Θ` on the training points (`infinite_kernel`), or `None` when the
    model has none: computed once per run, for `limit_scalars` and `limit_series`."""
    return infinite_kernel(problem.model, problem.data.X, tol=tol) if has_limit(problem) else None


def limit_scalars(
    problem: Problem, certificate: Certificate, limit: InfiniteKernel | None
) -> dict[str, Any]:
    """`‖K0 − Θ⊗I_k‖_F/‖Θ⊗I_k‖_F` and the relative distances of `σ_min`, `σ_max`, `α*`
    to their values on the `limit` kernel (`limit_kernel`), with those values and the
    limit kernel's error bound (`None`: closed form). Empty without a limit kernel, or
    when the certificate carries no kernel."""
    if limit is None or certificate.kernel is None:
        return {}
    theta = np.asarray(limit.ntk, dtype=np.float64)
    k = problem.data.k
    if k > 1:  # outputs point-major, as K0's
        theta = np.kron(theta, np.eye(k))
    K0 = np.asarray(certificate.kernel.K, dtype=np.float64)
    spec = ntk_spectrum(theta)
    c = certificate
    consts = theorem_constants(
        c.alpha,
        c.delta_R0 if c.mu > 0 else c.R0,  # as `certify` does
        spec.sigma_min,
        spec.sigma_max,
        c.beta,
        mu=c.mu,
        L=c.L,
    )
    return {
        "limit_kernel_distance": float(np.linalg.norm(K0 - theta) / np.linalg.norm(theta)),
        "limit_sigma_min_distance": _relative(c.sigma_min, spec.sigma_min),
        "limit_sigma_max_distance": _relative(c.sigma_max, spec.sigma_max),
        "limit_alpha_star_distance": _relative(c.alpha_star, consts["alpha_star"]),
        "limit_sigma_min": spec.sigma_min,
        "limit_sigma_max": spec.sigma_max,
        "limit_alpha_star": consts["alpha_star"],
        "limit_error": limit.ntk_error,
        "limit_method": limit.method,
    }


def limit_path(problem: Problem, ts: np.ndarray, limit: InfiniteKernel | None) -> FlowPath | None:
    """The infinite-width tangent flow of the `limit` kernel (`limit_kernel`) at the run's
    save times `ts` (`infinite_flow`, square loss only; `None` otherwise) as a typed
    path: its training loss and, with a test split, its mean per-point test loss (as the
    tangent flow's is), for the report's loss figures."""
    if limit is None or not isinstance(problem.objective, Squared):
        return None
    ts = np.asarray(ts, dtype=np.float64)
    finite = np.isfinite(ts)
    flow = infinite_flow(problem, np.where(finite, ts, 0.0), kernel=limit, tol=LIMIT_TOL)
    loss = np.where(finite, np.asarray(flow.loss), np.nan)
    test = None
    if flow.test is not None and problem.data.y_test is not None:
        pred = np.asarray(flow.test).reshape(len(ts), len(problem.data.y_test), -1)
        y = np.asarray(problem.data.y_test).reshape(1, len(problem.data.y_test), -1)
        per_point = 0.5 * np.sum((pred - y) ** 2, axis=2)
        test = TestSeries(loss=np.where(finite, per_point.mean(axis=1), np.nan))
    return FlowPath(ts, loss, test=test)
