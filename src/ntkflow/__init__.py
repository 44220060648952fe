"""ntkflow: lazy training, made executable.

Importing ntkflow turns on JAX's float64 (`jax_enable_x64`): the theorem's checks are
verification work, where float32's rounding would swamp the margins. Set the environment
variable `NTKFLOW_X64=0` before importing to keep JAX's float32 default.
"""

import importlib.metadata as _metadata
import os as _os
import sys as _sys

import lazy_loader as _lazy

if _os.environ.get("NTKFLOW_X64", "1") != "0":
    if "jax" in _sys.modules:
        _sys.modules["jax"].config.update("jax_enable_x64", True)
    else:  # (JAX reads it when first imported: `import ntkflow` itself stays light)
        _os.environ["JAX_ENABLE_X64"] = "1"

# The public names (`__init__.pyi`) are imported on first use: `ntkflow --help` and a bad
# experiment file's error need neither JAX nor the library.
__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)

# The version is defined once, in pyproject.toml; the installed package's metadata has it.
try:
    __version__ = _metadata.version("ntkflow")
except _metadata.PackageNotFoundError:  # (a source tree on sys.path, never installed)
    __version__ = "0+unknown"
