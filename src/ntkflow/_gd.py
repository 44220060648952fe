"""Discrete gradient descent, the gradient flow's Euler discretisation (docs/theory.md, "The two
gradient flows"): `w_{k+1} = w_k − η ∇_w R(α f(w_k))`, at time `t = kη`."""

import dataclasses
import math
import warnings

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int, Scalar

from ._problem import Problem
from ._repr import concise
from ._stats import GDStats


@concise
@dataclasses.dataclass(frozen=True)
class GDResult:
    """Gradient descent's iterates at the save times.

    **Fields:** `step` (`η`), `ts` (the times `k_i η` actually reached, closest to the
    requested ones), `iterations` (`k_i`), `deltas` (`w_{k_i} − w0`, NaN after a
    divergence), `loss`, `diverged_at` (the first iteration with a non-finite or exploding
    loss, or `None`), `stable_limit` (`2/(α² λ_max(K0))`), `wall_s`.
    """

    step: float
    ts: np.ndarray
    iterations: np.ndarray
    deltas: np.ndarray
    loss: np.ndarray
    diverged_at: int | None
    stable_limit: float
    wall_s: float

    @property
    def stats(self) -> GDStats:
        return GDStats(
            step=self.step,
            iterations=int(self.iterations[-1]),
            stable_limit=self.stable_limit,
            diverged_at=self.diverged_at,
            wall_s=self.wall_s,
        )

    @property
    def t_reached(self) -> float:
        """The last time with a finite loss."""
        good = np.isfinite(self.loss)
        return float(self.ts[good][-1]) if good.any() else 0.0

    def divergence(self) -> str | None:
        """Where and why it diverged, with the fix, or `None`."""
        if self.diverged_at is None:
            return None
        return (
            f"Gradient descent diverged by iteration {self.diverged_at} "
            f"(t={self.diverged_at * self.step:.6g}) with η={self.step:.4g} "
            f"(stable below 2/(α²λ_max) = {self.stable_limit:.4g}); lower gd_step."
        )


@eqx.filter_jit
def _segment(
    problem: Problem, delta: Float[Array, " p"], eta: Scalar, k: Int[Array, ""]
) -> tuple[Float[Array, " p"], Scalar]:
    grad = jax.grad(problem.loss)

    def body(_, d):
        return d - eta * grad(problem.w0 + d)

    delta = jax.lax.fori_loop(0, k, body, delta)
    return delta, problem.loss(problem.w0 + delta)


def gradient_descent(
    problem: Problem,
    step: float,
    ts: Float[np.ndarray, " s"],
    *,
    lambda_max: float,
    smoothness: float = 1.0,
    blowup: float = 1e8,
) -> GDResult:
    """Run gradient descent with step `η = step` and record it at the times `ts`.

    Warns (`RuntimeWarning`) when `η ≥ 2/(α² L λ_max(K0))` (`L` the loss's smoothness, 1 for the
    squared loss), where the linearised iteration is unstable; stops when the loss becomes
    non-finite or exceeds `blowup·max(R0, 1)`.

    **Arguments:**

    - `problem`: the `Problem`.
    - `step`: `η > 0`.
    - `ts`: save times; iteration `k_i = round(t_i/η)` is recorded for each.
    - `lambda_max`: `λ_max(K0)`, for the stability warning.
    - `smoothness`: the loss's `L` (its curvature's bound, `∇²R ⪯ LI`).
    - `blowup`: the loss growth that counts as divergence.
    """
    import time

    if not (isinstance(step, float | int) and math.isfinite(step) and step > 0):
        raise ValueError(f"gd_step must be a finite number > 0, got gd_step={step!r}")
    curvature = lambda_max * smoothness
    limit = 2.0 / (problem.alpha**2 * curvature) if curvature > 0 else math.inf
    lname = "2/(α² λ_max(K0))" if smoothness == 1.0 else "2/(α² L λ_max(K0))"
    if step >= limit:
        warnings.warn(
            f"gd_step={step:.4g} ≥ {lname} = {limit:.4g}: gradient descent is "
            "unstable on the linearised problem and will likely diverge; lower gd_step",
            RuntimeWarning,
            stacklevel=3,
        )
    start = time.perf_counter()
    iterations = np.rint(np.asarray(ts) / step).astype(np.int64)
    deltas = np.full((len(ts), problem.p), np.nan)
    loss = np.full(len(ts), np.nan)
    delta = jax.numpy.zeros_like(problem.w0)
    eta = jax.numpy.asarray(step, problem.dtype)
    R0 = float(problem.loss_at(problem.alpha_array * problem.f0))
    done, diverged_at = 0, None
    for i, k in enumerate(iterations):
        delta, value = _segment(problem, delta, eta, jax.numpy.asarray(k - done))
        done = int(k)
        value = float(value)
        if not math.isfinite(value) or value > blowup * max(R0, 1.0):
            diverged_at = done
            break
        deltas[i] = np.asarray(delta)
        loss[i] = value
    return GDResult(
        step=float(step),
        ts=iterations * step,
        iterations=iterations,
        deltas=deltas,
        loss=loss,
        diverged_at=diverged_at,
        stable_limit=limit,
        wall_s=time.perf_counter() - start,
    )
