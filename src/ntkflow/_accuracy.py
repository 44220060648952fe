"""The accuracy policy of the gradient flow (docs/flows.md, "The accuracy policy";
docs/theory.md, "The gradient flow's budget").

The error budget of the gradient flow is the difference to a solve at 10× looser
tolerances. With `ExponentialAdams` that budget is also the controller: `solve_to_accuracy`
solves loose (`τ = 1`, the gaps' criterion off: they are not known yet), then at
`τ = 0.1` with the loose solve's suprema as scales, and while the budget misses a target it
solves again ten times tighter, the previous solve becoming the loose one. It stops when every
target is met — the gaps `‖w − u‖`, `‖αf(w) − αf_0(u)‖` to `gap` of their supremum, the
distance to `dist` of its supremum, the loss to `loss·R0`, or the dtype's rounding where
that is coarser — or after `MAX_TIGHTENINGS`, and reports the budget it reached.
"""

import dataclasses
import math
from typing import Any

import diffrax
import numpy as np

from ._adams import Accuracy
from ._gradient_flow import (
    ErrorBudget,
    GradientPath,
    at_least_local_targets,
    budget_between,
    solve_gradient_flow,
)
from ._integrate import SolveSettings
from ._problem import Problem
from ._progress import RichProgressMeter
from ._stats import SolveStats

# The loose solve's factor on τ, and how often the policy may tighten by 10 after its
# first pair `(START_TAU, START_TAU/10)`. It starts at τ = 1: on the 25 problems of
# `bench/flows_budget.py` and the deep MLPs of `bench/flows_scale.py` (n = 256, 1,024)
# no budget met its targets with the reported solve looser than τ = 0.1 (the distance's
# target binds: global errors are 10–100× the local ones), so a pair from τ = 10 was
# always spent.
LOOSEN = 10.0
START_TAU = 1.0
MAX_TIGHTENINGS = 2
# A budget this many ulps of its quantity's scale is rounding: a target below it is met;
# so is one within ROUNDING_FACTOR times the dtype's resolution (`Accuracy.floor`: two
# solves' rounding differs by a few times it).
ROUNDING_ULPS = 1e4
ROUNDING_FACTOR = 10.0


@dataclasses.dataclass(frozen=True)
class AccuracyReport:
    """What the policy did: the `targets` (`gap`, `dist`, `loss`), the `taus` it solved at
    (the last is the reported solve, the one before it the budget's), the budget it
    `reached` relative to each target's scale — the difference of its last two solves, what
    they showed; the reported budget is never below one step's local target besides
    (`at_least_local_targets`) — (`gap_w`, `gap_f`: of the gaps' suprema;
    `dist`: of the distance's; `loss`: of `R0`), whether each target was `met`, and each
    solve's `steps` and `wall_s` (in the order of `taus`: the policy's whole cost)."""

    targets: dict[str, float]
    taus: tuple[float, ...]
    reached: dict[str, float]
    met: bool
    steps: tuple[int, ...] = ()
    wall_s: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "taus": list(self.taus),
            "reached": self.reached,
            "met": self.met,
            "steps": list(self.steps),
            "wall_s": list(self.wall_s),
        }


def _relative(err: np.ndarray, scale: float, floor: float) -> float:
    """`max_t err / scale`, NaN where unknown; a budget within `floor` of rounding is 0."""
    worst = float(np.nanmax(err)) if np.isfinite(err).any() else math.nan
    if not math.isfinite(worst):
        return math.nan
    if worst <= floor:
        return 0.0
    return worst / scale if scale > 0 else math.inf


def _reached(
    problem: Problem, flow: GradientPath, budget: ErrorBudget, floor: float
) -> dict[str, float]:
    """The budget relative to each target's scale; where it is within rounding (`floor`
    of the distance or of `‖r0‖ + ‖y‖`, at least `ROUNDING_ULPS` ulps), 0: a tighter
    solve could not show more."""
    sups = flow.path.sups or (math.nan,) * 3
    eps = float(np.finfo(np.dtype(problem.dtype)).eps)
    floor = max(ROUNDING_FACTOR * floor, ROUNDING_ULPS * eps)
    dist = max(sups[2], 1e-300)
    R0 = float(flow.loss[0])
    floor_w = floor * dist
    floor_r = floor * float(np.linalg.norm(flow.residuals[0]) + np.linalg.norm(problem.y))
    return {
        "gap_w": _relative(budget.err_w, sups[0], floor_w),
        "gap_f": _relative(budget.err_res_w, sups[1], floor_r),
        "dist": _relative(budget.err_w, dist, floor_w),
        "loss": _relative(budget.err_loss_w, R0, floor * R0),
    }


