"""`infinite_kernel`: the infinite-width NNGP and NTK. Closed forms against
neural-tangents 0.6.5 run live in `.venv-nt`; the bounded quadrature against the closed
forms (its bound must hold) and against Monte-Carlo kernels of width-10⁵ networks."""

import json
import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from helpers import fast_and_rest
from ntkflow.infinite._dual import CLOSED_FORMS
from ntkflow.infinite._dual_quadrature import trapezoid_dual

ROOT = Path(__file__).resolve().parent.parent
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"

NT_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax
data = np.load(sys.argv[1])
acts = {"relu": stax.Relu(), "erf": stax.Erf(), "gelu": stax.Gelu(approximate=False),
        "sin": stax.Sin()}
out = {}
for i, (kind, act, depth, bias, given) in json.loads(sys.argv[2]).items():
    b = 1.0 if bias else None
    d = data["x1"].shape[1]
    if kind == "mlp":
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(64, W_std=1.0, b_std=b, parameterization="ntk"), acts[act]]
    else:  # Shallow: w_j ~ N(0, I) without 1/sqrt(d), no biases
        layers = [stax.Dense(64, W_std=float(np.sqrt(d)), parameterization="ntk"), acts[act]]
    layers.append(stax.Dense(1, W_std=1.0, b_std=b, parameterization="ntk"))
    _, _, kernel_fn = stax.serial(*layers)
    k = kernel_fn(data["x1"], data["x2"] if given else None, ("nngp", "ntk"))
    out[f"{i}/nngp"], out[f"{i}/ntk"] = np.asarray(k.nngp), np.asarray(k.ntk)
