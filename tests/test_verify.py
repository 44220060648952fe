"""Nothing reported that was not shown: truncated, non-finite, diverged and unresolved
solves; float32; rounding in every budget; α up to the dtype's limits."""

import dataclasses
import json
import math
import re

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import ntkflow as nf
from helpers import write_toml
from ntkflow.cli import app

runner = CliRunner()
GRADIENT_CHECKS = ("loss_envelope_w", "distance_w", "exit_time", "ball_sigma_min", "ball_sigma_max")


def _certified(dtype=None, *, scale=1.01, alpha=None):
    """The test suite's certified problem: 10 points on the sphere in R^5, Shallow(256),
    antisymmetric centring, at `scale·α*` (or at `alpha`)."""
    data = nf.datasets.sphere(10, 5, seed=1)
    base = nf.Problem(nf.Shallow(256), data, centering="antisymmetric", dtype=dtype)
    if alpha is None:
        alpha = scale * nf.certify(base, estimate_beta=False).alpha_star
    problem = nf.Problem(nf.Shallow(256), data, alpha=alpha, centering="antisymmetric", dtype=dtype)
    return problem, nf.certify(problem, estimate_beta=False)


@pytest.fixture(scope="module")
def certified():
    return _certified()


def _not_lazy():
    problem = nf.Problem(nf.Shallow(4), nf.datasets.sphere(10, 5, seed=1), alpha=0.3)
    return problem, nf.certify(problem, estimate_beta=False)


def test_step_limit_leaves_what_was_not_reached_inconclusive(certified):
    problem, cert = certified
    assert cert.hypotheses_hold
    sol = nf.solve_flows(problem, saveat=20, max_steps=8, diagnostics=False)
    assert sol.status is nf.FlowStatus.MAX_STEPS
    t_stop = sol.time_reached("gradient")
    assert 0 < t_stop < sol.t1
    v = nf.verify(sol, cert)
    assert not v.all_hold and not v.complete and v.status is nf.FlowStatus.MAX_STEPS
    assert v.t_reached == t_stop
    for name in ("loss_envelope_w", "distance_w", "exit_time"):
        c = v[name]
        assert c.holds is None, c
        assert c.reason is not None and f"computed only up to t={t_stop:.4g}" in c.reason
    # The closed-form tangent flow reached t1: its checks are decided.
    assert all(v[n].holds is True for n in ("loss_envelope_u", "distance_u", "tangent_limit"))
    assert v.summary().startswith(f"Incomplete (max_steps): the flows reached t={t_stop:.4g}")
    d = v.to_dict()
    assert d["complete"] is False and d["all_hold"] is False and d["t_reached"] == t_stop
    assert d["checks"][0]["holds"] is None and d["checks"][0]["reason"]
    # The same problem solved to t1 holds every check: the step limit alone made the
    # difference.
    full = nf.verify(nf.solve_flows(problem, saveat=20, diagnostics=False), cert)
    assert full.all_hold and full.complete


def test_a_violation_before_the_stop_is_still_a_failure():
    problem, cert = _not_lazy()
    sol = nf.solve_flows(problem, saveat=40, diagnostics=False)
    full = nf.verify(sol, cert)
    T = full.exit_time
    assert T is not None and full["exit_time"].holds is False
    gradient = sol.gradient
    assert gradient is not None

    def stopped(at):
        path = dataclasses.replace(gradient, reached=at)
        return dataclasses.replace(sol, status=nf.FlowStatus.MAX_STEPS, gradient=path)

    after = stopped((T + sol.t1) / 2)
    v = nf.verify(after, cert)
    assert v["exit_time"].holds is False and v["exit_time"].first_violation == T
    assert not v.all_hold
    before = stopped(T / 2)
    v = nf.verify(before, cert)
    # Stopped before the exit: nothing past T/2 is shown, so neither held nor failed.
    assert v["exit_time"].holds is None and v.exit_time is None
    assert "computed only up to" in (v["exit_time"].reason or "")


def test_a_non_finite_solve_never_holds():
    rng = np.random.default_rng(0)
    data = nf.datasets.from_arrays(rng.standard_normal((5, 8)), 3 * rng.standard_normal(5))

    def apply(p, X):  # linear, but NaN once ‖w‖² > 1/2
        return X @ p["w"] + 0.0 * jnp.log(0.5 - jnp.sum(p["w"] ** 2))

    problem = nf.Problem(nf.from_apply(apply, {"w": jnp.zeros(8)}, smooth=True), data)
    cert = nf.certify(problem)
    sol = nf.solve_flows(problem, saveat=20, diagnostics=False)
    assert sol.status is nf.FlowStatus.NONFINITE
    v = nf.verify(sol, cert)
    assert not v.all_hold and v.status is nf.FlowStatus.NONFINITE and v.t_reached < sol.t1
    assert all(v[n].holds is not True for n in ("loss_envelope_w", "distance_w", "exit_time"))


