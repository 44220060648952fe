"""Benchmark: the infinite-width CNN kernel (`infinite_kernel(CNN(...))`) against
neural-tangents 0.6.5's `stax` kernel_fn on the same images: wall time (one call after a
warm-up call on 8 images, which compiles) and the process's peak resident memory, each in
a fresh subprocess, and the largest relative difference between the two kernels.

    python bench/cnn_limit.py [--nt-python .venv-nt/bin/python] [--sizes 256 1024]

Images: scikit-learn's 8×8 digits (1,797 of them: larger n repeat them, shifted by noise).
Architecture: two 3×3 SAME convolutions, ReLU, biases; flatten or global average pooling.
Writes `bench/results/<out>.md` and `.json` (`--out`, default `cnn_limit`); the
measurements the docs cite are `cnn_limit_flatten` and `cnn_limit_pool`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORKER = r"""
import json, resource, sys, time
import numpy as np
lib, readout, path, out, dtype = sys.argv[1:6]
X = np.load(path).astype(dtype)
if lib == "ntkflow":
    import ntkflow as nf
    model = nf.CNN((64, 64), kernel_size=3, activation="relu", readout=readout, bias=True)
    run = lambda x: np.asarray(nf.infinite_kernel(model, x).ntk)
else:
    import jax
    jax.config.update("jax_enable_x64", dtype == "float64")
    from neural_tangents import stax
    layers = []
    for _ in range(2):
        layers += [stax.Conv(64, (3, 3), padding="SAME", W_std=1.0, b_std=1.0,
                             parameterization="ntk"), stax.Relu()]
    layers += [stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool(),
               stax.Dense(1, W_std=1.0, b_std=1.0, parameterization="ntk")]
    _, _, kernel_fn = stax.serial(*layers)
    run = lambda x: np.asarray(kernel_fn(x, None, "ntk"))
run(X[:8])
start = time.perf_counter()
K = run(X)
wall = time.perf_counter() - start
np.save(out, K)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_mib": peak}))
"""


def _images(n: int):
    import numpy as np
    from sklearn.datasets import load_digits

    X = load_digits().images.astype(np.float64) / 16.0
    rng = np.random.default_rng(0)
    reps = -(-n // len(X))
    X = np.concatenate(
        [X + (0 if r == 0 else 0.05 * rng.standard_normal(X.shape)) for r in range(reps)]
    )
    return X[:n, :, :, None]


TIMEOUT_S = 3 * 3600  # per library and case (pooling at n = 4,096: 46 and 98 min here)


def _run(python: str, lib: str, readout: str, images: Path, out: Path, dtype: str) -> dict:
    x64 = "1" if dtype == "float64" else "0"
    env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "NTKFLOW_X64": x64}
    proc = subprocess.run(
        [python, "-c", WORKER, lib, readout, str(images), str(out), dtype],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    if proc.returncode == -9:  # the kernel's OOM killer: no swap here
        return {"error": "killed (out of memory)"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["?"]
        memory = [line for line in lines if "RESOURCE_EXHAUSTED" in line or "Out of memory" in line]
        return {"error": f"exit {proc.returncode}: {(memory or lines[-1:])[0][:160]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _case(nt_python: str, tmp: Path, readout: str, n: int, dtype: str) -> dict:
    import numpy as np

    images = tmp / f"x{n}.npy"
    np.save(images, _images(n))
    ours = _run(sys.executable, "ntkflow", readout, images, tmp / "a.npy", dtype)
    theirs = _run(nt_python, "nt", readout, images, tmp / "b.npy", dtype)
    diff = None
    if "error" not in ours and "error" not in theirs:
        a, b = np.load(tmp / "a.npy"), np.load(tmp / "b.npy")
        diff = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    return {
        "dtype": dtype,
        "readout": readout,
        "n": n,
        "ntkflow": ours,
        "nt": theirs,
        "max_rel_diff": diff,
    }


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nt-python", default=str(ROOT / ".venv-nt" / "bin" / "python"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--readouts", nargs="+", default=["flatten", "pool"])
    parser.add_argument("--dtypes", nargs="+", default=["float64"])
    parser.add_argument("--out", default="cnn_limit", help="results/<out>.{json,md}")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes:
            for readout in args.readouts:
                for n in args.sizes:
                    rows.append(_case(args.nt_python, Path(tmp), readout, n, dtype))
                    print(json.dumps(rows[-1]), flush=True)
    (HERE / "results" / f"{args.out}.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "# Infinite-width CNN kernel: ntkflow against neural-tangents 0.6.5 (CPU)",
        "",
        f"`python bench/cnn_limit.py {' '.join(sys.argv[1:])}`: two 3×3 SAME convolutions, "
        "ReLU, biases; digits 8×8.",
        "",
        "| dtype | readout | n | ntkflow s | ntkflow peak MiB | neural-tangents s "
        "| neural-tangents peak MiB | max rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict, key: str) -> str:
        return r["error"] if "error" in r else f"{r[key]:.3g}"

    for r in rows:
        d = "—" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        lines.append(
            f"| {r['dtype']} | {r['readout']} | {r['n']} | {cell(r['ntkflow'], 'wall_s')} "
            f"| {cell(r['ntkflow'], 'peak_mib')} | {cell(r['nt'], 'wall_s')} "
            f"| {cell(r['nt'], 'peak_mib')} | {d} |"
        )
    (HERE / "results" / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
