"""The lazy-training theorem's certificate (docs/theory.md, "The theorem"; Telgarsky, *Deep
learning theory*, Thm 8.1; Chizat, Oyallon & Bach, NeurIPS 2019, Thm 2.4)."""

import dataclasses
import math
from typing import Any, ClassVar

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._beta_choice import choose_beta, user_beta
from ._json import jsonable
from ._lipschitz import BetaEstimate, BetaKind
from ._losses import UserLoss
from ._problem import Problem
from ._progress import stage
from ._repr import concise, shown
from ._spectrum import Spectrum
from .ntk._initial_kernel import InitialKernel, as_initial_kernel
from .ntk._jacobian import AbstractNTKMethod
from .ntk._sharding import split_problem


@concise
@dataclasses.dataclass(frozen=True)
class Certificate:
    """What the theorem says about a problem before any training.

    Assume `σ_min > 0`, `J` is `β`-Lipschitz, and `α ≥ α* := β·sqrt(1152·σ_max²·R0)/σ_min³`.
    Then for all `t ≥ 0` both flows' losses are `≤ R0·exp(−tα²σ_min²/2)` and both stay
    within `B' := 3·sqrt(8σ_max²R0)/(ασ_min²)` of `w0`; the proof's ball has radius
    `B := σ_min/(2β)`, and `α ≥ α*` is exactly `B' ≤ B/2`. This is the squared loss; for a
    `μ`-strongly convex, `L`-smooth loss `R0` becomes `ΔR0 = ‖∇R(z0)‖²/(2μ)` and `α*`, `B'`
    gain the factor `sqrt(L)/μ`, and for a loss that is not strongly convex the theorem
    does not apply (docs/theory.md, "Losses other than the square").

    **Fields** (`to_dict()` has exactly these keys):

    - `n`, `p`: outputs and parameters.
    - `alpha`: the scale `α`.
    - `R0`: the initial loss `R(α f(w0))` (`½‖α f(w0) − y‖²` for the squared loss).
    - `sigma_min`, `sigma_max`: `σ_n(J_0)`, `σ_1(J_0)` (`sigma_min` is 0 when `J_0` is
      numerically rank-deficient).
    - `beta`, `beta_kind`: the Jacobian's Lipschitz constant and whether it is
      `"certified"`, the `"user"`'s (`certify(problem, beta=…)`: the proof rests on it),
      an `"estimate"` (a lower bound on the truth: not a proof) or `"infinite"` (a
      non-smooth network).
    - `alpha_star`, `B`, `B_prime`: the theorem's `α*`, `B`, `B'`.
    - `tangent_distance_bound`: the tangent flow's own bound `sqrt(2σ_max²R0)/(ασ_min²)`.
    - `hypotheses_hold`: whether the theorem applies (a proof, so `β` must be certified,
      or given by the user, and then the proof is conditional on that value).
    - `reasons`: every failed hypothesis, in words.

    **Other fields:** `notes` (remarks that are not failures), `alpha_condition`
    (`α ≥ α*` with the `β` used, certified or not), `f0_norm` (`‖f(w0)‖`), `centering`,
    `condition` (`cond(K0)`), `spectrum`, `kernel` (the `InitialKernel`: `K0`, factored
    once; pass it on to `solve_flows`), `beta_estimates` (every `β` computed),
    `beta_refuted` (an estimate shows that the user's `β` is not a Lipschitz constant),
    `loss` (its name), `mu`, `L` (its strong-convexity and smoothness constants in `z`:
    `1, 1` for the squared loss; `mu = 0` whenever the strongly convex case does not
    apply — `μ = 0`, or `μ` or `L` not given — and then `α*`, `B'` and the tangent bound
    are infinite), `grad0` (`‖∇R(z0)‖`, `‖r0‖` for the squared
    loss) and `delta_R0` (`ΔR0 = ‖∇R(z0)‖²/(2μ) ≥ R(z0) − inf R`, in place of `R0` in the
    constants; `R0` itself for the squared loss), `loss_refuted` (a user's `μ`, `L` are
    contradicted by the Hessian's spectrum at `z0`: the hypotheses do not hold).
    """

    n: int
    p: int
    alpha: float
    R0: float
    sigma_min: float
    sigma_max: float
    beta: float
    beta_kind: BetaKind
    alpha_star: float
    B: float
    B_prime: float
    tangent_distance_bound: float
    hypotheses_hold: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()
    alpha_condition: bool = False
    f0_norm: float = 0.0
    centering: str = "none"
    condition: float = math.inf
    spectrum: Spectrum | None = dataclasses.field(default=None, repr=False, compare=False)
    kernel: InitialKernel | None = dataclasses.field(default=None, repr=False, compare=False)
    beta_estimates: tuple[BetaEstimate, ...] = ()
    beta_refuted: bool = False
    loss: str = "squared"
    mu: float = 1.0
    L: float = 1.0
    grad0: float = math.nan
    delta_R0: float = math.nan
    loss_refuted: bool = False

    @property
    def squared(self) -> bool:
        """Whether the loss is the lecture's squared loss."""
        return self.loss == "squared"

    @property
    def strongly_convex(self) -> bool:
        """Whether the loss is `μ`-strongly convex with `μ > 0` (the theorem's constants
        and conclusions apply, with `ΔR0`)."""
        return self.mu > 0

    @property
    def beta_proves(self) -> bool:
        """Whether `β` carries the proof: certified, or the user's and not refuted."""
        return _proves(self.beta_kind, self.beta_refuted)

    KEYS: ClassVar[tuple[str, ...]] = (
        "n",
        "p",
        "alpha",
        "R0",
        "sigma_min",
        "sigma_max",
        "beta",
        "beta_kind",
        "alpha_star",
        "B",
        "B_prime",
        "tangent_distance_bound",
        "hypotheses_hold",
        "reasons",
    )

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """JSON-ready: exactly the keys in `Certificate.KEYS` (non-finite floats as the
        strings `"inf"`/`"nan"`). `details=True` adds `notes`, `alpha_condition`,
        `f0_norm`, `centering`, `condition`, `beta_estimates`, `beta_refuted`, `loss`,
        `mu`, `L`, `grad0` and `delta_R0`."""
        out = {k: getattr(self, k) for k in self.KEYS}
        if details:
            out.update(
                notes=self.notes,
                alpha_condition=self.alpha_condition,
                f0_norm=self.f0_norm,
                centering=self.centering,
                condition=self.condition,
                beta_estimates=[b.to_dict() for b in self.beta_estimates],
                beta_refuted=self.beta_refuted,
                loss=self.loss,
                mu=self.mu,
                L=self.L,
                grad0=self.grad0,
                delta_R0=self.delta_R0,
                loss_refuted=self.loss_refuted,
            )
        return jsonable(out)

    def _overview(self) -> list[tuple[str, Any]]:
        reasons = "".join(f"\n    {r[:160]}" for r in self.reasons[:6])
        return [
            ("hypotheses_hold", self.hypotheses_hold),
            ("alpha", self.alpha),
            ("alpha_star", self.alpha_star),
            ("beta", shown(f"{self.beta:.4g} ({self.beta_kind})")),
            ("n, p", shown(f"{self.n}, {self.p}")),
            ("sigma_min, sigma_max", shown(f"{self.sigma_min:.4g}, {self.sigma_max:.4g}")),
            ("condition", self.condition),
            ("R0", self.R0),
            ("B, B_prime", shown(f"{self.B:.4g}, {self.B_prime:.4g}")),
            ("reasons", shown(f"{len(self.reasons)}{reasons}")),
            ("notes", len(self.notes)),
        ]


