"""Losses other than the square (docs/theory.md, "Losses other than the square"): the
losses against their formulas, both flows against an independent scipy DOP853 solve, the
tangent flow of a linear model against its gradient flow, the certificate and checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import ntkflow as nf
from families import tiny_data


def _classes(n=8, d=3, k=1, seed=0):
    """Inputs on the sphere and class targets: `±1` for `k = 1`, one-hot `{0, 1}` rows
    for `k ≥ 2`."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if k == 1:
        y = np.where(X[:, 0] + 0.2 * X[:, 1] > 0, 1.0, -1.0)
        y[:2] = (1.0, -1.0)
    else:
        y = np.eye(k)[np.arange(n) % k]
    return nf.datasets.from_arrays(X, y)


def _logcosh(z, y):
    """A strongly convex user loss: `Σ log(2cosh(z − y)) + ½‖z − y‖²`, whose curvature
    `sech² + 1` lies in `[1, 2]`: `μ = 1`, `L = 2`."""
    r = z - y
    return jnp.sum(jnp.logaddexp(r, -r) - math.log(2.0)) + 0.5 * jnp.vdot(r, r)


def test_losses_match_their_formulas_and_constants():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.standard_normal((5, 3)) * 3)
    s = jnp.asarray(np.sign(rng.standard_normal((5, 3))))
    log = nf.Logistic()
    np.testing.assert_allclose(log.value(z, s), np.sum(np.log1p(np.exp(-s * z))), rtol=1e-13)
    q = jnp.asarray(np.eye(3)[[0, 2, 1, 1, 0]])
    ce = nf.CrossEntropy()
    p = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
    np.testing.assert_allclose(ce.value(z, q), -np.sum(q * np.log(p)), rtol=1e-13)
    # ±1-coded one-hot targets name the same class.
    np.testing.assert_allclose(ce.value(z, 2 * q - 1), ce.value(z, q), rtol=1e-15)
    for loss, y in ((log, s), (ce, q), (nf.Squared(), q)):
        # The gradient (closed form) against autodiff of the value.
        np.testing.assert_allclose(
            loss.gradient(z, y), jax.grad(loss.value)(z, y), rtol=1e-12, atol=1e-14
        )
        # L bounds the Hessian's spectrum, and is nearly attained (z near 0).
        for scale in (0.0, 0.3, 3.0):
            zz = jnp.asarray(rng.standard_normal((5, 3)) * scale)
            H = jax.hessian(lambda v, y=y, f=loss.value: f(v.reshape(5, 3), y))(zz.reshape(-1))
            top = float(np.linalg.eigvalsh(np.asarray(H))[-1])
            assert top <= loss.L * (1 + 1e-12)
            if scale == 0.0 and loss is not ce:  # (CE's ½ is approached, not attained)
                assert top >= 0.99 * loss.L
    assert log.mu == 0 and ce.mu == 0 and not log.strongly_convex
    assert nf.Squared().strongly_convex and nf.UserLoss(_logcosh, mu=1, L=2).strongly_convex


def test_bad_losses_and_targets_are_refused_in_one_line():
    data = tiny_data()
    with pytest.raises(ValueError, match=r"loss='logistic' needs targets in \{−1, \+1\}"):
        nf.Problem(nf.Shallow(8), data, loss="logistic")
    with pytest.raises(ValueError, match="needs k ≥ 2 outputs per point"):
        nf.Problem(nf.Shallow(8), _classes(), loss="cross_entropy")
    with pytest.raises(ValueError, match="needs one-hot targets"):
        nf.Problem(nf.MLP((8,), out_dim=2), tiny_data(k=2), loss="cross_entropy")
    with pytest.raises(ValueError, match="loss must be one of 'squared'"):
        nf.Problem(nf.Shallow(8), data, loss="hinge")
    with pytest.raises(ValueError, match="mu ≤ L"):
        nf.UserLoss(_logcosh, mu=3.0, L=2.0)
    with pytest.raises(ValueError, match="finite number ≥ 0"):
        nf.UserLoss(_logcosh, mu=-1.0)
    problem = nf.Problem(nf.Shallow(8), _classes(), loss="logistic")
    with pytest.raises(ValueError, match="tangent='closed_form' needs the squared loss"):
        nf.solve_flows(problem, 1.0, tangent="closed_form")


