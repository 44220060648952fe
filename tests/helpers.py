"""Shared tolerances and comparisons for the tests."""

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Tolerances by dtype: (rtol, atol) for results that should agree to rounding.
TOL = {
    jnp.dtype("float64"): (1e-12, 1e-12),
    jnp.dtype("float32"): (1e-5, 1e-6),
}
# Central finite differences with step h: truncation O(h²) plus rounding O(ε/h).
FD_STEP = 1e-5
FD_RTOL = 1e-7


def tree_allclose(x, y, *, rtol=None, atol=None):
    """Whether two pytrees have equal structure and allclose leaves."""
    lx, tx = jax.tree_util.tree_flatten(x)
    ly, ty = jax.tree_util.tree_flatten(y)
    if tx != ty:
        return False
    for a, b in zip(lx, ly, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        r, t = TOL.get(jnp.dtype(a.dtype), (1e-12, 1e-12))
        if a.shape != b.shape or not np.allclose(
            a, b, rtol=r if rtol is None else rtol, atol=t if atol is None else atol
        ):
            return False
    return True


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny))


def write_toml(path, doc: dict):
    """Write a dict of scalars and tables as a TOML file (dotted keys quoted)."""
    import json

    lines = [f"{k} = {json.dumps(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [
                f"{json.dumps(k) if '.' in k else k} = {json.dumps(v)}" for k, v in value.items()
            ]
    path.write_text("\n".join(lines) + "\n")
    return path


def die_or_echo(payload: dict) -> dict:
    """A sweep job for executor tests (importable by spawned workers): kills its own
    process when `payload["die"]`, else returns its index."""
    import os
    import signal

    if payload.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"index": payload["index"]}


# A small sweep (3 α × 2 seeds on 6 points of the sphere) shared by the sweep and Ray tests.
SWEEP_BASE = {
    "name": "sw",
    "data": {"source": "sphere", "n": 6, "d": 3, "n_test": 8},
    "model": {"width": 64},
    "problem": {"alpha": 1.0, "centering": "antisymmetric"},
    "flows": {"saves": 8, "error_estimate": False, "diagnostics": False},
}
SWEEP_GRID = {
    **SWEEP_BASE,
    "sweep": {"problem.alpha": [10.0, 30.0, 100.0], "problem.seed": [0, 1]},
}


NT_PYTHON = Path(__file__).resolve().parent.parent / ".venv-nt" / "bin" / "python"


def defined(source: str, *names: str) -> Any:
    """The objects `names` defined by running `source` (code written once, run by both
    ntkflow's tests and neural-tangents' script)."""
    scope: dict = {}
    exec(source, scope)
    found = tuple(scope[n] for n in names)
    return found[0] if len(found) == 1 else found


def run_neural_tangents(tmp, script: str, inputs: dict, *args: str) -> dict:
    """Run `script` with neural-tangents 0.6.5's Python (`.venv-nt`, jax 0.4.25, CPU) as
    `script in.npz *args out.npz`, `inputs` saved to `in.npz`; its `out.npz` as a dict."""
    import subprocess

    assert NT_PYTHON.is_file(), "make test builds .venv-nt (neural-tangents 0.6.5)"
    np.savez(tmp / "in.npz", **inputs)
    (tmp / "nt_script.py").write_text(script)
    command = [NT_PYTHON, tmp / "nt_script.py", tmp / "in.npz", *args, tmp / "out.npz"]
    # A clean environment but `make test`'s compile settings for this older XLA.
    env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    env["XLA_FLAGS"] = os.environ.get("NT_XLA_FLAGS", "")
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(np.load(tmp / "out.npz"))


def public_objects() -> dict[int, tuple[Any, list[str]]]:
    """Every public object of `ntkflow`, `ntkflow.datasets`, `ntkflow.models` and
    `ntkflow.predict` (submodules aside), by identity: the object and each dotted name it
    has (a top-level re-export such as `ntkflow.MLP` is one object with two names)."""
    import types

    import ntkflow as nf

    found: dict[int, tuple[Any, list[str]]] = {}
    for module in (nf, nf.datasets, nf.models, nf.predict):
        names = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in names:
            obj = getattr(module, name)
            if not name.startswith("_") and not isinstance(obj, types.ModuleType):
                found.setdefault(id(obj), (obj, []))[1].append(f"{module.__name__}.{name}")
    return found


def cpu_devices_env(count: int) -> dict[str, str]:
    """The environment for a subprocess whose JAX sees `count` CPU devices, keeping the
    XLA flags this run was given (`make test`'s compile settings)."""
    flags = os.environ.get("XLA_FLAGS", "")
    return {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={count}"}


def fast_and_rest(fast: tuple[int, ...], count: int) -> list:
    """Two parameters splitting case indices `0 … count−1`: `fast` for the default suite,
    the rest marked slow (`make test-slow`, which CI runs)."""
    import pytest

    rest = tuple(i for i in range(count) if i not in fast)
    return [pytest.param(fast, id="fast"), pytest.param(rest, id="rest", marks=pytest.mark.slow)]
