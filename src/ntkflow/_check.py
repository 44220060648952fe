"""One checked inequality: `Check`, and `decide` (`_check`), the three-way decision of a
value against its bound with an error budget (docs/theory.md, "The three-way decision").
`_verify` and `_loss_checks` build their checks with it."""

import dataclasses
import math
from typing import Any

import numpy as np

from ._json import jsonable
from ._quantities import nanmax as nanmax
from ._repr import concise

_EPS = float(np.finfo(np.float64).eps)


@concise
@dataclasses.dataclass(frozen=True)
class Check:
    """One checked conclusion.

    **Fields:**

    - `name`: a stable identifier (`"loss_envelope_w"`, `"distance_w"`, …).
    - `holds`: `True`, `False`, or `None` when the value is within its error budget of the
      bound (inconclusive).
    - `guaranteed`: whether the theorem (or lemma) guarantees it for this problem — its
      hypotheses hold — rather than it being only observed.
    - `margin`: the worst relative slack (negative: violated) and `t`, when it occurs.
    - `value`, `bound`, `error`: at that time.
    - `flow`: `"gradient"` or `"tangent"`.
    - `description`: the inequality, in words.
    - `first_violation`: the first time the inequality is violated beyond the error
      budget (`None` unless `holds is False`).
    - `reason`: why the check is inconclusive (`None` unless `holds is None`): the flow
      stopped before `t1`, the value is within its budget of the bound, or no budget.
    - `losses`: the losses the conclusion is stated for (`LOSSES`): `"any"`,
      `"strongly_convex"` (the square included) or `"squared"` (docs/theory.md, "What is
      checked for each loss"); `verify` keeps the checks that apply to the problem's.
    """

    name: str
    holds: bool | None
    guaranteed: bool
    margin: float
    t: float
    value: float
    bound: float
    error: float
    flow: str
    description: str
    first_violation: float | None = None
    reason: str | None = None
    losses: str = "any"

    def applies_to(self, squared: bool, strongly_convex: bool) -> bool:
        """Whether the conclusion is stated for a loss of this kind."""
        return LOSSES[self.losses](squared, strongly_convex)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


# Which losses a check's conclusion is stated for, by `Check.losses`.
LOSSES = {
    "any": lambda squared, strongly_convex: True,
    "strongly_convex": lambda squared, strongly_convex: squared or strongly_convex,
    "squared": lambda squared, strongly_convex: squared,
}


def _check(
    name: str,
    description: str,
    flow: str,
    guaranteed: bool,
    t: np.ndarray,
    value: np.ndarray,
    bound: np.ndarray,
    error: np.ndarray,
    *,
    upper: bool = True,
    rounding: float | np.ndarray = 0.0,
    reached: float = math.inf,
    t1: float = math.inf,
    losses: str = "any",
) -> Check:
    """Decide one inequality `value ≤ bound` (or `≥` when `upper=False`) along `t`.

    `error` is the trajectory's error budget at each time (NaN: none there); `rounding` an
    absolute allowance for evaluating the quantities in floating point, which counts in
    favour of the inequality: a check holds when `slack − error ≥ −tol` everywhere and
    fails when `slack + error < −tol` somewhere, with
    `tol = 64ε(|value| + |bound|) + rounding`. A flow that `reached` only `t < t1` makes a
    check that did not fail inconclusive: nothing past `reached` was computed.
    """
    t, value, bound, error = (np.asarray(x, dtype=np.float64) for x in (t, value, bound, error))
    rounding = np.broadcast_to(np.asarray(rounding, dtype=np.float64), t.shape)
    truncated = reached < t1 * (1 - 1e-12)
    stopped = (
        f"the {flow} flow was computed only up to t={reached:.4g} of t1={t1:.4g}: nothing "
        "past it is shown"
    )
    ok = np.isfinite(value) & (t <= reached)
    if not ok.any():
        nan = math.nan
        why = stopped if truncated else "no finite values were computed"
        return Check(
            name, None, guaranteed, nan, nan, nan, nan, nan, flow, description, None, why, losses
        )
    t, value, bound, error, rounding = (x[ok] for x in (t, value, bound, error, rounding))
    slack = (bound - value) if upper else (value - bound)
    tol = 64 * _EPS * (np.abs(value) + np.where(np.isfinite(bound), np.abs(bound), 0)) + rounding
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.where(np.abs(bound) > 0, np.abs(bound), 1.0)
        margin = np.where(np.isinf(bound), np.inf, slack / scale)
    i = int(np.argmin(margin))
    first, reason = None, None
    if np.any(slack + error < -tol):  # NaN budgets never count as a violation
        holds: bool | None = False
        violated = slack + error < -tol
        i = int(np.argmin(np.where(violated, margin, np.inf)))
        first = float(np.min(t[violated]))
    elif np.all(slack - error >= -tol):
        holds = True
    else:
        holds = None
        unsure = ~(slack - error >= -tol)
        i = int(np.argmin(np.where(unsure, margin, np.inf)))
        if np.isnan(error[i] + tol[i]):
            reason = f"no error budget at t={t[i]:.4g} (the looser re-solve did not reach it)"
        else:
            reason = (
                f"at t={t[i]:.4g} the value {value[i]:.6g} is within its error budget "
                f"{error[i] + tol[i]:.3g} of the bound {bound[i]:.6g}"
            )
    if truncated and holds is not False:
        holds, reason = None, stopped + ("" if reason is None else f"; before it, {reason}")
    return Check(
        name,
        holds,
        guaranteed,
        float(margin[i]),
        float(t[i]),
        float(value[i]),
        float(bound[i]),
        float(error[i]),
        flow,
        description,
        first,
        reason,
        losses,
    )


def _between(ts: np.ndarray, budget: np.ndarray, step_t: np.ndarray) -> np.ndarray:
    """A budget known at the save times `ts`, at the solver's step times: the largest over
    the saves up to the last save with a budget, and none (NaN) after it."""
    known = ~np.isnan(budget)
    if not known.any():
        return np.full(len(step_t), np.nan)
    last = ts[known][-1]
    return np.where(step_t <= last, nanmax(budget), np.nan)


def _loss_rounding(loss: np.ndarray, round_res: np.ndarray | None) -> np.ndarray:
    """The loss's rounding allowance from the residual's, `e_r`: `|½‖r + e‖² − ½‖r‖²| ≤
    ‖r‖·e_r + e_r²/2` with `‖r‖ = sqrt(2R)`."""
    if round_res is None:
        return np.zeros_like(loss)
    e = np.asarray(round_res, dtype=np.float64)
    return np.sqrt(2 * np.maximum(loss, 0.0)) * e + 0.5 * e * e
