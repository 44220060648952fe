"""`ntkflow.predict` and `linearize`/`taylor_expand` against neural-tangents 0.6.5 run live
in `.venv-nt` (jax 0.4.25, float64) on the same kernels, targets, times and networks, to
1e-10; and against closed forms (a gradient-flow ODE solved by SciPy, the Taylor
polynomial of a polynomial)."""

import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import ntkflow as nf
from helpers import defined, run_neural_tangents

NET = """
import jax.numpy as jnp

def f(params, x):
    h = x
    for i, (W, b) in enumerate(params):
        z = h @ W / jnp.sqrt(W.shape[0]) + b[None, :]
        h = z if i == len(params) - 1 else jnp.tanh(z)
    return h
"""

# A kernel function written once and run by both libraries: an NNGP (RBF plus a linear
# part) and an NTK above it, both positive definite.
KERNEL_FN = """
import collections
import jax.numpy as jnp

def kernel_fn(x1, x2, get, **kwargs):
    x2 = x1 if x2 is None else x2
    dots = x1 @ x2.T / x1.shape[1]
    sq = jnp.sum(x1**2, 1)[:, None] + jnp.sum(x2**2, 1)[None, :] - 2 * x1 @ x2.T
    k = {"nngp": jnp.exp(-sq / (2 * x1.shape[1])) + 0.1 * dots}
    k["ntk"] = k["nngp"] + 2 * dots + 0.5
    if isinstance(get, str):
        return k[get]
    return collections.namedtuple("Kernel", get)(*(k[g] for g in get))
"""

# gradient_descent_mse_ensemble: (t, test points, get, compute_cov, diag_reg, learning_rate)
ENS_CASES = [
    ([[0.0, 2.0], [30.0, 900.0]], True, None, True, 0.0, 1.0),
    (5.0, False, "ntk", True, 0.0, 0.5),
    (None, True, ["nngp"], True, 1e-3, 1.0),
    ([1.0, 100.0], True, "nngp", False, 1e-2, 1.0),
    ([3.0], False, ["nngp", "ntk"], True, 0.0, 2.0),
    (None, False, "ntk", True, 0.0, 1.0),
]

# gradient_descent: (loss, momentum, learning_rate, t, test points)
GD_CASES = [
    ("ce", 0.9, 0.5, [0.5, 4.0, 30.0], True),
    ("mse", None, 2.0, [1.0, 10.0], True),
    ("ce", None, 1.0, [2.0], False),
]
LOSSES = """
import jax
import jax.numpy as jnp

LOSSES = {
    "ce": lambda fx, y: -jnp.mean(jax.nn.log_softmax(fx) * jax.nn.softmax(3 * y)),
    "mse": lambda fx, y: 0.5 * jnp.mean((fx - y) ** 2),
}
"""

# gradient_descent_mse: (trace_axes, learning_rate, diag_reg, absolute, t, train, test)
MSE_CASES = [
    ((-1,), 1.0, 0.0, False, [[0.0, 3.0, 40.0], [400.0, 4000.0, 1e5]], True, True),
    ((-1,), 0.5, 1e-2, False, 7.0, True, True),
    ((-1,), 1.0, 0.3, True, None, False, True),
    ((-1,), 1.0, 0.0, False, None, True, True),
    ((), 2.0, 0.0, False, [1.0, 50.0], True, True),
    ((), 1.0, 1e-3, True, None, True, True),
    ((-1,), 1.0, 0.0, False, [5.0, 500.0], True, False),
]
# gp_inference: (get, diag_reg, absolute, test-test given)
GP_CASES = [
    (None, 0.0, False, True),
    ("ntk", 1e-3, False, True),
    ("ntkgp", 0.2, True, True),
    (["nngp"], 0.0, False, False),
    ("ntk", 0.0, False, False),
]

