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
# # The width study
#
# As a network's widths grow, its empirical NTK at initialisation $K_m = J_0 J_0^\top$
# converges to a deterministic kernel $K_\infty$, the infinite-width NTK (Jacot, Gabriel
# & Hongler 2018). How fast? $K_m$ is an average over the $m$ hidden units of independent
# terms, so its fluctuation around its mean falls like $m^{-1/2}$, and for one hidden
# layer its mean *is* $K_\infty$:
#
# $$\frac{\|K_m - K_\infty\|_F}{\|K_\infty\|_F} \;\approx\; c\, m^{-1/2}.$$
#
# Deeper networks add a bias of order $1/m$ ([Theory](../../theory/), "Scaling laws in
# the width"). This page measures the slope for an MLP and for a CNN, whose width is its
# number of channels, with `infinite_kernel` as the limit.

# %%
import matplotlib.pyplot as plt
import numpy as np

import ntkflow as nf

rng = np.random.default_rng(11)
X = rng.standard_normal((24, 5))
X /= np.linalg.norm(X, axis=1, keepdims=True)  # 24 points on the unit sphere in R⁵
points = nf.datasets.from_arrays(X, np.zeros(len(X)))


def distances(make_model, data, inputs, widths, seeds):
    """‖K_m − K_∞‖_F / ‖K_∞‖_F for each width (rows) and seed (columns)."""
    limit = np.asarray(nf.infinite_kernel(make_model(widths[0]), inputs).ntk)
    out = np.empty((len(widths), len(seeds)))
    for i, m in enumerate(widths):
        for j, seed in enumerate(seeds):
            K = np.asarray(nf.empirical_ntk(nf.Problem(make_model(m), data, key=seed)))
            out[i, j] = np.linalg.norm(K - limit) / np.linalg.norm(limit)
    return out


def slope_with_interval(widths, d, draws=2000):
    """The log-log slope of the mean distance, and a 95 % bootstrap interval over seeds."""
    logm = np.log(widths)
    slope = np.polyfit(logm, np.log(d.mean(axis=1)), 1)[0]
    boot = np.random.default_rng(0)
    picks = boot.integers(0, d.shape[1], size=(draws, d.shape[1]))
    slopes = [np.polyfit(logm, np.log(d[:, p].mean(axis=1)), 1)[0] for p in picks]
    return slope, np.percentile(slopes, [2.5, 97.5])


# %% [markdown]
# ## An MLP with one hidden layer
#
# `MLP((m,), "tanh", bias=True)`: the limit has no closed form for tanh, so
# `infinite_kernel` integrates it by a quadrature and reports a bound on its error.

# %%
widths = np.array([64, 128, 256, 512, 1024, 2048, 4096])
seeds = range(16)
mlp = distances(lambda m: nf.MLP((m,), "tanh", bias=True), points, X, widths, seeds)
mlp_slope, mlp_ci = slope_with_interval(widths, mlp)
bound = nf.infinite_kernel(nf.MLP((8,), "tanh", bias=True), X).ntk_error
print(f"limit's quadrature error bound: {bound:.1e}")
print(f"MLP: slope {mlp_slope:.3f}, 95 % interval [{mlp_ci[0]:.3f}, {mlp_ci[1]:.3f}] (theory −1/2)")

# %% [markdown]
# ## A CNN, in channels
#
# `CNN((C,), kernel_size=3, readout="flatten")` on 8 × 8 digits, tanh (the `CNN`
# default): one convolution with `C` channels. Its limit is the recursion over pixel
# covariances of Novak et al. (2019) and Arora et al. (2019), here with tanh's quadrature
# carried through the windows.

# %%
digits = nf.datasets.digits(12, images=True, seed=0)
images = np.asarray(digits.X)
channels = np.array([16, 32, 64, 128, 256, 512])
cnn = distances(
    lambda c: nf.CNN((int(c),), kernel_size=3, readout="flatten"), digits, images, channels, seeds
)
cnn_slope, cnn_ci = slope_with_interval(channels, cnn)
print(f"CNN: slope {cnn_slope:.3f}, 95 % interval [{cnn_ci[0]:.3f}, {cnn_ci[1]:.3f}] (theory −1/2)")

# %%
fig, ax = plt.subplots(figsize=(6.5, 4.2))
for name, w, d, s in (
    ("MLP, width m", widths, mlp, mlp_slope),
    ("CNN, channels C", channels, cnn, cnn_slope),
):
    mean = d.mean(axis=1)
    ax.loglog(w, mean, "o", label=f"{name}: fitted slope {s:.2f}")
    fit = np.exp(np.polyval(np.polyfit(np.log(w), np.log(mean), 1), np.log(w)))
    ax.loglog(w, fit, "-", lw=1, color=ax.lines[-1].get_color())
    ax.loglog(w, mean[0] * (w / w[0]) ** -0.5, ":", color="gray")
ax.plot([], [], ":", color="gray", label="theory: slope −1/2")
ax.set_xlabel("width")
ax.set_ylabel("‖K_m − K_∞‖_F / ‖K_∞‖_F  (mean over 16 seeds)")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# **Conclusion you can check above:** both fitted slopes are close to the theory's
# $-1/2$, each with a bootstrap interval over the seeds. For a run or a sweep, `[output]
# limit` records the same distances (and those of $\sigma_{\min}$, $\sigma_{\max}$ and
# $\alpha^*$) per point, and a sweep over `model.width` fits them ([Sweeps](../../sweeps/),
# "The width study").


# %%
# The conclusion, checked each time this page is built:
assert -0.65 < mlp_slope < -0.35 and -0.65 < cnn_slope < -0.35
assert mlp_ci[0] < -0.5 < mlp_ci[1] or abs(mlp_slope + 0.5) < 0.05
