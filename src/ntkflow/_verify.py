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
  bound, so integration error could decide it either way, or there is no budget there.

**Only what was computed is decided** (docs/theory.md, "Truncated and diverged solves"). A
check over `[0, t1]` whose flow stopped at `t_stop < t1` (the step limit, non-finite
values) is inconclusive unless it was already violated before `t_stop`; and
`Verification.all_hold` is false whenever any flow stopped early or gradient descent
diverged, whatever the checks say.

The gradient flow's budget is measured: the flow is solved again at 10× looser `rtol` and
`atol` and `e(t)` is the difference of the two solutions' quantities (the looser solve's
error is about 10× the tighter one's, so this over-estimates the error of the reported
solve). Between save times, the largest budget over the saves is used. `σ(J_{w(t)})`
carries `β·‖w_tight − w_loose‖` (Weyl's inequality) plus the eigensolver's rounding
`n·ε·λ_max/σ`. The tangent flow's closed form carries rounding budgets only
(`16·n·ε`, times `cond(K0)` for the distances). Every loss also carries the estimated
rounding error of evaluating `α f(w) − y` in floating point (`FlowSolution.round_res_w`,
docs/theory.md, "Rounding"): at large `α` it dominates.
"""

import dataclasses
import math
from typing import Any

import numpy as np

from ._certificate import Certificate
from ._check import (
    _EPS,
    Check as Check,
    _between,
    _check,
    _loss_rounding,
    nanmax as nanmax,
)
from ._diagnostics_iterative import RESIDUAL as RITZ_RESIDUAL
from ._json import jsonable
from ._loss_checks import LOSS_FREE_CHECKS as LOSS_FREE_CHECKS, for_loss
from ._repr import check_lines, concise, count_checks, shown
from ._solution import FlowSolution
from ._stats import FlowStatus


@concise
@dataclasses.dataclass(frozen=True)
class Verification:
    """All checks of one run.

    **Fields:** `checks` (a list of `Check`), `exit_time` (the first time
    `‖w(t) − w0‖ > B`, or `None` if not within the time reached), `horizon` (`t1`),
    `hypotheses_hold` (the certificate's), `status` (how the solve ended: a
    `FlowStatus`; its JSON form is the member's name in lower case, `"success"`,
    `"max_steps"`, …), `message` (the solve's
    own words, with the fix), `reached` (each flow's time reached).

    `complete` is whether every flow reached `t1` (and gradient descent, if run, did not
    diverge); `all_hold` needs it.
    """

    checks: list[Check]
    exit_time: float | None
    horizon: float
    hypotheses_hold: bool
    status: FlowStatus = FlowStatus.SUCCESS
    message: str = ""
    reached: dict[str, float] = dataclasses.field(default_factory=dict)

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
    def complete(self) -> bool:
        return self.status is FlowStatus.SUCCESS

    @property
    def t_reached(self) -> float:
        """The time up to which the checked flows were computed (`horizon` when
        complete)."""
        checked = [v for k, v in self.reached.items() if k in ("gradient", "tangent")]
        return min(checked, default=self.horizon)

    @property
    def all_hold(self) -> bool:
        return self.complete and all(c.holds is True for c in self.checks)

    def summary(self) -> str:
        """A few sentences: first how the solve ended if it stopped short, then what held,
        what failed and when, and what is inconclusive and why."""
        if self.all_hold:
            return f"All {len(self.checks)} checks hold."
        head, how = "", self.status.name.lower()
        if not self.complete:
            if self.t_reached < self.horizon:
                head = (
                    f"Incomplete ({how}): the flows reached t={self.t_reached:.4g} of "
                    f"t1={self.horizon:.4g}, so no check holds past it. "
                )
            else:
                head = f"Incomplete ({how}): not every check can hold. "
        parts = [
            f"{c.name} fails from t={c.first_violation:.4g} (worst margin {c.margin:.3g} at "
            f"t={c.t:.4g})"
            for c in self.failed
        ]
        unsure = self.inconclusive
        if unsure and not self.complete:
            parts.append(f"inconclusive: {', '.join(c.name for c in unsure)}")
        else:
            parts += [f"{c.name} is inconclusive: {c.reason}" for c in unsure]
        held = sum(c.holds is True for c in self.checks)
        if not parts:
            return head + f"All {held} checks held up to t={self.t_reached:.4g}."
        return head + "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "checks": [c.to_dict() for c in self.checks],
                "exit_time": self.exit_time,
                "horizon": self.horizon,
                "hypotheses_hold": self.hypotheses_hold,
                "complete": self.complete,
                "status": self.status.name.lower(),
                "message": self.message,
                "t_reached": self.t_reached,
                "reached": self.reached,
                "all_hold": self.all_hold,
            }
        )

    def _overview(self) -> list[tuple[str, Any]]:
        def verdict(c: Check) -> str:
            word = {True: "held", False: "failed", None: "inconclusive"}[c.holds]
            return f"{word} (margin {c.margin:.3g})" if c.holds is not None else word

        return [
            ("all_hold", self.all_hold),
            ("status", self.status),
            ("hypotheses_hold", self.hypotheses_hold),
            ("horizon", self.horizon),
            ("exit_time", self.exit_time),
            ("checks", shown(count_checks(self.checks) + check_lines(self.checks, verdict))),
        ]


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

    For a loss other than the square (docs/theory.md, "Losses other than the square"):
    a `μ`-strongly convex one keeps every check but the loss envelopes (they need
    `inf R`), with its constants in `B'` and the tangent bound, and adds
    `grad_envelope_w`, `grad_envelope_u`: `‖∇R(z(t))‖ ≤ sqrt(2L·ΔR0)·exp(−tμα²σ_min²/4)`;
    one that is not strongly convex keeps only `LOSS_FREE_CHECKS` (the exit time and the
    ball lemma, which need no loss decay).

    `guaranteed` is true for the gradient-flow conclusions when the certificate's
    hypotheses hold, for the ball lemma when `β` is certified, and for the tangent flow
    whenever `σ_min > 0` (for the squared loss it is a linear least-squares flow; for a
    strongly convex loss the guarantee also rests on `μ` and `L`, and is withdrawn when the
    Hessian at `z0` refutes a user's values). See the module docstring
    for how the solver's error budget decides each check.
    """
    checks, exit_time = _gradient_flow_checks(solution, certificate)
    checks += _ball_lemma_checks(solution, certificate)
    checks += _tangent_flow_checks(solution, certificate)
    checks = for_loss(checks, solution, certificate)
    s = solution
    return Verification(
        checks=checks,
        exit_time=exit_time,
        horizon=s.t1,
        hypotheses_hold=certificate.hypotheses_hold,
        status=s.status,
        message=s.message,
        reached=dict(s.reached),
    )


def _gradient_flow_checks(s: FlowSolution, c: Certificate) -> tuple[list[Check], float | None]:
    """Conclusions 1 and 2 along the gradient flow (`loss_envelope_w`, `distance_w`) and
    `exit_time`, at the save times and every solver step; and the exit time `T` (`None`:
    the path did not leave the ball of radius `B` in the time computed)."""
    if s.loss_w is None or s.dist_w is None:
        return [], None
    n, t1, reach_w = c.n, s.t1, s.time_reached("gradient")
    a2s2 = (c.alpha * c.sigma_min) ** 2
    checks: list[Check] = []
    exit_time = None
    none = np.zeros(0)
    step_t = none if s.step_ts is None else s.step_ts
    step_loss = none if s.step_loss_w is None else s.step_loss_w
    step_dist = none if s.step_dist_w is None else s.step_dist_w
    t_all = np.concatenate([s.ts, step_t])
    err_loss = s.err_loss_w if s.err_loss_w is not None else np.zeros_like(s.loss_w)
    err_w = s.err_w if s.err_w is not None else np.zeros_like(s.dist_w)
    loss_all = np.concatenate([s.loss_w, step_loss])
    dist_all = np.concatenate([s.dist_w, step_dist])
    # Rounding floor of a loss computed from a residual of size ‖r‖: ~ n·ε·‖r‖·‖y‖.
    floor = 16 * n * _EPS * (math.sqrt(2 * c.R0) + s.y_norm) ** 2
    # Rounding of α f(w) − y (docs/theory.md, "Rounding"): at the saves as estimated
    # there; at a step between them the largest estimate of the residual's rounding,
    # carried to that step's own loss. The integration budgets: their largest, the
    # squared loss's again carried from the residual's to the step's own loss.
    round_loss = _loss_rounding(s.loss_w, s.round_res_w)
    round_res_steps = None if s.round_res_w is None else _between(s.ts, s.round_res_w, step_t)
    round_all = np.concatenate([round_loss, _loss_rounding(step_loss, round_res_steps)])
    if s.loss == "squared" and s.err_res_w is not None:
        err_loss_steps = _loss_rounding(step_loss, _between(s.ts, s.err_res_w, step_t))
    else:
        err_loss_steps = _between(s.ts, err_loss, step_t)
    e_loss = np.concatenate([err_loss, err_loss_steps])
    e_dist = np.concatenate([err_w, _between(s.ts, err_w, step_t)])
    later = t_all > 0  # at t = 0 the envelope is R0 itself: an identity
    checks.append(
        _check(
            "loss_envelope_w",
            "gradient-flow loss R(αf(w(t))) ≤ R0·exp(−tα²σ_min²/2)",
            "gradient",
            c.hypotheses_hold,
            t_all[later],
            loss_all[later],
            c.R0 * np.exp(-a2s2 / 2 * t_all[later]),
            # Integration and rounding of α f(w) − y: both unknown in sign, so both
            # in the budget (never in the inequality's favour).
            e_loss[later] + round_all[later],
            rounding=floor,
            reached=reach_w,
            t1=t1,
            losses="squared",
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
            reached=reach_w,
            t1=t1,
            losses="strongly_convex",
        )
    )
    order = np.argsort(t_all, kind="stable")
    # NaN (not computed) is never outside, nor is anything past the time reached.
    outside = (dist_all[order] > c.B) & (t_all[order] <= reach_w)
    if outside.any():
        exit_time = float(t_all[order][int(np.argmax(outside))])
    checks.append(
        _check(
            "exit_time",
            "‖w(t) − w0‖ ≤ B for all t ≤ t1 (the path inside the proof's ball; the exit "
            "time T is the first t where this fails)",
            "gradient",
            c.hypotheses_hold,
            t_all,
            dist_all,
            np.full_like(t_all, c.B),
            e_dist,
            reached=reach_w,
            t1=t1,
        )
    )
    return checks, exit_time


def _ball_lemma_checks(s: FlowSolution, c: Certificate) -> list[Check]:
    """The ball lemma along the gradient flow: `σ_min(J_t) ≥ σ_min/2` and
    `σ_max(J_t) ≤ 3σ_max/2` at the save times where `‖w(t) − w0‖ ≤ B`."""
    if s.dist_w is None or s.sigma_min_t is None or s.sigma_max_t is None:
        return []
    n, t1, reach_w = c.n, s.t1, s.time_reached("gradient")
    # A user's β proves the lemma too — the proof then rests on it, and a failure refutes
    # it — unless an estimate already refuted it.
    ball_ok = c.beta_proves and c.sigma_min > 0
    err_w = s.err_w if s.err_w is not None else np.zeros_like(s.dist_w)
    checks: list[Check] = []
    inside = s.dist_w <= c.B
    # Weyl: |σ(J_w) − σ(J_v)| ≤ ‖J_w − J_v‖ ≤ β‖w − v‖. Without a finite β (a
    # non-smooth network) there is no such bound: any integration error leaves
    # the check undecided (an infinite budget), none leaves it to rounding.
    beta_err = c.beta if math.isfinite(c.beta) else math.inf
    lam_max = max(np.nan_to_num(nanmax(s.sigma_max_t)) ** 2, c.sigma_max**2)
    with np.errstate(invalid="ignore"):
        integration = np.where(err_w > 0, beta_err * err_w, err_w)
    # The eigensolver's error: dense `eigh`'s rounding, or LOBPCG's residual tolerance.
    eig_err = n * _EPS * lam_max
    if s.diagnostics == "lanczos":
        eig_err = max(eig_err, RITZ_RESIDUAL * c.sigma_max**2)
    e_sig = integration + eig_err / max(c.sigma_min, 1e-300)
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
            reached=reach_w,
            t1=t1,
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
            reached=reach_w,
            t1=t1,
        )
    )

    if not np.any(tt > 0):  # only w0 itself inside the ball: nothing was tested
        checks = [_only_at_w0(check) for check in checks]
    if s.diagnostics == "lanczos":
        return [_ritz_only(check) for check in checks]
    return checks