def test_diverged_gradient_descent_is_incomplete(certified):
    problem, cert = certified
    lam_max = cert.sigma_max**2
    with pytest.warns(RuntimeWarning, match="gd_step=.* unstable"):
        sol = nf.solve_flows(
            problem, saveat=20, diagnostics=False, gd_step=100.0 / (problem.alpha**2 * lam_max)
        )
    assert sol.status is nf.FlowStatus.GD_DIVERGED
    assert sol.time_reached("gd") < sol.t1 and sol.time_reached("gradient") == sol.t1
    v = nf.verify(sol, cert)
    # The flows' own checks hold, yet the run as a whole did not: GD stopped short.
    assert all(c.holds is True for c in v.checks)
    assert not v.all_hold and not v.complete
    assert v.summary().startswith("Incomplete (gd_diverged)")


def test_a_truncated_tangent_ode_is_inconclusive_too():
    problem, cert = _certified(alpha=5.0)
    sol = nf.solve_flows(problem, saveat=10, tangent="ode", max_steps=2, diagnostics=False)
    assert sol.status is nf.FlowStatus.MAX_STEPS and "tangent flow" in sol.message
    v = nf.verify(sol, cert)
    assert sol.time_reached("tangent") < sol.t1
    assert v["distance_u"].holds is None and not v.all_hold


TINY = {
    "name": "tiny",
    "data": {"source": "sphere", "n": 8, "d": 3},
    "model": {"width": 16},
    "problem": {"alpha": 1e9, "centering": "antisymmetric"},
    "flows": {"saves": 10, "diagnostics": False},
    "output": {"figures": False},
}


def test_cli_strict_exits_3_unless_every_check_held(tmp_path):
    exp = write_toml(tmp_path / "tiny.toml", TINY)
    ok = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "a"), "--strict", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["all_hold"] is True
    args = ["run", str(exp), "--set", "flows.max_steps=2", "--json"]
    cut = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert cut.exit_code == 0, cut.output  # a result, not an error
    d = json.loads(cut.stdout)
    assert d["status"] == "max_steps" and d["complete"] is False and d["all_hold"] is False
    assert d["t_reached"] < d["t1"]
    by_name = {c["name"]: c for c in d["checks"]}
    assert by_name["loss_envelope_w"]["holds"] is None
    assert "computed only up to" in by_name["loss_envelope_w"]["reason"]
    table = runner.invoke(app, [*args[:-1], "--out", str(tmp_path / "c"), "--strict"])
    assert table.exit_code == 3, table.output
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())["verification"]
    assert summary["complete"] is False and summary["status"] == "max_steps"
    assert table.stdout.lstrip().startswith("Incomplete (max_steps):")
    assert "inconclusive" in table.stdout and "unclear" not in table.stdout
    assert "All 10 checks hold" not in table.stdout


# -- float32 ------------------------------------------------------------------------


def test_float32_end_to_end_agrees_with_float64(certified):
    p64, c64 = certified
    p32, c32 = _certified("float32", alpha=p64.alpha)
    assert p32.dtype == jnp.float32 and c32.hypotheses_hold
    assert math.isclose(c32.sigma_min, c64.sigma_min, rel_tol=1e-4)
    gd_step = 0.5 / (p64.alpha**2 * c64.sigma_max**2)
    s64 = nf.solve_flows(p64, saveat=20, diagnostics=False)
    s32 = nf.solve_flows(p32, saveat=20, gd_step=gd_step, diagnostics=False)
    assert s32.status is nf.FlowStatus.SUCCESS
    eps32 = float(np.finfo(np.float32).eps)
    assert s32.stats["gradient"]["rtol"] >= 1000 * eps32  # the default adapts
    v32 = nf.verify(s32, c32)
    assert not [c.name for c in v32.checks if c.guaranteed and c.holds is False]
    # docs/flows.md, "Precision": float32's loss differs from float64's by no more than
    # its own rounding and integration budgets, and near α* by its rtol·R0 at most (rtol
    # ≈ 1.6e-4 here: 1.5e-4·R0 at the saves of the first decades, where the loss falls
    # fastest, 1.7e-6·R0 at evenly spaced ones); its distance from w0 by 1e-3 relative.
    assert s64.loss_w is not None and s32.loss_w is not None and s32.round_res_w is not None
    e_r = s32.round_res_w
    assert s32.err_loss_w is not None
    budget = np.sqrt(2 * s32.loss_w) * e_r + e_r**2 / 2 + s32.err_loss_w
    assert np.all(np.abs(s32.loss_w - s64.loss_w) <= budget)
    assert np.max(np.abs(s32.loss_w - s64.loss_w)) <= s32.stats["gradient"]["rtol"] * c64.R0
    assert s64.dist_w is not None and s32.dist_w is not None
    assert np.max(np.abs(s32.dist_w - s64.dist_w)) <= 1e-3 * np.max(s64.dist_w)
    assert s32.loss_gd is not None and np.isfinite(s32.loss_gd).all()


def test_float32_default_tolerance_is_not_below_its_resolution():
    problem, _ = _certified("float32", alpha=5.0)
    with pytest.warns(RuntimeWarning, match=r"rtol=1e-10 is below what float32 resolves"):
        sol = nf.solve_flows(problem, saveat=5, rtol=1e-10, diagnostics=False)
    g = sol.stats["gradient"]
    assert g["rtol"] == g["resolution"] > 1e-10 and sol.status is nf.FlowStatus.SUCCESS


