"""The seed's deep network `w_L σ(w_{L−1} σ(… σ(w_1 x)))` in NTK parametrisation."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._activations import AbstractActivationModel, Activation, get_activation
from ._base import Size, Sizes, size, sizes


class MLP(AbstractActivationModel):
    """A fully connected network in NTK parametrisation.

    `h_0 = x`, `h_l = σ(W_l h_{l−1} / √fan_in + b_l)` for the hidden layers and
    `f = W_L h_{L−1} / √fan_in + b_L`, with every `W_l` and `b_l` entry drawn from
    `N(0, 1)` (Jacot, Gabriel & Hongler, *Neural Tangent Kernel*, NeurIPS 2018). All
    weights (and biases, if any) are trained.

    **Arguments:**

    - `widths`: the hidden widths `(m_1, …, m_{L−1})`, at least one.
    - `activation`: a name or an `Activation` (see `Shallow`).
    - `out_dim`: the output dimension `k`; outputs are flattened point-major, so a
      problem on `n` points has `n·k` outputs.
    - `bias`: whether layers have biases.
    """

    widths: tuple[int, ...] = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    bias: bool = eqx.field(static=True)

    def __init__(
        self,
        widths: Sizes = (512, 512),
        activation: str | Activation = "tanh",
        out_dim: Size = 1,
        bias: bool = False,
    ):
        self.widths = sizes(widths, "widths")
        self.out_dim = size(out_dim, "out_dim")
        self.activation = get_activation(activation)
        self.bias = bool(bias)

    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        dims = (in_dim, *self.widths, self.out_dim)
        layers = []
        for fan_in, fan_out, k in zip(
            dims[:-1], dims[1:], jax.random.split(key, len(dims) - 1), strict=True
        ):
            kw, kb = jax.random.split(k)
            layer = {"W": jax.random.normal(kw, (fan_out, fan_in))}
            if self.bias:
                layer["b"] = jax.random.normal(kb, (fan_out,))
            layers.append(layer)
        return layers, None

    input_rank: ClassVar[int | None] = 1

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, "N d"]) -> Array:
        h = X
        for i, layer in enumerate(params):
            W = layer["W"]
            h = h @ W.T / jnp.sqrt(W.shape[1]).astype(h.dtype)
            if self.bias:
                h = h + layer["b"][None, :]
            if i < len(params) - 1:
                h = self.activation(h)
        return h[:, 0] if self.out_dim == 1 else h

    @property
    def dense_widths(self) -> tuple[int, ...]:
        return (*self.widths, self.out_dim)

    def apply_tapped(
        self, params: PyTree, state: PyTree, X: Float[Array, "N d"], taps: tuple[Array, ...]
    ) -> tuple[Array, tuple[Array, ...], tuple[float, ...]]:
        h, inputs = X, []
        for i, layer in enumerate(params):
            W = layer["W"]
            x = h / jnp.sqrt(W.shape[1]).astype(h.dtype)
            inputs.append(x)
            h = x @ W.T + taps[i]
            if self.bias:
                h = h + layer["b"][None, :]
            if i < len(params) - 1:
                h = self.activation(h)
        out = h[:, 0] if self.out_dim == 1 else h
        return out, tuple(inputs), (1.0 if self.bias else 0.0,) * len(params)

    def output_dim_fix(self, k: int) -> str:
        return (
            f"this MLP has out_dim={self.out_dim}; set MLP(..., out_dim={k}) to match the targets"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "mlp",
            "widths": list(self.widths),
            "activation": self.activation.name,
            "out_dim": self.out_dim,
            "bias": self.bias,
        }
