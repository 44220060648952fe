"""Any JAX model: a function `apply_fn(params, X)` and its initial parameters."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._base import AbstractModel


class FromApply(AbstractModel):
    """A model given as `apply_fn(params, X) -> outputs` on a pytree of parameters.

    Built by `from_apply`; the initialisation is the `params0` given (the key a `Problem`
    passes is ignored).
    """

    apply_fn: Callable[[PyTree, Array], Array] = eqx.field(static=True)
    params0: PyTree
    smooth_: bool | None = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        del key, in_dim
        return self.params0, None

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, "N d"]) -> Array:
        del state
        return self.apply_fn(params, X)

    @property
    def smooth(self) -> bool | None:
        return self.smooth_

    def describe(self) -> dict[str, Any]:
        return {"kind": "from_apply", "name": self.name}


def from_apply(
    apply_fn: Callable[[PyTree, Array], Array],
    params0: PyTree,
    *,
    smooth: bool | None = None,
    name: str | None = None,
) -> FromApply:
    """Wrap a plain JAX model.

    **Arguments:**

    - `apply_fn`: `apply_fn(params, X) -> outputs`, outputs of shape `(N,)` or `(N, k)`
      (flattened point-major into `R^{N·k}`).
    - `params0`: the initial parameters `w0`, any pytree of floating arrays.
    - `smooth`: whether `apply_fn` is smooth in `params` (`False` for ReLU networks: the
      certificate then reports `β = ∞`); `None` if unknown.
    - `name`: a label for reports (default: the function's name).

    **Raises:** `TypeError` if `apply_fn` is not callable or `params0` has a non-floating
    leaf; `ValueError` if `params0` has no parameters or a non-finite value.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    leaves = jax.tree_util.tree_leaves(params0)
    if not leaves:
        raise ValueError("params0 must contain at least one array, got an empty pytree")
    leaves = [jnp.asarray(x) for x in leaves]
    for x in leaves:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"params0 leaves must be floating arrays, got dtype={x.dtype}; cast them "
                "with jnp.asarray(x, float)"
            )
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("params0 contains NaN or inf; give a finite initialisation")
    params0 = jax.tree_util.tree_map(jnp.asarray, params0)
    label = name if name is not None else getattr(apply_fn, "__name__", "apply_fn")
    return FromApply(apply_fn=apply_fn, params0=params0, smooth_=smooth, name=label)
