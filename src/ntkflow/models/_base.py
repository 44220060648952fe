"""The interface every model family implements."""

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

# A size (width, channels, window, stride, output count): a Python or NumPy integer ≥ 1.
Size = int | np.integer
Sizes = Sequence[Size] | np.ndarray


def is_size(value: Any) -> bool:
    """Whether `value` is an integer ≥ 1 (a NumPy integer too, not a bool)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        return False
    return bool(value >= 1)


def size(value: Any, name: str) -> int:
    """`value` as a Python `int`. **Raises:** `ValueError` naming `name` unless `is_size`."""
    if not is_size(value):
        raise ValueError(f"{name} must be an integer ≥ 1, got {name}={value!r}")
    return int(value)


def sizes(values: Any, name: str) -> tuple[int, ...]:
    """`values` as a tuple of Python `int`s. **Raises:** `ValueError` naming `name` unless
    it is a non-empty sequence of sizes (`is_size`)."""
    values = tuple(values)
    if not values or not all(is_size(v) for v in values):
        raise ValueError(
            f"{name} must be a non-empty sequence of integers ≥ 1, got {name}={values!r}"
        )
    return tuple(int(v) for v in values)


class AbstractModel(eqx.Module):
    """A network `x ↦ f(x; w)` with trained parameters `w` and fixed ones (`state`).

    Subclasses implement `init` and `apply`; everything else (flattening the parameters,
    centring, the scale `α`, the data) is the `Problem`'s job.
    """

    # The rank of one input the model takes: 1 for vectors `(d,)`, 3 for images
    # `(H, W, C)`; `None` for a model that takes any (an adapted one).
    input_rank: ClassVar[int | None] = None

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray, in_dim: int) -> tuple[PyTree, PyTree]:
        """Draw an initialisation.

        **Arguments:**

        - `key`: a JAX PRNG key.
        - `in_dim`: the input dimension `d`.

        **Returns:** `(params, state)`: the trained parameters `w0` (a pytree of arrays)
        and the fixed ones (a pytree, possibly `None`), e.g. the output weights of
        `Shallow(train="hidden")`.
        """

    def init_for(self, key: PRNGKeyArray, point_shape: tuple[int, ...]) -> tuple[PyTree, PyTree]:
        """`init` given the shape of one input (what a `Problem` calls): `(d,)` for
        vectors, `(H, W, C)` for images. By default `init(key, d)` with `d` the number of
        input features; a model that needs the shape (`CNN`) overrides it."""
        return self.init(key, math.prod(point_shape))

    @abc.abstractmethod
    def apply(self, params: PyTree, state: PyTree, X: Float[Array, " N *d"]) -> Array:
        """Evaluate the network on a batch: an array of shape `(N,)` or `(N, k)`."""

    @property
    def dense_widths(self) -> tuple[int, ...] | None:
        """For a network whose trained parameters all sit in dense layers: the widths of
        those layers' pre-activations (the output layer's is `k`); `None` otherwise. A
        model that gives them implements `apply_tapped`, and the empirical NTK then has
        the structured form `K = Σ_l (X_l X_lᵀ + c_l) ∘ (G_l G_lᵀ)` (`StructuredDense`)."""
        return None

    def tap_shapes(self, point_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...] | None:
        """The per-point shapes of the taps `apply_tapped` takes (one per trained layer:
        `(fan_out,)` for a dense layer, `(H, W, C_out)` for a convolution), or `None` when
        the model has no such structure. Default: from `dense_widths`."""
        widths = self.dense_widths
        return None if widths is None else tuple((m,) for m in widths)

    def apply_tapped(
        self, params: PyTree, state: PyTree, X: Float[Array, " N *d"], taps: tuple[Array, ...]
    ) -> tuple[Array, tuple[Array, ...], tuple[float, ...]]:
        """`apply`, with `taps[l]` (shape `(N, dense_widths[l])`) added to the
        pre-activation `z_l` of the `l`-th trained dense layer.

        **Returns:** `(outputs, inputs, bias)`: the outputs as `apply` gives them; each
        layer's effective input `X_l` (shape `(N, fan_in)`), scaled so that
        `∂f(x_i)/∂W_l = (∂f(x_i)/∂z_l) ⊗ X_l[i]`; and each layer's bias coefficient `c_l`
        (`∂z_l/∂b_l = √c_l`; 0 when the layer has no trained bias).
        """
        raise NotImplementedError(f"{type(self).__name__} has no dense-layer structure")

    @property
    def smooth(self) -> bool | None:
        """Whether the network is a smooth function of its parameters; `None` if unknown."""
        return None

    def not_smooth_reason(self) -> str:
        """Why the network is not smooth, for a certificate's reasons."""
        return "the model is marked not smooth: its Jacobian is not Lipschitz (β = ∞)"

    def smoothness_note(self) -> str:
        """The certificate's note when `smooth` is unknown (`None`), naming the call that
        built the model (a model from a framework has a `call`, as `from_torch(module`)
        and what each answer changes."""
        call = getattr(self, "call", None)
        if call is None:
            return "the model's smoothness is unknown: β is estimated as for a smooth network"
        return (
            f"the model's smoothness is unknown ({call}) was called without smooth=): β is "
            "estimated as for a smooth network, and a ReLU-like activation inside it would "
            f"make the true β infinite; pass {call}, smooth=False) for such a network "
            f"(β = ∞: the theorem does not apply) or {call}, smooth=True) to state that it "
            "is smooth (this note goes; β stays an estimate)"
        )

    def output_dim_fix(self, k: int) -> str:
        """How to make the network's outputs match targets with `k` columns per point
        (the fix a shape-mismatch error gives)."""
        shape = "(N,)" if k == 1 else f"(N, {k})"
        return f"make apply return shape {shape} on N points to match {k} target column(s)"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        return {"kind": type(self).__name__}
