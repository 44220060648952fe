"""Models brought from Equinox, Flax (NNX, Linen) and PyTorch: their empirical NTK against
each framework's own Jacobian contraction (`jax.jacfwd`; `torch.func` for PyTorch) in
float64, the flows and checks end to end, the parameters back in the framework's layout,
and the layers each adapter refuses."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen, nnx
from torch.func import functional_call, jacrev, vmap

import ntkflow as nf

N, D = 7, 3


def _data(n: int = N, k: int = 1):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, D))
    y = rng.standard_normal(n) if k == 1 else rng.standard_normal((n, k))
    return nf.datasets.from_arrays(X, y)


def _flat_jacobian(J, n: int) -> np.ndarray:
    """A pytree of Jacobians (leaves `(n, …)`) as one `(n, p)` matrix."""
    return np.concatenate(
        [np.asarray(a).reshape(n, -1) for a in jax.tree_util.tree_leaves(J)], axis=1
    )


def _jacfwd_kernel(fn, params, X) -> np.ndarray:
    p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    out = fn(p64, jnp.asarray(X))
    J = jax.jacfwd(lambda p: fn(p, jnp.asarray(X)).reshape(-1))(p64)
    Jf = _flat_jacobian(J, out.size)
    return Jf @ Jf.T


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


# -- Equinox ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_equinox_kernel_equals_jacfwd(k):
    out = "scalar" if k == 1 else k
    m = eqx.nn.MLP(D, out, 16, 2, activation=jnp.tanh, key=jax.random.key(0))
    data = _data(k=k)
    problem = nf.Problem(nf.models.from_equinox(m), data)
    params, static = eqx.partition(m, eqx.is_inexact_array)
    ref = _jacfwd_kernel(lambda p, X: jax.vmap(eqx.combine(p, static))(X), params, data.X)
    for method in ("auto", "jacobian", "ntk_vp"):
        K = nf.empirical_ntk(problem, method=method)
        assert K.dtype == jnp.float64
        assert _rel(K, ref) < 1e-10, method


def test_equinox_native_and_smoothness():
    m = eqx.nn.MLP(D, "scalar", 8, 1, activation=jax.nn.relu, key=jax.random.key(1))
    model = nf.models.from_equinox(m)
    assert model.smooth is False
    problem = nf.Problem(model, _data())
    back = problem.native(problem.w0 + 0.5)
    assert isinstance(back, eqx.nn.MLP)
    X = jnp.asarray(_data().X)
    np.testing.assert_allclose(
        jax.vmap(back)(X), problem.predict(problem.w0 + 0.5, X), rtol=1e-13, atol=1e-14
    )
    assert np.isinf(nf.certify(problem).beta)


def test_equinox_refuses_batch_norm_and_training_dropout():
    key = jax.random.key(0)
    bn = eqx.nn.Sequential(
        [eqx.nn.Linear(D, 4, key=key), eqx.nn.BatchNorm(4, axis_name="batch", mode="batch")]
    )
    with pytest.raises(TypeError, match=r"module\.layers\[1\] is an eqx\.nn\.BatchNorm"):
        nf.models.from_equinox(bn, batched=True)
    drop = eqx.nn.Sequential([eqx.nn.Linear(D, 4, key=key), eqx.nn.Dropout(0.5)])
    with pytest.raises(TypeError, match=r"inference_mode"):
        nf.models.from_equinox(drop)
    nf.models.from_equinox(eqx.nn.inference_mode(drop))  # accepted once deterministic
    with pytest.raises(TypeError, match=r"needs an eqx\.Module"):
        nf.models.from_equinox(lambda x: x)  # type: ignore[arg-type]


# -- Flax ------------------------------------------------------------------------------


class _NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, norm: bool = False):
        self.l1 = nnx.Linear(D, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs) if norm else None
        self.l2 = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        h = self.l1(x)
        if self.norm is not None:
            h = self.norm(h)
        return self.l2(jnp.tanh(h))


class _LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(jnp.sin(linen.Dense(16)(x)))


def test_flax_nnx_kernel_equals_jacfwd():
    net = _NNXNet(nnx.Rngs(0))
    data = _data()
    problem = nf.Problem(nf.models.from_flax(net), data)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    ref = _jacfwd_kernel(lambda p, X: nnx.merge(graphdef, p, rest)(X), params, data.X)
    assert _rel(nf.empirical_ntk(problem), ref) < 1e-10
    back = problem.native(problem.w0 * 0.9)
    assert isinstance(back, _NNXNet)
    np.testing.assert_allclose(
        np.asarray(back(jnp.asarray(data.X))).ravel(),
        np.asarray(problem.predict(problem.w0 * 0.9, data.X)).ravel(),
        rtol=1e-13,
    )


def test_flax_nnx_batch_norm_needs_eval():
    net = _NNXNet(nnx.Rngs(0), norm=True)
    with pytest.raises(TypeError, match=r"module\.norm is an nnx\.BatchNorm.*module\.eval\(\)"):
        nf.models.from_flax(net)
    net.eval()
    problem = nf.Problem(nf.models.from_flax(net), _data())
    # The running statistics are fixed state, not trained: p counts the Linear layers only.
    assert problem.p == (D * 16 + 16) + (16 * 2) + (16 + 1)


def test_flax_linen_kernel_equals_jacfwd():
    module = _LinenNet()
    data = _data()
    variables = module.init(jax.random.key(0), jnp.asarray(data.X[:1]))
    problem = nf.Problem(nf.models.from_flax(module, variables), data)
    ref = _jacfwd_kernel(lambda p, X: module.apply({"params": p}, X), variables["params"], data.X)
    assert _rel(nf.empirical_ntk(problem), ref) < 1e-10
    assert set(problem.native(problem.w0)) == {"params"}
    with pytest.raises(TypeError, match="needs its variables"):
        nf.models.from_flax(module)


# -- PyTorch ---------------------------------------------------------------------------


def _torch_kernel(module: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    """`J Jᵀ` by torch.func in float64: per-example `jacrev` under `vmap`."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    buffers = dict(module.named_buffers())

    def f(p, x):
        return functional_call(module, {**p, **buffers}, (x[None],)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, torch.tensor(X))
    J = torch.cat([j.reshape(X.shape[0] * j.shape[1], -1) for j in jac.values()], dim=1)
    return (J @ J.T).numpy()