def _met(reached: dict[str, float], targets: dict[str, float]) -> bool:
    want = {"gap_w": targets["gap"], "gap_f": targets["gap"], "dist": targets["dist"]}
    want["loss"] = targets["loss"]
    return all(reached[k] <= v for k, v in want.items())  # (NaN: not met)


def solve_to_accuracy(
    problem: Problem,
    settings: SolveSettings,
    *,
    resolution: float,
) -> tuple[GradientPath, ErrorBudget]:
    """The gradient flow by `ExponentialAdams` and its error budget, tightened until the
    budget meets `settings.accuracy`'s targets (module docstring)."""
    accuracy = settings.accuracy
    assert accuracy is not None

    def solve(tau: float, scales: tuple[float, float, float]) -> GradientPath:
        acc = dataclasses.replace(accuracy, tau=tau, scales=scales)
        meter = settings.meter
        if isinstance(meter, RichProgressMeter):  # (each solve of the policy by its τ)
            meter = dataclasses.replace(meter, description=f"gradient flow (τ = {tau:g})")
        run = dataclasses.replace(settings, accuracy=acc, meter=meter)
        return solve_gradient_flow(problem, run, resolution=resolution)

    targets = {"gap": accuracy.gap, "dist": accuracy.dist, "loss": accuracy.loss}
    tau_min = _tightest_tau(accuracy)
    tau = max(accuracy.tau * START_TAU / LOOSEN, tau_min)
    loose = solve(tau * LOOSEN, accuracy.scales)
    taus = [tau * LOOSEN]
    costs = [_cost(loose)]
    while True:
        sups = loose.path.sups or (math.inf, math.inf, accuracy.scales[2])
        flow = solve(tau, (sups[0], sups[1], max(sups[2], accuracy.scales[2])))
        taus.append(tau)
        costs.append(_cost(flow))
        # (the loose solve's residuals are known: no forward passes again)
        budget = budget_between(problem, flow, loose.path.deltas, loose.residuals, _stats(loose))
        reached = _reached(problem, flow, budget, accuracy.floor)
        met = _met(reached, targets)
        done = met or not flow.path.reached_all or len(taus) > MAX_TIGHTENINGS + 1
        done = done or tau / LOOSEN < tau_min * (1 - 1e-9)
        if done:
            break
        loose, tau = flow, tau / LOOSEN
    steps, walls = zip(*costs, strict=True)
    report = AccuracyReport(targets, tuple(taus), reached, met, steps, walls)
    stats = dataclasses.replace(budget.stats, accuracy=report.as_dict())
    # The reported budget: the difference, never below one step's local target (what
    # the policy `reached` is the difference's: what the two solves showed).
    budget = at_least_local_targets(problem, flow, budget)
    return flow, dataclasses.replace(budget, stats=stats)


def _tightest_tau(accuracy: Accuracy) -> float:
    """The smallest `τ` whose tightest tolerance is still above the dtype's resolution
    (`Accuracy.floor`): below it the step control holds every error to the floor, so a
    solve at `τ` and one at `10τ` would be the same solve and their difference, the
    budget, would show nothing (in float32 the distance's target is the floor itself)."""
    tightest = min(accuracy.gap, accuracy.dist, accuracy.loss)
    return accuracy.floor / tightest if tightest > 0 else 0.0


def _cost(flow: GradientPath) -> tuple[int, float]:
    return int(flow.stats.num_steps or 0), float(flow.stats.wall_s or 0.0)


def _stats(loose: GradientPath) -> SolveStats:
    ok = bool(loose.path.result == diffrax.RESULTS.successful)
    method = "accuracy policy (the solve 10× looser than the reported one)"
    return dataclasses.replace(
        loose.stats, method=method, failed=None if ok else str(loose.path.result)
    )
