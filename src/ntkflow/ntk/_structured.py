"""The empirical NTK of dense and convolutional networks: structured derivatives.

For a network whose trained parameters all sit in dense layers `z_l = W_l X_l + √c_l b_l`,
the per-example gradient with respect to `W_l` is the outer product `G_l[i] ⊗ X_l[i]`,
with `G_l[i] = ∂f(x_i)/∂z_l` the cotangent of the layer's pre-activation. Hence

    K = Σ_l (X_l X_lᵀ + c_l) ∘ (G_l G_lᵀ)

(Novak, Sohl-Dickstein & Schoenholz, *Fast Finite Width Neural Tangent Kernel*, ICML 2022,
eq. 9): per layer two Gram matrices of sizes `n×fan_in` and `n×fan_out` and a Hadamard
product, `O(n²·(fan_in + fan_out))` instead of the contraction's `O(n²·fan_in·fan_out)`.
One forward and one backward pass (`k` for `k` outputs per point) give every `X_l`, `G_l`.

A convolution shares its weights over the positions `s`, so its per-example gradient is
`Σ_s P_l[i, s] ⊗ G_l[i, s]` (`P_l` the input patches): it is formed from one forward and
one backward pass by one contraction per window offset (`_conv_jacobian`), never by
per-example backward passes, and the layer contributes `J_l J_lᵀ` (docs/kernel.md, "Convolutions").

Centrings that are sums of copies of the base network over disjoint parameters
(`Σ_c s_c g(w_c)`: none, subtract, antisymmetric) give `K = Σ_c s_c² K_g(w_c)`.
"""

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._problem import Problem
from ..models import AbstractModel
from ._jacobian import AbstractNTKMethod, mirror_upper, padded_chunks, syrk

# `gram="auto"` on CPU: the fused XLA program up to this many points, BLAS syrk beyond.
FUSED_MAX_N = 1024
# The patch block of `_conv_columns` (a few MiB: reused, in cache).
CONV_BLOCK_BYTES = 8 * 2**20


def structured_applies(problem: Problem) -> bool:
    """Whether `StructuredDense` applies: a model of dense and convolutional layers
    (`tap_shapes`) and an additive centring."""
    return (
        problem.model.tap_shapes(problem.data.point_shape) is not None
        and problem.centering.components(problem.unravel(problem.w0)) is not None
    )


def structured_components(problem: Problem, w: Float[Array, " p"]) -> list[tuple[float, PyTree]]:
    """The centring's parameter copies `(s_c, params_c)` at `w`, so that `K = Σ_c s_c²
    K_g(params_c)`; identical copies (the antisymmetric centring at `w0`) merged into one
    with `s = √Σ s_c²`.

    **Raises:** `ValueError` when the structured kernel does not apply.
    """
    comps = problem.centering.components(problem.unravel(w))
    if problem.model.tap_shapes(problem.data.point_shape) is None or comps is None:
        raise ValueError(
            f"method='structured' needs a model of dense and convolutional layers "
            f"(Shallow, MLP, CNN) and an "
            f"additive centring, got {type(problem.model).__name__} with "
            f"{problem.centering.name!r}; use method='auto' or 'jacobian'"
        )
    comps = list(comps)
    if len(comps) > 1 and _same([c[1] for c in comps]):
        comps = [(math.sqrt(sum(s * s for s, _ in comps)), comps[0][1])]
    return comps


def _conv_jacobian(padded: Array, G: Array, c: float) -> Array:
    """A convolution's per-example weight gradients, `(k, c, q)`, so that the layer's
    kernel is `J Jᵀ`: for each window offset `(dy, dx)`, `Σ_s G[:, i, s] ⊗ padded[i, s +
    (dy, dx)]` over the positions `s` (weight sharing), one batched contraction per offset
    on a shifted view (building the patches first costs more than the contractions), with
    the bias gradients `√c·Σ_s G[:, i, s]` appended. The columns' order is immaterial."""
    k, n, height, width, c_out = G.shape
    kh, kw = padded.shape[1] - height + 1, padded.shape[2] - width + 1
    g = G.reshape(k, n, height * width, c_out)
    blocks = [
        jnp.einsum(
            "knsc,nsp->kncp",
            g,
            padded[:, dy : dy + height, dx : dx + width, :].reshape(n, height * width, -1),
        )
        for dy in range(kh)
        for dx in range(kw)
    ]
    if c:
        blocks.append(math.sqrt(c) * jnp.sum(g, axis=2)[..., None])
    return jnp.concatenate(blocks, axis=-1).reshape(k, n, -1)


