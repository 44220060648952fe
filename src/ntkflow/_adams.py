"""The exponential Adams integrator of the gradient flow (docs/theory.md, "The exponential
Adams integrator"; docs/flows.md, "The default integrator").

The squared-loss gradient flow `ẇ = F(w) = −α J_wᵀ(α f(w) − y)` is split at a reference
point `w_r` (at time `t_r`) into its linearisation there and the rest:

    F(w) = F_r(w) + N_r(w),    F_r(w) = −α J_rᵀ(r_r + α J_r (w − w_r)),   r_r = α f(w_r) − y.

The linearised flow from `w_r` is the local tangent path `u_r(t) = w_r + J_rᵀ c_r(t)` in
closed form (`K_r = J_r J_rᵀ = VΛVᵀ`: `c_r(t) = −(1/α) V φ_{t−t_r}(Λ) Vᵀ r_r`, residual
`r_r(t) = V e^{−α²Λ(t−t_r)} Vᵀ r_r`), and the deviation `e = w − u_r(t)` obeys

    ė = L_r e + N_r(w),    L_r = −α² J_rᵀ J_r,

a semilinear ODE whose stiff linear part is integrated exactly. `N_r` is the network's
nonlinearity: zero for a model linear in its parameters (then every step is exact), and
in the lazy regime small and slowly varying, so that steps are set by how fast it changes
rather than by `cond(K)`. Each step is an exponential Adams predictor–corrector pair of
order `q` (`_adams_weights`) in PECE form: predict, evaluate `N_r`, correct, evaluate
again (the history holds `N_r` at the corrected states, which keeps the explicit part
stable on the stiff modes). `N_r(w) = −∇R(w) + J_rᵀ a(w)` is kept as the gradient `g` and
the coefficient `a = α(r_r(t) + α J_r e)`, and every move is one vector-Jacobian product
at `w_r`: a step costs two gradients, two Jacobian-vector products and two
vector-Jacobian products at `w_r`, and one at `w0` for the gap to the tangent flow.

The reference point is moved to the current state every `refresh_every` accepted steps
(one empirical NTK, its `eigh` and `2q` Jacobian-vector products to re-express the
history in the new split): far from lazy the kernel moves and a frozen split would make
the explicit part stiff.

The local error of the corrector (Milne's device, `_adams_weights.MILNE`) is measured in
the norms the answers need: `‖e‖` against the gap `‖w − u‖` and the distance
`‖w − w0‖`, and `‖α J_r Δe‖` against the function gap and the residual (`Accuracy`).
"""

import dataclasses
import time
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._adams_weights import MAX_ORDER, MILNE, adams_weights, lagrange_coefficients
from ._exponential import phi, traced_kernel
from ._problem import Problem

# The step-size controller: the next step is `SAFETY·ratio^(−1/(k+1))` times this one,
# within `[MIN_FACTOR, MAX_FACTOR]`.
SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 4.0


