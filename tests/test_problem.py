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


@pytest.mark.parametrize("centering", ["none", "subtract", "antisymmetric"])
def test_the_outputs_at_w0_kept_on_the_problem_are_f_w0(centering):
    # `f0` is evaluated once, at construction; the certificate, the flows and the loss's
    # curvature read it (and `r0`) instead of evaluating the network at w0 again.
    problem = make("mlp-vector", centering=centering, alpha=2.5)
    f0 = problem.f(problem.w0)
    np.testing.assert_allclose(problem.f0, f0, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(problem.r0, problem.residual(problem.w0), rtol=1e-14, atol=1e-14)
    if centering == "subtract":  # f(w) − f(w0): zero at w0 exactly
        assert not np.any(np.asarray(problem.f0))
    elif centering == "antisymmetric":  # two equal copies' difference: zero to rounding
        assert np.max(np.abs(problem.f0)) < 1e-15
    else:
        assert np.min(np.abs(problem.f0)) > 1e-3


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


def test_from_apply_names_a_non_array_leaf():
    import equinox as eqx
    import jax

    class Net(eqx.Module):
        w: jax.Array
        act: object

    net = Net(jnp.ones(3), jax.nn.gelu)
    with pytest.raises(TypeError, match=r"params0\.act is a function .*eqx\.partition\(model, "):
        nf.from_apply(lambda p, X: p.act(X @ p.w), net)
    # The fix the message gives works.
    params, static = eqx.partition(net, eqx.is_inexact_array)
    model = nf.from_apply(lambda p, X: eqx.combine(p, static).act(X @ p.w), params)
    assert nf.Problem(model, tiny_data()).p == 3
    with pytest.raises(TypeError, match=r"got params0\['b'\]\[1\] with dtype=int"):
        nf.from_apply(lambda p, X: X[:, 0], {"b": [jnp.zeros(2), jnp.zeros(2, int)]})
    with pytest.raises(TypeError, match=r"params0\['s'\] is a str \('relu'\), not an array"):
        nf.from_apply(lambda p, X: X[:, 0], {"w": jnp.zeros(2), "s": "relu"})


def test_output_mismatch_fix_fits_the_model():
    three = tiny_data(k=3)
    with pytest.raises(ValueError, match=r"Shallow has one output per point: for 3 target col"):
        nf.Problem(nf.Shallow(4), three)
    with pytest.raises(ValueError, match=r"this MLP has out_dim=1; set MLP\(\.\.\., out_dim=3\)"):
        nf.Problem(nf.MLP((4,)), three)
    model = nf.from_apply(lambda p, X: X @ p, jnp.ones(3))
    with pytest.raises(ValueError, match=r"make apply_fn return shape \(N, 3\)"):
        nf.Problem(model, three)


@pytest.mark.parametrize("dtype", ["int32", "float16", jnp.int32, "floaty", complex, "bfloat16"])
def test_dtype_is_float32_or_float64(dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got dtype="):
        nf.Problem(nf.Shallow(4), tiny_data(), dtype=dtype)


def test_key_out_of_range():
    with pytest.raises(ValueError, match=r"key must be an integer seed in \[-2\*\*63, 2\*\*63\)"):
        nf.Problem(nf.Shallow(4), tiny_data(), key=2**64)


def test_memory_estimate_refuses_before_allocating(monkeypatch):
    # 3e11 parameters (and as many activations): terabytes, on any machine.
    with pytest.raises(ValueError, match=r"the problem needs at least .* TB of memory"):
        nf.Problem(nf.Shallow(10**11), tiny_data())
    # Against a small limit, to see each part named: the model, or the n × n kernel.
    import ntkflow._problem as problem_module
    from ntkflow._memory import TooLarge

    monkeypatch.setattr(problem_module, "available_bytes", lambda: 100_000)
    with pytest.raises(TooLarge, match=r"10,000 parameters, 2× the model's") as e:
        nf.Problem(nf.Shallow(1000), tiny_data(d=5), centering="antisymmetric")
    assert e.value.part == "model" and "narrower" in str(e.value)
    with pytest.raises(TooLarge, match=r"the 200×200 kernel \(320 kB\); use fewer points") as e:
        nf.Problem(nf.Shallow(2), tiny_data(n=200))
    assert e.value.part == "data"


def test_spectrum_of_a_non_finite_kernel():
    K = np.eye(3)
    K[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"K0 is not finite \(1 of its 9 entries .*standardise"):
        nf.ntk_spectrum(K)
    with pytest.raises(ValueError, match="not finite"):
        nf.ntk_spectrum(np.full((3, 3), np.nan), method="iterative")


def test_huge_inputs_are_refused_with_the_fix():
    rng = np.random.default_rng(0)
    data = nf.datasets.from_arrays(rng.standard_normal((6, 3)) * 1e200, rng.standard_normal(6))
    with pytest.raises(ValueError, match="standardise the inputs"):
        nf.certify(nf.Problem(nf.Shallow(8), data))


def test_activation_names_without_jax_are_the_activations():
    from ntkflow._activation_names import ALIASES, NAMES, canonical_name
    from ntkflow.models._activations import ACTIVATIONS

    assert tuple(ACTIVATIONS) == NAMES
    assert all(canonical_name(a) in ACTIVATIONS for a in ALIASES)
    with pytest.raises(ValueError, match=r"unknown activation='tahn'; use one of: erf, gelu"):
        nf.models.get_activation("tahn")


def test_the_former_name_of_alpha_warns():
    problem = nf.Problem(nf.Shallow(8), nf.datasets.sphere(4, 2), alpha=3.0)
    with pytest.warns(DeprecationWarning, match=r"Problem.scale is deprecated; use Problem.alpha"):
        assert float(problem.scale) == problem.alpha == 3.0
