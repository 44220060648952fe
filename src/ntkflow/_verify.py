"""Every conclusion of the theorem, and every lemma of its proof, checked along the flows
(docs/theory.md, "The theorem" and "The proof's quantities").

Each check compares a tracked quantity with its bound at every save time and, for the
gradient flow's loss and distance, at every accepted solver step. Its *margin* is the worst
relative slack, `(bound − value)/bound` for an upper bound (`(value − bound)/bound` for a
lower bound), at the time `t` it occurs.

**The error budget.** A numerical trajectory is not the true one, so every value carries an
error budget `e(t)`, and a check is decided three ways:

- `holds = True` when `value + e ≤ bound` at every time (it would hold for any trajectory
  within the budget of the computed one);
- `holds = False` when `value − e > bound` at some time (a violation no integration error
  of that size explains);
- `holds = None` (*inconclusive*) otherwise: the value is within its error budget of the
  bound, so integration error could decide it either way.

The gradient flow's budget is measured: the flow is solved again at 10× looser `rtol` and
`atol` and `e(t)` is the difference of the two solutions' quantities (the looser solve's
error is about 10× the tighter one's, so this over-estimates the error of the reported
solve). Between save times, the largest budget over the saves is used. `σ(J_{w(t)})`
carries `β·‖w_tight − w_loose‖` (Weyl's inequality) plus the eigensolver's rounding
`n·ε·λ_max/σ`. The tangent flow's closed form carries rounding budgets only
(`16·n·ε`, times `cond(K0)` for the distances).
"""

import dataclasses
import math
from typing import Any

import numpy as np

from ._certificate import Certificate
from ._json import jsonable
from ._solution import FlowSolution

_EPS = float(np.finfo(np.float64).eps)


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

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Verification:
    """All checks of one run.

    **Fields:** `checks` (a list of `Check`), `exit_time` (the first time
    `‖w(t) − w0‖ > B`, or `None` if never within the horizon), `horizon` (`t1`),
    `hypotheses_hold` (the certificate's).
    """

    checks: list[Check]
    exit_time: float | None
    horizon: float
    hypotheses_hold: bool

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; have {[c.name for c in self.checks]}")

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.holds is False]

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.holds is None]

    @property
    def all_hold(self) -> bool:
        return all(c.holds is True for c in self.checks)

    def summary(self) -> str:
        """One sentence: what held, what failed and when."""
        if self.all_hold:
            return f"All {len(self.checks)} checks hold."
        parts = [
            f"{c.name} fails from t={c.first_violation:.4g} (worst margin {c.margin:.3g} at "
            f"t={c.t:.4g})"
            for c in self.failed
        ]
        parts += [f"{c.name} is inconclusive at t={c.t:.4g}" for c in self.inconclusive]
        return "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "checks": [c.to_dict() for c in self.checks],
                "exit_time": self.exit_time,
                "horizon": self.horizon,
                "hypotheses_hold": self.hypotheses_hold,
                "all_hold": self.all_hold,
            }
        )


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
    rounding: float = 0.0,
) -> Check:
    """Decide one inequality `value ≤ bound` (or `≥` when `upper=False`) along `t`.

    `error` is the trajectory's error budget at each time; `rounding` an absolute
    allowance for evaluating an identity in floating point (the loss at `t = 0` *is* `R0`,
    the envelope's value there), which counts in favour of the inequality: a check holds
    when `slack − error ≥ −tol` everywhere and fails when `slack + error < −tol` somewhere,
    with `tol = 64ε(|value| + |bound|) + rounding`.
    """
    t, value, bound, error = (np.asarray(x, dtype=np.float64) for x in (t, value, bound, error))
    ok = np.isfinite(value)
    if not ok.any():
        nan = math.nan
        note = description + " (no finite values)"
        return Check(name, None, guaranteed, nan, nan, nan, nan, nan, flow, note)
    t, value, bound, error = t[ok], value[ok], bound[ok], error[ok]
    slack = (bound - value) if upper else (value - bound)
    tol = 64 * _EPS * (np.abs(value) + np.where(np.isfinite(bound), np.abs(bound), 0)) + rounding
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.abs(bound) > 0, np.abs(bound), 1.0)
        margin = np.where(np.isinf(bound), np.inf, slack / scale)
    i = int(np.argmin(margin))
    first = None
    if np.all(slack - error >= -tol):
        holds: bool | None = True
    elif np.any(slack + error < -tol):
        holds = False
        violated = slack + error < -tol
        i = int(np.argmin(np.where(violated, margin, np.inf)))
        first = float(np.min(t[violated]))
    else:
        holds = None
        i = int(np.argmin(np.where(slack - error < -tol, margin, np.inf)))
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
    )