NT_SCRIPT = """
import collections, json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import neural_tangents as nt
{net}
{kfn}
{losses}
d = dict(np.load(sys.argv[1]))
mse, gp, ens, gd = json.loads(sys.argv[2])
out = {{}}
for c, (trace, lr, reg, absolute, t, train, test) in enumerate(mse):
    tag = "tr" if trace else "full"
    fn = nt.predict.gradient_descent_mse(d["kdd_" + tag], d["y"], lr, reg, absolute, tuple(trace))
    res = fn(None if t is None else np.asarray(t), d["f0"] if train else None,
             d["ft0"] if test else None, d["ktd_" + tag])
    res = res if isinstance(res, tuple) else (res,)
    for i, r in enumerate(res):
        out[f"mse{{c}}_{{i}}"] = np.asarray(r)
K = collections.namedtuple("K", "nngp ntk")
kdd, ktd, ktt = (K(d["nngp_" + s], d["ntk_" + s]) for s in ("dd", "td", "tt"))
for c, (get, reg, absolute, with_tt) in enumerate(gp):
    fn = nt.predict.gp_inference(kdd, d["y"], reg, absolute)
    res = fn(tuple(get) if isinstance(get, list) else get, ktd, ktt if with_tt else None)
    single = not hasattr(res, "_asdict") or hasattr(res, "covariance")
    res = {{"one": res}} if single else res._asdict()
    for name, r in res.items():
        if hasattr(r, "covariance"):
            out[f"gp{{c}}_{{name}}_mean"], out[f"gp{{c}}_{{name}}_cov"] = map(np.asarray, r)
        else:
            out[f"gp{{c}}_{{name}}_mean"] = np.asarray(r)
# Its max_learning_rate calls SciPy's `eigvalsh(..., eigvals=(i, j))`, a keyword SciPy
# 1.14 removed: the shim below is that keyword, so its own formula runs.
from neural_tangents._src import predict as nt_predict
def eigvalsh(a, eigvals):
    return np.linalg.eigvalsh(a)[eigvals[0] : eigvals[1] + 1]
nt_predict.sp.linalg.eigvalsh = eigvalsh
out["lr0"] = np.asarray(nt.predict.max_learning_rate(d["ntk_dd"]))
out["lr1"] = np.asarray(nt.predict.max_learning_rate(d["ntk_dd"], 21, 0.9))
params = [(jnp.asarray(d[f"W{{i}}"]), jnp.asarray(d[f"b{{i}}"])) for i in range(3)]
moved = [(jnp.asarray(d[f"V{{i}}"]), jnp.asarray(d[f"c{{i}}"])) for i in range(3)]
out["lin"] = np.asarray(nt.linearize(f, params)(moved, d["x"]))
for k in (0, 2, 3):
    out[f"tay{{k}}"] = np.asarray(nt.taylor_expand(f, params, k)(moved, d["x"]))
for c, (t, test, get, cov, reg, lr) in enumerate(ens):
    fn = nt.predict.gradient_descent_mse_ensemble(kernel_fn, d["xd"], d["y"], lr, reg)
    get = tuple(get) if isinstance(get, list) else get
    res = fn(None if t is None else np.asarray(t), d["xt"] if test else None, get, cov)
    single = isinstance(get, str)
    for name, r in ({{"one": res}} if single else res._asdict()).items():
        if cov:
            out[f"ens{{c}}_{{name}}_mean"], out[f"ens{{c}}_{{name}}_cov"] = map(np.asarray, r)
        else:
            out[f"ens{{c}}_{{name}}_mean"] = np.asarray(r)
for c, (name, m, lr, t, test) in enumerate(gd):
    fn = nt.predict.gradient_descent(LOSSES[name], d["kdd_tr"], d["y"], lr, m)
    res = fn(np.asarray(t), d["f0"], d["ft0"] if test else None, d["ktd_tr"] if test else None)
    for i, r in enumerate(res if isinstance(res, tuple) else (res,)):
        out[f"gd{{c}}_{{i}}"] = np.asarray(r)
np.savez(sys.argv[3], **out)
"""


