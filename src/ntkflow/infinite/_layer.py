"""One activation step of an infinite-width recursion with its error bound
(docs/theory.md, "Errors through the layers"), shared by the fully connected limits
(`_infinite.py`) and the convolutional one (`_cnn_limit.py`): the activation's dual in
closed form, or the trapezoidal quadrature with its bound carried through the step."""

import math
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..models import Activation
from ._dual import CLOSED_FORMS, AbstractDual
from ._dual_quadrature import ANALYTIC, TrapezoidDual, trapezoid_dual


class Layer(eqx.Module):
    """One activation step with its error propagation: a quadrature error `q` at the
    computed inputs, plus the inputs' errors times the expectations' Lipschitz constants
    `(sup|σ'|², ½ sup|σ''|·E|σ|)` and `(sup|σ''|², ½ sup|σ'''| sup|σ'|)` (Price's theorem
    and the heat equation).

    `self(a, b, c, ea, eb, ec)` gives `(E[σσ], E[σ'σ'], their error bounds)` for variances
    `a`, `b` and covariance `c` known to within `ea`, `eb`, `ec`; the bounds are `None`
    for a closed form (rounding only)."""

    dual: AbstractDual
    lipschitz: tuple[float, float, float, float] = eqx.field(static=True)  # d1, d2, d3, |σ(0)|

    @property
    def quadrature(self) -> bool:
        """Whether the expectations are the quadrature's (with error bounds)."""
        return isinstance(self.dual, TrapezoidDual)

    def __call__(self, a, b, c, ea, eb, ec):
        if not isinstance(self.dual, TrapezoidDual):
            v, dv = self.dual(a, b, c)
            return v, dv, None, None
        bound = jnp.sqrt(a * b)
        used = jnp.clip(c, -bound, bound)
        ec = ec + jnp.abs(c - used)
        v, dv, qv, qd = self.dual.with_bounds(a, b, used)
        d1, d2, d3, s0 = self.lipschitz
        mean_u = s0 + d1 * jnp.sqrt(2 * (a + ea) / math.pi)
        mean_v = s0 + d1 * jnp.sqrt(2 * (b + eb) / math.pi)
        ev = qv + d1 * d1 * ec + 0.5 * d2 * (mean_v * ea + mean_u * eb)
        edv = qd + d2 * d2 * ec + 0.5 * d3 * d1 * (ea + eb)
        return v, dv, ev, edv


class Probe(AbstractDual):
    """`E[σ(u)²]` on the diagonal only, by 1-D Gauss–Hermite (80 nodes): an estimate of
    the variances at each step, used only to choose the quadrature's grid (whose bound
    is then computed at the actual inputs)."""

    activation: Activation = eqx.field(static=True)

    def __call__(self, a, b, c):
        z, w = np.polynomial.hermite_e.hermegauss(80)
        lead = (1,) * jnp.ndim(a)
        x = jnp.sqrt(a)[..., None] * z.reshape((*lead, -1))
        v = jnp.sum(w.reshape((*lead, -1)) * self.activation(x) ** 2, axis=-1)
        v = v / math.sqrt(2 * math.pi)
        return v, v


def check_activation(activation: Activation) -> None:
    """**Raises:** `ValueError` when `activation` has neither a closed form nor a known
    analytic strip for the quadrature (a custom activation)."""
    if activation.name not in CLOSED_FORMS and activation.name not in ANALYTIC:
        raise ValueError(
            f"infinite_kernel has no kernel for activation={activation.name!r}: neither a "
            f"closed form ({', '.join(sorted(CLOSED_FORMS))}) nor a known analytic strip for "
            f"the quadrature ({', '.join(sorted(ANALYTIC))})"
        )


def check_settings(method: str, tol: float) -> None:
    """**Raises:** `ValueError` for a `method` other than `"auto"`/`"quadrature"` or a
    `tol` that is not a positive number."""
    if method not in ("auto", "quadrature"):
        raise ValueError(f"method must be 'auto' or 'quadrature', got method={method!r}")
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got tol={tol!r}")


def _lipschitz(activation: Activation) -> tuple[float, float, float, float]:
    analytic = ANALYTIC.get(activation.name)
    return (
        activation.sup_d1,
        activation.sup_d2,
        analytic.sup_d3 if analytic is not None else 0.0,
        abs(float(activation(jnp.zeros((), jnp.result_type(float))))),
    )


def probe_layer(activation: Activation) -> Layer:
    """The closed form where there is one, else `Probe`: a step to estimate the largest
    variance from, before the quadrature's grid is chosen."""
    return Layer(CLOSED_FORMS.get(activation.name) or Probe(activation), _lipschitz(activation))


def layer_for(
    activation: Activation, top: Callable[[], float], *, tol: float, method: str
) -> Layer:
    """The step of `activation`: its closed form (`method="auto"` and one exists), else
    the quadrature whose bound is below `tol` for variances up to `top()` (an estimate
    of the largest variance, computed only then)."""
    closed = CLOSED_FORMS.get(activation.name)
    dual = closed if closed is not None and method == "auto" else None
    if dual is None:
        dual = trapezoid_dual(activation, top(), tol)
    return Layer(dual, _lipschitz(activation))


def describe(layer: Layer, tol: float) -> str:
    """`InfiniteKernel.method`: "closed form" or the quadrature's grid."""
    d = layer.dual
    if isinstance(d, TrapezoidDual):
        return f"trapezoidal quadrature, step {d.h:.3g}, {2 * d.K + 1}² nodes, tol {tol:g}"
    return "closed form"


def nodes(layer: Layer) -> int:
    """The quadrature's nodes per axis (1 for a closed form): a block's memory factor."""
    d = layer.dual
    return 2 * d.K + 1 if isinstance(d, TrapezoidDual) else 1
