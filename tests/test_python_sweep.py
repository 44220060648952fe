"""`ntkflow.sweep(make_problem, grid, out=…)`: a sweep of problems built in Python, with
the same directory, fits and resume semantics as a sweep of an experiment file."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf


def _data():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((6, 3))
    return nf.datasets.from_arrays(
        X / np.linalg.norm(X, axis=1, keepdims=True), rng.standard_normal(6)
    )


def make_problem(alpha, width, seed=0):
    if width == 3:
        raise ValueError("width=3 is refused by this test's make_problem")
    model = nf.Shallow(width, "tanh", train="all")
    return nf.Problem(model, _data(), alpha=alpha, centering="antisymmetric", key=seed)


def test_python_sweep_directory_fits_and_resume(tmp_path):
    out = tmp_path / "sw"
    grid = {"alpha": [1.0, 4.0, 16.0], "width": [16, 3]}
    r = nf.sweep(make_problem, grid, out=out, t1=1.0, saveat=4, name="shallow")
    ds = r.dataset
    assert dict(ds.sizes) == {"problem_alpha": 3, "model_width": 2, "t": 4}
    status = ds["status"].sel(model_width=16).values
    assert list(status) == ["success"] * 3
    # The refused point is a failed point with its message, not a lost sweep.
    failed = r.summary["failed_points"]
    assert len(failed) == 3 and all("width=3 is refused" in f["message"] for f in failed)
    # The points are those of ntkflow.run on the same problems.
    ref = nf.run(make_problem(4.0, 16), t1=1.0, saveat=4)
    assert ref.solution is not None
    np.testing.assert_allclose(
        ds["loss_w"].sel(problem_alpha=4.0, model_width=16).values,
        np.asarray(ref.solution.loss_w),
        rtol=1e-12,
    )
    # α-laws are fitted over the three values of α at width 16.
    assert any(f.against == "problem.alpha" for f in r.fits)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["name"] == "shallow" and summary["config"]["source"] == "python"
    # The model and the data are recorded as a file sweep's configuration has them.
    config = summary["config"]
    assert config["model"] == {"kind": "shallow", "width": 16, "activation": "tanh", "train": "all"}
    assert config["data"]["n"] == 6 and config["data"]["d"] == 3
    assert config["problem"] == {
        "centering": "antisymmetric",
        "loss": "squared",
        "dtype": "float64",
    }
    assert (out / "report.html").exists()
    assert "&quot;kind&quot;: &quot;shallow&quot;" in (out / "report.html").read_text()
    # Resuming reruns nothing (the point files keep their times) and gives the same data.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    again = nf.sweep(make_problem, grid, out=out, t1=1.0, saveat=4, name="shallow", resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == stamps
    assert again.dataset.equals(ds)
    # A different grid or setting is refused, not mixed in.
    with pytest.raises(nf.SweepError, match=r"different experiment or grid; resume=True needs"):
        nf.sweep(make_problem, grid, out=out, t1=2.0, saveat=4, name="shallow", resume=True)
    with pytest.raises(nf.SweepError, match=r"already holds a sweep; continue it with resume=True"):
        nf.sweep(make_problem, grid, out=out, t1=1.0, saveat=4, name="shallow")


def test_a_grid_key_make_problem_does_not_take_is_refused_before_any_point(tmp_path):
    calls = []

    def counted(alpha, width=8, seed=0):
        calls.append(alpha)
        return make_problem(alpha, width, seed)

    out = tmp_path / "typo"
    with pytest.raises(
        nf.SweepError,
        match=r"^grid key 'alhpa': counted\(\) takes no parameter 'alhpa'; did you mean "
        r"'alpha'\? its parameters: alpha, width, seed$",
    ):
        nf.sweep(counted, {"alhpa": [1, 10], "width": [8]}, out=out, t1=1.0, saveat=4)
    assert calls == [] and not out.exists()
    with pytest.raises(nf.SweepError, match=r"make_problem\(\) needs 'width', which the grid"):
        nf.sweep(make_problem, {"alpha": [1.0]}, out=out, t1=1.0, saveat=4)
    assert not out.exists()


def test_a_sweep_whose_every_point_failed_raises_the_first_error(tmp_path):
    out = tmp_path / "allfail"
    with pytest.raises(
        nf.SweepError,
        match=r"^every point of the sweep failed \(2 of 2\); the first \(alpha=1\.0, "
        r"width=3\): width=3 is refused by this test's make_problem$",
    ):
        nf.sweep(make_problem, {"alpha": [1.0, 2.0], "width": [3]}, out=out, t1=1.0, saveat=4)
    assert not out.exists()  # (nothing half-written is left)


def test_python_sweep_bad_calls_are_one_line(tmp_path):
    with pytest.raises(nf.SweepError, match="give the output directory as out="):
        nf.sweep(make_problem, {"alpha": [1.0]})
    with pytest.raises(nf.SweepError, match="grid must be a non-empty dict"):
        nf.sweep(make_problem, [1.0, 2.0], out=tmp_path / "a")
    with pytest.raises(nf.SweepError, match="values must be distinct"):
        nf.sweep(make_problem, {"alpha": [1.0, 1.0]}, out=tmp_path / "b")
    with pytest.raises(nf.SweepError, match="apply to experiment files"):
        nf.sweep(make_problem, {"alpha": [1.0]}, out=tmp_path / "c", jobs=2)
    with pytest.raises(nf.SweepError, match="apply to a sweep of make_problem"):
        nf.sweep("examples/seed_alpha.toml", tmp_path / "d", t1=1.0)


@pytest.mark.slow
def test_a_sweep_says_when_beta_is_an_estimate_wherever_it_shows_alpha_star(tmp_path):
    rng = np.random.default_rng(0)
    W = {"W": rng.standard_normal((3, 12)), "v": rng.standard_normal(12) / np.sqrt(12)}

    def plain(alpha):  # (a plain function: no certified β, only estimates)
        model = nf.from_apply(lambda p, X: jnp.tanh(X @ p["W"]) @ p["v"], W)
        return nf.Problem(model, _data(), alpha=alpha, centering="antisymmetric")

    r = nf.sweep(plain, {"alpha": [1.0, 30.0]}, out=tmp_path / "est", t1=1.0, saveat=4)
    crit = r.summary["critical_alpha"]
    assert crit and all(row["beta_kind"] == "estimate" for row in crit)
    assert all("β is an estimate" in row["beta_caveat"] for row in crit)
    assert all(p["beta_kind"] == "estimate" for p in r.summary["points"])
    html = (tmp_path / "est" / "report.html").read_text()
    assert "β is an estimate" in html and "(β estimated)" in html
    # A certified β gets no caveat.
    ok = nf.sweep(make_problem, {"alpha": [1.0, 4.0], "width": [16]}, out=tmp_path / "c", t1=1.0)
    assert all(row["beta_kind"] == "certified" for row in ok.summary["critical_alpha"])
    assert not any("beta_caveat" in row for row in ok.summary["critical_alpha"])
    assert "β is an estimate" not in (tmp_path / "c" / "report.html").read_text()


@pytest.mark.slow
def test_alpha_laws_are_fitted_over_the_lazy_points_by_default(tmp_path):
    alphas = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]

    def shallow(alpha):
        return nf.Problem(nf.Shallow(32, "tanh"), _data(), alpha=alpha, centering="antisymmetric")

    r = nf.sweep(shallow, {"alpha": alphas}, out=tmp_path / "lazy", t1=20.0, saveat=4)
    a_emp = r.summary["critical_alpha"][0]["alpha_empirical"]
    assert 0.1 < a_emp <= 100.0  # (the small α are not lazy here: the fit must drop them)
    dist = next(f for f in r.fits if f.quantity == "sup_dist_w")
    lazy = [a for a in alphas if a >= a_emp]
    assert dist.fit_range == (a_emp, np.inf) and dist.used == len(lazy) < len(alphas)
    assert "fitted over the lazy points" in dist.note and np.isfinite(dist.stderr)
    assert dist.x == tuple(alphas)  # (every point kept for the figures)
    # The same law over every point, asked for explicitly: further from the theory's −1.
    r_all = nf.sweep(
        shallow, {"alpha": alphas}, out=tmp_path / "all", t1=20.0, saveat=4,
        fit_range={"alpha": (None, None)},
    )  # fmt: skip
    every = next(f for f in r_all.fits if f.quantity == "sup_dist_w")
    assert every.used == len(alphas) and abs(dist.slope + 1) < abs(every.slope + 1)
    # A range of the user's, and one that is refused.
    r10 = nf.sweep(
        shallow, {"alpha": alphas}, out=tmp_path / "ten", t1=20.0, saveat=4,
        fit_range={"alpha": (10, None)},
    )  # fmt: skip
    ten = next(f for f in r10.fits if f.quantity == "sup_dist_w")
    assert ten.used == 5 and "fitted over alpha in [10, inf] (5 of 9 points)" in ten.note
    with pytest.raises(nf.SweepError, match=r"fit_range has no setting 'alhpa_min'"):
        nf.sweep(shallow, {"alpha": alphas}, out=tmp_path / "bad", fit_range={"alhpa": (1, 2)})
    assert not (tmp_path / "bad").exists()