def _reference(problem, t1, ts, loss_fn, *, linear=False):
    """The flow by scipy's DOP853 on `w`, with `∇_w` of an independently written loss."""
    w0 = np.asarray(problem.w0)
    a = problem.alpha
    f0, jvp = jax.linearize(problem.f, problem.w0)

    def objective(w):
        f = f0 + jvp(w - problem.w0) if linear else problem.f(w)
        return loss_fn(a * f)

    grad = jax.jit(jax.grad(objective))
    sol = solve_ivp(
        lambda t, w: -np.asarray(grad(jnp.asarray(w))),
        (0.0, t1),
        w0,
        method="DOP853",
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    )
    assert sol.success
    return sol.y.T - w0[None, :]


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("loss", "solver"),
    [
        pytest.param("logistic", "exponential", marks=SLOW),
        ("cross_entropy", "tsit5"),
        pytest.param("logistic", "tsit5", marks=SLOW),
        pytest.param("cross_entropy", "exponential", marks=SLOW),
    ],
)
def test_flows_match_scipy_dop853(loss, solver):
    if loss == "logistic":
        data, model = _classes(), nf.Shallow(24, "tanh", train="all")
        y = np.asarray(data.y)
        fn = lambda z: jnp.sum(jnp.log1p(jnp.exp(-y * z)))
    else:
        data, model = _classes(k=3), nf.MLP((16,), "tanh", out_dim=3)
        y = np.asarray(data.y)

        def fn(z):
            Z = z.reshape(y.shape)
            return jnp.sum(jax.scipy.special.logsumexp(Z, axis=1) - jnp.sum(y * Z, axis=1))

    problem = nf.Problem(model, data, alpha=2.0, centering="antisymmetric", loss=loss)
    t1 = 3.0
    sol = nf.solve_flows(
        problem, t1, saveat=6, rtol=1e-10, save_params=True, diagnostics=False, solver=solver
    )
    assert sol.succeeded and sol.loss == loss
    expected = "ExponentialNTK" if solver == "exponential" else "Tsit5"
    assert sol.stats["gradient"]["solver"] == expected
    assert sol.stats["tangent"]["method"] == "ode"
    ts = np.asarray(sol.ts)
    for flow, params, linear in (("w", sol.params_w, False), ("u", sol.params_u, True)):
        ref = _reference(problem, t1, ts, fn, linear=linear)
        scale = np.max(np.linalg.norm(ref, axis=1))
        assert scale > 1e-2  # the flow moved
        err = np.max(np.linalg.norm(params - ref, axis=1)) / scale
        print(f"{loss} {solver} {flow}: max ‖Δ‖/max‖δ‖ against DOP853 = {err:.2e}")
        assert err < 1e-6, (flow, err)
    # The loss series are the loss, and it decreases along both flows.
    assert sol.loss_w is not None and sol.loss_u is not None
    for losses in (sol.loss_w, sol.loss_u):
        assert np.all(np.diff(losses) < 0)
    np.testing.assert_allclose(sol.R0, float(fn(problem.alpha * problem.f(problem.w0))))
    np.testing.assert_allclose(sol.loss_w[0], sol.R0, rtol=1e-12)


def _linear_problem(loss, data):
    W0 = jax.random.normal(jax.random.key(3), (data.d, data.k))

    def apply(params, X):
        out = X @ params["W"]
        return out[:, 0] if data.k == 1 else out

    return nf.Problem(nf.from_apply(apply, {"W": W0}), data, alpha=1.5, loss=loss)


