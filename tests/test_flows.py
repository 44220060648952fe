import math
import re

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import ntkflow as nf
from families import tiny_data
from helpers import rel_err


def _small(width=32, alpha=2.0, centering="antisymmetric", n=8, d=4, seed=0):
    data = nf.datasets.sphere(n, d, seed=seed)
    return nf.Problem(nf.Shallow(width), data, alpha=alpha, centering=centering, key=seed)


def test_tangent_ode_matches_closed_form():
    problem = _small()
    kw: dict = dict(saveat=25, flows=("tangent",), save_params=True)
    closed = nf.solve_flows(problem, **kw)
    ode = nf.solve_flows(problem, tangent="ode", rtol=1e-12, **kw)
    assert closed.params_u is not None and ode.params_u is not None
    for k in range(1, len(closed.ts)):
        assert rel_err(ode.params_u[k], closed.params_u[k]) < 1e-9, k
    assert ode.loss_u is not None and closed.loss_u is not None
    np.testing.assert_allclose(ode.loss_u, closed.loss_u, rtol=1e-9, atol=1e-14)


def test_tangent_limit_is_min_norm_interpolant():
    problem = _small(alpha=3.0)
    sol = nf.solve_flows(problem, saveat=30, flows=("tangent",), save_params=True)
    J = np.asarray(nf.jacobian(problem))
    r0 = np.asarray(problem.residual(problem.w0))
    u_inf = np.linalg.pinv(J) @ (-r0 / 3.0)  # min-norm solution of J(u − w0) = −r0/α
    assert sol.params_u is not None and sol.dist_u_to_limit is not None
    np.testing.assert_allclose(sol.dist_u_inf, np.linalg.norm(u_inf), rtol=1e-10)
    assert rel_err(sol.params_u[-1], u_inf) < 1e-5  # t1 is a 1e-6 envelope drop
    d = sol.dist_u_to_limit
    assert np.all(np.diff(d) <= 1e-12 * d[0]) and d[-1] < 1e-5 * d[0]
    # ‖u(t) − u∞‖ from the eigenbasis equals the difference of the vectors.
    direct = np.linalg.norm(sol.params_u - u_inf[None, :], axis=1)
    np.testing.assert_allclose(d, direct, rtol=1e-6, atol=1e-12 * d[0])


def test_linear_model_flows_coincide():
    rng = np.random.default_rng(0)
    Phi = rng.standard_normal((6, 10))
    data = nf.datasets.from_arrays(Phi, rng.standard_normal(6))
    model = nf.from_apply(lambda p, X: X @ p["w"], {"w": jnp.asarray(rng.standard_normal(10))})
    problem = nf.Problem(model, data, alpha=1.5)
    sol = nf.solve_flows(problem, saveat=20, rtol=1e-12, save_params=True)
    assert sol.succeeded
    assert sol.params_w is not None and sol.params_u is not None
    for k in range(1, len(sol.ts)):
        assert rel_err(sol.params_w[k], sol.params_u[k]) < 1e-10
    assert sol.loss_w is not None and sol.loss_u is not None
    np.testing.assert_allclose(sol.loss_w, sol.loss_u, rtol=1e-9, atol=1e-20)


def test_gradient_flow_against_scipy_dop853():
    problem = _small(width=6, alpha=1.0, centering="none")
    ts = np.linspace(0.0, 5.0, 11)
    sol = nf.solve_flows(problem, saveat=ts, save_params=True, diagnostics=False)
    grad = jax.jit(jax.grad(problem.loss))
    w0 = np.asarray(problem.w0)
    ref = scipy.integrate.solve_ivp(
        lambda t, d: -np.asarray(grad(jnp.asarray(w0 + d))),
        (0.0, 5.0),
        np.zeros_like(w0),
        method="DOP853",
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    )
    assert ref.success and sol.params_w is not None
    for k in range(1, len(ts)):
        assert rel_err(sol.params_w[k], ref.y[:, k]) < 1e-6


