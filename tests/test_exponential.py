"""The NTK exponential integrator (`ExponentialNTK`, `solver="exponential"`)."""

import math
from fractions import Fraction
from typing import Any

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from families import linear_problem
from ntkflow._exponential import ExponentialNTK, phi
from ntkflow._integrate import GradientField as _GradientField


def _exact_phi(j: int, z: float) -> float:
    """`φ_j(z) = Σ_m z^m/(m+j)!` in exact rational arithmetic (200 terms)."""
    zq = Fraction(z)
    return float(sum(zq**m / math.factorial(m + j) for m in range(200)))


def _fixed_steps(problem, t1, steps, ts=None):
    saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
    ys = diffrax.diffeqsolve(
        diffrax.ODETerm(_GradientField(problem)),
        ExponentialNTK(),
        0.0,
        t1,
        t1 / steps,
        jnp.zeros_like(problem.w0),
        args=problem,  # ExponentialNTK is given its problem explicitly
        saveat=saveat,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=steps + 4,
    ).ys
    assert ys is not None
    return ys


def _reference(problem, t1):
    """Dopri8 at rtol 1e-13: an independent, explicit integrator."""
    ys = diffrax.diffeqsolve(
        diffrax.ODETerm(_GradientField(problem)),
        diffrax.Dopri8(),
        0.0,
        t1,
        None,
        jnp.zeros_like(problem.w0),
        stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-15),
        max_steps=10**6,
    ).ys
    assert ys is not None
    return ys[-1]


@pytest.mark.parametrize("j", [0, 1, 2, 3])
def test_phi_functions_match_exact_series(j):
    zs = [0.0, -1e-9, -0.3, -0.999, -1.0, -1.001, -2.5, -40.0, -700.0]
    got = np.asarray(phi(j, jnp.asarray(zs)))
    want = np.array([_exact_phi(j, z) if z > -100 else math.nan for z in zs])
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=2e-14)
    if j > 0:  # φ_j(z) ≈ 1/|z| · (…) far out: finite, positive, no overflow
        assert np.all(np.isfinite(got)) and np.all(got > 0)


@pytest.mark.parametrize("t1", [0.05, 3.0, 1e4])
def test_exact_in_one_step_on_a_linear_model(t1):
    problem = linear_problem(alpha=2.5)
    tf = nf.TangentFlow(problem, nf.empirical_ntk(problem))
    # One step of length t1, with dense output inside it.
    ts = jnp.asarray([0.0, 0.1 * t1, 0.5 * t1, t1])
    ys = _fixed_steps(problem, t1, 1, ts=ts)
    for t, y in zip(ts, ys, strict=True):
        want = tf.displacement(tf.coefficients(t))
        scale = float(jnp.linalg.norm(tf.displacement(tf.limit_coefficients())))
        assert float(jnp.linalg.norm(y - want)) <= 1e-12 * scale


def test_linear_model_needs_few_adaptive_steps():
    problem = linear_problem(alpha=2.5)
    sol = nf.solve_flows(
        problem, solver="exponential", saveat=10, diagnostics=False, error_estimate=False
    )
    assert sol.status is nf.FlowStatus.SUCCESS
    assert sol.stats["gradient"]["num_steps"] <= 12  # the step grows 10× per step
    assert sol.gap_w is not None and sol.dist_u is not None
    assert np.max(sol.gap_w) <= 1e-11 * np.max(sol.dist_u)


@pytest.mark.parametrize(
    "alpha, width, t1", [(1.0, 16, 2.0), pytest.param(0.5, 32, 2.0, marks=pytest.mark.slow)]
)
def test_global_error_converges_at_order_three(alpha, width, t1):
    data = nf.datasets.sphere(6, 3, seed=1)
    problem = nf.Problem(nf.Shallow(width), data, alpha=alpha, centering="antisymmetric")
    ref = _reference(problem, t1)
    steps = np.array([4, 8, 16, 32, 64])
    errs = [
        float(jnp.linalg.norm(_fixed_steps(problem, t1, int(s))[-1] - ref) / jnp.linalg.norm(ref))
        for s in steps
    ]
    assert errs[-1] > 1e-11  # well above rounding: the fit sees the method's error
    slope = np.polyfit(np.log(t1 / steps), np.log(errs), 1)[0]
    assert abs(slope - 3.0) <= 0.3, (slope, errs)


def test_error_estimate_is_third_order_in_the_step():
    """The embedded estimate `(3h/2)φ_2(Z)(D_3 − 2D_2)` is the local error of a
    second-order solution: `O(h³)`."""
    data = nf.datasets.sphere(6, 3, seed=1)
    problem = nf.Problem(nf.Shallow(16), data, alpha=1.0, centering="antisymmetric")
    solver = ExponentialNTK()
    term = diffrax.ODETerm(_GradientField(problem))
    y0 = jnp.zeros_like(problem.w0)
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    est = []
    for h in hs:
        _, err, _, _, _ = solver.step(term, 0.0, float(h), y0, problem, None, False)
        est.append(float(jnp.linalg.norm(err)))
    slope = np.polyfit(np.log(hs), np.log(est), 1)[0]
    assert abs(slope - 3.0) <= 0.3, (slope, est)


