"""Sweeps on Ray (`RayExecutor`): the same sweep.nc as the local executor, resume after a
killed driver with either executor, dead workers recorded, and one-line errors (Ray
missing included). Ray is a real dependency of this feature: the `ray` extra is
installed for the tests, never skipped."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from helpers import SWEEP_BASE, SWEEP_GRID, write_toml
from ntkflow.cli import app
from ntkflow.sweeps._executors import EXECUTORS, LocalProcesses, RayExecutor, get_executor
from ntkflow.sweeps._grid import SweepError
from ntkflow.sweeps._points import FILES, POINTS, adopt_point, load_point, prepare, run_point
from ntkflow.sweeps._sweep import run_sweep, sweep_executor

runner = CliRunner()
BASE, GRID = SWEEP_BASE, SWEEP_GRID


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid run point by point in this process (the local executor)."""
    return run_sweep(GRID, tmp_path_factory.mktemp("local") / "ref", render=False)


def _assert_same_sweep(path: Path, reference) -> None:
    """`path`'s sweep.nc equals the reference's: floats to 1e-12 relative, the rest
    exactly."""
    got = xr.load_dataset(path / "sweep.nc", engine="h5netcdf")
    want = reference.dataset
    assert set(got.data_vars) == set(want.data_vars) and got.sizes == want.sizes
    for name in want.data_vars:
        a, b = got[name].values, want[name].values
        if np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    xr.testing.assert_identical(got.coords.to_dataset(), want.coords.to_dataset())


