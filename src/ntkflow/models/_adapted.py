"""A model brought from another framework: its forward pass as a JAX function of
`(params, state, X)`, its trained parameters and fixed state in the framework's own layout,
and the map back to the framework's objects (`native`)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._base import AbstractModel
from ._first_layer import FirstLayer, mismatch


class Adapted(AbstractModel):
    """A network from PyTorch, Flax or Equinox, built by `from_torch`, `from_flax` or
    `from_equinox`. The initialisation is the module's own weights (the key a `Problem`
    passes is ignored); the parameter pytree keeps the framework's layout (a `state_dict`'s
    names, an NNX `State`, an Equinox module's fields), and `native(params)` turns a
    parameter pytree (say `problem.params(w)` along a flow) back into the framework's
    object."""

    forward: Callable[[PyTree, PyTree, Array], Array] = eqx.field(static=True)
    params0: PyTree
    state0: PyTree
    to_native: Callable[[PyTree, PyTree], Any] = eqx.field(static=True)
    framework: str = eqx.field(static=True)
    name: str = eqx.field(static=True)
    smooth_: bool | None = eqx.field(static=True, default=None)
    input_hint: str = eqx.field(static=True, default="")
    first_layer: FirstLayer | None = eqx.field(static=True, default=None)
    permute: tuple[int, ...] | None = eqx.field(static=True, default=None)
    # The call that built it, without its closing parenthesis (`from_flax(module,
    # variables`), and why it is not smooth when the adapter found out itself.
    call: str = eqx.field(static=True, default="")
    kink: str = eqx.field(static=True, default="")

    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        del key, in_dim
        return self.params0, self.state0

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, " N *d"]) -> Array:
        # The framework's own code may broadcast by rank promotion; allowed here whatever
        # the caller's setting.
        with jax.numpy_rank_promotion("allow"):
            return self.forward(params, state, X)

    def native(self, params: PyTree, state: PyTree = None) -> Any:
        """The framework's object with these parameters: a `state_dict` of tensors
        (PyTorch), a module (Flax NNX, Equinox) or a variables dict (Flax Linen)."""
        return self.to_native(params, self.state0 if state is None else state)

    @property
    def smooth(self) -> bool | None:
        return self.smooth_

    def not_smooth_reason(self) -> str:
        if self.kink:
            return (
                f"{self.call}) found {self.kink}: the Jacobian is not Lipschitz (β = ∞); "
                f"pass {self.call}, smooth=True) only if the network is smooth after all"
            )
        return f"{self.call}, smooth=False) marks the network not smooth (β = ∞)"

    def output_dim_fix(self, k: int) -> str:
        shape = "(N,) or (N, 1)" if k == 1 else f"(N, {k})"
        return (
            f"give the {self.framework} module an output layer of width {k} (its outputs on "
            f"N points must have shape {shape})"
        )

    def input_fix(self) -> str:
        """What to check when the module fails on the data, for the error message."""
        return self.input_hint or f"check that the {self.framework} module takes a batch (N, …)"

    def input_error(self, point_shape: tuple[int, ...]) -> str | None:
        """After the module failed on the data: the line naming the input size its first
        layer expects beside the data's, when they differ (`_first_layer.mismatch`)."""
        call = f"from_{self.framework.lower()}"
        return mismatch(self.first_layer, point_shape, call, permute=self.permute)

    def describe(self) -> dict[str, Any]:
        return {"kind": f"from_{self.framework.lower()}", "name": self.name}


def as_arrays(tree: PyTree) -> PyTree:
    """A pytree of framework arrays as JAX arrays (NumPy, JAX or anything `jnp.asarray`
    takes)."""
    return jax.tree_util.tree_map(jnp.asarray, tree)


def refuse(framework: str, where: str, what: str, fix: str) -> TypeError:
    """The one-line error for a layer an adapter cannot handle."""
    return TypeError(f"from_{framework}: {where} is {what}; {fix}")
