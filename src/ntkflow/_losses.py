"""Losses `R(z)` of the predictions `z = α f(w)` (docs/theory.md, "Losses other than the
square").

A loss is a small strategy looked up by name (`get_loss`): its value `R(z)` on the
predictions as a `(N, k)` array (`N` points, `k` outputs each), its gradient `∇R(z)`, and
what the theory needs of it: the constants `μ` (strong convexity in `z`: `∇²R ⪰ μI`) and
`L` (smoothness: `∇²R ⪯ LI`), `None` where unknown. The lecture's theorem is the squared
loss (`μ = L = 1`); Chizat, Oyallon & Bach (2019, Thm 2.4) extend it to every `μ`-strongly
convex, `L`-smooth loss, with the condition number `κ = L/μ` in its constants.

- `Squared` (`"squared"`): `½‖z − y‖²`, `μ = L = 1`.
- `Logistic` (`"logistic"`): `Σ log(1 + exp(−y z))`, `y ∈ {−1, +1}`; `L = 1/4`, not
  strongly convex (its curvature `s(1 − s)`, `s` the sigmoid of `yz`, tends to 0).
- `CrossEntropy` (`"cross_entropy"`): `Σ_i (logsumexp(z_i) − z_{i,c_i})`, softmax over
  each point's `k ≥ 2` outputs, `c_i` the point's class (one-hot targets, in `{0, 1}` or
  `{−1, +1}`); `L = 1/2` (Böhning's bound `∇² ⪯ ½(I − 11ᵀ/k)`), not strongly convex
  (it is flat along `1` and its curvature vanishes as a softmax saturates).
- `UserLoss`: a loss of your own (value, optional gradient, `μ`, `L`).
"""

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar


class AbstractLoss(eqx.Module):
    """A loss `R(z)` of the predictions `z ∈ R^{N×k}`, convex in `z`.

    Subclasses give `value`; `gradient` defaults to `jax.grad` of it. `mu` and `L` are
    the strong-convexity and smoothness constants in `z` (`None`: unknown), `name` how
    results and reports call it.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def value(self, z: Float[Array, "N k"], y: Float[Array, "N k"]) -> Scalar:
        """`R(z)` for targets `y`."""

    def gradient(self, z: Float[Array, "N k"], y: Float[Array, "N k"]) -> Float[Array, "N k"]:
        """`∇R(z)`."""
        return jax.grad(self.value)(z, y)

    @property
    def mu(self) -> float | None:
        """The strong-convexity constant `μ` of `R` in `z` (0: convex only; `None`:
        unknown)."""
        return None

    @property
    def L(self) -> float | None:
        """The smoothness constant `L` of `R` in `z` (`None`: unknown)."""
        return None

    @property
    def strongly_convex(self) -> bool:
        """`μ > 0` and `L < ∞` are both known: the theorem's strongly convex case."""
        return self.mu is not None and self.mu > 0 and self.L is not None and math.isfinite(self.L)

    def check_targets(self, y: np.ndarray) -> None:
        """Refuse targets (`(N, k)`) this loss is not defined for, in one line.
        **Raises:** `ValueError`."""

    def check_at(self, z: Float[Array, "N k"], y: Float[Array, "N k"]) -> None:
        """Refuse, in one line, a loss that is not a finite scalar with a finite gradient
        of `z`'s shape at the initial predictions `z = α f(w0)`. **Raises:** `ValueError`."""
        label = loss_name(self)

        def fail(e: Exception) -> ValueError:
            return ValueError(
                f"the loss {label!r} cannot be evaluated at the initial predictions "
                f"z0 = αf(w0) (shape {tuple(z.shape)}): {str(e).splitlines()[0]}"
            )

        try:
            value = jnp.asarray(self.value(z, y))
        except (TypeError, ValueError) as e:
            raise fail(e) from None
        if value.shape != ():
            raise ValueError(
                f"the loss {label!r} must return a scalar R(z), got an array of shape "
                f"{tuple(value.shape)}; sum over points and outputs"
            )
        try:
            grad = jnp.asarray(self.gradient(z, y))
        except (TypeError, ValueError) as e:
            raise fail(e) from None
        if not bool(jnp.isfinite(value)) or not bool(jnp.all(jnp.isfinite(grad))):
            raise ValueError(
                f"the loss {label!r} or its gradient is not finite at the initial "
                f"predictions z0 = αf(w0) (R(z0) = {float(value)}); a loss must be smooth "
                "and finite for every z (use centering='antisymmetric' for z0 = 0)"
            )

    def why_not_strongly_convex(self) -> str:
        """Why the strongly convex theorem does not apply, in words."""
        return (
            f"the {self.name} loss has no known strong-convexity constant μ > 0 and "
            "smoothness constant L: the theorem's loss decay and path-length bound need both"
        )