class ExponentialAdams(eqx.Module):
    """The exponential Adams PECE integrator on the deviation from the local tangent path
    (module docstring): `solve_flows(..., solver="adams")`, and `solver="auto"`'s choice
    for a stiff squared-loss flow.

    **Arguments:**

    - `order`: the Adams order `q` (1–5; 4 by default).
    - `refresh_every`: accepted steps between moves of the split's reference point (8 by
      default: measured at rtol 1e-7 on six problems from far from lazy to α = 1e4, 4 and
      8 took the same steps within 2%, 16 up to 36% more on a stiff shallow one).
    """

    order: int = eqx.field(static=True, default=4)
    refresh_every: int = eqx.field(static=True, default=8)

    def __check_init__(self):
        if not 1 <= self.order <= MAX_ORDER:
            raise ValueError(f"order must be in 1..{MAX_ORDER}, got order={self.order}")
        if self.refresh_every < 1:
            raise ValueError(f"refresh_every must be ≥ 1, got refresh_every={self.refresh_every}")


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """What one solve's local errors are held to (docs/flows.md, "The accuracy policy"):
    the gaps `‖w − u‖`, `‖αf(w) − αf_0(u)‖` to `gap` of their supremum, the distance
    `‖w − w0‖` to `dist` of its supremum, the residual to `loss·‖r0‖/2` (the loss to
    `loss·R0`); whichever is tighter, times `tau`. `scales` are the suprema `(gap_w, gap_f,
    dist)` known from an earlier solve (`floor`: what the dtype resolves, relative to the
    distance and to `‖r0‖`: below it an error is rounding, and is not asked for): the
    running maximum is used where larger; an infinite gap scale (the default) leaves that
    criterion out, as for a first solve, whose gaps are not known yet (held to a fraction
    of their running maximum, the first steps, where the gaps grow from zero, could never
    be accepted)."""

    gap: float = 1e-3
    dist: float = 1e-6
    loss: float = 1e-6
    tau: float = 1.0
    scales: tuple[float, float, float] = (float("inf"), float("inf"), 0.0)
    floor: float = 0.0

    def loosened(self, factor: float) -> "Accuracy":
        return dataclasses.replace(self, tau=self.tau * factor)


def _closed_form(a2: Array, lam: Array, V: Array, rh: Array, s: Array) -> tuple[Array, Array]:
    """The linearised flow `s` after its start: `(r(s), α·c(s))` with `r = V e^{−α²Λs} rh`
    and `αc = −V φ_s(Λ) rh`, `φ_s(λ) = α²s·(1 − e^{−x})/x`, `x = α²λs` (no division by λ)."""
    x = a2 * lam * s
    safe = jnp.where(x > 0, x, 1.0)
    ratio = jnp.where(x > 0, -jnp.expm1(-safe) / safe, 1.0)
    return V @ (jnp.exp(-x) * rh), -(V @ (a2 * s * ratio * rh))


class _Split(eqx.Module):
    """The reference point of the split: time `t`, displacement `d = w_r − w0`, the
    eigendecomposition of `K_r` and `Vᵀ r_r`."""

    t: Array
    d: Array
    lam: Array
    V: Array
    rh: Array


class _History(eqx.Module):
    """The last `Q = q + 1` evaluations of `N_r`, newest first: times `T`, gradients `G`
    (`−∇R`), coefficients `A` (`N_r = G + J_rᵀA`), `NH = Vᵀ J_r N_r`, the displacements
    `DW` they were taken at; `m` of them are valid."""

    T: Array
    G: Array
    A: Array
    NH: Array
    DW: Array
    m: Array

    def push(self, t, g, a, nh, d) -> "_History":
        def shift(old, new):
            return jnp.concatenate([new[None], old[:-1]])

        return _History(
            shift(self.T, t),
            shift(self.G, g),
            shift(self.A, a),
            shift(self.NH, nh),
            shift(self.DW, d),
            self.m + 1,
        )


def _combine(C, h, a2, split: _Split, ehat, hist_g, hist_a, hist_nh):
    """One exponential Adams quadrature over `[t_k, t_k + h]` with Lagrange
    coefficients `C` on the history's nodes: `(S, b, ê')` with the move
    `e' − e = S + J_rᵀ b` and `ê' = Vᵀ J_r e'` (`_adams_weights`)."""
    z = -h * a2 * split.lam
    w, om = adams_weights(C, h, z)
    inner = phi(1, z) * ehat + jnp.sum(om * hist_nh, axis=0)
    S = jnp.tensordot(w, hist_g, 1)
    b = jnp.tensordot(w, hist_a, 1) - h * a2 * (split.V @ inner)
    eh = ehat + jnp.tensordot(w, hist_nh, 1) - h * a2 * split.lam * inner
    return S, b, eh