def _div(a: float, b: float) -> float:
    """`a / b` with the conventions the bounds need: `x/0 = inf` for `x > 0`, `0/0 = 0`."""
    if b == 0:
        return math.inf if a > 0 else 0.0
    if math.isinf(b):
        return 0.0 if math.isfinite(a) else math.inf
    return a / b


def theorem_constants(
    alpha: float,
    R0: float,
    sigma_min: float,
    sigma_max: float,
    beta: float,
    *,
    mu: float = 1.0,
    L: float = 1.0,
) -> dict[str, float]:
    """`α*`, `B`, `B'` and the tangent flow's distance bound, from docs/theory.md, "The
    theorem" and, for a `μ`-strongly convex, `L`-smooth loss, "Losses other than the
    square" (`R0` is then the bound `ΔR0 ≥ R(z0) − inf R`; the squared loss has
    `μ = L = 1`).

    `α* = β·sqrt(1152·σ_max²·L·R0)/(μ·σ_min³)`, `B = σ_min/(2β)`,
    `B' = 3·sqrt(8·σ_max²·L·R0)/(α·μ·σ_min²)`, tangent bound
    `sqrt(2·σ_max²·L·R0)/(α·μ·σ_min²)`. With `μ = 0` (not strongly convex) every bound
    but `B` is infinite.
    """
    s3 = mu * sigma_min**3
    root = math.sqrt(1152.0 * sigma_max**2 * L * R0)
    alpha_star = math.inf if (s3 == 0 or math.isinf(beta)) else _div(beta * root, s3)
    rate = alpha * mu * sigma_min**2
    return {
        "alpha_star": alpha_star,
        "B": _div(sigma_min, 2.0 * beta),
        "B_prime": _div(3.0 * math.sqrt(8.0 * sigma_max**2 * L * R0), rate),
        "tangent_distance_bound": _div(math.sqrt(2.0 * sigma_max**2 * L * R0), rate),
    }


