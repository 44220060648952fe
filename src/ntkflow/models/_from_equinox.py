"""Equinox modules as ntkflow models (`from_equinox`)."""

from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree

from ._adapted import Adapted, refuse
from ._first_layer import equinox_first_layer

_RELU = (jax.nn.relu, jax.nn.relu6, jax.nn.leaky_relu, jax.nn.hard_tanh)


def _check_layers(module: Any) -> None:
    """Refuse the layers whose output on a point depends on other points or on a random
    key: the NTK is a property of a deterministic, per-point function."""
    bad = (eqx.nn.BatchNorm, eqx.nn.Dropout)
    flat, _ = jax.tree_util.tree_flatten_with_path(module, is_leaf=lambda x: isinstance(x, bad))
    for path, leaf in flat:
        where = "module" + jax.tree_util.keystr(path)
        if isinstance(leaf, eqx.nn.BatchNorm):
            raise refuse(
                "equinox",
                where,
                "an eqx.nn.BatchNorm (batch statistics in eqx.nn.State)",
                "remove it or fold its running statistics into the layer before it",
            )
        if isinstance(leaf, eqx.nn.Dropout) and not leaf.inference:
            raise refuse(
                "equinox",
                where,
                "an eqx.nn.Dropout in training mode (random outputs)",
                "pass eqx.nn.inference_mode(module) instead",
            )


def _smooth(module: Any) -> bool | None:
    """`False` for an `eqx.nn.MLP` with a piecewise-linear activation; `None` otherwise."""
    if isinstance(module, eqx.nn.MLP):
        acts = (module.activation, module.final_activation)
        if any(a in _RELU for a in acts):
            return False
    return None


def from_equinox(
    module: Any, *, batched: bool = False, smooth: bool | None = None, name: str | None = None
) -> Adapted:
    """An Equinox module as an ntkflow model.

    Its floating-point arrays (`eqx.is_inexact_array`) are the trained parameters `w`,
    everything else is closed over; `model.native(params)` is the module with the given
    parameters (`eqx.combine`).

    **Arguments:**

    - `module`: an `eqx.Module` mapping one input `x` to an output of shape `()` or
      `(k,)` (as `eqx.nn.MLP` does), or a batch when `batched=True`.
    - `batched`: whether the module takes a batch `(N, ...)` itself (default: it takes
      one point and is `vmap`ped over the points).
    - `smooth`: whether the module is smooth in its parameters (`False` for ReLU nets:
      the certificate then reports `β = ∞`); default: `False` for an `eqx.nn.MLP` with a
      ReLU-like activation, otherwise unknown.
    - `name`: a label for reports (default: the module's class name).

    **Raises:** `TypeError` for a module that is not an `eqx.Module` or has a layer whose
    outputs are not a deterministic function of each point (`eqx.nn.BatchNorm`, an
    `eqx.nn.Dropout` in training mode), naming the layer and the fix; `ValueError` for a
    module without floating-point parameters.
    """
    if not isinstance(module, eqx.Module):
        raise TypeError(
            f"from_equinox needs an eqx.Module, got {type(module).__name__}; for a plain "
            "function use ntkflow.models.from_apply"
        )
    _check_layers(module)
    params, static = eqx.partition(module, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError(
            f"from_equinox: {type(module).__name__} has no floating-point arrays to train"
        )

    def forward(p: PyTree, state: PyTree, X: Any) -> Any:
        del state
        m = eqx.combine(p, static)
        return m(X) if batched else jax.vmap(m)(X)

    return Adapted(
        forward=forward,
        params0=params,
        state0=None,
        to_native=lambda p, state: eqx.combine(p, static),
        framework="equinox",
        first_layer=equinox_first_layer(module, batched=batched),
        name=name or type(module).__name__,
        smooth_=_smooth(module) if smooth is None else smooth,
        call="from_equinox(module" + (", batched=True" if batched else ""),
        kink="an eqx.nn.MLP with a ReLU-like activation" if smooth is None else "",
        input_hint=(
            "batched=True: the module must take a batch (N, …) itself; pass batched=False "
            "for a module of one point (as eqx.nn.MLP)"
            if batched
            else "the module is vmapped over the points: it must take one point x"
        ),
    )