class _State(eqx.Module):
    """The loop's carry: time, proposed step, displacement `δ = w − w0`, the deviation's
    kernel coordinates `ê = Vᵀ J_r e` (`e` itself is `δ − δ_r − J_rᵀ c_r(t)`), the split,
    the history, suprema of the gap, function gap and distance, counters, the saved
    displacements `D`, per-step records and the progress meter's state."""

    t: Array
    h: Array
    d: Array
    ehat: Array
    split: _Split
    hist: _History
    sups: Array
    steps: Array
    accepted: Array
    since: Array
    refreshes: Array
    save: Array
    D: Array
    log: Array
    meter: Any


class _Consts(eqx.Module):
    """What every step reads: the problem, `α²`, the tangent flow at `w0` (`K0`'s
    eigendecomposition, `V0ᵀr0`), the save times, the targets as arrays and `‖r0‖`."""

    problem: Problem
    a2: Array
    lam0: Array
    V0: Array
    r0h: Array
    ts: Array
    tol: Array  # (gap, dist, loss) · tau, and the floor
    scales: Array
    nr0: Array


def _evaluate(c: _Consts, split: _Split, jvp_r, t, d, ehat):
    """`N_r` at `w = w0 + d` and time `t`: `(g, a, Vᵀ J_r N_r, r)` with
    `N_r = g + J_rᵀ a`, `g = −∇R(w)`, `a = α(r_r(t) + α J_r e)`, `r = αf(w) − y`."""
    pr = c.problem
    alpha = pr.alpha_array
    f, vjp = jax.vjp(pr.f, pr.w0 + d)
    r = alpha * f - pr.y
    (g,) = vjp(-alpha * r)
    r_ref, _ = _closed_form(c.a2, split.lam, split.V, split.rh, t - split.t)
    a = alpha * (r_ref + alpha * (split.V @ ehat))
    nh = split.V.T @ jvp_r(g) + split.lam * (split.V.T @ a)
    return g, a, nh, r


def _refresh(c: _Consts, st: _State, d_new: Array) -> _State:
    """Move the split's reference point to `w0 + d_new` at `st.t` (the state just
    accepted): form and factor `K_r`, and re-express the history's `N` in the new split
    (`a_j = α(r_r + α J_r(w_j − w_r))`, `NH_j = Vᵀ(J_r g_j) + Λ Vᵀ a_j`: `2Q` JVPs)."""
    pr = c.problem
    alpha = pr.alpha_array
    w = pr.w0 + d_new
    K = traced_kernel(pr, w)
    lam, V = jnp.linalg.eigh(0.5 * (K + K.T))
    lam = jnp.maximum(lam, 0.0)
    f, jvp = jax.linearize(pr.f, w)
    r = alpha * f - pr.y
    hist = st.hist
    Q = hist.T.shape[0]
    JJ = jax.vmap(jvp)(jnp.concatenate([hist.DW - d_new[None], hist.G]))
    A = alpha * (r[None] + alpha * JJ[:Q])
    NH = JJ[Q:] @ V + lam[None] * (A @ V)
    valid = (jnp.arange(Q) < hist.m)[:, None]
    hist = dataclasses.replace(hist, A=jnp.where(valid, A, 0.0), NH=jnp.where(valid, NH, 0.0))
    split = _Split(st.t, d_new, lam, V, V.T @ r)
    return dataclasses.replace(
        st,
        split=split,
        hist=hist,
        ehat=jnp.zeros_like(st.ehat),
        since=jnp.zeros_like(st.since),
        refreshes=st.refreshes + 1,
    )