@pytest.mark.parametrize(
    ("loss", "solver"),
    [
        # (the squared loss's: also test_flows.py::test_linear_model_flows_coincide)
        pytest.param("squared", "tsit5", marks=SLOW),
        ("logistic", "tsit5"),
        pytest.param("cross_entropy", "exponential", marks=SLOW),
        pytest.param("user", "exponential", marks=SLOW),
        pytest.param("squared", "exponential", marks=SLOW),
        pytest.param("logistic", "exponential", marks=SLOW),
        pytest.param("cross_entropy", "tsit5", marks=SLOW),
        pytest.param("user", "tsit5", marks=SLOW),
    ],
)
def test_tangent_flow_of_a_linear_model_is_its_gradient_flow(loss, solver):
    data = _classes(k=3) if loss == "cross_entropy" else _classes()
    spec = nf.UserLoss(_logcosh, mu=1.0, L=2.0, name="logcosh") if loss == "user" else loss
    problem = _linear_problem(spec, data)
    sol = nf.solve_flows(
        problem,
        2.0,
        saveat=5,
        tangent="ode",
        rtol=1e-10,
        save_params=True,
        diagnostics=False,
        solver=solver,
    )
    assert sol.succeeded
    assert sol.params_u is not None and sol.params_w is not None
    assert sol.loss_w is not None and sol.loss_u is not None
    scale = np.max(np.linalg.norm(sol.params_u, axis=1))
    assert scale > 1e-2
    gap = np.max(np.linalg.norm(sol.params_w - sol.params_u, axis=1)) / scale
    print(f"linear model, {loss} {solver}: max ‖w − u‖/max‖u − w0‖ = {gap:.2e}")
    assert gap < 1e-8, gap
    np.testing.assert_allclose(sol.loss_w, sol.loss_u, rtol=1e-8)


def test_theorem_constants_for_a_strongly_convex_loss():
    # docs/theory.md, "Losses other than the square": α* and B' scale like sqrt(L)/μ
    # (with ΔR0 in place of R0), B does not, and μ = L = 1 is the squared loss.
    base = nf.theorem_constants(2.0, 0.5, 1.0, 2.0, 0.5)
    same = nf.theorem_constants(2.0, 0.5, 1.0, 2.0, 0.5, mu=1.0, L=1.0)
    assert same == base
    c = nf.theorem_constants(2.0, 0.5, 1.0, 2.0, 0.5, mu=0.5, L=8.0)
    for key in ("alpha_star", "B_prime", "tangent_distance_bound"):
        np.testing.assert_allclose(c[key], base[key] * math.sqrt(8.0) / 0.5, rtol=1e-14)
    assert c["B"] == base["B"]
    flat = nf.theorem_constants(2.0, 0.5, 1.0, 2.0, 0.5, mu=0.0, L=0.25)
    assert math.isinf(flat["alpha_star"]) and math.isinf(flat["B_prime"])


def test_logistic_certificate_says_why_and_keeps_loss_free_checks():
    problem = nf.Problem(
        nf.Shallow(64, "tanh", train="all"),
        _classes(),
        alpha=50.0,
        centering="antisymmetric",
        loss="logistic",
    )
    cert = nf.certify(problem)
    assert not cert.hypotheses_hold and cert.beta_kind == "certified"
    assert any("not strongly convex" in r for r in cert.reasons)
    assert math.isinf(cert.alpha_star) and math.isfinite(cert.B) and cert.mu == 0
    assert cert.to_dict(details=True)["loss"] == "logistic"
    np.testing.assert_allclose(cert.R0, problem.data.n * math.log(2.0), rtol=1e-12)
    sol = nf.solve_flows(problem, kernel=cert.kernel, saveat=8)
    v = nf.verify(sol, cert)
    assert {c.name for c in v.checks} == set(nf._verify.LOSS_FREE_CHECKS)
    assert not any(c.guaranteed for c in v.checks if c.name == "exit_time")