def _data():
    rng = np.random.default_rng(3)
    n, nt_, k, p = 7, 4, 3, 40
    J, Jt = rng.standard_normal((n, k, p)) / 4, rng.standard_normal((nt_, k, p)) / 4
    G, Gt = rng.standard_normal((n, p)) / 5, rng.standard_normal((nt_, p)) / 5
    H, Ht = rng.standard_normal((n, p)) / 3, rng.standard_normal((nt_, p)) / 3
    d = {
        "kdd_tr": G @ G.T,
        "ktd_tr": Gt @ G.T,
        "kdd_full": np.einsum("iap,jbp->ijab", J, J),
        "ktd_full": np.einsum("iap,jbp->ijab", Jt, J),
        "y": rng.standard_normal((n, k)),
        "f0": 0.1 * rng.standard_normal((n, k)),
        "ft0": 0.1 * rng.standard_normal((nt_, k)),
        "nngp_dd": H @ H.T,
        "nngp_td": Ht @ H.T,
        "nngp_tt": Ht @ Ht.T,
        "ntk_dd": H @ H.T + G @ G.T,
        "ntk_td": Ht @ H.T + Gt @ G.T,
        "ntk_tt": Ht @ Ht.T + Gt @ Gt.T,
        "x": rng.standard_normal((5, 4)),
        "xd": rng.standard_normal((n, 6)),
        "xt": rng.standard_normal((nt_, 6)),
    }
    for i, (a, b) in enumerate(itertools.pairwise([4, 6, 5, 2])):
        d[f"W{i}"], d[f"b{i}"] = rng.standard_normal((a, b)), 0.3 * rng.standard_normal(b)
        d[f"V{i}"] = d[f"W{i}"] + 0.2 * rng.standard_normal((a, b))
        d[f"c{i}"] = d[f"b{i}"] + 0.2 * rng.standard_normal(b)
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """neural-tangents 0.6.5's answers, run live in `.venv-nt`."""
    d = _data()
    script = NT_SCRIPT.format(net=NET, kfn=KERNEL_FN, losses=LOSSES)
    cases = json.dumps([MSE_CASES, GP_CASES, ENS_CASES, GD_CASES])
    return d, run_neural_tangents(tmp_path_factory.mktemp("nt"), script, d, cases)


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


@pytest.mark.parametrize("case", range(len(MSE_CASES)))
def test_gradient_descent_mse_equals_neural_tangents(reference, case):
    d, nt = reference
    trace, lr, reg, absolute, t, train, test = MSE_CASES[case]
    tag = "tr" if trace else "full"
    fn = nf.predict.gradient_descent_mse(d["kdd_" + tag], d["y"], lr, reg, absolute, trace)
    got = fn(
        None if t is None else np.asarray(t),
        d["f0"] if train else None,
        d["ft0"] if test else None,
        d["ktd_" + tag],
    )
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == int(train) + int(test)
    for i, g in enumerate(got):
        want = nt[f"mse{case}_{i}"]
        assert np.shape(g) == want.shape
        _close(g, want)


@pytest.mark.parametrize("case", range(len(GP_CASES)))
def test_gp_inference_equals_neural_tangents(reference, case):
    d, nt = reference
    get, reg, absolute, with_tt = GP_CASES[case]
    K = nf.predict.Kernel
    kdd, ktd, ktt = (K(d["nngp_" + s], d["ntk_" + s]) for s in ("dd", "td", "tt"))
    fn = nf.predict.gp_inference(kdd, d["y"], reg, absolute)
    res = fn(tuple(get) if isinstance(get, list) else get, ktd, ktt if with_tt else None)
    named = {"one": res} if isinstance(get, str) else res._asdict()
    assert named
    for name, r in named.items():
        if with_tt:
            assert isinstance(r, nf.predict.Gaussian)
            _close(r.mean, nt[f"gp{case}_{name}_mean"])
            _close(r.covariance, nt[f"gp{case}_{name}_cov"])
        else:
            _close(r, nt[f"gp{case}_{name}_mean"])