# -- rounding and large α -----------------------------------------------------------


def test_rounding_is_in_the_budget():
    """At α = 3e12 float64 rounding of α f is most of the late loss: without it in the
    budget a guaranteed conclusion would be reported violated."""
    problem, cert = _certified(alpha=3e12)
    assert cert.hypotheses_hold
    sol = nf.solve_flows(problem, saveat=40)
    assert sol.status is nf.FlowStatus.SUCCESS and sol.round_res_w is not None
    v = nf.verify(sol, cert)
    assert not [c.name for c in v.checks if c.guaranteed and c.holds is False]
    assert v["loss_envelope_w"].holds is None  # within its budget of the bound: undecided
    # Rounding alone (no integration budget: error_estimate=False) keeps it undecided;
    # without it too the late loss would be reported violated.
    bare = nf.solve_flows(problem, saveat=40, error_estimate=False)
    assert bare.err_loss_w is None and bare.round_res_w is not None
    assert nf.verify(bare, cert)["loss_envelope_w"].holds is None
    assert bare.gradient is not None
    unrounded = dataclasses.replace(bare.gradient, rounding=None)
    without = nf.verify(dataclasses.replace(bare, gradient=unrounded), cert)
    assert without["loss_envelope_w"].holds is False


@pytest.mark.parametrize("alpha", [1e15, 1e60, 1e150])
def test_no_guaranteed_check_is_violated_up_to_the_dtypes_limit(alpha):
    problem, cert = _certified(alpha=alpha)
    assert cert.hypotheses_hold
    sol = nf.solve_flows(problem, saveat=10)
    # The network cannot resolve its own motion at such α: it is not integrated, and
    # says so, instead of reporting on rounding noise.
    assert sol.status is nf.FlowStatus.UNRESOLVED and "Lower α" in sol.message
    v = nf.verify(sol, cert)
    assert not [c.name for c in v.checks if c.guaranteed and c.holds is False]
    assert all(v[n].holds is None for n in ("loss_envelope_w", "distance_w", "exit_time"))
    assert v["loss_envelope_u"].holds is True and not v.all_hold


@pytest.mark.parametrize(("dtype", "alpha"), [("float64", 1e200), ("float32", 1e16)])
def test_alpha_beyond_the_dtype_is_refused(dtype, alpha):
    data = nf.datasets.sphere(8, 3)
    match = re.escape(f"alpha={alpha!r} is too large for {dtype}") + ".*use alpha ≤"
    with pytest.raises(ValueError, match=match):
        nf.Problem(nf.Shallow(16), data, alpha=alpha, dtype=dtype)


@pytest.mark.slow  # CI runs it (make test-slow)
def test_float32_run_and_sweep_from_the_command_line(tmp_path):
    doc = {**TINY, "problem": {**TINY["problem"], "dtype": "float32", "alpha": 30.0}}
    exp = write_toml(tmp_path / "f32.toml", doc)
    run = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "r"), "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["status"] == "success" and d["complete"] is True
    assert d["solver"]["gradient"]["rtol"] >= 1000 * float(np.finfo(np.float32).eps)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["problem"]["dtype"] == "float32"
    swept = write_toml(tmp_path / "s.toml", {**doc, "sweep": {"problem.alpha": [3.0, 30.0]}})
    result = runner.invoke(app, ["sweep", str(swept), "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert [p["status"] for p in points] == ["success", "success"]
    assert (tmp_path / "s" / "sweep.nc").is_file()


@pytest.mark.slow
def test_float32_on_the_seed_network(tmp_path):
    """Issue 11: float32 certifies, integrates both flows, verifies, runs and sweeps the
    seed's network (digits 0/1, Shallow(256), antisymmetric) below and at α*."""
    from pathlib import Path

    seed = Path(__file__).resolve().parents[1] / "examples" / "seed.toml"
    f32 = ["--set", "problem.dtype='float32'"]
    run = runner.invoke(app, ["run", str(seed), *f32, "--out", str(tmp_path / "r"), "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.stdout)
    assert d["status"] == "success" and d["beta_kind"] == "certified"
    # Below α* (α = 10) the path leaves the ball, as in float64; nothing else fails.
    assert {c["name"] for c in d["checks"] if c["holds"] is False} == {"exit_time"}
    swept = tmp_path / "seed_sweep.toml"
    swept.write_text(seed.read_text() + '\n[sweep]\n"problem.alpha" = [10.0, 2.15e4]\n')
    result = runner.invoke(app, ["sweep", str(swept), *f32, "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert [p["status"] for p in points] == ["success", "success"]
    at_star = points[1]
    assert at_star["hypotheses_hold"] is True
    # At α* float32 resolves the flow (ρ ≈ 3e-3): no guaranteed check is violated.
    assert not [n for n, c in at_star["checks"].items() if c["guaranteed"] and c["holds"] is False]
