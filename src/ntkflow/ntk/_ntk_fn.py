"""A drop-in for neural-tangents' `empirical_ntk_fn` on current JAX.

neural-tangents 0.6.5 (its last release) does not import from JAX 0.6 on. Its empirical
kernel function is what most code written against it calls; `empirical_ntk_fn` here has
the same signature, the same output layout and the same values, computed by ntkflow's own
contractions (docs/theory.md, "Notation": `Θ(x, x') = ∂f(x)/∂θ · ∂f(x')/∂θᵀ`).

The layout, for outputs `f(params, x)` of shape `(N, X, Y, …)`: the kernel has, for each
output axis in turn, the pair `(axis of x1, axis of x2)`, except for the axes in
`trace_axes` (averaged over their diagonal, removed) and those in `diagonal_axes` (their
diagonal kept, one axis). The default `trace_axes=(-1,)` on outputs `(N, k)` gives the
`(N1, N2)` kernel averaged over the `k` outputs.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

# neural-tangents' `NtkImplementation` values, and ours.
_IMPLEMENTATIONS = {
    0: "jacobian",  # AUTO
    1: "jacobian",  # JACOBIAN_CONTRACTION
    2: "ntk_vp",  # NTK_VECTOR_PRODUCTS
    3: "jacobian",  # STRUCTURED_DERIVATIVES: a plain function has no layer structure here
    "auto": "jacobian",
    "jacobian": "jacobian",
    "ntk_vp": "ntk_vp",
    "structured": "jacobian",
}


def _axes(axes: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"{name}={axes!r} names axis {a!r}, but the outputs have {ndim} axes; give "
                f"axes in -{ndim}..{ndim - 1}"
            )
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _dims(ndim: int, pdim: int, trace: tuple[int, ...], diag: tuple[int, ...]):
    """einsum index lists for one parameter leaf: `J1` (outputs + parameter axes), `J2`,
    and the output (as neural-tangents orders it)."""
    d1 = list(range(ndim + pdim))
    d2 = list(range(ndim + pdim, 2 * ndim + pdim)) + d1[ndim:]
    out = []
    for i in range(ndim):
        if i in trace:
            d2[i] = d1[i]
        elif i in diag:
            d2[i] = d1[i]
            out.append(d1[i])
        else:
            out += [d1[i], d2[i]]
    return d1, d2, out


def _contract(j1: PyTree, j2: PyTree, out_ndim: int, trace, diag) -> Array:
    total = None
    for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2), strict=True):
        d1, d2, out = _dims(out_ndim, a.ndim - out_ndim, trace, diag)
        term = jnp.einsum(a, d1, b, d2, out)
        total = term if total is None else total + term
    assert total is not None
    return total


def _jacobian(f: Callable, params: PyTree, x: Any, vmap_axes: int | None, kwargs) -> PyTree:
    """`∂f(params, x)/∂params`: leaves of shape `f`'s output + the parameter's shape;
    per point (a `vmap` over `vmap_axes`) when the batch axis is given."""
    if vmap_axes is None:
        return jax.jacrev(lambda p: f(p, x, **kwargs))(params)

    def one(xi):
        xi = jnp.expand_dims(xi, vmap_axes)
        return jax.jacrev(lambda p: jnp.squeeze(f(p, xi, **kwargs), vmap_axes))(params)

    return jax.vmap(one, in_axes=vmap_axes, out_axes=vmap_axes)(x)


def _ntk_vp(f: Callable, params: PyTree, x1: Any, x2: Any, kwargs) -> Array:
    """The full kernel `(out1…, out2…)` from VJPs on `f(x2)` with basis cotangents and
    JVPs on `f(x1)`: `Θ e_j = J1 (J2ᵀ e_j)`."""
    out2, vjp = jax.vjp(lambda p: f(p, x2, **kwargs), params)
    _, lin = jax.linearize(lambda p: f(p, x1, **kwargs), params)
    basis = jnp.eye(out2.size, dtype=out2.dtype).reshape(out2.size, *out2.shape)
    cols = jax.vmap(lambda e: lin(vjp(e)[0]))(basis)  # (size2, out1…)
    return jnp.moveaxis(cols, 0, -1).reshape(*cols.shape[1:], *out2.shape)


def _layout(full: Array, ndim: int, trace, diag) -> Array:
    """neural-tangents' layout from the full kernel `(out1…, out2…)`."""
    d1 = list(range(ndim))
    d2 = list(range(ndim, 2 * ndim))
    out = []
    for i in range(ndim):
        if i in trace or i in diag:
            d2[i] = d1[i]
            if i in diag:
                out.append(d1[i])
        else:
            out += [d1[i], d2[i]]
    return jnp.einsum(full, d1 + d2, out)


