"""Small problems of every model family, for tests that must hold on all of them."""

import jax
import jax.numpy as jnp
import numpy as np

import ntkflow as nf


def tiny_data(n=6, d=3, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal((n,) if k == 1 else (n, k))
    return nf.datasets.from_arrays(X, y)


def _mlp2_apply(params, X):
    h = jnp.tanh(X @ params["W1"] / jnp.sqrt(X.shape[1]))
    return h @ params["w2"] / jnp.sqrt(h.shape[1])


def from_apply_model(d=3, width=5, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params0 = {
        "W1": jax.random.normal(k1, (d, width)),
        "w2": jax.random.normal(k2, (width,)),
    }
    return nf.from_apply(_mlp2_apply, params0, smooth=True, name="mlp2")


FAMILIES = {
    "shallow-hidden": lambda: (nf.Shallow(width=7, activation="tanh"), tiny_data()),
    "shallow-all": lambda: (nf.Shallow(width=7, activation="softplus", train="all"), tiny_data()),
    "mlp": lambda: (nf.MLP((5, 4), activation="gelu"), tiny_data()),
    "mlp-bias": lambda: (nf.MLP((5,), activation="sigmoid", bias=True), tiny_data()),
    "mlp-vector": lambda: (nf.MLP((6, 5), activation="erf", out_dim=2), tiny_data(k=2)),
    "from_apply": lambda: (from_apply_model(), tiny_data()),
}
CENTERINGS = ("none", "subtract", "antisymmetric")


def make(family, centering="none", alpha=1.0, key=0):
    model, data = FAMILIES[family]()
    return nf.Problem(model, data, alpha=alpha, centering=centering, key=key)


def linear_problem(alpha):
    """A model linear in its parameters (`f(w) = Xw`): its gradient flow is the tangent
    flow, so any exponential integrator is exact on it."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((7, 12))
    data = nf.datasets.from_arrays(X, rng.standard_normal(7))
    w_init = {"w": jnp.asarray(rng.standard_normal(12) / 4)}
    model = nf.from_apply(lambda p, X: X @ p["w"], w_init)
    return nf.Problem(model, data, alpha=alpha)