def _saves(c: _Consts, st: _State, vjp_r, tn, h, thC, k, hist: _History) -> tuple[Array, Array]:
    """Dense output at the save times in `(t, tn]`: the corrector's quadrature over
    `[t, t_s]` (one VJP at `w_r` per save)."""
    ts, ns = c.ts, c.ts.shape[0]
    t, split = st.t, st.split
    _, ac_t = _closed_form(c.a2, split.lam, split.V, split.rh, t - split.t)
    alpha = c.problem.alpha_array

    def more(carry):
        i, _ = carry
        return (i < ns) & (ts[jnp.minimum(i, ns - 1)] <= tn)

    def one(carry):
        i, D = carry
        hs = ts[i] - t
        hs = jnp.where(hs > 0, hs, h)  # (a save at t itself: θ = 0 below)
        C = lagrange_coefficients(thC * h / hs, k)
        S, b, _ = _combine(C, hs, c.a2, split, st.ehat, hist.G, hist.A, hist.NH)
        _, ac_s = _closed_form(c.a2, split.lam, split.V, split.rh, ts[i] - split.t)
        (move,) = vjp_r(b + (ac_s - ac_t) / alpha)
        ds = jnp.where(ts[i] > t, st.d + S + move, st.d)
        return i + 1, D.at[i].set(ds)

    return jax.lax.while_loop(more, one, (st.save, st.D))


class _Stage(eqx.Module):
    """One stage of the PECE pair: the quadrature `(S, b, ê)` it combined, the state `d` it
    moved to, the move from the stage before (`err`: from `δ` for the prediction, from the
    prediction for the correction) and `N_r` there (`g`, `a`, `NH`; `r = αf(w) − y`)."""

    S: Array
    b: Array
    eh: Array
    d: Array
    err: Array
    g: Array
    a: Array
    nh: Array
    r: Array


def _pece(
    c: _Consts, st: _State, jvp_r, vjp_r, h, tn, theta, thC, k
) -> tuple[_Stage, Array, _History]:
    """Predict (explicit: the history's `k` nodes at `theta`) and evaluate `N_r`, correct
    (implicit: the new node and the `k − 1` newest, at `thC`) and evaluate again. Both
    stages are one quadrature, one move and one evaluation: a loop of two runs them, so
    the network's code is compiled once, not twice. Returns the correction (its `err` is
    Milne's difference `e_C − e_P`), the prediction's `ê` and the history with the
    correction pushed."""
    split, hist, alpha = st.split, st.hist, c.problem.alpha_array
    _, ac_t = _closed_form(c.a2, split.lam, split.V, split.rh, st.t - split.t)
    _, ac_n = _closed_form(c.a2, split.lam, split.V, split.rh, tn - split.t)

    # The stage "before" the prediction: at `δ`, with the tangent path's move `−Δ(αc)/α`
    # taken out of `b`, so the prediction's move is `S_P + J_rᵀ(b_P + Δ(αc)/α)`.
    zp, zn = jnp.zeros_like(st.d), jnp.zeros_like(st.ehat)
    start = _Stage(zp, -(ac_n - ac_t) / alpha, st.ehat, st.d, zp, zp, zn, zn, zn)

    def stage(i, carry: tuple[_Stage, Array, _History]) -> tuple[_Stage, Array, _History]:
        before, eh_p, nodes = carry
        C = lagrange_coefficients(jnp.where(i == 0, theta, thC), k)
        S, b, eh = _combine(C, h, c.a2, split, st.ehat, nodes.G, nodes.A, nodes.NH)
        (move,) = vjp_r(b - before.b)
        err = (S - before.S) + move
        d = before.d + err
        g, a, nh, r = _evaluate(c, split, jvp_r, tn, d, eh)
        eh_p = jnp.where(i == 0, eh, eh_p)
        return _Stage(S, b, eh, d, err, g, a, nh, r), eh_p, hist.push(tn, g, a, nh, d)

    return jax.lax.fori_loop(0, 2, stage, (start, st.ehat, hist))