def empirical_ntk_fn(
    f: Callable[..., Array],
    trace_axes: int | Sequence[int] = (-1,),
    diagonal_axes: int | Sequence[int] = (),
    vmap_axes: int | None = None,
    implementation: int | str = "auto",
    *,
    batch_size: int | None = None,
) -> Callable[..., Array]:
    """neural-tangents' `empirical_ntk_fn`, on current JAX: returns
    `kernel_fn(x1, x2, params, **apply_fn_kwargs)`.

    Migrating is one line: `from ntkflow import empirical_ntk_fn` in place of
    `nt.empirical_ntk_fn`; arguments, output layout and values are neural-tangents'
    (tested against neural-tangents 0.6.5 to 1e-10 in float64).

    **Arguments:**

    - `f`: `f(params, x, **kwargs)`, outputs an array whose axis 0 is the batch.
    - `trace_axes`: output axes traced over, as a mean (the trace of the kernel's pair of
      them, divided by its size, as neural-tangents does).
    - `diagonal_axes`: output axes whose diagonal is kept (one axis instead of two);
      `diagonal_axes=(0,)` gives per-point kernels (needs `x2=None` or `len(x2) = len(x1)`).
    - `vmap_axes`: the batch axis of `x` and of the outputs when `f` treats points
      independently (the Jacobian is then formed per point, much faster); `None` (the
      default, as in neural-tangents) differentiates the whole batch.
    - `implementation`: neural-tangents' `NtkImplementation` value (0 auto, 1 Jacobian
      contraction, 2 NTK-vector products, 3 structured derivatives) or `"auto"`,
      `"jacobian"`, `"ntk_vp"`, `"structured"`. Structured derivatives need a layer
      structure a plain function does not expose: 3 and `"structured"` compute by
      Jacobian contraction (for ntkflow's own models, `empirical_ntk` has the structured
      kernel).
    - `batch_size`: compute the kernel in blocks of this many points of `x1` and `x2`
      (memory `O(batch_size·p)` for the Jacobians; the batch axis must be neither traced
      nor diagonal); `None`: in one piece.

    `kernel_fn(x1, x2=None, params=…)`: `x2=None` means `x2 = x1` (one Jacobian).

    **Raises:** `ValueError` for an axis outside the outputs' axes, an axis both traced
    and diagonal, an unknown `implementation`, or a bad `batch_size`.
    """
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"implementation={implementation!r} is not one of 0, 1, 2, 3 (neural-tangents' "
            "NtkImplementation) or 'auto', 'jacobian', 'ntk_vp', 'structured'"
        )
    how = _IMPLEMENTATIONS[implementation]
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an integer ≥ 1 or None, got {batch_size!r}")

    def kernel(x1: Any, x2: Any, params: PyTree, kwargs) -> Array:
        out = jax.eval_shape(lambda: f(params, x1, **kwargs))
        ndim = len(out.shape)
        trace = _axes(trace_axes, ndim, "trace_axes")
        diag = _axes(diagonal_axes, ndim, "diagonal_axes")
        if set(trace) & set(diag):
            raise ValueError(
                f"trace_axes={trace_axes!r} and diagonal_axes={diagonal_axes!r} share an "
                "axis; an axis is either traced or kept diagonal"
            )
        same = x2 is None
        x2 = x1 if same else x2
        # neural-tangents' trace is a mean over the traced pairs (the kernel per output).
        scale = 1.0 / math.prod(out.shape[i] for i in trace)
        if how == "ntk_vp":
            return scale * _layout(_ntk_vp(f, params, x1, x2, kwargs), ndim, trace, diag)
        j1 = _jacobian(f, params, x1, vmap_axes, kwargs)
        j2 = j1 if same else _jacobian(f, params, x2, vmap_axes, kwargs)
        return scale * _contract(j1, j2, ndim, trace, diag)

    def kernel_fn(x1: Any, x2: Any = None, params: PyTree = None, **apply_fn_kwargs) -> Array:
        if params is None:
            raise ValueError("kernel_fn(x1, x2, params): params is required (got None)")
        if batch_size is None or (x2 is None and x1.shape[0] <= batch_size):
            return kernel(x1, x2, params, apply_fn_kwargs)
        out = jax.eval_shape(lambda: f(params, x1, **apply_fn_kwargs))
        ndim = len(out.shape)
        if 0 in _axes(trace_axes, ndim, "trace_axes") + _axes(diagonal_axes, ndim, "diagonal_axes"):
            raise ValueError(
                "batch_size blocks the batch axis, which trace_axes or diagonal_axes names; "
                "use batch_size=None"
            )
        y = x1 if x2 is None else x2
        rows = []
        for i in range(0, x1.shape[0], batch_size):
            a = x1[i : i + batch_size]
            row = [
                kernel(a, y[j : j + batch_size], params, apply_fn_kwargs)
                for j in range(0, y.shape[0], batch_size)
            ]
            rows.append(jnp.concatenate(row, axis=1))
        return jnp.concatenate(rows, axis=0)

    return kernel_fn
