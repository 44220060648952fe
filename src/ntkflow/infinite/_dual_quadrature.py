"""Dual activations by the trapezoidal rule, with a bound on the rule's error.

`E[g(u) g(v)]` for `(u, v) ~ N(0, [[a, c], [c, b]])` and `g ∈ {σ, σ'}` is written in the
Cholesky coordinates of the 2 × 2 covariance, `u = √a·x`, `v = √b·(ρx + ρ̄y)` with `x, y`
independent standard normals, `ρ = c/√(ab)`, `ρ̄ = sqrt(1 − ρ²)`, and integrated by the
trapezoidal rule on the nodes `kh`, `|k| ≤ K`, in `y` inside and `x` outside. For an
integrand analytic in a strip `|Im z| < t` around the real line, the infinite trapezoidal
sum's error is at most `2M/(e^{2πt/h} − 1)`, `M` bounding the integrand's `L¹` norm on the
strip's lines (Trefethen & Weideman, *The exponentially convergent trapezoidal rule*, SIAM
Review 56, 2014, Theorem 5.1); truncating the sum at `|k| ≤ K` adds the Gaussian tails. Each
activation supplies strips in which `|σ(z)|`, `|σ'(z)|` ≤ `A + B|Re z|` (`Strip`, `ANALYTIC`);
docs/theory.md, "Quadrature with a bound", derives the bound and each strip. The rule
converges as fast as Gauss–Hermite on such integrands (ibid., §8) and, unlike it, comes
with this explicit bound.
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..models._activations import Activation
from ._dual import AbstractDual

_C2 = math.sqrt(2.0 / math.pi)  # E|x| for a standard normal x
T_MAX = 6.0  # the widest strip used (entire σ): e^{t²/2} grows faster than the gain
MAX_NODES = 801  # per axis


@dataclasses.dataclass(frozen=True)
class Strip:
    """`ψ` is analytic for `|Im z| < tau` and `|ψ(z)| ≤ A + B·|Re z|` for `|Im z| ≤ tau`."""

    tau: float
    A: float
    B: float


@dataclasses.dataclass(frozen=True)
class Analytic:
    """What the bound needs of an activation: strips for `σ` and for `σ'` (candidates; the
    one that needs the fewest nodes is used) and `sup|σ'''|` (rounded up), for the
    propagation of errors through layers (`_infinite.py`)."""

    value: tuple[Strip, ...]
    deriv: tuple[Strip, ...]
    sup_d3: float


def _tanh(tau: float) -> tuple[float, float]:
    """`sup |tanh z|` and `sup |sech² z|` over `|Im z| ≤ tau < π/2`."""
    return max(1.0, math.tan(tau)), 1.0 / math.cos(tau) ** 2


def _sigmoid(tau: float) -> tuple[float, float]:
    """`sup |s(z)|` and `sup |s'(z)|` over `|Im z| ≤ tau < π`, `s(z) = (1 + tanh(z/2))/2`."""
    t, d = _tanh(tau / 2)
    return (1.0 + t) / 2, d / 4


def _softplus(tau: float) -> Strip:
    # log(1 + e^z): |1 + e^z| ≤ 1 + e^x, ≥ 1 for |y| ≤ π/2 (else ≥ |sin y|); |arg| < π
    # (≤ π/2 while Re(1 + e^z) ≥ 1).
    if tau <= math.pi / 2:
        return Strip(tau, math.log(2.0) + math.pi / 2, 1.0)
    return Strip(tau, math.log(2.0) - math.log(math.sin(tau)) + math.pi, 1.0)


def _phi_bound(tau: float) -> float:
    """`sup |Φ(z)|` over `|Im z| ≤ tau`: `|erf(w)| ≤ 1 + (2/√π)|Im w| e^{(Im w)²}`."""
    return 1.0 + tau / math.sqrt(2 * math.pi) * math.exp(tau * tau / 2)


_TANH = (math.pi / 4, math.pi / 3, 5 * math.pi / 12, 0.45 * math.pi)
_SIG = tuple(2 * t for t in _TANH)
_ENTIRE = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)

ANALYTIC: dict[str, Analytic] = {
    "tanh": Analytic(
        tuple(Strip(t, _tanh(t)[0], 0.0) for t in _TANH),
        tuple(Strip(t, _tanh(t)[1], 0.0) for t in _TANH),
        2.0,
    ),
    "sigmoid": Analytic(
        tuple(Strip(t, _sigmoid(t)[0], 0.0) for t in _SIG),
        tuple(Strip(t, _sigmoid(t)[1], 0.0) for t in _SIG),
        0.125,
    ),
    "softplus": Analytic(
        tuple(_softplus(t) for t in (math.pi / 2, 3 * math.pi / 4)),
        tuple(Strip(t, _sigmoid(t)[0], 0.0) for t in _SIG),
        1.0 / (6.0 * math.sqrt(3.0)),
    ),
    "silu": Analytic(
        tuple(Strip(t, t * _sigmoid(t)[0], _sigmoid(t)[0]) for t in _SIG),
        tuple(Strip(t, _sigmoid(t)[0] + t * _sigmoid(t)[1], _sigmoid(t)[1]) for t in _SIG),
        0.30819,  # rounded up from 0.3081815… at |x| ≈ 1.032
    ),
    "sin": Analytic(
        tuple(Strip(t, math.cosh(t), 0.0) for t in _ENTIRE),
        tuple(Strip(t, math.cosh(t), 0.0) for t in _ENTIRE),
        1.0,
    ),
    "erf": Analytic(
        tuple(Strip(t, 1.0 + 2.0 / math.sqrt(math.pi) * t * math.exp(t * t), 0.0) for t in _ENTIRE),
        tuple(Strip(t, 2.0 / math.sqrt(math.pi) * math.exp(t * t), 0.0) for t in _ENTIRE),
        4.0 / math.sqrt(math.pi),
    ),
    "gelu": Analytic(
        tuple(Strip(t, t * _phi_bound(t), _phi_bound(t)) for t in _ENTIRE),
        tuple(
            Strip(
                t,
                _phi_bound(t) + t * math.exp(t * t / 2) / math.sqrt(2 * math.pi),
                math.exp(t * t / 2) / math.sqrt(2 * math.pi),
            )
            for t in _ENTIRE
        ),
        0.77877,  # rounded up from 0.7787696… at |x| = sqrt((7 − √33)/2)
    ),
}


def _q(t: float) -> float:
    """The standard normal tail `P(x > t)`."""
    return 0.5 * math.erfc(t / math.sqrt(2.0))


def _inv_expm1(x, xp):
    """`1/(e^x − 1)` for `x > 0`, as `e^{−x}/(1 − e^{−x})`: no overflow."""
    return xp.exp(-x) / -xp.expm1(-x)


def trapezoid_bound(strip: Strip, a, b, rho, h: float, K: int, *, g=None, xp=jnp):
    """The bound on `|Q − E[g(u)g(v)]|` of the truncated trapezoidal rule `Q` (step `h`,
    nodes `kh`, `|k| ≤ K`), elementwise over broadcasting `a`, `b`, `ρ` (docs/theory.md,
    "Quadrature with a bound"): the outer rule's discretisation and truncation on the
    exact inner integral, plus the inner rule's at each outer node, weighted by the outer
    weights `hφ(x_k)|g(√a x_k)|` (`g=None`: `|g| ≤ A + B|z|` from the strip). `xp` is
    `jax.numpy` or `numpy`."""
    T = K * h
    qT, pT = _q(T), math.exp(-0.5 * T * T) / math.sqrt(2 * math.pi)
    sa, sb = xp.sqrt(a), xp.sqrt(b)
    r = xp.abs(rho)
    rb = xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0))
    A, B, tau = strip.A, strip.B, strip.tau

    def width(s):  # half-width of the analytic strip in the integration variable
        return xp.minimum(tau / xp.where(s > 0, s, tau / T_MAX), T_MAX)

    tx = xp.minimum(width(sa), width(sb * r))
    p, q, r_, w = A, B * sa, A + B * sb * rb * _C2, B * sb * r
    m_x = xp.exp(0.5 * tx * tx) * (p * r_ + (p * w + q * r_) * _C2 + q * w)
    outer = 2 * m_x * _inv_expm1(2 * math.pi * tx / h, xp)
    outer = outer + 2 * (p * r_ * qT + (p * w + q * r_) * pT + q * w * (T * pT + qT))
    ty = width(sb * rb)
    ndim = max(xp.ndim(a), xp.ndim(b), xp.ndim(rho))
    nodes = h * xp.arange(-K, K + 1, dtype=np.float64).reshape((1,) * ndim + (-1,))
    mu = (sb * r)[..., None] * xp.abs(nodes)
    beta = (sb * rb)[..., None]
    m_y = xp.exp(0.5 * ty * ty)[..., None] * (A + B * mu + B * beta * _C2)
    inner = 2 * m_y * _inv_expm1(2 * math.pi * ty / h, xp)[..., None]
    inner = inner + 2 * ((A + B * mu) * qT + B * beta * pT)
    z = sa[..., None] * nodes
    g_abs = A + B * xp.abs(z) if g is None else xp.abs(g(z))
    weights = h * xp.exp(-0.5 * nodes * nodes) / math.sqrt(2 * math.pi) * g_abs
    return outer + xp.sum(weights * inner, axis=-1)


def _tail_T(strip: Strip, V: float, tol: float) -> float:
    """The smallest truncation `T ≥ 2` (steps of 1/8) whose tail terms, in the worst case
    `a = b = V`, are below `tol`."""
    A, B, s = strip.A, strip.B, math.sqrt(V)
    T = 2.0
    while T < 40.0:
        qT, pT = _q(T), math.exp(-0.5 * T * T) / math.sqrt(2 * math.pi)
        p, q = A, B * s
        outer = 2 * (p * (A + B * s) * qT + (p * B * s + q * (A + B * s)) * pT)
        outer += 2 * q * B * s * (T * pT + qT)
        if outer + 2 * (A + B * s * T) * qT + 2 * B * s * pT < tol:
            return T
        T += 0.125
    return T


def _grid(strips: tuple[Strip, ...], V: float, tol: float) -> tuple[int, float, int, Strip]:
    """`(nodes, h, K, strip)` for one function: over the strip candidates and steps
    `h = 0.9^j`, the fewest nodes `2K + 1` whose worst-case bound (`a = b = V`, `ρ ∈
    {0, ½, 0.9, 1}`) is below `tol`."""
    best = None
    rho = np.array([0.0, 0.5, 0.9, 1.0])
    Vs = np.full(4, V)
    for strip in strips:
        T = _tail_T(strip, V, tol / 4)
        for j in range(60):
            h = 0.9**j
            K = max(1, math.ceil(T / h))
            if best is not None and best[0] <= 2 * K + 1:
                break
            bound = trapezoid_bound(strip, Vs, Vs, rho, h, K, xp=np)
            if float(np.max(bound)) <= tol:
                best = (2 * K + 1, h, K, strip)
                break
    if best is None:
        raise ValueError(f"no trapezoidal grid reaches tol={tol:g} at variance {V:g}; raise tol")
    return best


class TrapezoidDual(AbstractDual):
    """`AbstractDual` by the trapezoidal rule on `(2K + 1)²` nodes of step `h`, with the
    bound `bounds` on its error (`trapezoid_dual` picks the grid)."""

    activation: Activation = eqx.field(static=True)
    value_strip: Strip = eqx.field(static=True)
    deriv_strip: Strip = eqx.field(static=True)
    h: float = eqx.field(static=True)
    K: int = eqx.field(static=True)

    def _pair(self, z):
        return jax.jvp(self.activation.fn, (z,), (jnp.ones_like(z),))

    def sums(self, a, b, c):
        """The rule's two sums and the sums of their terms' absolute values."""
        dtype = jnp.result_type(a, b, c)
        nodes = self.h * jnp.arange(-self.K, self.K + 1, dtype=dtype)
        w = self.h * jnp.exp(-0.5 * nodes * nodes) / math.sqrt(2 * math.pi)
        lead = (1,) * max(jnp.ndim(a), jnp.ndim(b), jnp.ndim(c))
        inner_nodes, inner_w = nodes.reshape((*lead, -1)), w.reshape((*lead, -1))
        sa, sb = jnp.sqrt(a), jnp.sqrt(b)
        rho = jnp.clip(c / jnp.where(sa * sb > 0, sa * sb, 1.0), -1.0, 1.0)
        rb = jnp.sqrt(1.0 - rho * rho)
        shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b), jnp.shape(c))

        def step(carry, xw):
            x, wx = xw
            g, dg = self._pair(sa * x)
            arg = sb[..., None] * (rho[..., None] * x + rb[..., None] * inner_nodes)
            hv, hd = self._pair(arg)
            iv, idv = jnp.sum(inner_w * hv, axis=-1), jnp.sum(inner_w * hd, axis=-1)
            av = jnp.sum(inner_w * jnp.abs(hv), axis=-1)
            ad = jnp.sum(inner_w * jnp.abs(hd), axis=-1)
            v, d, abs_v, abs_d = carry
            return (
                v + wx * g * iv,
                d + wx * dg * idv,
                abs_v + wx * jnp.abs(g) * av,
                abs_d + wx * jnp.abs(dg) * ad,
            ), None

        zero = jnp.zeros(shape, dtype)
        (v, d, abs_v, abs_d), _ = jax.lax.scan(step, (zero,) * 4, (nodes, w))
        return v, d, abs_v, abs_d

    def __call__(self, a, b, c):
        v, d, _, _ = self.sums(a, b, c)
        return v, d

    def with_bounds(self, a, b, c) -> tuple[Array, Array, Array, Array]:
        """`(E[σσ], E[σ'σ'], bound, bound)`: the rule's values and the bounds on their
        errors, rounding of the sums included (`3(2K + 1)·ε·Σ|terms|`)."""
        v, d, abs_v, abs_d = self.sums(a, b, c)
        sa, sb = jnp.sqrt(a), jnp.sqrt(b)
        rho = jnp.clip(c / jnp.where(sa * sb > 0, sa * sb, 1.0), -1.0, 1.0)
        a_, b_ = jnp.broadcast_arrays(a, b, rho)[:2]
        fn = self.activation.fn

        def deriv(z):
            return jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]

        ev = trapezoid_bound(self.value_strip, a_, b_, rho, self.h, self.K, g=fn)
        ed = trapezoid_bound(self.deriv_strip, a_, b_, rho, self.h, self.K, g=deriv)
        eps = 3 * (2 * self.K + 1) * float(jnp.finfo(v.dtype).eps)
        return v, d, ev + eps * abs_v, ed + eps * abs_d


def trapezoid_dual(activation: Activation, max_variance: float, tol: float) -> TrapezoidDual:
    """The trapezoidal `AbstractDual` of `activation` whose error bound is below `tol` for
    every pair of variances up to `max_variance`, with the fewest nodes.

    **Raises:** `ValueError` when `activation` has no strips in `ANALYTIC` (ReLU and
    custom activations: not analytic, or not known to be)."""
    analytic = ANALYTIC.get(activation.name)
    if analytic is None:
        raise ValueError(
            f"no quadrature bound for activation={activation.name!r}: its analytic strip "
            f"is not known; use one of {', '.join(sorted(ANALYTIC))} (or relu, erf, gelu, "
            "sin in closed form)"
        )
    V = max(float(max_variance), 1e-12)
    _nv, hv, kv, sv = _grid(analytic.value, V, tol)
    _nd, hd, kd, sd = _grid(analytic.deriv, V, tol)
    h = min(hv, hd)
    K = max(math.ceil(kv * hv / h), math.ceil(kd * hd / h))
    if 2 * K + 1 > MAX_NODES:
        raise ValueError(
            f"the quadrature for {activation.name} at variance {V:.3g} needs {2 * K + 1} "
            f"nodes per axis (over {MAX_NODES}) for tol={tol:g}: scale the inputs to "
            "unit norm or raise tol"
        )
    return TrapezoidDual(activation, sv, sd, h, K)
