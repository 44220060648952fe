"""neural-tangents' `kernel_fn(x1, x2, get)` convention, and an ntkflow model's
infinite-width kernels in it (`as_kernel_fn`), for the predictors (`ntkflow.predict`) and
the kernels written to disk (`ntkflow.kernel_to_disk`)."""

import collections
from collections.abc import Callable
from typing import Any

from ..models._base import AbstractModel

Kernel = collections.namedtuple("Kernel", "nngp ntk", defaults=(None, None))
"""The kernels a prediction needs, by name (neural-tangents' `predict.Kernel`)."""


def as_kernel_fn(kernel_fn: Any) -> Callable[..., Any]:
    """`kernel_fn(x1, x2, get)` as neural-tangents calls it: the function itself, or an
    ntkflow model's infinite-width kernels (`infinite_kernel`: MLP, Shallow, CNN)."""
    if isinstance(kernel_fn, AbstractModel):
        from ._infinite import infinite_kernel

        model = kernel_fn

        def of_model(x1: Any, x2: Any, get: Any, **_: Any) -> Any:
            k = infinite_kernel(model, x1, x2)
            if isinstance(get, str):
                return getattr(k, get)
            return Kernel(**{g: getattr(k, g) for g in get})

        return of_model
    if not callable(kernel_fn):
        raise ValueError(
            "kernel_fn must be a function kernel_fn(x1, x2, get) or an ntkflow model (MLP, "
            f"Shallow, CNN), got {type(kernel_fn).__name__}"
        )
    return kernel_fn
