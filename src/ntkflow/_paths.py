"""A flow's path as one typed record (`FlowPath`): the gradient flow `w(t)`, the tangent
flow `u(t)`, gradient descent `w_k` and the infinite-width tangent flow each carry the
same fields (`loss`, `dist`, …) at their save times, and what only one of them has
(the gradient flow's error budget, the tangent flow's distance to its limit) in fields
that are `None` on the others. What compares two flows (`Gaps`) and the kernel along the
gradient flow (`KernelPath`) are records of their own.

`FlowSolution` (`_solution`) holds these records; the flat names the results files use
(`loss_w`, `dist_u`, …) are views of their fields, named once in `_solution.SERIES`.
"""

import dataclasses
import math

import numpy as np

from ._stats import GDStats, SolveStats


@dataclasses.dataclass(frozen=True, eq=False)
class Steps:
    """A flow at its solver's accepted steps, between the save times: the times `ts`,
    the loss and `‖· − w0‖` there (the checks read them between the saves)."""

    ts: np.ndarray
    loss: np.ndarray | None = None
    dist: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class TestSeries:
    """A flow on the test split at each save: the scaled predictions `pred` (`α f` on
    the test inputs, shape `(saves, n_test, k)` or `(saves, n_test)`), the mean loss per
    test point `loss` and the fraction classified right `acc` (`None` for regression)."""

    pred: np.ndarray | None = None
    loss: np.ndarray | None = None
    acc: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Budget:
    """The integrator's error budget along the gradient flow (docs/theory.md, "The
    gradient flow's budget"): `dist` bounds the error of `w(t)` (`‖w_tight − w_loose‖`),
    `loss` that of the loss, `residual` that of `α f(w) − y`; NaN where either solve
    stopped short. `stats` says how the second solve went."""

    dist: np.ndarray
    loss: np.ndarray
    residual: np.ndarray
    stats: SolveStats


@dataclasses.dataclass(frozen=True, eq=False)
class FlowPath:
    """One flow at the save times `ts`.

    **Fields:** `loss` (the loss `R(α f)` along it), `dist` (`‖· − w0‖`), `grad`
    (`‖∇R(α f)‖`, for a loss other than the square), `reached` (the time it was computed
    to: the horizon unless it stopped early), `stats` (how it was computed), `steps`
    (the same at the solver's accepted steps), `test` (on the test split), `params`
    (`· − w0` when kept); the gradient flow's `budget` (`Budget`) and `rounding` (the
    estimated rounding error of `α f(w) − y`, docs/theory.md "Rounding"); the tangent
    flow's `to_limit` (`‖u(t) − u∞‖`); gradient descent's `gap` (`‖w_k − w(kη)‖`).
    Fields that do not apply to the flow are `None`.
    """

    ts: np.ndarray
    loss: np.ndarray
    dist: np.ndarray | None = None
    grad: np.ndarray | None = None
    reached: float = math.inf
    stats: SolveStats | GDStats | None = None
    steps: Steps | None = None
    test: TestSeries | None = None
    params: np.ndarray | None = None
    budget: Budget | None = None
    rounding: np.ndarray | None = None
    to_limit: np.ndarray | None = None
    gap: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Gaps:
    """The network against its linearisation: `f` is `‖αf(w(t)) − αf_0(u(t))‖`, `w` is
    `‖w(t) − u(t)‖` at the save times; `step_f`, `step_w` the same at the gradient
    flow's steps (when the tangent flow has a closed form to evaluate there)."""

    f: np.ndarray
    w: np.ndarray
    step_f: np.ndarray | None = None
    step_w: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class KernelPath:
    """The kernel along the gradient flow at the save times: `σ_min(J_{w(t)})`,
    `σ_max(J_{w(t)})` and the drift `‖K_{w(t)} − K0‖_op/‖K0‖_op`; `method` says how
    they were computed: `"dense"` or `"lanczos"` (Ritz values: `verify` never calls a
    ball-lemma check held on them)."""

    sigma_min: np.ndarray
    sigma_max: np.ndarray
    drift: np.ndarray
    method: str
