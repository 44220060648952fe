import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from families import CENTERINGS, FAMILIES, make, tiny_data
from helpers import FD_RTOL, FD_STEP, rel_err


@pytest.mark.parametrize("centering", CENTERINGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_jacobian_matches_central_differences(family, centering, getkey):
    problem = make(family, centering)
    J = np.asarray(nf.jacobian(problem))
    assert J.shape == (problem.n, problem.p)
    w0, f = problem.w0, eqx.filter_jit(problem.f)
    # Every column against its own central difference...
    for j in range(problem.p):
        e = jnp.zeros_like(w0).at[j].set(FD_STEP)
        fd = (f(w0 + e) - f(w0 - e)) / (2 * FD_STEP)
        np.testing.assert_allclose(J[:, j], fd, rtol=FD_RTOL, atol=FD_RTOL)
    # ...and at a point away from w0, along random directions.
    w = w0 + 0.3 * jax.random.normal(getkey(), w0.shape)
    Jw = np.asarray(nf.jacobian(problem, w))
    for _ in range(3):
        v = jax.random.normal(getkey(), w0.shape)
        fd = (f(w + FD_STEP * v) - f(w - FD_STEP * v)) / (2 * FD_STEP)
        assert rel_err(Jw @ np.asarray(v), fd) < FD_RTOL


@pytest.mark.parametrize("family", FAMILIES)
def test_kernel_symmetric_psd(family):
    problem = make(family)
    K = np.asarray(nf.empirical_ntk(problem))
    J = np.asarray(nf.jacobian(problem))
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-10, atol=1e-12)
    eig = np.linalg.eigvalsh(K)
    assert eig[0] >= -problem.n * np.finfo(float).eps * eig[-1]


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_contraction_equals_materialised(family):
    problem = make(family)
    K = np.asarray(nf.empirical_ntk(problem))
    # A budget below one Jacobian row forces the block-recomputing path, with a chunk
    # (4 points) that does not divide n = 6.
    method = nf.JacobianContraction(chunk=4, max_jacobian_bytes=1)
    K_chunked = np.asarray(nf.empirical_ntk(problem, method=method))
    np.testing.assert_allclose(K_chunked, K, rtol=1e-12, atol=1e-13)


def test_linear_model_kernel_is_gram_matrix(getkey):
    rng = np.random.default_rng(3)
    Phi = rng.standard_normal((8, 11))
    data = nf.datasets.from_arrays(Phi, rng.standard_normal(8))
    model = nf.from_apply(lambda params, X: X @ params["w"], {"w": jnp.zeros(11)})
    problem = nf.Problem(model, data, alpha=2.0)
    np.testing.assert_array_equal(np.asarray(nf.jacobian(problem)), Phi)
    np.testing.assert_allclose(np.asarray(nf.empirical_ntk(problem)), Phi @ Phi.T, rtol=1e-14)
    np.testing.assert_allclose(problem.f(problem.w0 + 1.0), Phi.sum(axis=1), rtol=1e-14)


