"""`Problem`: the lecture's `f(w) ∈ R^n` with scale `α`, centring and a loss."""

import math
import warnings
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from ._centering import AbstractCentering, get_centering
from ._errors import InputError
from ._losses import AbstractLoss, Squared, get_loss, loss_name
from ._memory import TooLarge, available_bytes, human_bytes
from .datasets import Dataset
from .models import AbstractModel


def as_key(key: int | PRNGKeyArray) -> PRNGKeyArray:
    """An integer seed or a JAX key, as a key."""
    if isinstance(key, bool):
        raise TypeError(f"key must be an integer seed or a JAX PRNG key, got key={key!r}")
    if isinstance(key, int | np.integer):
        return jax.random.key(int(key))
    return key


def default_dtype() -> Any:
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def max_alpha(dtype: Any) -> float:
    """The largest `α` a problem of this dtype accepts: `α²·1e8` stays finite (the flows'
    rates are `α²λ(K0)`), about `1.3e150` in float64 and `1.8e15` in float32."""
    return math.sqrt(float(jnp.finfo(dtype).max) / 1e8)


class Unravel(eqx.Module):
    """`w ∈ R^p` back to the parameter pytree: `ravel_pytree`'s inverse, but hashable by
    value (tree structure, shapes, dtypes), so equal structures share compiled code."""

    treedef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, tree: PyTree):
        leaves, self.treedef = jax.tree_util.tree_flatten(tree)
        self.shapes = tuple(tuple(x.shape) for x in leaves)
        self.dtypes = tuple(str(x.dtype) for x in leaves)

    def __call__(self, w: Float[Array, " p"]) -> PyTree:
        return _unravel(self, w)  # one compiled program, not one dispatch per slice

    def _leaves(self, w: Float[Array, " p"]) -> PyTree:
        leaves, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = math.prod(shape)
            leaves.append(w[start : start + size].reshape(shape).astype(dtype))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


_unravel = eqx.filter_jit(Unravel._leaves)


def _cast_floating(x: Any, dtype: Any) -> Any:
    """A fixed-state leaf in the problem's dtype if it is floating; integer leaves (counts,
    RNG keys of a framework's module) are kept as they are."""
    arr = jnp.asarray(x)
    return arr.astype(dtype) if jnp.issubdtype(arr.dtype, jnp.floating) else arr


def _float_dtype(dtype: Any) -> Any:
    """`dtype` as float32 or float64 (`None`: the default). **Raises:** `ValueError`."""
    if dtype is None:
        return default_dtype()
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None  # (and not `jnp.dtype(None)`, which NumPy reads as float64)
    if name not in ("float32", "float64"):
        raise ValueError(
            f"dtype must be float32 or float64, got dtype={dtype!r}; pass dtype='float64' "
            "(the default) or dtype='float32'"
        )
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            "dtype='float64' needs JAX's 64-bit mode, which is off (NTKFLOW_X64=0 or "
            "jax_enable_x64=False); pass dtype='float32' or turn it on"
        )
    return jnp.dtype(name)


def _check_memory(
    model: AbstractModel, data: Dataset, centering: AbstractCentering, key: Any, dtype: Any
) -> None:
    """Refuse a problem that cannot fit in the memory here, from shapes alone
    (`jax.eval_shape`: nothing is allocated).

    Counted: the parameters twice (the model's pytree and the flat `w0`), one forward
    pass's hidden activations on the training points (for models that give their
    `dense_widths`), and the `n × n` kernel (the certificate's spectrum forms it). Every
    run needs at least this much, so only problems that cannot run are refused.
    **Raises:** `_memory.TooLarge`.
    """
    try:
        base = jax.eval_shape(lambda k: model.init_for(k, data.point_shape), key)
        lifted = jax.eval_shape(centering.lift, base[0])
    except Exception:  # the real `init` below raises this model's error with its context
        return
    size = lambda tree: sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))
    p, p_base, n = size(lifted), size(base[0]), data.n * data.k
    itemsize = jnp.dtype(dtype).itemsize
    param_bytes = (p + p_base + size(base[1])) * itemsize
    widths = model.dense_widths
    hidden_bytes = data.n * sum(widths) * itemsize if widths else 0
    kernel_bytes = n * n * itemsize
    need = param_bytes + hidden_bytes + kernel_bytes
    limit = available_bytes()
    if limit is None or need <= limit:
        return
    copies = f", {p // p_base}× the model's for {centering.name} centring" if p > p_base else ""
    hidden = (
        f", hidden activations on {data.n} points ({human_bytes(hidden_bytes)})"
        if hidden_bytes
        else ""
    )
    if param_bytes + hidden_bytes >= kernel_bytes:
        part, fix = "model", "use a narrower or shallower model (fewer parameters)"
    else:
        part, fix = "data", "use fewer points (the kernel grows like n²)"
    if itemsize == 8:
        fix += ", or dtype='float32' (half the memory)"
    raise TooLarge(
        f"the problem needs at least {human_bytes(need)} of memory, more than the "
        f"{human_bytes(limit)} here: {p:,} parameters{copies} "
        f"({human_bytes(param_bytes)} in {jnp.dtype(dtype).name} with their flat copy)"
        f"{hidden} and the {n}×{n} kernel ({human_bytes(kernel_bytes)}); {fix}",
        part,
    )


