"""`gradient_descent_mse_ensemble`: the Gaussian of an infinite ensemble of infinitely
wide networks trained by gradient flow on the mean squared error, at any time
(docs/theory.md, "Predictions in function space"), with neural-tangents' signature."""

import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ..infinite._kernel_fn import Kernel, as_kernel_fn
from ._gp import KERNELS, Gaussian, gp_inference
from ._layout import Layout, as_matrix, finite_times, interleaved, named, regularized, requested


def gradient_descent_mse_ensemble(
    kernel_fn: Any,
    x_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
    **kernel_fn_train_train_kwargs: Any,
) -> Callable[..., Any]:
    """Mean and covariance over random initialisations of infinitely wide networks
    trained by gradient flow on `‖f − y‖²/(2N)` for a time `t` (docs/theory.md, "The
    ensemble at a finite time"): with the kernel `K` of `get` (`"ntk"`: the whole
    network trained; `"nngp"`: its last layer), `E_t = exp(−ηtK/N)`, the NNGP `𝒦` and
    `A = K(X*, X) K⁻¹ (I − E_t)`: mean `A y`, covariance
    `𝒦(X*, X*) + A 𝒦 Aᵀ − (A 𝒦(X, X*) + its transpose)`; on the training points
    (`x_test=None`) `(I − E_t) y` and `E_t 𝒦 E_t`. `t=None` is `t = ∞` (`gp_inference`).

    **Arguments** (neural-tangents 0.6.5's): `kernel_fn(x1, x2, get, **kwargs)` (or an
    ntkflow `MLP`/`Shallow`/`CNN`: its infinite-width kernels), `x_train`, `y_train`,
    `learning_rate`, `diag_reg`, `diag_reg_absolute_scale`, `trace_axes`, and keyword
    arguments for the train-train kernel.

    **Returns:** `predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kw)`:
    for `get` a name, its mean (or `Gaussian(mean, covariance)` with `compute_cov`),
    with leading axes for the times `t`; for a tuple (default `("nngp", "ntk")`), a
    named tuple of those.
    """
    kernel = as_kernel_fn(kernel_fn)
    y = jnp.asarray(y_train)
    layout = Layout.of(y, trace_axes)
    Y, n = layout.matrix(y), y.size
    _, traced = layout.sizes(y.shape)

    @functools.cache
    def train(get: str) -> jnp.ndarray:
        return jnp.asarray(kernel(x_train, None, get, **kernel_fn_train_train_kwargs))

    @functools.cache
    def eigh(get: str) -> tuple[jnp.ndarray, jnp.ndarray]:
        lam, V = jnp.linalg.eigh(
            regularized(as_matrix(train(get)), diag_reg, diag_reg_absolute_scale)
        )
        return jnp.maximum(lam, 0.0), V

    def at_infinity(names: tuple[str, ...], x_test: Any, cov: bool, kw: dict) -> dict:
        needed = set(names) | ({"nngp"} if cov else set())
        k_dd = Kernel(**{g: train(g) for g in needed})
        k_td = None
        if x_test is not None:
            k_td = Kernel(**{g: kernel(x_test, x_train, g, **kw) for g in needed})
        k_tt = (True if x_test is None else kernel(x_test, None, "nngp", **kw)) if cov else None
        fn = gp_inference(k_dd, y, diag_reg, diag_reg_absolute_scale, trace_axes)
        return {g: fn(g, k_td, k_tt) for g in names}

    def one(get: str, tau: jnp.ndarray, x_test: Any, cov: bool, kw: dict) -> Any:
        lam, V = eigh(get)
        lead = tau.shape
        tau = tau.reshape(-1, 1)
        decay = jnp.exp(-tau * lam[None, :] / n)  # E_t, per mode: (m, P)
        z = V.T @ Y
        if x_test is None:
            mean = jnp.einsum("pi,mi,iq->mpq", V, 1.0 - decay, z)
            rows = jnp.shape(train(get))[0::2]
        else:
            k_td = as_matrix(kernel(x_test, x_train, get, **kw))
            positive = (lam > 0)[None, :]
            gain = jnp.where(positive, (1.0 - decay) / jnp.where(lam > 0, lam, 1.0)[None, :], 0.0)
            mean = jnp.einsum("sp,pi,mi,iq->msq", k_td, V, gain, z)
            rows = jnp.shape(kernel(x_test, x_train, get, **kw))[0::2]
        mean = layout.array(mean, tuple(rows), traced)
        mean = mean.reshape(lead + _shape(layout, tuple(rows), traced))
        if not cov:
            return mean
        nngp_dd = as_matrix(train("nngp"))
        if x_test is None:
            c = _train_covariance(get, V, lam, decay, nngp_dd)
        else:
            c = _test_covariance(
                jnp.einsum("sp,pi,mi,qi->msq", k_td, V, gain, V),  # K* K⁻¹ (I − E_t)
                nngp_dd,
                as_matrix(kernel(x_test, None, "nngp", **kw)),
                as_matrix(kernel(x_test, x_train, "nngp", **kw)),
            )
        c = interleaved(c, tuple(rows), tuple(rows)).reshape(
            lead + tuple(r for r in rows for _ in (0, 1))
        )
        return Gaussian(mean, c)

    def predict_fn(
        t: Any = None, x_test: Any = None, get: Any = None, compute_cov: bool = False, **kw: Any
    ) -> Any:
        names, single = requested(get, KERNELS, KERNELS)
        if t is None:
            return named(at_infinity(names, x_test, compute_cov, kw), single, "Gaussians")
        tau = finite_times(t) * learning_rate
        out = {g: one(g, tau, x_test, compute_cov, kw) for g in names}
        return named(out, single, "Gaussians")

    return predict_fn


def _train_covariance(
    get: str, V: jnp.ndarray, lam: jnp.ndarray, decay: jnp.ndarray, nngp_dd: jnp.ndarray
) -> jnp.ndarray:
    """On the training points: `𝒦 E_t²` (`"nngp"`, in its eigenbasis) or `E_t 𝒦 E_t`."""
    if get == "nngp":
        return jnp.einsum("pi,mi,qi->mpq", V, lam[None, :] * decay**2, V)
    E = jnp.einsum("pi,mi,qi->mpq", V, decay, V)
    return E @ nngp_dd @ jnp.swapaxes(E, 1, 2)


def _test_covariance(
    A: jnp.ndarray, nngp_dd: jnp.ndarray, nngp_tt: jnp.ndarray, nngp_td: jnp.ndarray
) -> jnp.ndarray:
    """On the test points: `𝒦(X*, X*) + A 𝒦 Aᵀ − (A 𝒦(X, X*) + its transpose)`."""
    cross = A @ nngp_td.T
    spread = A @ nngp_dd @ jnp.swapaxes(A, 1, 2)
    return nngp_tt[None] + spread - (cross + jnp.swapaxes(cross, 1, 2))


def _shape(layout: Layout, kept: tuple[int, ...], traced: tuple[int, ...]) -> tuple[int, ...]:
    """The targets' shape with the kept axes of sizes `kept` and the traced `traced`."""
    sizes = dict(zip(layout.kept, kept, strict=True)) | dict(
        zip(layout.traced, traced, strict=True)
    )
    return tuple(sizes[a] for a in range(layout.ndim))
