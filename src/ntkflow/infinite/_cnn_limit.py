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
from ._dual import CLOSED_FORMS, AbstractDual


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


@eqx.filter_jit
def _variances(model: CNN, dual: AbstractDual, X: jnp.ndarray) -> list[jnp.ndarray]:
    """Each image's pre-activation variance at every position of every layer (compiled,
    as `_rows` is, so that both round alike),
    `(n, H_l, W_l)`: from each image's covariance with itself over its pixel pairs when
    positions mix (`_full`), else from the same pixel only."""
    bias2 = 1.0 if model.bias else 0.0
    full = _full(model)
    if full:
        cov = jnp.einsum("ihwc,ixyc->ihwxy", X, X) / X.shape[-1]
    else:
        cov = jnp.einsum("ihwc,ihwc->ihw", X, X) / X.shape[-1]
    out = []
    for _ in model.channels:
        sigma = _window(cov, model, full) + bias2
        var = _diagonal(sigma) if full else sigma
        out.append(var)
        if full:
            cov = _pool(dual(var[:, :, :, None, None], var[:, None, None, :, :], sigma)[0], model)
        else:
            cov = dual(var, var, var)[0]
    return out


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


@eqx.filter_jit
def _rows(
    model: CNN,
    dual: AbstractDual,
    X1: jnp.ndarray,
    X2: jnp.ndarray,
    var1: list[jnp.ndarray],
    var2: list[jnp.ndarray],
    same: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The NNGP and NTK between the images `X1` (with their variances `var1`) and `X2`;
    `same` `(n1, n2)`: which pairs are the same image.

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
    through = None  # the NTK of the layer's input (none for the image)
    for layer in range(len(model.channels)):
        sigma = _window(cov, model, full) + bias2
        sigma = _pinned(sigma, var1[layer], full, same)  # (ReLU's angle 0, exactly)
        theta = sigma if through is None else sigma + _window(through, model, full)
        a, b = var1[layer], var2[layer]
        if full:
            a, b = a[:, None, :, :, None, None], b[None, :, None, None, :, :]
        else:
            a, b = a[:, None], b[None, :]
        cov, slope = dual(a, b, sigma)
        through = theta * slope
        if full:
            cov, through = _pool(cov, model), _pool(through, model)
    assert through is not None
    if full and model.readout == "flatten":  # the same position of both images
        cov, through = _diagonal(cov), _diagonal(through)
    axes = tuple(range(2, cov.ndim))
    nngp = jnp.mean(cov, axis=axes) + bias2
    return nngp, nngp + jnp.mean(through, axis=axes)


def cnn_kernels(
    model: CNN, x1: Any, x2: Any, *, block: int | None, budget: int, blocks: Callable
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The `(n1, n2)` NNGP and NTK of `model` between the images `x1` and `x2`, in row
    blocks of `block` images of `x1` (default: as many as fit `budget` bytes per
    array), each through `blocks(n1, block, one)` (`_infinite._blocks`)."""
    dual = CLOSED_FORMS.get(model.activation.name)
    if dual is None:
        raise ValueError(
            f"the infinite-width CNN kernel covers the closed-form activations "
            f"({', '.join(sorted(CLOSED_FORMS))}), got activation={model.activation.name!r}"
        )
    X1 = _images(x1, "x1")
    X2 = X1 if x2 is None else _images(x2, "x2")
    if X1.shape[1:] != X2.shape[1:]:
        raise ValueError(
            f"x1 and x2 must be images of one shape, got {X1.shape[1:]} and {X2.shape[1:]}"
        )
    model.feature_maps(X1.shape[1:])  # (a map left empty: its message, before any work)
    dtype = jnp.result_type(float)
    X1, X2 = np.asarray(X1, dtype), np.asarray(X2, dtype)
    X2j = jnp.asarray(X2)
    var1 = _variances(model, dual, jnp.asarray(X1))
    var2 = var1 if x2 is None else _variances(model, dual, X2j)
    n1, n2 = X1.shape[0], X2.shape[0]
    ids1, ids2 = identities(X1, X2)
    pixels = X1.shape[1] * X1.shape[2]
    per_row = 8 * n2 * pixels * (pixels if _full(model) else 1)
    if block is None:
        block = max(1, min(n1, budget // per_row))
    nngp, ntk = np.empty((n1, n2)), np.empty((n1, n2))

    def one(rows: slice) -> Any:
        v1 = [v[rows] for v in var1]
        same = jnp.asarray(ids1[rows][:, None] == ids2[None, :])
        return _rows(model, dual, jnp.asarray(X1[rows]), X2j, v1, var2, same)

    for rows, (k, theta) in blocks(n1, block, one):
        nngp[rows], ntk[rows] = np.asarray(k), np.asarray(theta)
    return jnp.asarray(nngp), jnp.asarray(ntk)
