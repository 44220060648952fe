"""Which `β` the certificate uses (docs/theory.md, "Smoothness", "A user's β"): the
user's (`user_beta`, refuted by an estimate above it on the theorem's ball), else a
certified bound, else the largest estimate, labelled (`choose_beta`)."""

import dataclasses
import math
from typing import Any

import numpy as np
from jaxtyping import PRNGKeyArray

from ._lipschitz import BetaEstimate, beta_estimates, certified_beta
from ._problem import Problem


def user_beta(problem: Problem, beta: Any) -> BetaEstimate | None:
    """`certify`'s `beta` argument checked: `None`, or a finite number `> 0` for a smooth
    model, as a `BetaEstimate` of kind `"user"`."""
    if beta is None:
        return None
    value = None
    if not isinstance(beta, (bool, np.bool_, str, bytes)) and np.ndim(beta) == 0:
        try:  # a Python or NumPy number, or a 0-d array
            value = float(beta)
        except (TypeError, ValueError, OverflowError):
            value = None
    if value is None or not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"beta must be a finite number > 0 (a Lipschitz constant of the Jacobian on the "
            f"theorem's ball around w0), got beta={beta!r}; leave it out to let ntkflow "
            "certify or estimate β"
        )
    if problem.model.smooth is False:
        raise ValueError(
            f"beta={value:g} was given, but {problem.model.not_smooth_reason()}: no finite "
            "β exists; leave beta out"
        )
    return BetaEstimate(
        value,
        "user",
        "given by the user",
        note="the user's value: the proof rests on it, ntkflow did not prove it",
    )


def _refutations(user: BetaEstimate, estimates: list[BetaEstimate], sigma_min: float) -> list[str]:
    """Why the user's `β` is wrong, if it is: an estimate is a lower bound on the Jacobian's
    Lipschitz constant over its ball (`_lipschitz`: radius 0 for the curvature at `w0`,
    which bounds the constant of every ball around `w0`); one above `β` whose ball lies
    inside the theorem's, `B = σ_min/(2β)`, shows that `J` is not `β`-Lipschitz there."""
    B = sigma_min / (2.0 * user.value)
    return [
        f"the given β={user.value:.6g} is below the {e.method} estimate {e.value:.6g}, a lower "
        "bound on the Jacobian's Lipschitz constant "
        + ("at w0" if e.radius == 0 else f"within distance {e.radius:.3g} ≤ B = {B:.3g} of w0")
        + ": J is not β-Lipschitz on the theorem's ball"
        for e in estimates
        if e.kind == "estimate" and e.value > user.value and e.radius <= B
    ]


def choose_beta(
    problem: Problem,
    sigma_min: float,
    user_beta: BetaEstimate | None,
    reasons: list[str],
    notes: list[str],
    *,
    estimate: bool,
    key: int | PRNGKeyArray,
    samples: int,
    iters: int,
) -> tuple[BetaEstimate, list[BetaEstimate], bool]:
    """The `β` the certificate uses — the user's, else a certified bound, else the largest
    estimate (labelled) —, every `β` computed, and whether an estimate refutes the user's
    `β`; appends to `reasons` and `notes`."""
    estimates: list[BetaEstimate] = []
    refutations: list[str] = []
    if problem.model.smooth is False:
        chosen = BetaEstimate(
            math.inf, "infinite", "smoothness", note=problem.model.not_smooth_reason()
        )
        estimates.append(chosen)
        reasons.append(problem.model.not_smooth_reason())
    else:
        cert = certified_beta(problem, sigma_min)
        if cert is not None:
            estimates.append(cert)
        if (cert is None or estimate) and sigma_min > 0:
            estimates.extend(
                beta_estimates(problem, sigma_min, key=key, samples=samples, iters=iters)
            )
        if user_beta is not None:
            chosen = user_beta
            estimates.insert(0, user_beta)
            refutations = _refutations(user_beta, estimates, sigma_min)
            reasons.extend(refutations)
            if cert is not None and cert.kind == "certified":
                notes.append(
                    f"ntkflow certifies β = {cert.value:.6g} for this model ({cert.method}); "
                    f"the user's β = {user_beta.value:.6g} is used instead, as asked"
                )
            if not any(e.kind == "estimate" for e in estimates):
                notes.append(
                    "no estimate of β was computed (estimate_beta=False or σ_min = 0): "
                    "nothing tested the user's β"
                )
        elif cert is not None:
            chosen = cert
        elif estimates:
            best = max(estimates, key=lambda b: b.value)
            chosen = dataclasses.replace(best, method=f"max of estimates ({best.method})")
            reasons.append(
                f"β is an estimate: not a proof (β={chosen.value:.4g} by "
                f"{', '.join(b.method for b in estimates)}, each a lower bound on the true "
                "Lipschitz constant); no certified bound is known for this model"
            )
            if problem.model.smooth is None:
                notes.append(problem.model.smoothness_note())
        else:
            chosen = BetaEstimate(math.nan, "estimate", "none", note="σ_min = 0: not estimated")
            reasons.append("β was not estimated (σ_min = 0, so the theorem cannot apply)")
    return chosen, estimates, bool(refutations)
