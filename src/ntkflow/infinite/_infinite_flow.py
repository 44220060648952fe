"""The tangent flow of the infinite-width kernel (docs/theory.md, "The tangent flow in the
limit").

The tangent flow of a finite network moves its predictions `u = αf` by
`u̇ = −α² K0 (u − y)` (square loss); as the widths grow, `K0 → Θ` and the flow becomes
the kernel flow of `Θ`. With `Θ = V Λ Vᵀ` on the training points, `r0 = u0 − y` and
`φ_t(λ) = (1 − e^{−α²λt})/λ`:

    u(t) = y + V e^{−α²Λt} Vᵀ r0,                 (training points)
    u_test(t) = u_test(0) − Θ_test,train V φ_t(Λ) Vᵀ r0,

the predictions of neural-tangents' `predict.gradient_descent_mse` with the analytic
kernel (in its time units, `η·t_nt = α² t · n·k`). `u0` is the network's own initial
prediction (`α f(w0)`: zero under centring) or zero (the Gaussian process's mean).
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._losses import Squared
from .._problem import Problem
from .._repr import concise
from .._tangent import _phi
from ._infinite import InfiniteKernel, infinite_kernel


@concise
@dataclasses.dataclass(frozen=True)
class InfiniteFlow:
    """The infinite-width tangent flow of a problem at the times asked.

    **Fields:**

    - `times`: `(s,)`.
    - `train`: the predictions `u(t) = αf` on the training points, `(s, *y.shape)`.
    - `test`: the same on the problem's test points, or `None` without a test split.
    - `loss`: `½‖u(t) − y‖²` on the training points, `(s,)`.
    - `kernel`: the `InfiniteKernel` on the training points (its error bound included);
      `cross`: `Θ_test,train`, or `None`.
    - `initial`: `"network"` or `"zero"` (what `u0` was).
    """

    times: Float[Array, " s"]
    train: Float[Array, "s ..."]
    test: Float[Array, "s ..."] | None
    loss: Float[Array, " s"]
    kernel: InfiniteKernel
    cross: InfiniteKernel | None
    initial: str


def infinite_flow(
    problem: Problem,
    times: ArrayLike | Sequence[float],
    *,
    initial: str = "network",
    tol: float = 1e-12,
    kernel: InfiniteKernel | None = None,
) -> InfiniteFlow:
    """The tangent flow of `problem` with its kernel replaced by the infinite-width NTK
    `Θ` of its model (`infinite_kernel`), at `times`.

    **Arguments:**

    - `problem`: a `Problem` with the square loss on an `MLP`, `Shallow` or `CNN`.
    - `times`: the times, `≥ 0`, in the problem's time (the flows' `t`).
    - `initial`: `"network"` starts from the network's own `α f(w0)` (zero under a
      centring), `"zero"` from the Gaussian process's mean 0.
    - `tol`: `infinite_kernel`'s quadrature tolerance.
    - `kernel`: `Θ` on the training points, when already computed (not again).

    **Raises:** `ValueError` for another loss, a model without a limit, negative or
    non-finite times, or an unknown `initial`.
    """
    if not isinstance(problem.objective, Squared):
        raise ValueError(
            f"infinite_flow needs the square loss, got loss={problem.objective.name!r}: "
            "its flow has no closed form"
        )
    if initial not in ("network", "zero"):
        raise ValueError(f"initial must be 'network' or 'zero', got initial={initial!r}")
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"times must be finite and ≥ 0, got {np.asarray(times)!r}")
    data, dtype = problem.data, problem.dtype
    theta = kernel if kernel is not None else infinite_kernel(problem.model, data.X, tol=tol)
    cross = None
    if data.X_test is not None:
        cross = infinite_kernel(problem.model, data.X_test, data.X, tol=tol)
    n = data.n
    y = jnp.asarray(data.y, dtype).reshape(n, -1)
    alpha = problem.alpha_array
    u0 = (alpha * problem.f0).reshape(n, -1) if initial == "network" else jnp.zeros_like(y)
    lam, V = jnp.linalg.eigh(jnp.asarray(theta.ntk, dtype))
    lam = jnp.maximum(lam, 0.0)
    proj = V.T @ (u0 - y)  # (n, k)
    tj = jnp.asarray(t, dtype)[:, None]
    decay = jnp.exp(-(alpha**2) * lam[None, :] * tj)  # (s, n)
    train = y[None] + jnp.einsum("ij,sj,jk->sik", V, decay, proj)
    loss = 0.5 * jnp.sum((train - y[None]) ** 2, axis=(1, 2))
    test = None
    if cross is not None:
        assert data.X_test is not None and data.y_test is not None
        if initial == "network":
            ut0 = alpha * problem.predict(problem.w0, data.X_test).reshape(-1, y.shape[1])
        else:
            ut0 = jnp.zeros((data.X_test.shape[0], y.shape[1]), dtype)
        phi = jax.vmap(lambda s: _phi(lam, s, alpha**2))(tj[:, 0])  # (s, n)
        step = jnp.einsum("ij,sj,jk->sik", V, phi, proj)
        test = ut0[None] - jnp.einsum("ti,sik->stk", jnp.asarray(cross.ntk, dtype), step)
        test = test.reshape(len(t), *jnp.shape(data.y_test))
    shape = (len(t), *jnp.shape(data.y))
    return InfiniteFlow(
        jnp.asarray(t, dtype), train.reshape(shape), test, loss, theta, cross, initial
    )
