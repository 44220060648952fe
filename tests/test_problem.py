import math

import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from families import make, tiny_data


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan, math.inf])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=f"alpha must be a finite number > 0, got alpha={alpha}"):
        nf.Problem(nf.Shallow(4), tiny_data(), alpha=alpha)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown centering='centre'; use one of: none, subtract"):
        nf.Problem(nf.Shallow(4), tiny_data(), centering="centre")
    with pytest.raises(ValueError, match="unknown activation='tanhh'; use one of: erf, gelu"):
        nf.Shallow(4, "tanhh")
    with pytest.raises(ValueError, match="width must be an integer ≥ 1, got width=0"):
        nf.Shallow(0)
    with pytest.raises(ValueError, match="train must be 'hidden' or 'all', got train='both'"):
        nf.Shallow(3, train="both")
    with pytest.raises(ValueError, match=r"widths must be a non-empty sequence"):
        nf.MLP(())
    # (Under the test suite's runtime type checking the annotation rejects it first.)
    with pytest.raises(TypeError, match="model"):
        nf.Problem("mlp", tiny_data())  # pyright: ignore[reportArgumentType]


def test_output_shape_mismatch():
    with pytest.raises(ValueError, match=r"the model outputs shape \(6, 2\) on 6 points"):
        nf.Problem(nf.MLP((4,), out_dim=2), tiny_data())


def test_residual_loss_and_flattening():
    problem = make("mlp-vector", alpha=2.5)
    w = problem.w0 + 0.1
    out = problem.model.apply(problem.unravel(w), problem.state, problem.data.X)
    assert out.shape == (6, 2) and problem.n == 12
    np.testing.assert_array_equal(problem.f(w), out.reshape(-1))
    r = 2.5 * out.reshape(-1) - problem.data.y.reshape(-1)
    np.testing.assert_allclose(problem.residual(w), r, rtol=1e-14)
    np.testing.assert_allclose(problem.loss(w), 0.5 * jnp.sum(r**2), rtol=1e-14)


def test_shallow_formula():
    problem = nf.Problem(nf.Shallow(5, "sin"), tiny_data())
    W = problem.unravel(problem.w0)["W"]
    a = problem.state["a"]
    X = problem.data.X
    expected = np.sin(np.asarray(X) @ np.asarray(W).T) @ np.asarray(a) / np.sqrt(5)
    np.testing.assert_allclose(problem.f(problem.w0), expected, rtol=1e-14)
    assert set(np.unique(np.asarray(a))) <= {-1.0, 1.0}
    both = nf.Problem(nf.Shallow(5, "sin", train="all"), tiny_data())
    assert both.p == 5 * 3 + 5


def test_subtract_predict_on_test_inputs():
    data = nf.datasets.digits(20, n_test=5)
    assert data.X_test is not None
    problem = nf.Problem(nf.Shallow(8), data, centering="subtract")
    np.testing.assert_array_equal(problem.predict(problem.w0, data.X_test), np.zeros(5))
    base = nf.Problem(nf.Shallow(8), data)
    w = base.w0 + 0.05
    np.testing.assert_allclose(
        problem.predict(w, data.X_test),
        base.predict(w, data.X_test) - base.predict(base.w0, data.X_test),
        rtol=1e-12,
    )


def test_float32_on_request():
    problem = nf.Problem(nf.Shallow(4), tiny_data(), dtype="float32")
    assert problem.w0.dtype == jnp.float32 and problem.f(problem.w0).dtype == jnp.float32


def test_activation_constants_bound_the_derivatives():
    import jax

    x = jnp.linspace(-12.0, 12.0, 200_001)
    for act in nf.models.ACTIVATIONS.values():
        d1 = jax.vmap(jax.grad(act.fn))(x)
        assert float(jnp.max(jnp.abs(d1))) <= act.sup_d1 * (1 + 1e-12), act.name
        np.testing.assert_allclose(float(jnp.max(jnp.abs(d1))), act.sup_d1, rtol=1e-5)
        if act.smooth:
            d2 = jax.vmap(jax.grad(jax.grad(act.fn)))(x)
            assert float(jnp.max(jnp.abs(d2))) <= act.sup_d2 * (1 + 1e-12), act.name
            np.testing.assert_allclose(float(jnp.max(jnp.abs(d2))), act.sup_d2, rtol=1e-5)


def test_from_apply_validation():
    with pytest.raises(TypeError, match="apply_fn"):
        nf.from_apply(3, {"w": jnp.zeros(2)})  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="params0 must contain at least one array"):
        nf.from_apply(lambda p, X: X[:, 0], {})
    with pytest.raises(TypeError, match="params0 leaves must be floating arrays"):
        nf.from_apply(lambda p, X: X[:, 0], {"w": jnp.zeros(2, int)})
    with pytest.raises(ValueError, match="params0 contains NaN or inf"):
        nf.from_apply(lambda p, X: X[:, 0], {"w": jnp.array([jnp.nan])})
