"""The checks that apply to a loss other than the square (docs/theory.md, "Losses other
than the square", "What is checked for each loss")."""

import dataclasses
import math

import numpy as np

from ._certificate import Certificate
from ._check import _EPS, Check, _check
from ._solution import FlowSolution

# The checks that need neither the loss's decay nor the path-length bound: they apply to
# every loss (the ball lemma needs only β; the exit time is the ball's radius).
LOSS_FREE_CHECKS = ("exit_time", "ball_sigma_min", "ball_sigma_max")


def for_loss(checks: list[Check], s: FlowSolution, c: Certificate) -> list[Check]:
    """The checks stated for the certificate's loss (`Check.losses`), and for a strongly
    convex loss other than the square the envelopes of its gradient (see `verify`)."""
    if c.loss_refuted:  # (the user's μ, L carry no guarantee: the Hessian refuted them)
        checks = [dataclasses.replace(k, guaranteed=False) for k in checks]
    kept = [k for k in checks if k.applies_to(c.squared, c.strongly_convex)]
    if c.squared or not c.strongly_convex:
        return kept
    return kept + _gradient_envelopes(s, c)


def _gradient_envelopes(s: FlowSolution, c: Certificate) -> list[Check]:
    """`‖∇R(z(t))‖ ≤ sqrt(2L·ΔR0)·exp(−tμα²σ_min²/4)` along both flows (docs/theory.md,
    "Losses other than the square"): the strongly convex theorem's loss decay, read through
    `‖∇R‖² ≤ 2L(R − inf R)` (which needs no `inf R`). The gradient flow's budget is `L`
    times its residual's (integration and rounding): `∇R` is `L`-Lipschitz in `z`."""
    rate = c.mu * (c.alpha * c.sigma_min) ** 2 / 4
    top = math.sqrt(2 * c.L * c.delta_R0)
    checks: list[Check] = []
    t = s.ts
    bound = top * np.exp(-rate * t)
    if s.grad_w is not None:
        zero = np.zeros_like(s.grad_w)
        err = (s.err_res_w if s.err_res_w is not None else zero) + (
            s.round_res_w if s.round_res_w is not None else zero
        )
        checks.append(
            _check(
                "grad_envelope_w",
                "gradient flow ‖∇R(αf(w(t)))‖ ≤ sqrt(2L·ΔR0)·exp(−tμα²σ_min²/4)",
                "gradient",
                c.hypotheses_hold,
                t,
                s.grad_w,
                bound,
                c.L * err,
                reached=s.time_reached("gradient"),
                t1=s.t1,
                losses="strongly_convex",
            )
        )
    if s.grad_u is not None:
        checks.append(
            _check(
                "grad_envelope_u",
                "tangent flow ‖∇R(αf_0(u(t)))‖ ≤ sqrt(2L·ΔR0)·exp(−tμα²σ_min²/4)",
                "tangent",
                c.sigma_min > 0 and not c.loss_refuted,
                t,
                s.grad_u,
                bound,
                np.zeros_like(s.grad_u),
                rounding=16 * c.n * _EPS * top,
                reached=s.time_reached("tangent"),
                t1=s.t1,
                losses="strongly_convex",
            )
        )
    return checks