# A user's loss's μ and L are tested at z0 (the Hessian's spectrum) up to this many outputs.
LOSS_TEST_MAX_N = 2048


def _loss_constants(
    problem: Problem, z0: Array, R0: float, reasons: list[str], notes: list[str]
) -> tuple[float, float, float, float, bool]:
    """`(μ, L, ‖∇R(z0)‖, ΔR0, refuted)` for the certificate at `z0 = αf(w0)`: the squared loss's
    `(1, 1, ‖r0‖, R0)`; a strongly convex loss's `μ`, `L` and `ΔR0 = ‖∇R(z0)‖²/(2μ)`
    (strong convexity bounds the gap to the infimum by it), with a note; another loss's
    `μ = 0`, with the reason the theorem does not apply (docs/theory.md, "Losses other than
    the square"). A user's `μ`, `L` are tested against the Hessian's spectrum at `z0`
    (`refuted`: a reason says where it fails)."""
    g0 = float(np.linalg.norm(np.asarray(problem.loss_gradient(z0), dtype=np.float64)))
    if problem.squared:
        return 1.0, 1.0, g0, R0, False
    loss = problem.objective
    if not loss.strongly_convex:
        reasons.append(loss.why_not_strongly_convex())
        return 0.0, math.nan if loss.L is None else float(loss.L), g0, math.inf, False
    mu, L = float(loss.mu), float(loss.L)  # pyright: ignore[reportArgumentType]
    delta_R0 = g0 * g0 / (2.0 * mu)
    user = isinstance(loss, UserLoss)
    refuted = user and _refute_loss(problem, z0, mu, L, reasons, notes)
    if not refuted:
        trust = "; μ and L are the user's values, taken on trust" if user else ""
        notes.append(
            f"the {problem.loss_name} loss is μ-strongly convex and L-smooth (μ = {mu:.6g}, "
            f"L = {L:.6g}, κ = {L / mu:.6g}): the theorem's strongly convex form, with "
            f"ΔR0 = ‖∇R(z0)‖²/(2μ) = {delta_R0:.6g} in place of R0{trust}"
        )
    return mu, L, g0, delta_R0, refuted


def _refute_loss(
    problem: Problem, z0: Any, mu: float, L: float, reasons: list[str], notes: list[str]
) -> bool:
    """Whether the Hessian's spectrum at `z0` refutes a user's `μ ≤ λ(∇²R) ≤ L` (beyond a
    rounding allowance `64ε·max|λ|`): one point cannot prove the constants, only refute
    them. Skipped above `LOSS_TEST_MAX_N` outputs (a note says so)."""
    if problem.n > LOSS_TEST_MAX_N:
        notes.append(
            f"the user's μ and L were not tested (n = {problem.n} > {LOSS_TEST_MAX_N} "
            "outputs: the Hessian at z0 was not formed)"
        )
        return False
    H = np.asarray(jax.hessian(problem.loss_at)(z0), dtype=np.float64)
    lam = np.linalg.eigvalsh(0.5 * (H + H.T))
    slack = 64 * float(np.finfo(np.float64).eps) * max(abs(lam[0]), abs(lam[-1]), 1e-300)
    bad = []
    if lam[0] < mu - slack:
        bad.append(f"its smallest eigenvalue {lam[0]:.6g} < μ = {mu:.6g}")
    if lam[-1] > L + slack:
        bad.append(f"its largest eigenvalue {lam[-1]:.6g} > L = {L:.6g}")
    if bad:
        reasons.append(
            f"the user's loss {problem.loss_name!r} is not μ-strongly convex and L-smooth "
            f"as stated: at z0 = αf(w0) its Hessian has {' and '.join(bad)}"
        )
    return bool(bad)


def _sigma_min_reasons(problem: Problem, spec: Any, reasons: list[str]) -> None:
    """Why `σ_min = 0`, when it is: more outputs than parameters, or `K0` numerically
    singular (docs/theory.md, "Numerical rank")."""
    if problem.n > problem.p:
        reasons.append(
            f"σ_min = 0 because n > p (n={problem.n}, p={problem.p}): J_0 cannot have "
            "full row rank; widen the network or use fewer points"
        )
    elif spec.rank_deficient:
        reasons.append(
            f"σ_min ≈ 0: λ_min(K0) = {spec.eigenvalues[0]:.3g} is below the numerical-rank "
            f"tolerance {spec.tolerance:.3g} (n·ε·λ_max), so the per-example gradients are "
            "linearly dependent (repeated inputs?)"
        )