np.savez(sys.argv[3], **out)
"""

# (kind, activation, depth, bias, x2 given)
CASES = [
    (kind, act, depth, bias, given)
    for act in ("relu", "erf", "gelu", "sin")
    for kind, depth, bias in (
        *(("mlp", depth, bias) for depth in (1, 2, 3) for bias in (False, True)),
        ("shallow", 1, False),
    )
    for given in (False, True)
]
TOL = {"relu": 1e-10, "erf": 1e-10, "gelu": 1e-8, "sin": 1e-10}
# Half the cases in the default suite: for each activation every depth with and without
# biases (and the shallow net), with and without x2 in turn; the other half slow.
FAST_CASES = tuple(i for i in range(len(CASES)) if (i // 2 + i % 2 + i // 14) % 2 == 0)


def _inputs():
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((6, 5))
    x1[2] = -x1[0]  # an antipodal pair
    x2 = np.concatenate([x1[:2], rng.standard_normal((3, 5))])  # shares two points
    return x1 / np.linalg.norm(x1, axis=1, keepdims=True), x2 / np.linalg.norm(
        x2, axis=1, keepdims=True
    )


def _model(kind, act, depth, bias):
    if kind == "mlp":
        return nf.MLP((64,) * depth, act, bias=bias)
    return nf.Shallow(64, act, train="all")


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("cases", fast_and_rest(FAST_CASES, len(CASES)))
def test_closed_forms_equal_neural_tangents(tmp_path, cases):
    assert NT_PYTHON.exists(), "neural-tangents' venv is missing: run make .venv-nt/.stamp"
    x1, x2 = _inputs()
    np.savez(tmp_path / "in.npz", x1=x1, x2=x2)
    (tmp_path / "nt_reference.py").write_text(NT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    chosen = {i: CASES[i] for i in cases}
    proc = subprocess.run(
        [str(NT_PYTHON), str(tmp_path / "nt_reference.py"), str(tmp_path / "in.npz"),
         json.dumps(chosen), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    assert len(ref.files) == 2 * len(chosen)
    for i, (kind, act, depth, bias, given) in chosen.items():
        k = nf.infinite_kernel(_model(kind, act, depth, bias), x1, x2 if given else None)
        assert k.method == "closed form" and k.nngp_error is None
        xb = x2 if given else x1
        assert k.nngp.shape == (6, len(xb))
        same = np.all(x1[:, None, :] == xb[None, :, :], axis=-1)
        nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
        scale = np.abs(ref[f"{i}/ntk"]).max()
        assert _rel(nngp, ref[f"{i}/nngp"]) < TOL[act], CASES[i]
        if act != "relu":
            assert _rel(ntk, ref[f"{i}/ntk"]) < TOL[act], CASES[i]
            continue
        # ReLU: neural-tangents takes a point's angle to itself from a rounded ab − c²
        # (θ ≈ 1e-8); ntkflow's is exactly 0. Identical pairs are checked against the
        # exact recursion Σ ← Σ/2 + β², Θ ← Σ + Θ/2, the rest against neural-tangents.
        assert np.abs(ntk - ref[f"{i}/ntk"])[~same].max() / scale < 1e-10, CASES[i]
        assert np.abs(ntk - ref[f"{i}/ntk"])[same].max() / scale < 1e-9, CASES[i]
        if kind == "mlp":
            b2 = 1.0 if bias else 0.0
            sig = np.sum(x1 * x1, axis=1) / x1.shape[1] + b2
            theta = sig
            for _ in range(depth):
                sig = sig / 2 + b2
                theta = sig + theta / 2
            rows, cols = np.nonzero(same)
            np.testing.assert_allclose(ntk[rows, cols], theta[rows], rtol=1e-14)


def test_shallow_with_fixed_readout_drops_its_term():
    x1, _ = _inputs()
    full = nf.infinite_kernel(nf.Shallow(8, "erf", train="all"), x1)
    hidden = nf.infinite_kernel(nf.Shallow(8, "erf", train="hidden"), x1)
    np.testing.assert_allclose(hidden.ntk, full.ntk - full.nngp, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["erf", "gelu", "sin"])
def test_quadrature_within_its_bound_of_the_closed_forms(name):
    act = nf.models.get_activation(name)
    a = jnp.asarray([[0.2], [1.0], [2.5]])
    b = jnp.asarray([[0.5, 1.0, 2.0, 2.5, 0.7, 1.3]])
    rho = jnp.asarray([-1.0, -0.6, 0.0, 0.4, 0.95, 1.0])[None, :]
    c = rho * jnp.sqrt(a * b)
    dual = trapezoid_dual(act, 3.0, 1e-13)
    v, d, ev, ed = dual.with_bounds(a, b, c)
    v0, d0 = CLOSED_FORMS[name](a, b, c)
    err_v, err_d = np.abs(np.asarray(v - v0)), np.abs(np.asarray(d - d0))
    assert np.all(err_v <= np.asarray(ev)) and np.all(err_d <= np.asarray(ed))
    assert err_v.max() < 1e-10 and err_d.max() < 1e-10
    assert float(jnp.max(ev)) < 1e-12 and float(jnp.max(ed)) < 1e-12


@pytest.mark.parametrize("name", ["erf", "gelu", "sin"])
def test_deep_quadrature_kernels_within_their_bounds(name):
    x1, x2 = _inputs()
    model = nf.MLP((16, 16, 16), name, bias=True)
    exact = nf.infinite_kernel(model, x1, x2)
    quad = nf.infinite_kernel(model, x1, x2, method="quadrature", tol=1e-13)
    assert quad.method.startswith("trapezoidal") and quad.ntk_error is not None
    assert quad.nngp_error is not None
    assert float(jnp.max(jnp.abs(quad.nngp - exact.nngp))) <= quad.nngp_error
    assert float(jnp.max(jnp.abs(quad.ntk - exact.ntk))) <= quad.ntk_error
    assert quad.ntk_error < 1e-10 and _rel(quad.ntk, exact.ntk) < 1e-10


def _mc_shallow(act_name, X, m, seed):
    """A width-`m` one-hidden-layer MLP's empirical NNGP and NTK, each as a mean over
    the hidden units (so with its standard error), and the same NTK from `empirical_ntk`."""
    problem = nf.Problem(
        nf.MLP((m,), act_name), nf.datasets.from_arrays(X, np.zeros(len(X))), key=seed
    )
    W1, W2 = (layer["W"] for layer in problem.unravel(problem.w0))
    act = nf.models.get_activation(act_name)
    d = X.shape[1]
    z = jnp.asarray(X) @ W1.T / np.sqrt(d)
    s, ds = jax.jvp(act.fn, (z,), (jnp.ones_like(z),))
    s, ds, w2 = np.asarray(s), np.asarray(ds), np.asarray(W2[0])
    sigma1 = X @ X.T / d
    nngp_terms = s[:, None, :] * s[None, :, :]  # (n, n, m)
    ntk_terms = nngp_terms + sigma1[:, :, None] * (w2**2) * ds[:, None, :] * ds[None, :, :]
    stats = [(t.mean(-1), t.std(-1) / np.sqrt(m)) for t in (nngp_terms, ntk_terms)]
    K = np.asarray(nf.empirical_ntk(problem))
    return stats, K


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "softplus", "sin"])
def test_quadrature_agrees_with_width_1e5_networks(name):
    x1, _ = _inputs()
    X = x1[:4]
    ((nngp_mc, nngp_se), (ntk_mc, ntk_se)), K = _mc_shallow(name, X, 100_000, seed=5)
    np.testing.assert_allclose(K, ntk_mc, rtol=1e-10)  # the mean is the network's kernel
    method = "quadrature" if name == "sin" else "auto"
    k = nf.infinite_kernel(nf.MLP((8,), name), X, method=method)
    assert k.method.startswith("trapezoidal")
    z_nngp = np.abs(np.asarray(k.nngp) - nngp_mc) / nngp_se
    z_ntk = np.abs(np.asarray(k.ntk) - ntk_mc) / ntk_se
    print(f"{name}: largest |quadrature − MC| / SE: NNGP {z_nngp.max():.2f}, NTK {z_ntk.max():.2f}")
    assert z_nngp.max() < 4.5 and z_ntk.max() < 4.5, (z_nngp.max(), z_ntk.max())


def test_blocks_and_progress_give_the_same_kernel():
    x1, x2 = _inputs()
    model = nf.MLP((16, 16), "tanh", bias=True)
    whole = nf.infinite_kernel(model, x1, x2)
    rows = nf.infinite_kernel(model, x1, x2, block=2, progress=True)
    np.testing.assert_array_equal(np.asarray(whole.ntk), np.asarray(rows.ntk))
    same = nf.infinite_kernel(model, x1, block=4)
    np.testing.assert_allclose(np.asarray(same.ntk), np.asarray(same.ntk).T, atol=1e-15)


def test_dataset_input_and_bad_inputs():
    data = nf.datasets.digits(50)
    k = nf.infinite_kernel(nf.MLP((8,), "relu"), data)
    assert k.ntk.shape == (50, 50)
    linear = nf.from_apply(lambda p, X: X @ p["w"], {"w": np.ones(3)}, smooth=True)
    with pytest.raises(ValueError, match="covers MLP, Shallow and CNN"):
        nf.infinite_kernel(linear, np.ones((2, 3)))
    custom = nf.models.Activation("cube", lambda x: x**3, 1.0, 1.0)
    with pytest.raises(ValueError, match="activation='cube'"):
        nf.infinite_kernel(nf.MLP((4,), custom), np.ones((2, 3)))
    with pytest.raises(ValueError, match="x1 must be a 2-D array"):
        nf.infinite_kernel(nf.MLP((4,)), np.ones(3))
    with pytest.raises(ValueError, match="same dimension"):
        nf.infinite_kernel(nf.MLP((4,)), np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="tol must be a positive number"):
        nf.infinite_kernel(nf.MLP((4,)), np.ones((2, 3)), tol=0.0)
    with pytest.raises(ValueError, match="method must be"):
        nf.infinite_kernel(nf.MLP((4,)), np.ones((2, 3)), method="mc")
    with pytest.raises(ValueError, match="no quadrature"):
        nf.infinite_kernel(nf.MLP((4,), "relu"), np.ones((2, 3)), method="quadrature")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "relu", "erf"])
def test_empirical_kernel_approaches_the_limit_as_the_inverse_square_root_of_width(name):
    """One hidden layer: the empirical NTK is a mean over iid units of the limit's
    integrand, so its distance to the limit falls as m^{-1/2} (no 1/m bias)."""
    X = np.random.default_rng(11).standard_normal((24, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = nf.datasets.from_arrays(X, np.zeros(len(X)))
    widths = [64, 128, 256, 512, 1024, 2048, 4096]
    limit = np.asarray(nf.infinite_kernel(nf.MLP((8,), name, bias=True), X).ntk)
    means = []
    for m in widths:
        dists = []
        for seed in range(16):
            problem = nf.Problem(nf.MLP((m,), name, bias=True), data, key=seed)
            K = np.asarray(nf.empirical_ntk(problem))
            dists.append(np.linalg.norm(K - limit) / np.linalg.norm(limit))
        means.append(np.mean(dists))
    slope = np.polyfit(np.log(widths), np.log(means), 1)[0]
    print(f"{name}: mean ‖K_m − K_∞‖/‖K_∞‖ {np.round(means, 4).tolist()}, slope {slope:.3f}")
    assert abs(slope + 0.5) < 0.1


NT_FLOW = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import predict
d = np.load(sys.argv[1])
fn = predict.gradient_descent_mse(d["k"], d["y"], learning_rate=1.0)
train, test = fn(d["t"], d["u0"], d["ut0"], d["kx"])
np.savez(sys.argv[2], train=np.asarray(train), test=np.asarray(test))
"""