def test_gradient_descent_converges_at_order_one():
    problem = _small(width=16, alpha=1.0)
    T = 4.0
    flow = nf.solve_flows(problem, saveat=[0.0, T], rtol=1e-12, save_params=True)
    assert flow.params_w is not None
    limit = nf.ntk_spectrum(nf.empirical_ntk(problem)).sigma_max ** 2
    # η = T/k with integer k, so GD reaches exactly t = T; the largest η is ≈ 0.1/λ_max.
    k0 = math.ceil(T * limit / 0.1)
    etas = T / (k0 * 2.0 ** np.arange(5))
    errs = []
    for eta in etas:
        gd = nf.gradient_descent(problem, float(eta), np.array([0.0, T]), lambda_max=limit)
        errs.append(np.linalg.norm(gd.deltas[-1] - flow.params_w[-1]))
    slope = np.polyfit(np.log(etas), np.log(errs), 1)[0]
    assert 0.8 <= slope <= 1.2, (slope, errs)


def test_gd_in_solve_warns_and_reports_divergence():
    # A model linear in its parameters: above 2/(α²λ_max) GD's top mode grows by |1 − ηλ|
    # per iteration without bound (a tanh network would saturate instead).
    rng = np.random.default_rng(1)
    data = nf.datasets.from_arrays(rng.standard_normal((6, 10)), rng.standard_normal(6))
    model = nf.from_apply(lambda p, X: X @ p["w"], {"w": jnp.zeros(10)})
    problem = nf.Problem(model, data)
    lam_max = nf.ntk_spectrum(nf.empirical_ntk(problem)).sigma_max ** 2
    with pytest.warns(RuntimeWarning, match=r"gd_step=.* ≥ 2/\(α² λ_max\(K0\)\)"):
        sol = nf.solve_flows(problem, saveat=10, gd_step=3.0 / lam_max, diagnostics=False)
    assert sol.status is nf.FlowStatus.GD_DIVERGED
    assert (
        "Gradient descent diverged by iteration" in sol.message and "lower gd_step" in sol.message
    )
    ok = nf.solve_flows(problem, saveat=10, gd_step=0.5 / lam_max, diagnostics=False)
    assert ok.succeeded and ok.gap_gd is not None and np.all(np.isfinite(ok.gap_gd))


def test_lazy_problem_every_check_holds_and_is_guaranteed():
    data = nf.datasets.sphere(10, 5, seed=1)
    base = nf.Problem(nf.Shallow(256), data, centering="antisymmetric")
    cert0 = nf.certify(base)
    problem = nf.Problem(
        nf.Shallow(256), data, alpha=1.01 * cert0.alpha_star, centering="antisymmetric"
    )
    cert = nf.certify(problem)
    assert cert.hypotheses_hold
    sol = nf.solve_flows(problem, saveat=40)
    v = nf.verify(sol, cert)
    names = {c.name for c in v.checks}
    assert names == {
        "loss_envelope_w",
        "loss_envelope_u",
        "loss_envelope_u_sharp",
        "distance_w",
        "distance_u",
        "distance_u_sharp",
        "ball_sigma_min",
        "ball_sigma_max",
        "exit_time",
        "tangent_limit",
    }
    for c in v.checks:
        assert c.holds is True and c.guaranteed, c
        assert c.margin >= 0
    assert v.exit_time is None and v.all_hold
    assert v.to_dict()["checks"][0].keys() >= {"name", "holds", "guaranteed", "margin", "t"}


def test_non_lazy_problem_fails_a_check_and_says_when():
    problem = nf.Problem(nf.Shallow(4), nf.datasets.sphere(10, 5, seed=1), alpha=0.3)
    cert = nf.certify(problem)
    sol = nf.solve_flows(problem, saveat=40)
    v = nf.verify(sol, cert)
    failed = {c.name: c for c in v.failed}
    assert "loss_envelope_w" in failed and "exit_time" in failed
    assert not failed["loss_envelope_w"].guaranteed and failed["loss_envelope_w"].margin < 0
    assert v.exit_time is not None and 0 < v.exit_time < sol.t1
    assert "loss_envelope_w fails from t=" in v.summary()
    exit_check = failed["exit_time"]
    assert exit_check.first_violation == v.exit_time  # the first time ‖w − w0‖ > B