def _factors_impl(
    model: AbstractModel,
    params: PyTree,
    state: PyTree,
    X: Float[Array, " c *d"],
    *,
    conv_jacobian: bool = True,
) -> tuple[tuple[Array, ...], tuple[Array | None, ...], tuple[float, ...]]:
    """Per trained layer: a dense layer's effective inputs `X_l` `(c, fan_in)` and
    pre-activation cotangents `G_l` `(k, c, fan_out)` (one per output); a convolution's
    per-example gradients `J_l` `(k, c, q)` (`_conv_jacobian`) and `None`; and each
    layer's bias coefficient `c_l` (0 for a convolution: its bias is inside `J_l`).
    Without `conv_jacobian`, a convolution gives its zero-padded input and `G_l`
    `(k, c, H, W, C_out)` with its `c_l`, for `_conv_columns` on the host."""
    shapes = model.tap_shapes(tuple(X.shape[1:]))
    assert shapes is not None
    taps = tuple(jnp.zeros((X.shape[0], *m), X.dtype) for m in shapes)

    bias: list[tuple[float, ...]] = []

    def out(taps: tuple[Array, ...]) -> tuple[Array, tuple[Array, ...]]:
        y, inputs, b = model.apply_tapped(params, state, X, taps)
        bias.append(tuple(float(c) for c in b))
        return y, inputs

    y, vjp, inputs = jax.vjp(out, taps, has_aux=True)
    k = 1 if y.ndim == 1 else y.shape[1]
    if y.ndim == 1:
        cts = jnp.ones((1, *y.shape), y.dtype)
    else:
        cts = jnp.broadcast_to(jnp.eye(k, dtype=y.dtype)[:, None, :], (k, *y.shape))
    (G,) = jax.vmap(vjp)(cts)
    xs, gs, cs = [], [], []
    for x, g, c in zip(inputs, G, bias[0], strict=True):
        if x.ndim == 2 or not conv_jacobian:
            xs.append(x)
            gs.append(g)
            cs.append(c)
        else:
            xs.append(_conv_jacobian(x, g, c))
            gs.append(None)
            cs.append(0.0)
    return tuple(xs), tuple(gs), tuple(cs)


_factors = eqx.filter_jit(_factors_impl)


def _same(trees: list[PyTree]) -> bool:
    first = jax.tree_util.tree_leaves(trees[0])
    for t in trees[1:]:
        leaves = jax.tree_util.tree_leaves(t)
        if not all(bool(jnp.array_equal(a, b)) for a, b in zip(first, leaves, strict=True)):
            return False
    return True


def _gram_block_impl(
    xi: tuple[Array, ...],
    gi: tuple[Array | None, ...],
    xj: tuple[Array, ...],
    gj: tuple[Array | None, ...],
    bias: Any,
) -> Array:
    """`Σ_l (X_l[I] X_l[J]ᵀ + c_l) ∘ (G_l[I] G_l[J]ᵀ)` over dense layers, plus
    `J_l[I] J_l[J]ᵀ` over convolutions, as a `(|I|·k, |J|·k)` block."""
    total = None
    for i, (a, g, b, h) in enumerate(zip(xi, gi, xj, gj, strict=True)):
        if g is None or h is None:  # a convolution: its per-example gradients
            if a.shape[0] == 1:
                term = a[0] @ b[0].T
            else:
                GG = jnp.einsum("aiq,bjq->iajb", a, b)
                term = GG.reshape(GG.shape[0] * GG.shape[1], -1)
            total = term if total is None else total + term
            continue
        S = a @ b.T + bias[i]
        if g.shape[0] == 1:  # scalar outputs: plain GEMMs
            term = S * (g[0] @ h[0].T)
        else:
            GG = jnp.einsum("aic,bjc->iajb", g, h)
            term = (S[:, None, :, None] * GG).reshape(GG.shape[0] * GG.shape[1], -1)
        total = term if total is None else total + term
    assert total is not None
    return total


_gram_block = jax.jit(_gram_block_impl)


