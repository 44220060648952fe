import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ntkflow as nf
from families import make, tiny_data


def test_theorem_constants_by_hand():
    # α* = 0.5·sqrt(1152·4·0.5)/1 = 0.5·48 = 24; B = 1/(2·0.5) = 1;
    # B' = 3·sqrt(8·4·0.5)/(2·1) = 3·4/2 = 6; tangent bound = sqrt(2·4·0.5)/2 = 1.
    c = nf.theorem_constants(alpha=2.0, R0=0.5, sigma_min=1.0, sigma_max=2.0, beta=0.5)
    assert c == {"alpha_star": 24.0, "B": 1.0, "B_prime": 6.0, "tangent_distance_bound": 1.0}


@given(
    R0=st.floats(1e-3, 1e3),
    sigma_min=st.floats(1e-2, 10.0),
    ratio=st.floats(1.0, 100.0),
    beta=st.floats(1e-3, 10.0),
    alpha=st.floats(1e-2, 1e6),
)
def test_alpha_star_is_b_prime_below_half_b(R0, sigma_min, ratio, beta, alpha):
    # docs/theory.md, "The theorem": the condition α ≥ α* is exactly B' ≤ B/2.
    c = nf.theorem_constants(alpha, R0, sigma_min, sigma_min * ratio, beta)
    lhs, rhs = alpha / c["alpha_star"], 0.5 * c["B"] / c["B_prime"]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_certificate_equals_hand_computation():
    problem = nf.Problem(
        nf.Shallow(30, "tanh"), tiny_data(n=5, d=3), alpha=3.0, centering="antisymmetric"
    )
    cert = nf.certify(problem)
    # By hand, from docs/theory.md, with an independent dense Jacobian.
    J = np.asarray(nf.jacobian(problem))
    s = np.linalg.svd(J, compute_uv=False)
    X, y = np.asarray(problem.data.X), np.asarray(problem.data.y)
    R0 = 0.5 * np.sum((3.0 * 0.0 - y) ** 2)  # antisymmetric: f(w0) = 0
    beta = (4 / (3 * math.sqrt(3))) / math.sqrt(60) * math.sqrt(np.sum(np.sum(X**2, 1) ** 2))
    smin, smax = s[-1], s[0]
    expected = {
        "n": 5,
        "p": 2 * 30 * 3,
        "alpha": 3.0,
        "R0": R0,
        "sigma_min": smin,
        "sigma_max": smax,
        "beta": beta,
        "alpha_star": beta * math.sqrt(1152 * smax**2 * R0) / smin**3,
        "B": smin / (2 * beta),
        "B_prime": 3 * math.sqrt(8 * smax**2 * R0) / (3.0 * smin**2),
        "tangent_distance_bound": math.sqrt(2 * smax**2 * R0) / (3.0 * smin**2),
    }
    for key, value in expected.items():
        np.testing.assert_allclose(getattr(cert, key), value, rtol=1e-10, err_msg=key)
    assert cert.beta_kind == "certified"
    assert not cert.hypotheses_hold
    assert any(r.startswith(f"α=3 < α*={cert.alpha_star:.4g}") for r in cert.reasons)


def test_hypotheses_hold_above_alpha_star():
    data = tiny_data(n=5, d=3)
    below = nf.certify(nf.Problem(nf.Shallow(30), data, alpha=1.0, centering="antisymmetric"))
    alpha = below.alpha_star * 1.0001
    above = nf.certify(nf.Problem(nf.Shallow(30), data, alpha=alpha, centering="antisymmetric"))
    # With centring, R0 = ½‖y‖² does not depend on α, and neither does α*.
    np.testing.assert_allclose(above.alpha_star, below.alpha_star, rtol=1e-12)
    assert above.hypotheses_hold and above.reasons == ()
    assert above.B_prime <= above.B / 2


