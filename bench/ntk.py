"""Benchmark: the empirical NTK, ntkflow's methods against plain JAX and neural-tangents.

    python bench/ntk.py [--quick] [--no-large] [--nt-python .venv-nt/bin/python]

Every timing runs in a fresh subprocess (one dtype per process: JAX's float64 switch is
global), as the median of at least `--repeats` calls after one warm-up call that compiles,
repeated until the timed calls fill 1 s (at most 50; one timed call when the warm-up took
over 20 s). The machine's GEMM throughput is measured in
the same run, and every time is also given as a ratio to the structured computation's
GEMM limit: `2n²·Σ_l(fan_in_l + fan_out_l)` FLOPs at that throughput. Peak memory is the
subprocess's maximum resident set size. neural-tangents 0.6.5 runs in its own venv
(`.venv-nt`, jax 0.4.25) on the same inputs and weights, and its kernels are compared with
ntkflow's.

Writes `OUT/ntk.json` (every measurement) and `OUT/ntk.md` (the tables).
"""

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MLP = {"kind": "mlp", "d": 64, "widths": [512, 512], "activation": "tanh"}
SEED = {
    "kind": "shallow",
    "d": 64,
    "widths": [256],
    "activation": "tanh",
    "centering": "antisymmetric",
    "digits": True,
}
# n = 20,000 and p ≈ 1e6 parameters: K (f32) and its extreme eigenvalues within 24 GiB.
LARGE = {"kind": "mlp", "d": 64, "widths": [1000, 1000], "activation": "tanh"}
SLOW_WARMUP_S = 20.0
MIN_TIMED_S, MAX_REPEATS = 1.0, 50


def structured_flops(n: int, w: dict, k: int = 1) -> float:
    dims = [w["d"], *w["widths"], k]
    return 2.0 * n * n * sum(a + b for a, b in itertools.pairwise(dims))


def n_params(w: dict, k: int = 1) -> int:
    dims = [w["d"], *w["widths"], k]
    return sum(a * b for a, b in itertools.pairwise(dims))


# -- the worker: one (method, workload, n, dtype) in this process -----------------------


def _timed(fn, repeats: int) -> tuple[float, list[float]]:
    t = time.perf_counter()
    fn()  # warm-up: compiles
    if time.perf_counter() - t > SLOW_WARMUP_S:
        repeats = 1
    times: list[float] = []
    # Fast calls are repeated until they fill MIN_TIMED_S: the median of 3 calls of 40 ms
    # spreads by ±25% on this machine.
    while len(times) < repeats or (sum(times) < MIN_TIMED_S and len(times) < MAX_REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], times


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _problem(spec: dict):
    import numpy as np

    import ntkflow as nf

    w, n = spec["workload"], spec["n"]
    dtype = np.float32 if spec["dtype"] == "float32" else np.float64
    if w.get("digits"):
        data = nf.datasets.digits(n, classes=(0, 1))
    else:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, w["d"]))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        data = nf.datasets.from_arrays(X, rng.standard_normal(n))
    if w["kind"] == "mlp":
        model = nf.MLP(tuple(w["widths"]), activation=w["activation"])
    else:
        model = nf.Shallow(w["widths"][0], activation=w["activation"])
    return nf.Problem(model, data, centering=w.get("centering", "none"), dtype=dtype)


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
        t, _ = _timed(lambda: f(a).block_until_ready(), spec["repeats"])
        an = np.asarray(a)
        tn, _ = _timed(lambda: an @ an, spec["repeats"])
        flops = 2.0 * 4096**3
        return {"jax_gflops": flops / t / 1e9, "numpy_gflops": flops / tn / 1e9}

    problem = _problem(spec)
    out: dict = {"p": problem.p}
    if spec["method"] == "plain_jax":
        # The usual recipe (torch.func's, in JAX): per-example gradients, then J Jᵀ.
        unravel, state, model = problem.unravel, problem.state, problem.model

        @jax.jit
        def kernel(w0, X):
            def f1(wv, x):
                return model.apply(unravel(wv), state, x[None])[0]

            J = jax.vmap(jax.grad(f1), in_axes=(None, 0))(w0, X)
            return J @ J.T

        def run():
            return kernel(problem.w0, problem.data.X).block_until_ready()
    else:
        method = {
            "structured": lambda: nf.StructuredDense(),
            "structured_jax": lambda: nf.StructuredDense(gram="jax"),
            "jacobian": lambda: nf.JacobianContraction(),
            "ntk_vp": lambda: nf.NTKVectorProducts(),
        }[spec["method"]]()

        def run():
            return nf.empirical_ntk(problem, method=method).block_until_ready()

    t, times = _timed(run, spec["repeats"])
    out.update(seconds=t, times=times)
    if spec.get("spectrum"):
        K = run()
        t0 = time.perf_counter()
        spec_ = nf.ntk_spectrum(np.asarray(K), p=problem.p, method="iterative", tol=1e-6)
        out.update(
            spectrum_seconds=time.perf_counter() - t0,
            sigma_min=spec_.sigma_min,
            sigma_max=spec_.sigma_max,
            rank_tolerance=spec_.tolerance,
            rank_deficient=spec_.rank_deficient,
        )
    if spec.get("save"):
        K = np.asarray(run())
        np.save(spec["save"] + ".K.npy", K)
        params = problem.unravel(problem.w0)
        np.savez(
            spec["save"] + ".params.npz",
            X=np.asarray(problem.data.X),
            **{f"W{i}": np.asarray(layer["W"]) for i, layer in enumerate(params)},
        )
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


