"""Kernel-based quantities along a trajectory: `σ(J_{w(t)})`, the kernel drift, and the
test-set predictions of both flows."""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from ._diagnostics_iterative import Warm, iterative_diagnostics_at, preconditioner
from ._errors import InputError
from ._paths import KernelPath, TestSeries
from ._problem import Problem
from ._spectrum import dense_eigh, spectrum_from_eigenvalues
from .ntk._initial_kernel import InitialKernel
from .ntk._kernel import empirical_ntk


def diagnostics_method(diagnostics: Any) -> str | None:
    """`solve_flows`' `diagnostics` argument as a method name of `kernel_diagnostics`
    (`True`: `"dense"`; `False`: `None`, no diagnostics)."""
    if isinstance(diagnostics, bool):
        return "dense" if diagnostics else None
    if isinstance(diagnostics, str) and diagnostics.lower() in _METHODS:
        return diagnostics.lower()
    raise InputError("diagnostics", diagnostics, "True, False, 'dense' or 'lanczos'")


def kernel_diagnostics(
    problem: Problem,
    deltas: Float[np.ndarray, "s p"],
    kernel: InitialKernel,
    *,
    method: str = "dense",
    progress: bool = False,
) -> KernelPath:
    """At each saved `w = w0 + δ`: `σ_min(J_w)`, `σ_max(J_w)` (the rule of `ntk_spectrum`)
    and the relative kernel drift `‖K_w − K0‖_op / ‖K0‖_op` (`‖K0‖_op` from the
    `InitialKernel`). `method="dense"`: one empirical NTK and two symmetric
    eigenproblems per save; `"lanczos"`: warm-started iterative eigensolvers on
    kernel-vector products, `K_w` never formed (`_diagnostics_iterative`). NaN where `δ`
    is not finite; at `δ = 0`, `K0`'s own values."""
    K0n = np.asarray(kernel.K, dtype=np.float64)
    at = _METHODS[method](problem, kernel, K0n)
    s = deltas.shape[0]
    smin, smax, drift = (np.full(s, np.nan) for _ in range(3))
    bar = None
    if progress:
        from ._progress import rich_bar

        bar = rich_bar(counts=True)
        bar.start()
        task = bar.add_task("kernel diagnostics", total=s)
    try:
        for i in range(s):
            if not np.all(np.isfinite(deltas[i])):
                pass  # stays NaN
            elif not np.any(deltas[i]):  # w0 itself: K0, already formed and factored
                smin[i], smax[i] = kernel.spectrum.sigma_min, kernel.spectrum.sigma_max
                drift[i] = 0.0
            else:
                smin[i], smax[i], drift[i] = at(deltas[i])
            if bar is not None:
                bar.advance(task)  # pyright: ignore[reportPossiblyUnboundVariable]
    finally:
        if bar is not None:
            bar.stop()
    return KernelPath(smin, smax, drift, method)


def _dense(problem: Problem, kernel: InitialKernel, K0n: np.ndarray) -> Callable:
    """`(σ_min(J_w), σ_max(J_w), ‖K_w − K0‖_op/‖K0‖_op)` at `w = w0 + δ` from `K_w`
    formed and factored (NaN where `K_w` is not finite)."""

    def at(delta: np.ndarray) -> tuple[float, float, float]:
        w = problem.w0 + jnp.asarray(delta, problem.dtype)
        K = np.asarray(empirical_ntk(problem, w))
        if not np.all(np.isfinite(K)):
            return math.nan, math.nan, math.nan
        eig = dense_eigh(K, vectors=False)
        spec = spectrum_from_eigenvalues(eig, p=problem.p, dtype=K.dtype)
        drift = float(np.max(np.abs(np.linalg.eigvalsh(K - K0n)))) / kernel.norm
        return spec.sigma_min, spec.sigma_max, drift

    return at


def _lanczos(problem: Problem, kernel: InitialKernel, K0n: np.ndarray) -> Callable:
    """The same by warm-started iterative eigensolvers (`_diagnostics_iterative`), each
    save starting from the previous one's vectors."""
    warm, M = Warm(kernel), preconditioner(kernel)
    return lambda delta: iterative_diagnostics_at(problem, delta, kernel, K0n, warm, M)


