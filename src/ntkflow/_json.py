"""JSON encoding of results: strict JSON has no `inf` or `nan`, so they become strings."""

import math
from typing import Any

import jax
import numpy as np


def jsonable(x: Any) -> Any:
    """Recursively convert a result to strict-JSON-ready Python values.

    Non-finite floats become the strings `"inf"`, `"-inf"`, `"nan"` (see `unjson_float`);
    NumPy/JAX scalars and arrays become Python numbers and lists; tuples become lists.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, np.ndarray | jax.Array):
        return jsonable(np.asarray(x).tolist())
    return x


def unjson_float(x: Any) -> float:
    """Inverse of `jsonable` for one float."""
    return float(x)  # float("inf"), float("-inf") and float("nan") parse the strings