class Squared(AbstractLoss):
    """`R(z) = ½‖z − y‖²`: the lecture's loss (`μ = L = 1`, `∇R(z) = z − y`)."""

    name: ClassVar[str] = "squared"

    def value(self, z, y):
        r = z - y
        return 0.5 * jnp.vdot(r, r)

    def gradient(self, z, y):
        return z - y

    @property
    def mu(self) -> float:
        return 1.0

    @property
    def L(self) -> float:
        return 1.0


def _check_signs(name: str, y: np.ndarray) -> None:
    bad = ~np.isin(y, (-1.0, 1.0))
    if bad.any():
        v = float(y[bad].ravel()[0])
        raise ValueError(
            f"loss={name!r} needs targets in {{−1, +1}}, got a target y={v!r}; encode the "
            "two classes as −1 and +1 (or use loss='squared' for regression)"
        )


class Logistic(AbstractLoss):
    """`R(z) = Σ log(1 + exp(−y z))` over every output, `y ∈ {−1, +1}` (binary
    classification; with `k > 1` outputs, one binary task each). Smooth with `L = 1/4`
    (`max s(1 − s)`), convex, not strongly convex."""

    name: ClassVar[str] = "logistic"

    def value(self, z, y):
        return jnp.sum(jnp.logaddexp(0.0, -y * z))

    def gradient(self, z, y):
        return -y * jax.nn.sigmoid(-y * z)

    @property
    def mu(self) -> float:
        return 0.0

    @property
    def L(self) -> float:
        return 0.25

    def check_targets(self, y):
        _check_signs(self.name, y)

    def why_not_strongly_convex(self) -> str:
        return (
            "the logistic loss is not strongly convex (μ = 0: its curvature s(1 − s) tends "
            "to 0 as |z| grows, and its infimum 0 is approached only as |z| → ∞), so "
            "the theorem's loss decay and path-length bound do not apply; the flows and the "
            "checks that do not need them still run"
        )


class CrossEntropy(AbstractLoss):
    """`R(z) = Σ_i (logsumexp(z_i) − ⟨q_i, z_i⟩)`: softmax cross-entropy over each point's
    `k ≥ 2` outputs, `q_i` the one-hot class of point `i` (targets one-hot in `{0, 1}` or
    `{−1, +1}`: the class is the positive entry). Smooth with `L = 1/2` (Böhning's bound),
    convex, not strongly convex."""

    name: ClassVar[str] = "cross_entropy"

    def value(self, z, y):
        q = (y > 0).astype(z.dtype)
        return jnp.sum(jax.nn.logsumexp(z, axis=-1)) - jnp.vdot(q, z)

    def gradient(self, z, y):
        return jax.nn.softmax(z, axis=-1) - (y > 0).astype(z.dtype)

    @property
    def mu(self) -> float:
        return 0.0

    @property
    def L(self) -> float:
        return 0.5

    def check_targets(self, y):
        if y.shape[1] < 2:
            raise ValueError(
                "loss='cross_entropy' needs k ≥ 2 outputs per point (one-hot targets), got "
                "k = 1 target per point; use loss='logistic' for two classes coded −1/+1"
            )
        zero_one = np.isin(y, (0.0, 1.0)).all(axis=1)
        signs = np.isin(y, (-1.0, 1.0)).all(axis=1)
        one_hot = np.sum(y > 0, axis=1) == 1
        bad = ~((zero_one | signs) & one_hot)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"loss='cross_entropy' needs one-hot targets (each row one 1 and the rest 0, "
                f"or one +1 and the rest −1), got row {i} = {y[i].tolist()}; encode each "
                "point's class that way"
            )

    def why_not_strongly_convex(self) -> str:
        return (
            "the cross-entropy loss is not strongly convex (μ = 0: it is flat along each "
            "point's all-ones direction, its curvature vanishes as the softmax saturates, "
            "and its infimum 0 is approached only as ‖z‖ → ∞), so the theorem's loss "
            "decay and path-length bound do not apply; the flows and the checks that do not "
            "need them still run"
        )


