"""`gradient_descent`: the outputs of a network linearised in its kernel and trained by
gradient flow, with or without momentum, on any loss (docs/theory.md, "Any loss, and
momentum"), with neural-tangents' signature; solved by diffrax to tight tolerances."""

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax
import jax
import jax.numpy as jnp

from ._layout import Layout, as_matrix, finite_times
from ._mse import check_outputs

# The solve's tolerances (float64): far below neural-tangents' odeint (1.4e-8).
RTOL, ATOL = 1e-11, 1e-13


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ODEState:
    """The outputs on the training and test points (`fx_train`, `fx_test`) and, with
    momentum, their velocities (`qx_train`, `qx_test`), as neural-tangents' `ODEState`."""

    fx_train: Any = None
    fx_test: Any = None
    qx_train: Any = None
    qx_test: Any = None


def gradient_descent(
    loss: Callable[[Any, Any], Any],
    k_train_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    trace_axes: Any = (-1,),
) -> Callable[..., Any]:
    """The outputs under gradient flow on `loss(f(X), y)` of a network linearised in its
    kernel `K`: `df(X)/dτ = −K ∇_f loss`, `df(X*)/dτ = −K(X*, X) ∇_f loss` with
    `τ = ηt`; with `momentum = m`, the heavy ball `d²f/dτ² = −K ∇_f loss + c df/dτ` with
    `c = (m − 1)/√η` and `τ = √η t` (neural-tangents' continuous-time momentum).

    **Arguments** (neural-tangents 0.6.5's): `loss(fx, y_hat)` (a scalar), the kernel on
    the training points, `y_train`, `learning_rate`, `momentum`, `trace_axes`.

    **Returns:** `predict_fn(t, fx_train_or_state_0=0., fx_test_0=None,
    k_test_train=None)`: the outputs at the increasing times `t` (leading axes), as
    neural-tangents returns them, or an `ODEState` when given one. Differs from
    neural-tangents in the solver (diffrax's Dopri8 at `rtol=1e-11`, against JAX's
    `odeint` at `1.4e-8`) and in refusing `t=None` (`t = ∞` is not reached by an ODE
    solve; `gradient_descent_mse` gives it for the squared loss).
    """
    y = jnp.asarray(y_train)
    layout = Layout.of(y, trace_axes)
    K = as_matrix(k_train_train)
    grad_loss = jax.grad(lambda fx: loss(fx, y))
    scale = learning_rate**0.5 if momentum is not None else learning_rate
    friction = None if momentum is None else (momentum - 1.0) / scale

    def flow(k_test: Any, test_shape: tuple[int, ...] | None) -> Callable:
        def pull(kernel: jnp.ndarray, g: jnp.ndarray, shape: tuple[int, ...]) -> jnp.ndarray:
            return -layout.array(kernel @ layout.matrix(g), *layout.sizes(shape))

        def field(t: Any, s: ODEState, args: Any) -> ODEState:
            g = grad_loss(s.fx_train)
            force_train = pull(K, g, y.shape)
            force_test = None if test_shape is None else pull(k_test, g, test_shape)
            if friction is None:
                return ODEState(force_train, force_test)
            force_train = force_train + friction * s.qx_train
            if force_test is not None:
                force_test = force_test + friction * s.qx_test
            return ODEState(s.qx_train, s.qx_test, force_train, force_test)

        return field

    def predict_fn(
        t: Any = None,
        fx_train_or_state_0: Any = 0.0,
        fx_test_0: Any = None,
        k_test_train: Any = None,
    ) -> Any:
        if t is None:
            raise ValueError(
                "t=None (t = ∞) is not reached by an ODE solve: give finite times (for the "
                "squared loss, gradient_descent_mse gives t = ∞ in closed form)"
            )
        given_state = isinstance(fx_train_or_state_0, ODEState)
        state = _initial(fx_train_or_state_0, fx_test_0, y, friction)
        check_outputs(state.fx_train, state.fx_test, k_test_train)
        times = finite_times(t) * scale
        k_test = None if state.fx_test is None else as_matrix(k_test_train)
        field = flow(k_test, None if state.fx_test is None else state.fx_test.shape)
        ts = times.reshape(-1)
        if ts.size > 1 and not bool(jnp.all(jnp.diff(ts) > 0)):
            raise ValueError(f"t must be strictly increasing, got t={t!r}")
        out = _solve(field, state, ts)
        out = jax.tree_util.tree_map(lambda a: a.reshape(times.shape + a.shape[1:]), out)
        if given_state:
            return out
        train = None if fx_train_or_state_0 is None else out.fx_train
        if fx_test_0 is None:
            return train
        return out.fx_test if train is None else (train, out.fx_test)

    return predict_fn


def _initial(start: Any, fx_test_0: Any, y: jnp.ndarray, friction: Any) -> ODEState:
    """The state at `t = 0`: outputs broadcast to their shapes, velocities 0 unless given."""
    if isinstance(start, ODEState):
        fx_train, fx_test, q_train, q_test = (
            start.fx_train,
            start.fx_test,
            start.qx_train,
            start.qx_test,
        )
    else:
        fx_train, fx_test, q_train, q_test = start, fx_test_0, None, None
    fx_train = jnp.zeros_like(y) if fx_train is None else jnp.broadcast_to(fx_train, y.shape)
    if fx_test is not None:
        fx_test = jnp.asarray(fx_test, y.dtype)
    if friction is None:
        if q_train is not None or q_test is not None:
            raise ValueError("velocities (qx_train, qx_test) were given, but momentum is None")
        return ODEState(fx_train, fx_test)
    q_train = jnp.zeros_like(y) if q_train is None else jnp.broadcast_to(q_train, y.shape)
    if fx_test is not None:
        q_test = (
            jnp.zeros_like(fx_test) if q_test is None else jnp.broadcast_to(q_test, fx_test.shape)
        )
    return ODEState(fx_train, fx_test, q_train, q_test)


def _solve(field: Callable, state: ODEState, ts: jnp.ndarray) -> ODEState:
    """`state` carried to each of the increasing times `ts` (from 0) by Dopri8."""
    if float(ts[-1]) == 0.0:
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, ts.shape + a.shape), state)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        t0=0.0,
        t1=float(ts[-1]),
        dt0=None,
        y0=state,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
        max_steps=1_000_000,
    )
    assert sol.ys is not None
    return sol.ys
