import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ntkflow as nf
from families import make, tiny_data

SMOOTH = [name for name, a in nf.models.ACTIVATIONS.items() if a.smooth]


def _secant(problem, w, v):
    """`‖J_w − J_v‖_op / ‖w − v‖` from dense Jacobians: the quantity β must bound."""
    dJ = np.asarray(nf.jacobian(problem, w)) - np.asarray(nf.jacobian(problem, v))
    return np.linalg.norm(dJ, 2) / float(jnp.linalg.norm(w - v))


def _data(n, d, scale, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale * rng.uniform(0.2, 1.0, size=(n, 1))
    return nf.datasets.from_arrays(X, rng.standard_normal(n))


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 12),
    activation=st.sampled_from(SMOOTH),
    n=st.integers(1, 6),
    d=st.integers(1, 4),
    scale=st.floats(0.1, 3.0),
    spread=st.floats(0.01, 3.0),
    centering=st.sampled_from(["none", "antisymmetric"]),
    seed=st.integers(0, 2**16),
)
def test_certified_beta_bounds_secants_hidden(
    width, activation, n, d, scale, spread, centering, seed
):
    problem = nf.Problem(
        nf.Shallow(width, activation), _data(n, d, scale, seed), centering=centering, key=seed
    )
    beta = nf.certified_beta(problem)
    assert beta is not None and beta.kind == "certified" and math.isinf(beta.radius)
    keys = jax.random.split(jax.random.key(seed), 8)
    for i in range(4):
        w = problem.w0 + spread * jax.random.normal(keys[2 * i], problem.w0.shape)
        v = w + spread * 10.0 ** (-i) * jax.random.normal(keys[2 * i + 1], problem.w0.shape)
        assert _secant(problem, w, v) <= beta.value * (1 + 1e-10)


@settings(max_examples=20, deadline=None)
@given(
    width=st.integers(1, 12),
    activation=st.sampled_from(SMOOTH),
    n=st.integers(1, 6),
    d=st.integers(1, 4),
    scale=st.floats(0.1, 3.0),
    centering=st.sampled_from(["none", "antisymmetric"]),
    seed=st.integers(0, 2**16),
)
def test_certified_beta_bounds_secants_on_ball_train_all(
    width, activation, n, d, scale, centering, seed
):
    problem = nf.Problem(
        nf.Shallow(width, activation, train="all"),
        _data(n, d, scale, seed),
        centering=centering,
        key=seed,
    )
    sigma_min = 0.7  # any positive value fixes a radius; the bound must hold on that ball
    beta = nf.certified_beta(problem, sigma_min)
    assert beta is not None and beta.kind == "certified"
    np.testing.assert_allclose(beta.radius, sigma_min / (2 * beta.value), rtol=1e-12)
    keys = jax.random.split(jax.random.key(seed), 8)
    for i in range(4):
        # Two points inside the ball of radius r around w0, one of them on its edge.
        u1 = jax.random.normal(keys[2 * i], problem.w0.shape)
        u2 = jax.random.normal(keys[2 * i + 1], problem.w0.shape)
        w = problem.w0 + beta.radius * u1 / jnp.linalg.norm(u1)
        v = problem.w0 + beta.radius * 0.5 ** (i + 1) * u2 / jnp.linalg.norm(u2)
        assert _secant(problem, w, v) <= beta.value * (1 + 1e-10)


def test_estimates_are_labelled_and_below_certified():
    data = nf.datasets.digits(40)
    for train in ("hidden", "all"):
        problem = nf.Problem(nf.Shallow(64, train=train), data, centering="antisymmetric")
        cert = nf.certify(problem)
        certified = [b for b in cert.beta_estimates if b.kind == "certified"]
        estimates = [b for b in cert.beta_estimates if b.kind == "estimate"]
        assert len(certified) == 1 and cert.beta_kind == "certified"
        assert {b.method for b in estimates} == {"curvature", "ball sampling"}
        for b in estimates:
            assert 0 < b.value <= certified[0].value
            assert "lower bound" in b.note


def test_curvature_is_exact_for_one_output():
    # With n = 1, β(w0) = sup_{|v|=1} ‖v H_1‖_op = ‖H_1‖_op, which eigvalsh gives exactly.
    problem = nf.Problem(nf.MLP((6, 5), activation="tanh"), tiny_data(n=1), key=3)
    H = jax.hessian(lambda w: problem.f(w)[0])(problem.w0)
    exact = float(np.max(np.abs(np.linalg.eigvalsh(np.asarray(H)))))
    est = nf.curvature_beta(problem, iters=300, restarts=3)
    assert est.kind == "estimate"
    assert est.value <= exact * (1 + 1e-10)
    np.testing.assert_allclose(est.value, exact, rtol=1e-6)


