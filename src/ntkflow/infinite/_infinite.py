"""The infinite-width NNGP and NTK of `MLP` and `Shallow` (docs/theory.md, "The
infinite-width limit").

In NTK parametrisation every pre-activation of a fully connected network becomes, as the
widths grow, a centred Gaussian process over the inputs, and the tangent kernel becomes
deterministic (Jacot, Gabriel & Hongler 2018; Lee et al. 2019). For `MLP` (`z_1 =
W_1 x/√d + b_1`, weights and biases `N(0, 1)`, `β² = 1` with biases, else 0):

    Σ_1(x, x') = x·x'/d + β²,                      Θ_1 = Σ_1,
    Σ_{l+1} = E[σ(u)σ(v)] + β²,                    Θ_{l+1} = Σ_{l+1} + Θ_l · E[σ'(u)σ'(v)],

with `(u, v) ~ N(0, Σ_l on {x, x'})`, one step per hidden layer; `Σ_L` is the NNGP and `Θ_L`
the NTK of each output. `Shallow` (`m^{-1/2} Σ_j a_j σ(w_jᵀx)`, `w_j ~ N(0, I)`, `a_j = ±1`)
is one step from `Σ_1 = x·x'`: NNGP `E[σσ]`, NTK `x·x'·E[σ'σ']` (+ `E[σσ]` when `a` is
trained). The expectations come from `_dual.py` (closed forms) or `_dual_quadrature.py`
(bounded quadrature), whose bounds are carried through the layers here.
"""

import dataclasses
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._repr import concise
from ..datasets import Dataset
from ..models import CNN, MLP, AbstractModel, Shallow
from ._cnn_limit import cnn_kernels, identities
from ._layer import Layer, check_activation, check_settings, describe, layer_for, nodes, probe_layer

# Block rows so that the largest temporary stays near this many bytes.
BLOCK_BYTES = 256 * 2**20


@concise
@dataclasses.dataclass(frozen=True)
class InfiniteKernel:
    """The infinite-width kernels of a model between the points `x1` and `x2`.

    **Fields:**

    - `nngp`, `ntk`: `(n1, n2)` arrays, per output (a model with `k` outputs has the
      kernels `nngp ⊗ I_k`, `ntk ⊗ I_k` in the limit).
    - `nngp_error`, `ntk_error`: bounds on the largest entrywise error of the quadrature
      and its propagation through the layers; `None` when every expectation is a closed
      form (then only floating-point rounding separates them from the exact values).
    - `method`: `"closed form"` or a description of the quadrature grid.
    - `model`: the model's description (`describe()`).
    """

    nngp: Float[Array, "n1 n2"]
    ntk: Float[Array, "n1 n2"]
    nngp_error: float | None
    ntk_error: float | None
    method: str
    model: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Recursion:
    """A fully connected network's recursion: input scale, `β²`, number of activation
    steps, and whether the readout is trained (its `Σ_L` term in `Θ_L`)."""

    scale: float
    bias2: float
    steps: int
    readout_trained: bool


def _recursion(model: Any, d: int) -> _Recursion:
    if isinstance(model, MLP):
        return _Recursion(1.0 / d, 1.0 if model.bias else 0.0, len(model.widths), True)
    if isinstance(model, Shallow):
        return _Recursion(1.0, 0.0, 1, model.train == "all")
    raise ValueError(
        f"infinite_kernel covers MLP, Shallow and CNN, got model={type(model).__name__}; the "
        "limit of other models is not implemented"
    )


def _points(x: Any, name: str) -> np.ndarray:
    X = x.X if isinstance(x, Dataset) else x
    X = np.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(
            f"{name} must be a 2-D array (n, d) of inputs or a Dataset of vectors, got "
            f"shape {X.shape}; flatten images to vectors"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} has non-finite entries; remove or impute them")
    return X


@eqx.filter_jit
def _block(layer: Layer, rec: _Recursion, X1, X2, a1, a2, e1, e2, id1, id2):
    """The kernels on rows `X1` × `X2` (`a1`, `a2`: the points' variances at every step,
    `e1`, `e2`: their error bounds, or `None`). Pairs of identical points (equal ids)
    have their covariance set to the variance at every step, so that their angle is
    exactly 0: rounding in `x·x'` would otherwise leave `θ ≈ 1e-8` in ReLU's dual."""
    c = rec.scale * (X1 @ X2.T) + rec.bias2
    same = id1[:, None] == id2[None, :]
    theta, ec, etheta = c, None, None
    quad = layer.quadrature
    if quad:
        ec = etheta = jnp.zeros_like(c)
    for step in range(rec.steps):
        a, b = a1[step][:, None], a2[step][None, :]
        ea = eb = None
        c = jnp.where(same, a, c)
        if quad:
            ea, eb = e1[step][:, None], e2[step][None, :]
            ec = jnp.where(same, ea, jnp.asarray(ec))
        v, dv, ev, edv = layer(a, b, c, ea, eb, ec)
        last = step == rec.steps - 1
        c = v + rec.bias2
        head = c if (rec.readout_trained or not last) else 0.0
        new_theta = head + theta * dv
        if quad:
            assert ev is not None and edv is not None and etheta is not None
            head_e = ev if (rec.readout_trained or not last) else 0.0
            etheta = head_e + jnp.abs(theta) * edv + etheta * (jnp.abs(dv) + edv)
            ec = ev
        theta = new_theta
    return c, theta, ec, etheta


def _variances(layer: Layer, rec: _Recursion, X: np.ndarray):
    """Each point's variance at the input of every activation step, and its bound."""
    a = jnp.asarray(rec.scale * np.sum(X * X, axis=1) + rec.bias2)
    quad = layer.quadrature
    e = jnp.zeros_like(a)
    out, errs = [], []
    for _ in range(rec.steps):
        out.append(a)
        errs.append(e)
        v, _, ev, _ = layer(a, a, a, e, e, e)
        a = v + rec.bias2
        if quad:
            e = ev
    return out, errs


