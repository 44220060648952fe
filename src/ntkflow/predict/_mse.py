"""`gradient_descent_mse`: the outputs of a network trained by gradient flow on the mean
squared error, in closed form from its kernel (docs/theory.md, "Predictions in function
space"), with neural-tangents' signature and layouts."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ..disk._solve import DiskSolver
from ._kernel_matrix import kernel_matrix, operand, times
from ._layout import Layout, finite_times


def check_outputs(fx_train_0: Any, fx_test_0: Any, k_test_train: Any) -> None:
    if fx_test_0 is not None and k_test_train is None:
        raise ValueError(
            "k_test_train must be given with fx_test_0 (the test predictions need the "
            "test-train kernel), got k_test_train=None"
        )
    if fx_train_0 is None and fx_test_0 is None:
        raise ValueError(
            "fx_train_0 and fx_test_0 are both None: give one of them (the outputs at t = 0)"
        )


def _returned(train: Any, test: Any, fx_train_0: Any, fx_test_0: Any) -> Any:
    if fx_test_0 is None:
        return train
    if fx_train_0 is None:
        return test
    return train, test


def gradient_descent_mse(
    k_train_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
    *,
    solver: DiskSolver | None = None,
) -> Callable[..., Any]:
    """The network's outputs under gradient flow on `L = ‖f(X) − y‖²/(2N)` (`N =
    y_train.size`), linearised in its kernel `K` (the NTK; the NNGP gives the
    last-layer-only dynamics): with `r0 = f_0(X) − y` and the learning rate `η`,

        f_t(X)  = f_0(X)  + (exp(−ηtK/N) − I) r0
        f_t(X*) = f_0(X*) + K(X*, X) K⁻¹ (exp(−ηtK/N) − I) r0,

    and as `t → ∞` `f(X) = y`, `f(X*) = f_0(X*) + K(X*, X) K⁻¹ (y − f_0(X))`
    (Jacot et al. 2018; Lee et al. 2019). Computed in `K`'s eigenbasis (finite times:
    one `eigh`, cached) or by Cholesky (`t=None`, cached); for a kernel on disk
    (`DiskArray`, `kernel_to_disk`) by the Lanczos process (finite times) or
    preconditioned conjugate gradients (`t=None`), never loading it (docs/theory.md,
    "Kernels on disk").

    **Arguments** (neural-tangents 0.6.5's): `k_train_train` (the kernel on the training
    points, in neural-tangents' interleaved layout, without the `trace_axes`),
    `y_train`, `learning_rate`, `diag_reg` (`K + diag_reg·I`, relative to the mean
    diagonal unless `diag_reg_absolute_scale`), `trace_axes` (the targets' axes along
    which the kernel is `Θ ⊗ I`); and ntkflow's `solver` (`DiskSolver`: rank,
    tolerance and passes of the solves on disk).

    **Returns:** `predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)`:
    the training outputs at times `t` (any shape: leading axes), the test outputs with
    `fx_test_0` and `k_test_train`, or both as a tuple when both are asked for.
    Differs from neural-tangents only where its answer is NaN: a zero eigenvalue of `K`
    adds nothing to the test outputs here.
    """
    y = jnp.asarray(y_train)
    layout = Layout.of(y, trace_axes)
    K = kernel_matrix(k_train_train, diag_reg, diag_reg_absolute_scale, solver)
    n = y.size

    def finite(t: Any, fx_train_0: Any, fx_test_0: Any, k_test_train: Any) -> Any:
        tau = jnp.asarray(t, K.dtype) * learning_rate
        lead, m = tau.shape, tau.size
        r0 = -y if fx_train_0 is None else jnp.broadcast_to(fx_train_0 - y, y.shape)

        def functions(lam: Any) -> Any:  # (2m, k): exp(−τλ/N) − 1, then it over λ
            decay = jnp.expm1(-tau.reshape(-1, 1) * lam[None, :] / n)
            safe = jnp.where(lam > 0, lam, 1.0)
            return jnp.concatenate([decay, jnp.where(lam[None, :] > 0, decay / safe[None, :], 0.0)])

        both = K.apply(functions, layout.matrix(r0))  # (2m, P, Q)
        train = test = None
        if fx_train_0 is not None:
            start = jnp.broadcast_to(fx_train_0, y.shape).reshape((1,) * len(lead) + y.shape)
            moved = layout.array(both[:m], *layout.sizes(y.shape)).reshape(lead + y.shape)
            train = start + moved
        if fx_test_0 is not None:
            coef = both[m:]  # (m, P, Q): every time in one product (one pass on disk)
            P, Q = coef.shape[1:]
            flat = times(operand(k_test_train), jnp.moveaxis(coef, 0, 1).reshape(P, m * Q))
            moved = jnp.moveaxis(flat.reshape(-1, m, Q), 1, 0)
            shape = jnp.shape(fx_test_0)
            kept, traced = layout.sizes(shape)
            start = jnp.reshape(fx_test_0, (1,) * len(lead) + shape)
            test = start + layout.array(moved, kept, traced).reshape(lead + shape)
        return _returned(train, test, fx_train_0, fx_test_0)

    def infinite(fx_train_0: Any, fx_test_0: Any, k_test_train: Any) -> Any:
        train = y.astype(K.dtype)
        test = None
        if fx_test_0 is not None:
            rhs = y if fx_train_0 is None else y - fx_train_0
            coef = K.solve(layout.matrix(jnp.broadcast_to(rhs, y.shape)))
            moved = times(operand(k_test_train), coef)
            kept, traced = layout.sizes(jnp.shape(fx_test_0))
            test = fx_test_0 + layout.array(moved, kept, traced)
        return _returned(train, test, fx_train_0, fx_test_0)

    def predict_fn(
        t: Any = None, fx_train_0: Any = 0.0, fx_test_0: Any = None, k_test_train: Any = None
    ) -> Any:
        check_outputs(fx_train_0, fx_test_0, k_test_train)
        if t is None:
            return infinite(fx_train_0, fx_test_0, k_test_train)
        return finite(finite_times(t), fx_train_0, fx_test_0, k_test_train)

    return predict_fn
