"""A convolutional network on images `(H, W, C)` in NTK parametrisation."""

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._activations import AbstractActivationModel, Activation, get_activation
from ._base import Size, Sizes, is_size, size, sizes

_DIMS = ("NHWC", "HWIO", "NHWC")
READOUTS = ("flatten", "pool")
PADDINGS = ("SAME", "VALID")


def conv_geometry(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """A convolution's output length along one axis of `size` input positions, window
    `k`, stride `s`, and the zeros it pads before and after (as XLA pads): `VALID`
    takes only windows inside the input, `(size − k) // s + 1`; `SAME` takes
    `⌈size/s⌉` outputs and pads `max((out − 1)s + k − size, 0)` zeros, the odd one after."""
    if padding == "VALID":
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def pad_input(h: Array, kh: int, kw: int, padding: str) -> Array:
    """`h` `(N, H, W, C)` zero-padded as a stride-1 `kh × kw` convolution with `padding`
    pads it: the patch of output position `(y, x)` is `padded[:, y : y + kh, x : x + kw]`."""
    _, top, bottom = conv_geometry(h.shape[1], kh, 1, padding)
    _, left, right = conv_geometry(h.shape[2], kw, 1, padding)
    return jnp.pad(h, ((0, 0), (top, bottom), (left, right), (0, 0)))


def avg_pool(h: Array, window: tuple[int, int]) -> Array:
    """Average pooling of `h` `(…, H, W, C)` over non-overlapping `p_h × p_w` windows
    (stride = window, `VALID`: a remainder row or column is dropped)."""
    ph, pw = window
    H, W = h.shape[-3] // ph, h.shape[-2] // pw
    h = h[..., : H * ph, : W * pw, :]
    h = h.reshape(*h.shape[:-3], H, ph, W, pw, h.shape[-1])
    return jnp.mean(h, axis=(-4, -2))


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(is_size(k) for k in pair):
        raise ValueError(f"{name} must be an integer ≥ 1 or a pair of them, got {name}={value!r}")
    return int(pair[0]), int(pair[1])


class CNN(AbstractActivationModel):
    """A convolutional network in NTK parametrisation on channels-last images.

    `h_0 = x ∈ R^{H×W×C}`; each hidden layer `h_l = pool(σ(W_l ⋆ h_{l−1} / √fan_in + b_l))`
    is a convolution with stride `strides` and `SAME` (zero) or `VALID` padding,
    `fan_in = k_h·k_w·C_{l−1}`, followed by average pooling over non-overlapping windows
    when `pool` is set; the readout flattens the last feature map (`readout="flatten"`)
    or averages it over the positions (`"pool"`) and applies a dense layer
    `W_L h / √fan_in + b_L`. Every weight and bias entry is drawn from `N(0, 1)` and
    trained (the parametrisation of Novak et al., *Bayesian Deep Convolutional Networks
    with Many Channels are Gaussian Processes*, ICLR 2019, and of neural-tangents'
    `stax.Conv(..., parameterization="ntk")` and `stax.AvgPool(window, window)`).

    **Arguments:**

    - `channels`: the hidden layers' channel counts `(C_1, …)`, at least one.
    - `kernel_size`: the convolutions' window, an integer or `(k_h, k_w)` (default 3).
    - `activation`: a name or an `Activation` (see `Shallow`).
    - `out_dim`: the output dimension `k`.
    - `bias`: whether layers have biases.
    - `readout`: `"flatten"` or `"pool"` (global average pooling).
    - `strides`: the convolutions' stride, an integer or `(s_h, s_w)` (default 1).
    - `padding`: `"SAME"` (default) or `"VALID"`.
    - `pool`: `None` (default) or the window `(p_h, p_w)` (or an integer) of the average
      pooling after each hidden layer, with stride equal to the window.
    """

    channels: tuple[int, ...] = eqx.field(static=True)
    kernel_size: tuple[int, int] = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    bias: bool = eqx.field(static=True)
    readout: str = eqx.field(static=True)
    strides: tuple[int, int] = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    pool: tuple[int, int] | None = eqx.field(static=True)

    input_rank: ClassVar[int | None] = 3

    def __init__(
        self,
        channels: Sizes = (32, 32),
        kernel_size: Size | Sequence[Size] = 3,
        activation: str | Activation = "tanh",
        out_dim: Size = 1,
        bias: bool = False,
        readout: str = "flatten",
        *,
        strides: Size | Sequence[Size] = 1,
        padding: str = "SAME",
        pool: Size | Sequence[Size] | None = None,
    ):
        channels = sizes(channels, "channels")
        out_dim = size(out_dim, "out_dim")
        if readout not in READOUTS:
            raise ValueError(f"readout must be 'flatten' or 'pool', got readout={readout!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'SAME' or 'VALID', got padding={padding!r}")
        self.channels = channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.activation = get_activation(activation)
        self.out_dim = out_dim
        self.bias = bool(bias)
        self.readout = readout
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.pool = None if pool is None else _pair(pool, "pool")

    def feature_maps(self, point_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """Each hidden layer's convolution output `(H_l, W_l)` and, last, the readout's
        input map (after the last pooling), for images of `point_shape` `(H, W, C)`.

        **Raises:** `ValueError` when a map would be empty (the image is smaller than a
        `VALID` window or a pooling window)."""
        h, w = point_shape[0], point_shape[1]
        maps = []
        for layer in range(len(self.channels)):
            h, w = (
                conv_geometry(size, k, s, self.padding)[0]
                for size, k, s in zip((h, w), self.kernel_size, self.strides, strict=True)
            )
            maps.append((h, w))
            if self.pool is not None and h > 0 and w > 0:
                h, w = h // self.pool[0], w // self.pool[1]
            if h < 1 or w < 1:
                raise ValueError(
                    f"images of {point_shape[0]}×{point_shape[1]} pixels leave layer "
                    f"{layer + 1} of this CNN no positions (kernel_size={self.kernel_size}, "
                    f"strides={self.strides}, padding={self.padding!r}, pool={self.pool}); "
                    "use fewer layers, padding='SAME', or smaller strides or pooling"
                )
        return [*maps, (h, w)]

    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        raise ValueError(
            "CNN needs the image shape (H, W, C), not a feature count: build it through a "
            "Problem on image data (datasets.digits(..., images=True), (n, H, W, C) arrays)"
        )

    def init_for(self, key: PRNGKeyArray, point_shape: tuple[int, ...]) -> tuple[PyTree, PyTree]:
        if len(point_shape) != 3:
            raise ValueError(
                f"CNN takes images (H, W, C) per point, got points of shape {point_shape}"
            )
        height, width = self.feature_maps(point_shape)[-1]
        c_in = point_shape[2]
        kh, kw = self.kernel_size
        keys = jax.random.split(key, len(self.channels) + 1)
        layers = []
        for c_out, k in zip(self.channels, keys[:-1], strict=True):
            kw_, kb = jax.random.split(k)
            layer = {"W": jax.random.normal(kw_, (kh, kw, c_in, c_out))}
            if self.bias:
                layer["b"] = jax.random.normal(kb, (c_out,))
            layers.append(layer)
            c_in = c_out
        fan_in = c_in * (height * width if self.readout == "flatten" else 1)
        kw_, kb = jax.random.split(keys[-1])
        last = {"W": jax.random.normal(kw_, (self.out_dim, fan_in))}
        if self.bias:
            last["b"] = jax.random.normal(kb, (self.out_dim,))
        return [*layers, last], None

    def _conv(self, h: Array, W: Array) -> Array:
        return jax.lax.conv_general_dilated(
            h, W, self.strides, self.padding, dimension_numbers=_DIMS
        )

    def _effective_input(self, h: Array) -> Array:
        """What `apply_tapped` gives as a convolution's input: at stride 1 the input
        zero-padded (`pad_input`), whose shifted views are the patches; otherwise the
        patches themselves `(N, H_l, W_l, k_h·k_w·C)`, a `1 × 1` convolution's input."""
        if self.strides == (1, 1):
            return pad_input(h, *self.kernel_size, self.padding)
        return jax.lax.conv_general_dilated_patches(
            h, self.kernel_size, self.strides, self.padding, dimension_numbers=_DIMS
        )

    def _read(self, h: Array) -> Array:
        if self.readout == "pool":
            return jnp.mean(h, axis=(1, 2))
        return h.reshape(h.shape[0], -1)

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, "N H W C"]) -> Array:
        taps = tuple(None for _ in params)
        return self._forward(params, X, taps)[0]

    def _forward(self, params: PyTree, X: Array, taps: tuple[Any, ...]):
        h, inputs = X, []
        for layer, tap in zip(params[:-1], taps[:-1], strict=True):
            W = layer["W"]
            scale = 1.0 / math.sqrt(W.shape[0] * W.shape[1] * W.shape[2])
            if tap is not None:
                inputs.append(self._effective_input(h) * scale)
            z = self._conv(h, W) * scale
            if tap is not None:
                z = z + tap
            if self.bias:
                z = z + layer["b"][None, None, None, :]
            h = self.activation(z)
            if self.pool is not None:
                h = avg_pool(h, self.pool)
        x = self._read(h)
        W = params[-1]["W"]
        x = x / jnp.sqrt(W.shape[1]).astype(x.dtype)
        inputs.append(x)
        out = x @ W.T
        if taps[-1] is not None:
            out = out + taps[-1]
        if self.bias:
            out = out + params[-1]["b"][None, :]
        out = out[:, 0] if self.out_dim == 1 else out
        return out, tuple(inputs)

    def tap_shapes(self, point_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...] | None:
        maps = self.feature_maps(point_shape)[:-1]
        return (
            *((h, w, c) for (h, w), c in zip(maps, self.channels, strict=True)),
            (self.out_dim,),
        )

    def apply_tapped(
        self, params: PyTree, state: PyTree, X: Float[Array, "N H W C"], taps: tuple[Array, ...]
    ) -> tuple[Array, tuple[Array, ...], tuple[float, ...]]:
        """As `AbstractModel.apply_tapped`; a convolution's effective input is its
        zero-padded input `(N, H_l + k_h − 1, W_l + k_w − 1, C_in)` at stride 1, or its
        patches `(N, H_l, W_l, k_h·k_w·C_in)` otherwise (`_effective_input`), scaled by
        `1/√fan_in`, so that `∂f(x_i)/∂W_l[dy, dx] = Σ_s padded[i, s + (dy, dx)] ⊗
        G_l[i, s]` over the output positions `s` (with a `1 × 1` window on patches)."""
        out, inputs = self._forward(params, X, taps)
        return out, inputs, (1.0 if self.bias else 0.0,) * len(params)

    def output_dim_fix(self, k: int) -> str:
        return f"this CNN has out_dim={self.out_dim}; set CNN(..., out_dim={k}) to match"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "cnn",
            "channels": list(self.channels),
            "kernel_size": list(self.kernel_size),
            "activation": self.activation.name,
            "out_dim": self.out_dim,
            "bias": self.bias,
            "readout": self.readout,
            "strides": list(self.strides),
            "padding": self.padding,
            "pool": None if self.pool is None else list(self.pool),
        }