def verify(solution: FlowSolution, certificate: Certificate) -> Verification:
    """Check every conclusion of the theorem and lemma of its proof along the flows.

    Checks (each where its flow was computed):

    - `loss_envelope_w`, `loss_envelope_u`: `R(t) ≤ R0·exp(−tα²σ_min²/2)` (conclusion 1);
    - `loss_envelope_u_sharp`: the tangent flow's `R(t) ≤ R0·exp(−2tα²σ_min²)`;
    - `distance_w`, `distance_u`: `‖·(t) − w0‖ ≤ B'` (conclusion 2);
    - `distance_u_sharp`: `‖u(t) − w0‖ ≤ sqrt(2σ_max²R0)/(ασ_min²)`;
    - `ball_sigma_min`, `ball_sigma_max`: `σ_min(J_t) ≥ σ_min/2` and
      `σ_max(J_t) ≤ 3σ_max/2` while `‖w(t) − w0‖ ≤ B` (the ball lemma);
    - `exit_time`: `‖w(t) − w0‖ ≤ B` throughout, i.e. `T = ∞` within the horizon;
    - `tangent_limit`: `‖u(t) − u∞‖ ≤ ‖r0‖·exp(−tα²σ_min²)/(ασ_min)`, so `u(t) → u∞`.

    `guaranteed` is true for the gradient-flow conclusions when the certificate's
    hypotheses hold, for the ball lemma when `β` is certified, and for the tangent flow
    whenever `σ_min > 0` (it is a linear least-squares flow). See the module docstring
    for how the solver's error budget decides each check.
    """
    s, c = solution, certificate
    a2s2 = c.alpha**2 * c.sigma_min**2
    n = c.n
    checks: list[Check] = []
    tangent_ok = c.sigma_min > 0
    ball_ok = c.beta_kind == "certified" and c.sigma_min > 0

    def envelope(t: np.ndarray, rate: float) -> np.ndarray:
        return c.R0 * np.exp(-rate * t)

    exit_time = None
    if s.loss_w is not None and s.dist_w is not None:
        none = np.zeros(0)
        step_t = none if s.step_ts is None else s.step_ts
        step_loss = none if s.step_loss_w is None else s.step_loss_w
        step_dist = none if s.step_dist_w is None else s.step_dist_w
        t_all = np.concatenate([s.ts, step_t])
        err_loss = s.err_loss_w if s.err_loss_w is not None else np.zeros_like(s.loss_w)
        err_w = s.err_w if s.err_w is not None else np.zeros_like(s.dist_w)
        n_steps = len(step_t)
        loss_all = np.concatenate([s.loss_w, step_loss])
        dist_all = np.concatenate([s.dist_w, step_dist])
        # Rounding floor of a loss computed from a residual of size ‖r‖: ~ n·ε·‖r‖·‖y‖.
        floor = 16 * n * _EPS * (math.sqrt(2 * c.R0) + s.y_norm) ** 2
        e_loss = np.concatenate([err_loss, np.full(n_steps, np.nanmax(err_loss))])
        e_dist = np.concatenate([err_w, np.full(n_steps, np.nanmax(err_w))])
        later = t_all > 0  # at t = 0 the envelope is R0 itself: an identity
        checks.append(
            _check(
                "loss_envelope_w",
                "gradient-flow loss R(αf(w(t))) ≤ R0·exp(−tα²σ_min²/2)",
                "gradient",
                c.hypotheses_hold,
                t_all[later],
                loss_all[later],
                envelope(t_all[later], a2s2 / 2),
                e_loss[later],
                rounding=floor,
            )
        )
        checks.append(
            _check(
                "distance_w",
                "‖w(t) − w0‖ ≤ B'",
                "gradient",
                c.hypotheses_hold,
                t_all,
                dist_all,
                np.full_like(t_all, c.B_prime),
                e_dist,
            )
        )
        order = np.argsort(t_all, kind="stable")
        outside = dist_all[order] > c.B
        if outside.any():
            exit_time = float(t_all[order][int(np.argmax(outside))])
        checks.append(
            _check(
                "exit_time",
                "‖w(t) − w0‖ ≤ B throughout (exit time T = ∞ within the horizon)",
                "gradient",
                c.hypotheses_hold,
                t_all,
                dist_all,
                np.full_like(t_all, c.B),
                e_dist,
            )
        )
        if s.sigma_min_t is not None and s.sigma_max_t is not None:
            inside = s.dist_w <= c.B
            beta_err = c.beta if math.isfinite(c.beta) else 0.0
            lam_max = max(float(np.nanmax(s.sigma_max_t)) ** 2, c.sigma_max**2)
            e_sig = beta_err * err_w + n * _EPS * lam_max / max(c.sigma_min, 1e-300)
            tt = s.ts[inside]
            checks.append(
                _check(
                    "ball_sigma_min",
                    "σ_min(J_t) ≥ σ_min/2 while ‖w(t) − w0‖ ≤ B (ball lemma)",
                    "gradient",
                    ball_ok,
                    tt,
                    s.sigma_min_t[inside],
                    np.full_like(tt, c.sigma_min / 2),
                    e_sig[inside],
                    upper=False,
                )
            )
            checks.append(
                _check(
                    "ball_sigma_max",
                    "σ_max(J_t) ≤ 3σ_max/2 while ‖w(t) − w0‖ ≤ B (ball lemma)",
                    "gradient",
                    ball_ok,
                    tt,
                    s.sigma_max_t[inside],
                    np.full_like(tt, 1.5 * c.sigma_max),
                    e_sig[inside],
                )
            )

    if s.loss_u is not None and s.dist_u is not None:
        t = s.ts
        later = t > 0
        rounding = 16 * n * _EPS
        floor = rounding * (math.sqrt(2 * c.R0) + s.y_norm) ** 2
        e_loss_u = np.zeros_like(s.loss_u)
        cond = c.condition if math.isfinite(c.condition) else 1.0 / _EPS
        e_dist_u = rounding * max(cond, 1.0) * (s.dist_u + s.dist_u_inf)
        checks += [
            _check(
                "loss_envelope_u",
                "tangent-flow loss R(αf_0(u(t))) ≤ R0·exp(−tα²σ_min²/2)",
                "tangent",
                tangent_ok,
                t[later],
                s.loss_u[later],
                envelope(t[later], a2s2 / 2),
                e_loss_u[later],
                rounding=floor,
            ),
            _check(
                "loss_envelope_u_sharp",
                "tangent-flow loss R(αf_0(u(t))) ≤ R0·exp(−2tα²σ_min²)",
                "tangent",
                tangent_ok,
                t[later],
                s.loss_u[later],
                envelope(t[later], 2 * a2s2),
                e_loss_u[later],
                rounding=floor,
            ),
            _check(
                "distance_u",
                "‖u(t) − w0‖ ≤ B'",
                "tangent",
                tangent_ok,
                t,
                s.dist_u,
                np.full_like(t, c.B_prime),
                e_dist_u,
            ),
            _check(
                "distance_u_sharp",
                "‖u(t) − w0‖ ≤ sqrt(2σ_max²R0)/(ασ_min²)",
                "tangent",
                tangent_ok,
                t,
                s.dist_u,
                np.full_like(t, c.tangent_distance_bound),
                e_dist_u,
            ),
        ]
        if s.dist_u_to_limit is not None and c.sigma_min > 0:
            r0 = math.sqrt(2 * c.R0)
            checks.append(
                _check(
                    "tangent_limit",
                    "‖u(t) − u∞‖ ≤ ‖r0‖·exp(−tα²σ_min²)/(ασ_min): u(t) → u∞, the "
                    "minimum-norm interpolant, at the kernel's slowest rate",
                    "tangent",
                    tangent_ok,
                    t,
                    s.dist_u_to_limit,
                    r0 * np.exp(-a2s2 * t) / (c.alpha * c.sigma_min),
                    rounding * max(cond, 1.0) * s.dist_u_to_limit,
                    rounding=rounding * max(cond, 1.0) * s.dist_u_inf,
                )
            )
    return Verification(
        checks=checks,
        exit_time=exit_time,
        horizon=s.t1,
        hypotheses_hold=c.hypotheses_hold,
    )
