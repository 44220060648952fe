import os
from pathlib import Path

# One persistent XLA compilation cache for the whole suite: the xdist workers and every
# `python -m ntkflow` subprocess the tests start (they inherit the environment) compile
# each function once instead of once per process. Set before JAX is imported, which
# reads these at import. Not a result cache: a compiled program is keyed by its HLO,
# the JAX version and the machine, so a stale or foreign entry is never used.
_CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("NTKFLOW_X64", "1")
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Release each test module's compiled programs after it. XLA maps every compiled
    program's code into the process, and an xdist worker lives for the whole suite: it
    reached 57,703 of Linux's 65,530 mappings (`vm.max_map_count`) and then crashed
    inside XLA (SIGSEGV/SIGABRT while compiling or serialising). With the persistent
    cache on, what a later module compiles again is read back, not rebuilt."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call."""
    key = jax.random.key(1234)

    def _getkey():
        nonlocal key
        key, sub = jax.random.split(key)
        return sub

    return _getkey
