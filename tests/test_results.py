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

import ntkflow as nf
from helpers import write_toml
from ntkflow._json import jsonable
from ntkflow.cli import app
from ntkflow.config import load_experiment, parse_experiment
from ntkflow.experiment import run_experiment, save_run

runner = CliRunner()
TINY = {
    "name": "tiny",
    "data": {"source": "sphere", "n": 8, "d": 3, "n_test": 4},
    "model": {"width": 32},
    "problem": {"alpha": 2.0, "centering": "antisymmetric"},
    "flows": {"saves": 6, "gd_step": 0.05},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run = run_experiment(parse_experiment(TINY))
    save_run(run, out)
    return run, out


def test_load_results_round_trips_exactly(tiny_run):
    run, out = tiny_run
    loaded = nf.load_results(out)
    xr.testing.assert_identical(loaded.dataset, run.dataset)
    expected = {"format": "ntkflow-results/1", **jsonable(run.summary), "complete": True}
    assert loaded.summary == expected
    assert {p.name for p in (out / "figures").iterdir()} == {
        "losses.png",
        "distances.png",
        "singular_values.png",
        "gaps.png",
        "kernel_drift.png",
        "spectrum.png",
        "test_loss.png",
    }
    summary = loaded.summary
    assert set(summary) >= {"certificate", "verification", "solver", "versions", "config"}
    assert summary["config"]["flows"]["saves"] == 6
    assert "loss" in loaded.dataset and loaded.dataset["loss"].dims == ("flow", "t")
    assert list(loaded.dataset["flow"].values) == ["gradient", "tangent", "gd"]


def test_report_is_self_contained_and_opens_with_the_verdict(tiny_run):
    _, out = tiny_run
    html = (out / "report.html").read_text()
    verdict = html.index("<h2>Verdict</h2>")
    assert verdict < html.index("<h2>Certificate</h2>") < html.index("<h2>Figures</h2>")
    assert "hypotheses do not hold" in html and "FAILED" in html  # α ≪ α*: exit_time
    assert html.count('src="data:image/png;base64,') == 7
    assert 'src="http' not in html and "<script" not in html


def test_report_command_rerenders_and_copies(tiny_run, tmp_path):
    _, out = tiny_run
    before = (out / "report.html").stat().st_mtime_ns
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").stat().st_mtime_ns >= before
    copy = tmp_path / "copy"
    result = runner.invoke(app, ["report", str(out), "--out", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "tiny"
    xr.testing.assert_identical(nf.load_results(copy).dataset, nf.load_results(out).dataset)


def test_report_rejects_incomplete_directories(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "trajectories.nc").write_bytes(b"")
    for target in (tmp_path / "half", tmp_path / "missing"):
        result = runner.invoke(app, ["report", str(target)])
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1
    with pytest.raises(nf.ResultsError, match="not a complete ntkflow results directory"):
        nf.load_results(tmp_path / "half")


def test_out_refuses_foreign_directories(tmp_path):
    exp = write_toml(tmp_path / "tiny.toml", TINY)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = runner.invoke(app, ["run", str(exp), "--out", str(foreign)])
    assert result.exit_code == 2 and "is not an ntkflow results directory" in result.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_every_command_smoke(tmp_path):
    exp = write_toml(tmp_path / "tiny.toml", {**TINY, "flows": {"saves": 4}})
    result = runner.invoke(app, ["certify", str(exp), "--out", str(tmp_path / "cert")])
    assert result.exit_code == 0, result.output
    loaded = nf.load_results(tmp_path / "cert")
    assert "verification" not in loaded.summary and "ntk_eigenvalues" in loaded.dataset
    assert (tmp_path / "cert" / "figures" / "spectrum.png").is_file()
    result = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checks"]
    # Running again replaces the results directory whole.
    result = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".run.*"))
    doc = {**TINY, "flows": {"saves": 4}, "output": {"figures": False}}
    demo = write_toml(tmp_path / "demo.toml", doc)
    result = runner.invoke(
        app, ["demo", "--experiment", str(demo), "--out", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    assert "Verdict." in result.stdout
    # The headings say where α stands against α*, in one notation.
    assert "(below α* = " in result.stdout and "(above α* = " in result.stdout
    assert "alpha star" not in result.stdout
    for label in ("below-alpha-star", "above-alpha-star"):
        summary = nf.load_results(tmp_path / "demo" / label).summary
        assert summary["certificate"]["hypotheses_hold"] is (label == "above-alpha-star")


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "configs" / "bad").glob("*.toml")))
def test_bad_experiment_writes_nothing(path, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow  # every example: CI runs it (make test-slow)
def test_examples_run_with_tiny_overrides(tmp_path):
    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        exp = load_experiment(path, ["data.n=6", "flows.saves=3", "flows.diagnostics=false"])
        run = run_experiment(exp)
        assert run.solution is not None and run.solution.succeeded, path.name


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    # Enough work (about 20 s) that the signal lands mid-run.
    doc = {
        **TINY,
        "data": {"source": "sphere", "n": 24, "d": 6},
        "model": {"width": 64},
        # (the exponential Runge–Kutta pair at a tight tolerance: a slow solve by design)
        "flows": {"saves": 150, "solver": "exponential", "rtol": 1e-10},
    }
    exp = write_toml(tmp_path / "slow.toml", doc)
    out = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntkflow", "run", str(exp), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def _assert_not_complete(out: Path) -> None:
    with pytest.raises(nf.ResultsError):
        nf.load_results(out)
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 2


def _wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow  # test_bad_inputs.py::test_sigint_mid_run_leaves_nothing in the default suite
def test_sigint_midway_leaves_nothing(tmp_path):
    proc, out = _start_run(tmp_path)
    time.sleep(8.0)
    assert proc.poll() is None, "the run finished before the signal; make it slower"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "interrupted; no results were written" in err
    assert "Traceback" not in err
    _assert_not_complete(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".res.")]


