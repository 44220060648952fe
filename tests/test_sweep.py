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
from ntkflow import load_sweep
from ntkflow.cli import app
from ntkflow.sweeps._executors import LocalProcesses
from ntkflow.sweeps._grid import SweepError, make_grid
from ntkflow.sweeps._sweep import run_sweep
from ntkflow.sweeps._sweep_dataset import _time_axis

runner = CliRunner()
BASE, GRID = SWEEP_BASE, SWEEP_GRID


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ref"
    return run_sweep(GRID, out)


def test_alpha_scaling_of_the_distance(reference):
    fits = {f.quantity: f for f in reference.fits}
    dist = fits["sup_dist_w"]
    # With centring, sup_t ‖w − w0‖ ∝ 1/α (Chizat et al. 2019, Thm 2.4).
    assert dist.theory == -1.0 and abs(dist.slope - -1.0) <= 0.15 and dist.agrees
    assert dist.replicates == 2 and dist.low <= dist.slope <= dist.high
    assert abs(fits["sup_gap_w"].slope - -2.0) <= 0.3
    ds = reference.dataset
    assert ds["dist_w"].dims == ("problem_alpha", "problem_seed", "t")
    assert set(ds["status"].values.ravel()) == {"success"}
    assert {"holds_exit_time", "margin_distance_w", "alpha_star"} <= set(ds.data_vars)
    # The critical α is on the grid, and far below α* (the theorem is loose).
    for row in reference.summary["critical_alpha"]:
        assert row["alpha_empirical"] in (10.0, 30.0, 100.0)
        assert row["looseness"] > 10


def test_sweep_report_and_summary(reference):
    summary = json.loads((reference.path / "summary.json").read_text())
    assert summary["complete"] is True and summary["n_points"] == 6
    assert {f["quantity"] for f in summary["fits"]} == {"sup_dist_w", "sup_gap_f", "sup_gap_w"}
    html = (reference.path / "report.html").read_text()
    assert "Scaling laws" in html and "Critical α" in html
    assert (reference.path / "figures" / "critical_alpha.png").is_file()
    loaded = load_sweep(reference.path)
    assert loaded.fits == reference.fits
    xr.testing.assert_identical(loaded.dataset, reference.dataset)