def test_strongly_convex_user_loss_certificate_and_checks():
    # A user loss with μ = 1, L = 2 on a certified shallow net, at 1.05·α*: the strongly
    # convex theorem applies and every check that applies holds.
    data = tiny_data(n=4, d=3)
    loss = nf.UserLoss(_logcosh, mu=1.0, L=2.0, name="logcosh")
    model = nf.Shallow(48, "tanh", train="all")
    probe = nf.certify(nf.Problem(model, data, centering="antisymmetric", loss=loss))
    assert probe.reasons and "α=" in probe.reasons[-1]
    problem = nf.Problem(
        model, data, alpha=1.05 * probe.alpha_star, centering="antisymmetric", loss=loss
    )
    cert = nf.certify(problem)
    assert cert.hypotheses_hold, cert.reasons
    assert any("taken on trust" in n for n in cert.notes)
    np.testing.assert_allclose(cert.delta_R0, cert.grad0**2 / 2, rtol=1e-12)
    sol = nf.solve_flows(problem, kernel=cert.kernel, saveat=10)
    v = nf.verify(sol, cert)
    names = {c.name for c in v.checks}
    assert {"grad_envelope_w", "grad_envelope_u", "distance_w", "exit_time"} <= names
    assert not any(n.startswith("loss_envelope") for n in names)
    assert v.all_hold, v.summary()


def test_a_users_constants_refuted_by_the_hessian_at_z0():
    # logcosh + square has curvature sech²(z − y) + 1 ∈ (1, 2]: at z0 = 0 (antisymmetric)
    # the targets' spread puts eigenvalues well inside, so μ = 1.99 and L = 1.01 are false.
    data = tiny_data(n=4, d=3)
    model = nf.Shallow(48, "tanh", train="all")
    for mu, L, word in ((1.99, 2.0, "smallest eigenvalue"), (1.0, 1.01, "largest eigenvalue")):
        loss = nf.UserLoss(_logcosh, mu=mu, L=L, name="logcosh")
        problem = nf.Problem(model, data, alpha=1e9, centering="antisymmetric", loss=loss)
        cert = nf.certify(problem)
        assert cert.loss_refuted and not cert.hypotheses_hold
        assert any(word in r and "'logcosh'" in r for r in cert.reasons), cert.reasons
    # The true constants are not refuted.
    loss = nf.UserLoss(_logcosh, mu=1.0, L=2.0, name="logcosh")
    cert = nf.certify(nf.Problem(model, data, alpha=1e9, centering="antisymmetric", loss=loss))
    assert not cert.loss_refuted and cert.hypotheses_hold


def test_certificate_rows_show_each_losss_formulas():
    from ntkflow._certificate_rows import certificate_rows

    data = _classes()
    model = nf.Shallow(32, "tanh", train="all")
    kinds = {}
    for loss in ("squared", "logistic", nf.UserLoss(_logcosh, mu=1.0, L=2.0, name="lc")):
        problem = nf.Problem(model, data, alpha=10.0, centering="antisymmetric", loss=loss)
        rows = certificate_rows(nf.certify(problem).to_dict(details=True), "β")
        kinds[problem.loss_name] = {k: (v, m) for k, v, m in rows}
    assert "loss" not in kinds["squared"] and "½‖αf(w0) − y‖²" in kinds["squared"]["R0"][1]
    assert kinds["logistic"]["α*"][0] == "—" and "not strongly convex" in kinds["logistic"]["B'"][1]
    assert "ΔR0" in kinds["lc"] and "L·ΔR0" in kinds["lc"]["α*"][1]
    assert "μ = 1" in kinds["lc"]["loss"][1] and "L = 2" in kinds["lc"]["loss"][1]


