"""Activation functions that know their own smoothness constants.

The certified Lipschitz constant of a shallow network's Jacobian (docs/theory.md,
"Smoothness") needs `sup|σ'|` and `sup|σ''|` over the real line. Each activation here
carries both as upper bounds: a closed form where one exists, otherwise a value rounded
*up* from a numerical maximisation, so that every bound built from it stays a bound.
"""

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
from jaxtyping import Array, ArrayLike

from .._activation_names import canonical_name
from ._base import AbstractModel


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """A scalar activation `σ: R → R`, applied elementwise.

    **Fields:**

    - `name`: the name used in configs and reports.
    - `fn`: `σ` itself, a JAX-traceable elementwise function.
    - `sup_d1`: an upper bound on `sup_x |σ'(x)|` (`inf` when unbounded).
    - `sup_d2`: an upper bound on `sup_x |σ''(x)|`; `inf` for a non-smooth `σ` (ReLU), for
      which the lazy-training theorem's `β` does not exist.
    - `note`: where the constants come from.
    """

    name: str
    fn: Callable[[Array], Array]
    sup_d1: float
    sup_d2: float
    note: str = ""

    @property
    def smooth(self) -> bool:
        """Whether `σ''` is bounded, so that a finite `β` exists."""
        return math.isfinite(self.sup_d2)

    def __call__(self, x: ArrayLike) -> Array:
        return self.fn(jnp.asarray(x))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Activation", self.name))

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _gelu(x: Array) -> Array:
    # The exact GELU `x Φ(x)`, not the tanh approximation, so its constants are closed forms.
    return jax.nn.gelu(x, approximate=False)


def _erf(x: Array) -> Array:
    return jsp.erf(x)


_SQRT2 = math.sqrt(2.0)
_PHI_SQRT2 = math.exp(-1.0) / math.sqrt(2.0 * math.pi)  # standard normal density at √2
_CDF_SQRT2 = 0.5 * (1.0 + math.erf(1.0))  # Φ(√2)

ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "tanh",
            jnp.tanh,
            1.0,
            4.0 / (3.0 * math.sqrt(3.0)),
            "σ'' = −2 tanh·sech², maximal at tanh = 1/√3",
        ),
        Activation("softplus", jax.nn.softplus, 1.0, 0.25, "σ' = sigmoid, σ'' = s(1−s) ≤ 1/4"),
        Activation(
            "sigmoid",
            jax.nn.sigmoid,
            0.25,
            1.0 / (6.0 * math.sqrt(3.0)),
            "σ'' = s(1−s)(1−2s), maximal at s = 1/2 ± 1/(2√3)",
        ),
        Activation(
            "gelu",
            _gelu,
            _CDF_SQRT2 + _SQRT2 * _PHI_SQRT2,
            2.0 / math.sqrt(2.0 * math.pi),
            "exact GELU xΦ(x): σ' = Φ + xφ maximal at √2, σ'' = φ(2 − x²) maximal at 0",
        ),
        Activation(
            "erf",
            _erf,
            2.0 / math.sqrt(math.pi),
            2.0 * math.sqrt(2.0 / math.pi) * math.exp(-0.5),
            "σ'' = −(4x/√π) e^{−x²}, maximal at |x| = 1/√2",
        ),
        Activation("sin", jnp.sin, 1.0, 1.0, "|cos|, |sin| ≤ 1"),
        Activation(
            "silu",
            jax.nn.silu,
            # sup σ' = 1.0998393… at x ≈ 2.3994 (a transcendental equation); rounded up.
            1.09984,
            0.5,
            "σ'' = s(1−s)(2 + x(1−2s)), maximal at 0; sup σ' rounded up from 1.0998393",
        ),
        Activation("relu", jax.nn.relu, 1.0, math.inf, "not differentiable at 0: no finite β"),
    )
}


def get_activation(activation: str | Activation) -> Activation:
    """Look up an activation by name (or pass an `Activation` through).

    **Raises:** `ValueError` naming the unknown value and the known names.
    """
    if isinstance(activation, Activation):
        return activation
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be a name or an Activation, got {type(activation).__name__}"
        )
    return ACTIVATIONS[canonical_name(activation)]


class AbstractActivationModel(AbstractModel):
    """A built-in network (`Shallow`, `MLP`, `CNN`) whose smoothness is its activation's:
    `σ''` bounded makes `J` Lipschitz on bounded sets (docs/theory.md, "Smoothness")."""

    activation: eqx.AbstractVar[Activation]

    @property
    def smooth(self) -> bool:
        return self.activation.smooth

    def not_smooth_reason(self) -> str:
        return (
            f"{self.activation.name} is not smooth: σ'' is unbounded, so the Jacobian is "
            "not Lipschitz (β = ∞)"
        )