def _alpha_remarks(
    alpha: float,
    beta: float,
    consts: dict[str, float],
    kind: str,
    decidable: bool,
    refuted: bool,
    reasons: list[str],
    notes: list[str],
) -> None:
    """Whether `α ≥ α*` (a reason when not, where the other hypotheses let it be
    decided), and what an estimated or a user's `β` makes of the conclusions."""
    alpha_star, B = consts["alpha_star"], consts["B"]
    if decidable and not (math.isfinite(alpha_star) and alpha >= alpha_star):
        reasons.append(
            f"α={alpha:.4g} < α*={alpha_star:.4g} (equivalently B' = "
            f"{consts['B_prime']:.3g} > B/2 = {B / 2:.3g})"
        )
    elif decidable and kind == "estimate":
        notes.append(
            f"α={alpha:.4g} ≥ α*={alpha_star:.4g} with the estimated β: the "
            "conclusions are expected, not proven"
        )
    if kind == "user" and not refuted:
        notes.append(
            f"β = {beta:.6g} is the user's value, not proved by ntkflow: every conclusion "
            f"rests on J being {beta:.6g}-Lipschitz on the ball of radius B = {B:.6g} around w0"
        )


def certify(
    problem: Problem,
    *,
    kernel: InitialKernel | Float[ArrayLike, "n n"] | None = None,
    method: str | AbstractNTKMethod = "auto",
    estimate_beta: bool = True,
    key: int | PRNGKeyArray = 0,
    beta_samples: int = 8,
    beta_iters: int = 30,
    beta: float | int | None = None,
    devices: Any = None,
    progress: bool = False,
) -> Certificate:
    """State the lazy-training theorem's certificate for a problem.

    Computes `K0` and its spectrum, `R0`, `β` (certified where docs/theory.md,
    "Smoothness", proves a bound, otherwise estimated and labelled), then `α*`, `B`, `B'`,
    and whether the hypotheses hold, with every reason they do not.

    **Arguments:**

    - `problem`: the `Problem`.
    - `kernel`: the problem's `InitialKernel` or a precomputed `K0` array (else `K0` is
      formed with `method`).
    - `method`: the NTK method (see `empirical_ntk`).
    - `estimate_beta`: also compute the curvature and ball-sampling estimates of `β`
      (always done when no certified bound exists).
    - `key`: randomness of the `β` estimates.
    - `beta_samples`, `beta_iters`: ball-sampling points and power iterations.
    - `progress`: say when each long step (the kernel and its spectrum, `β`) starts and
      ends, on stderr (a spinner on a terminal, lines otherwise).
    - `beta`: a Lipschitz constant of `J` that you know (proved yourself, or from the
      literature) for a model ntkflow cannot certify: it is used for `α*`, `B`, `B'` as
      `beta_kind="user"`, and every conclusion then rests on it — `J` must be
      `β`-Lipschitz on the ball of radius `B = σ_min/(2β)` around `w0`. ntkflow still
      computes its estimates (each a lower bound on the truth, unless
      `estimate_beta=False`): a `beta` below one of them is refuted, and the hypotheses
      do not hold.
    - `devices`: split the points over devices (docs/scale.md): `K0` as
      `empirical_ntk(..., devices=...)`, the `β` estimates when the count divides `n`.

    **Returns:** a `Certificate`.
    """
    given = user_beta(problem, beta)
    problem, mesh = split_problem(problem, devices, strict=False)
    with stage(f"certify: K0 ({problem.n}×{problem.n}) and its spectrum", progress):
        k0 = as_initial_kernel(problem, kernel, method=method, devices=mesh)
    spec = k0.spectrum
    f0 = problem.f0
    z0 = problem.alpha_array * f0
    f0_norm = float(np.linalg.norm(np.asarray(f0)))
    reasons: list[str] = []
    notes: list[str] = []

    sigma_min = k0.sigma_min_resolved
    _sigma_min_reasons(problem, spec, reasons)

    # -- β -----------------------------------------------------------------------------
    with stage("certify: β (bound and estimates)", progress):
        chosen, estimates, refuted = choose_beta(
            problem, sigma_min, given, reasons, notes, estimate=estimate_beta, key=key,
            samples=beta_samples, iters=beta_iters
        )  # fmt: skip
    return _conclude(problem, k0, z0, f0_norm, (chosen, estimates, refuted), reasons, notes)


