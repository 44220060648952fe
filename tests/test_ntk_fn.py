"""`empirical_ntk_fn`, neural-tangents' empirical kernel function on current JAX: the same
values and layout as neural-tangents 0.6.5 itself (run in `.venv-nt`, jax 0.4.25, on the
same function, inputs and weights), and as a direct `jax.jacfwd` contraction."""

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf
from helpers import fast_and_rest

ROOT = Path(__file__).resolve().parent.parent
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"

# The network, written once and run by both libraries: a 2-hidden-layer tanh/sin net with
# k = 3 outputs, NTK parametrisation.
NET = """
import jax.numpy as jnp

def f(params, x):
    h = x
    for i, (W, b) in enumerate(params):
        z = h @ W / jnp.sqrt(W.shape[0]) + b[None, :]
        h = z if i == len(params) - 1 else (jnp.tanh(z) if i == 0 else jnp.sin(z))
    return h
"""

# (trace_axes, diagonal_axes, x2 given, implementation)
CASES = [
    ((-1,), (), True, 1),
    ((-1,), (), False, 1),
    ((), (), True, 1),
    ((), (-1,), True, 1),
    ((-1,), (0,), False, 1),
    ((), (0, 1), False, 1),
    ((-1,), (), True, 2),
    ((), (), False, 2),
    ((-1,), (), True, 3),
]

# Every implementation, trace and diagonal layout, with and without x2, in the default
# suite; the other combinations in the slow one (`make test-slow`, run by CI).
FAST_CASES = (3, 5, 7, 8)

NT_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import neural_tangents as nt
{net}
data = np.load(sys.argv[1])
params = [(jnp.asarray(data[f"W{{i}}"]), jnp.asarray(data[f"b{{i}}"])) for i in range(3)]
out = {{}}
for c, (trace, diag, given, impl) in json.loads(sys.argv[2]).items():
    fn = nt.empirical_ntk_fn(f, trace_axes=tuple(trace), diagonal_axes=tuple(diag),
                             vmap_axes=0, implementation=impl)
    out[c] = np.asarray(fn(data["x1"], data["x2"] if given else None, params))
np.savez(sys.argv[3], **out)
"""


def _net():
    scope: dict = {}
    exec(NET, scope)
    return scope["f"]


def _inputs():
    rng = np.random.default_rng(7)
    dims = [4, 6, 5, 3]
    params = [
        (rng.standard_normal((a, b)), 0.3 * rng.standard_normal(b))
        for a, b in itertools.pairwise(dims)
    ]
    return params, rng.standard_normal((5, 4)), rng.standard_normal((4, 4))


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("cases", fast_and_rest(FAST_CASES, len(CASES)))
def test_equals_neural_tangents(tmp_path, cases):
    assert NT_PYTHON.exists(), "neural-tangents' venv is missing: run make .venv-nt/.stamp"
    params, x1, x2 = _inputs()
    arrays: dict[str, Any] = {"x1": x1, "x2": x2}
    for i, (W, b) in enumerate(params):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    np.savez(tmp_path / "in.npz", **arrays)
    chosen = {c: CASES[c] for c in cases}
    spec = {c: [list(t), list(d), g, impl] for c, (t, d, g, impl) in chosen.items()}
    script = tmp_path / "nt_reference.py"
    script.write_text(NT_SCRIPT.format(net=NET))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    proc = subprocess.run(
        [
            str(NT_PYTHON),
            str(script),
            str(tmp_path / "in.npz"),
            json.dumps(spec),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    f = _net()
    jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    for c, (trace, diag, given, impl) in chosen.items():
        for vmap_axes in (0, None):
            fn = nf.empirical_ntk_fn(
                f,
                trace_axes=trace,
                diagonal_axes=diag,
                vmap_axes=vmap_axes,
                implementation=impl,
            )
            K = fn(jnp.asarray(x1), jnp.asarray(x2) if given else None, jparams)
            assert _rel(K, ref[str(c)]) < 1e-10, (CASES[c], vmap_axes)
    assert sorted(int(c) for c in ref.files) == sorted(chosen)


def test_full_kernel_equals_jacfwd_and_blocks_agree():
    params, x1, x2 = _inputs()
    f = _net()
    jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]

    def flat_jac(x):
        J = jax.jacfwd(lambda p: f(p, jnp.asarray(x)).reshape(-1))(jparams)
        return np.concatenate(
            [np.asarray(a).reshape(a.shape[0], -1) for a in jax.tree_util.tree_leaves(J)], 1
        )

    full = (flat_jac(x1) @ flat_jac(x2).T).reshape(5, 3, 4, 3).transpose(0, 2, 1, 3)
    K = nf.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0)(x1, x2, jparams)
    assert _rel(K, full) < 1e-12
    traced = nf.empirical_ntk_fn(f, vmap_axes=0)(x1, x2, jparams)
    assert _rel(traced, np.einsum("abii->ab", full) / 3) < 1e-12  # a mean over k = 3
    blocked = nf.empirical_ntk_fn(f, vmap_axes=0, batch_size=2)(x1, x2, jparams)
    assert _rel(blocked, traced) < 1e-13
    same = nf.empirical_ntk_fn(f, vmap_axes=0, batch_size=2)(x1, None, jparams)
    np.testing.assert_allclose(same, same.T, rtol=1e-13)


def test_bad_arguments_are_named():
    f = _net()
    params, x1, _ = _inputs()
    with pytest.raises(ValueError, match=r"trace_axes=\(5,\) names axis 5"):
        nf.empirical_ntk_fn(f, trace_axes=(5,))(x1, None, params)
    with pytest.raises(ValueError, match="share an axis"):
        nf.empirical_ntk_fn(f, trace_axes=(-1,), diagonal_axes=(1,))(x1, None, params)
    with pytest.raises(ValueError, match="implementation='fast'"):
        nf.empirical_ntk_fn(f, implementation="fast")
    with pytest.raises(ValueError, match="batch_size must be"):
        nf.empirical_ntk_fn(f, batch_size=0)