@pytest.mark.parametrize("solver", ["tsit5", "exponential"])
def test_nonfinite_vector_field_stops_with_last_good_state(solver):
    rng = np.random.default_rng(0)
    data = nf.datasets.from_arrays(rng.standard_normal((5, 8)), 3 * rng.standard_normal(5))

    def apply(p, X):  # linear, but NaN once ‖w‖² > 1/2
        return X @ p["w"] + 0.0 * jnp.log(0.5 - jnp.sum(p["w"] ** 2))

    problem = nf.Problem(nf.from_apply(apply, {"w": jnp.zeros(8)}), data)
    sol = nf.solve_flows(problem, saveat=20, diagnostics=False, solver=solver)
    assert sol.status is nf.FlowStatus.NONFINITE
    assert "the last good state is at t=" in sol.message
    found = re.search(r"‖w − w0‖ = ([0-9.]+)\)", sol.message)
    assert found is not None
    last = float(found.group(1))
    # Tsit5's steps shrink onto the singular sphere ‖w‖ = 1/√2; the exponential
    # integrator's last accepted step lies strictly inside it (where depends on how its
    # geometrically growing steps meet the sphere).
    if solver == "tsit5":
        assert f"{last:.4f}" == "0.7071"
    else:
        assert 0.0 < last <= 0.70711
    assert sol.stats["gradient"]["num_steps"] < 1000  # stopped, not run to max_steps
    assert sol.dist_w is not None and np.isnan(sol.dist_w[-1])


def test_max_steps_says_so_and_how_to_fix():
    sol = nf.solve_flows(_small(), saveat=10, max_steps=5, diagnostics=False)
    assert sol.status is nf.FlowStatus.MAX_STEPS
    assert "max_steps=5" in sol.message and "Increase `max_steps`" in sol.message


def test_auto_horizon_and_saveat():
    problem = _small(alpha=2.0)
    sol = nf.solve_flows(problem, saveat=7, flows=("tangent",))
    envelope_end = math.exp(-sol.t1 * 4.0 * sol.sigma_min0**2 / 2)
    np.testing.assert_allclose(envelope_end, 1e-6, rtol=1e-10)
    # The saves: 0, then evenly in log t from 1% of the fastest time scale 1/(α²λ_max).
    t_fast = 1.0 / (2.0**2 * sol.sigma_max0**2)
    np.testing.assert_allclose(sol.ts, [0.0, *np.geomspace(t_fast / 100, sol.t1, 6)])
    linear = nf.solve_flows(problem, saveat=7, spacing="linear", flows=("tangent",))
    np.testing.assert_allclose(linear.ts, np.linspace(0, sol.t1, 7))
    # A horizon shorter than the fastest time scale: from t1/(n − 1).
    short = nf.solve_flows(problem, 1e-3 * t_fast, saveat=5, flows=("tangent",))
    np.testing.assert_allclose(short.ts, [0.0, *np.geomspace(short.t1 / 4, short.t1, 4)])
    with pytest.raises(ValueError, match=r"spacing must be one of \['linear', 'log'\]"):
        nf.solve_flows(problem, saveat=7, spacing="geometric")
    custom = nf.solve_flows(problem, saveat=[1.0, 2.0], flows=("tangent",))
    np.testing.assert_array_equal(custom.ts, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="saveat must be an int or an increasing array"):
        nf.solve_flows(problem, saveat=[2.0, 1.0])
    with pytest.raises(ValueError, match=r"flows must be a non-empty subset"):
        nf.solve_flows(problem, flows=("network",))
    narrow = nf.Problem(nf.Shallow(1), tiny_data(n=6, d=2))
    with pytest.raises(ValueError, match="t1='auto' needs σ_min"):
        nf.solve_flows(narrow)