def _step(c: _Consts, solver: ExponentialAdams, vjp0, st: _State) -> _State:
    """One PECE step from `st` (accepted or rejected by `_control`), then the saves it
    crosses and, every `refresh_every` accepted steps, a move of the split."""
    pr = c.problem
    alpha = pr.alpha_array
    split, hist, q = st.split, st.hist, solver.order
    _, jvp_r = jax.linearize(pr.f, pr.w0 + split.d)
    vjp_r = jax.linear_transpose(jvp_r, pr.w0)
    t1 = c.ts[-1]
    last = st.h >= t1 - st.t
    h = jnp.where(last, t1 - st.t, st.h)
    tn = jnp.where(last, t1, st.t + h)  # (exactly t1: in float32 t + (t1 − t) may not be)
    k = jnp.minimum(hist.m, q)
    theta = (hist.T - st.t) / h
    thC = jnp.concatenate([jnp.ones(1, theta.dtype), theta[:-1]])
    cor, eh_p, new = _pece(c, st, jvp_r, vjp_r, h, tn, theta, thC, k)
    new = dataclasses.replace(new, m=jnp.minimum(hist.m + 1, hist.T.shape[0]))
    # The recorded quantities, against the tangent flow from w0.
    r_u, ac_u = _closed_form(c.a2, c.lam0, c.V0, c.r0h, tn)
    (u,) = vjp0(ac_u / alpha)
    quant = jnp.stack(
        [jnp.linalg.norm(cor.d - u), jnp.linalg.norm(cor.r - r_u), jnp.linalg.norm(cor.d)]
    )
    ok, fac = _control(c, st, k, cor.err, alpha * (cor.eh - eh_p), quant)
    return _advance(c, solver, st, ok, fac, h, tn, thC, k, new, cor.d, cor.eh, cor.r, quant, vjp_r)


def _control(c: _Consts, st: _State, k, err, ferr, quant) -> tuple[Array, Array]:
    """Accept the step when Milne's estimate of the corrector's local error is within the
    targets in both norms; the next step's factor (order `k + 1` local error)."""
    sups = jnp.maximum(jnp.maximum(st.sups, quant), c.scales)
    sc_e, sc_f = _local_targets(c.tol, sups, c.nr0)
    milne = jnp.asarray(MILNE, err.dtype)[k]
    ratio = milne * jnp.maximum(jnp.linalg.norm(err) / sc_e, jnp.linalg.norm(ferr) / sc_f)
    finite = jnp.isfinite(ratio)
    ok = finite & (ratio <= 1.0)
    safe = jnp.where(finite & (ratio > 0), ratio, 1.0)
    fac = SAFETY * safe ** (-1.0 / (k + 1.0))
    fac = jnp.where(finite, jnp.clip(fac, MIN_FACTOR, MAX_FACTOR), MIN_FACTOR)
    fac = jnp.where(finite & (ratio == 0), MAX_FACTOR, fac)
    return ok, fac


def _local_targets(tol: Array, sups: Array, nr0: Array) -> tuple[Array, Array]:
    """What one step's local error is held to, in `w` and in the residual `αf(w) − y`:
    the tightest resolved of the gap's and the distance's targets (`tol[0]`, `tol[1]`,
    already times `τ`) times their suprema `sups = (gap_w, gap_f, dist)`, and of the
    function gap's and the loss's (`tol[2]·‖r0‖/2`); below `tol[3]` (the dtype's
    resolution) of the distance or of `‖r0‖` a target is left out (`_resolved`)."""
    eps = jnp.finfo(jnp.result_type(tol)).eps
    floor = jnp.maximum(tol[3], 64 * eps)
    sc_e = _resolved(jnp.stack([tol[0] * sups[0], tol[1] * sups[2]]), floor * sups[2])
    sc_f = _resolved(jnp.stack([tol[0] * sups[1], 0.5 * tol[2] * nr0]), floor * nr0)
    return sc_e, sc_f


def _resolved(targets: Array, floor: Array) -> Array:
    """The tightest of `targets` that the dtype resolves (above `floor`); `floor` where
    none is. A target below the floor is left out rather than raised to it: held to the
    floor, the solves at every `τ` would take the same steps, and their difference (the
    error budget) would no longer bound their error."""
    above = jnp.where(targets > floor, targets, jnp.inf)
    tight = jnp.min(above)
    return jnp.where(jnp.isfinite(tight), tight, floor)


