"""`import ntkflow` is light and loads the library on first use (issue 28): `ntkflow
--help`, `--version` and a bad experiment file's one-line error never import JAX, while
the promise of float64 on import holds whichever of ntkflow and JAX comes first."""

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
import ntkflow.cli as cli
sys.argv = ["ntkflow", *{args!r}]
try:
    cli.main()
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "jax": "jax" in sys.modules}}))
"""


def _cli(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=list(args))],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["run", "bad.toml"],
        ["certify", "bad.toml"],
        ["sweep", "bad.toml"],
    ],
)
def test_help_version_and_a_bad_file_do_not_import_jax(args, tmp_path):
    (tmp_path / "bad.toml").write_text(
        '[data]\nsource = "sphere"\nn = 8\nd = 3\n[model]\nwidth = 16\n[problem]\nalpha = 0\n'
    )
    out, proc = _cli(args, tmp_path)
    assert out["jax"] is False, proc.stderr
    if args[0].startswith("--"):
        assert out["code"] in (0, None)
    else:
        assert out["code"] == 2 and "[problem] alpha: Input should be greater than 0" in proc.stderr


@pytest.mark.parametrize("first", ["ntkflow", "jax"])
def test_float64_on_import_whichever_comes_first(first):
    order = "import ntkflow, jax" if first == "ntkflow" else "import jax, ntkflow"
    code = f"{order}; import jax.numpy as jnp; print(jnp.ones(1).dtype, 'jax' in dir(ntkflow))"
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "NTKFLOW_X64")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.stdout.split()[0] == "float64", run.stderr
    off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "NTKFLOW_X64": "0"},
    )
    assert off.stdout.split()[0] == "float32", off.stderr


def test_the_public_names_load_on_first_use():
    code = (
        "import sys, ntkflow; light = 'jax' not in sys.modules; "
        "p = ntkflow.Problem; names = set(dir(ntkflow)); "
        "print(light, 'jax' in sys.modules, {'Problem', 'certify', 'models', 'run'} <= names)"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.stdout.split() == ["True", "True", "True"], run.stderr
