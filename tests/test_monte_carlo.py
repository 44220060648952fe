"""`monte_carlo_kernel_fn` against neural-tangents 0.6.5 run live in `.venv-nt` (the same
init and apply functions, key and sample counts: the same networks, to 1e-10), and its
mean against the infinite-width kernel, which a one-hidden-layer network's expected
kernel equals exactly, within its standard errors."""

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from helpers import defined, run_neural_tangents

NET = """
import jax.numpy as jnp
from jax import random

DIMS = (8, 3)

def init_fn(key, shape):
    params, d = [], shape[-1]
    for width in DIMS:
        key, k1, k2 = random.split(key, 3)
        params.append((random.normal(k1, (d, width)), random.normal(k2, (width,))))
        d = width
    return (shape[0], DIMS[-1]), params

def apply_fn(params, x, **kwargs):
    h = x
    for i, (W, b) in enumerate(params):
        h = h @ W / jnp.sqrt(W.shape[0]) + b[None, :]
        h = jnp.tanh(h) if i < len(params) - 1 else h
    return h
"""

# (x2 given, get, n_samples, trace_axes)
CASES = [
    (False, None, 5, [-1]),
    (True, "ntk", 3, [-1]),
    (True, ["nngp"], [1, 4], []),
    (False, "nngp", 2, []),
]

NT_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
# jax ≥ 0.5 draws with the partitionable threefry by default: the same bits here.
jax.config.update("jax_threefry_partitionable", True)
import numpy as np
import neural_tangents as nt
{net}
d = np.load(sys.argv[1])
out = {{}}
for c, (given, get, n, trace) in enumerate(json.loads(sys.argv[2])):
    fn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(11), n,
                                  trace_axes=tuple(trace))
    get = tuple(get) if isinstance(get, list) else get
    res = fn(d["x1"], d["x2"] if given else None, get)
    res = list(res) if isinstance(n, list) else [res]
    for i, r in enumerate(res):
        for name, k in (r._asdict() if hasattr(r, "_asdict") else {{"one": r}}).items():
            out[f"{{c}}_{{i}}_{{name}}"] = np.asarray(k)
np.savez(sys.argv[3], **out)
"""


def _fns():
    return defined(NET, "init_fn", "apply_fn")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    rng = np.random.default_rng(5)
    d: dict[str, Any] = {"x1": rng.standard_normal((4, 5)), "x2": rng.standard_normal((3, 5))}
    tmp = tmp_path_factory.mktemp("nt_mc")
    return d, run_neural_tangents(tmp, NT_SCRIPT.format(net=NET), d, json.dumps(CASES))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_monte_carlo_kernel_fn_equals_neural_tangents(reference, case):
    d, nt = reference
    given, get, n, trace = CASES[case]
    init_fn, apply_fn = _fns()
    fn = nf.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(11), n, trace_axes=trace)
    get = tuple(get) if isinstance(get, list) else get
    res = fn(d["x1"], d["x2"] if given else None, get)
    res = list(res) if isinstance(n, list) else [res]
    assert len(res) == (len(n) if isinstance(n, list) else 1)
    for i, r in enumerate(res):
        for name, k in (r._asdict() if hasattr(r, "_asdict") else {"one": r}).items():
            want = nt[f"{case}_{i}_{name}"]
            assert np.shape(k) == want.shape
            np.testing.assert_allclose(np.asarray(k), want, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_the_mean_is_within_its_standard_errors_of_the_infinite_width_kernel():
    # One hidden layer: the expected empirical NNGP and NTK equal the infinite-width ones
    # at any width (the hidden units are independent), so only sampling separates them.
    model = nf.MLP((32,), activation="relu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    x = jnp.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))
    limit = nf.infinite_kernel(model, x)

    def init_fn(key, shape):
        return None, model.init(key, shape[-1])[0]

    def apply_fn(params, X):
        return model.apply(params, None, X).reshape(X.shape[0], -1)  # (points, outputs)

    fn = nf.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 400)
    est = fn(x, None, ("nngp", "ntk"), return_standard_error=True)
    for name in ("nngp", "ntk"):
        mean, se = (
            np.asarray(getattr(est, name).mean),
            np.asarray(getattr(est, name).standard_error),
        )
        z = (mean - np.asarray(getattr(limit, name))) / se
        assert np.all(se > 0) and np.all(np.isfinite(z))
        assert np.max(np.abs(z)) < 4.5, (name, np.max(np.abs(z)))
        assert 0.3 < np.mean(z**2) < 2.5, (name, np.mean(z**2))
    # One sample has no standard error, and says so.
    single = nf.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 1)
    assert np.all(np.isnan(single(x, None, "ntk", return_standard_error=True).standard_error))


def test_bad_sample_counts_are_refused():
    init_fn, apply_fn = _fns()
    for bad in (0, -3, [], [2, 0], True):
        with pytest.raises(ValueError, match="n_samples must be"):
            nf.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), bad)
    fn = nf.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match="get must be"):
        fn(jnp.ones((2, 5)), None, "cntk")