@pytest.mark.parametrize("case", range(len(ENS_CASES)))
def test_gradient_descent_mse_ensemble_equals_neural_tangents(reference, case):
    d, nt = reference
    t, test, get, cov, reg, lr = ENS_CASES[case]
    fn = nf.predict.gradient_descent_mse_ensemble(
        defined(KERNEL_FN, "kernel_fn"), d["xd"], d["y"], lr, reg
    )
    get = tuple(get) if isinstance(get, list) else get
    res = fn(None if t is None else np.asarray(t), d["xt"] if test else None, get, cov)
    named = {"one": res} if isinstance(get, str) else res._asdict()
    for name, r in named.items():
        if cov:
            _close(r.mean, nt[f"ens{case}_{name}_mean"])
            _close(r.covariance, nt[f"ens{case}_{name}_cov"])
            assert np.shape(r.covariance) == nt[f"ens{case}_{name}_cov"].shape
        else:
            _close(r, nt[f"ens{case}_{name}_mean"])
        assert np.shape(r.mean if cov else r) == nt[f"ens{case}_{name}_mean"].shape


def test_the_ensemble_takes_an_ntkflow_model_as_its_kernel():
    d = _data()
    model = nf.MLP((16, 16), activation="relu")
    limit = nf.infinite_kernel(model, d["xd"])

    def kernel_fn(x1, x2, get):
        return getattr(nf.infinite_kernel(model, x1, x2), get)

    by_model = nf.predict.gradient_descent_mse_ensemble(model, d["xd"], d["y"])
    by_fn = nf.predict.gradient_descent_mse_ensemble(kernel_fn, d["xd"], d["y"])
    a = by_model(np.asarray([10.0]), d["xt"], "ntk", True)
    b = by_fn(np.asarray([10.0]), d["xt"], "ntk", True)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-13)
    np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-13)
    # At t = ∞ on the training points the mean is y and the spread is gone.
    train = by_model(None, None, "ntk", True)
    np.testing.assert_allclose(train.mean, d["y"], rtol=1e-12)
    assert np.all(train.covariance == 0) and limit.ntk.shape == (7, 7)


@pytest.mark.parametrize("case", range(len(GD_CASES)))
def test_gradient_descent_agrees_with_neural_tangents_to_its_odeint_tolerance(reference, case):
    # neural-tangents integrates with JAX's odeint at rtol = atol = 1.4e-8, so its answer
    # is itself that far from the flow: agreement to 1e-6 is what it can show (ntkflow's
    # own accuracy is checked against the closed form below, to 1e-10).
    d, nt = reference
    name, m, lr, t, test = GD_CASES[case]
    fn = nf.predict.gradient_descent(defined(LOSSES, "LOSSES")[name], d["kdd_tr"], d["y"], lr, m)
    got = fn(np.asarray(t), d["f0"], d["ft0"] if test else None, d["ktd_tr"] if test else None)
    got = got if isinstance(got, tuple) else (got,)
    for i, g in enumerate(got):
        want = nt[f"gd{case}_{i}"]
        assert np.shape(g) == want.shape
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6, atol=1e-8)
        assert not np.allclose(want, d["f0"] if i == 0 else d["ft0"], rtol=1e-3)  # it moved


def test_gradient_descent_on_the_squared_loss_is_the_closed_form():
    d = _data()
    K, Kt, y, f0, ft0 = d["kdd_tr"], d["ktd_tr"], d["y"], d["f0"], d["ft0"]
    t = np.asarray([0.0, 5.0, 80.0, 2000.0])
    mse = lambda fx, yh: 0.5 * jnp.mean((fx - yh) ** 2)
    ode = nf.predict.gradient_descent(mse, K, y, 0.3)(t, f0, ft0, Kt)
    closed = nf.predict.gradient_descent_mse(K, y, 0.3)(t, f0, ft0, Kt)
    for a, b in zip(ode, closed, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-10)
    # With momentum the state is returned when one is given; the velocity starts at 0.
    state = nf.predict.ODEState(fx_train=f0, fx_test=ft0)
    out = nf.predict.gradient_descent(mse, K, y, 0.3, 0.5)(t, state, None, Kt)
    assert isinstance(out, nf.predict.ODEState) and out.qx_train.shape == (4, *y.shape)
    np.testing.assert_allclose(np.asarray(out.qx_train[0]), 0.0)
    with pytest.raises(ValueError, match="not reached by an ODE solve"):
        nf.predict.gradient_descent(mse, K, y)(None, f0)


