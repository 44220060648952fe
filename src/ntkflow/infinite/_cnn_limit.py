"""The infinite-channel NNGP and NTK of ntkflow's `CNN` (docs/theory.md, "Convolutional
networks"): the layer recursion on the covariance between every pair of pixels of two
images (global average pooling needs them all), or only between the same pixel of both
(flatten: the convolutions never mix pixel offsets, so the diagonal suffices)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..datasets import Dataset
from ..models._cnn import CNN, conv_geometry
from ._layer import Layer, check_activation, layer_for, nodes, probe_layer


def _images(x: Any, name: str) -> np.ndarray:
    X = np.asarray(x.X if isinstance(x, Dataset) else x)
    if X.ndim != 4 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(
            f"{name} must be images (n, H, W, C) for a CNN, got shape {X.shape}; "
            "datasets.digits(..., images=True) gives them"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} has non-finite entries; remove or impute them")
    return X


def _window(K: jnp.ndarray, model: CNN, full: bool) -> jnp.ndarray:
    """A convolution's map of covariances (`model`'s window, strides and padding): the
    mean over the window's offsets `d` of `K[p·s + d, p'·s + d]` (input positions,
    shifted by the padding), positions outside the image (zero padding) contributing 0.
    `K` is `(…, H, W, H, W)` (`full`) or `(…, H, W)` (the diagonal)."""
    H, W = (K.shape[-4], K.shape[-3]) if full else (K.shape[-2], K.shape[-1])
    geometry = [
        conv_geometry(size, k, s, model.padding)
        for size, k, s in zip((H, W), model.kernel_size, model.strides, strict=True)
    ]
    pads = [(lo, hi) for _, lo, hi in geometry]
    lead = K.ndim - (4 if full else 2)
    padded = jnp.pad(K, [(0, 0)] * lead + pads * (2 if full else 1))
    total = None
    for a in range(model.kernel_size[0]):
        for b in range(model.kernel_size[1]):
            rows, cols = (
                slice(d, d + s * (out - 1) + 1, s)
                for d, s, (out, _, _) in zip((a, b), model.strides, geometry, strict=True)
            )
            part = padded[..., rows, cols, rows, cols] if full else padded[..., rows, cols]
            total = part if total is None else total + part
    assert total is not None
    return total / (model.kernel_size[0] * model.kernel_size[1])


def _pool(K: jnp.ndarray, model: CNN) -> jnp.ndarray:
    """Average pooling's map of a full covariance `(…, H, W, H, W)`: the mean over both
    windows, `K'[q, q'] = mean_{e, e'} K[q·p + e, q'·p + e']` (it mixes pixel offsets,
    so a model with pooling keeps every pixel pair)."""
    if model.pool is None:
        return K
    (ph, pw), lead = model.pool, K.ndim - 4
    H, W = K.shape[-4] // ph, K.shape[-3] // pw
    K = K[..., : H * ph, : W * pw, : H * ph, : W * pw]
    K = K.reshape(*K.shape[:lead], H, ph, W, pw, H, ph, W, pw)
    return jnp.mean(K, axis=tuple(lead + i for i in (1, 3, 5, 7)))


def _full(model: CNN) -> bool:
    """Whether the recursion needs every pixel pair: global average pooling or pooling
    layers mix positions; otherwise only the same pixel of both images is needed."""
    return model.readout == "pool" or model.pool is not None


def identities(X1: np.ndarray, X2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An id per point of `X1` and of `X2` (any shape per point), equal exactly where
    two points are equal: which pairs to pin at angle 0."""
    n1 = X1.shape[0]
    flat = np.concatenate([X1.reshape(n1, -1), X2.reshape(X2.shape[0], -1)])
    ids = np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)
    return ids[:n1], ids[n1:]


def _input_covariance(X1: jnp.ndarray, X2: jnp.ndarray, full: bool) -> jnp.ndarray:
    """`x_p · x'_p' / C` over the pairs of pixels (`full`), or the same pixel only."""
    C = X1.shape[-1]
    if full:
        return jnp.einsum("ihwc,jxyc->ijhwxy", X1, X2) / C
    return jnp.einsum("ihwc,jhwc->ijhw", X1, X2) / C


def _diagonal(K: jnp.ndarray) -> jnp.ndarray:
    """`K[…, p, p]` of a full covariance `(…, H, W, H, W)`: `(…, H, W)`."""
    H, W = K.shape[-2], K.shape[-1]
    flat = K.reshape(*K.shape[:-4], H * W, H * W)
    return jnp.diagonal(flat, axis1=-2, axis2=-1).reshape(*K.shape[:-4], H, W)