@pytest.mark.parametrize("alpha", [pytest.param(1.0, marks=pytest.mark.slow), 100.0])
def test_agrees_with_reference_on_the_seed_network(alpha):
    """The seed's network (digits 0/1, Shallow 256 tanh, antisymmetric), lazy (α = 100)
    and not (α = 1, where it moves far and the nonlinearity matters): the solve meets
    the requested tolerance, with more steps where the flow is less linear."""
    data = nf.datasets.digits(32, classes=(0, 1))
    problem = nf.Problem(nf.Shallow(256), data, alpha=alpha, centering="antisymmetric")
    common: dict[str, Any] = dict(
        saveat=12, diagnostics=False, error_estimate=False, save_params=True
    )
    t1 = 3.0 / alpha**2
    ref = nf.solve_flows(problem, t1, solver="dopri8", rtol=1e-12, **common)
    steps = {}
    for rtol in (1e-6, 1e-9):
        sol = nf.solve_flows(problem, t1, solver="exponential", rtol=rtol, **common)
        assert sol.status is nf.FlowStatus.SUCCESS
        assert sol.params_w is not None and ref.params_w is not None
        err = np.max(np.linalg.norm(sol.params_w - ref.params_w, axis=1))
        assert err <= 10 * rtol * np.max(np.linalg.norm(ref.params_w, axis=1)), (rtol, err)
        steps[rtol] = sol.stats["gradient"]["num_steps"]
        assert sol.stats["gradient"]["kernel_evaluations"] == steps[rtol]
    assert steps[1e-9] > steps[1e-6]
    if alpha == 1.0:
        # Outside the lazy regime the integrator takes many more steps than Dopri8 needs
        # for a non-stiff flow… but never a loss of accuracy (checked above).
        assert ref.dist_w is not None and np.max(ref.dist_w) > 1.0


@pytest.mark.slow  # CI runs it (make test-slow)
def test_more_steps_outside_the_lazy_regime():
    data = nf.datasets.digits(32, classes=(0, 1))
    steps = {}
    for alpha in (1.0, 100.0):
        problem = nf.Problem(nf.Shallow(256), data, alpha=alpha, centering="antisymmetric")
        sol = nf.solve_flows(
            problem, solver="exponential", saveat=5, diagnostics=False, error_estimate=False
        )
        assert sol.status is nf.FlowStatus.SUCCESS
        steps[alpha] = sol.stats["gradient"]["num_steps"]
    assert steps[1.0] > 2 * steps[100.0], steps


def test_auto_chooses_by_stiffness_and_names_are_checked():
    data = nf.datasets.digits(32, classes=(0, 1))
    problem = nf.Problem(nf.Shallow(64), data, alpha=10.0, centering="antisymmetric")
    # Stiff: the exponential Adams integrator for the squared loss, whose local tangent
    # path is in closed form; the exponential Runge–Kutta one for another loss.
    assert isinstance(nf.choose_solver(problem, cond=1e3), nf.ExponentialAdams)
    logistic = nf.Problem(
        nf.Shallow(64), data, alpha=10.0, centering="antisymmetric", loss="logistic"
    )
    assert isinstance(nf.choose_solver(logistic, cond=1e3), ExponentialNTK)
    assert isinstance(nf.choose_solver(problem, cond=2.0), diffrax.Tsit5)
    sol = nf.solve_flows(problem, 0.01, saveat=3, diagnostics=False, error_estimate=False)
    assert sol.stats["gradient"]["solver"] == "ExponentialAdams"  # cond(K0) ≫ 10 here
    with pytest.raises(ValueError, match="unknown solver='rk4'"):
        nf.solve_flows(problem, solver="rk4")
    with pytest.raises(ValueError, match="gradient flow of an ntkflow Problem"):
        diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: -y), ExponentialNTK(), 0.0, 1.0, 0.1, jnp.ones(2)
        )


@pytest.mark.slow  # CI runs it (make test-slow)
def test_error_budget_bounds_the_true_error_deep_in_the_lazy_regime():
    """Deep in the lazy regime the steps grow fast from the fastest mode's time scale;
    the embedded re-solve's budget is nonzero and bounds the true error (against Dopri8
    at rtol 1e-11: at α = 3e4 rounding limits any solve to ρ ≈ 5e-12, so a tighter rtol
    only draws the resolution warning), which a single step over the horizon would not."""
    data = nf.datasets.digits(32, classes=(0, 1))
    problem = nf.Problem(nf.Shallow(32), data, alpha=3e4, centering="antisymmetric")
    sol = nf.solve_flows(problem, solver="exponential", saveat=8, save_params=True)
    assert sol.stats["gradient"]["num_steps"] <= 40
    assert sol.err_w is not None and np.all(sol.err_w[1:] > 0)
    ref, ref2 = (
        nf.solve_flows(
            problem,
            sol.t1,
            solver="dopri8",
            rtol=rtol,
            saveat=sol.ts,
            save_params=True,
            error_estimate=False,
            diagnostics=False,
        )
        for rtol in (1e-11, 1e-10)
    )
    assert sol.params_w is not None and ref.params_w is not None and ref2.params_w is not None
    true = np.linalg.norm(sol.params_w - ref.params_w, axis=1)
    # The reference's own uncertainty (from a second one 10× looser), allowed for: at the
    # first saves, in the fastest mode's time scale, it is larger than the solve's error.
    slack = 10 * np.linalg.norm(ref2.params_w - ref.params_w, axis=1)
    assert np.all(true <= sol.err_w + slack + 1e-15), (true, sol.err_w, slack)


