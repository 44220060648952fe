import os

import jax
import pytest

os.environ.setdefault("NTKFLOW_X64", "1")
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call."""
    key = jax.random.key(1234)

    def _getkey():
        nonlocal key
        key, sub = jax.random.split(key)
        return sub

    return _getkey
