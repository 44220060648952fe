"""The weights of an exponential Adams step with variable steps (docs/theory.md, "The
exponential Adams integrator").

Over a step `[t_k, t_k + h]` the remainder `N` of the split `ė = L e + N(t)` is replaced
by the polynomial `P(t_k + θh) = Σ_j N_j ℓ_j(θ)` through its values `N_j` at the nodes
`θ_j = (t_j − t_k)/h` (Lagrange basis `ℓ_j(θ) = Σ_m C_jm θ^m`). Integrated exactly against
the linear part (variation of constants),

    ∫_0^h e^{(h−τ)L} (τ/h)^m dτ = h·m!·φ_{m+1}(hL),

so the step adds `Σ_j W_j(hL) N_j` with `W_j(hL) = h Σ_m C_jm m! φ_{m+1}(hL)`. With the
linear part `L = −α² J_rᵀJ_r` and `K_r = J_r J_rᵀ = VΛVᵀ`, `φ_k(hL)v = v/k! − hα² J_rᵀ V
φ_{k+1}(−hα²Λ) Vᵀ J_r v`, so each weight is a scalar on `v` plus a diagonal on the kernel's
eigenbasis:

    W_j(hL) v = w_j v − hα² J_rᵀ V (ω_j(Λ) ⊙ Vᵀ J_r v),
    w_j = h Σ_m C_jm/(m+1),    ω_j(λ) = h Σ_m C_jm m! φ_{m+2}(−hα²λ).

Nothing here depends on the network: the nodes, `h`, `α²` and the eigenvalues suffice.
"""

import math

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._exponential import phi


def lagrange_coefficients(
    theta: Float[Array, " Q"], k: Int[Array, ""] | int
) -> Float[Array, "Q Q"]:
    """`C` with `ℓ_j(θ) = Σ_m C[j, m] θ^m` the Lagrange basis on the first `k` nodes
    `theta[:k]` (`ℓ_j(θ_i) = δ_ij`); rows and columns from `k` on are zero, so the same
    shapes serve every order up to `Q`."""
    Q = theta.shape[0]
    idx = jnp.arange(Q)
    valid = (idx < k)[:, None] & (idx < k)[None, :]
    # Vandermonde M[j, m] = θ_j^m on the valid block, the identity elsewhere: ℓ's
    # coefficients are the rows of (Mᵀ)⁻¹ (Σ_m C_jm θ_i^m = δ_ij).
    M = jnp.where(valid, theta[:, None] ** idx[None, :], jnp.eye(Q, dtype=theta.dtype))
    return jnp.where(valid, jnp.linalg.inv(M.T), 0.0)


def adams_weights(
    C: Float[Array, "Q Q"], h: Float[Array, ""], z: Float[Array, " n"]
) -> tuple[Float[Array, " Q"], Float[Array, "Q n"]]:
    """`(w, ω)`: the scalar parts `w_j = h Σ_m C_jm/(m+1)` and the eigenbasis parts
    `ω_j(λ) = h Σ_m C_jm m! φ_{m+2}(z)`, `z = −hα²λ`, of the weights `W_j(hL)` (module
    docstring)."""
    Q = C.shape[1]
    m = jnp.arange(Q, dtype=C.dtype)
    w = h * (C @ (1.0 / (m + 1.0)))
    factorials = jnp.asarray([math.factorial(i) for i in range(Q)], z.dtype)
    phis = jnp.stack([phi(i + 2, z) for i in range(Q)])
    return w, h * ((C * factorials[None, :]) @ phis)


# Milne's device for an Adams pair of the same order q (predictor: explicit, q nodes;
# corrector: implicit, the new node and q − 1 old ones): the corrector's local error is
# `|C*_q| / |C_q − C*_q|` times the difference of the two, with the Adams–Bashforth and
# Adams–Moulton error constants C_q = 1/2, 5/12, 3/8, 251/720, 95/288 and
# C*_q = −1/2, −1/12, −1/24, −19/720, −3/160 (Hairer, Nørsett & Wanner, Solving ODEs I,
# §III.1). Index q; the entry at 0 is unused.
MILNE = (0.5, 0.5, 1 / 6, 0.1, 19 / 270, (3 / 160) / (95 / 288 + 3 / 160))
MAX_ORDER = len(MILNE) - 1
