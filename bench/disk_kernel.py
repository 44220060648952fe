"""Benchmark: kernels larger than memory (`kernel_to_disk`, `predict.gp_inference` on a
`DiskArray`).

    python bench/disk_kernel.py throughput [--n 8192]
    python bench/disk_kernel.py large [--n 60000] [--store /work/ntkflow-disk-bench]

`throughput`: the infinite-width NTK and NNGP of an MLP (2 × 512, ReLU, biases) of `n`
points with themselves and with `n` others, in memory (`infinite_kernel`) against block
by block into a zarr store (`kernel_to_disk`, blocks of 2048), each in a fresh
subprocess, same machine, same run; the ratio of the wall times and the largest
difference between the two.

`large`: the same kernel (NTK only) on `n` = 60,000 digits-sized points (scikit-learn's
8×8 digits plus noise; float64: 28.8 GB, more than this machine's RAM) written to disk,
then the NTK posterior mean (`gp_inference`, `diag_reg=0.1`, conjugate gradients to a
true relative residual of 1e-8) on 1,000 held-out points from it: wall time of each
step, the solver's passes and residual (its log), the
test accuracy of the mean's sign (even digits +1, odd −1) and the process's peak
resident memory. Writes `bench/results/disk_kernel_<mode>.md` and `.json`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COMMON = r"""
import json, resource, sys, time
import numpy as np
import ntkflow as nf

def points(n, seed):
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(d.data), n)
    X = d.data[pick] / 16.0 + 0.25 * rng.standard_normal((n, 64))
    X = X / np.linalg.norm(X, axis=1, keepdims=True) * 8.0  # ‖x‖²/d = 1
    return X, np.where(d.target[pick] % 2 == 0, 1.0, -1.0)

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

model = nf.MLP((512, 512), "relu", bias=True)
"""

THROUGHPUT = r"""
mode, pair, n, store, out = sys.argv[1:6]
n = int(n)
X, _ = points(n, 0)
X2 = None if pair == "train" else points(n, 1)[0]  # a kernel of a set with itself, or not
nf.infinite_kernel(model, X[:64])  # compile
start = time.perf_counter()
if mode == "memory":
    k = nf.infinite_kernel(model, X, X2)
    K = np.asarray(k.ntk); np.asarray(k.nngp)
else:
    d = nf.kernel_to_disk(model, X, X2, path=store, get=("nngp", "ntk"), block=2048,
                          progress=False, overwrite=True)
wall = time.perf_counter() - start
if mode == "memory":
    np.save(out, K)
print(json.dumps({"wall_s": wall, "peak_mib": peak_mib()}))
"""

LARGE = r"""
n, store = int(sys.argv[1]), sys.argv[2]
X, y = points(n, 0)
Xt, yt = points(1000, 1)
out = {"n": n, "bytes": 8 * n * n}
t = time.perf_counter()
k = nf.kernel_to_disk(model, X, path=store + "/train", get="ntk", block=4000, progress=True)
out["write_train_s"] = time.perf_counter() - t
t = time.perf_counter()
kt = nf.kernel_to_disk(model, Xt, X, path=store + "/test", get="ntk", block=4000,
                       progress=True)
out["write_test_s"] = time.perf_counter() - t
out["peak_after_write_mib"] = peak_mib()
import logging
records = []
handler = logging.Handler()
handler.emit = lambda record: records.append(record.getMessage())
logging.getLogger("ntkflow.disk").addHandler(handler)
logging.getLogger("ntkflow.disk").setLevel(logging.INFO)
solver = nf.DiskSolver(rank=256, rtol=1e-8, maxiter=400)
t = time.perf_counter()
predict = nf.predict.gp_inference(k, y[:, None], diag_reg=0.1, solver=solver)
mean = np.asarray(predict("ntk", kt))[:, 0]
out["gp_inference_s"] = time.perf_counter() - t
out["solver"] = records
out["test_accuracy"] = float(np.mean(np.sign(mean) == yt))
out["peak_mib"] = peak_mib()
print(json.dumps(out))
"""


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", COMMON + script, *args], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def throughput(n: int) -> dict:
    import numpy as np
    import zarr

    rows = []
    for pair in ("train", "cross"):
        with tempfile.TemporaryDirectory() as tmp:
            ref = Path(tmp) / "K.npy"
            memory = _run(THROUGHPUT, "memory", pair, str(n), "-", str(ref))
            disk = _run(THROUGHPUT, "disk", pair, str(n), str(Path(tmp) / "store"), "-")
            K = np.load(ref)
            stored = np.asarray(zarr.open_array(Path(tmp) / "store" / "ntk", mode="r")[...])
            diff = float(np.max(np.abs(stored - K)) / np.max(np.abs(K)))
        ratio = disk["wall_s"] / memory["wall_s"]
        rows.append(
            {"pair": pair, "memory": memory, "disk": disk, "ratio": ratio, "max_rel_diff": diff}
        )
    return {"n": n, "rows": rows}


def _markdown(mode: str, result: dict) -> str:
    lines = [f"# `bench/disk_kernel.py {mode}`", ""]
    if mode == "throughput":
        lines += [
            f"MLP (2 × 512, ReLU, biases) infinite-width NNGP + NTK, n = {result['n']} points "
            "with themselves (train: the disk computes the blocks on and above the diagonal) "
            "or with another n (cross), float64; each in a fresh process.",
            "",
            "| kernel | in memory s | in memory peak MiB | on disk s | on disk peak MiB "
            "| disk / memory | max rel. diff |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            m, d = r["memory"], r["disk"]
            lines.append(
                f"| {r['pair']} | {m['wall_s']:.2f} | {m['peak_mib']:.0f} | {d['wall_s']:.2f} "
                f"| {d['peak_mib']:.0f} | **{r['ratio']:.2f}** | {r['max_rel_diff']:.1e} |"
            )
    else:
        lines += ["```json", json.dumps(result, indent=2), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "large"])
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--store", default=str(ROOT.parent / "ntkflow-disk-bench"))
    args = parser.parse_args()
    if args.mode == "throughput":
        result = throughput(args.n or 8192)
    else:
        result = _run(LARGE, str(args.n or 60000), args.store)
    out = HERE / "results" / f"disk_kernel_{args.mode}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(args.mode, result))
    print(_markdown(args.mode, result))


if __name__ == "__main__":
    main()