def _conclude(
    problem: Problem,
    k0: InitialKernel,
    z0: Any,
    f0_norm: float,
    chosen_beta: tuple[BetaEstimate, list[BetaEstimate], bool],
    reasons: list[str],
    notes: list[str],
) -> Certificate:
    """The certificate from `K0`, `z0 = α f(w0)` and the chosen `β` (with its estimates
    and whether one refuted it): the loss's constants, `α*`, `B`, `B'` (docs/theory.md,
    "The theorem"), every remark, and whether the hypotheses hold."""
    spec, sigma_min = k0.spectrum, k0.sigma_min_resolved
    chosen, estimates, refuted = chosen_beta
    R0 = float(problem.loss_at(z0))
    beta = chosen.value

    mu, L, grad0, delta_R0, loss_refuted = _loss_constants(problem, z0, R0, reasons, notes)
    consts = theorem_constants(
        problem.alpha,
        delta_R0 if mu > 0 else R0,
        sigma_min,
        spec.sigma_max,
        beta,
        mu=mu,
        L=L if mu > 0 else 1.0,
    )
    alpha_star = consts["alpha_star"]
    alpha_condition = math.isfinite(alpha_star) and problem.alpha >= alpha_star
    decidable = sigma_min > 0 and chosen.kind != "infinite" and not math.isnan(beta) and mu > 0
    _alpha_remarks(problem.alpha, beta, consts, chosen.kind, decidable, refuted, reasons, notes)

    _centring_remarks(
        problem, f0_norm, beta, spec.sigma_max, sigma_min, alpha_condition, reasons, notes
    )

    hypotheses_hold = (
        sigma_min > 0
        and _proves(chosen.kind, refuted)
        and alpha_condition
        and mu > 0
        and not loss_refuted
    )
    return Certificate(
        n=problem.n,
        p=problem.p,
        alpha=problem.alpha,
        R0=R0,
        sigma_min=sigma_min,
        sigma_max=spec.sigma_max,
        beta=beta,
        beta_kind=chosen.kind,
        alpha_star=alpha_star,
        B=consts["B"],
        B_prime=consts["B_prime"],
        tangent_distance_bound=consts["tangent_distance_bound"],
        hypotheses_hold=bool(hypotheses_hold),
        reasons=tuple(reasons),
        notes=tuple(notes),
        alpha_condition=bool(alpha_condition),
        f0_norm=f0_norm,
        centering=problem.centering.name,
        condition=_div(spec.sigma_max**2, sigma_min**2),
        spectrum=spec,
        kernel=k0,
        beta_estimates=tuple(estimates),
        beta_refuted=refuted,
        loss=problem.loss_name,
        mu=mu,
        L=L,
        grad0=grad0,
        delta_R0=delta_R0,
        loss_refuted=loss_refuted,
    )


def _centring_remarks(
    problem: Problem,
    f0_norm: float,
    beta: float,
    sigma_max: float,
    sigma_min: float,
    alpha_condition: bool,
    reasons: list[str],
    notes: list[str],
) -> None:
    """Without centring, `f(w0) ≠ 0` makes `R0` (or `‖∇R(z0)‖`) and so `α*` grow with `α`
    (docs/theory.md, "Why `R0` matters"): a reason when `α < α*`, else a note."""
    if problem.centering.name == "none" and f0_norm > 0 and problem.squared:
        limit = _div(24.0 * beta * sigma_max * f0_norm, sigma_min**3)
        remark = (
            f"centering='none' and f(w0) ≠ 0 (‖f(w0)‖={f0_norm:.3g}): R0 grows like α², so "
            f"α* grows with α; as α → ∞ the condition tends to 1 ≥ 24βσ_max‖f(w0)‖/σ_min³ "
            f"= {limit:.3g}, which {'no α can satisfy' if limit > 1 else 'holds'}; use "
            "centering='antisymmetric' or 'subtract' to make f(w0) = 0"
        )
        (reasons if not alpha_condition else notes).append(remark)
    elif problem.centering.name == "none" and f0_norm > 0:
        notes.append(
            f"centering='none' and f(w0) ≠ 0 (‖f(w0)‖={f0_norm:.3g}): the initial predictions "
            "α f(w0) grow with α, and with them ‖∇R(z0)‖ and α*; use "
            "centering='antisymmetric' or 'subtract' to make f(w0) = 0"
        )


def _proves(kind: str, refuted: bool) -> bool:
    """A `β` of this kind can carry the theorem's proof: a certified bound, or the user's
    value unless an estimate refuted it."""
    return kind == "certified" or (kind == "user" and not refuted)