def test_more_points_than_parameters():
    problem = nf.Problem(nf.Shallow(1, "tanh"), tiny_data(n=6, d=2))  # p = 2 < n = 6
    cert = nf.certify(problem)
    assert not cert.hypotheses_hold and cert.sigma_min == 0.0
    assert "σ_min = 0 because n > p (n=6, p=2)" in cert.reasons[0]
    assert math.isinf(cert.alpha_star) and math.isinf(cert.B_prime)


def test_relu_is_not_smooth():
    cert = nf.certify(nf.Problem(nf.Shallow(50, "relu"), tiny_data(), centering="subtract"))
    assert not cert.hypotheses_hold and cert.beta_kind == "infinite"
    assert any("relu is not smooth" in r for r in cert.reasons)
    assert math.isinf(cert.beta) and math.isinf(cert.alpha_star) and cert.B == 0.0


def test_estimated_beta_is_not_a_proof():
    problem = make("from_apply", "antisymmetric", alpha=1e12)
    cert = nf.certify(problem)
    assert cert.beta_kind == "estimate" and cert.alpha_condition
    assert not cert.hypotheses_hold
    assert any(r.startswith("β is an estimate: not a proof") for r in cert.reasons)


def test_uncentred_alpha_star_grows_with_alpha():
    data = tiny_data(n=4, d=3)
    certs = [nf.certify(nf.Problem(nf.Shallow(40), data, alpha=a)) for a in (10.0, 100.0)]
    assert certs[1].alpha_star > 5 * certs[0].alpha_star
    reason = next(r for r in certs[1].reasons if r.startswith("centering='none'"))
    assert "grows with α" in reason and "centering='antisymmetric' or 'subtract'" in reason


def test_to_dict_has_exactly_the_keys_and_is_strict_json():
    cert = nf.certify(nf.Problem(nf.Shallow(1, "relu"), tiny_data(n=6, d=2)))
    d = cert.to_dict()
    assert tuple(d) == nf.Certificate.KEYS
    assert d["beta"] == "inf" and d["alpha_star"] == "inf"
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["reasons"] == list(cert.reasons)
    full = cert.to_dict(details=True)
    assert set(full) > set(d) and json.dumps(full, allow_nan=False)


def test_precomputed_kernel_is_checked():
    problem = make("shallow-hidden")
    with pytest.raises(ValueError, match=r"kernel must have shape \(6, 6\)"):
        nf.certify(problem, kernel=np.eye(3))


def test_a_users_beta_is_used_everywhere_and_the_proof_rests_on_it():
    problem = make("from_apply", "antisymmetric", alpha=1.0)
    est = nf.certify(problem)
    assert est.beta_kind == "estimate" and not est.hypotheses_hold
    beta = 3.0 * est.beta  # above every estimate: not refuted
    low = nf.certify(problem, beta=beta)
    consts = nf.theorem_constants(1.0, low.R0, low.sigma_min, low.sigma_max, beta)
    assert low.beta == beta and low.beta_kind == "user"
    for k in ("alpha_star", "B", "B_prime", "tangent_distance_bound"):
        assert getattr(low, k) == consts[k]
    assert not low.hypotheses_hold and low.reasons[0].startswith("α=1 < α*=")
    assert any("the user's value, not proved by ntkflow" in n for n in low.notes)
    assert low.beta_estimates[0].kind == "user"
    assert [b.method for b in low.beta_estimates[1:]] == ["curvature", "ball sampling"]
    above = make("from_apply", "antisymmetric", alpha=1.05 * low.alpha_star)
    cert = nf.certify(above, beta=beta)
    assert cert.hypotheses_hold and cert.reasons == ()
    assert json.loads(json.dumps(cert.to_dict()))["beta_kind"] == "user"


