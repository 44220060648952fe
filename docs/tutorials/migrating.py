# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Migrating from neural-tangents
#
# neural-tangents was archived in May 2025, and its last release (0.6.5) does not import
# on current JAX. ntkflow has its functions with the same signatures and array layouts,
# each tested against neural-tangents 0.6.5 run live (to 1e-10 in float64); the
# [migration table](../../models/) lists what differs. Here is a typical script, before
# and after.
#
# **Before** (neural-tangents 0.6.5, JAX ≤ 0.4.25; not run here):
#
# ```python
# import jax
# import neural_tangents as nt
# from neural_tangents import stax
#
# init_fn, apply_fn, kernel_fn = stax.serial(
#     stax.Dense(512, W_std=1.0, b_std=1.0, parameterization="ntk"), stax.Relu(),
#     stax.Dense(512, W_std=1.0, b_std=1.0, parameterization="ntk"), stax.Relu(),
#     stax.Dense(1, W_std=1.0, b_std=1.0, parameterization="ntk"),
# )
# _, params = init_fn(jax.random.PRNGKey(0), x_train.shape)
#
# # the infinite-width ensemble: mean and covariance at times ts
# predict_fn = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
# ntk = predict_fn(t=ts, x_test=x_test, get="ntk", compute_cov=True)
#
# # one finite network: its empirical kernel, and the outputs of its linearisation
# ntk_fn = nt.empirical_ntk_fn(apply_fn, vmap_axes=0)
# k_dd, k_td = ntk_fn(x_train, None, params), ntk_fn(x_test, x_train, params)
# predict = nt.predict.gradient_descent_mse(k_dd, y_train)
# fx_train, fx_test = predict(ts, apply_fn(params, x_train), apply_fn(params, x_test), k_td)
# f_lin = nt.linearize(apply_fn, params)
# ```
#
# **After** (ntkflow, current JAX): the imports change, and the network is an ntkflow
# `MLP`, which is its own `kernel_fn` (its infinite-width kernels) and gives the
# `apply_fn`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ntkflow as nf

data = nf.datasets.digits(64, classes=(3, 8), n_test=250, seed=0)  # targets ±1
x_train, y_train = np.asarray(data.X), np.asarray(data.y).reshape(-1, 1)
assert data.X_test is not None and data.y_test is not None
x_test, y_test = np.asarray(data.X_test), np.asarray(data.y_test).reshape(-1, 1)
ts = np.logspace(-1, 3, 25)  # (25 times, and the four below, for the comparison)
ts = np.unique(np.concatenate([ts, [1.0, 10.0, 100.0, 1000.0]]))

model = nf.MLP((512, 512), "relu", bias=True)  # the same network, NTK parametrisation
params, _ = model.init_for(jax.random.PRNGKey(0), x_train.shape[1:])


def apply_fn(p, x):
    return model.apply(p, None, x).reshape(len(x), 1)


# the infinite-width ensemble: mean and covariance at times ts
predict_fn = nf.predict.gradient_descent_mse_ensemble(model, x_train, y_train)
ntk = predict_fn(t=ts, x_test=x_test, get="ntk", compute_cov=True)

# one finite network: its empirical kernel, and the outputs of its linearisation
ntk_fn = nf.empirical_ntk_fn(apply_fn, vmap_axes=0)
k_dd, k_td = ntk_fn(x_train, None, params), ntk_fn(x_test, x_train, params)
predict = nf.predict.gradient_descent_mse(k_dd, y_train)
fx_train, fx_test = predict(ts, apply_fn(params, x_train), apply_fn(params, x_test), k_td)
f_lin = nf.linearize(apply_fn, params)

# %% [markdown]
# Everything above ran. To see that the pieces agree, train the finite network and its
# linearisation `f_lin` by gradient descent on neural-tangents' loss
# $\|f(x) - y\|^2 / (2N)$, with a step $\eta$ at a quarter of the largest stable one
# (`max_learning_rate`, also neural-tangents'): after $s$ steps both should sit near the
# gradient-flow predictions at $t = \eta s$.

# %%
per_unit = int(np.ceil(4 / float(nf.predict.max_learning_rate(k_dd))))  # steps per unit of t
eta, steps = 1 / per_unit, 1000 * per_unit
print(f"η = 1/{per_unit}, {steps} steps")


def loss(f):
    return lambda p: 0.5 * jnp.mean((f(p, x_train) - y_train) ** 2)


marks = {t * per_unit: t for t in (1, 10, 100, 1000)}


def train(f):
    step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - eta * g, p, jax.grad(loss(f))(p)))
    p, out = params, {}
    for s in range(1, steps + 1):
        p = step(p)
        if s in marks:
            out[marks[s]] = np.asarray(f(p, x_test))
    return out


network, linearised = train(apply_fn), train(f_lin)


def test_mse(pred):
    return float(np.mean((np.asarray(pred) - y_test) ** 2))


fig, ax = plt.subplots(figsize=(7, 4))
ax.semilogx(ts, [test_mse(m) for m in ntk.mean], label="infinite width: ensemble mean")
ax.semilogx(ts, [test_mse(m) for m in fx_test], "--", label="this network's empirical NTK")
ax.semilogx(list(network), [test_mse(v) for v in network.values()], "o", label="network, GD")
ax.semilogx(
    list(linearised),
    [test_mse(v) for v in linearised.values()],
    "x",
    ms=9,
    label="linearisation, GD",
)
ax.set_xlabel("t = η · steps")
ax.set_ylabel("test mean squared error")
ax.set_title("digits 3 vs 8, MLP 64 → 512 → 512 → 1, ReLU")
ax.legend(fontsize=8)

# %%
print("     t   MSE: ensemble  empirical flow  network  linearised   |lin − flow|  |net − lin|")
for t in network:
    i = int(np.flatnonzero(ts == t)[0])
    print(
        f"{t:6.0f}   {test_mse(ntk.mean[i]):13.3f} {test_mse(fx_test[i]):15.3f} "
        f"{test_mse(network[t]):8.3f} {test_mse(linearised[t]):11.3f}"
        f"   {np.max(np.abs(linearised[t] - fx_test[i])):12.2g}"
        f"  {np.max(np.abs(network[t] - linearised[t])):11.2g}"
    )
accuracy = np.mean(np.sign(np.asarray(ntk.mean[-1])) == y_test)
print(f"infinite-width ensemble at t = {ts[-1]:g}: test accuracy {accuracy:.3f}")

# %% [markdown]
# **Conclusions you can check above:**
#
# - the linearisation trained by gradient descent is the gradient-flow prediction of the
#   empirical kernel (`|lin − flow|`: gradient descent's step error, largest at first in
#   the fastest modes, then gone), so
#   `linearize`, `empirical_ntk_fn` and `gradient_descent_mse` agree with one another;
# - the network follows its linearisation closely early on, and drifts from it as it
#   trains (`|net − lin|`): width 512 is lazy, not infinitely so;
# - all four reach a similar test error, and the infinite-width ensemble classifies the
#   test digits as printed.
#
# The script changed only in its imports and in how the network is built.


# %%
# The conclusions, checked each time this page is built:
later = [t for t in network if t >= 10]
assert all(
    np.max(np.abs(linearised[t] - fx_test[np.flatnonzero(ts == t)[0]])) < 1e-3 for t in later
)
assert accuracy > 0.9