def _only_at_w0(check: Check) -> Check:
    """A ball-lemma check with no save time inside the ball after `t = 0` is
    inconclusive: at `w0` the lemma holds by definition, so holding there shows nothing
    (the path left the ball before the first save after 0; more saves would test it)."""
    if check.holds is False:
        return check
    return dataclasses.replace(
        check,
        holds=None,
        reason="no save time after t = 0 lies inside the ball (the path left it before "
        "the first save): at w0 the lemma holds by definition; raise saveat to test it",
    )


def _ritz_only(check: Check) -> Check:
    """A ball-lemma check on LOBPCG's values (`diagnostics="lanczos"`) can fail but not
    hold: a Ritz value bounds `λ_min` from above and `λ_max` from below, so it shows a
    violation (within its residual, added to the budget) but not that the true extreme
    satisfies the bound, had the solver converged to another eigenvalue."""
    if check.holds is not True:
        return check
    why = (
        "σ(J_t) are Ritz values of iterative eigensolvers (diagnostics='lanczos'): they can "
        "show a violation, not that the bound holds; use diagnostics='dense'"
    )
    return dataclasses.replace(check, holds=None, reason=why)


def _tangent_flow_checks(s: FlowSolution, c: Certificate) -> list[Check]:
    """Conclusions 1 and 2 along the tangent flow, their sharp forms for the linear flow,
    and its convergence to `u∞` (`tangent_limit`). The closed form carries rounding
    budgets only."""
    if s.loss_u is None or s.dist_u is None:
        return []
    n, t1, reach_u = c.n, s.t1, s.time_reached("tangent")
    a2s2 = (c.alpha * c.sigma_min) ** 2
    tangent_ok = c.sigma_min > 0
    checks: list[Check] = []
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
            c.R0 * np.exp(-a2s2 / 2 * t[later]),
            e_loss_u[later],
            rounding=floor,
            reached=reach_u,
            t1=t1,
            losses="squared",
        ),
        _check(
            "loss_envelope_u_sharp",
            "tangent-flow loss R(αf_0(u(t))) ≤ R0·exp(−2tα²σ_min²)",
            "tangent",
            tangent_ok,
            t[later],
            s.loss_u[later],
            c.R0 * np.exp(-2 * a2s2 * t[later]),
            e_loss_u[later],
            rounding=floor,
            reached=reach_u,
            t1=t1,
            losses="squared",
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
            reached=reach_u,
            t1=t1,
            losses="strongly_convex",
        ),
        _check(
            "distance_u_sharp",
            "‖u(t) − w0‖ ≤ sqrt(2σ_max²R0)/(ασ_min²)"
            if c.squared
            else "‖u(t) − w0‖ ≤ sqrt(2σ_max²·L·ΔR0)/(αμσ_min²)",
            "tangent",
            tangent_ok,
            t,
            s.dist_u,
            np.full_like(t, c.tangent_distance_bound),
            e_dist_u,
            reached=reach_u,
            t1=t1,
            losses="strongly_convex",
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
                reached=reach_u,
                t1=t1,
                losses="strongly_convex",
            )
        )
    return checks