def test_the_first_step_reuses_K0s_factors_and_later_steps_do_not():
    # `solve_flows` hands the integrator K0's eigendecomposition (`InitialFactors`): at
    # δ = 0 it is used instead of forming K0 again. Planted factors of 2·K0 change the
    # first step (so they are read) but not a step that starts elsewhere.
    from ntkflow._exponential import InitialFactors

    problem = nf.Problem(nf.Shallow(32), nf.datasets.sphere(10, 3, seed=1), alpha=4.0)
    k0 = nf.initial_kernel(problem)
    right = InitialFactors(
        jnp.asarray(k0.K), jnp.asarray(k0.eigenvalues), jnp.asarray(k0.eigenvectors)
    )
    wrong = InitialFactors(2 * right.K, 2 * right.lam, right.V)
    t1 = 2.0 / (problem.alpha**2 * float(k0.eigenvalues[-1]))

    def step(args, y0):
        solver = ExponentialNTK()
        term = diffrax.ODETerm(_GradientField(problem))
        y1, *_ = solver.step(term, 0.0, t1, y0, args, None, False)
        return np.asarray(y1)

    zero = jnp.zeros_like(problem.w0)
    fresh = step(problem, zero)
    scale = np.linalg.norm(fresh)
    assert np.linalg.norm(step((problem, right), zero) - fresh) <= 1e-12 * scale
    assert np.linalg.norm(step((problem, wrong), zero) - fresh) >= 1e-2 * scale
    # Away from w0 the factors are not used: a step from δ ≠ 0 forms its own kernel.
    moved = jnp.asarray(fresh)
    again = step(problem, moved)
    assert np.linalg.norm(step((problem, wrong), moved) - again) <= 1e-14 * scale
    with pytest.raises(ValueError, match="gradient flow of an ntkflow Problem"):
        step((problem, "not factors"), zero)


@pytest.mark.parametrize("alpha", [pytest.param(10.0, marks=pytest.mark.slow), 100.0])
def test_default_tolerances_meet_1e6_on_a_deep_mlp_and_the_budget_bounds_the_error(alpha):
    """Issue 13's accuracy requirement on a deep MLP (cond(K0) ≫ 100: the exponential
    integrator): at default settings the loss and the distance are within 1e-6 (relative)
    of the same integrator at rtol 1e-11, and the error budget bounds the true error."""
    data = nf.datasets.sphere(24, 4, seed=0)
    problem = nf.Problem(nf.MLP((32, 32), "tanh"), data, alpha=alpha, centering="antisymmetric")
    sol = nf.solve_flows(problem, saveat=10, save_params=True, diagnostics=False)
    assert sol.stats["gradient"]["solver"] == "ExponentialAdams"
    ref = nf.solve_flows(
        problem,
        sol.t1,
        saveat=10,
        save_params=True,
        diagnostics=False,
        error_estimate=False,
        solver="exponential",
        rtol=1e-11,
    )
    assert sol.status is ref.status is nf.FlowStatus.SUCCESS
    assert sol.loss_w is not None and sol.dist_w is not None
    assert sol.params_w is not None and sol.err_w is not None
    assert ref.loss_w is not None and ref.dist_w is not None and ref.params_w is not None
    assert np.max(np.abs(sol.loss_w - ref.loss_w)) <= 1e-6 * ref.loss_w[0]
    assert np.max(np.abs(sol.dist_w - ref.dist_w)) <= 1e-6 * np.max(ref.dist_w)
    true = np.linalg.norm(sol.params_w - ref.params_w, axis=1)
    assert np.all(true <= sol.err_w + 1e-15), (true, sol.err_w)


@pytest.mark.slow  # CI runs it (make test-slow)
@pytest.mark.parametrize("solver", ["adams", "exponential"])
def test_a_horizon_of_1e10_fastest_time_scales_is_integrated(solver):
    # cond(K0) = 7.8e10: the default horizon is ~10¹⁰ of the fastest mode's time scale, so
    # the first step (1e-3 of that scale) is below 1e-13·t1. The step floor must stay
    # below the first step: it used to stop both solvers at t = 0 as NONFINITE.
    data = nf.datasets.sphere(96, 4, seed=0)
    problem = nf.Problem(nf.MLP((32,), "tanh"), data, alpha=10.0, centering="antisymmetric")
    sol = nf.solve_flows(
        problem, solver=solver, rtol=1e-6, saveat=4, diagnostics=False, error_estimate=False
    )
    assert sol.status is nf.FlowStatus.SUCCESS, sol.message
    assert sol.loss_w is not None and sol.loss_w[-1] < 1e-3 * sol.loss_w[0]
