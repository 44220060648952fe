"""The infinite-width NNGP and NTK of `CNN` against neural-tangents 0.6.5's `stax` run live
in `.venv-nt` (float64) over a grid of architectures — depth, window, activation, readout
(flatten, global average pooling), biases, strides, padding (`SAME`, `VALID`), average
pooling layers — to 1e-10, and the empirical kernel of a wide
`CNN` converging to it."""

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from jax.flatten_util import ravel_pytree

import ntkflow as nf
from helpers import run_neural_tangents

# (depth, window, activation, readout, bias, strides, padding, pooling window)
ARCHS = [
    (1, (3, 3), "relu", "flatten", True, (1, 1), "SAME", None),
    (2, (3, 3), "relu", "pool", False, (1, 1), "SAME", None),
    (2, (2, 3), "erf", "flatten", False, (1, 1), "SAME", None),
    (1, (3, 2), "gelu", "pool", True, (1, 1), "SAME", None),
    (3, (3, 3), "sin", "flatten", True, (1, 1), "SAME", None),
    (2, (1, 1), "relu", "pool", True, (1, 1), "SAME", None),
    (2, (3, 3), "relu", "flatten", True, (2, 2), "SAME", None),
    (2, (3, 3), "erf", "pool", False, (1, 1), "VALID", None),
    (2, (2, 2), "relu", "flatten", True, (1, 1), "SAME", (2, 2)),
    (1, (3, 2), "gelu", "pool", True, (2, 1), "VALID", (1, 2)),
    (2, (2, 2), "sin", "flatten", False, (1, 2), "VALID", None),
    (2, (2, 3), "relu", "flatten", False, (1, 1), "SAME", (1, 1)),
    (2, (2, 2), "erf", "pool", True, (1, 2), "SAME", (2, 1)),
]

NT_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax
d = np.load(sys.argv[1])
acts = {"relu": stax.Relu(), "erf": stax.Erf(), "gelu": stax.Gelu(approximate=False),
        "sin": stax.Sin()}
out = {}
for c, arch in enumerate(json.loads(sys.argv[2])):
    depth, window, act, readout, bias, strides, padding, pool = arch
    b = 1.0 if bias else None
    layers = []
    for _ in range(depth):
        layers += [stax.Conv(16, tuple(window), tuple(strides), padding=padding, W_std=1.0,
                             b_std=b, parameterization="ntk"), acts[act]]
        if pool is not None:
            layers.append(stax.AvgPool(tuple(pool), tuple(pool), padding="VALID"))
    layers.append(stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool())
    layers.append(stax.Dense(1, W_std=1.0, b_std=b, parameterization="ntk"))
    _, _, kernel_fn = stax.serial(*layers)
    for same in (True, False):
        k = kernel_fn(d["x1"], None if same else d["x2"], ("nngp", "ntk"))
        out[f"{c}_{same}_nngp"], out[f"{c}_{same}_ntk"] = np.asarray(k.nngp), np.asarray(k.ntk)
np.savez(sys.argv[3], **out)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    rng = np.random.default_rng(2)
    d: dict[str, Any] = {
        "x1": rng.standard_normal((4, 5, 6, 2)),
        "x2": rng.standard_normal((3, 5, 6, 2)),
    }
    d["x1"][1] = d["x1"][0]  # two identical images: ReLU's angle 0 between them
    tmp = tmp_path_factory.mktemp("nt_cnn")
    return d, run_neural_tangents(tmp, NT_SCRIPT, d, json.dumps(ARCHS))


@pytest.mark.parametrize("case", range(len(ARCHS)))
def test_cnn_infinite_kernel_equals_neural_tangents_stax(reference, case):
    d, nt = reference
    depth, window, act, readout, bias, strides, padding, pool = ARCHS[case]
    model = nf.CNN(
        (16,) * depth,
        kernel_size=window,
        activation=act,
        readout=readout,
        bias=bias,
        strides=strides,
        padding=padding,
        pool=pool,
    )
    for same in (True, False):
        k = nf.infinite_kernel(model, d["x1"], None if same else d["x2"])
        assert k.method == "closed form" and k.nngp_error is None
        xb = d["x1"] if same else d["x2"]
        identical = np.all(d["x1"][:, None] == xb[None, :], axis=(2, 3, 4))
        for name in ("nngp", "ntk"):
            want = nt[f"{case}_{same}_{name}"]
            got = np.asarray(getattr(k, name))
            assert got.shape == want.shape
            error = np.abs(got - want) / np.abs(want).max()
            # ReLU: neural-tangents takes an image's angle to itself at a pixel from a
            # rounded ab − c² (θ ≈ 1e-8); ntkflow's is exactly 0 (checked exactly below).
            exact_pairs = act == "relu" and name == "ntk"
            assert error[~identical].max() < 1e-10, (case, name)
            if identical.any():
                assert error[identical].max() < (1e-9 if exact_pairs else 1e-10), (case, name)