def test_torch_kernel_equals_torch_func():
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(D, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.GELU(),
        torch.nn.Linear(16, 2),
    ).double()
    data = _data(k=2)
    problem = nf.Problem(nf.models.from_torch(module), data)
    ref = _torch_kernel(module, np.asarray(data.X))
    for method in ("auto", "jacobian", "ntk_vp"):
        assert _rel(nf.empirical_ntk(problem, method=method), ref) < 1e-10, method


def test_torch_cnn_on_images_equals_torch_func():
    torch.manual_seed(1)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 1),
    ).double()
    data = nf.datasets.digits(6, classes=(0, 1), images=True)
    model = nf.models.from_torch(module, permute=(0, 3, 1, 2))
    problem = nf.Problem(model, data)
    ref = _torch_kernel(module, np.transpose(np.asarray(data.X), (0, 3, 1, 2)))
    assert _rel(nf.empirical_ntk(problem), ref) < 1e-10


def test_torch_state_dict_back_and_eval_batch_norm():
    torch.manual_seed(2)
    module = torch.nn.Sequential(
        torch.nn.Linear(D, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    with pytest.raises(TypeError, match=r"module\.1 is a BatchNorm1d in training mode"):
        nf.models.from_torch(module)
    module.eval()
    problem = nf.Problem(nf.models.from_torch(module), _data())
    # float32 module, float64 problem: the weights are cast, the running stats are state.
    assert problem.w0.dtype == jnp.float64
    assert problem.p == sum(p.numel() for p in module.parameters())
    w = problem.w0 * 1.1
    state_dict = problem.native(w)
    assert list(state_dict) == list(module.state_dict())
    assert state_dict["0.weight"].dtype == torch.float64
    copy = type(module)(*module).double()
    copy.load_state_dict(state_dict)
    with torch.no_grad():
        out = copy(torch.tensor(np.asarray(_data().X))).numpy().ravel()
    np.testing.assert_allclose(out, np.asarray(problem.predict(w, _data().X)).ravel(), rtol=1e-12)


def test_torch_refuses_training_dropout_and_non_modules():
    module = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Dropout(0.1))
    with pytest.raises(TypeError, match=r"module\.1 is a Dropout in training mode"):
        nf.models.from_torch(module)
    with pytest.raises(TypeError, match=r"needs a torch\.nn\.Module"):
        nf.models.from_torch(np.zeros(3))


# -- every adapter, end to end ---------------------------------------------------------


def _eqx_model():
    return nf.models.from_equinox(
        eqx.nn.MLP(D, "scalar", 16, 1, activation=jnp.tanh, key=jax.random.key(3))
    )


def _nnx_model():
    return nf.models.from_flax(_NNXNet(nnx.Rngs(3)))


def _torch_model():
    torch.manual_seed(3)
    return nf.models.from_torch(
        torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    )


@pytest.mark.parametrize("make_model", [_eqx_model, _nnx_model, _torch_model])
def test_adapter_flows_and_checks_end_to_end(make_model):
    problem = nf.Problem(make_model(), _data(), alpha=4.0, centering="antisymmetric")
    cert = nf.certify(problem)
    assert cert.sigma_min > 0 and cert.beta_kind == "estimate"
    sol = nf.solve_flows(problem, 2.0, kernel=cert.kernel, saveat=5, save_params=True)
    assert sol.succeeded, sol.message
    v = nf.verify(sol, cert)
    assert v.checks and all(c.holds is not None for c in v.checks if c.name == "loss_envelope_w")
    # Gradient flow decreases the loss; the final parameters come back as two copies.
    loss = np.asarray(sol.loss_w)
    assert loss[-1] < loss[0]
    assert sol.params_w is not None
    pair = problem.native(problem.w0 + np.asarray(sol.params_w[-1]))
    assert isinstance(pair, tuple) and len(pair) == 2


def test_run_from_python_writes_the_cli_results(tmp_path):
    # ntkflow.run on a Problem built in Python (an adapted PyTorch model): the same
    # results directory as `ntkflow run FILE`, loadable, with the checks in its summary.
    problem = nf.Problem(_torch_model(), _data(), alpha=4.0, centering="antisymmetric")
    out = nf.run(problem, tmp_path / "res", name="torch-mlp", t1=2.0, saveat=5, figures=False)
    assert out.experiment is None and out.verification is not None
    saved = nf.load_results(tmp_path / "res")
    assert saved.summary["name"] == "torch-mlp"
    assert saved.summary["problem"]["model"]["kind"] == "from_torch"
    assert saved.summary["config"]["flows"] == {"t1": 2.0, "saveat": 5}
    names = {c["name"] for c in saved.summary["verification"]["checks"]}
    assert names == {c.name for c in out.verification.checks}
    assert (tmp_path / "res" / "report.html").exists()
    assert not (tmp_path / "res" / "figures").exists()
    # (Under the tests' type-checking hook the annotation refuses it first.)
    with pytest.raises(TypeError, match=r"run needs an ntkflow Problem|parameter 'problem'"):
        nf.run("problem.toml")  # type: ignore[arg-type]


class _Shared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.b = torch.nn.Linear(D, 1)
        self.c = self.b  # an alias: state_dict names it twice, named_parameters once

    def forward(self, x):
        return torch.tanh(self.c(x))


def test_torch_aliases_relu_and_input_errors():
    module = _Shared()
    problem = nf.Problem(nf.models.from_torch(module), _data())
    assert problem.p == D + 1
    module.double().load_state_dict(problem.native(problem.w0 * 2.0))
    torch.manual_seed(4)
    relu = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    assert nf.models.from_torch(relu).smooth is False
    assert np.isinf(nf.certify(nf.Problem(nf.models.from_torch(relu), _data())).beta)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 1)
    )
    images = nf.datasets.digits(4, images=True)
    with pytest.raises(
        ValueError,
        match=r"^from_torch: the module's first layer module\.0 \(Conv2d\) takes 1 channels; "
        r"the data's points \(8, 8, 1\) have 8 on the first axis; .* pass permute=\(0, 3, 1, 2\)$",
    ):
        nf.Problem(nf.models.from_torch(cnn), images)
    with pytest.raises(ValueError, match=r"permute=\(1, 0, 2, 3\) is not a permutation"):
        nf.models.from_torch(cnn, permute=(1, 0, 2, 3))


