"""A convolutional network on images `(H, W, C)` in NTK parametrisation."""

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._activations import AbstractActivationModel, Activation, get_activation

_DIMS = ("NHWC", "HWIO", "NHWC")
READOUTS = ("flatten", "pool")


def same_pad(h: Array, kh: int, kw: int) -> Array:
    """`h` `(N, H, W, C)` zero-padded as a `SAME` stride-1 `kh × kw` convolution pads it
    (the extra row or column of an even window at the bottom or right, as XLA does):
    the patch of position `(y, x)` is `padded[:, y : y + kh, x : x + kw]`."""
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return jnp.pad(h, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))


class CNN(AbstractActivationModel):
    """A convolutional network in NTK parametrisation on channels-last images.

    `h_0 = x ∈ R^{H×W×C}`; each hidden layer `h_l = σ(W_l ⋆ h_{l−1} / √fan_in + b_l)` is a
    stride-1 convolution with `SAME` (zero) padding, `fan_in = k_h·k_w·C_{l−1}`; the
    readout flattens the last feature map (`readout="flatten"`) or averages it over the
    positions (`"pool"`) and applies a dense layer `W_L h / √fan_in + b_L`. Every weight
    and bias entry is drawn from `N(0, 1)` and trained (the parametrisation of Novak et
    al., *Bayesian Deep Convolutional Networks with Many Channels are Gaussian Processes*,
    ICLR 2019, and of neural-tangents' `stax.Conv(..., parameterization="ntk")`).

    **Arguments:**

    - `channels`: the hidden layers' channel counts `(C_1, …)`, at least one.
    - `kernel_size`: the convolutions' window, an integer or `(k_h, k_w)` (default 3).
    - `activation`: a name or an `Activation` (see `Shallow`).
    - `out_dim`: the output dimension `k`.
    - `bias`: whether layers have biases.
    - `readout`: `"flatten"` or `"pool"` (global average pooling).
    """

    channels: tuple[int, ...] = eqx.field(static=True)
    kernel_size: tuple[int, int] = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    bias: bool = eqx.field(static=True)
    readout: str = eqx.field(static=True)

    input_rank: ClassVar[int | None] = 3

    def __init__(
        self,
        channels: Sequence[int] = (32, 32),
        kernel_size: int | Sequence[int] = 3,
        activation: str | Activation = "tanh",
        out_dim: int = 1,
        bias: bool = False,
        readout: str = "flatten",
    ):
        channels = tuple(channels)
        if not channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels
        ):
            raise ValueError(
                f"channels must be a non-empty sequence of integers ≥ 1, got channels={channels!r}"
            )
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ks) != 2 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(
                f"kernel_size must be an integer ≥ 1 or a pair of them, got "
                f"kernel_size={kernel_size!r}"
            )
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be an integer ≥ 1, got out_dim={out_dim!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be 'flatten' or 'pool', got readout={readout!r}")
        self.channels = channels
        self.kernel_size = (int(ks[0]), int(ks[1]))
        self.activation = get_activation(activation)
        self.out_dim = out_dim
        self.bias = bool(bias)
        self.readout = readout

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
        height, width, c_in = point_shape
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
        return jax.lax.conv_general_dilated(h, W, (1, 1), "SAME", dimension_numbers=_DIMS)

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
                inputs.append(same_pad(h, W.shape[0], W.shape[1]) * scale)
            z = self._conv(h, W) * scale
            if tap is not None:
                z = z + tap
            if self.bias:
                z = z + layer["b"][None, None, None, :]
            h = self.activation(z)
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
        height, width = point_shape[:2]
        return (*((height, width, c) for c in self.channels), (self.out_dim,))

    def apply_tapped(
        self, params: PyTree, state: PyTree, X: Float[Array, "N H W C"], taps: tuple[Array, ...]
    ) -> tuple[Array, tuple[Array, ...], tuple[float, ...]]:
        """As `AbstractModel.apply_tapped`; a convolution's effective input is its
        zero-padded input `(N, H + k_h − 1, W + k_w − 1, C_in)` (`same_pad`, scaled by
        `1/√fan_in`), so that `∂f(x_i)/∂W_l[dy, dx] = Σ_s padded[i, s + (dy, dx)] ⊗
        G_l[i, s]` over the positions `s`."""
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
        }