def test_sweep_report_rerenders_in_place(reference, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reference.path, copy)
    (copy / "report.html").unlink()
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "Scaling laws" in (copy / "report.html").read_text()
    result = runner.invoke(app, ["report", str(copy), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "re-rendered in place" in result.stderr
    (copy / "summary.json").unlink()
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 2 and "not a finished ntkflow sweep" in result.stderr


@pytest.mark.parametrize(
    ("widths", "seeds"),
    [
        pytest.param([64, 256, 1024], [0, 1], id="fast", marks=pytest.mark.slow),
        pytest.param([64, 256, 1024, 4096], [0, 1, 2, 3], id="wide", marks=pytest.mark.slow),
    ],
)
def test_width_scaling(tmp_path, widths, seeds):
    # α = 1 with centring, shallow tanh: a factor 16–64 in width moves the kernel drift by
    # 16–64× if it is ∝ 1/m, and seeds average out the init-dependent constant; the
    # smallest width (64 ≫ n = 6) keeps every point well conditioned.
    doc = {
        **BASE,
        "flows": {"saves": 8, "error_estimate": False, "diagnostics": True},
        "sweep": {"model.width": widths, "problem.seed": seeds},
    }
    result = run_sweep(doc, tmp_path / "w", executor=LocalProcesses(1), render=False)
    fits = {f.quantity: f for f in result.fits}
    drift, rel = fits["sup_kernel_drift"], fits["rel_weight_change"]
    # The theory bounds the drift by O(m^-1/2) (2σ_max·β·‖w − w0‖, β ∝ m^-1/2) ...
    assert drift.kind == "bound" and drift.theory == -0.5 and drift.agrees
    # ... and it falls like 1/m: the first-order change averages out over the random-sign
    # output weights (Dyer & Gur-Ari 2020).
    assert abs(drift.slope - -1.0) <= 0.15
    # ‖w − w0‖ = O(1) and ‖w0‖ ∝ √p ∝ √m.
    assert rel.theory == pytest.approx(-0.5) and abs(rel.slope - -0.5) <= 0.15
    # The width study: K0's distance to the infinite-width NTK falls as m^-1/2, and the
    # certificate's σ_min, σ_max, α* approach the limit kernel's at least as fast.
    assert np.isfinite(result.dataset["limit_kernel_distance"].values).all()
    limit = fits["limit_kernel_distance"]
    assert limit.kind == "rate" and limit.theory == -0.5 and np.isfinite(limit.slope)
    if len(seeds) >= 4:  # two seeds leave the slope too noisy (fit: −0.32 over 64…1024)
        assert limit.agrees, (limit.slope, limit.low, limit.high)
    for name in ("sigma_min", "sigma_max", "alpha_star"):
        fit = fits[f"limit_{name}_distance"]
        assert fit.kind == "bound" and np.isfinite(fit.slope)


def _start_and_stop_after(cmd, out, points, sig):
    """Start a sweep, send `sig` once `points` points are written; return (exit code,
    stderr, points written)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = lambda: len(list((out / "points").glob("*.json"))) if (out / "points").is_dir() else 0
    end = time.monotonic() + 300
    while done() < points and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, done()


@pytest.mark.slow  # processes, each paying JAX start-up: CI runs it (make test-slow)
def test_resume_after_sigint_and_sigkill_in_parallel_is_identical(reference, tmp_path):
    # Interrupted by Ctrl-C after one point, resumed and killed (SIGKILL) after three,
    # resumed again with two worker processes: the dataset equals the uninterrupted
    # serial run's (a point's numbers depend only on its configuration).
    exp = write_toml(tmp_path / "grid.toml", GRID)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ntkflow", "sweep", str(exp), "--out", str(out), "--no-progress"]
    code, err, n = _start_and_stop_after(cmd, out, 1, signal.SIGINT)
    assert code == 130 and "continue with --resume" in err and "Traceback" not in err
    assert 1 <= n < 6 and not (out / "summary.json").exists()
    code, _, n = _start_and_stop_after([*cmd, "--resume"], out, 3, signal.SIGKILL)
    assert code == -signal.SIGKILL and 3 <= n < 6 and not (out / "summary.json").exists()
    again = runner.invoke(app, ["sweep", str(exp), "--out", str(out)])
    assert again.exit_code == 2 and "continue it with --resume" in again.stderr
    resumed = runner.invoke(
        app, ["sweep", str(exp), "--out", str(out), "--resume", "--jobs", "2", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    final = xr.load_dataset(out / "sweep.nc", engine="h5netcdf")
    xr.testing.assert_identical(final, reference.dataset)


def test_the_time_axis_says_what_it_is(reference):
    ds = reference.dataset
    frac = (ds["time"] / ds["time"].isel(t=-1)).transpose("problem_seed", "problem_alpha", "t")
    # Along α the points save at the same fractions of their horizons (t_fast and t1 both
    # scale like 1/α²) ...
    for per_seed in frac.values:
        np.testing.assert_allclose(per_seed, np.broadcast_to(per_seed[0], per_seed.shape))
    # ... across seeds they do not (cond(K0) differs): the coordinate is the save's index.
    assert not np.allclose(frac.values[0, 0], frac.values[1, 0], rtol=1e-6)
    assert ds["t"].attrs["long_name"].startswith("save index")
    np.testing.assert_array_equal(ds["t"].values, np.arange(ds.sizes["t"]))
    # Where every point saved at the same fractions, those are the coordinate.
    one_seed = {i: xr.Dataset({"time": ("t", f * 7.0)}) for i, f in enumerate(frac.values[0])}
    coord, meaning = _time_axis(one_seed, ds.sizes["t"])
    np.testing.assert_allclose(coord, frac.values[0, 0])
    assert meaning.startswith("t/t1")


def test_failing_points_are_recorded_and_the_sweep_carries_on(tmp_path):
    doc = {
        **BASE,
        "data": {"source": "digits", "n": 10},
        "sweep": {"flows.max_steps": [3, 100000], "data.n": [10, 1000]},
    }
    result = run_sweep(doc, tmp_path / "f")
    status = result.dataset["status"].values
    assert status[0, 0] == "max_steps" and status[1, 0] == "success"
    assert list(status[:, 1]) == ["error", "error"]  # 1000 digits 0/1 do not exist
    failed = result.summary["failed_points"]
    assert len(failed) == 3
    assert any("digits has 360 images" in f["message"] for f in failed)
    html = (result.path / "report.html").read_text()
    assert "3 point(s) did not finish cleanly" in html and "max_steps" in html
    assert np.isnan(result.dataset["sup_dist_w"].values[0, 1])


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        ({"alpha": [1, 2]}, "key 'alpha' must be \"SECTION.KEY\""),
        ({"problem.alpha": []}, "must be a non-empty list"),
        ({"problem.alpha": [1.0, -1.0]}, "point (problem.alpha=-1.0): [problem] alpha"),
        ({"problem.alpha": [1.0, 1.0]}, "values must be distinct"),
        (
            {"problem.alpha": [1.0, 2.0], "fit": {"alpah_min": 10}},
            "[sweep.fit] has no setting 'alpah_min'; use alpha_min, alpha_max",
        ),
        ({"problem.alpha": [1.0, 2.0], "fit": {"alpha_min": -1}}, "alpha_min must be a number"),
    ],
)
def test_bad_sweeps_are_one_line_errors(tmp_path, sweep, match):
    fit = sweep.pop("fit", None)
    exp = write_toml(tmp_path / "bad.toml", {**BASE, "sweep": sweep})
    if fit is not None:  # (a [sweep.fit] table after the rest)
        lines = "".join(f"{k} = {v}\n" for k, v in fit.items())
        exp.write_text(exp.read_text() + f"\n[sweep.fit]\n{lines}")
    result = runner.invoke(app, ["sweep", str(exp), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert match in result.stderr
    assert not (tmp_path / "o").exists()


def test_make_grid_requires_a_sweep():
    with pytest.raises(SweepError, match="no \\[sweep\\] section"):
        make_grid({})
    grid = make_grid({"problem.alpha": [1, 2], "model.width": [8, 16, 32]})
    assert grid.shape == (2, 3) and len(grid.points()) == 6
    assert grid.points()[1] == {"problem.alpha": 1, "model.width": 16}


def test_sweep_help_names_the_section():
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0 and "[sweep] grid" in result.output


# -- issue 11: a sweep never says what it did not show, and never loses what it did ----


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1, 1.0], "1 and 1.0 are the same value"),
        ([[1, 2], [1.0, 2.0]], "are the same value"),
        ([1.0, "2"], "must all be of one kind"),
        ([True, 1], "must all be of one kind"),
    ],
)
def test_grid_values_are_of_one_kind_and_distinct(values, match):
    with pytest.raises(SweepError, match=match):
        make_grid({"problem.alpha": values})


def test_a_fit_that_cannot_be_made_is_reported_not_raised():
    from ntkflow.sweeps._scaling import fit_power_law

    # One usable grid point (the others below the error floor): no line, no exception.
    fit = fit_power_law(
        np.array([1.0, 10.0, 100.0]), np.array([np.nan, 0.5, np.nan]), quantity="q",
        against="problem.alpha", theory=-1.0,
    )  # fmt: skip
    assert np.isnan(fit.slope) and np.isnan(fit.low) and "no fit: 1 grid point" in fit.note
    # Two usable points: a slope, and a pairs bootstrap that never sees one distinct x.
    fit = fit_power_law(
        np.array([1.0, 10.0, 100.0]), np.array([1.0, 0.1, np.nan]), quantity="q",
        against="problem.alpha", theory=-1.0,
    )  # fmt: skip
    # Exact data: the slope is −1 and the interval degenerate at it, up to rounding.
    assert fit.slope == pytest.approx(-1.0, abs=1e-12)
    assert fit.low <= fit.slope <= fit.high
    assert fit.low == pytest.approx(-1.0, abs=1e-12) and fit.high == pytest.approx(-1.0, abs=1e-12)


def test_a_sweep_whose_fits_fail_still_writes_its_data_and_report(reference, tmp_path, monkeypatch):
    import ntkflow.sweeps._scaling_laws as laws_module

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge in Linear Least Squares")

    monkeypatch.setattr(laws_module, "fit_power_law", broken)
    # The reference's points, finished; only the assembly runs again.
    out = tmp_path / "s"
    shutil.copytree(reference.path / "points", out / "points")
    shutil.copy(reference.path / "sweep.json", out / "sweep.json")
    result = run_sweep(GRID, out, resume=True)
    assert (result.path / "sweep.nc").is_file() and (result.path / "report.html").is_file()
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["complete"] is True and summary["fits"]
    assert all("fit unavailable (LinAlgError: SVD" in f["note"] for f in summary["fits"])


def test_a_point_too_large_for_memory_is_a_failed_point(tmp_path):
    doc = {**BASE, "sweep": {"model.width": [1_000_000_000]}}
    result = run_sweep(doc, tmp_path / "m")
    assert list(result.dataset["status"].values) == ["error"]
    (failed,) = result.summary["failed_points"]
    assert "memory" in failed["message"] and "GB" in failed["message"]
    assert (result.path / "sweep.nc").is_file() and (result.path / "report.html").is_file()


def test_a_point_whose_worker_dies_is_recorded_and_the_rest_run():
    from helpers import die_or_echo

    payloads = [{"index": i, "die": i == 1} for i in range(4)]
    done, dead = [], []
    LocalProcesses(2).run(
        die_or_echo, payloads, lambda r: done.append(r["index"]),
        lambda p, message: dead.append((p["index"], message)),
    )  # fmt: skip
    assert sorted(done) == [0, 2, 3]
    assert dead == [(1, "its worker process died (killed, or out of memory)")]


def _children(pid: int) -> list[int]:
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = Path(f"/proc/{stat}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # processes, each paying JAX start-up: CI runs it (make test-slow)
def test_workers_end_with_their_killed_driver(tmp_path):
    doc = {**GRID, "flows": {**BASE["flows"], "saves": 200}}
    exp = write_toml(tmp_path / "grid.toml", doc)
    cmd = [sys.executable, "-m", "ntkflow", "sweep", str(exp), "--out", str(tmp_path / "o")]
    proc = subprocess.Popen([*cmd, "--jobs", "2", "--no-progress"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        # The pool's workers are the driver's children running multiprocessing's spawn.
        children = _children(proc.pid)
        workers = [c for c in children if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if len(workers) == 2 and any((tmp_path / "o" / "points").glob("*.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(workers) == 2, "the workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a worker outlived its driver"


@pytest.mark.slow
def test_two_sweeps_into_one_directory_are_refused(tmp_path):
    exp = write_toml(tmp_path / "grid.toml", {**BASE, "sweep": {"problem.alpha": [10.0]}})
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "ntkflow", "sweep", str(exp), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = tmp_path / ".o.lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not lock.exists() and first.poll() is None:
        time.sleep(0.1)
    second = runner.invoke(app, ["sweep", str(exp), "--out", str(out), "--resume"])
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.exit_code == 2 and second.stderr.count("\n") == 1
    assert "is being written by another ntkflow process" in second.stderr


def test_sweep_into_a_file_is_one_line(tmp_path):
    exp = write_toml(tmp_path / "grid.toml", GRID)
    target = tmp_path / "file"
    target.write_text("not a directory")
    for out in (target, target / "below"):
        result = runner.invoke(app, ["sweep", str(exp), "--out", str(out)])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert str(out) in result.stderr and "Traceback" not in result.output
    assert target.read_text() == "not a directory"
