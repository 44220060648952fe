"""PyTorch modules as ntkflow models (`from_torch`), run on JAX through torchax."""

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from ._adapted import Adapted, refuse
from ._first_layer import torch_first_layer

_INSTALL = "install it with pip install 'ntkflow[torch]' (PyTorch < 2.13 and torchax)"


def _import() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - the extra is installed in CI
        raise ImportError(f"from_torch needs PyTorch; {_INSTALL}") from e
    try:
        import torchax
    except ImportError as e:  # pragma: no cover
        raise ImportError(f"from_torch needs torchax; {_INSTALL}") from e
    except AttributeError as e:  # pragma: no cover - torch ≥ 2.13 dropped named tensors
        raise ImportError(
            f"torchax cannot load on torch {torch.__version__} ({e}); {_INSTALL}"
        ) from e
    return torch, torchax


def _kinks(torch: Any) -> tuple[type, ...]:
    """Activation modules that are not differentiable everywhere (β = ∞)."""
    nn = torch.nn
    return (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.PReLU, nn.Hardswish)


def _check_layers(module: Any, torch: Any) -> None:
    """Refuse layers whose output on a point depends on the batch or on randomness."""
    nn = torch.nn
    for name, sub in module.named_modules():
        where = f"module.{name}" if name else "module"
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.training:
            raise refuse(
                "torch",
                where,
                f"a {type(sub).__name__} in training mode (batch statistics)",
                "call module.eval() first (it then uses its running statistics)",
            )
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.training and sub.p > 0:
            raise refuse(
                "torch",
                where,
                f"a {type(sub).__name__} in training mode (random outputs)",
                "call module.eval() first",
            )


def from_torch(
    module: Any,
    *,
    permute: tuple[int, ...] | None = None,
    smooth: bool | None = None,
    name: str | None = None,
) -> Adapted:
    """A PyTorch `nn.Module` as an ntkflow model, run on JAX by torchax
    (`torchax.extract_jax`: the module's own `forward`, each ATen operation lowered to JAX).

    The parameters with `requires_grad` are the trained `w`, keyed by their `state_dict`
    names; buffers (running statistics) and frozen parameters are fixed. They keep the
    module's dtype until a `Problem` casts them (float64 by default).
    `model.native(params)` is a `state_dict` (names → CPU tensors) for
    `module.load_state_dict`.

    **Arguments:**

    - `module`: an `nn.Module` taking a batch `(N, ...)` and returning `(N,)`, `(N, 1)`
      or `(N, k)`.
    - `permute`: axes to permute the inputs by before the module sees them, e.g.
      `(0, 3, 1, 2)` for a convolutional net (PyTorch's `NCHW`) on ntkflow's `(N, H, W, C)`
      images.
    - `smooth`: whether the module is smooth in its parameters (`False` for ReLU nets);
      default: `False` when it contains a ReLU-like activation module (`nn.ReLU`, …),
      otherwise unknown (a `relu` called inside `forward` cannot be seen).
    - `name`: a label for reports (default: the module's class name).

    **Raises:** `ImportError` without PyTorch or torchax (`pip install 'ntkflow[torch]'`);
    `TypeError` for an object that is not an `nn.Module`, or a `BatchNorm`/`Dropout` in
    training mode (call `module.eval()`), naming the layer. An operation torchax cannot
    lower fails when the `Problem` first evaluates the model, with torchax's message.
    """
    torch, torchax = _import()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    if permute is not None and (
        not isinstance(permute, tuple | list)
        or sorted(permute) != list(range(len(permute)))
        or permute[0] != 0
    ):
        raise ValueError(
            f"permute={permute!r} is not a permutation of the input axes keeping the batch "
            "axis first; e.g. permute=(0, 3, 1, 2) turns (N, H, W, C) images into NCHW"
        )
    _check_layers(module, torch)
    kink = ""
    if smooth is None:
        found = [(n, m) for n, m in module.named_modules() if isinstance(m, _kinks(torch))]
        if found:
            smooth = False
            where = f"module.{found[0][0]}" if found[0][0] else "module"
            kink = f"a {type(found[0][1]).__name__} at {where}"
    states, fn = torchax.extract_jax(module)
    trained = {n for n, p in module.named_parameters() if p.requires_grad}
    if not trained:
        raise ValueError(f"from_torch: {type(module).__name__} has no parameters to train")
    params = {n: jnp.asarray(v) for n, v in states.items() if n in trained}
    fixed = {n: jnp.asarray(v) for n, v in states.items() if n not in trained}
    # state_dict names every alias of a shared tensor; named_parameters/buffers (and so
    # `states`) name each tensor once: map each state_dict key to that name.
    canon = {id(t): n for n, t in [*module.named_parameters(), *module.named_buffers()]}
    order = [(k, canon.get(id(v), k)) for k, v in module.state_dict(keep_vars=True).items()]

    def forward(p: PyTree, state: PyTree, X: Any) -> Any:
        if permute is not None:
            X = jnp.transpose(X, permute)
        return fn({**(state or {}), **p}, (X,))

    def to_native(p: PyTree, state: PyTree) -> dict[str, Any]:
        merged = {**(state or {}), **p}
        return {k: torch.from_numpy(np.array(merged[c])) for k, c in order if c in merged}

    convolutional = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())
    if permute is not None:
        hint = f"the module sees the inputs permuted by permute={tuple(permute)}"
    elif convolutional:
        hint = (
            "PyTorch convolutions take NCHW: for ntkflow's (N, H, W, C) images pass "
            "permute=(0, 3, 1, 2)"
        )
    else:
        hint = "check that the module takes a batch (N, features)"
    return Adapted(
        forward=forward,
        params0=params,
        state0=fixed or None,
        to_native=to_native,
        framework="torch",
        input_hint=hint,
        first_layer=torch_first_layer(module, torch),
        permute=None if permute is None else tuple(permute),
        name=name or type(module).__name__,
        smooth_=smooth,
        call="from_torch(module" + ("" if permute is None else f", permute={tuple(permute)}"),
        kink=kink,
    )
