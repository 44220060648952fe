"""neural-tangents' array layouts for kernels and targets, as matrices (docs/models.md,
"Migrating from neural-tangents").

A kernel between two sets of outputs of shape `S1` and `S2` (the targets' shape, less the
`trace_axes`, along which the kernel is `Θ ⊗ I`) has the *interleaved* shape
`(S1[0], S2[0], S1[1], S2[1], …)`. `as_matrix` turns it into the `(∏S1, ∏S2)` matrix the
linear algebra needs, `interleaved` turns a matrix back. Targets `y` of shape `S` become
the `(∏S[kept], ∏S[traced])` matrix whose columns are the traced outputs (`Layout`).
A `get` argument names the kernels asked for (`requested`), and the answer is one of
them or a named tuple of them (`named`).
"""

import collections
import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np


def requested(
    get: Any, allowed: tuple[str, ...], default: tuple[str, ...]
) -> tuple[tuple[str, ...], bool]:
    """The names `get` asks for (`None`: `default`) and whether it named one (then the
    answer is that one, not a named tuple); a name not `allowed` is refused."""
    names = default if get is None else get
    single = isinstance(names, str)
    names = (names,) if single else tuple(names)
    for name in names:
        if name not in allowed:
            raise ValueError(f"get must be one of {allowed} or a tuple of them, got {name!r}")
    return names, single


def named(out: dict[str, Any], single: bool, typename: str) -> Any:
    """The answer for one name (`single`) or a named tuple `typename` of them, as
    neural-tangents returns them."""
    if single:
        return next(iter(out.values()))
    return collections.namedtuple(typename, tuple(out))(**out)


def canonical_axes(axes: Any, ndim: int) -> tuple[int, ...]:
    """`axes` (an int or a sequence, negative allowed) as sorted non-negative axes."""
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = sorted({a % ndim for a in axes}) if ndim else []
    return tuple(out)


def as_matrix(k: Any) -> jnp.ndarray:
    """An interleaved kernel `(a0, b0, a1, b1, …)` as the matrix `(a0·a1·…, b0·b1·…)`."""
    k = jnp.asarray(k)
    if k.ndim % 2:
        raise ValueError(f"a kernel has an even number of axes, got shape {k.shape}")
    rows, cols = k.shape[0::2], k.shape[1::2]
    order = tuple(range(0, k.ndim, 2)) + tuple(range(1, k.ndim, 2))
    return jnp.transpose(k, order).reshape(math.prod(rows), math.prod(cols))


def interleaved(m: jnp.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]) -> jnp.ndarray:
    """The matrix `m` (`(…, ∏rows, ∏cols)`, leading axes kept in front) in the
    interleaved layout `(…, r0, c0, r1, c1, …)`."""
    lead = m.shape[:-2]
    m = jnp.reshape(m, lead + rows + cols)
    n, d = len(lead), len(rows)
    pairs = [n + i for pair in zip(range(d), range(d, 2 * d), strict=True) for i in pair]
    return jnp.transpose(m, list(range(n)) + pairs)


def regularized(K: jnp.ndarray, diag_reg: float, absolute: bool) -> jnp.ndarray:
    """`K + r·I` with `r = diag_reg` (`absolute`) or `diag_reg · tr(K)/dim` (relative to
    the mean diagonal, neural-tangents' default)."""
    if not diag_reg:
        return K
    r = diag_reg if absolute else diag_reg * jnp.trace(K) / K.shape[0]
    return K + r * jnp.eye(K.shape[0], dtype=K.dtype)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The targets' shape split into the axes the kernel covers (`kept`) and the traced
    ones (`traced`, where the kernel is `Θ ⊗ I`)."""

    ndim: int
    traced: tuple[int, ...]

    @classmethod
    def of(cls, y: Any, trace_axes: Any) -> "Layout":
        y = np.shape(y)
        return cls(len(y), canonical_axes(trace_axes, len(y)))

    @property
    def kept(self) -> tuple[int, ...]:
        return tuple(a for a in range(self.ndim) if a not in self.traced)

    def matrix(self, x: jnp.ndarray) -> jnp.ndarray:
        """`x` (an array of the targets' rank) as `(∏kept, ∏traced)`."""
        x = jnp.moveaxis(x, self.traced, tuple(range(self.ndim - len(self.traced), self.ndim)))
        n_kept = self.ndim - len(self.traced)
        return x.reshape(math.prod(x.shape[:n_kept]), -1)

    def array(self, m: jnp.ndarray, kept: tuple[int, ...], traced: tuple[int, ...]) -> jnp.ndarray:
        """`m` (`(…, ∏kept, ∏traced)`, leading axes kept in front) back in the targets'
        axis order, with the sizes `kept` and `traced` of those axes."""
        lead = m.shape[:-2]
        m = m.reshape(lead + kept + traced)
        n = len(lead)
        k = len(kept)
        src = tuple(range(n + k, n + k + len(traced)))
        dst = tuple(n + a for a in self.traced)
        return jnp.moveaxis(m, src, dst)

    def sizes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The sizes of the kept and the traced axes in `shape`."""
        return tuple(shape[a] for a in self.kept), tuple(shape[a] for a in self.traced)


def finite_times(t: Any) -> jnp.ndarray:
    """The times `t` (any shape) as an array, refused unless finite (`t=None` is the
    way to ask for `t = ∞`)."""
    if not np.all(np.isfinite(np.asarray(t))):
        raise ValueError(f"t must be finite times (t=None for t = ∞), got t={t!r}")
    return jnp.asarray(t, dtype=float)