def _advance(c, solver, st, ok, fac, h, tn, thC, k, new, dC, ehC, r, quant, vjp_r) -> _State:
    """The state after a step: on acceptance the new time, displacement, history, suprema,
    saves and per-step record, and the split moved when it is due; either way the next
    step's size and the counters."""
    loss = 0.5 * jnp.vdot(r, r)
    save, D = jax.lax.cond(
        ok,
        lambda: _saves(c, st, vjp_r, tn, h, thC, k, new),
        lambda: (st.save, st.D),
    )
    row = jnp.concatenate([jnp.stack([tn, loss]), quant[2:3], quant[1:2], quant[0:1]])
    log = jnp.where(ok, st.log.at[jnp.minimum(st.accepted, st.log.shape[0] - 1)].set(row), st.log)

    def pick(a, b):
        return jax.tree_util.tree_map(lambda x, y: jnp.where(ok, x, y), a, b)

    nxt = _State(
        t=jnp.where(ok, tn, st.t),
        h=h * fac,
        d=pick(dC, st.d),
        ehat=pick(ehC, st.ehat),
        split=st.split,
        hist=pick(new, st.hist),
        sups=pick(jnp.maximum(st.sups, quant), st.sups),
        steps=st.steps + 1,
        accepted=st.accepted + ok,
        since=st.since + ok,
        refreshes=st.refreshes,
        save=save,
        D=D,
        log=log,
        meter=st.meter,
    )
    due = ok & (nxt.since >= solver.refresh_every) & (tn < c.ts[-1])
    return jax.lax.cond(due, lambda s: _refresh(c, s, s.d), lambda s: s, nxt)


@eqx.filter_jit
def _solve(
    problem: Problem,
    solver: ExponentialAdams,
    lam0: Float[Array, " n"],
    V0: Float[Array, "n n"],
    ts: Float[Array, " s"],
    tol: Float[Array, " 4"],
    scales: Float[Array, " 3"],
    h0: Float[Array, ""],
    dtmin: Float[Array, ""],
    max_steps: int,
    meter: diffrax.AbstractProgressMeter,
) -> _State:
    pr = problem
    alpha = pr.alpha_array
    dtype = pr.w0.dtype
    p, n, Q = pr.p, lam0.shape[0], solver.order + 1
    r0 = pr.r0
    _, jvp0 = jax.linearize(pr.f, pr.w0)
    vjp0 = jax.linear_transpose(jvp0, pr.w0)
    c = _Consts(pr, alpha * alpha, lam0, V0, V0.T @ r0, ts, tol, scales, jnp.linalg.norm(r0))
    # At t = 0 the newest node is w0, where N_0 = F(w0) − F_0(w0) = 0: g = F(w0), a = αr0.
    (g0,) = vjp0(-alpha * r0)
    zeros_qp, zeros_qn = jnp.zeros((Q, p), dtype), jnp.zeros((Q, n), dtype)
    hist = _History(
        jnp.zeros(Q, dtype),
        zeros_qp.at[0].set(g0),
        zeros_qn.at[0].set(alpha * r0),
        zeros_qn,
        zeros_qp,
        jnp.ones((), jnp.int32),
    )
    zero, izero = jnp.zeros((), dtype), jnp.zeros((), jnp.int32)
    st = _State(
        t=zero,
        h=h0.astype(dtype),
        d=jnp.zeros(p, dtype),
        ehat=jnp.zeros(n, dtype),
        split=_Split(zero, jnp.zeros(p, dtype), lam0, V0, c.r0h),
        hist=hist,
        sups=jnp.zeros(3, dtype),
        steps=izero,
        accepted=izero,
        since=izero,
        refreshes=izero,
        save=jnp.ones((), jnp.int32),
        D=jnp.zeros((ts.shape[0], p), dtype),
        log=jnp.full((max_steps, 5), jnp.nan, dtype),
        meter=meter.init(),
    )
    t1 = ts[-1]

    def going(s: _State):
        return (s.t < t1) & (s.steps < max_steps) & (s.h >= dtmin)

    def body(s: _State) -> _State:
        s = _step(c, solver, vjp0, s)
        return dataclasses.replace(s, meter=meter.step(s.meter, s.t / t1))

    st = jax.lax.while_loop(going, body, st)
    meter.close(st.meter)
    return st


