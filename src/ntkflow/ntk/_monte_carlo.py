"""`monte_carlo_kernel_fn`: the NNGP and NTK of a finite network averaged over random
initialisations, with the Monte-Carlo standard error (docs/theory.md, "Monte-Carlo
kernels"), with neural-tangents' signature and sampling."""

import collections
import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from ..predict._gp import KERNELS
from ..predict._layout import named, requested
from ._ntk_fn import _axes, _contract, empirical_ntk_fn

MonteCarloEstimate = collections.namedtuple("MonteCarloEstimate", "mean standard_error")
"""A Monte-Carlo kernel (`mean`) and the standard error of each entry
(`standard_error`: the samples' standard deviation over `√n`; NaN for one sample)."""


def _counts(n_samples: Any) -> tuple[list[int], bool]:
    """The sample counts asked for, ascending, and whether a generator is returned."""
    if isinstance(n_samples, int) and not isinstance(n_samples, bool):
        counts, generator = [n_samples], False
    elif isinstance(n_samples, Iterable):
        counts, generator = sorted(set(n_samples)), True
    else:
        counts, generator = [], True
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(
            f"n_samples must be an integer ≥ 1 or a collection of them, got {n_samples!r}"
        )
    return counts, generator


def _takes_rng(apply_fn: Callable) -> bool:
    try:
        params = inspect.signature(apply_fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == "rng" for p in params)


def monte_carlo_kernel_fn(
    init_fn: Callable,
    apply_fn: Callable,
    key: Any,
    n_samples: int | Iterable[int],
    batch_size: int = 0,
    device_count: int = -1,
    store_on_device: bool = True,
    trace_axes: Any = (-1,),
    diagonal_axes: Any = (),
    vmap_axes: Any = None,
    implementation: Any = 1,
) -> Callable[..., Any]:
    """The mean over `n` random initialisations of the empirical NNGP
    `f(x1)f(x2)ᵀ` and NTK `J(x1)J(x2)ᵀ` (each a mean over the `trace_axes`, as
    neural-tangents computes them), sampled as neural-tangents 0.6.5 samples them: the
    `i`-th network from the `i`-th split of `key`, `init_fn(init_key, x1.shape)`, with
    `rng=` passed to `apply_fn` when it takes one.

    **Arguments:** neural-tangents 0.6.5's. `batch_size` (> 0) computes the NTK in blocks
    of that many points; `device_count` and `store_on_device` are accepted and unused
    (one device; ntkflow shards kernels with `devices=`, docs/scale.md).

    **Returns:** `kernel_fn(x1, x2=None, get=None, *, return_standard_error=False,
    **apply_fn_kwargs)`: for `get` a name its kernel, for a tuple (default
    `("nngp", "ntk")`) a named tuple `MonteCarloKernel`; with
    `return_standard_error=True` each kernel is a `MonteCarloEstimate(mean,
    standard_error)`. When `n_samples` is a collection, a generator of those, one per
    count, ascending (the samples are shared: the estimate at `n` uses the first `n`).
    """
    counts, generator = _counts(n_samples)
    ntk_fn = empirical_ntk_fn(
        apply_fn,
        trace_axes=trace_axes,
        diagonal_axes=diagonal_axes,
        vmap_axes=vmap_axes,
        implementation=implementation,
        batch_size=batch_size or None,
    )
    rng_kw = _takes_rng(apply_fn)

    def nngp(x1: Any, x2: Any, params: Any, kw: dict) -> jnp.ndarray:
        f1 = apply_fn(params, x1, **kw)
        f2 = f1 if x2 is None else apply_fn(params, x2, **kw)
        trace = _axes(trace_axes, f1.ndim, "trace_axes")
        diag = _axes(diagonal_axes, f1.ndim, "diagonal_axes")
        scale = 1.0 / math.prod(f1.shape[i] for i in trace)
        return scale * _contract(f1, f2, f1.ndim, trace, diag)

    def samples(x1: Any, x2: Any, names: tuple[str, ...], kw: dict) -> Iterator[tuple[int, dict]]:
        k, total, squares = key, None, None
        shape = jax.tree_util.tree_map(lambda x: x.shape, x1)
        for n in range(1, counts[-1] + 1):
            k, split = jax.random.split(k)
            init_key, rng = jax.random.split(split, 2)
            _, params = init_fn(init_key, shape)
            args = dict(kw, rng=rng) if rng_kw else kw
            one = {
                g: nngp(x1, x2, params, args) if g == "nngp" else ntk_fn(x1, x2, params, **args)
                for g in names
            }
            total = one if total is None else {g: total[g] + one[g] for g in names}
            sq = {g: one[g] ** 2 for g in names}
            squares = sq if squares is None else {g: squares[g] + sq[g] for g in names}
            if n in counts:
                yield n, {g: _estimate(total[g], squares[g], n) for g in names}

    def kernel_fn(
        x1: Any,
        x2: Any = None,
        get: Any = None,
        *,
        return_standard_error: bool = False,
        **apply_fn_kwargs: Any,
    ) -> Any:
        names, single = requested(get, KERNELS, KERNELS)

        def shown(estimates: dict) -> Any:
            out = {g: e if return_standard_error else e.mean for g, e in estimates.items()}
            return named(out, single, "MonteCarloKernel")

        stream = (shown(e) for _, e in samples(x1, x2, names, apply_fn_kwargs))
        if generator:
            return stream
        *_, last = stream
        return last

    return kernel_fn


def _estimate(total: jnp.ndarray, squares: jnp.ndarray, n: int) -> MonteCarloEstimate:
    """The mean of `n` samples from their sum and sum of squares, and its standard error
    `sqrt(s²/n)` with the unbiased sample variance `s²` (NaN for `n = 1`)."""
    mean = total / n
    if n == 1:
        return MonteCarloEstimate(mean, jnp.full_like(mean, jnp.nan))
    variance = jnp.maximum(squares - n * mean**2, 0.0) / (n - 1)
    return MonteCarloEstimate(mean, jnp.sqrt(variance / n))
