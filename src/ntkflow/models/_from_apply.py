"""Any JAX model: a function `apply_fn(params, X)` and its initial parameters."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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

    def apply(self, params: PyTree, state: PyTree, X: Float[Array, " N *d"]) -> Array:
        del state
        return self.apply_fn(params, X)

    @property
    def smooth(self) -> bool | None:
        return self.smooth_

    @property
    def call(self) -> str:
        """The call that built it, without its closing parenthesis (for notes)."""
        return "from_apply(apply_fn, params0"

    def not_smooth_reason(self) -> str:
        return f"{self.call}, smooth=False) marks the network not smooth (β = ∞)"

    def output_dim_fix(self, k: int) -> str:
        shape = "(N,)" if k == 1 else f"(N, {k})"
        return f"make apply_fn return shape {shape} on N points to match {k} target column(s)"

    def input_fix(self) -> str:
        """What to check when `apply_fn` fails on the data, for the error message."""
        return "check that apply_fn takes a batch (N, …) of the data's points"

    def input_error(self, point_shape: tuple[int, ...]) -> str | None:
        """After `apply_fn` failed on the data: when the points are vectors of `d`
        features and no axis of `params0`'s first matrix has length `d`, the line naming
        both (a plain function's first layer cannot be told from its code; its first
        matrix in pytree order usually is it)."""
        if len(point_shape) != 1:
            return None
        d = point_shape[0]
        for path, leaf in jax.tree_util.tree_leaves_with_path(self.params0):
            if getattr(leaf, "ndim", 0) == 2:
                if d in leaf.shape:
                    return None
                return (
                    f"from_apply: apply_fn failed on the data, whose points have {d} "
                    f"features; params0's first matrix params0{jax.tree_util.keystr(path)} "
                    f"has shape {tuple(leaf.shape)}, no axis of length {d}: build the "
                    f"first layer for {d} input features"
                )
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "from_apply", "name": self.name}


# Every leaf of `params0` is a trained parameter: anything else (an activation function,
# a string, a layer's static configuration) must be split off and closed over.
_PARTITION = (
    "split the model with `params, static = eqx.partition(model, eqx.is_inexact_array)` "
    "and close over the static part: "
    "`from_apply(lambda p, X: eqx.combine(p, static)(X), params)`"
)


def _check_leaf(where: str, x: Any) -> None:
    """One leaf of `params0`: a finite floating array, else a one-line error naming its
    path (`jax.tree_util.keystr`) and the fix."""
    label = f"params0{where}"
    if isinstance(x, bool) or not isinstance(x, jax.Array | np.ndarray | np.number | float | int):
        shown = repr(x)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise TypeError(
            f"{label} is a {type(x).__name__} ({shown}), not an array: every leaf of params0 "
            f"is trained; {_PARTITION}"
        )
    dtype = jnp.asarray(x).dtype if isinstance(x, jax.Array) else np.asarray(x).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"params0 leaves must be floating arrays, got {label} with dtype={dtype}; cast "
            f"it with jnp.asarray(x, float), or if it is not trained, {_PARTITION}"
        )
    if not bool(jnp.all(jnp.isfinite(jnp.asarray(x)))):
        raise ValueError(f"params0 contains NaN or inf (in {label}); give a finite initialisation")


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

    **Raises:** `TypeError` if `apply_fn` is not callable or `params0` has a leaf that is
    not a floating array (an equinox module's activation function, say: partition the
    module with `eqx.partition(model, eqx.is_inexact_array)` and close over the rest);
    `ValueError` if `params0` has no parameters or a non-finite value.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    leaves = jax.tree_util.tree_leaves_with_path(params0)
    if not leaves:
        raise ValueError("params0 must contain at least one array, got an empty pytree")
    for path, x in leaves:
        _check_leaf(jax.tree_util.keystr(path), x)
    params0 = jax.tree_util.tree_map(jnp.asarray, params0)
    label = name if name is not None else getattr(apply_fn, "__name__", "apply_fn")
    return FromApply(apply_fn=apply_fn, params0=params0, smooth_=smooth, name=label)