def test_sampled_beta_is_a_lower_bound_on_secant_sup():
    problem = make("shallow-hidden")
    cert_beta = nf.certified_beta(problem)
    assert cert_beta is not None
    cert_beta = cert_beta.value
    est = nf.sampled_beta(problem, 0.5, samples=4)
    assert 0 < est.value <= cert_beta
    with pytest.raises(ValueError, match="radius must be a finite number > 0, got radius=0"):
        nf.sampled_beta(problem, 0.0)


def test_relu_has_no_finite_beta():
    problem = nf.Problem(nf.Shallow(8, "relu"), tiny_data())
    beta = nf.certified_beta(problem)
    assert beta is not None and beta.kind == "infinite" and math.isinf(beta.value)


def _adversarial_secant(problem, radius, key, steps=25):
    """The largest secant `‖J_w − J_v‖_op/‖w − v‖` found by projected gradient ascent over
    pairs in the ball of radius `radius` around `w0` (started from random pairs, one on
    the sphere), with every iterate's value kept: each is a secant, a lower bound on β."""
    jac = jax.jacrev(problem.f)

    def ratio(a, b):
        dJ = jac(problem.w0 + a) - jac(problem.w0 + b)
        return jnp.linalg.norm(dJ, 2) / jnp.linalg.norm(a - b)

    step = jax.jit(jax.value_and_grad(ratio, argnums=(0, 1)))

    def project(x):
        return x * jnp.minimum(1.0, radius / jnp.linalg.norm(x))

    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, problem.w0.shape)
    a = radius * a / jnp.linalg.norm(a)
    b = project(0.3 * radius * jax.random.normal(k2, problem.w0.shape) / problem.w0.size**0.5)
    best = 0.0
    for i in range(steps):
        val, (ga, gb) = step(a, b)
        best = max(best, float(val))
        size = 0.3 * radius * 0.9**i
        a = project(a + size * ga / (jnp.linalg.norm(ga) + 1e-300))
        b = project(b + size * gb / (jnp.linalg.norm(gb) + 1e-300))
    return best


# The wide networks and three more in CI's slow suite (make test-slow); the default keeps
# every activation, centring, bias and output count.
_WIDE = pytest.mark.slow
MLP_CASES = [
    # (hidden widths, activation, bias, out_dim, centring, σ_min: any positive value fixes
    # a radius, small ones a ball near w0, large ones a ball where the weights move)
    ((16,), "tanh", False, 1, "none", 0.05),
    ((16,), "sin", True, 1, "antisymmetric", 2.0),
    pytest.param(((64, 64), "softplus", False, 1, "subtract", 2.0), marks=_WIDE),
    pytest.param(((32, 32), "gelu", True, 2, "antisymmetric", 0.05), marks=_WIDE),
    ((16, 16, 16), "erf", False, 1, "none", 2.0),
    pytest.param(((16, 16, 16), "tanh", True, 1, "antisymmetric", 0.05), marks=_WIDE),
    pytest.param(((256,), "erf", True, 1, "none", 2.0), marks=_WIDE),
    pytest.param(((256, 256), "tanh", False, 1, "antisymmetric", 0.05), marks=_WIDE),
    ((64, 32, 16), "softplus", True, 3, "subtract", 0.05),
    pytest.param(((128, 128, 128), "sin", False, 1, "antisymmetric", 2.0), marks=_WIDE),
    ((16,), "gelu", False, 1, "subtract", 20.0),
]


@pytest.mark.parametrize("case", MLP_CASES, ids=lambda c: "-".join(map(str, c)))
def test_certified_mlp_beta_bounds_random_and_adversarial_secants(case):
    widths, activation, bias, k, centering, sigma_min = case
    data = _data(5, 3, 1.5, seed=len(widths))
    if k > 1:
        rng = np.random.default_rng(0)
        data = nf.datasets.from_arrays(np.asarray(data.X), rng.standard_normal((5, k)))
    model = nf.MLP(widths, activation, out_dim=k, bias=bias)
    problem = nf.Problem(model, data, centering=centering, key=7)
    beta = nf.certified_beta(problem, sigma_min)
    assert beta is not None and beta.kind == "certified" and beta.method == "mlp ball bound"
    # The consistent radius: the bound holds on the ball of radius B = σ_min/(2β).
    np.testing.assert_allclose(beta.radius, sigma_min / (2 * beta.value), rtol=1e-10)
    r = beta.radius
    keys = jax.random.split(jax.random.key(len(widths) + k), 6)
    secants = []
    for i in range(3):  # random pairs, one point on the sphere
        u1 = jax.random.normal(keys[2 * i], problem.w0.shape)
        u2 = jax.random.normal(keys[2 * i + 1], problem.w0.shape)
        w = problem.w0 + r * u1 / jnp.linalg.norm(u1)
        v = problem.w0 + r * 0.5 ** (i + 1) * u2 / jnp.linalg.norm(u2)
        secants.append(_secant(problem, w, v))
    secants.append(_adversarial_secant(problem, r, keys[0]))
    assert max(secants) <= beta.value
    # The estimates are lower bounds on the truth, so never above the certified value.
    curvature = nf.curvature_beta(problem, iters=30)
    assert curvature.value <= beta.value
