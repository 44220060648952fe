"""Kernel-based quantities along a trajectory: `σ(J_{w(t)})`, the kernel drift, and the
test-set predictions of both flows."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._kernel import empirical_ntk
from ._problem import Problem


def kernel_diagnostics(
    problem: Problem,
    deltas: Float[np.ndarray, "s p"],
    K0: Float[Array, "n n"],
    *,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """At each saved `w = w0 + δ`: `σ_min(J_w)`, `σ_max(J_w)` and the relative kernel drift
    `‖K_w − K0‖_op / ‖K0‖_op` (one empirical NTK and two symmetric eigenproblems each)."""
    K0n = np.asarray(K0, dtype=np.float64)
    norm0 = float(np.max(np.abs(np.linalg.eigvalsh(K0n))))
    s = deltas.shape[0]
    smin, smax, drift = (np.full(s, np.nan) for _ in range(3))
    rows = range(s)
    bar = None
    if progress:
        from ._progress import rich_bar

        bar = rich_bar(counts=True)
        bar.start()
        task = bar.add_task("kernel diagnostics", total=s)
    try:
        for i in rows:
            if not np.all(np.isfinite(deltas[i])):
                continue
            K = np.asarray(empirical_ntk(problem, problem.w0 + jnp.asarray(deltas[i])))
            lam = np.linalg.eigvalsh(K)
            smin[i] = math.sqrt(max(float(lam[0]), 0.0)) if problem.n <= problem.p else 0.0
            smax[i] = math.sqrt(max(float(lam[-1]), 0.0))
            drift[i] = float(np.max(np.abs(np.linalg.eigvalsh(K - K0n)))) / norm0
            if bar is not None:
                bar.advance(task)  # pyright: ignore[reportPossiblyUnboundVariable]
    finally:
        if bar is not None:
            bar.stop()
    return {"sigma_min_t": smin, "sigma_max_t": smax, "kernel_drift": drift}


def test_predictions(
    problem: Problem,
    delta_w: Float[np.ndarray, "s p"] | None,
    delta_u: Float[np.ndarray, "s p"] | None,
) -> dict[str, Any]:
    """Scaled predictions `α f(w(t); X_test)` and `α f_0(u(t); X_test)` on the test split,
    flattened, and their losses `½‖α f − y_test‖²`."""
    data = problem.data
    assert data.X_test is not None and data.y_test is not None
    Xt, yt = data.X_test, np.asarray(data.y_test).reshape(-1)
    a = problem.alpha
    out: dict[str, Any] = {}
    if delta_w is not None:
        ok = np.all(np.isfinite(delta_w), axis=1)
        W = problem.w0[None, :] + jnp.asarray(np.nan_to_num(delta_w))
        pred = np.array(jax.vmap(lambda w: problem.predict(w, Xt).reshape(-1))(W)) * a
        pred[~ok] = np.nan
        out["pred_w_test"] = pred
        out["loss_w_test"] = 0.5 * np.sum((pred - yt[None, :]) ** 2, axis=1)
    if delta_u is not None:

        def lin(d):
            f0, df = jax.jvp(lambda w: problem.predict(w, Xt).reshape(-1), (problem.w0,), (d,))
            return f0 + df

        pred = np.asarray(jax.vmap(lin)(jnp.asarray(delta_u))) * a
        out["pred_u_test"] = pred
        out["loss_u_test"] = 0.5 * np.sum((pred - yt[None, :]) ** 2, axis=1)
    return out
