"""Centring: making `f(w0) = 0` so that `R0` does not grow with `α` (docs/theory.md, "Scale and
centring")."""

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
from jaxtyping import Array, Float, PyTree

# `g(params, X)`: the base network's outputs on a batch.
BaseApply = Callable[[PyTree, Array], Array]


class AbstractCentering(eqx.Module):
    """How the trained network is built from the base network `g(x; w)`.

    `lift` maps the base network's initial parameters to the trained ones, `output`
    evaluates the trained network, and `subtracts_init` says whether `f(w0)` (on the same
    inputs) is subtracted afterwards.
    """

    name: ClassVar[str]
    subtracts_init: ClassVar[bool] = False

    @abc.abstractmethod
    def lift(self, params0: PyTree) -> PyTree:
        """The trained parameters at initialisation."""

    @abc.abstractmethod
    def output(self, g: BaseApply, params: PyTree, X: Float[Array, " N *d"]) -> Array:
        """The trained network's outputs on a batch (before any subtraction)."""

    def components(self, params: PyTree) -> tuple[tuple[float, PyTree], ...] | None:
        """When the trained network is `Σ_c s_c g(params_c)` over disjoint parameter
        copies: the pairs `(s_c, params_c)`, so that `K = Σ_c s_c² K_g(params_c)`; `None`
        when it is not of that form."""
        return None


class NoCentering(AbstractCentering):
    """`f(w) = g(w)`: no centring. Then `R0 = ½‖α g(w0) − y‖²` grows like `α²`."""

    name: ClassVar[str] = "none"

    def lift(self, params0: PyTree) -> PyTree:
        return params0

    def output(self, g: BaseApply, params: PyTree, X: Float[Array, " N *d"]) -> Array:
        return g(params, X)

    def components(self, params: PyTree) -> tuple[tuple[float, PyTree], ...]:
        return ((1.0, params),)


class Subtract(NoCentering):
    """`h(w) = g(w) − g(w0)`: same Jacobian as `g`, `h(w0) = 0`, `R0 = ½‖y‖²`.

    On other inputs (a test split) the subtracted value is `g(x; w0)` at those inputs.
    """

    name: ClassVar[str] = "subtract"
    subtracts_init: ClassVar[bool] = True


class Antisymmetric(AbstractCentering):
    """The doubling trick: `f(w1, w2) = (g(w1) − g(w2))/√2` with `w1 = w2 = w0` at init.

    `f(w0) = 0` exactly, and the Jacobian `[J_g, −J_g]/√2` gives `K0 = K_g(w0)`: the same
    kernel as the base network (Chizat, Oyallon & Bach, NeurIPS 2019, §2.3). For the shallow
    network this is the same as duplicating each hidden unit with its output weight negated.
    The parameter count doubles.
    """

    name: ClassVar[str] = "antisymmetric"

    def lift(self, params0: PyTree) -> PyTree:
        return (params0, params0)

    def output(self, g: BaseApply, params: PyTree, X: Float[Array, " N *d"]) -> Array:
        p1, p2 = params
        return (g(p1, X) - g(p2, X)) / math.sqrt(2.0)

    def components(self, params: PyTree) -> tuple[tuple[float, PyTree], ...]:
        p1, p2 = params
        return ((1 / math.sqrt(2.0), p1), (-1 / math.sqrt(2.0), p2))


_CENTERINGS: dict[str, type[AbstractCentering]] = {
    c.name: c for c in (NoCentering, Subtract, Antisymmetric)
}


def get_centering(centering: str | AbstractCentering) -> AbstractCentering:
    """Look up a centring by name (`"none"`, `"subtract"`, `"antisymmetric"`).

    **Raises:** `ValueError` for an unknown name.
    """
    if isinstance(centering, AbstractCentering):
        return centering
    try:
        return _CENTERINGS[str(centering).lower()]()
    except KeyError:
        raise ValueError(
            f"unknown centering={centering!r}; use one of: {', '.join(_CENTERINGS)}"
        ) from None