@pytest.mark.parametrize("family", FAMILIES)
def test_antisymmetric_centring_zero_output_and_same_kernel(family):
    base = make(family, "none")
    anti = make(family, "antisymmetric")
    np.testing.assert_array_equal(np.asarray(anti.f(anti.w0)), np.zeros(anti.n))
    assert anti.p == 2 * base.p
    K_base = np.asarray(nf.empirical_ntk(base))
    K_anti = np.asarray(nf.empirical_ntk(anti))
    np.testing.assert_allclose(K_anti, K_base, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_subtract_centring_zero_output_same_jacobian(family):
    base = make(family, "none")
    sub = make(family, "subtract")
    np.testing.assert_array_equal(np.asarray(sub.f(sub.w0)), np.zeros(sub.n))
    np.testing.assert_array_equal(np.asarray(nf.jacobian(sub)), np.asarray(nf.jacobian(base)))


def test_spectrum_of_wide_and_narrow_jacobians():
    rng = np.random.default_rng(0)
    J = rng.standard_normal((5, 9))
    spec = nf.ntk_spectrum(J @ J.T, p=9)
    s = np.linalg.svd(J, compute_uv=False)
    np.testing.assert_allclose([spec.sigma_max, spec.sigma_min], [s[0], s[-1]], rtol=1e-12)
    np.testing.assert_allclose(spec.condition, (s[0] / s[-1]) ** 2, rtol=1e-10)
    assert not spec.rank_deficient
    assert np.all(np.diff(spec.eigenvalues) >= 0)
    narrow = rng.standard_normal((9, 5))
    spec = nf.ntk_spectrum(narrow @ narrow.T, p=5)
    assert spec.sigma_min == 0.0 and spec.rank_deficient and spec.condition == np.inf


def test_repeated_point_is_rank_deficient():
    problem = nf.Problem(nf.Shallow(width=50), tiny_data(n=4))
    X = np.asarray(problem.data.X)
    data = nf.datasets.from_arrays(np.vstack([X, X[:1]]), np.zeros(5))
    spec = nf.ntk_spectrum(nf.empirical_ntk(nf.Problem(nf.Shallow(width=50), data)), p=100)
    assert spec.rank_deficient


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method='fast'"):
        nf.empirical_ntk(make("mlp"), method="fast")


METHODS = {
    "structured-syrk": lambda: nf.StructuredDense(gram="syrk"),
    "structured-jax": lambda: nf.StructuredDense(gram="jax"),
    # Blocks of 4 points on n = 6: factor chunks and K blocks that do not divide n.
    "structured-syrk-chunked": lambda: nf.StructuredDense(gram="syrk", chunk=4),
    "structured-jax-blocked": lambda: nf.StructuredDense(gram="jax", chunk=4),
    "ntk_vp": lambda: nf.NTKVectorProducts(chunk=4),
    "auto": lambda: "auto",
}


# The centring matters to the structured kernel (it sums over parameter copies); the other
# methods differentiate `f` as a whole and are checked under the antisymmetric one.
CASES = [
    (m, c)
    for m in METHODS
    for c in (CENTERINGS if m in ("structured-syrk", "structured-jax") else ("antisymmetric",))
]


@pytest.mark.parametrize(("method", "centering"), CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_agrees_with_jacobian_contraction(family, centering, method, getkey):
    problem = make(family, centering)
    m = METHODS[method]()
    structured = isinstance(m, nf.StructuredDense)
    if structured and family == "from_apply":
        with pytest.raises(ValueError, match="needs a model of dense and convolutional layers"):
            nf.empirical_ntk(problem, method=m)
        return
    if isinstance(m, nf.StructuredDense) and m.gram == "syrk" and family == "mlp-vector":
        with pytest.raises(ValueError, match="scalar outputs, got k=2"):
            nf.empirical_ntk(problem, method=m)
        return
    # At w0 (antisymmetric: both copies equal) and away from it (copies differ).
    for w in (problem.w0, problem.w0 + 0.3 * jax.random.normal(getkey(), problem.w0.shape)):
        J = np.asarray(nf.jacobian(problem, w))
        K = np.asarray(nf.empirical_ntk(problem, w, method=m))
        ref = J @ J.T
        assert K.shape == ref.shape and K.dtype == np.float64
        assert np.linalg.norm(K - ref) <= 1e-10 * np.linalg.norm(ref)
        np.testing.assert_array_equal(K, K.T)


def test_auto_picks_structured_where_it_applies():
    from ntkflow.ntk._kernel import get_ntk_method

    for family in FAMILIES:
        problem = make(family, "antisymmetric")
        method = get_ntk_method("auto", problem)
        expected = nf.JacobianContraction if family == "from_apply" else nf.StructuredDense
        assert type(method) is expected, family
    assert isinstance(get_ntk_method("ntk_vp", chunk=3), nf.NTKVectorProducts)
    with pytest.raises(ValueError, match="chunk must be an integer ≥ 1, got chunk=0"):
        nf.empirical_ntk(make("mlp"), method="jacobian", chunk=0)
    with pytest.raises(ValueError, match="gram must be 'auto', 'syrk' or 'jax'"):
        nf.StructuredDense(gram="blas")


def test_ntk_operator_matches_kernel(getkey):
    problem = make("mlp-vector", "antisymmetric")
    w = problem.w0 + 0.1 * jax.random.normal(getkey(), problem.w0.shape)
    K = np.asarray(nf.empirical_ntk(problem, w, method="jacobian"))
    op = nf.ntk_operator(problem, w)
    V = np.asarray(jax.random.normal(getkey(), (problem.n, 3)))
    np.testing.assert_allclose(op.matmat(V), K @ V, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(op.matvec(V[:, 0]), K @ V[:, 0], rtol=1e-11, atol=1e-12)


def _clustered_kernel(n, lam_min, seed=0):
    """`Q diag(λ) Qᵀ` with a cluster of small eigenvalues near `λ_min` (hard for plain
    Lanczos on K) and a spread of large ones."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate(
        [lam_min * (1 + 1e-3 * rng.random(n // 4)), rng.uniform(1, 50, n - n // 4)]
    )
    return (Q * lam) @ Q.T, np.sort(lam)


@pytest.mark.parametrize("lam_min", [1e-2, 1e-6])
def test_iterative_spectrum_matches_eigh(lam_min):
    K, lam = _clustered_kernel(300, lam_min)
    dense = nf.ntk_spectrum(K, p=1000, method="dense")
    it = nf.ntk_spectrum(K, p=1000, method="iterative")
    assert dense.complete and not it.complete and it.method == "iterative"
    assert abs(it.sigma_max - dense.sigma_max) <= 1e-9 * dense.sigma_max
    assert abs(it.sigma_min - dense.sigma_min) <= 1e-7 * dense.sigma_min
    assert abs(it.sigma_min**2 - lam[0]) <= 1e-6 * lam[0]
    assert it.tolerance == pytest.approx(dense.tolerance, rel=1e-9)
    # A JAX array (what `empirical_ntk` returns; `auto` takes this path above n = 4096)
    # gives the same values: SciPy's `aslinearoperator` does not take one as it is.
    jx = nf.ntk_spectrum(jnp.asarray(K), p=1000, method="iterative")
    assert jx.sigma_min == it.sigma_min and jx.sigma_max == it.sigma_max


def test_iterative_spectrum_of_an_operator_and_of_a_singular_kernel(getkey):
    problem = make("mlp", "antisymmetric")
    K = np.asarray(nf.empirical_ntk(problem))
    dense = nf.ntk_spectrum(K, p=problem.p)
    op = nf.ntk_spectrum(nf.ntk_operator(problem), p=problem.p, method="auto")
    assert op.method == "iterative"
    assert op.sigma_max == pytest.approx(dense.sigma_max, rel=1e-9)
    assert op.sigma_min == pytest.approx(dense.sigma_min, rel=1e-6)
    # A repeated point: K is singular, the Cholesky factorisation fails, σ_min = 0.
    X = np.asarray(problem.data.X)
    data = nf.datasets.from_arrays(np.vstack([X, X[:1]]), np.zeros(7))
    Ks = np.asarray(nf.empirical_ntk(nf.Problem(nf.Shallow(width=50), data)))
    spec = nf.ntk_spectrum(Ks, p=50, method="iterative")
    assert spec.sigma_min == 0.0 and spec.rank_deficient
    with pytest.raises(ValueError, match="method must be 'auto', 'dense' or 'iterative'"):
        nf.ntk_spectrum(K, method="lanczos")
    with pytest.raises(ValueError, match="needs K as an array"):
        nf.ntk_spectrum(nf.ntk_operator(problem), method="dense")
