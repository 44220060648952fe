"""Model families in NTK parametrisation, and adapters for plain JAX models."""

from ._activations import (
    ACTIVATIONS as ACTIVATIONS,
    Activation as Activation,
    get_activation as get_activation,
)
from ._base import AbstractModel as AbstractModel
from ._from_apply import FromApply as FromApply, from_apply as from_apply
from ._mlp import MLP as MLP
from ._shallow import Shallow as Shallow
