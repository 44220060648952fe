"""Model families in NTK parametrisation, and adapters for plain JAX models."""

from ._activations import (
    ACTIVATIONS as ACTIVATIONS,
    Activation as Activation,
    get_activation as get_activation,
)
from ._adapted import Adapted as Adapted
from ._base import AbstractModel as AbstractModel
from ._cnn import CNN as CNN
from ._from_apply import FromApply as FromApply, from_apply as from_apply
from ._from_equinox import from_equinox as from_equinox
from ._from_flax import from_flax as from_flax
from ._from_torch import from_torch as from_torch
from ._mlp import MLP as MLP
from ._shallow import Shallow as Shallow
