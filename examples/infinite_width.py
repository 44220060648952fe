"""How fast the empirical NTK approaches its infinite-width limit.

    .venv/bin/python examples/infinite_width.py [--depth 1|2] [--seeds 16]

For MLPs with tanh, relu and erf activations (biases, NTK parametrisation) on 24 points of
the unit sphere in R^5: the mean over seeds of `‖K_m − K_∞‖_F/‖K_∞‖_F` at each width `m`,
`K_∞ = infinite_kernel(...)`, and the log-log slope against `m` (theory: −1/2), for three
disjoint sets of seeds. The table in docs/sweeps.md, "The width study", is its output.
"""

import argparse

import numpy as np

import ntkflow as nf


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=16)
    args = ap.parse_args()
    X = np.random.default_rng(11).standard_normal((24, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = nf.datasets.from_arrays(X, np.zeros(len(X)))
    widths = (
        [64, 128, 256, 512, 1024, 2048, 4096]
        if args.depth == 1
        else [128, 256, 512, 1024, 2048, 4096]
    )
    print(f"depth {args.depth}, widths {widths}, {args.seeds} seeds per set")
    print(
        "| activation | seeds | mean ‖K_m − K_∞‖/‖K_∞‖ at the smallest and largest width | slope |"
    )
    print("|---|---|---|---|")
    for name in ("tanh", "relu", "erf"):
        limit = np.asarray(nf.infinite_kernel(nf.MLP((8,) * args.depth, name, bias=True), X).ntk)
        for first in (0, 1000, 2000):
            means = []
            for m in widths:
                dists = []
                for seed in range(first, first + args.seeds):
                    model = nf.MLP((m,) * args.depth, name, bias=True)
                    K = np.asarray(nf.empirical_ntk(nf.Problem(model, data, key=seed)))
                    dists.append(np.linalg.norm(K - limit) / np.linalg.norm(limit))
                means.append(float(np.mean(dists)))
            slope = np.polyfit(np.log(widths), np.log(means), 1)[0]
            seeds = f"{first}–{first + args.seeds - 1}"
            print(f"| {name} | {seeds} | {means[0]:.4f} → {means[-1]:.4f} | {slope:.3f} |")


if __name__ == "__main__":
    main()
