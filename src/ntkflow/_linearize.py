"""`linearize` and `taylor_expand`: a network as its Taylor polynomial in the parameters
around `params` (docs/theory.md, "Predictions in function space"), with
neural-tangents' semantics, to train beside the network itself."""

import math
from collections.abc import Callable
from typing import Any

import jax


def _difference(p: Any, params: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: a - b, p, params)


def linearize(f: Callable[..., Any], params: Any) -> Callable[..., Any]:
    """`f_lin(p, *args, **kwargs) = f(params, …) + ∂f(params, …)·(p − params)`: the
    linearised network `f_0` of the lecture (docs/theory.md, "The two gradient flows"),
    one forward pass and one JVP per call. `f(params, *args, **kwargs)` returns a pytree."""

    def f_lin(p: Any, *args: Any, **kwargs: Any) -> Any:
        value, tangent = jax.jvp(
            lambda w: f(w, *args, **kwargs), (params,), (_difference(p, params),)
        )
        return jax.tree_util.tree_map(lambda a, b: a + b, value, tangent)

    return f_lin


def taylor_expand(f: Callable[..., Any], params: Any, degree: int) -> Callable[..., Any]:
    """`f_tayl(p, …) = Σ_{k=0}^{degree} D^k f(params, …)[δ, …, δ]/k!` with
    `δ = p − params`: the degree-`degree` Taylor polynomial, each directional derivative
    by nested JVPs (`degree = 1` is `linearize`)."""
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an integer ≥ 0, got degree={degree!r}")

    def f_tayl(p: Any, *args: Any, **kwargs: Any) -> Any:
        delta = _difference(p, params)
        term: Callable[[Any], Any] = lambda w: f(w, *args, **kwargs)
        total = term(params)
        for k in range(1, degree + 1):
            term = _along(term, delta)
            total = _plus(total, term(params), 1.0 / math.factorial(k))
        return total

    return f_tayl


def _along(g: Callable[[Any], Any], delta: Any) -> Callable[[Any], Any]:
    """`w ↦ Dg(w)[δ]`, the derivative of `g` along `δ`."""
    return lambda w: jax.jvp(g, (w,), (delta,))[1]


def _plus(a: Any, b: Any, scale: float) -> Any:
    """`a + scale·b`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda x, y: x + scale * y, a, b)