@eqx.filter_jit
def _fused(
    model: AbstractModel, params: PyTree, state: PyTree, X: Float[Array, " n *d"]
) -> Float[Array, "nk nk"]:
    """The whole kernel of one parameter copy in one XLA program (factors, Gram matrices,
    Hadamard products), exactly symmetric: the fastest path while `K` fits one block."""
    xs, gs, bias = _factors_impl(model, params, state, X)
    K = _gram_block_impl(xs, gs, xs, gs, bias)
    return 0.5 * (K + K.T)


def fused_kernel(problem: Problem, comps) -> Float[Array, "nk nk"]:
    """`Σ_c s_c² K_g(w_c)` over the centring's parameter copies, each by `_fused`:
    traceable, so it also serves inside a jitted solve (`ExponentialNTK`)."""
    K = None
    for s, params in comps:
        term = (s * s) * _fused(problem.model, params, problem.state, problem.data.X)
        K = term if K is None else K + term
    assert K is not None
    return K


class StructuredDense(AbstractNTKMethod):
    """The structured-derivatives kernel `K = Σ_l (X_l X_lᵀ + c_l) ∘ (G_l G_lᵀ)` for
    models of dense and convolutional layers (`Shallow`, `MLP`, `CNN`, under any built-in
    centring).

    **Arguments:**

    - `gram`: how the Gram matrices are formed: `"syrk"` (BLAS `?syrk` through SciPy,
      half the FLOPs of a GEMM by symmetry; CPU, scalar outputs), `"jax"` (XLA GEMMs: one
      fused program with the forward/backward pass while `n ≤ chunk`, row blocks of
      `chunk` points beyond; any device and output count), or `"auto"` (`"syrk"` on CPU
      with scalar outputs and more than 1024 points, or any number for a model with
      convolutions; else `"jax"`).
    - `chunk`: points per forward/backward pass and per block of `K` on the `"jax"` path
      (memory `O(chunk·Σ_l width_l + n²)`).

    **Raises:** `ValueError` when the model has no dense-layer structure
    (`dense_widths is None`, e.g. `from_apply`) or the centring is not additive.
    """

    gram: str = eqx.field(static=True, default="auto")
    chunk: int = eqx.field(static=True, default=4096)
    symmetric: ClassVar[bool] = True

    def __check_init__(self):
        if self.gram not in ("auto", "syrk", "jax"):
            raise ValueError(f"gram must be 'auto', 'syrk' or 'jax', got gram={self.gram!r}")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"chunk must be an integer ≥ 1, got chunk={self.chunk!r}")

    def __call__(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        model = problem.model
        comps = structured_components(problem, w)
        X = problem.data.X
        n_points, k = problem.data.n, problem.data.k
        gram = self.gram
        if gram == "auto":
            # Dense models: one fused XLA program at small n (on CPU its fixed cost is the
            # lowest), BLAS syrk beyond (`bench/ntk.py`). Convolutional models: the BLAS path
            # at every n on CPU, whose host-formed J_l beat XLA's batched dots
            # (`bench/cnn.py`). Both need scalar outputs.
            cpu = jax.default_backend() == "cpu"
            shapes = model.tap_shapes(problem.data.point_shape) or ()
            conv = any(len(t) > 1 for t in shapes)
            gram = "syrk" if k == 1 and cpu and (n_points > FUSED_MAX_N or conv) else "jax"
        if gram == "syrk" and k != 1:
            raise ValueError(f"gram='syrk' needs scalar outputs, got k={k}; use 'jax'")
        if gram == "jax" and n_points <= self.chunk:
            return fused_kernel(problem, comps)
        if gram == "syrk":
            K = _kernel_syrk(model, comps, problem.state, X, self.chunk, problem.dtype)
            # K is symmetric: in Fortran order (SciPy's BLAS) its transpose is the same
            # matrix in C order, which JAX takes without a strided copy.
            return jnp.asarray(K if K.flags.c_contiguous else K.T)
        factors, bias = [], ()
        for s, params in comps:
            xs, gs = [], []
            for Xc, valid in padded_chunks(X, self.chunk):
                a, g, bias = _factors(model, params, problem.state, Xc)
                if valid < Xc.shape[0]:
                    a = [
                        x[:valid] if h is not None else x[:, :valid]
                        for x, h in zip(a, g, strict=True)
                    ]
                    g = [h[:, :valid] if h is not None else None for h in g]
                xs.append(a)
                gs.append(g)
            if len(xs) > 1:
                conv = [gs[0][i] is None for i in range(len(bias))]
                xs = [
                    jnp.concatenate([c[i] for c in xs], axis=1 if conv[i] else 0)
                    for i in range(len(bias))
                ]
                gs = [
                    None if conv[i] else jnp.concatenate([c[i] for c in gs], axis=1)
                    for i in range(len(bias))
                ]
            else:
                xs, gs = list(xs[0]), list(gs[0])
            factors.append((s, xs, gs))
        return _combine_jax(factors, bias, self.chunk, k, problem.dtype)

    def traced(self, problem: Problem, w: Float[Array, " p"]) -> Float[Array, "n n"]:
        """One fused XLA program per parameter copy (no Jacobian formed)."""
        comps = problem.centering.components(problem.unravel(w))
        assert comps is not None
        return fused_kernel(problem, comps)

    def traced_bytes(self, problem: Problem) -> int:
        return 0  # (the layers' factors: O(n·Σ widths), never the Jacobian)

    def ring_parts(self, problem: Problem, w: Float[Array, " p"]) -> tuple[Any, Any]:
        """A block's layer inputs and cotangents per parameter copy, and the structured
        kernel of two blocks `Σ_c s_c² K_g`."""
        comps = structured_components(problem, w)
        model, state = problem.model, problem.state
        biases: list[Any] = []

        def features(x: Array) -> PyTree:
            out = []
            for _, params in comps:
                xs, gs, bias = _factors_impl(model, params, state, x)
                biases.append(bias)
                out.append((xs, gs))
            return out

        def block(a: PyTree, b: PyTree) -> Array:
            total = None
            for (s, _), (xa, ga), (xb, gb) in zip(comps, a, b, strict=True):
                term = (s * s) * _gram_block_impl(xa, ga, xb, gb, biases[0])
                total = term if total is None else total + term
            assert total is not None
            return total

        return features, block


def _conv_columns(padded: np.ndarray, G: np.ndarray, c: float, scale: float, out: np.ndarray):
    """`scale · J_l` of a convolution (one output) into `out` `(c, q)` on the host: per
    block of points, the patches from shifted views of the zero-padded input, then one
    product `G_l[i]ᵀ P_l[i]` per point by NumPy's batched `matmul` (about twice XLA's
    batched dot on CPU here), then the bias columns `√c·Σ_s G_l[i, s]`. The blocks keep the
    temporaries small and reused (one whole-batch patch array is tens of MiB, fresh pages
    at every call). The columns' order is immaterial."""
    n, height, width, c_out = G.shape
    kh, kw = padded.shape[1] - height + 1, padded.shape[2] - width + 1
    s, q = height * width, kh * kw * padded.shape[-1]
    block = max(1, min(n, CONV_BLOCK_BYTES // (4 * padded.itemsize * s * q)))
    P = np.empty((block, height, width, kh * kw, padded.shape[-1]), padded.dtype)
    T = np.empty((block, c_out, q), padded.dtype)
    factor = np.asarray(scale, padded.dtype)
    for start in range(0, n, block):
        m = min(block, n - start)
        rows = slice(start, start + m)
        for dy in range(kh):
            for dx in range(kw):
                P[:m, :, :, dy * kw + dx] = padded[rows, dy : dy + height, dx : dx + width]
        g = G[rows].reshape(m, s, c_out)
        np.matmul(g.transpose(0, 2, 1), P[:m].reshape(m, s, q), out=T[:m])
        np.multiply(T[:m].reshape(m, -1), factor, out=out[rows, : c_out * q])
    if c:
        root = np.asarray(scale * math.sqrt(c), padded.dtype)
        np.multiply(G.reshape(n, s, c_out).sum(axis=1), root, out=out[:, c_out * q :])


def _n_columns(x: Array, g: Array, c: float) -> int:
    """A layer's columns in `_kernel_syrk`'s `J`: a convolution's `J_l`, a rank-one dense
    layer's gradient (with its bias), or none (wider dense layers are Gram products)."""
    if x.ndim == 4:
        kh, kw = x.shape[1] - g.shape[2] + 1, x.shape[2] - g.shape[3] + 1
        return g.shape[-1] * (kh * kw * x.shape[-1] + (1 if c else 0))
    return x.shape[1] + (1 if c else 0) if g.shape[-1] == 1 else 0


def _kernel_syrk(model, comps, state, X, chunk: int, dtype) -> np.ndarray:
    """`K` (scalar outputs) on the host by BLAS `syrk`, `chunk` points per forward and
    backward pass. Convolutions' gradients (`_conv_columns`) and rank-one dense layers (a
    scalar readout: its gradient `X ∘ g` is no wider than `X`), scaled by their copy's `s`,
    are written side by side into one host array `J` and contracted by one `syrk`; wider
    dense layers add `s²·(X Xᵀ + c) ∘ (G Gᵀ)`."""
    n = X.shape[0]
    J, K, width, conv = None, None, 0, False
    for copy, (s, params) in enumerate(comps):
        wide: dict[int, tuple[list, list, float]] = {}
        start = 0
        for Xc, valid in padded_chunks(X, chunk):
            xs, gs_, bias = _factors(model, params, state, Xc, conv_jacobian=False)
            gs = [g for g in gs_ if g is not None]  # never None without `conv_jacobian`
            if J is None:
                widths = [_n_columns(*layer) for layer in zip(xs, gs, bias, strict=True)]
                width = sum(widths)
                J = np.empty((n, len(comps) * width), dtype)
            col, rows = copy * width, slice(start, start + valid)
            for i, (x, g, c) in enumerate(zip(xs, gs, bias, strict=True)):
                x, g = np.asarray(x)[:valid], np.asarray(g)[0, :valid]
                if x.ndim == 4:
                    _conv_columns(x, g, c, s, J[rows, col : col + widths[i]])
                    conv = True
                elif g.shape[1] == 1:
                    np.multiply(x, g * np.asarray(s, dtype), out=J[rows, col : col + x.shape[1]])
                    if c:
                        J[rows, col + x.shape[1]] = (s * math.sqrt(c)) * g[:, 0]
                else:
                    part = wide.setdefault(i, ([], [], c))
                    part[0].append(x)
                    part[1].append(g)
                col += widths[i]
            start += valid
        for xl, gl, c in wide.values():
            S = syrk(np.concatenate(xl) if len(xl) > 1 else xl[0])
            if c:
                S += np.asarray(c, dtype)
            S *= syrk(np.concatenate(gl) if len(gl) > 1 else gl[0])
            if s * s != 1.0:
                S *= np.asarray(s * s, dtype)
            K = S if K is None else K + S
    assert J is not None
    if J.shape[1]:
        # With convolutions, NumPy's `J @ J.T` (a `syrk` too: it detects the transpose), on
        # the BLAS whose threads just formed their columns: SciPy's `syrk` there ran ~1.7×
        # slower while NumPy's threads were still spinning from the `matmul`. Without,
        # SciPy's, like the wider layers' Gram matrices (one BLAS pool either way).
        S = J @ J.T if conv else syrk(J)
        K = S if K is None else K + S
    assert K is not None
    return mirror_upper(K)


def _rows(x: Array, g: Array | None, start: int, chunk: int) -> Array:
    """Rows `start … start + chunk` of a layer's factor (the point axis is 1 for a
    convolution's `J_l` `(k, n, q)`, 0 for a dense layer's `X_l`)."""
    return x[start : start + chunk] if g is not None else x[:, start : start + chunk]


def _combine_jax(factors, bias, chunk, k, dtype) -> Array:
    x0, g0 = factors[0][1][0], factors[0][2][0]
    n = x0.shape[0] if g0 is not None else x0.shape[1]
    b = jnp.asarray(bias, dtype)
    K = np.zeros((n * k, n * k), dtype=dtype)
    starts = list(range(0, n, chunk))
    for i in starts:
        for j in starts:
            if j < i:
                continue
            block = None
            for s, xs, gs in factors:
                xi = tuple(_rows(x, g, i, chunk) for x, g in zip(xs, gs, strict=True))
                gi = tuple(None if g is None else g[:, i : i + chunk] for g in gs)
                xj = tuple(_rows(x, g, j, chunk) for x, g in zip(xs, gs, strict=True))
                gj = tuple(None if g is None else g[:, j : j + chunk] for g in gs)
                term = (s * s) * _gram_block(xi, gi, xj, gj, b)
                block = term if block is None else block + term
            blk = np.asarray(block)
            if i == j:
                blk = 0.5 * (blk + blk.T)  # exactly symmetric
            K[i * k : i * k + blk.shape[0], j * k : j * k + blk.shape[1]] = blk
            K[j * k : j * k + blk.shape[1], i * k : i * k + blk.shape[0]] = blk.T
    return jnp.asarray(K)
