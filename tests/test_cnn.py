"""`models.CNN` and the structured kernel of convolutions: `K` equals `J Jᵀ`, the network
and its kernel equal neural-tangents 0.6.5's `stax` CNN (run in `.venv-nt`) with the same
weights, and the flows and checks run on images."""

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ntkflow as nf
from ntkflow.ntk._kernel import get_ntk_method

ROOT = Path(__file__).resolve().parent.parent
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"


def _images(n=6, k=1):
    data = nf.datasets.digits(n, classes=(2, 7), images=True, seed=3)
    if k == 1:
        return data
    y = np.asarray(data.y)
    return nf.datasets.from_arrays(np.asarray(data.X), np.stack([y, -y, 0.5 * y], axis=1)[:, :k])


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


METHODS = {
    "jax": lambda: nf.StructuredDense(gram="jax"),
    "jax-blocks": lambda: nf.StructuredDense(gram="jax", chunk=4),
    "syrk": lambda: nf.StructuredDense(gram="syrk"),
    "syrk-chunks": lambda: nf.StructuredDense(gram="syrk", chunk=4),
}


def _every_pair(levels):
    """Every combination of the factors' levels, those outside a strength-2 covering
    array (every pair of levels of every two factors appears in some default case)
    marked slow: the default suite covers each interaction of two settings, CI's slow
    suite the rest."""
    covering = {(0, 0, 0, 0), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0)}
    return [
        pytest.param(
            *(lv[i] for lv, i in zip(levels, idx, strict=True)),
            marks=() if idx in covering else pytest.mark.slow,
        )
        for idx in itertools.product(range(2), repeat=len(levels))
    ]


@pytest.mark.parametrize(
    ("readout", "bias", "k", "centering"),
    _every_pair((("flatten", "pool"), (False, True), (1, 2), ("none", "antisymmetric"))),
)
def test_structured_kernel_equals_jacobian_contraction(readout, bias, k, centering):
    model = nf.CNN((3, 4), 3, "tanh", out_dim=k, bias=bias, readout=readout)
    problem = nf.Problem(model, _images(k=k), centering=centering)
    J = np.asarray(nf.jacobian(problem))
    ref = J @ J.T
    for name, make in METHODS.items():
        if name.startswith("syrk") and k > 1:
            continue
        K = np.asarray(nf.empirical_ntk(problem, method=make()))
        assert _rel(K, ref) < 1e-10, name
        np.testing.assert_array_equal(K, K.T)
    assert isinstance(get_ntk_method("auto", problem), nf.StructuredDense)


NT_SCRIPT = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from neural_tangents import stax
import neural_tangents as nt

data = np.load(sys.argv[1])
bias = bool(data["bias"])
readout = str(data["readout"])
b_std = 1.0 if bias else None
layers = []
for c in data["channels"]:
    layers += [stax.Conv(int(c), (3, 3), padding="SAME", W_std=1.0, b_std=b_std,
                         parameterization="ntk"), stax.Erf()]
layers += [stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool(),
           stax.Dense(int(data["k"]), W_std=1.0, b_std=b_std, parameterization="ntk")]
init_fn, apply_fn, _ = stax.serial(*layers)
_, shapes = init_fn(jax.random.PRNGKey(0), data["X"].shape)
params, i = [], 0
for p in shapes:
    if p == ():
        params.append(())
        continue
    W = jnp.asarray(data[f"W{i}"]).reshape(p[0].shape)
    params.append((W, jnp.asarray(data[f"b{i}"]).reshape(p[1].shape)) if bias else (W, p[1]))
    i += 1
X = jnp.asarray(data["X"])
out = {"f": np.asarray(apply_fn(params, X))}
for impl in (1, 3):
    fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=impl)
    out[f"K{impl}"] = np.asarray(fn(X, None, params))