@pytest.mark.parametrize(
    "sig", [pytest.param(signal.SIGKILL, marks=pytest.mark.slow), signal.SIGINT]
)
def test_signal_while_writing_leaves_no_complete_directory(tmp_path, sig):
    proc, out = _start_run(tmp_path)

    def writing():
        return proc.poll() is not None or any(
            p.name.startswith(".res.partial-") for p in tmp_path.iterdir()
        )

    assert _wait_for(writing)
    assert proc.poll() is None, "the run finished before the signal"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=180)
    _assert_not_complete(out)
    if sig == signal.SIGKILL:
        # The next run to the same place cleans up what the killed one left.
        run = run_experiment(parse_experiment({**TINY, "flows": {"saves": 3}}))
        save_run(run, out)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".res.")]
        assert nf.load_results(out).summary["complete"] is True
    else:
        assert proc.returncode == 130


def test_results_dataset_values_match_solution(tiny_run):
    run, out = tiny_run
    ds = nf.load_results(out).dataset
    np.testing.assert_array_equal(ds["loss_w"].values, run.solution.loss_w)
    np.testing.assert_array_equal(ds["loss"].sel(flow="tangent").values, run.solution.loss_u)


def test_test_predictions_are_points_by_outputs(tiny_run):
    _, out = tiny_run
    ds = nf.load_results(out).dataset
    for name in ("pred_w_test", "pred_u_test"):
        assert ds[name].dims == ("t", "test_point", "output") and ds[name].shape == (6, 4, 1)
    # The sphere's targets are real numbers, not classes: no accuracy.
    assert "acc_w_test" not in ds and "acc_u_test" not in ds
    assert "mean over test points" in ds["loss_w_test"].attrs["long_name"]


def _linear_problem(y, y_test):
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(6, 3)), rng.normal(size=(len(y_test), 3))
    data = nf.datasets.from_arrays(X, y, X_test=Xt, y_test=y_test)
    model = nf.MLP([8], out_dim=np.shape(y)[1]) if np.ndim(y) == 2 else nf.Shallow(8)
    return nf.Problem(model, data, alpha=3.0, centering="none")


