"""Release hygiene: one version everywhere, the license and citation files, and a built
wheel that installs (not editable) into a fresh virtual environment and runs there."""

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = importlib.metadata.version("ntkflow")


def test_the_version_is_defined_once_and_shown_everywhere():
    import ntkflow as nf

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION == nf.__version__
    init = (ROOT / "src" / "ntkflow" / "__init__.py").read_text()
    assert not re.search(r"__version__ = ['\"]\d+\.\d+", init)  # (read from the metadata)
    out = subprocess.run(
        [sys.executable, "-m", "ntkflow", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"ntkflow {VERSION}"
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf'^version: "{re.escape(VERSION)}"$', citation, flags=re.M)
    assert f"## [{VERSION}]" in (ROOT / "CHANGELOG.md").read_text()
    assert f"version = {{{VERSION}}}" in (ROOT / "README.md").read_text()


def test_license_files_agree():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert re.search(r"^license: Apache-2.0$", (ROOT / "CITATION.cff").read_text(), flags=re.M)


def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    # Build as a release would (no build isolation: hatchling from the test extra), install
    # the wheel with its declared dependencies, outside the repository, and run there.
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT])
    wheel = next(dist.glob(f"ntkflow-{VERSION}-py3-none-any.whl"))
    assert next(dist.glob(f"ntkflow-{VERSION}.tar.gz"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "ntkflow/_examples/seed.toml" in names and "ntkflow/__init__.pyi" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "docs/", "bench/")) for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "--quiet", wheel])
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([py, "-c", "import ntkflow; print(ntkflow.__file__)"], cwd=work, env=env)
    assert str(venv) in where and str(ROOT) not in where  # the wheel's copy, not the source
    version = _run([venv / "bin" / "ntkflow", "--version"], cwd=work, env=env)
    assert version.strip() == f"ntkflow {VERSION}"
    out = _run([venv / "bin" / "ntkflow", "demo"], cwd=work, env=env)
    assert (work / "results" / "demo" / "above-alpha-star" / "report.html").is_file(), out
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    (work / "example.py").write_text(example)
    printed = _run([py, "example.py"], cwd=work, env=env)
    assert "α*=" in printed and "exit time T:" in printed