def _checked(model: AbstractModel, x1: Any, x2: Any) -> tuple:
    """`infinite_kernel`'s inputs as arrays, the model's recursion and its activation.

    **Raises:** `ValueError` naming the argument and the fix."""
    X1 = _points(x1, "x1")
    X2 = X1 if x2 is None else _points(x2, "x2")
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same dimension, got {X1.shape[1]} and {X2.shape[1]}"
        )
    rec = _recursion(model, X1.shape[1])
    act = model.activation  # pyright: ignore[reportAttributeAccessIssue]  (MLP or Shallow)
    check_activation(act)
    return X1, X2, rec, act


def _blocks(n1: int, block: int, progress: bool, one: Any) -> Any:
    """`(rows, one(rows))` for each block of `block` rows of `n1`, with a progress bar."""
    starts = range(0, n1, block)
    bar = task = None
    if progress:
        from .._progress import rich_bar

        bar = rich_bar(counts=True)
        bar.start()
        task = bar.add_task("infinite-width kernel", total=len(starts))
    try:
        for i in starts:
            rows = slice(i, min(i + block, n1))
            yield rows, one(rows)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()


def infinite_kernel(
    model: AbstractModel,
    x1: ArrayLike | Dataset,
    x2: ArrayLike | Dataset | None = None,
    *,
    method: str = "auto",
    tol: float = 1e-12,
    block: int | None = None,
    progress: bool = False,
) -> InfiniteKernel:
    """The infinite-width NNGP and NTK of `model` between `x1` and `x2` (`x2=None`: `x1`
    itself), in ntkflow's NTK parametrisation — the same kernels as neural-tangents'
    `stax.serial(Dense(W_std=1, b_std=1 or None, parameterization="ntk"), act, …)`.

    ReLU, erf, GELU and sin are closed forms; every other built-in activation is a
    trapezoidal quadrature whose error bound (propagated through the layers) is below
    `tol` per expectation and is reported (docs/theory.md, "Quadrature with a bound").

    **Arguments:**

    - `model`: an `MLP` (any depth, with or without biases), a `Shallow`, or a `CNN`
      (any strides, `SAME` or `VALID` padding, average pooling layers, flatten or
      global-average-pooling readout, with or without biases; any of the activations
      above: docs/theory.md, "Convolutional networks"), the same kernels as
      `stax.Conv(C, (k_h, k_w), strides, padding, parameterization="ntk")` layers,
      `AvgPool(q, q)` and `Flatten()`/`GlobalAvgPool()`.
    - `x1`, `x2`: inputs `(n, d)`, or `Dataset`s of vectors; images `(n, H, W, C)` for
      a `CNN`.
    - `method`: `"auto"` (closed forms where they exist, else the quadrature) or
      `"quadrature"` (the quadrature even where a closed form exists: a check).
    - `tol`: the quadrature's target error per expectation (absolute).
    - `block`: rows of `x1` per compiled call (default: as many as fit 256 MiB).
    - `progress`: a progress bar over the blocks.

    **Raises:** `ValueError` for other models, activations without a closed form or a
    known analytic strip (custom ones), inputs that are not finite 2-D arrays, or
    mismatched dimensions.
    """
    check_settings(method, tol)
    if isinstance(model, CNN):
        nngp, ntk, layer, errors = cnn_kernels(
            model,
            x1,
            x2,
            tol=tol,
            method=method,
            block=block,
            budget=BLOCK_BYTES,
            blocks=lambda n, b, one: _blocks(n, b, progress, one),
        )
        en, et = errors if errors is not None else (None, None)
        return InfiniteKernel(nngp, ntk, en, et, describe(layer, tol), model.describe())
    X1, X2, rec, act = _checked(model, x1, x2)
    dtype = jnp.result_type(float)
    X1j, X2j = jnp.asarray(X1, dtype), jnp.asarray(X2, dtype)

    def top() -> float:  # (the quadrature's grid, from the variances estimated by `Probe`)
        probe = probe_layer(act)
        return max(float(jnp.max(v)) for X in (X1, X2) for v in _variances(probe, rec, X)[0])

    layer = layer_for(act, top, tol=tol, method=method)
    a1, e1 = _variances(layer, rec, X1)
    a2, e2 = (a1, e1) if x2 is None else _variances(layer, rec, X2)
    quad = layer.quadrature
    n1, n2 = X1.shape[0], X2.shape[0]
    ids1, ids2 = (jnp.asarray(i) for i in identities(X1, X2))
    if block is None:
        per_row = 8 * n2 * (8 * nodes(layer) if quad else 16)
        block = max(1, min(n1, BLOCK_BYTES // per_row))
    nngp, ntk = np.empty((n1, n2)), np.empty((n1, n2))
    en = et = 0.0

    def one(rows: slice) -> Any:
        e_rows = [e[rows] for e in e1] if quad else None
        a_rows = [a[rows] for a in a1]
        return _block(
            layer, rec, X1j[rows], X2j, a_rows, a2, e_rows, e2 if quad else None, ids1[rows], ids2
        )

    for rows, (c, theta, ec, etheta) in _blocks(n1, block, progress, one):
        nngp[rows], ntk[rows] = np.asarray(c), np.asarray(theta)
        if ec is not None and etheta is not None:
            en = max(en, float(jnp.max(ec)))
            et = max(et, float(jnp.max(etheta)))
    return InfiniteKernel(
        jnp.asarray(nngp),
        jnp.asarray(ntk),
        en if quad else None,
        et if quad else None,
        describe(layer, tol),
        model.describe(),
    )