def test_auto_solver_is_exponential_when_the_horizon_spans_many_time_scales():
    import diffrax

    problem = nf.Problem(nf.Shallow(8), tiny_data())
    assert isinstance(nf.choose_solver(problem, 2.0), diffrax.Tsit5)
    # The squared loss's stiff flow gets the exponential Adams integrator, another loss's
    # the exponential Runge–Kutta one.
    assert isinstance(nf.choose_solver(problem, 2.0, span=1e4), nf.ExponentialAdams)
    assert isinstance(nf.choose_solver(problem, 2.0, span=100.0), diffrax.Tsit5)
    data = tiny_data()
    signs = nf.datasets.from_arrays(data.X, np.where(np.asarray(data.y) > 0, 1.0, -1.0))
    logistic = nf.Problem(nf.Shallow(8), signs, loss="logistic")
    assert isinstance(nf.choose_solver(logistic, 2.0, span=1e4), nf.ExponentialNTK)
    assert isinstance(nf.choose_solver(logistic, 2.0, span=100.0), diffrax.Tsit5)


def test_critical_alpha_why_names_only_the_checks_a_point_has():
    import xarray as xr

    from ntkflow.sweeps._grid import make_grid
    from ntkflow.sweeps._scaling_laws import critical_alphas
    from ntkflow.sweeps._sweep_dataset import NOT_CHECKED

    grid = make_grid({"problem.loss": ["logistic"], "problem.alpha": [1.0, 10.0]})
    dims = ("problem_loss", "problem_alpha")
    ds = xr.Dataset(
        {
            "all_hold": (dims, [[0.0, 0.0]]),
            "alpha_star": (dims, [[np.inf, np.inf]]),
            "status": (dims, [["success", "success"]]),
            "holds_exit_time": (dims, [[0.0, np.nan]]),
            "holds_loss_envelope_w": (dims, [[NOT_CHECKED, NOT_CHECKED]]),
        },
        coords={"problem_loss": ["logistic"], "problem_alpha": [1.0, 10.0]},
    )
    (row,) = critical_alphas(ds, grid)
    assert "exit_time failed" in row["why"] and "exit_time inconclusive" in row["why"]
    assert "loss_envelope_w" not in row["why"]


def test_a_user_loss_that_is_not_a_finite_scalar_or_whose_grad_is_wrong_is_refused():
    data, model = tiny_data(n=4, d=3), nf.Shallow(8)
    cases = [
        (nf.UserLoss(lambda z, y: (z - y) ** 2, mu=1, L=1), "must return a scalar R"),
        (nf.UserLoss(lambda z, y: jnp.sum(jnp.log(z)), mu=1, L=1), "is not finite at the"),
        (nf.UserLoss(_logcosh, grad=lambda z, y: 10 * (z - y), mu=1, L=2), "grad disagrees"),
    ]
    for loss, match in cases:
        with pytest.raises(ValueError, match=match):
            nf.Problem(model, data, centering="antisymmetric", loss=loss)
    # A right gradient is accepted, and numpy numbers are constants like any other.
    right = nf.UserLoss(
        _logcosh, grad=lambda z, y: jnp.tanh(z - y) + (z - y), mu=np.float32(1), L=np.int64(2)
    )
    nf.Problem(model, data, centering="antisymmetric", loss=right)
    with pytest.raises(ValueError, match=r"got row 1 = \[0\.5, 0\.5\]"):
        y = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
        nf.Problem(
            nf.MLP((8,), out_dim=2), nf.datasets.from_arrays(np.eye(3), y), loss="cross_entropy"
        )


def test_ball_lemma_checked_only_at_w0_is_inconclusive():
    # The path leaves the ball before the first save after t = 0: at w0 the lemma holds by
    # definition, so "held" would show nothing.
    problem = nf.Problem(
        nf.Shallow(64, "tanh", train="all"),
        _classes(),
        alpha=2.0,
        centering="antisymmetric",
        loss="logistic",
    )
    cert = nf.certify(problem)
    # (evenly spaced saves: the first after 0 is at t = 10, long after the exit)
    sol = nf.solve_flows(problem, 20.0, kernel=cert.kernel, saveat=3, spacing="linear")
    v = nf.verify(sol, cert)
    assert v.exit_time is not None and v.exit_time < sol.ts[1]
    for name in ("ball_sigma_min", "ball_sigma_max"):
        reason = v[name].reason
        assert v[name].holds is None and reason is not None and "by definition" in reason