class UserLoss(AbstractLoss):
    """A loss of your own: `UserLoss(value, grad=None, mu=None, L=None, name="user")`.

    - `value(z, y)`: `R(z)`, a JAX-traceable scalar function of the predictions and
      targets (both `(N, k)` arrays), convex in `z`.
    - `grad(z, y)`: its gradient in `z` (default: `jax.grad` of `value`).
    - `mu`, `L`: its strong-convexity and smoothness constants in `z`, if you know them
      (the certificate then follows the strongly convex theorem; they are taken on trust,
      like a user's `β`).
    """

    fn: Callable = eqx.field(static=True)
    grad_fn: Callable | None = eqx.field(static=True)
    mu_value: float | None = eqx.field(static=True)
    L_value: float | None = eqx.field(static=True)
    label: str = eqx.field(static=True)
    name: ClassVar[str] = "user"

    def __init__(
        self,
        value: Callable,
        grad: Callable | None = None,
        *,
        mu: float | int | np.number | None = None,
        L: float | int | np.number | None = None,
        name: str = "user",
    ):
        if not callable(value):
            raise TypeError(f"UserLoss's value must be a function R(z, y), got {value!r}")
        if grad is not None and not callable(grad):
            raise TypeError(f"UserLoss's grad must be a function ∇R(z, y) or None, got {grad!r}")
        for arg, v in (("mu", mu), ("L", L)):
            if v is not None and (
                isinstance(v, bool | np.bool_)
                or not isinstance(v, int | float | np.integer | np.floating)
                or not math.isfinite(v)
                or v < 0
            ):
                raise ValueError(
                    f"UserLoss's {arg} must be a finite number ≥ 0 or None, got {arg}={v!r}"
                )
        if mu is not None and L is not None and mu > L:
            raise ValueError(f"UserLoss needs mu ≤ L (∇²R ⪰ μI and ⪯ LI), got mu={mu}, L={L}")
        self.fn, self.grad_fn = value, grad
        self.mu_value = None if mu is None else float(mu)
        self.L_value = None if L is None else float(L)
        self.label = str(name)

    def value(self, z, y):
        return self.fn(z, y)

    def gradient(self, z, y):
        if self.grad_fn is None:
            return jax.grad(self.fn)(z, y)
        return jnp.reshape(self.grad_fn(z, y), z.shape)

    @property
    def mu(self) -> float | None:
        return self.mu_value

    @property
    def L(self) -> float | None:
        return self.L_value

    def check_at(self, z, y):
        super().check_at(z, y)
        if self.grad_fn is None:
            return
        given = jnp.reshape(jnp.asarray(self.grad_fn(z, y)), z.shape)
        auto = jax.grad(self.fn)(z, y)
        scale = float(jnp.max(jnp.abs(auto))) + float(jnp.finfo(z.dtype).tiny)
        diff = float(jnp.max(jnp.abs(given - auto)))
        if diff > 1e-6 * scale:
            raise ValueError(
                f"UserLoss {self.label!r}: grad disagrees with jax.grad(value) at the initial "
                f"predictions z0 = αf(w0) (largest difference {diff:.3g}, relative "
                f"{diff / scale:.3g}); fix grad, or omit it to use jax.grad(value)"
            )

    def why_not_strongly_convex(self) -> str:
        missing = [n for n, v in (("mu", self.mu), ("L", self.L)) if v is None]
        if missing:
            what = " and ".join(missing)
            return (
                f"the user's loss {self.label!r} gives no {what}: the strongly convex "
                "theorem needs μ > 0 and L; pass UserLoss(..., mu=…, L=…) if you know them"
            )
        return (
            f"the user's loss {self.label!r} has μ = 0 (not strongly convex): the theorem's "
            "loss decay and path-length bound need μ > 0"
        )


LOSSES: dict[str, type[AbstractLoss]] = {
    "squared": Squared,
    "logistic": Logistic,
    "cross_entropy": CrossEntropy,
}


def get_loss(loss: Any) -> AbstractLoss:
    """A loss by name (`"squared"`, `"logistic"`, `"cross_entropy"`), or one given (an
    `AbstractLoss`, e.g. `UserLoss(...)`). **Raises:** `ValueError`."""
    if isinstance(loss, AbstractLoss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(
        f"loss must be one of {', '.join(map(repr, LOSSES))} or a UserLoss, got loss={loss!r}"
    )


def loss_name(loss: AbstractLoss) -> str:
    """How results call the loss: its name, or a user loss's label."""
    return loss.label if isinstance(loss, UserLoss) else loss.name