# -- the driver ------------------------------------------------------------------------


def run_worker(
    spec: dict,
    python: str = sys.executable,
    script: Path | None = None,
    timeout: float | None = None,
) -> dict:
    script = script or Path(__file__)
    try:
        proc = subprocess.run(
            [python, str(script), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:g} s (stopped)"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip().splitlines()
        return {"error": err[-1][:200] if err else f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def not_run(history: list[tuple[int, dict]], n: int, timeout: float) -> str | None:
    """Why one implementation is not measured at `n`, given its rows at smaller `n`
    (`history`, in order): it was stopped there, or its time projected to `n` (the
    exponent of the last two sizes, clamped to [1, 2], else 2) times three calls (warm-up,
    one timed call, the kernel kept for comparison) exceeds `timeout`."""
    if not history:
        return None
    n0, last = history[-1]
    if "seconds" not in last:
        stopped = "did not finish" in last.get("error", "") or "not run" in last.get("skipped", "")
        return f"not run: stopped or not run at n = {n0}" if stopped else None
    exponent = 2.0
    if len(history) > 1 and "seconds" in history[-2][1]:
        n1, before = history[-2]
        exponent = math.log(last["seconds"] / before["seconds"]) / math.log(n0 / n1)
        exponent = min(2.0, max(1.0, exponent))
    estimate = 3 * last["seconds"] * (n / n0) ** exponent
    if estimate > timeout:
        return (
            f"not run: ≈ {estimate:.0f} s projected from n = {n0} (× n^{exponent:.1f}, "
            f"3 calls), over the {timeout:g} s limit"
        )
    return None


def run_large(repeats: int) -> dict:
    spec = {"method": "structured", "dtype": "float32", "n": 20000, "workload": LARGE}
    large = run_worker(spec | {"repeats": repeats, "spectrum": True})
    return large | {"n": 20000, "p": n_params(LARGE)}


def fit_slope(xs: list[float], ys: list[float]) -> float:
    import numpy as np

    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--quick", action="store_true", help="n ∈ {512, 2048}; no large run")
    ap.add_argument("--no-large", action="store_true", help="skip the n = 20,000 run")
    ap.add_argument(
        "--large-only", action="store_true", help="rerun the n = 20,000 run into ntk.json"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nt-python", default=str(ROOT / ".venv-nt" / "bin" / "python"))
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.large_only:
        result = json.loads((out / "ntk.json").read_text())
        result["large"] = run_large(args.repeats)
        (out / "ntk.json").write_text(json.dumps(result, indent=2))
        (out / "ntk.md").write_text(render(result))
        print(render(result))
        return
    tmp = Path(tempfile.mkdtemp(prefix="ntkbench-"))
    have_nt = Path(args.nt_python).is_file()
    if not have_nt:
        print(f"no {args.nt_python}: neural-tangents left out (make bench creates it)")
    log = lambda row: print(json.dumps(row), file=sys.stderr, flush=True)
    gemm = {}
    for dt in ("float32", "float64"):
        gemm[dt] = run_worker({"method": "gemm", "dtype": dt, "repeats": 5})
        log({"gemm": dt, **gemm[dt]})
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        log(row)

    ns = [512, 2048] if args.quick else [512, 2048, 8192]
    for dtype, n in itertools.product(("float32", "float64"), ns):
        limit = structured_flops(n, MLP) / (gemm[dtype]["jax_gflops"] * 1e9)
        base = {"workload": "mlp 64-512-512-1 tanh", "n": n, "dtype": dtype, "limit_s": limit}
        methods = ["structured", "structured_jax", "jacobian", "plain_jax"]
        if n <= 512:
            methods.append("ntk_vp")
        if n >= 8192:
            methods = ["structured", "structured_jax"]  # J would hold n·p = 2.4e9 entries
        save = str(tmp / f"{dtype}-{n}")
        for method in methods:
            spec = {"method": method, "dtype": dtype, "n": n, "workload": MLP}
            spec |= {"repeats": args.repeats}
            if method == "structured" and have_nt:
                spec["save"] = save
            impl = "plain JAX: vmap(grad), J Jᵀ" if method == "plain_jax" else f"ntkflow {method}"
            add({**base, "impl": impl, **run_worker(spec)})
        if have_nt:
            impls = {1: "jacobian contraction", 2: "NTK-vector products", 3: "structured"}
            for impl, name in impls.items():
                if (n >= 8192 and impl != 3) or (impl == 2 and n >= 2048 and dtype == "float64"):
                    continue
                spec = {"impl": impl, "dtype": dtype, "repeats": args.repeats, "save": save}
                r = run_worker(spec, python=args.nt_python, script=HERE / "nt_worker.py")
                add({**base, "impl": f"neural-tangents {name}", **r})
    seed_limit = structured_flops(128, {"d": 64, "widths": [256]}) * 2
    for method in ("structured", "jacobian"):
        spec = {"method": method, "dtype": "float64", "n": 128, "workload": SEED}
        r = run_worker(spec | {"repeats": args.repeats})
        add(
            {
                "workload": "seed: shallow 256 tanh, antisymmetric, digits",
                "n": 128,
                "dtype": "float64",
                "impl": f"ntkflow {method}",
                "limit_s": seed_limit / (gemm["float64"]["jax_gflops"] * 1e9),
                **r,
            }
        )
    widths = []
    if not args.quick:
        for m in (256, 1024):
            w = {**MLP, "widths": [m, m]}
            spec = {"method": "structured", "dtype": "float32", "n": 2048, "workload": w}
            r = run_worker(spec | {"repeats": args.repeats})
            widths.append({"width": m, **r})
            log(widths[-1])
    large = None
    if not (args.quick or args.no_large):
        large = run_large(1)
        log({"large": large})

    # Scaling: time vs n (structured f32), time vs width (n = 2048, f32).
    def seconds(impl, dtype, n):
        for r in rows:
            if r["impl"] == impl and r["dtype"] == dtype and r["n"] == n and "seconds" in r:
                return r["seconds"]
        return math.nan

    scaling = {}
    xs = [n for n in ns if n >= 2048]
    if len(xs) >= 2:
        scaling["structured_f32_vs_n"] = fit_slope(
            xs, [seconds("ntkflow structured", "float32", n) for n in xs]
        )
    if widths:
        ms = [256, 512, 1024]
        ts = [widths[0].get("seconds"), seconds("ntkflow structured", "float32", 2048)]
        ts.append(widths[1].get("seconds"))
        if all(isinstance(t, float) for t in ts):
            scaling["structured_f32_vs_width"] = fit_slope(ms, ts)
    result = {
        "gemm_gflops": gemm,
        "rows": rows,
        "widths": widths,
        "large": large,
        "scaling": scaling,
        "cpus": os.cpu_count(),
    }
    (out / "ntk.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (out / "ntk.md").write_text(md)
    print(md)


def render(result: dict) -> str:
    g = result["gemm_gflops"]
    lines = [
        f"GEMM throughput (jax, 4096²): f32 {g['float32']['jax_gflops']:.0f} GFLOP/s, "
        f"f64 {g['float64']['jax_gflops']:.0f} GFLOP/s; {result['cpus']} CPUs.",
        "",
        "| workload | n | dtype | implementation | seconds | × GEMM limit | vs ntkflow "
        "structured | peak RSS (MiB) | rel. diff. to ntkflow |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {
        (r["n"], r["dtype"], r["workload"]): r["seconds"]
        for r in result["rows"]
        if r["impl"] == "ntkflow structured" and "seconds" in r
    }
    for r in result["rows"]:
        if "seconds" not in r:
            lines.append(
                f"| {r['workload']} | {r['n']} | {r['dtype']} | {r['impl']} | failed: "
                f"{r.get('error', '?')} | | | | |"
            )
            continue
        ref = ours.get((r["n"], r["dtype"], r["workload"]))
        diff = r.get("rel_diff")
        speed = "" if ref is None else f"{r['seconds'] / ref:.1f}×"
        lines.append(
            f"| {r['workload']} | {r['n']} | {r['dtype']} | {r['impl']} | {r['seconds']:.4g} | "
            f"{r['seconds'] / r['limit_s']:.2f} | "
            f"{speed} | "
            f"{r.get('peak_rss_mib', math.nan):.0f} | {'' if diff is None else f'{diff:.1e}'} |"
        )
    if result.get("scaling"):
        lines += ["", "Fitted log-log slopes: " + json.dumps(result["scaling"])]
    if result.get("large"):
        lg = result["large"]
        lines += [
            "",
            f"Large: n = {lg['n']}, p = {lg['p']:,}, f32: K in "
            f"{lg.get('seconds', math.nan):.1f} s, "
            f"extreme eigenvalues in {lg.get('spectrum_seconds', math.nan):.1f} s "
            f"(σ_min = {lg.get('sigma_min', math.nan):.4g}, σ_max = "
            f"{lg.get('sigma_max', math.nan):.4g}; λ_min below the float32 rank tolerance "
            f"n·ε·λ_max = {lg.get('rank_tolerance', math.nan):.2g}: "
            f"{lg.get('rank_deficient')}), peak RSS "
            f"{lg.get('peak_rss_mib', math.nan) / 1024:.1f} GiB"
            + (f"; error: {lg['error']}" if "error" in lg else ""),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