@pytest.mark.parametrize(
    "y_test",
    [
        np.array([1.0, -1.0, 1.0, 1.0, -1.0]),  # ±1: the class is the sign
        np.eye(3)[[0, 2, 1, 1, 0]],  # one-hot 0/1: the argmax
        2 * np.eye(3)[[2, 2, 0, 1, 0]] - 1,  # one-hot ±1
        np.array([0.3, -1.2, 0.5, 2.0, 0.1]),  # real targets: no accuracy
    ],
)
def test_test_loss_is_a_mean_and_accuracy_counts_classes(y_test):
    from ntkflow._diagnostics import test_series

    y = y_test[[0, 1, 2, 3, 4, 0]]
    problem = _linear_problem(y, y_test)
    rng = np.random.default_rng(1)
    deltas = np.stack([np.zeros(problem.p), 0.3 * rng.normal(size=problem.p)])
    deltas = np.concatenate([deltas, np.full((1, problem.p), np.nan)])  # a save past a stop
    w, u = test_series(problem, deltas), test_series(problem, deltas, linear=True)
    assert w.pred is not None and w.loss is not None and u.loss is not None
    Xt = problem.data.X_test
    assert Xt is not None
    k = 1 if y_test.ndim == 1 else y_test.shape[1]
    targets = y_test.reshape(5, k)
    for i, d in enumerate(deltas[:2]):
        pred = problem.alpha * np.asarray(problem.predict(problem.w0 + d, Xt)).reshape(5, k)
        np.testing.assert_allclose(w.pred[i], pred, rtol=1e-10)
        loss = np.mean([0.5 * np.sum((pred[j] - targets[j]) ** 2) for j in range(5)])
        np.testing.assert_allclose(w.loss[i], loss, rtol=1e-10)
        if k == 1 and set(np.abs(y_test)) == {1.0}:
            right = [np.sign(pred[j, 0]) == targets[j, 0] for j in range(5)]
        elif k > 1:
            right = [np.argmax(pred[j]) == np.argmax(targets[j]) for j in range(5)]
        else:
            assert w.acc is None and u.acc is None
            continue
        assert w.acc is not None and w.acc[i] == np.mean(right)
        # The tangent flow at δ = 0 is the network at w0; its accuracy is computed alike.
        if i == 0:
            assert u.acc is not None and u.acc[0] == w.acc[0]
            np.testing.assert_allclose(u.loss[0], loss, rtol=1e-10)
    assert w.pred.shape == (3, 5, k)
    assert np.isnan(w.loss[2])
    if w.acc is not None:
        assert u.acc is not None and np.isnan(w.acc[2]) and np.isnan(u.acc[2])


def test_undecided_test_points_count_as_wrong():
    from ntkflow._diagnostics import test_series

    y_test = np.array([1.0, -1.0, 1.0, -1.0])
    problem = _linear_problem(y_test[[0, 1, 2, 3, 0, 1]], y_test)
    problem = nf.Problem(problem.model, problem.data, alpha=3.0, centering="antisymmetric")
    out = test_series(problem, np.zeros((1, problem.p)))
    np.testing.assert_array_equal(out.pred, 0.0)  # αf(w0) = 0: no decision yet
    assert out.acc is not None and out.loss is not None
    assert out.acc[0] == 0.0 and out.loss[0] == 0.5


def test_report_rerenders_results_written_before_predictions_had_points(tiny_run, tmp_path):
    _, out = tiny_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    ds = xr.load_dataset(old / "trajectories.nc", engine="h5netcdf")
    flat = {
        name: (("t", "test_output"), ds[name].values.reshape(ds.sizes["t"], -1))
        for name in ("pred_w_test", "pred_u_test")
    }
    ds = ds.drop_vars(list(flat)).assign(flat)
    ds.to_netcdf(old / "trajectories.nc", engine="h5netcdf")
    (old / "figures" / "test_loss.png").unlink()
    result = runner.invoke(app, ["report", str(old)])
    assert result.exit_code == 0, result.output
    assert (old / "figures" / "test_loss.png").stat().st_size > 0
    assert nf.load_results(old).dataset["pred_w_test"].dims == ("t", "test_output")


def test_demo_certifies_each_run_once(tmp_path, monkeypatch):
    """The demo's first run reuses the certificate that gave α* (issue 29: it was
    certified twice)."""
    import ntkflow._certificate as certificate_module
    import ntkflow.experiment as experiment_module

    calls = []
    real = certificate_module.certify

    def counting(problem, *args, **kwargs):
        calls.append(problem.alpha)
        return real(problem, *args, **kwargs)

    monkeypatch.setattr(certificate_module, "certify", counting)
    monkeypatch.setattr(experiment_module, "certify", counting)
    doc = {**TINY, "flows": {"saves": 4}, "output": {"figures": False}}
    demo = write_toml(tmp_path / "demo.toml", doc)
    result = runner.invoke(app, ["demo", "--experiment", str(demo), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2 and calls[0] == TINY["problem"]["alpha"] and calls[1] > calls[0]
