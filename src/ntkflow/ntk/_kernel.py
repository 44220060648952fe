"""The empirical NTK Gram matrix `K_w = J_w J_wᵀ`, by the method that suits the problem.

The methods: `StructuredDense` (`_structured`), `JacobianContraction` (`_jacobian`),
`NTKVectorProducts` (`_ntkvp`); all build on `_jacobian`'s `AbstractNTKMethod`, whose
`traced` (a kernel inside a jitted solve), `traced_bytes` and `ring_parts` (the sharded
ring's factors) the integrators, `solver="auto"` and `_sharding` use. `get_ntk_method`
is the one place a method is chosen: everyone asks it.
"""

from typing import Any

from jaxtyping import Array, Float

from .._problem import Problem
from ._jacobian import (
    AbstractNTKMethod as AbstractNTKMethod,
    JacobianContraction as JacobianContraction,
    jacobian as jacobian,
)
from ._ntkvp import NTKVectorProducts
from ._sharding import data_mesh, sharded_ntk
from ._structured import StructuredDense, structured_applies

METHOD_NAMES = ("auto", "structured", "jacobian", "ntk_vp")


def get_ntk_method(
    method: str | AbstractNTKMethod, problem: Problem | None = None, *, chunk: int | None = None
) -> AbstractNTKMethod:
    """Resolve a method name or object. `"auto"` is `"structured"` where it applies (a
    model of dense and convolutional layers with an additive centring: `Shallow`, `MLP`,
    `CNN`) and `"jacobian"` otherwise."""
    if isinstance(method, AbstractNTKMethod):
        return method
    classes: dict[str, type[AbstractNTKMethod]] = {
        "structured": StructuredDense,
        "jacobian": JacobianContraction,
        "ntk_vp": NTKVectorProducts,
    }
    name = method
    if method == "auto":
        name = "structured" if problem is not None and structured_applies(problem) else "jacobian"
    if not isinstance(name, str) or name not in classes:
        raise ValueError(
            f"unknown method={method!r}; use {', '.join(map(repr, METHOD_NAMES))} or an "
            "AbstractNTKMethod"
        )
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an integer ≥ 1, got chunk={chunk!r}")
    cls: Any = classes[name]
    return cls(chunk=chunk) if chunk is not None else cls()


def empirical_ntk(
    problem: Problem,
    w: Float[Array, " p"] | None = None,
    *,
    method: str | AbstractNTKMethod = "auto",
    chunk: int | None = None,
    devices: Any = None,
) -> Float[Array, "n n"]:
    """The empirical NTK Gram matrix `K_w = J_w J_wᵀ ∈ R^{n×n}` (default `w = w0`).

    **Arguments:**

    - `problem`: the `Problem`.
    - `w`: the flat parameter vector (default `problem.w0`).
    - `method`: `"auto"` (the fastest that applies), `"structured"` (structured
      derivatives for dense layers, `StructuredDense`), `"jacobian"` (chunked Jacobian
      contraction, `JacobianContraction`), `"ntk_vp"` (NTK-vector products, JVP ∘ VJP,
      `NTKVectorProducts`), or an `AbstractNTKMethod` object.
    - `chunk`: points per block of the named method (bounds its memory).
    - `devices`: split the points over devices (a count, a list of `jax.Device`, or a
      `Mesh` with a `"data"` axis): `K` in row blocks, one per device, by a ring of the
      per-point factors (`_sharding.sharded_ntk`, docs/scale.md); `method` `"auto"`,
      `"structured"` or `"jacobian"`.
    """
    w = problem.w0 if w is None else w
    if devices is not None:
        if not isinstance(method, str) or chunk is not None:
            raise ValueError(
                "with devices, give method by name ('auto', 'structured', 'jacobian') and "
                f"no chunk (each device forms its own points' factors), got method={method!r}"
                f", chunk={chunk!r}"
            )
        return sharded_ntk(problem, w, get_ntk_method(method, problem), data_mesh(devices))
    m = get_ntk_method(method, problem, chunk=chunk)
    K = m(problem, w)
    # Exact symmetry: GEMM rounding makes `J Jᵀ` asymmetric in the last bits.
    return K if m.symmetric else 0.5 * (K + K.T)