np.savez(sys.argv[2], **out)
"""


@pytest.mark.parametrize(
    ("readout", "bias"), [("flatten", False), pytest.param("pool", True, marks=pytest.mark.slow)]
)
def test_cnn_equals_neural_tangents_stax(tmp_path, readout, bias):
    assert NT_PYTHON.exists(), "neural-tangents' venv is missing: run make .venv-nt/.stamp"
    k = 2
    data = _images(n=5, k=k)
    model = nf.CNN((3, 4), 3, "erf", out_dim=k, bias=bias, readout=readout)
    problem = nf.Problem(model, data)
    params = problem.unravel(problem.w0)
    arrays = {
        "X": np.asarray(data.X),
        "channels": np.asarray(model.channels),
        "k": k,
        "bias": bias,
        "readout": readout,
    }
    for i, layer in enumerate(params):
        # ntkflow's readout is (k, fan_in); neural-tangents' Dense is (fan_in, k).
        W = np.asarray(layer["W"])
        arrays[f"W{i}"] = W.T if W.ndim == 2 else W
        if bias:
            arrays[f"b{i}"] = np.asarray(layer["b"])
    np.savez(tmp_path / "in.npz", **arrays)
    script = tmp_path / "nt_cnn.py"
    script.write_text(NT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    proc = subprocess.run(
        [str(NT_PYTHON), str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    f = np.asarray(problem.predict(problem.w0, data.X))
    assert _rel(f, ref["f"]) < 1e-12
    K = np.asarray(nf.empirical_ntk(problem)).reshape(5, k, 5, k).transpose(0, 2, 1, 3)
    for impl in ("K1", "K3"):
        assert _rel(K, ref[impl]) < 1e-10, (impl, json.dumps([readout, bias]))


@pytest.mark.slow  # test_cnn_limit.py's CNN run covers it in the default suite
def test_cnn_flows_and_checks_on_images():
    problem = nf.Problem(
        nf.CNN((4,), 3, "tanh"), _images(n=6), alpha=8.0, centering="antisymmetric"
    )
    cert = nf.certify(problem)
    assert cert.sigma_min > 0 and cert.beta_kind == "estimate"
    sol = nf.solve_flows(problem, 1.0, kernel=cert.kernel, saveat=5)
    assert sol.succeeded, sol.message
    v = nf.verify(sol, cert)
    assert v["loss_envelope_w"].holds is not None
    assert np.asarray(sol.loss_w)[-1] < np.asarray(sol.loss_w)[0]


GEOMETRIES = [
    dict(strides=2),
    dict(padding="VALID"),
    dict(pool=2),
    dict(kernel_size=2, strides=(2, 1), padding="VALID", pool=(1, 2)),
    dict(kernel_size=(2, 3), strides=(1, 2)),
]


@pytest.mark.parametrize(
    ("geometry", "bias"),
    [
        # each geometry in the default suite, with and without biases in turn; the other
        # half in the slow one
        pytest.param(
            g,
            bias,
            marks=() if bias == bool(i % 2) else pytest.mark.slow,
            id=f"geometry{i}-{bias}",
        )
        for i, g in enumerate(GEOMETRIES)
        for bias in (False, True)
    ],
)
def test_strides_padding_and_pooling_in_the_structured_kernel(geometry, bias):
    geometry = dict(geometry)
    model = nf.CNN((3, 4), geometry.pop("kernel_size", 3), "tanh", bias=bias, **geometry)
    problem = nf.Problem(model, _images(n=7))
    J = np.asarray(nf.jacobian(problem))
    for name, make in METHODS.items():
        K = np.asarray(nf.empirical_ntk(problem, method=make()))
        assert _rel(K, J @ J.T) < 1e-10, name


def test_strided_pooled_forward_pass_against_xla_windows():
    # an independent forward pass: XLA's convolution with explicit padding and
    # reduce_window's average, against the model's patches and reshaped means
    import jax

    model = nf.CNN((3,), 3, "tanh", bias=True, strides=(2, 1), padding="SAME", pool=(2, 2))
    data = _images(n=5)
    X = np.asarray(data.X)
    params, _ = model.init_for(jax.random.key(1), X.shape[1:])
    W, b = params[0]["W"], params[0]["b"]
    # SAME, stride 2 over 8 rows: 4 outputs, (4 − 1)·2 + 3 − 8 = 1 zero, after the image
    z = np.asarray(
        jax.lax.conv_general_dilated(
            jax.numpy.asarray(X),
            W,
            (2, 1),
            ((0, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    ) / np.sqrt(9.0) + np.asarray(b)
    h = jax.lax.reduce_window(np.tanh(z), 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = np.asarray(h / 4.0).reshape(5, -1)
    assert model.feature_maps(X.shape[1:]) == [(4, 8), (2, 4)]
    want = h @ np.asarray(params[1]["W"])[0] / np.sqrt(h.shape[1]) + params[1]["b"][0]
    got = model.apply(params, None, jax.numpy.asarray(X))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_cnn_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"channels must be a non-empty sequence"):
        nf.CNN(())
    with pytest.raises(ValueError, match=r"kernel_size must be an integer ≥ 1 or a pair"):
        nf.CNN((4,), kernel_size=(3, 0))
    with pytest.raises(ValueError, match=r"readout must be 'flatten' or 'pool'"):
        nf.CNN((4,), readout="max")
    with pytest.raises(ValueError, match=r"padding must be 'SAME' or 'VALID', got padding='same'"):
        nf.CNN((4,), padding="same")
    with pytest.raises(ValueError, match=r"strides must be an integer ≥ 1 or a pair"):
        nf.CNN((4,), strides=0)
    with pytest.raises(ValueError, match=r"pool must be an integer ≥ 1 or a pair"):
        nf.CNN((4,), pool=(2, 2, 2))
    with pytest.raises(ValueError, match=r"8×8 pixels leave layer 4 of this CNN no positions"):
        nf.Problem(nf.CNN((4, 4, 4, 4), pool=2), nf.datasets.digits(6, images=True))
    with pytest.raises(ValueError, match=r"CNN takes inputs of rank 3 .* shape \(64,\)"):
        nf.Problem(nf.CNN((4,)), nf.datasets.digits(6))


def test_cnn_from_an_experiment_document():
    from ntkflow.config import parse_experiment
    from ntkflow.experiment import build_problem

    doc = {
        "data": {"source": "digits", "n": 6, "images": True},
        "model": {"kind": "cnn", "channels": [3], "readout": "pool", "bias": True},
    }
    problem = build_problem(parse_experiment(doc))
    assert isinstance(problem.model, nf.CNN) and problem.data.point_shape == (8, 8, 1)
    assert problem.p == (9 * 3 + 3) + (3 + 1)
    assert problem.model.describe()["readout"] == "pool"
    doc["model"] = {"kind": "cnn", "channels": [3], "strides": 2, "padding": "VALID", "pool": 3}
    problem = build_problem(parse_experiment(doc))
    # VALID, stride 2 over 8: 3 positions per axis; pooled by 3: one, 3 channels flattened
    assert problem.model.feature_maps((8, 8, 1)) == [(3, 3), (1, 1)]
    assert problem.p == 9 * 3 + 3
    assert problem.model.describe()["pool"] == [3, 3]