class _LinenTrainNorm(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(linen.BatchNorm(use_running_average=False)(linen.Dense(4)(x)))


def test_linen_batch_statistics_and_predict_shape():
    module = _LinenTrainNorm()
    data = _data()
    variables = module.init(jax.random.key(0), jnp.asarray(data.X))
    with pytest.raises(ValueError, match=r"failed on the data .* use_running_average=True"):
        nf.Problem(nf.models.from_flax(module, variables), data)
    # A (N, 1) output is predicted with the targets' shape (N,), as ntkflow's own models.
    problem = nf.Problem(_torch_model(), data)
    assert problem.predict(problem.w0, data.X).shape == (N,)


# -- A model built for other inputs (issue 28): the first layer's size beside the data's --


class _NNXWide(nnx.Module):
    def __init__(self, rngs):
        self.first = nnx.Linear(D + 2, 4, rngs=rngs)
        self.out = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.first(x)))


def _wrong_size_models():
    wide = D + 2
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(wide, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    linen_net = _LinenNet()
    variables = linen_net.init(jax.random.key(0), jnp.zeros((1, wide)))
    mlp = eqx.nn.MLP(wide, "scalar", 8, 1, activation=jnp.tanh, key=jax.random.key(0))
    rng = np.random.default_rng(0)
    W = {"W1": jnp.asarray(rng.standard_normal((wide, 4))), "v": jnp.ones(4)}
    return [
        (nf.models.from_torch(seq), r"^from_torch: the module's first layer module\.0 \(Linear\)"),
        (
            nf.models.from_flax(_NNXWide(nnx.Rngs(0))),
            r"^from_flax: .* module\.first \(nnx\.Linear\)",
        ),
        (nf.models.from_flax(linen_net, variables), r"^from_flax: .* \(Dense\)"),
        (nf.models.from_equinox(mlp), r"^from_equinox: .* \(eqx\.nn\.Linear\)"),
        (
            nf.models.from_apply(lambda p, X: jnp.tanh(X @ p["W1"]) @ p["v"], W),
            r"^from_apply: apply_fn failed on the data, whose points have 3 features; params0's "
            r"first matrix params0\['W1'\] has shape \(5, 4\)",
        ),
    ]


def test_a_model_built_for_other_inputs_names_both_sizes():
    for model, start in _wrong_size_models():
        with pytest.raises(ValueError) as info:
            nf.Problem(model, _data())
        msg = str(info.value)
        assert "\n" not in msg and len(msg) < 400, msg
        assert __import__("re").search(start, msg), msg
        if not msg.startswith("from_apply"):
            assert f"takes {D + 2} features; the data has {D}" in msg, msg
        # (no layout hint for a dense net)
        assert "permute" not in msg and "NCHW" not in msg and "einsum" not in msg, msg


def test_smoothness_notes_name_the_call_the_user_made():
    torch.manual_seed(0)
    tanh = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    cert = nf.certify(nf.Problem(nf.models.from_torch(tanh), _data()))
    note = next(n for n in cert.notes if "smoothness is unknown" in n)
    assert "from_torch(module) was called without smooth=" in note, note
    assert "from_torch(module, smooth=True)" in note and "from_torch(module, smooth=False)" in note
    assert "from_apply" not in note
    relu = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    cert = nf.certify(nf.Problem(nf.models.from_torch(relu), _data()))
    assert any("from_torch(module) found a ReLU at module.1" in r for r in cert.reasons)
    W = {"W": jnp.asarray(np.random.default_rng(0).standard_normal((D, 8))), "v": jnp.ones(8)}
    plain = nf.models.from_apply(lambda p, X: jnp.tanh(X @ p["W"]) @ p["v"], W)
    cert = nf.certify(nf.Problem(plain, _data()))
    assert any("from_apply(apply_fn, params0, smooth=True)" in n for n in cert.notes)
    off = nf.models.from_apply(lambda p, X: jnp.tanh(X @ p["W"]) @ p["v"], W, smooth=False)
    cert = nf.certify(nf.Problem(off, _data()))
    assert any("from_apply(apply_fn, params0, smooth=False) marks" in r for r in cert.reasons)
