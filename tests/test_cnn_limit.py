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
for c, arch in json.loads(sys.argv[2]):
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


# The default suite runs these (every activation and readout, biases or not, strides with
# SAME and with VALID padding, pooling layers); `make test-slow` the others.
FAST_ARCHS = (2, 4, 6, 8, 9)


def _reference(tmp_path_factory, cases):
    rng = np.random.default_rng(2)
    d: dict[str, Any] = {
        "x1": rng.standard_normal((4, 5, 6, 2)),
        "x2": rng.standard_normal((3, 5, 6, 2)),
    }
    d["x1"][1] = d["x1"][0]  # two identical images: ReLU's angle 0 between them
    tmp = tmp_path_factory.mktemp("nt_cnn")
    return d, run_neural_tangents(tmp, NT_SCRIPT, d, json.dumps([[c, ARCHS[c]] for c in cases]))


@pytest.fixture(scope="module")
def reference_fast(tmp_path_factory):
    return _reference(tmp_path_factory, FAST_ARCHS)


@pytest.fixture(scope="module")
def reference_slow(tmp_path_factory):
    return _reference(tmp_path_factory, [c for c in range(len(ARCHS)) if c not in FAST_ARCHS])


@pytest.mark.parametrize(
    "case",
    [c if c in FAST_ARCHS else pytest.param(c, marks=pytest.mark.slow) for c in range(len(ARCHS))],
)
def test_cnn_infinite_kernel_equals_neural_tangents_stax(request, case):
    d, nt = request.getfixturevalue("reference_fast" if case in FAST_ARCHS else "reference_slow")
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
    custom = nf.models.Activation("cube", lambda x: x**3, 1.0, 1.0)
    with pytest.raises(ValueError, match="activation='cube'"):
        nf.infinite_kernel(nf.CNN((4,), activation=custom), np.ones((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="no quadrature"):
        nf.infinite_kernel(
            nf.CNN((4,), activation="relu"), np.ones((2, 3, 3, 1)), method="quadrature"
        )
    with pytest.raises(ValueError, match="tol must be a positive number"):
        nf.infinite_kernel(nf.CNN((4,)), np.ones((2, 3, 3, 1)), tol=-1.0)
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


# Slow: it checks how XLA's default code generation rounds, which `make test`'s fast
# compile settings (Makefile) change; `make test-slow` compiles at the defaults.
@pytest.mark.slow
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


# Quadrature activations (docs/theory.md, "Errors through the layers"): erf, GELU and sin
# have closed forms, so their quadrature is checked against them, bound included.
QUAD_ARCHS = [
    dict(readout="flatten", kernel_size=(2, 3)),
    dict(readout="pool", kernel_size=2, pool=2),
    dict(readout="pool", kernel_size=2, strides=(2, 1), padding="VALID"),
]


def _first_fast(first: str, *rest: str) -> list:
    """Parameters: the first in the default suite, the others in `make test-slow`."""
    return [first, *(pytest.param(r, marks=pytest.mark.slow) for r in rest)]


@pytest.mark.parametrize("act", _first_fast("erf", "gelu", "sin"))
def test_cnn_quadrature_is_within_its_bound_of_the_closed_form(act):
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((2, 5, 6, 2)), rng.standard_normal((2, 5, 6, 2))
    for arch in QUAD_ARCHS:
        model = nf.CNN((8, 8), activation=act, bias=True, **arch)
        exact = nf.infinite_kernel(model, x1, x2)
        quad = nf.infinite_kernel(model, x1, x2, method="quadrature", tol=1e-10)
        assert quad.method.startswith("trapezoidal") and exact.method == "closed form"
        for name in ("nngp", "ntk"):
            bound = getattr(quad, f"{name}_error")
            assert bound is not None and bound < 1e-7, (act, arch, name, bound)
            diff = np.abs(np.asarray(getattr(quad, name)) - np.asarray(getattr(exact, name)))
            assert diff.max() <= bound + 1e-13, (act, arch, name)


@pytest.mark.slow  # the tanh CNN run and the quadrature-bound test are the default's
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus"])
def test_a_cnn_on_one_pixel_is_the_mlp_limit(act):
    # 1×1 images, 1×1 windows: each layer is a dense layer on the channels, so the CNN's
    # limit is the MLP's on the channel vectors (`_infinite._block`'s own recursion).
    rng = np.random.default_rng(5)
    X1, X2 = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    X1[2] = X1[0]
    cnn = nf.CNN((8, 8), kernel_size=1, activation=act, readout="flatten", bias=True)
    mlp = nf.MLP((8, 8), act, bias=True)
    for other in (None, X2):
        images = None if other is None else other[:, None, None, :]
        got = nf.infinite_kernel(cnn, X1[:, None, None, :], images)
        want = nf.infinite_kernel(mlp, X1, other)
        for name in ("nngp", "ntk"):
            e1, e2 = getattr(got, f"{name}_error"), getattr(want, f"{name}_error")
            assert e1 is not None and e2 is not None and e1 < 1e-10
            diff = np.abs(np.asarray(getattr(got, name)) - np.asarray(getattr(want, name)))
            assert diff.max() <= e1 + e2, (name, diff.max(), e1, e2)


NT_TANH = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from neural_tangents import stax
d = np.load(sys.argv[1])
out = {}
for c, (readout, strides, padding, pool) in enumerate(json.loads(sys.argv[2])):
    for deg in (50, 200):
        layers = []
        for _ in range(2):
            layers += [stax.Conv(8, (2, 2), tuple(strides), padding=padding, W_std=1.0,
                                 b_std=1.0, parameterization="ntk"),
                       stax.ElementwiseNumerical(jnp.tanh, deg=deg)]
            if pool:
                layers.append(stax.AvgPool((2, 2), (2, 2), padding="VALID"))
        layers += [stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool(),
                   stax.Dense(1, W_std=1.0, b_std=1.0, parameterization="ntk")]
        _, _, kernel_fn = stax.serial(*layers)
        k = kernel_fn(d["x1"], d["x2"], ("nngp", "ntk"))
        out[f"{c}_{deg}_nngp"], out[f"{c}_{deg}_ntk"] = np.asarray(k.nngp), np.asarray(k.ntk)
np.savez(sys.argv[3], **out)
"""


@pytest.mark.slow
def test_tanh_cnn_is_where_neural_tangents_gauss_hermite_converges(tmp_path):
    # neural-tangents has no tanh kernel, only `ElementwiseNumerical`: Gauss–Hermite
    # without a bound. Its error falls as `deg` grows (measured: 1.2e-5 at 50, 1.1e-10 at
    # 200, NTK) towards ntkflow's kernel, whose bound is 1e-12.
    rng = np.random.default_rng(7)
    d = {"x1": rng.standard_normal((2, 4, 5, 2)), "x2": rng.standard_normal((2, 4, 5, 2))}
    archs = [("pool", (1, 1), "SAME", True), ("flatten", (2, 1), "VALID", False)]
    nt = run_neural_tangents(tmp_path, NT_TANH, d, json.dumps(archs))
    for c, (readout, strides, padding, pool) in enumerate(archs):
        model = nf.CNN(
            (8, 8),
            kernel_size=2,
            activation="tanh",
            readout=readout,
            strides=strides,
            padding=padding,
            pool=2 if pool else None,
            bias=True,
        )
        k = nf.infinite_kernel(model, d["x1"], d["x2"])
        for name in ("nngp", "ntk"):
            ours = np.asarray(getattr(k, name))
            assert getattr(k, f"{name}_error") < 1e-11
            coarse, fine = (np.abs(nt[f"{c}_{deg}_{name}"] - ours).max() for deg in (50, 200))
            assert fine < 1e-9 and fine < coarse / 100, (c, name, coarse, fine)


def test_a_cnn_run_compares_its_kernel_with_the_tanh_limit():
    # `[output] limit` / `run(limit=True)` for a CNN (tanh, the default: the quadrature).
    rng = np.random.default_rng(9)
    X = rng.standard_normal((8, 4, 4, 1))
    data = nf.datasets.Dataset(X, np.sign(rng.standard_normal(8)))
    model = nf.CNN((64,), kernel_size=3)
    problem = nf.Problem(model, data, centering="antisymmetric")
    out = nf.run(problem, None, t1=0.5, saveat=4, limit=True, diagnostics=False)
    assert out.certificate.beta_kind == "estimate" and out.solution is not None
    assert out.solution.succeeded and out.verification is not None
    assert out.verification["loss_envelope_w"].holds is not None
    lim = out.summary["limit"]
    theta = nf.infinite_kernel(model, X)
    assert theta.ntk_error is not None and theta.ntk_error < 1e-10
    assert lim["limit_error"] == theta.ntk_error and lim["limit_method"] == theta.method
    assert out.certificate.kernel is not None
    K0, th = np.asarray(out.certificate.kernel.K), np.asarray(theta.ntk)
    distance = np.linalg.norm(K0 - th) / np.linalg.norm(th)
    assert lim["limit_kernel_distance"] == pytest.approx(distance, rel=1e-12)
    assert 0 < distance < 0.5
    assert np.all(np.isfinite(out.dataset["loss_inf"].values))
