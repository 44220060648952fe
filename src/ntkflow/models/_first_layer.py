"""The first layer of a model brought from a framework and the input size it expects, so
that a model that fails on the data because it was built for other inputs gets one line
naming both (`from_torch: the module's first layer module.0 (Linear) takes 5 features;
the data has 4`) instead of an `einsum`'s words from deep in its layers. Consulted only
after the model failed: a module that reshapes its inputs itself is never refused."""

import dataclasses
import math
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class FirstLayer:
    """The layer that first reads the inputs: where it is (`module.0`), its kind
    (`Linear`, `Conv2d`), whether it is `convolutional` (it reads channels, not
    features), the `size` it expects (features or channels), and the axis of a point it
    reads them on (`-1`: the last; `0`: the first, as PyTorch's `CHW` after a permute)."""

    where: str
    kind: str
    convolutional: bool
    size: int
    axis: int = -1


def mismatch(
    first: FirstLayer | None,
    point_shape: tuple[int, ...],
    call: str,
    *,
    permute: tuple[int, ...] | None = None,
) -> str | None:
    """The one-line error when the data's points do not have the size `first` reads (the
    model having failed on them), or `None`. `call` names the user's call (`from_torch`);
    `permute` is `from_torch`'s (the axes of a batch `(N, *point)`), applied before the
    module sees the inputs."""
    if first is None or not point_shape:
        return None
    shape = tuple(point_shape)
    if permute is not None and len(permute) == len(shape) + 1:
        shape = tuple(shape[i - 1] for i in permute[1:])
    if first.convolutional:
        if len(shape) < 2:
            return None  # (a 1-D point into a convolution: the framework's own message)
        got = shape[first.axis]
        what = "channels"
        where = "first" if first.axis == 0 else "last"
        have = f"the data's points {tuple(point_shape)} have {got} on the {where} axis"
        if permute is not None:
            have += f" after permute={tuple(permute)}"
    else:
        # A dense first layer reads the last axis (after a flatten, all of a point).
        got = shape[-1]
        flat = math.prod(shape)
        if first.size == flat and len(shape) > 1:
            return None
        what = "features"
        have = f"the data has {got}" if len(shape) == 1 else f"the data's points are {shape}"
    if got == first.size:
        return None
    last = shape[-1] if shape else None
    if call == "from_torch" and first.convolutional and permute is None and last == first.size:
        fix = (
            "PyTorch convolutions take NCHW: for ntkflow's (N, H, W, C) images pass "
            "permute=(0, 3, 1, 2)"
        )
    elif first.convolutional:
        fix = f"build the first layer for {got} {what}"
    else:
        fix = f"build the first layer for {got} {what}, or give the data {first.size}"
    first_line = f"{call}: the module's first layer {first.where} ({first.kind}) takes "
    return f"{first_line}{first.size} {what}; {have}; {fix}"


def torch_first_layer(module: Any, torch: Any) -> FirstLayer | None:
    """The first `nn.Linear` or `nn.ConvNd` in registration order (a `Sequential`'s
    order; for a custom `forward`, the order the layers were assigned, usually the
    order they run). Lazy layers and others: `None`."""
    nn = torch.nn
    for name, sub in module.named_modules():
        where = f"module.{name}" if name else "module"
        kind = type(sub).__name__
        if isinstance(sub, nn.modules.lazy.LazyModuleMixin):
            return None
        if isinstance(sub, nn.Linear | nn.Bilinear):
            size = sub.in1_features if isinstance(sub, nn.Bilinear) else sub.in_features
            return FirstLayer(where, kind, False, int(size))
        if isinstance(sub, nn.modules.conv._ConvNd):
            return FirstLayer(where, kind, True, int(sub.in_channels), axis=0)
    return None


@dataclasses.dataclass(frozen=True)
class _Layer:
    where: str
    kind: str
    convolutional: bool
    size_in: int
    size_out: int
    axis: int = -1


def _chain_first(layers: list[_Layer]) -> FirstLayer | None:
    """The layer that reads the inputs, told by sizes rather than by an attribute order
    (NNX and pytrees sort names; Linen names layers as they are built, not as they run):
    in a chain of layers each one's input size is another's output size, except the
    first's. `None` when that does not single one out (a width equal to the input's)."""
    firsts = [a for a in layers if not any(b is not a and b.size_out == a.size_in for b in layers)]
    if len(firsts) != 1:
        return None
    a = firsts[0]
    return FirstLayer(a.where, a.kind, a.convolutional, a.size_in, a.axis)


def nnx_first_layer(module: Any, nnx: Any) -> FirstLayer | None:
    """The `nnx.Linear` or `nnx.Conv` that reads the inputs (`_chain_first`)."""
    layers = []
    for path, sub in nnx.iter_graph(module):
        where = "module" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
        if isinstance(sub, nnx.Linear | nnx.Conv):
            conv = isinstance(sub, nnx.Conv)
            kind = "nnx.Conv" if conv else "nnx.Linear"
            layers.append(_Layer(where, kind, conv, int(sub.in_features), int(sub.out_features)))
    return _chain_first(layers)


def linen_first_layer(params: Any) -> FirstLayer | None:
    """The Linen `Dense` (`kernel` `(in, out)`) or `Conv` (`(*window, in, out)`) that
    reads the inputs (`_chain_first`)."""
    layers = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [getattr(k, "key", None) for k in path]
        if keys and keys[-1] == "kernel" and getattr(leaf, "ndim", 0) >= 2:
            where = "params" + "".join(f"[{k!r}]" for k in keys[:-1])
            conv = leaf.ndim > 2
            kind = "Conv" if conv else "Dense"
            layers.append(_Layer(where, kind, conv, int(leaf.shape[-2]), int(leaf.shape[-1])))
    return _chain_first(layers)


def equinox_first_layer(module: Any, *, batched: bool) -> FirstLayer | None:
    """The `eqx.nn.Linear` or `eqx.nn.Conv` that reads the inputs (`_chain_first`; a
    module of one point reads a `Conv`'s channels on the point's first axis). `None` for
    a module that takes a batch itself (its layout is its own)."""
    import equinox as eqx

    if batched:
        return None
    kinds = (eqx.nn.Linear, eqx.nn.Conv)
    flat = jax.tree_util.tree_flatten_with_path(module, is_leaf=lambda x: isinstance(x, kinds))
    layers = []
    for path, leaf in flat[0]:
        where = "module" + jax.tree_util.keystr(path)
        if isinstance(leaf, eqx.nn.Linear):
            size_in, size_out = (
                1 if s == "scalar" else int(s) for s in (leaf.in_features, leaf.out_features)
            )
            layers.append(_Layer(where, "eqx.nn.Linear", False, size_in, size_out))
        elif isinstance(leaf, eqx.nn.Conv):
            size = (int(leaf.in_channels), int(leaf.out_channels))
            layers.append(_Layer(where, "eqx.nn.Conv", True, *size, axis=0))
    return _chain_first(layers)