@pytest.mark.parametrize("initial", ["network", pytest.param("zero", marks=pytest.mark.slow)])
def test_infinite_flow_equals_neural_tangents_gradient_descent_mse(tmp_path, initial):
    rng = np.random.default_rng(2)
    X, Xt = rng.standard_normal((12, 4)), rng.standard_normal((5, 4))
    data = nf.datasets.from_arrays(X, np.sin(X[:, 0]), X_test=Xt, y_test=np.sin(Xt[:, 0]))
    problem = nf.Problem(nf.MLP((32, 32), "erf", bias=True), data, alpha=2.0, key=1)
    times = np.array([0.0, 0.05, 0.3, 2.0])
    flow = nf.infinite_flow(problem, times, initial=initial)
    assert flow.test is not None and flow.cross is not None
    u0 = np.asarray(2.0 * problem.f(problem.w0)) if initial == "network" else np.zeros(12)
    ut0 = (
        np.asarray(2.0 * problem.predict(problem.w0, jnp.asarray(Xt)))
        if initial == "network"
        else np.zeros(5)
    )
    np.testing.assert_allclose(np.asarray(flow.train[0]), u0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(flow.test[0]), ut0, atol=1e-13)
    np.savez(
        tmp_path / "in.npz",
        k=np.asarray(flow.kernel.ntk),
        kx=np.asarray(flow.cross.ntk),
        y=np.sin(X[:, :1]),
        u0=u0[:, None],
        ut0=ut0[:, None],
        t=times * 2.0**2 * 12,  # η τ = α² t · n·k
    )
    (tmp_path / "nt_flow.py").write_text(NT_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    proc = subprocess.run(
        [str(NT_PYTHON), str(tmp_path / "nt_flow.py"), str(tmp_path / "in.npz"),
         str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(np.asarray(flow.train), ref["train"][..., 0], atol=1e-10)
    np.testing.assert_allclose(np.asarray(flow.test), ref["test"][..., 0], atol=1e-10)
    late = nf.infinite_flow(problem, [1e6], initial=initial)
    np.testing.assert_allclose(np.asarray(late.train[0]), np.sin(X[:, 0]), atol=1e-8)
    assert float(late.loss[0]) < 1e-15 < float(flow.loss[0])


def test_infinite_flow_refuses_other_losses_and_bad_times():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    data = nf.datasets.from_arrays(X, np.sign(X[:, 0]))
    problem = nf.Problem(nf.MLP((8,), "tanh"), data, loss="logistic")
    with pytest.raises(ValueError, match="needs the square loss"):
        nf.infinite_flow(problem, [1.0])
    square = nf.Problem(nf.MLP((8,), "tanh"), data)
    with pytest.raises(ValueError, match="times must be finite and ≥ 0"):
        nf.infinite_flow(square, [-1.0])
    with pytest.raises(ValueError, match="initial must be"):
        nf.infinite_flow(square, [1.0], initial="gp")


def test_a_run_compares_its_certificate_with_the_limit(tmp_path, monkeypatch):
    import ntkflow.infinite._infinite_flow as flow_module
    import ntkflow.infinite._limit_summary as summary_module

    # Issue 29: the limit's scalars and its flow read one `Θ` on the training points (it
    # was computed twice per width-sweep point); the test points' cross kernel once more.
    calls = []
    real = summary_module.infinite_kernel

    def counting(model, X1, X2=None, **kwargs):
        calls.append(X2 is None)
        return real(model, X1, X2, **kwargs)

    monkeypatch.setattr(summary_module, "infinite_kernel", counting)
    monkeypatch.setattr(flow_module, "infinite_kernel", counting)
    data = nf.datasets.sphere(12, 3, n_test=5, seed=0)
    problem = nf.Problem(nf.MLP((256,), "erf", bias=True), data, centering="antisymmetric")
    out = nf.run(problem, tmp_path / "r", t1=0.5, saveat=4, limit=True, figures=False)
    assert calls == [True, False]  # Θ on the training points, then the test points' cross
    lim = out.summary["limit"]
    theta = np.asarray(nf.infinite_kernel(problem.model, data.X).ntk)
    assert out.certificate.kernel is not None
    K0 = np.asarray(out.certificate.kernel.K)
    assert lim["limit_kernel_distance"] == pytest.approx(
        np.linalg.norm(K0 - theta) / np.linalg.norm(theta), rel=1e-12
    )
    assert 0 < lim["limit_kernel_distance"] < 0.5
    smin = np.sqrt(np.linalg.eigvalsh(theta)[0])
    assert lim["limit_sigma_min"] == pytest.approx(smin, rel=1e-10)
    assert lim["limit_sigma_min_distance"] == pytest.approx(
        abs(out.certificate.sigma_min - smin) / smin, rel=1e-8
    )
    assert lim["limit_error"] is None and lim["limit_method"] == "closed form"
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert saved["limit"]["limit_kernel_distance"] == pytest.approx(lim["limit_kernel_distance"])
    # The infinite-width tangent flow at the save times, beside the finite-width flows.
    ts = np.asarray(out.dataset["t"].values)
    flow = nf.infinite_flow(problem, ts)
    np.testing.assert_allclose(out.dataset["loss_inf"].values, np.asarray(flow.loss), rtol=1e-12)
    assert flow.test is not None and data.y_test is not None
    per_point = 0.5 * (np.asarray(flow.test) - np.asarray(data.y_test)[None]) ** 2
    np.testing.assert_allclose(
        out.dataset["loss_inf_test"].values, per_point.mean(axis=1), rtol=1e-12
    )
    # At t = 0 the finite and infinite tangent flows start from the same αf(w0) = 0.
    assert out.dataset["loss_inf"].values[0] == pytest.approx(out.dataset["loss_u"].values[0])
    plain = nf.run(problem, None, t1=0.5, saveat=4)
    assert "limit" not in plain.summary and "loss_inf" not in plain.dataset
