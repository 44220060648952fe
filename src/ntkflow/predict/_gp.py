"""`gp_inference`: the posterior of the NNGP, of the NTK's infinite ensemble and of the
NTK-GP on test points (docs/theory.md, "Predictions in function space"), with
neural-tangents' signature and layouts."""

import collections
import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ..disk._solve import DiskSolver
from ..disk._store import DiskKernel
from ..infinite._kernel_fn import Kernel as Kernel
from ._kernel_matrix import AbstractKernelMatrix, kernel_matrix, operand, times
from ._layout import Layout, as_matrix, interleaved, named, requested

Gaussian = collections.namedtuple("Gaussian", "mean covariance")
"""A Gaussian's `mean` (the targets' layout) and `covariance` (the kernels' layout)."""


# The kernels of an infinitely wide network, and the posteriors `gp_inference` gives.
KERNELS = ("nngp", "ntk")
_GETS = (*KERNELS, "ntkgp")


def _kernel(k: Any, get: str) -> Any:
    """`k` itself when it is an array, else its `get` attribute (`nngp` or `ntk`)."""
    if hasattr(k, "shape") and not isinstance(k, DiskKernel):
        return k
    value = getattr(k, get, None)
    if value is None:
        raise ValueError(
            f"the {get!r} kernel is needed (give kernels with an `{get}` attribute, e.g. "
            f"ntkflow.predict.Kernel(nngp=..., ntk=...)), got {type(k).__name__}"
        )
    return value


def gp_inference(
    k_train_train: Any,
    y_train: Any,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
    *,
    solver: DiskSolver | None = None,
) -> Callable[..., Any]:
    """The Gaussian on test points `X*` given the training data: mean
    `K(X*, X) K⁻¹ y` for each kernel `K` asked for, and covariance

    - `"nngp"`: `𝒦(X*, X*) − 𝒦(X*, X) 𝒦⁻¹ 𝒦(X, X*)` (the Bayesian posterior of the
      infinitely wide network, `𝒦` the NNGP);
    - `"ntk"`: `𝒦(X*, X*) + Θ*Θ⁻¹ 𝒦 Θ⁻¹Θ*ᵀ − (Θ*Θ⁻¹ 𝒦(X, X*) + its transpose)`, with
      `Θ* = Θ(X*, X)` (the infinite ensemble of infinitely wide networks trained to
      convergence, which starts as the NNGP's prior; Lee et al. 2019, eq. 16);
    - `"ntkgp"`: the first with the NTK in place of the NNGP (He et al. 2020),

    where `K + diag_reg·I` replaces `K` (relative to its mean diagonal unless
    `diag_reg_absolute_scale`). Each `K⁻¹` is one Cholesky factorisation, cached; a
    training kernel on disk (`DiskArray`, `kernel_to_disk`) is never loaded: each
    `K⁻¹` is preconditioned conjugate gradients (`solver`, docs/theory.md, "Kernels on
    disk"), and test-train kernels on disk are read in row blocks.

    **Arguments** (neural-tangents 0.6.5's): `k_train_train` (an array, or kernels with
    `nngp`/`ntk` attributes such as `Kernel`), `y_train`, `diag_reg`,
    `diag_reg_absolute_scale`, `trace_axes`; and ntkflow's `solver` (`DiskSolver`).

    **Returns:** `predict_fn(get=None, k_test_train=None, k_test_test=None)`: for `get`
    a name, its mean (or `Gaussian(mean, covariance)` with `k_test_test`); for a tuple
    of names (default `("nngp", "ntk")`), a named tuple of those. Without
    `k_test_train`, the training set's (`y_train`, with zero covariance).
    """
    y = jnp.asarray(y_train)
    layout = Layout.of(y, trace_axes)

    @functools.cache
    def matrix(get: str) -> AbstractKernelMatrix:
        k = _kernel(k_train_train, get)
        return kernel_matrix(k, diag_reg, diag_reg_absolute_scale, solver)

    def solve(get: str, rhs: jnp.ndarray) -> jnp.ndarray:
        return matrix(get).solve(rhs)

    def one(get: str, k_test_train: Any, k_test_test: Any) -> Any:
        kernel = "ntk" if get == "ntkgp" else get
        if k_test_train is None:  # the training set: y, exactly
            k_dd = _kernel(k_train_train, kernel)  # (its dtype: no solve, no read from disk)
            mean = y.astype(jnp.result_type(k_dd.dtype))
            if k_test_test is None:
                return mean
            return Gaussian(mean, jnp.zeros(k_dd.shape, mean.dtype))
        k_td = operand(_kernel(k_test_train, kernel))
        test_points = jnp.shape(_kernel(k_test_train, kernel))[0::2]
        _, traced = layout.sizes(y.shape)
        mean = layout.array(times(k_td, solve(kernel, layout.matrix(y))), test_points, traced)
        if k_test_test is None:
            return mean
        return Gaussian(mean, _covariance(get, k_train_train, k_test_train, k_test_test, solve))

    def predict_fn(get: Any = None, k_test_train: Any = None, k_test_test: Any = None) -> Any:
        names, single = requested(get, _GETS, KERNELS)
        out = {name: one(name, k_test_train, k_test_test) for name in names}
        return named(out, single, "Gaussians")

    return predict_fn


def _covariance(
    get: str, k_train_train: Any, k_test_train: Any, k_test_test: Any, solve: Callable
) -> jnp.ndarray:
    """The posterior covariance of `get` on the test points, in the interleaved layout."""
    prior = "ntk" if get == "ntkgp" else "nngp"
    kernel = "ntk" if get == "ntkgp" else get
    k_tt_full = jnp.asarray(_kernel(k_test_test, prior))
    k_tt = as_matrix(k_tt_full)
    k_td = as_matrix(_kernel(k_test_train, kernel))
    prior_td = as_matrix(_kernel(k_test_train, prior))
    if get in ("nngp", "ntkgp"):
        cov = k_tt - k_td @ solve(kernel, prior_td.T)
    else:
        if not hasattr(k_train_train, "nngp") or not hasattr(k_test_train, "nngp"):
            raise ValueError(
                "the NTK's posterior covariance needs the NNGP too: give k_train_train and "
                "k_test_train as kernels with `nngp` and `ntk` (ntkflow.predict.Kernel)"
            )
        gain = solve("ntk", k_td.T).T  # Θ* Θ⁻¹
        nngp = operand(_kernel(k_train_train, "nngp"))
        cross = gain @ prior_td.T
        cov = k_tt + gain @ times(nngp, gain.T) - (cross + cross.T)
    rows = k_tt_full.shape[0::2]
    return interleaved(cov, rows, rows)
