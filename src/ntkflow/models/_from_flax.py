"""Flax modules as ntkflow models (`from_flax`): NNX modules, and Linen modules with their
variables."""

from typing import Any

import jax
from jaxtyping import PyTree

from ._adapted import Adapted, refuse
from ._first_layer import linen_first_layer, nnx_first_layer


def _nnx_check(module: Any, nnx: Any) -> None:
    """Refuse layers whose outputs depend on the batch or on a random key."""
    for path, sub in nnx.iter_graph(module):
        where = "module" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
        if isinstance(sub, nnx.BatchNorm) and not sub.use_running_average:
            raise refuse(
                "flax",
                where,
                "an nnx.BatchNorm using batch statistics",
                "call module.eval() first (it then uses its running averages)",
            )
        if isinstance(sub, nnx.Dropout) and not sub.deterministic:
            raise refuse(
                "flax", where, "an nnx.Dropout in training mode", "call module.eval() first"
            )


def _from_nnx(module: Any, nnx: Any) -> tuple[Any, PyTree, PyTree, Any]:
    _nnx_check(module, nnx)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def forward(p: PyTree, state: PyTree, X: Any) -> Any:
        return nnx.merge(graphdef, p, state)(X)

    return forward, params, rest, lambda p, state: nnx.merge(graphdef, p, state)


def _from_linen(module: Any, variables: Any) -> tuple[Any, PyTree, PyTree, Any]:
    if not isinstance(variables, dict) or "params" not in variables:
        raise TypeError(
            "from_flax(module, variables): a Linen module needs its variables, a dict with a "
            "'params' collection, e.g. variables = module.init(key, X[:1]); got "
            f"{type(variables).__name__}"
        )
    params = variables["params"]
    rest = {c: v for c, v in variables.items() if c != "params"}

    def forward(p: PyTree, state: PyTree, X: Any) -> Any:
        return module.apply({"params": p, **state}, X)

    return forward, params, rest, lambda p, state: {"params": p, **state}


def from_flax(
    module: Any,
    variables: Any = None,
    *,
    smooth: bool | None = None,
    name: str | None = None,
) -> Adapted:
    """A Flax module as an ntkflow model.

    - **NNX** (`from_flax(module)`): the `nnx.Param` variables are the trained parameters
      `w` (an `nnx.State`), every other variable (batch statistics, RNG state) is fixed;
      `model.native(params)` is the module with those parameters (`nnx.merge`).
    - **Linen** (`from_flax(module, variables)`): `variables["params"]` is trained, the
      other collections are fixed; `model.native(params)` is the variables dict.

    The module is called on a batch `X` of shape `(N, ...)` and returns `(N,)`, `(N, 1)`
    or `(N, k)`.

    **Arguments:**

    - `module`: an `nnx.Module`, or a `flax.linen.Module`.
    - `variables`: for Linen, the variables of `module.init` (or trained ones).
    - `smooth`: whether the module is smooth in its parameters (`False` for ReLU nets);
      default unknown.
    - `name`: a label for reports (default: the module's class name).

    **Raises:** `ImportError` without Flax (`pip install 'ntkflow[flax]'`); `TypeError` for
    an NNX module in training mode with batch-statistics `BatchNorm` or active `Dropout`
    (call `module.eval()`), for a Linen module without its variables, or for another
    object.
    """
    try:
        from flax import linen, nnx
    except ImportError as e:  # pragma: no cover - the extra is installed in CI
        raise ImportError(
            "from_flax needs Flax; install it with pip install 'ntkflow[flax]'"
        ) from e
    if isinstance(module, nnx.Module):
        if variables is not None:
            raise TypeError(
                "from_flax: an NNX module carries its own variables; call from_flax(module)"
            )
        forward, params, rest, to_native = _from_nnx(module, nnx)
        first = nnx_first_layer(module, nnx)
    elif isinstance(module, linen.Module):
        forward, params, rest, to_native = _from_linen(module, variables)
        first = linen_first_layer(params)
    else:
        raise TypeError(
            f"from_flax needs a flax.nnx.Module or a flax.linen.Module, got {type(module).__name__}"
        )
    if not jax.tree_util.tree_leaves(params):
        raise ValueError(f"from_flax: {type(module).__name__} has no parameters to train")
    hint = (
        "a Linen module must be deterministic and read its statistics: build it with "
        "use_running_average=True for BatchNorm and deterministic=True for Dropout, and "
        "check that it takes a batch (N, …)"
        if isinstance(module, linen.Module)
        else "check that the module takes a batch (N, …) (NNX layers act on the last axis)"
    )
    return Adapted(
        forward=forward,
        params0=params,
        state0=rest,
        to_native=to_native,
        framework="flax",
        input_hint=hint,
        first_layer=first,
        call="from_flax(module" + ("" if variables is None else ", variables"),
        name=name or type(module).__name__,
        smooth_=smooth,
    )
