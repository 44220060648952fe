"""Dual activations: an activation's two Gaussian expectations in closed form.

For a pre-activation pair `(u, v) ~ N(0, [[a, c], [c, b]])`, the infinite-width recursion
of a fully connected network (docs/theory.md, "The infinite-width limit") needs

    E[σ(u) σ(v)]      (the next layer's NNGP kernel) and
    E[σ'(u) σ'(v)]    (the factor by which the tangent kernel is carried through σ).

Closed forms exist for ReLU (the arc-cosine kernel of Cho & Saul, *Kernel Methods for
Deep Learning*, NeurIPS 2009), erf (Williams, *Computing with Infinite Networks*, NeurIPS
1997), the exact GELU `xΦ(x)` (Tsuchida, Pearce, van der Heide, Roosta & Gallagher,
*Avoiding Kernel Fixed Points*, AAAI 2021) and sin; their derivations are in
docs/theory.md, "Closed forms". Every other activation takes the trapezoidal quadrature of
`_dual_quadrature.py`, whose error is bounded.
"""

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

_2PI = 2.0 * math.pi


class AbstractDual(eqx.Module):
    """The pair `(E[σ(u)σ(v)], E[σ'(u)σ'(v)])` of one activation, elementwise over arrays
    `a = Var u`, `b = Var v`, `c = Cov(u, v)` that broadcast together."""

    @abc.abstractmethod
    def __call__(
        self, a: Float[Array, "..."], b: Float[Array, "..."], c: Float[Array, "..."]
    ) -> tuple[Array, Array]:
        raise NotImplementedError


class ReluDual(AbstractDual):
    """`E[relu(u) relu(v)] = (s + (π − θ) c)/(2π)` and `E[step(u) step(v)] = (π − θ)/(2π)`
    with `s = sqrt(ab − c²)`, `θ = atan2(s, c)` the angle between `u` and `v` (arc-cosine
    kernel of degree 1 and 0). A pair with `s = c = 0` (a zero input without biases) takes
    `θ = π/2`, as neural-tangents does."""

    name: ClassVar[str] = "relu"

    def __call__(self, a, b, c):
        # (r − c)(r + c), not ab − c²: a fused multiply-add would leave ab − c² ≈ ε·ab at
        # c = √(ab), hence θ ≈ 1e-8; sqrt(fl(a·a)) = a makes r − c exactly 0 there.
        r = jnp.sqrt(a * b)
        s = jnp.sqrt(jnp.maximum((r - c) * (r + c), 0.0))
        theta = jnp.where((s == 0) & (c == 0), math.pi / 2, jnp.arctan2(s, c))
        return (s + (math.pi - theta) * c) / _2PI, (math.pi - theta) / _2PI


class ErfDual(AbstractDual):
    """`E[erf(u) erf(v)] = (2/π) arcsin(2c / sqrt((1 + 2a)(1 + 2b)))` and
    `E[erf'(u) erf'(v)] = (4/π) / sqrt((1 + 2a)(1 + 2b) − 4c²)`."""

    name: ClassVar[str] = "erf"

    def __call__(self, a, b, c):
        p = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
        rho = jnp.clip(2.0 * c / jnp.sqrt(p), -1.0, 1.0)
        return (2.0 / math.pi) * jnp.arcsin(rho), (4.0 / math.pi) / jnp.sqrt(p - 4.0 * c * c)


class GeluDual(AbstractDual):
    """The exact GELU `σ(x) = xΦ(x)`: with `P = (1 + a)(1 + b)`, `Δ = sqrt(P − c²)` and
    `θ = atan2(c, Δ) = arcsin(c/√P)`,

        E[σ(u)σ(v)]   = c/4 + cθ/(2π) + (c² + abΔ²)/(2πPΔ),
        E[σ'(u)σ'(v)] = 1/4 + θ/(2π) + c(2 + a + b)/(2πPΔ) + c/(2πΔ³)."""

    name: ClassVar[str] = "gelu"

    def __call__(self, a, b, c):
        p = (1.0 + a) * (1.0 + b)
        d2 = p - c * c
        d = jnp.sqrt(d2)
        theta = jnp.arctan2(c, d)
        value = c / 4 + c * theta / _2PI + (c * c + a * b * d2) / (_2PI * p * d)
        deriv = 0.25 + theta / _2PI + c * (2.0 + a + b) / (_2PI * p * d) + c / (_2PI * d * d2)
        return value, deriv


class SinDual(AbstractDual):
    """`E[sin u sin v] = e^{−(a+b)/2} sinh c` and `E[cos u cos v] = e^{−(a+b)/2} cosh c`
    (from the characteristic function of `(u, v)`)."""

    name: ClassVar[str] = "sin"

    def __call__(self, a, b, c):
        decay = jnp.exp(-0.5 * (a + b))
        return decay * jnp.sinh(c), decay * jnp.cosh(c)


CLOSED_FORMS: dict[str, AbstractDual] = {
    d.name: d for d in (ReluDual(), ErfDual(), GeluDual(), SinDual())
}
