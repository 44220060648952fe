"""`diagnostics="lanczos"`: the warm-started iterative eigensolvers give the dense
diagnostics' values, and say NaN rather than report an unconverged one."""

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from ntkflow import _diagnostics_iterative as it
from ntkflow._diagnostics import kernel_diagnostics


def _problem(alpha):
    data = nf.datasets.sphere(24, 5, seed=3)
    return nf.Problem(nf.MLP((48, 48), "tanh"), data, alpha=alpha, centering="antisymmetric")


@pytest.mark.parametrize("alpha", [3.0, pytest.param(100.0, marks=pytest.mark.slow)])
def test_lanczos_diagnostics_match_dense(alpha):
    problem = _problem(alpha)
    k0 = nf.initial_kernel(problem)
    sol = nf.solve_flows(
        problem,
        kernel=k0,
        saveat=5,
        flows=("gradient",),
        error_estimate=False,
        diagnostics="lanczos",
        save_params=True,
    )
    assert sol.params_w is not None
    dense = kernel_diagnostics(problem, np.asarray(sol.params_w), k0, method="dense")
    np.testing.assert_allclose(sol.sigma_min_t, dense.sigma_min, rtol=1e-6)
    np.testing.assert_allclose(sol.sigma_max_t, dense.sigma_max, rtol=1e-6)
    # The drift to 1e-6 of ‖K0‖ (Lanczos tolerance), 0 at w0.
    assert sol.kernel_drift is not None
    np.testing.assert_allclose(sol.kernel_drift, dense.drift, rtol=1e-5, atol=1e-9)
    assert sol.kernel_drift[0] == 0.0 and np.all(sol.kernel_drift[1:] > 0)


def test_unconverged_extreme_is_nan(monkeypatch):
    problem = _problem(3.0)
    k0 = nf.initial_kernel(problem)
    # A far point (the kernel moved a lot) and one iteration: not converged, so NaN.
    monkeypatch.setattr(it, "MAX_ITERATIONS", 1)
    delta = 0.5 * np.random.default_rng(0).standard_normal(problem.p)
    K0 = np.asarray(k0.K, dtype=np.float64)
    warm = it.Warm(k0)
    warm.bottom = np.random.default_rng(1).standard_normal((problem.n, 1))
    smin, smax, _ = it.iterative_diagnostics_at(problem, delta, k0, K0, warm, it.preconditioner(k0))
    assert np.isnan(smin)
    # ... and with room to converge, the dense value.
    monkeypatch.setattr(it, "MAX_ITERATIONS", 200)
    smin, smax, _ = it.iterative_diagnostics_at(
        problem, delta, k0, K0, it.Warm(k0), it.preconditioner(k0)
    )
    K = np.asarray(nf.empirical_ntk(problem, problem.w0 + jnp.asarray(delta)))
    lam = np.linalg.eigvalsh(K)
    np.testing.assert_allclose([smin, smax], np.sqrt([lam[0], lam[-1]]), rtol=1e-6)


def test_diagnostics_argument_is_checked():
    with pytest.raises(ValueError, match="diagnostics must be"):
        nf.solve_flows(_problem(3.0), saveat=3, diagnostics="eigh")


def test_ball_checks_on_ritz_values_never_hold():
    # The suite's certified problem (tests/test_verify.py): there, every check holds.
    data = nf.datasets.sphere(10, 5, seed=1)
    base = nf.Problem(nf.Shallow(256), data, centering="antisymmetric")
    alpha = 1.01 * nf.certify(base, estimate_beta=False).alpha_star
    problem = nf.Problem(nf.Shallow(256), data, alpha=alpha, centering="antisymmetric")
    cert = nf.certify(problem, estimate_beta=False)
    verdicts = {}
    for method in ("dense", "lanczos"):
        sol = nf.solve_flows(problem, kernel=cert.kernel, saveat=8, diagnostics=method)
        assert sol.diagnostics == method
        checks = {c.name: c for c in nf.verify(sol, cert).checks}
        verdicts[method] = checks
    for name in ("ball_sigma_min", "ball_sigma_max"):
        assert verdicts["dense"][name].holds is True, name
        ritz = verdicts["lanczos"][name]
        assert ritz.holds is None and "Ritz values" in (ritz.reason or ""), name
    # The other checks do not depend on the diagnostics.
    for name, check in verdicts["dense"].items():
        if not name.startswith("ball_sigma"):
            assert verdicts["lanczos"][name].holds == check.holds, name


@pytest.mark.parametrize("n", [1, *(pytest.param(n, marks=pytest.mark.slow) for n in (2, 3))])
def test_lanczos_diagnostics_on_a_few_points(n):
    """Too few points for ARPACK or a LOBPCG block: the same values as dense."""
    problem = nf.Problem(
        nf.MLP((8, 8), "tanh"),
        nf.datasets.sphere(n, 3, seed=0),
        alpha=2.0,
        centering="antisymmetric",
    )
    common: dict[str, Any] = dict(saveat=4, error_estimate=False, flows=("gradient",))
    a = nf.solve_flows(problem, diagnostics="lanczos", **common)
    b = nf.solve_flows(problem, diagnostics="dense", **common)
    for name in ("sigma_min_t", "sigma_max_t", "kernel_drift"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-8, atol=1e-14)
