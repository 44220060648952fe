"""neural-tangents 0.6.5's empirical NTK on the benchmarks' MLP or CNN, in its own venv.

Run by `bench/ntk.py` with `.venv-nt/bin/python` (jax 0.4.25, the last JAX on which all
three of its implementations run). Reads the inputs and weights ntkflow used (saved by the
driver), times `nt.empirical_ntk_fn(..., implementation=IMPL)` and compares its kernel to
ntkflow's. Prints one JSON line.
"""

import json
import resource
import sys
import time

import numpy as np


def main() -> None:
    spec = json.loads(sys.argv[sys.argv.index("--worker") + 1])
    if spec["dtype"] == "float64":
        from jax import config

        config.update("jax_enable_x64", True)
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    saved = np.load(spec["save"] + ".params.npz")
    dtype = np.float32 if spec["dtype"] == "float32" else np.float64
    X = jnp.asarray(saved["X"], dtype)
    Ws = [saved[f"W{i}"] for i in range(len([k for k in saved.files if k.startswith("W")]))]
    layers, params = [], []
    if spec.get("model") == "cnn":
        # bench/cnn.py's CNN: SAME 3×3 convolutions (HWIO weights, as ntkflow's), erf,
        # flatten (NHWC order, as ntkflow's), dense readout.
        for W in Ws[:-1]:
            layers += [
                stax.Conv(
                    W.shape[-1],
                    (3, 3),
                    padding="SAME",
                    W_std=1.0,
                    b_std=None,
                    parameterization="ntk",
                ),
                stax.Erf(),
            ]
            params += [(jnp.asarray(W, dtype), None), ()]
        layers += [
            stax.Flatten(),
            stax.Dense(Ws[-1].shape[0], W_std=1.0, b_std=None, parameterization="ntk"),
        ]
        params += [(), (jnp.asarray(Ws[-1].T, dtype), None)]
    else:
        for i, W in enumerate(Ws):
            layers.append(stax.Dense(W.shape[0], W_std=1.0, b_std=None, parameterization="ntk"))
            params.append((jnp.asarray(W.T, dtype), None))
            if i < len(Ws) - 1:
                layers.append(stax.Elementwise(jnp.tanh))
                params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    kfn = jax.jit(
        nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, implementation=spec["impl"])
    )

    def run():
        return kfn(X, None, params).block_until_ready()

    t0 = time.perf_counter()
    run()  # warm-up: compiles
    repeats = 1 if time.perf_counter() - t0 > 20.0 else spec["repeats"]
    times = []
    # As bench/ntk.py's `_timed`: fast calls repeated until they fill 1 s (50 at most).
    while len(times) < repeats or (sum(times) < 1.0 and len(times) < 50):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    K = np.asarray(run(), dtype=np.float64)
    ours = np.load(spec["save"] + ".K.npy").astype(np.float64)
    diff = float(np.linalg.norm(K - ours) / np.linalg.norm(ours))
    print(
        json.dumps(
            {
                "seconds": sorted(times)[len(times) // 2],
                "times": times,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "rel_diff": diff,
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
