"""Benchmark: the empirical NTK, ntkflow's methods against plain JAX and neural-tangents.

    python bench/ntk.py [--quick] [--nt-python .venv-nt/bin/python] [--out bench/results]

Every timing runs in a fresh subprocess (one dtype per process, as JAX's float64 switch
is global), as the median of `--repeats` calls after one warm-up call that compiles. The
machine's GEMM throughput is measured in the same run, so every time is also reported as
a ratio to the structured computation's GEMM limit `2n²·Σ_l(fan_in_l + fan_out_l)` FLOPs
at that throughput. Peak memory is the subprocess's maximum resident set size.

Writes `OUT/ntk.json` (every measurement) and `OUT/ntk.md` (the table).
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (name, d, widths, activation, model kind)
MLP = {"kind": "mlp", "d": 64, "widths": [512, 512], "activation": "tanh"}
SEED = {
    "kind": "shallow",
    "d": 64,
    "widths": [256],
    "activation": "tanh",
    "centering": "antisymmetric",
}


def structured_flops(n: int, d: int, widths: list[int], k: int = 1) -> float:
    dims = [d, *widths, k]
    return 2.0 * n * n * sum(a + b for a, b in itertools.pairwise(dims))


# -- the worker: one (method, workload, dtype) in this process ---------------------------


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: compiles
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], times


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(spec: dict) -> dict:
    if spec["dtype"] == "float32":
        os.environ["NTKFLOW_X64"] = "0"
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ntkflow as nf

    dtype = np.float32 if spec["dtype"] == "float32" else np.float64
    if spec["method"] == "gemm":
        a = jnp.asarray(np.random.default_rng(0).standard_normal((4096, 4096)), dtype)
        f = jax.jit(lambda x: x @ x)
        t, _ = _median_time(lambda: f(a).block_until_ready(), spec["repeats"])
        an = np.asarray(a)
        tn, _ = _median_time(lambda: an @ an, spec["repeats"])
        flops = 2.0 * 4096**3
        return {"jax_gflops": flops / t / 1e9, "numpy_gflops": flops / tn / 1e9}

    w = spec["workload"]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((spec["n"], w["d"]))
    X /= np.linalg.norm(X, axis=1, keepdims=True) / np.sqrt(w["d"])
    data = nf.datasets.from_arrays(X, rng.standard_normal(spec["n"]))
    if w["kind"] == "mlp":
        model = nf.MLP(tuple(w["widths"]), activation=w["activation"])
    else:
        model = nf.Shallow(w["widths"][0], activation=w["activation"])
    problem = nf.Problem(model, data, centering=w.get("centering", "none"), dtype=dtype)
    out: dict = {"p": problem.p}

    if spec["method"] == "plain_jax":
        # The torch.func / JAX recipe: per-example gradients by vmap(grad), then J Jᵀ.
        unravel = problem.unravel

        @jax.jit
        def kernel(w0):
            def f1(wv, x):
                return problem.model.apply(unravel(wv), problem.state, x[None])[0]

            J = jax.vmap(jax.grad(f1), in_axes=(None, 0))(w0, problem.data.X)
            return J @ J.T

        def run():
            return kernel(problem.w0).block_until_ready()
    else:
        method = {
            "structured": lambda: nf.StructuredDense(),
            "structured_jax": lambda: nf.StructuredDense(gram="jax"),
            "jacobian": lambda: nf.JacobianContraction(),
            "ntk_vp": lambda: nf.NTKVectorProducts(chunk=128),
        }[spec["method"]]()

        def run():
            return nf.empirical_ntk(problem, method=method).block_until_ready()

    t, times = _median_time(run, spec["repeats"])
    K = np.asarray(run())
    if spec.get("save_kernel"):
        np.save(spec["save_kernel"], K)
        np.savez(
            spec["save_kernel"] + ".params.npz",
            X=np.asarray(problem.data.X),
            **{
                f"W{i}": np.asarray(layer["W"])
                for i, layer in enumerate(problem.unravel(problem.w0))
            }
            if w["kind"] == "mlp"
            else {},
        )
    out.update(seconds=t, times=times, peak_rss_mib=_peak_rss_mib())
    return out


# -- the driver ----------------------------------------------------------------------------


def run_worker(spec: dict, python: str = sys.executable, script: Path | None = None) -> dict:
    script = script or Path(__file__)
    proc = subprocess.run(
        [python, str(script), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--quick", action="store_true", help="n ∈ {512, 2048} only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nt-python", default=str(ROOT / ".venv-nt" / "bin" / "python"))
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    have_nt = Path(args.nt_python).is_file()
    rows = []
    gemm = {
        dt: run_worker({"method": "gemm", "dtype": dt, "repeats": 3})
        for dt in ("float32", "float64")
    }
    print("GEMM GFLOP/s:", json.dumps(gemm), file=sys.stderr)
    ns = [512, 2048] if args.quick else [512, 2048, 8192]
    for dtype in ("float32", "float64"):
        for n in ns:
            methods = ["structured", "structured_jax", "jacobian", "plain_jax"]
            if n <= 512:
                methods.append("ntk_vp")
            if n >= 8192:
                methods = ["structured", "structured_jax"]  # J would be n·p = 2.4e9 entries
            for method in methods:
                spec = {
                    "method": method,
                    "dtype": dtype,
                    "n": n,
                    "workload": MLP,
                    "repeats": args.repeats,
                }
                if method == "structured" and dtype == "float32" and have_nt and n <= 2048:
                    spec["save_kernel"] = str(out / f".K_{n}.npy")
                r = run_worker(spec)
                flops = structured_flops(n, MLP["d"], MLP["widths"])
                limit = flops / (gemm[dtype]["jax_gflops"] * 1e9)
                row = {
                    "workload": "mlp",
                    "n": n,
                    "dtype": dtype,
                    "impl": f"ntkflow {method}"
                    if method != "plain_jax"
                    else "plain JAX vmap(grad) → J Jᵀ",
                    **r,
                    "gemm_limit_s": limit,
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
                if method == "structured" and "save_kernel" in spec and have_nt:
                    for impl in (1, 2, 3):
                        nt = run_worker(
                            {
                                "impl": impl,
                                "n": n,
                                "dtype": dtype,
                                "repeats": args.repeats,
                                "kernel": spec["save_kernel"],
                            },
                            python=args.nt_python,
                            script=HERE / "nt_worker.py",
                        )
                        rows.append(
                            {
                                "workload": "mlp",
                                "n": n,
                                "dtype": dtype,
                                "impl": f"neural-tangents 0.6.5 impl={impl}",
                                **nt,
                                "gemm_limit_s": limit,
                            }
                        )
                        print(json.dumps(rows[-1]), file=sys.stderr)
    for method in ("structured", "jacobian"):
        r = run_worker(
            {
                "method": method,
                "dtype": "float64",
                "n": 128,
                "workload": SEED,
                "repeats": args.repeats,
            }
        )
        rows.append(
            {
                "workload": "seed shallow 256 tanh (antisymmetric)",
                "n": 128,
                "dtype": "float64",
                "impl": f"ntkflow {method}",
                **r,
            }
        )
    result = {"gemm_gflops": gemm, "rows": rows, "machine": os.cpu_count()}
    (out / "ntk.json").write_text(json.dumps(result, indent=2))
    lines = [
        "| workload | n | dtype | implementation | seconds | × GEMM limit | peak RSS MiB | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            r["seconds"] / r["gemm_limit_s"] if "seconds" in r and r.get("gemm_limit_s") else None
        )
        lines.append(
            f"| {r['workload']} | {r['n']} | {r['dtype']} | {r['impl']} | "
            f"{r.get('seconds', float('nan')):.4g} | {'' if ratio is None else f'{ratio:.2f}'} | "
            f"{r.get('peak_rss_mib', float('nan')):.0f} | "
            f"{r.get('error', r.get('max_rel_diff', ''))} |"
        )
    (out / "ntk.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
