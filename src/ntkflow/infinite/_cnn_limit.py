"""The infinite-channel NNGP and NTK of ntkflow's `CNN` (docs/theory.md, "Convolutional
networks"): the layer recursion on the covariance between every pair of pixels of two
images (global average pooling needs them all), or only between the same pixel of both
(flatten: the convolutions never mix pixel offsets, so the diagonal suffices)."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..datasets import Dataset
from ..models._cnn import CNN
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


def _window(K: jnp.ndarray, size: tuple[int, int], full: bool) -> jnp.ndarray:
    """A stride-1 `SAME` convolution's map of covariances: the mean over the window's
    offsets `d` of `K[p + d, p' + d]`, positions outside the image (zero padding)
    contributing 0. `K` is `(…, H, W, H, W)` (`full`) or `(…, H, W)` (the diagonal)."""
    kh, kw = size
    top, left = (kh - 1) // 2, (kw - 1) // 2
    pads = [(top, kh - 1 - top), (left, kw - 1 - left)]
    H, W = K.shape[-2], K.shape[-1]
    lead = K.ndim - (4 if full else 2)
    padded = jnp.pad(K, [(0, 0)] * lead + pads * (2 if full else 1))
    total = jnp.zeros_like(K)
    for a in range(kh):
        for b in range(kw):
            if full:
                total = total + padded[..., a : a + H, b : b + W, a : a + H, b : b + W]
            else:
                total = total + padded[..., a : a + H, b : b + W]
    return total / (kh * kw)


def _input_covariance(X1: np.ndarray, X2: np.ndarray, full: bool) -> jnp.ndarray:
    """`x_p · x'_p' / C` over the pairs of pixels (`full`), or the same pixel only."""
    C = X1.shape[-1]
    if full:
        return jnp.einsum("ihwc,jxyc->ijhwxy", X1, X2) / C
    return jnp.einsum("ihwc,jhwc->ijhw", X1, X2) / C


def _variances(model: CNN, dual: AbstractDual, X: np.ndarray) -> list[jnp.ndarray]:
    """Each image's pre-activation variance at every pixel, layer by layer: `(n, H, W)`."""
    bias2 = 1.0 if model.bias else 0.0
    cov = jnp.einsum("ihwc,ihwc->ihw", X, X) / X.shape[-1]
    out = []
    for _ in model.channels:
        var = _window(cov, model.kernel_size, False) + bias2
        out.append(var)
        cov = dual(var, var, var)[0]
    return out


def _pinned(sigma: jnp.ndarray, var: jnp.ndarray, full: bool, start: int) -> jnp.ndarray:
    """`sigma` (rows `start…` of a kernel of a set of images with itself) with each
    image's covariance with itself at one pixel set to its variance `var` (its rows)."""
    n, H, W = var.shape
    rows = jnp.arange(n)
    if not full:
        return sigma.at[rows, start + rows].set(var)
    h, w = jnp.meshgrid(jnp.arange(H), jnp.arange(W), indexing="ij")
    i, hh, ww = rows[:, None, None], h[None], w[None]
    return sigma.at[i, start + i, hh, ww, hh, ww].set(var)


def _rows(
    model: CNN,
    dual: AbstractDual,
    X1: np.ndarray,
    X2: np.ndarray,
    var1: list[jnp.ndarray],
    var2: list[jnp.ndarray],
    start: int | None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The NNGP and NTK between the images `X1` (with their variances `var1`) and `X2`;
    `start`: where `X1`'s rows are in `X2` when the kernel is of a set with itself."""
    full = model.readout == "pool"
    bias2 = 1.0 if model.bias else 0.0
    cov = _input_covariance(X1, X2, full)
    theta = slope = None
    for layer in range(len(model.channels)):
        sigma = _window(cov, model.kernel_size, full) + bias2
        if start is not None:  # a point with itself: its variance, exactly (ReLU's angle 0)
            sigma = _pinned(sigma, var1[layer], full, start)
        if theta is None or slope is None:
            theta = sigma
        else:
            theta = sigma + _window(theta * slope, model.kernel_size, full)
        a, b = var1[layer], var2[layer]
        if full:
            a, b = a[:, None, :, :, None, None], b[None, :, None, None, :, :]
        else:
            a, b = a[:, None], b[None, :]
        cov, slope = dual(a, b, sigma)
    assert theta is not None and slope is not None
    through = theta * slope  # (the readout's input NTK)
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
    dtype = jnp.result_type(float)
    X1, X2 = np.asarray(X1, dtype), np.asarray(X2, dtype)
    var1 = _variances(model, dual, X1)
    var2 = var1 if x2 is None else _variances(model, dual, X2)
    n1, n2 = X1.shape[0], X2.shape[0]
    pixels = X1.shape[1] * X1.shape[2]
    per_row = 8 * n2 * pixels * (pixels if model.readout == "pool" else 1)
    if block is None:
        block = max(1, min(n1, budget // per_row))
    nngp, ntk = np.empty((n1, n2)), np.empty((n1, n2))

    def one(rows: slice) -> Any:
        v1 = [v[rows] for v in var1]
        return _rows(model, dual, X1[rows], X2, v1, var2, rows.start if x2 is None else None)

    for rows, (k, theta) in blocks(n1, block, one):
        nngp[rows], ntk[rows] = np.asarray(k), np.asarray(theta)
    return jnp.asarray(nngp), jnp.asarray(ntk)