@pytest.mark.slow  # starts a Ray instance: CI runs it (make test-slow)
def test_ray_sweep_equals_the_local_one(reference, tmp_path):
    exp = write_toml(tmp_path / "grid.toml", GRID)
    out = tmp_path / "ray"
    result = runner.invoke(
        app, ["sweep", str(exp), "--out", str(out), "--executor", "ray", "--json"]
    )
    assert result.exit_code == 0, result.output
    _assert_same_sweep(out, reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["failed_points"] == []
    # The executor is a setting of the run, not of the sweep: resuming the Ray sweep
    # with the local executor finds every point done.
    again = runner.invoke(app, ["sweep", str(exp), "--out", str(out), "--resume", "--json"])
    assert again.exit_code == 0, again.output
    _assert_same_sweep(out, reference)


@pytest.mark.slow  # starts a Ray instance: CI runs it (make test-slow)
def test_the_sweep_table_chooses_ray(reference, tmp_path):
    doc = {**GRID, "sweep": {**GRID["sweep"], "executor": "ray"}}
    executor = sweep_executor(doc)
    assert isinstance(executor, RayExecutor) and executor.address is None
    result = run_sweep(doc, tmp_path / "o", executor=executor, render=False)
    _assert_same_sweep(result.path, reference)
    # --executor on the command line overrides the table.
    assert isinstance(sweep_executor(doc, "local", jobs=2), LocalProcesses)


@pytest.mark.slow  # starts a Ray instance: CI runs it (make test-slow)
def test_a_ray_point_whose_worker_dies_is_retried_then_recorded():
    def die_or_echo(payload):  # defined here: Ray pickles it by value
        if payload.get("die"):
            os.kill(os.getpid(), signal.SIGKILL)
        return {"index": payload["index"], "pid": os.getpid()}

    payloads = [{"index": i, "die": i == 1} for i in range(4)]
    done, dead = [], []
    RayExecutor(retries=1).run(
        die_or_echo, payloads, lambda r: done.append(r["index"]),
        lambda p, message: dead.append((p["index"], message)),
    )  # fmt: skip
    assert sorted(done) == [0, 2, 3]
    assert len(dead) == 1 and dead[0][0] == 1 and "Ray worker died" in dead[0][1]


def test_a_point_without_the_sweep_directory_sends_its_files_back(tmp_path):
    # A cluster node without a shared filesystem: the worker cannot see the directory,
    # writes the point beside itself and returns the files; the driver writes them.
    doc = {**BASE, "sweep": {"problem.alpha": [10.0]}}
    _, (payload,) = prepare(doc, tmp_path / "sweep", resume=False)
    away = {**payload, "dir": str(tmp_path / "elsewhere" / POINTS)}
    record = run_point(away)
    assert set(record[FILES]) == {"00000.nc"} and record["status"] == "success"
    assert not (tmp_path / "elsewhere").exists()
    points = Path(payload["dir"])
    kept = adopt_point(points, record)
    assert FILES not in kept and load_point(points, 0, payload["id"]) == json.loads(
        json.dumps(kept)
    )
    # The same point run again (no manifest there either): the same series.
    again = run_point({**payload, "dir": str(tmp_path / "sweep2" / POINTS)})
    copy = tmp_path / "again.nc"
    copy.write_bytes(again[FILES]["00000.nc"])
    xr.testing.assert_identical(
        xr.load_dataset(points / "00000.nc", engine="h5netcdf"),
        xr.load_dataset(copy, engine="h5netcdf"),
    )
    # A worker that sees the directory writes the point itself and returns only its record.
    (points / "00000.json").unlink()
    here = run_point(payload)
    assert FILES not in here and load_point(points, 0, payload["id"]) is not None


def test_executor_settings_are_one_line_errors(tmp_path):
    exp = write_toml(tmp_path / "grid.toml", GRID)
    cases = [
        (["--executor", "dask"], "executor must be one of 'local', 'ray'"),
        (["--executor", "ray", "--jobs", "2"], "jobs=2 is for executor='local'"),
        (["--address", "auto"], "address='auto' is for executor='ray'"),
    ]
    for extra, message in cases:
        out = tmp_path / "o"
        result = runner.invoke(app, ["sweep", str(exp), "--out", str(out), *extra])
        assert result.exit_code == 2 and message in result.stderr, (extra, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    bad = {**GRID, "sweep": {**GRID["sweep"], "executor": 3}}
    with pytest.raises(SweepError, match="executor must be a non-empty string"):
        sweep_executor(bad)
    assert set(EXECUTORS) == {"local", "ray"}
    with pytest.raises(SweepError, match="cpus_per_point must be a positive number"):
        RayExecutor(cpus_per_point=0)
    assert isinstance(get_executor("ray"), RayExecutor)


def test_a_cluster_that_cannot_be_joined_is_one_line(monkeypatch):
    import ray

    def refuse(**kwargs):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(SweepError, match=r"could not join the Ray cluster at address='auto'"):
        RayExecutor("auto").run(lambda p: p, [{"index": 0}], lambda r: None)


def test_without_ray_the_ray_executor_is_one_line(tmp_path):
    # A `ray` package that cannot be imported stands for Ray not being installed.
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\")\n")
    exp = write_toml(tmp_path / "grid.toml", GRID)
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "ntkflow", "sweep", str(exp), "--out", str(out)]
    proc = subprocess.run([*cmd, "--executor", "ray"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'ntkflow[ray]'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def _ray_processes() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (b"raylet" in cmd or b"gcs_server" in cmd or b"ray::" in cmd):
                found.add(int(pid))
    return found


@pytest.mark.slow  # a Ray instance and processes killed: CI runs it (make test-slow)
def test_killed_ray_driver_resumes_with_either_executor(reference, tmp_path):
    # The driver of a Ray sweep is killed (SIGKILL) once two points are written; its
    # local Ray instance goes with it, and the sweep resumed with Ray or with the local
    # executor gives the uninterrupted run's dataset.
    exp = write_toml(tmp_path / "grid.toml", GRID)
    out = tmp_path / "killed"
    before = _ray_processes()
    cmd = [sys.executable, "-m", "ntkflow", "sweep", str(exp), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--executor", "ray", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = lambda: len(list((out / "points").glob("*.json"))) if (out / "points").is_dir() else 0
    end = time.monotonic() + 300
    while done() < 2 and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    n = done()
    assert 2 <= n < 6 and not (out / "summary.json").exists()
    # Ray's raylet, GCS and workers end with the driver at once; its two idle agents
    # (dashboard, runtime environments) notice within about a minute (measured 60–70 s).
    end = time.monotonic() + 150
    while _ray_processes() - before and time.monotonic() < end:
        time.sleep(0.5)
    assert not _ray_processes() - before, "the killed driver's Ray instance outlived it"
    for executor in ("ray", "local"):
        copy = tmp_path / executor
        shutil.copytree(out, copy)
        result = runner.invoke(
            app, ["sweep", str(exp), "--out", str(copy), "--resume", "--executor", executor]
        )
        assert result.exit_code == 0, result.output
        _assert_same_sweep(copy, reference)


# Ray starts its processes by fork + exec with a pre-exec function, which runs JAX's
# at-fork hook; JAX warns on any fork once it has started, though the child execs at once.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_kernel_blocks_as_ray_tasks_equal_the_blocks_here(tmp_path):
    import ntkflow as nf

    model = nf.MLP((16,), "erf", bias=True)
    X = np.random.default_rng(0).standard_normal((30, 4))
    here = nf.kernel_to_disk(model, X, path=tmp_path / "here", block=8, progress=False)
    on_ray = nf.kernel_to_disk(
        model, X, path=tmp_path / "ray", block=8, executor=RayExecutor(), progress=False
    )
    assert on_ray.complete and on_ray.blocks_total == 10
    np.testing.assert_array_equal(np.asarray(on_ray.ntk), np.asarray(here.ntk))