def _own(v: jnp.ndarray, full: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """An image's variances `(n, H, W)` at both ends of each entry of its own
    covariance: `(n, H, W, 1, 1)` and `(n, 1, 1, H, W)` (`full`), else itself twice."""
    return (v[:, :, :, None, None], v[:, None, None, :, :]) if full else (v, v)


def _pairs(v1: jnp.ndarray, v2: jnp.ndarray, full: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The variances of both images at each entry of their covariance `(n1, n2, …)`."""
    if full:
        return v1[:, None, :, :, None, None], v2[None, :, None, None, :, :]
    return v1[:, None], v2[None, :]


@eqx.filter_jit
def _variances(model: CNN, layer: Layer, X: jnp.ndarray) -> tuple[list, list | None]:
    """Each image's pre-activation variance at every position of every layer,
    `(n, H_l, W_l)`, and their error bounds (`None` for a closed form): from each image's
    covariance with itself over its pixel pairs when positions mix (`_full`), else from
    the same pixel only. Compiled, as `_rows` is, so that both round alike."""
    bias2 = 1.0 if model.bias else 0.0
    full, quad = _full(model), layer.quadrature
    if full:
        cov = jnp.einsum("ihwc,ixyc->ihwxy", X, X) / X.shape[-1]
    else:
        cov = jnp.einsum("ihwc,ihwc->ihw", X, X) / X.shape[-1]
    err = jnp.zeros_like(cov) if quad else None
    out, errs = [], []
    for _ in model.channels:
        sigma = _window(cov, model, full) + bias2
        var = _diagonal(sigma) if full else sigma
        out.append(var)
        (a, b), ea, eb, e_sigma = _own(var, full), None, None, None
        if err is not None:
            e_sigma = _window(err, model, full)
            errs.append(_diagonal(e_sigma) if full else e_sigma)
            ea, eb = _own(errs[-1], full)
        cov, _, err, _ = layer(a, b, sigma, ea, eb, e_sigma)
        if full:
            cov = _pool(cov, model)
            err = None if err is None else _pool(err, model)
    return out, errs if quad else None


def _top_variance(model: CNN, probe: Layer, images: list[np.ndarray]) -> float:
    """An estimate of the largest pre-activation variance at any layer: the first
    layer's exactly, then `max_{a ≤ V} E[σ(√a z)²] + β²` per layer (windows and pooling
    average, and `|Cov| ≤` the larger variance). Only to choose the quadrature's grid:
    its bound is then computed at the actual inputs."""
    bias2 = 1.0 if model.bias else 0.0
    top = bias2 + max(
        float(jnp.max(_window(jnp.einsum("ihwc,ihwc->ihw", X, X) / X.shape[-1], model, False)))
        for X in images
    )
    tops = [top]
    for _ in model.channels[1:]:
        a = jnp.linspace(0.0, tops[-1], 65)
        tops.append(float(jnp.max(probe(a, a, a, None, None, None)[0])) + bias2)
    return max(tops)


def _pinned(sigma: jnp.ndarray, var: jnp.ndarray, full: bool, same: jnp.ndarray) -> jnp.ndarray:
    """`sigma` with the covariance of two identical images (`same`, `(n1, n2)`) at one
    position set to the first one's variance `var` `(n1, H, W)` (the second's is equal):
    their angle there is then exactly 0, whatever order the compiled sums took."""
    if not full:
        return jnp.where(same[:, :, None, None], var[:, None], sigma)
    H, W = var.shape[1:]
    diagonal = jnp.eye(H * W, dtype=bool).reshape(1, 1, H, W, H, W)
    mask = same[:, :, None, None, None, None] & diagonal
    return jnp.where(mask, var[:, None, :, :, None, None], sigma)


def _readout(model: CNN, full: bool, *maps: jnp.ndarray) -> list[jnp.ndarray]:
    """Each of the last layer's maps `(n1, n2, …)` averaged over the positions the
    readout pairs: the same position of both images (flatten) or all pairs (pooling)."""
    if full and model.readout == "flatten":
        maps = tuple(_diagonal(m) for m in maps)
    return [jnp.mean(m, axis=tuple(range(2, m.ndim))) for m in maps]


@eqx.filter_jit
def _rows(
    model: CNN,
    layer: Layer,
    X1: jnp.ndarray,
    X2: jnp.ndarray,
    var1: tuple[list, list | None],
    var2: tuple[list, list | None],
    same: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None, jnp.ndarray | None]:
    """The NNGP and NTK between the images `X1` and `X2` (`var1`, `var2`: their
    variances and error bounds from `_variances`), and the bounds on their errors (`None`
    for a closed form: docs/theory.md, "Errors through the layers"; windows and pooling
    are averages, so an entrywise bound passes through them); `same` `(n1, n2)`: which
    pairs are the same image.

    Compiled once per block shape, as `_variances` is: the two must round alike. With
    the variances computed op by op and this compiled, the NTK moved by 3e-11 relative
    on 1,024 digits (flatten, ReLU) from neural-tangents', while compiled alike they
    agree to 5e-16: a position's variance and the covariance of a matching patch (the
    digits' zero background) must be the same number, or ReLU's dual turns the ulp
    between them, at angle 0, into about 1e-8.
    """
    full = _full(model)
    bias2 = 1.0 if model.bias else 0.0
    cov = _input_covariance(X1, X2, full)
    err = jnp.zeros_like(cov) if layer.quadrature else None
    through = e_through = None  # the NTK of the layer's input (none for the image)
    for i in range(len(model.channels)):
        sigma = _window(cov, model, full) + bias2
        sigma = _pinned(sigma, var1[0][i], full, same)  # (ReLU's angle 0, exactly)
        theta = sigma if through is None else sigma + _window(through, model, full)
        a, b = _pairs(var1[0][i], var2[0][i], full)
        if err is None:
            cov, slope, _, _ = layer(a, b, sigma, None, None, None)
        else:
            e1, e2 = var1[1], var2[1]
            assert e1 is not None and e2 is not None
            e_sigma = _pinned(_window(err, model, full), e1[i], full, same)
            e_theta = e_sigma if e_through is None else e_sigma + _window(e_through, model, full)
            cov, slope, err, e_slope = layer(a, b, sigma, *_pairs(e1[i], e2[i], full), e_sigma)
            assert err is not None and e_slope is not None
            e_through = jnp.abs(theta) * e_slope + e_theta * (jnp.abs(slope) + e_slope)
        through = theta * slope
        if full:
            cov, through = _pool(cov, model), _pool(through, model)
            if err is not None and e_through is not None:
                err, e_through = _pool(err, model), _pool(e_through, model)
    assert through is not None
    nngp, last = _readout(model, full, cov, through)
    nngp = nngp + bias2
    if err is None or e_through is None:
        return nngp, nngp + last, None, None
    e_nngp, e_last = _readout(model, full, err, e_through)
    return nngp, nngp + last, e_nngp, e_nngp + e_last


def cnn_kernels(
    model: CNN,
    x1: Any,
    x2: Any,
    *,
    tol: float,
    method: str,
    block: int | None,
    budget: int,
    blocks: Callable,
) -> tuple[jnp.ndarray, jnp.ndarray, Layer, tuple[float, float] | None]:
    """The `(n1, n2)` NNGP and NTK of `model` between the images `x1` and `x2`, the
    activation step used (`_layer.layer_for`: closed form or quadrature to `tol`) and
    the largest bounds on their entries' errors (`None` for a closed form), in row blocks
    of `block` images of `x1` (default: as many as fit `budget` bytes per array), each
    through `blocks(n1, block, one)` (`_infinite._blocks`)."""
    check_activation(model.activation)
    X1 = _images(x1, "x1")
    X2 = X1 if x2 is None else _images(x2, "x2")
    if X1.shape[1:] != X2.shape[1:]:
        raise ValueError(
            f"x1 and x2 must be images of one shape, got {X1.shape[1:]} and {X2.shape[1:]}"
        )
    model.feature_maps(X1.shape[1:])  # (a map left empty: its message, before any work)
    dtype = jnp.result_type(float)
    X1, X2 = np.asarray(X1, dtype), np.asarray(X2, dtype)
    probe = probe_layer(model.activation)
    layer = layer_for(
        model.activation, lambda: _top_variance(model, probe, [X1, X2]), tol=tol, method=method
    )
    X2j = jnp.asarray(X2)
    var1 = _variances(model, layer, jnp.asarray(X1))
    var2 = var1 if x2 is None else _variances(model, layer, X2j)
    n1, n2 = X1.shape[0], X2.shape[0]
    ids1, ids2 = identities(X1, X2)
    pixels = X1.shape[1] * X1.shape[2]
    per_row = 8 * n2 * pixels * (pixels if _full(model) else 1)
    per_row *= 8 * nodes(layer) if layer.quadrature else 1
    if block is None:
        block = max(1, min(n1, budget // per_row))
    nngp, ntk = np.empty((n1, n2)), np.empty((n1, n2))
    en = et = 0.0

    def one(rows: slice) -> Any:
        v1 = ([u[rows] for u in var1[0]], None if var1[1] is None else [u[rows] for u in var1[1]])
        same = jnp.asarray(ids1[rows][:, None] == ids2[None, :])
        return _rows(model, layer, jnp.asarray(X1[rows]), X2j, v1, var2, same)

    for rows, (k, theta, ek, etheta) in blocks(n1, block, one):
        nngp[rows], ntk[rows] = np.asarray(k), np.asarray(theta)
        if ek is not None:
            en, et = max(en, float(jnp.max(ek))), max(et, float(jnp.max(etheta)))
    errors = (en, et) if layer.quadrature else None
    return jnp.asarray(nngp), jnp.asarray(ntk), layer, errors
