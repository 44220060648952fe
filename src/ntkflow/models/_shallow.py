"""The seed's shallow network in NTK parametrisation."""

from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._activations import AbstractActivationModel, Activation, get_activation
from ._base import Size, size


class Shallow(AbstractActivationModel):
    """`f(x; W) = m^{-1/2} Σ_j a_j σ(w_jᵀ x)`, the lecture's shallow network.

    Hidden weights `w_j ~ N(0, I_d)`, output weights `a_j` uniform on `{−1, +1}`.
    `train="hidden"` trains `W` only and keeps `a` fixed (the lecture's case, for which
    docs/theory.md, "Smoothness", gives a certified `β`); `train="all"` trains `(W, a)`.

    **Arguments:**

    - `width`: the number of hidden units `m ≥ 1`.
    - `activation`: a name (`"tanh"`, `"softplus"`, `"sigmoid"`, `"gelu"`, `"erf"`,
      `"sin"`, `"silu"`/`"swish"`, `"relu"`) or an `Activation`.
    - `train`: `"hidden"` or `"all"`.
    """

    width: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    train: Literal["hidden", "all"] = eqx.field(static=True)

    def __init__(
        self,
        width: Size,
        activation: str | Activation = "tanh",
        train: str = "hidden",
    ):
        width = size(width, "width")
        if train not in ("hidden", "all"):
            raise ValueError(f"train must be 'hidden' or 'all', got train={train!r}")
        self.width = width
        self.activation = get_activation(activation)
        self.train = train

    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        kw, ka = jax.random.split(key)
        W = jax.random.normal(kw, (self.width, in_dim))
        a = jax.random.rademacher(ka, (self.width,), dtype=W.dtype)
        if self.train == "hidden":
            return {"W": W}, {"a": a}
        return {"W": W, "a": a}, {}

    input_rank: ClassVar[int | None] = 1

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, "N d"]) -> Array:
        a = params["a"] if self.train == "all" else state["a"]
        W = params["W"]
        return self.activation(X @ W.T) @ a / jnp.sqrt(self.width).astype(X.dtype)

    @property
    def dense_widths(self) -> tuple[int, ...]:
        return (self.width,) if self.train == "hidden" else (self.width, 1)

    def apply_tapped(
        self, params: PyTree, state: PyTree, X: Float[Array, "N d"], taps: tuple[Array, ...]
    ) -> tuple[Array, tuple[Array, ...], tuple[float, ...]]:
        a = params["a"] if self.train == "all" else state["a"]
        z = X @ params["W"].T + taps[0]
        h = self.activation(z) / jnp.sqrt(self.width).astype(X.dtype)
        if self.train == "hidden":
            return h @ a, (X,), (0.0,)
        return h @ a + taps[1][:, 0], (X, h), (0.0, 0.0)

    def output_dim_fix(self, k: int) -> str:
        return (
            f"Shallow has one output per point: for {k} target columns use "
            f"MLP(widths, out_dim={k}), or give targets y with one column"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "shallow",
            "width": self.width,
            "activation": self.activation.name,
            "train": self.train,
        }