def test_max_learning_rate_equals_neural_tangents(reference):
    d, nt = reference
    assert nf.predict.max_learning_rate(d["ntk_dd"]) == pytest.approx(float(nt["lr0"]), rel=1e-12)
    got = nf.predict.max_learning_rate(d["ntk_dd"], 21, 0.9)
    assert got == pytest.approx(float(nt["lr1"]), rel=1e-12)


def test_linearize_and_taylor_expand_equal_neural_tangents(reference):
    d, nt = reference
    f = defined(NET, "f")
    params = [(jnp.asarray(d[f"W{i}"]), jnp.asarray(d[f"b{i}"])) for i in range(3)]
    moved = [(jnp.asarray(d[f"V{i}"]), jnp.asarray(d[f"c{i}"])) for i in range(3)]
    _close(nf.linearize(f, params)(moved, d["x"]), nt["lin"])
    for k in (0, 2, 3):
        _close(nf.taylor_expand(f, params, k)(moved, d["x"]), nt[f"tay{k}"])
    # Neither is the network itself away from `params`: the test could fail.
    assert not np.allclose(nt["lin"], f(moved, d["x"]), rtol=1e-3)


def test_taylor_expand_is_exact_on_a_polynomial():
    # A cubic in the parameters: its degree-3 expansion is itself anywhere, degree 2 is
    # off by exactly the cubic term.
    def f(w, x):
        return x * w["a"] ** 3 + w["b"] * w["a"]

    w0, w1 = {"a": 0.7, "b": -1.2}, {"a": 1.9, "b": 0.4}
    exact = f(w1, 2.0)
    assert nf.taylor_expand(f, w0, 3)(w1, 2.0) == pytest.approx(exact, rel=1e-13)
    assert nf.taylor_expand(f, w0, 2)(w1, 2.0) == pytest.approx(exact - 2.0 * 1.2**3, rel=1e-12)
    assert nf.taylor_expand(f, w0, 1)(w1, 2.0) == pytest.approx(nf.linearize(f, w0)(w1, 2.0))
    with pytest.raises(ValueError, match="degree must be an integer"):
        nf.taylor_expand(f, w0, -1)


def test_gradient_descent_mse_solves_the_function_space_flow():
    # Independent reference: df/dt = −η K (f − y)/N and df*/dt = −η K*(f − y)/N by SciPy.
    d = _data()
    K, Kt, y, f0, ft0 = d["kdd_tr"], d["ktd_tr"], d["y"], d["f0"], d["ft0"]
    eta, N = 0.7, y.size

    def rhs(t, z):
        f = z[: y.size].reshape(y.shape)
        return np.concatenate([(-eta * K @ (f - y) / N).ravel(), (-eta * Kt @ (f - y) / N).ravel()])

    ts = [0.0, 30.0, 900.0]
    ode = scipy.integrate.solve_ivp(
        rhs,
        (0, ts[-1]),
        np.concatenate([f0.ravel(), ft0.ravel()]),
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    )
    train, test = nf.predict.gradient_descent_mse(K, y, learning_rate=eta)(
        np.asarray(ts), f0, ft0, Kt
    )
    for i in range(len(ts)):
        np.testing.assert_allclose(
            train[i], ode.y[: y.size, i].reshape(y.shape), rtol=1e-8, atol=1e-10
        )
        np.testing.assert_allclose(
            test[i], ode.y[y.size :, i].reshape(ft0.shape), rtol=1e-8, atol=1e-10
        )


def test_predict_bad_inputs_are_one_line():
    d = _data()
    fn = nf.predict.gradient_descent_mse(d["kdd_tr"], d["y"])
    with pytest.raises(ValueError, match="k_test_train must be given"):
        fn(1.0, d["f0"], d["ft0"], None)
    with pytest.raises(ValueError, match="t must be finite"):
        fn(np.inf, d["f0"])
    gp = nf.predict.gp_inference(d["kdd_tr"], d["y"])
    with pytest.raises(ValueError, match="get must be one of"):
        gp("gauss", d["ktd_tr"])
    with pytest.raises(ValueError, match="needs the NNGP too"):
        gp("ntk", d["ktd_tr"], d["ktd_tr"] @ d["ktd_tr"].T)