def _outputs(
    model: AbstractModel,
    state: PyTree,
    centering: AbstractCentering,
    unravel: Unravel,
    w: Float[Array, " p"],
    X: Float[Array, " N *d"],
) -> Array:
    """The centred model's raw outputs at the flat parameters `w` on inputs `X`."""

    def g(params: PyTree, X: Array) -> Array:
        return model.apply(params, state, X)

    return centering.output(g, unravel(w), X)


_outputs_jit = eqx.filter_jit(_outputs)


class Problem(eqx.Module):
    """The lecture's problem: predictions `f(w) = (f(x_1; w), …, f(x_n; w)) ∈ R^n` of a
    model on the training inputs, trained on a loss of the predictions `z = α f(w)`: the
    lecture's squared loss `R(z) = ½‖z − y‖²` by default (docs/theory.md, "Notation"), or
    another (docs/theory.md, "Losses other than the square").

    Vector outputs (`k` per point) are flattened point-major, so `n` here is then `n·k`.
    The parameters are a pytree inside the model but a flat vector `w ∈ R^p` here, via
    `jax.flatten_util.ravel_pytree`.

    **Arguments:**

    - `model`: an `AbstractModel` (`Shallow`, `MLP`, `from_apply(...)`).
    - `data`: a `Dataset`.
    - `alpha`: the scale `α > 0`.
    - `centering`: `"none"`, `"subtract"` (`h(w) = f(w) − f(w0)`), `"antisymmetric"` (the
      doubling trick), or an `AbstractCentering`.
    - `key`: an integer seed or JAX key for the model's initialisation.
    - `dtype`: floating dtype of parameters and data (default float64 when
      `jax_enable_x64` is on, which `import ntkflow` turns on).
    - `loss`: `"squared"` (default), `"logistic"` (targets `±1`), `"cross_entropy"`
      (one-hot targets, `k ≥ 2` outputs per point) or an `AbstractLoss` such as
      `UserLoss(value, grad=…, mu=…, L=…)`.

    **Raises:** `ValueError` for `alpha ≤ 0`, an unknown loss or targets it is not
    defined for, an unknown centring, a `dtype` other than
    float32/float64, a model whose outputs do not match the targets' shape, non-finite
    outputs at `w0`, or a problem whose parameters and `n × n` kernel would not fit in
    memory (estimated from the shapes before anything is allocated).
    """

    model: AbstractModel
    data: Dataset
    # α as a traced 0-d array, so that problems differing only in α share compiled code
    # (a sweep over α compiles once); `alpha` gives it back as a float.
    alpha_array: Float[Array, ""]
    centering: AbstractCentering
    w0: Float[Array, " p"]
    state: PyTree
    offset: Float[Array, " n"]
    # `f(w0)`, evaluated once (the checks of the outputs above read it): the
    # certificate's `R0` and `‖f(w0)‖`, the flows' first residual `r0` and the loss's
    # curvature at `z0 = α f(w0)` start from it.
    f0: Float[Array, " n"]
    y: Float[Array, " n"]
    unravel: "Unravel"
    objective: AbstractLoss

    def __init__(
        self,
        model: AbstractModel,
        data: Dataset,
        *,
        alpha: float = 1.0,
        centering: str | AbstractCentering = "none",
        key: int | PRNGKeyArray = 0,
        dtype: Any = None,
        loss: str | AbstractLoss = "squared",
    ):
        if not isinstance(model, AbstractModel):
            raise TypeError(
                f"model must be an ntkflow model (Shallow, MLP, from_apply(...)), got "
                f"{type(model).__name__}; wrap a PyTorch, Flax or Equinox module with "
                "models.from_torch, from_flax or from_equinox"
            )
        if not isinstance(data, Dataset):
            raise TypeError(
                f"data must be an ntkflow Dataset (see ntkflow.datasets), got {type(data).__name__}"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
            raise InputError("alpha", alpha, "a number > 0")
        if not math.isfinite(alpha) or alpha <= 0:
            raise InputError("alpha", alpha, "a finite number > 0")
        dtype = _float_dtype(dtype)
        alpha_max = max_alpha(dtype)
        if alpha > alpha_max:
            raise ValueError(
                f"alpha={alpha!r} is too large for {jnp.dtype(dtype).name}: the flows' rates "
                "α²·λ(K0) would overflow (α² times a kernel eigenvalue up to 1e8 must stay "
                "finite); "
                f"use alpha ≤ {alpha_max:.3g}"
                + (" or float64" if jnp.dtype(dtype) == jnp.float32 else "")
            )
        if isinstance(key, int | np.integer) and not -(2**63) <= int(key) < 2**63:
            raise ValueError(f"key must be an integer seed in [-2**63, 2**63), got key={key}")
        rank = model.input_rank
        if rank is not None and len(data.point_shape) != rank:
            raise ValueError(
                f"{type(model).__name__} takes inputs of rank {rank} per point, got data "
                f"with points of shape {data.point_shape}; "
                + (
                    "flatten the images (e.g. datasets.digits(..., images=False)) or use "
                    "a convolutional model (models.CNN, or one adapted from a framework: "
                    "models.from_torch, from_flax, from_equinox)"
                    if rank == 1
                    else "give images (n, H, W, C): datasets.digits(..., images=True) "
                    "([data] images = true) or (n, H, W, C) arrays"
                )
            )
        self.objective = get_loss(loss)
        self.objective.check_targets(np.asarray(data.y, dtype=np.float64).reshape(data.n, -1))
        self.model = model
        self.centering = get_centering(centering)
        _check_memory(model, data, self.centering, as_key(key), dtype)
        self.data = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), data)
        params0, self.state = model.init_for(as_key(key), data.point_shape)
        params0 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params0)
        self.state = jax.tree_util.tree_map(partial(_cast_floating, dtype=dtype), self.state)
        self.alpha_array = jnp.asarray(float(alpha), dtype)
        lifted = self.centering.lift(params0)
        self.w0, _ = ravel_pytree(lifted)
        self.unravel = Unravel(lifted)

        raw0 = self._first_outputs()
        if raw0.shape[0] != data.n or math.prod(raw0.shape[1:]) != data.k:
            raise ValueError(
                f"the model outputs shape {tuple(raw0.shape)} on {data.n} points but the "
                f"targets have shape {tuple(data.y.shape)}; {model.output_dim_fix(data.k)}"
            )
        raw0 = raw0.reshape(-1)
        if not bool(jnp.all(jnp.isfinite(raw0))):
            raise ValueError("the model's outputs at w0 are not finite; check its init")
        self.offset = raw0 if self.centering.subtracts_init else jnp.zeros_like(raw0)
        self.f0 = raw0 - self.offset
        self.y = self.data.y.reshape(-1)
        self.objective.check_at(self._points(self.alpha_array * self.f0), self._points(self.y))

    # -- the network -----------------------------------------------------------------

    def _first_outputs(self) -> Array:
        """The outputs at `w0`: a model brought from a framework that fails on the data
        (a shape error deep in its layers) gets one line naming the inputs and the fix."""
        fix = getattr(self.model, "input_fix", None)
        if fix is None:
            # One compiled program (op by op, one per operation), shared by problems of the
            # same model and shapes: an α sweep's problems compile it once.
            return _outputs_jit(
                self.model, self.state, self.centering, self.unravel, self.w0, self.data.X
            )
        try:
            out = self._raw(self.w0, self.data.X)
        except Exception as e:
            sizes = getattr(self.model, "input_error", lambda shape: None)
            line = sizes(tuple(self.data.point_shape))
            if line is not None:  # (the first layer's input size is not the data's)
                raise ValueError(line) from None
            first = (str(e).strip().splitlines() or [""])[0]
            raise ValueError(
                f"the model failed on the data (inputs of shape {tuple(self.data.X.shape)}): "
                f"{type(e).__name__}: {first[:200]}; {fix()}"
            ) from None
        if not hasattr(out, "shape"):
            raise ValueError(
                f"the model returned a {type(out).__name__} on the data, not an array of "
                "outputs; make its forward return one array of shape (N,), (N, 1) or (N, k)"
            )
        return out

    def _raw(self, w: Float[Array, " p"], X: Float[Array, " N *d"]) -> Array:
        return _outputs(self.model, self.state, self.centering, self.unravel, w, X)

    def native(self, w: Float[Array, " p"]) -> Any:
        """The parameters `w` in the model's own layout: for a model brought from PyTorch,
        Flax or Equinox (`models.from_torch`, …), the framework's object (a `state_dict`,
        a module); otherwise the parameter pytree. Under the antisymmetric centring, the
        pair of copies `(w₁, w₂)` in that layout."""
        comps = self.centering.components(self.unravel(w))
        convert = getattr(self.model, "native", lambda p: p)
        if comps is None:
            return self.unravel(w)
        natives = tuple(convert(p) for _, p in comps)
        return natives[0] if len(natives) == 1 else natives

    def f(self, w: Float[Array, " p"]) -> Float[Array, " n"]:
        """Predictions on the training inputs, flattened: `f(w) ∈ R^n`."""
        return self._raw(w, self.data.X).reshape(-1) - self.offset

    def predict(self, w: Float[Array, " p"], X: Float[Array, " N *d"]) -> Array:
        """The (centred) network on other inputs, unscaled, shaped like the targets: `(N,)`
        for one output per point (a model's `(N, 1)` included), else `(N, k)`."""
        out = self._raw(w, X)
        if self.centering.subtracts_init:
            out = out - self._raw(self.w0, X)
        return out.reshape(X.shape[0], *self.data.y.shape[1:])

    def residual(self, w: Float[Array, " p"]) -> Float[Array, " n"]:
        """`α f(w) − y` (for the squared loss, the loss's gradient in function space)."""
        return self.alpha_array * self.f(w) - self.y

    @property
    def r0(self) -> Float[Array, " n"]:
        """The residual at `w0`, `r0 = α f(w0) − y`, from the `f0` evaluated once."""
        return self.alpha_array * self.f0 - self.y

    def _points(self, v: Float[Array, " n"]) -> Float[Array, "N k"]:
        return v.reshape(self.data.n, -1)

    def loss_at(self, z: Float[Array, " n"]) -> Scalar:
        """`R(z)`, the loss of predictions `z ∈ R^n` (flattened like `f`)."""
        return self.objective.value(self._points(z), self._points(self.y))

    def loss_gradient(self, z: Float[Array, " n"]) -> Float[Array, " n"]:
        """`∇R(z)`, flattened (`z − y` for the squared loss)."""
        return self.objective.gradient(self._points(z), self._points(self.y)).reshape(-1)

    def loss(self, w: Float[Array, " p"]) -> Scalar:
        """`R(α f(w))` (`½‖α f(w) − y‖²` for the squared loss)."""
        return self.loss_at(self.alpha_array * self.f(w))

    def loss_of_residual(self, r: Float[Array, " n"]) -> Scalar:
        """`R` at the predictions `z = r + y` whose residual is `r` (`½‖r‖²` for the
        squared loss, without forming `z`)."""
        if self.squared:
            return 0.5 * jnp.vdot(r, r)
        return self.loss_at(r + self.y)

    @property
    def squared(self) -> bool:
        """Whether the loss is the lecture's squared loss."""
        return isinstance(self.objective, Squared)

    @property
    def loss_name(self) -> str:
        return loss_name(self.objective)

    # -- sizes and descriptions ---------------------------------------------------------

    @property
    def alpha(self) -> float:
        """The scale `α`, a float (traced code uses `alpha_array`, the same `α` as a 0-d
        array in the problem's dtype)."""
        return float(self.alpha_array)

    @property
    def scale(self) -> Float[Array, ""]:
        """Deprecated: `alpha_array` under its former name."""
        warnings.warn(
            "Problem.scale is deprecated; use Problem.alpha (a float) or Problem.alpha_array",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.alpha_array

    @property
    def n(self) -> int:
        """Number of outputs `n` (points × outputs per point)."""
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        """Number of trained parameters `p`."""
        return int(self.w0.shape[0])

    @property
    def dtype(self) -> Any:
        return self.w0.dtype

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        return {
            "model": self.model.describe(),
            "data": self.data.describe(),
            "alpha": self.alpha,
            "centering": self.centering.name,
            "loss": self.loss_name,
            "n": self.n,
            "p": self.p,
            "dtype": str(self.dtype),
        }


@eqx.filter_jit
def residuals_at(problem: Problem, W: Float[Array, "s p"]) -> Float[Array, "s n"]:
    """`α f(w) − y` at each row `w` of `W`, as one compiled program."""
    return jax.vmap(problem.residual)(W)
