"""The interface every model family implements."""

import abc
from typing import Any

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


class AbstractModel(eqx.Module):
    """A network `x ↦ f(x; w)` with trained parameters `w` and fixed ones (`state`).

    Subclasses implement `init` and `apply`; everything else (flattening the parameters,
    centring, the scale `α`, the data) is the `Problem`'s job.
    """

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

    @abc.abstractmethod
    def apply(self, params: PyTree, state: PyTree, X: Float[Array, "N d"]) -> Array:
        """Evaluate the network on a batch: an array of shape `(N,)` or `(N, k)`."""

    @property
    def smooth(self) -> bool | None:
        """Whether the network is a smooth function of its parameters; `None` if unknown."""
        return None

    def not_smooth_reason(self) -> str:
        """Why the network is not smooth, for a certificate's reasons."""
        return "the model is marked not smooth: its Jacobian is not Lipschitz (β = ∞)"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        return {"kind": type(self).__name__}