@dataclasses.dataclass(frozen=True, eq=False)
class AdamsSolve:
    """One exponential Adams solve, on the host: the displacements at the save times
    (NaN rows where not reached), the per-step record `(t, loss, ‖δ‖, gap_f, gap_w)` of
    accepted steps, diffrax's `result` code for how it ended, the suprema
    `(gap_w, gap_f, dist)`, what each step's local error was held to at the end, in `w`
    and in the residual (`targets`, `_local_targets`), the step counts, the moves of the
    split and the wall time."""

    deltas: np.ndarray
    steps: np.ndarray
    result: Any
    sups: tuple[float, float, float]
    targets: tuple[float, float]
    num_steps: int
    num_accepted_steps: int
    refreshes: int
    wall_s: float


def solve_adams(
    problem: Problem,
    solver: ExponentialAdams,
    lam0: Any,
    V0: Any,
    ts: np.ndarray,
    accuracy: Accuracy,
    *,
    h0: float,
    dtmin: float,
    max_steps: int,
    meter: diffrax.AbstractProgressMeter,
) -> AdamsSolve:
    """Integrate the squared-loss gradient flow over `ts` (from 0) with `solver`, from
    `K0 = V0 diag(lam0) V0ᵀ`, holding local errors to `accuracy`."""
    if not problem.squared:
        raise ValueError(
            "solver='adams' integrates the squared loss's gradient flow (its local tangent "
            f"path is in closed form); the loss is {problem.loss_name!r}: use "
            "solver='exponential' or 'auto'"
        )
    dtype = problem.dtype

    def arr(x):
        return jnp.asarray(x, dtype)

    tau = accuracy.tau
    tol = arr([accuracy.gap * tau, accuracy.dist * tau, accuracy.loss * tau, accuracy.floor])
    start = time.perf_counter()
    st = _solve(
        problem,
        solver,
        jnp.maximum(arr(lam0), 0.0),
        arr(V0),
        arr(ts),
        tol,
        arr(accuracy.scales),
        arr(h0),
        arr(dtmin),
        max_steps,
        meter,
    )
    jax.block_until_ready(st.D)
    wall = time.perf_counter() - start
    deltas = np.array(st.D, dtype=np.float64)
    deltas[int(st.save) :] = np.nan
    log = np.asarray(st.log)
    log = log[np.isfinite(log[:, 0])]
    if bool(st.t >= arr(ts)[-1]):  # (in the problem's dtype, as the loop compared)
        result = diffrax.RESULTS.successful
    elif int(st.steps) >= max_steps:
        result = diffrax.RESULTS.max_steps_reached
    else:
        result = diffrax.RESULTS.internal_error  # the step fell below dtmin: non-finite ahead
    sups = np.asarray(st.sups)
    nr0 = jnp.linalg.norm(problem.r0)
    sc_e, sc_f = _local_targets(tol, jnp.maximum(st.sups, arr(accuracy.scales)), nr0)
    return AdamsSolve(
        deltas=deltas,
        steps=log,
        result=result,
        sups=(float(sups[0]), float(sups[1]), float(sups[2])),
        targets=(float(sc_e), float(sc_f)),
        num_steps=int(st.steps),
        num_accepted_steps=int(st.accepted),
        refreshes=int(st.refreshes),
        wall_s=wall,
    )