def test_vector_field_evaluations_are_counted_exactly():
    from ntkflow._flows import RK_FIRST_STEP
    from ntkflow._integrate import step_floor

    problem = _small(width=8)
    sol = nf.solve_flows(
        problem,
        saveat=5,
        flows=("gradient",),
        error_estimate=False,
        diagnostics=False,
        solver="tsit5",
    )
    count = []
    grad = jax.grad(problem.loss)

    def vf(t, d, args):
        jax.debug.callback(lambda: count.append(1))
        return -grad(problem.w0 + d)

    stats = sol.stats["gradient"]
    # (as solve_flows does: its first step, 1% of the fastest time scale, and step floor)
    dt0 = min(sol.t1, RK_FIRST_STEP / (problem.alpha**2 * sol.sigma_max0**2))
    diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        diffrax.Tsit5(scan_kind="bounded"),
        0.0,
        sol.t1,
        dt0,
        jnp.zeros_like(problem.w0),
        stepsize_controller=diffrax.PIDController(
            rtol=stats["rtol"],
            atol=stats["atol"],
            dtmin=float(step_floor(sol.t1, dt0)),
            force_dtmin=False,
        ),
        max_steps=100_000,
    )
    # Exact up to the first step's evaluations (one or two).
    assert abs(stats["vf_evaluations"] - len(count)) <= 2
    assert stats["vf_evaluations"] >= 6 * stats["num_steps"]


def test_to_xarray_names_and_test_predictions():
    data = nf.datasets.sphere(8, 4, n_test=5, seed=2)
    problem = nf.Problem(nf.Shallow(32), data, alpha=2.0, centering="antisymmetric")
    sol = nf.solve_flows(problem, saveat=6, gd_step=0.01)
    ds = sol.to_xarray()
    for name in (
        "loss_w",
        "loss_u",
        "dist_w",
        "dist_u",
        "gap_f",
        "gap_w",
        "sigma_min_t",
        "sigma_max_t",
        "kernel_drift",
        "loss_gd",
        "pred_w_test",
        "pred_u_test",
    ):
        assert name in ds.data_vars, name
    assert ds["pred_w_test"].shape == (6, 5, 1) and list(ds["t"].values) == list(sol.ts)
    assert ds.attrs["status"] == "success"
    # At t = 0 both flows predict αf(w0) = 0 (antisymmetric), and the kernel has not moved.
    np.testing.assert_array_equal(ds["pred_w_test"].values[0], 0.0)
    assert sol.kernel_drift is not None and sol.kernel_drift[0] == 0.0


def test_flow_options_are_one_typed_object_that_keywords_may_replace():
    options = nf.FlowOptions(saveat=12, rtol=1e-7)
    merged = nf.FlowOptions.merged(options, {"gd_step": 0.1})
    assert (merged.saveat, merged.rtol, merged.gd_step) == (12, 1e-7, 0.1)
    assert merged.flows == ("gradient", "tangent")  # the default, as a tuple
    with pytest.raises(TypeError, match="unexpected keyword argument 'savat'"):
        nf.FlowOptions.merged(None, {"savat": 3})
    with pytest.raises(nf.InputError) as bad:
        nf.FlowOptions(rtol=2.0)
    assert (bad.value.key, bad.value.value) == ("rtol", 2.0)
    assert str(bad.value) == "rtol must be 'auto' or a number in (0, 1), got rtol=2.0"
    with pytest.raises(nf.InputError, match=r"flows must be a non-empty subset"):
        nf.FlowOptions(flows=())


def test_verification_status_is_a_flow_status_and_a_string_still_compares():
    v = nf.Verification([], None, 1.0, False, status=nf.FlowStatus.MAX_STEPS)
    assert v.status is nf.FlowStatus.MAX_STEPS and not v.complete
    assert v.to_dict()["status"] == "max_steps"
    with pytest.warns(DeprecationWarning, match="FlowStatus.MAX_STEPS"):
        assert v.status == "max_steps"
    with pytest.warns(DeprecationWarning):
        assert v.status != "success"