def test_a_users_beta_below_an_estimate_is_refuted():
    problem = make("from_apply", "antisymmetric", alpha=1.0)
    curvature = nf.certify(problem).beta_estimates[0]
    assert curvature.method == "curvature" and curvature.radius == 0.0
    beta = 0.5 * curvature.value
    alpha = 1e3 * nf.certify(problem, beta=beta).alpha_star  # far above its α*
    cert = nf.certify(make("from_apply", "antisymmetric", alpha=alpha), beta=beta)
    assert cert.alpha_condition and not cert.hypotheses_hold and cert.beta_refuted
    assert any("is below the curvature estimate" in r and "at w0" in r for r in cert.reasons)
    assert not any("rests on" in n for n in cert.notes)  # a refuted β proves nothing


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, 10**400])
def test_a_bad_users_beta_is_one_clear_error(bad):
    problem = make("from_apply", "antisymmetric")
    with pytest.raises(ValueError, match=r"^beta must be a finite number > 0 .* got beta="):
        nf.certify(problem, beta=bad)


def test_a_users_beta_for_a_network_that_is_not_smooth_is_refused():
    problem = nf.Problem(nf.Shallow(50, "relu"), tiny_data(), centering="subtract")
    with pytest.raises(ValueError, match=r"beta=2 was given, but relu is not smooth"):
        nf.certify(problem, beta=2.0)


def test_above_alpha_star_with_a_users_beta_every_check_holds_and_is_guaranteed():
    beta = 3.0 * nf.certify(make("from_apply", "antisymmetric", alpha=1.0)).beta
    alpha = 1.05 * nf.certify(make("from_apply", "antisymmetric", alpha=1.0), beta=beta).alpha_star
    problem = make("from_apply", "antisymmetric", alpha=alpha)
    cert = nf.certify(problem, beta=beta)
    assert cert.hypotheses_hold
    sol = nf.solve_flows(problem, kernel=cert.kernel, saveat=20)
    checks = nf.verify(sol, cert).checks
    names = {c.name for c in checks}
    assert {"ball_sigma_min", "ball_sigma_max", "distance_w", "exit_time"} <= names
    # The ball lemma is decided with a user's β as with a certified one (a failure would
    # refute the user's value): held, and guaranteed by the theorem under that β.
    assert all(c.holds is True and c.guaranteed for c in checks)
    # ... but not once an estimate has refuted that β.
    refuted = dataclasses.replace(cert, beta_refuted=True)
    ball = [c for c in nf.verify(sol, refuted).checks if c.name.startswith("ball_")]
    assert len(ball) == 2 and not any(c.guaranteed for c in ball)


@pytest.mark.parametrize(
    "family",
    [
        pytest.param("mlp", marks=pytest.mark.slow),
        pytest.param("mlp-bias", marks=pytest.mark.slow),
        "mlp-vector",
    ],
)
def test_a_certified_mlp_at_1_05_alpha_star_meets_every_check(family):
    below = nf.certify(make(family, "antisymmetric", alpha=1.0))
    assert below.beta_kind == "certified" and not below.hypotheses_hold
    problem = make(family, "antisymmetric", alpha=1.05 * below.alpha_star)
    cert = nf.certify(problem)
    assert cert.beta_kind == "certified" and cert.hypotheses_hold and cert.reasons == ()
    assert cert.beta == below.beta  # with centring, nothing in β depends on α
    sol = nf.solve_flows(problem, kernel=cert.kernel, saveat=20)
    checks = nf.verify(sol, cert).checks
    assert len(checks) == 10 and all(c.holds is True and c.guaranteed for c in checks)


def test_a_users_beta_beside_a_certified_one_and_without_estimates_says_so():
    problem = make("mlp", "antisymmetric", alpha=1.0)
    certified = nf.certify(problem, estimate_beta=False)
    assert certified.beta_kind == "certified"
    cert = nf.certify(problem, beta=0.5 * certified.beta, estimate_beta=False)
    assert cert.beta_kind == "user" and not cert.beta_refuted
    assert any(f"ntkflow certifies β = {certified.beta:.6g}" in n for n in cert.notes)
    assert any("nothing tested the user's β" in n for n in cert.notes)