def test_a_relu_image_with_itself_follows_the_exact_recursion():
    # Flatten readout, an image with itself: Σ ← box(Σ/2) + β², Θ ← Σ + box(Θ/2), with
    # box the 3×3 window's mean over a zero-padded image (SciPy's correlate).
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 6, 3))
    model = nf.CNN((16, 16, 16), kernel_size=3, activation="relu", readout="flatten", bias=True)
    got = np.diag(np.asarray(nf.infinite_kernel(model, x).ntk))

    def box(a):
        return scipy.ndimage.correlate(a, np.full((3, 3), 1 / 9), mode="constant", cval=0.0)

    for i in range(2):
        k = np.sum(x[i] ** 2, axis=-1) / 3
        theta = None
        for _ in range(3):
            sigma = box(k) + 1.0
            theta = sigma if theta is None else sigma + box(theta / 2)
            k = sigma / 2
        assert theta is not None
        assert got[i] == pytest.approx(np.mean(k) + 1.0 + np.mean(theta / 2), rel=1e-13)


def test_the_empirical_cnn_kernel_converges_to_the_limit():
    # The empirical NTK differs from the limit by its fluctuations at initialisation,
    # O(m^{-1/2}), and the bias of its mean, O(1/m) (Hanin & Nica 2020): over widths
    # 16 → 256 the distance falls with a fitted slope between −1 and −1/2 (measured:
    # −0.84, errors 0.67, 0.29, 0.065).
    rng = np.random.default_rng(4)
    X = jnp.asarray(rng.standard_normal((5, 6, 6, 1)))
    limit = None
    widths, errors = (16, 64, 256), []
    for m in widths:
        model = nf.CNN((m, m), kernel_size=3, activation="relu", readout="pool")
        if limit is None:
            limit = np.asarray(nf.infinite_kernel(model, X).ntk)
        runs = []
        for seed in range(3):
            params, _ = model.init_for(jax.random.PRNGKey(seed), (6, 6, 1))
            flat, unravel = ravel_pytree(params)
            J = jax.jacrev(lambda w, m=model, u=unravel: m.apply(u(w), None, X).reshape(-1))(flat)
            runs.append(np.linalg.norm(np.asarray(J @ J.T) - limit) / np.linalg.norm(limit))
        errors.append(np.mean(runs))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -1.1 < slope < -0.45, (errors, slope)
    assert errors[0] > errors[1] > errors[2] and errors[-1] < 0.1


def test_cnn_limit_bad_inputs():
    model = nf.CNN((4,), activation="tanh")
    with pytest.raises(ValueError, match="closed-form activations"):
        nf.infinite_kernel(model, np.ones((2, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"images \(n, H, W, C\)"):
        nf.infinite_kernel(nf.CNN((4,), activation="relu"), np.ones((2, 9)))
    with pytest.raises(ValueError, match="images of one shape"):
        nf.infinite_kernel(
            nf.CNN((4,), activation="relu"), np.ones((2, 3, 3, 1)), np.ones((2, 3, 4, 1))
        )


def test_row_blocks_give_the_same_kernel():
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((5, 4, 4, 2)), rng.standard_normal((3, 4, 4, 2))
    for readout in ("pool", "flatten"):
        model = nf.CNN((8, 8), activation="relu", readout=readout, bias=True)
        for other in (None, x2):
            whole = nf.infinite_kernel(model, x1, other, block=5)
            parts = nf.infinite_kernel(model, x1, other, block=2, progress=True)
            np.testing.assert_allclose(np.asarray(parts.ntk), np.asarray(whole.ntk), rtol=1e-14)
            np.testing.assert_allclose(np.asarray(parts.nngp), np.asarray(whole.nngp), rtol=1e-14)


def test_matching_patches_keep_their_angle_zero_when_compiled():
    # Digits share a zero background: many patch pairs of distinct images are equal, at
    # ReLU's angle 0, where an ulp between a variance and a covariance becomes ~1e-8.
    # Compiled (as it runs) and op by op must agree to rounding (3e-11 when they did not).
    from sklearn.datasets import load_digits

    raw = np.asarray(load_digits(return_X_y=True)[0]).reshape(-1, 8, 8)  # (zeros kept)
    images = raw[:60, :, :, None] / 16.0
    model = nf.CNN((8, 8), 3, "relu", bias=True, readout="flatten")
    compiled = np.asarray(nf.infinite_kernel(model, images).ntk)
    with jax.disable_jit():
        op_by_op = np.asarray(nf.infinite_kernel(model, images).ntk)
    assert np.max(np.abs(compiled - op_by_op)) < 1e-14 * np.max(np.abs(op_by_op))
