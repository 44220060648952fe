"""A certified Lipschitz constant of the Jacobian of an `MLP` on a ball around `w0`
(docs/theory.md, "Deep networks: a certified β").

For parameters `θ = (W_l, b_l)_{l=1..L}` and one input `x`, `z_l = W_l h_{l−1}/√m_{l−1} + b_l`,
`h_l = σ(z_l)`, `f = z_L`. On the ball `‖θ − θ0‖ ≤ r`, with `s1 = sup|σ'|`, `s2 = sup|σ''|`,

    a_l  = (‖W_l⁰‖_op + r)/√m_{l−1}            (‖W_l‖_op / √m_{l−1} on the ball)
    a'_l = min(a_l, (max_j ‖W_l⁰[:, j]‖ + r)/√m_{l−1})   (a column's norm, for ℓ1 inputs)
    H_0 = ‖x‖,  H_l = ‖h_l(θ0)‖ + s1 r P_l        (‖h_l‖ on the ball)
    ρ_l = sqrt(H_{l−1}²/m_{l−1} + [bias])
    P_l = sqrt(ρ_l² + (a_l s1 P_{l−1})²),  P_0 = 0     (‖Dz_l‖ on the ball)
    Q_l = s1 P_{l−1}/√m_{l−1} + a'_l s2 P_{l−1}² + a_l s1 Q_{l−1},  Q_0 = 0   (‖D²z_l‖)

and `‖J_θ − J_θ'‖_op ≤ β(r)‖θ − θ'‖` on the ball with `β(r) = sqrt(Σ_i Q_L(x_i)²)` (divided by
√2 with antisymmetric centring). The proof is in docs/theory.md; `_lipschitz.certified_beta`
takes it at the consistent radius `r = σ_min/(2β(r))`.
"""

import math

import equinox as eqx
import numpy as np
from jaxtyping import Array, ArrayLike

from ._centering import Antisymmetric, NoCentering
from ._problem import Problem
from .models import MLP
from .models._activations import Activation

# Bisection steps for the consistent radius (on log r: far below float64's resolution).
_BISECTIONS = 200


@eqx.filter_jit
def _activate(act: Activation, z: ArrayLike) -> Array:
    """`σ(z)` as one compiled program (op by op, an activation compiles several)."""
    return act(z)


class MLPBall:
    """The `r`-independent ingredients of `β(r)` for one `MLP` problem: per layer the
    operator norm, the largest column norm and the fan-in; per point and layer the norms
    `‖h_l(θ0)‖`; the activation's `s1`, `s2`; the centring's factor."""

    def __init__(self, problem: Problem):
        model = problem.model
        assert isinstance(model, MLP)
        params = problem.unravel(problem.w0)
        if type(problem.centering) is Antisymmetric:
            layers, self.factor = params[0], 1 / math.sqrt(2.0)
        else:
            assert isinstance(problem.centering, NoCentering)
            layers, self.factor = params, 1.0
        act = model.activation
        self.s1, self.s2, self.bias = float(act.sup_d1), float(act.sup_d2), model.bias
        Ws = [np.asarray(layer["W"], dtype=np.float64) for layer in layers]
        self.fan_in = np.array([W.shape[1] for W in Ws], dtype=np.float64)
        self.opnorm = np.array([np.linalg.norm(W, 2) for W in Ws])
        self.maxcol = np.array([np.max(np.linalg.norm(W, axis=0)) for W in Ws])
        # ‖x_i‖ and ‖h_l(x_i; θ0)‖ for the hidden layers l = 1..L−1, shape (L, n).
        h = np.asarray(problem.data.X, dtype=np.float64)
        norms = [np.linalg.norm(h, axis=1)]
        for W, layer in zip(Ws[:-1], layers[:-1], strict=True):
            z = h @ W.T / math.sqrt(W.shape[1])
            if self.bias:
                z = z + np.asarray(layer["b"], dtype=np.float64)
            h = np.asarray(_activate(act, z), dtype=np.float64)
            norms.append(np.linalg.norm(h, axis=1))
        self.h_norms = np.stack(norms)

    def beta(self, r: float) -> float:
        """`β(r)`: a Lipschitz constant of `J` on the ball of radius `r` around `θ0`."""
        s1, s2 = self.s1, self.s2
        a = (self.opnorm + r) / np.sqrt(self.fan_in)
        a1 = np.minimum(a, (self.maxcol + r) / np.sqrt(self.fan_in))
        n = self.h_norms.shape[1]
        P, Q = np.zeros(n), np.zeros(n)
        for i in range(len(a)):
            H = self.h_norms[i] + s1 * r * P  # (P = 0 at the input: H_0 = ‖x‖)
            rho = np.sqrt(H**2 / self.fan_in[i] + (1.0 if self.bias else 0.0))
            if i > 0:
                Q = s1 * P / np.sqrt(self.fan_in[i]) + a1[i] * s2 * P**2 + a[i] * s1 * Q
            P = np.sqrt(rho**2 + (a[i] * s1 * P) ** 2)
        return self.factor * float(np.sqrt(np.sum(Q**2)))

    def consistent_radius(self, sigma_min: float) -> float:
        """The `r > 0` with `2 r β(r) = σ_min` (`r β(r)` increases strictly from 0)."""
        lo, hi = 1e-300, 1.0
        while 2 * hi * self.beta(hi) < sigma_min:
            lo, hi = hi, hi * 2.0
        for _ in range(_BISECTIONS):
            mid = math.sqrt(lo * hi)
            if 2 * mid * self.beta(mid) < sigma_min:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-15 * hi:
                break
        return hi