# `kernel_diagnostics`' methods: each builds the per-save function of a trajectory.
_METHODS: dict[str, Callable] = {"dense": _dense, "lanczos": _lanczos}


def _labels(y: np.ndarray) -> np.ndarray | None:
    """The class of each test point when the targets encode classes, else `None`: `±1`
    scalar targets (the class is the target itself), or one-hot rows over `k ≥ 2`
    outputs, coded `0/1` or `−1/+1` (the class is the hot output's index)."""
    if y.shape[1] == 1:
        return y[:, 0] if np.all(np.abs(y) == 1) else None
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0)):
        if np.all((y == lo) | (y == hi)) and np.all(np.sum(y == hi, axis=1) == 1):
            return np.argmax(y, axis=1)
    return None


def _test_metrics(
    problem: Problem, pred: np.ndarray, y: np.ndarray, labels: np.ndarray | None
) -> TestSeries:
    """The mean per-point loss (`½‖α f(x) − y‖²` for the squared loss) over the test points and,
    for class targets, the fraction classified correctly: the output's sign (one output) or
    its argmax (`k` outputs) is the class. An undecided point — an output of exactly 0, a
    tie for the largest output, as at `t = 0` under antisymmetric centring — counts as
    wrong. NaN at saves whose predictions are not finite."""
    ok = np.all(np.isfinite(pred), axis=(1, 2))
    if problem.squared:
        per_point = 0.5 * np.sum((pred - y[None]) ** 2, axis=2)
    else:
        loss = problem.objective.value
        one = jax.vmap(lambda z, t: loss(z[None, :], t[None, :]))  # each point's loss
        yj = jnp.asarray(y, problem.dtype)
        per_point = np.array(
            jax.vmap(lambda Z: one(Z, yj))(jnp.asarray(np.nan_to_num(pred), problem.dtype))
        )
        per_point[~ok] = np.nan
    acc = None
    if labels is not None:
        if pred.shape[2] == 1:
            right = np.sign(pred[..., 0]) == labels[None, :]
        else:
            top = pred == np.max(pred, axis=2, keepdims=True)
            unique = np.sum(top, axis=2) == 1
            right = unique & (np.argmax(pred, axis=2) == labels[None, :])
        acc = np.where(ok, np.mean(right, axis=1), np.nan)
    return TestSeries(pred=pred, loss=np.mean(per_point, axis=1), acc=acc)


def test_series(
    problem: Problem, deltas: Float[np.ndarray, "s p"], *, linear: bool = False
) -> TestSeries:
    """A flow on the test split at each save `w0 + δ`: the scaled predictions
    `α f(w0 + δ; X_test)` (`linear=True`: the linearisation's, `α f_0(w0 + δ; X_test)`),
    shape `(saves, n_test, k)`; their loss, the mean over test points of the problem's
    loss of one point (`½‖α f(x) − y‖²` for the squared loss; so that splits of
    different sizes compare), and, when the targets are classes (`±1`, or one-hot over
    `k` outputs), the accuracy: the fraction of test points whose sign (one output) or
    argmax (`k` outputs) is the target's."""
    data = problem.data
    assert data.X_test is not None and data.y_test is not None
    Xt = data.X_test
    yt = np.asarray(data.y_test, dtype=np.float64)
    yt = yt.reshape(yt.shape[0], -1)
    a = problem.alpha
    if linear:

        def lin(d):
            f0, df = jax.jvp(lambda w: problem.predict(w, Xt).reshape(-1), (problem.w0,), (d,))
            return f0 + df

        pred = np.asarray(jax.vmap(lin)(jnp.asarray(deltas, problem.dtype))) * a
    else:
        ok = np.all(np.isfinite(deltas), axis=1)
        W = problem.w0[None, :] + jnp.asarray(np.nan_to_num(deltas), problem.dtype)
        pred = np.array(jax.vmap(lambda w: problem.predict(w, Xt).reshape(-1))(W)) * a
        pred[~ok] = np.nan
    return _test_metrics(problem, pred.reshape(-1, *yt.shape), yt, _labels(yt))
