"""Benchmark: the empirical NTK of a convolutional network on digits images.

    python bench/cnn.py [--quick | --sizes N ...] [--nt-python .venv-nt/bin/python]

`CNN((32, 32), 3, "erf")` (two stride-1 SAME 3×3 convolutions, flatten, dense readout; NTK
parametrisation, no biases, p = 11,552) on 8 × 8 × 1 digits images, n ∈ {256, 1024, 4096}
(`--quick`: 256, 1024), float32 and float64. The 1,797 digits are all used; beyond them
(n = 4096) the images are repeated with Gaussian pixel noise (σ = 0.05), which changes
nothing in the cost. Each measurement runs in a fresh process:

- ntkflow: `StructuredDense` (what `"auto"` picks for a CNN) and `JacobianContraction`;
- neural-tangents 0.6.5 (`.venv-nt`): `stax` with the same weights, its structured
  derivatives and its Jacobian contraction;
- `torch.func` (the same network as a module whose forward scales the raw weights, so its
  parameters are ntkflow's): Jacobian contraction (`vmap(jacrev)`, then the per-layer
  contractions) and NTK-vector products (the recipe of PyTorch's NTK tutorial: `vmap` over
  pairs of points of a VJP and a JVP, in row blocks of 64 points; n ≤ 1024).

Every kernel is compared with ntkflow's structured one. The GEMM limit is the structured
formula's FLOPs `2n²·(Σ_conv k²·C_in·C_out + fan_in + k)` at the GEMM throughput measured
in the same run. Times are medians as in `bench/ntk.py` (at least `--repeats` calls, until
they fill 1 s). A measurement still running after `--timeout` seconds (warm-up included)
is stopped and reported as such, and one whose projected time exceeds it is not run (its
row says why: `ntk.not_run`). Writes `OUT/cnn.json` and `OUT/cnn.md`.
"""

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ntk import ROOT, _peak_rss_mib, _timed, not_run, run_worker  # noqa: E402

CHANNELS = (32, 32)
K_OUT = 1


def gemm_flops(n: int) -> float:
    c_in, q = 1, 0
    for c in CHANNELS:
        q += 9 * c_in * c
        c_in = c
    return 2.0 * n * n * (q + 64 * c_in + K_OUT)


def _images(n: int):
    import numpy as np

    import ntkflow as nf

    data = nf.datasets.digits(None, classes=tuple(range(10)), images=True)
    X = np.asarray(data.X)
    reps = -(-n // X.shape[0])
    rng = np.random.default_rng(0)
    tiles = [X] + [X + 0.05 * rng.standard_normal(X.shape) for _ in range(reps - 1)]
    X = np.concatenate(tiles)[:n]
    return nf.datasets.from_arrays(X, rng.standard_normal(n))


def _torch_module(params, dtype):
    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            ws = []
            for layer in params[:-1]:  # HWIO → OIHW
                ws.append(torch.nn.Parameter(torch.tensor(layer.transpose(3, 2, 0, 1))))
            self.convs = torch.nn.ParameterList(ws)
            self.out = torch.nn.Parameter(torch.tensor(params[-1]))

        def forward(self, x):  # x: NCHW
            h = x
            for W in self.convs:
                fan_in = W.shape[1] * W.shape[2] * W.shape[3]
                h = torch.special.erf(F.conv2d(h, W, padding=1) / math.sqrt(fan_in))
            h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # ntkflow's NHWC order
            return h @ self.out.T / math.sqrt(self.out.shape[1])

    return Net().to(dtype)


def _torch(spec: dict) -> dict:
    import numpy as np
    import torch
    from torch.func import functional_call, jacrev, jvp, vjp, vmap

    dtype = torch.float32 if spec["dtype"] == "float32" else torch.float64
    saved = np.load(spec["save"] + ".params.npz")
    params = [saved[f"W{i}"] for i in range(len(CHANNELS) + 1)]
    net = _torch_module(params, dtype)
    X = torch.tensor(saved["X"].transpose(0, 3, 1, 2), dtype=dtype)
    ps = {k: v.detach() for k, v in net.named_parameters()}

    def f1(p, x):
        return functional_call(net, p, (x[None],))[0]

    if spec["method"] == "torch_jac":

        def kernel():
            with torch.no_grad():
                jac = vmap(jacrev(f1), (None, 0))(ps, X)
                J = torch.cat([j.reshape(X.shape[0], -1) for j in jac.values()], dim=1)
                return J @ J.T

    else:

        def ntk_pair(x1, x2):
            out, vjp_fn = vjp(lambda p: f1(p, x1), ps)
            basis = torch.eye(out.numel(), dtype=dtype).view(out.numel(), -1)

            def slice_(v):
                (cot,) = vjp_fn(v)
                return jvp(lambda p: f1(p, x2), (ps,), (cot,))[1]

            return vmap(slice_)(basis)

        pairs = vmap(vmap(ntk_pair, (None, 0)), (0, None))

        def kernel():
            with torch.no_grad():
                rows = [
                    pairs(X[i : i + 64], X).reshape(-1, X.shape[0])
                    for i in range(0, X.shape[0], 64)
                ]
                return torch.cat(rows)

    t, times = _timed(kernel, spec["repeats"])
    K = kernel().double().numpy()
    ours = np.load(spec["save"] + ".K.npy")
    diff = float(np.linalg.norm(K - ours) / np.linalg.norm(ours))
    return {"seconds": t, "times": times, "peak_rss_mib": _peak_rss_mib(), "rel_diff": diff}


def worker(spec: dict) -> dict:
    if spec["dtype"] == "float32":
        os.environ["NTKFLOW_X64"] = "0"
    if spec["method"].startswith("torch"):
        torch_threads = os.cpu_count() or 1
        import torch

        torch.set_num_threads(torch_threads)
        return _torch(spec)
    import numpy as np

    import ntkflow as nf

    dtype = np.float32 if spec["dtype"] == "float32" else np.float64
    problem = nf.Problem(nf.CNN(CHANNELS, 3, "erf"), _images(spec["n"]), dtype=dtype)
    method = {"structured": nf.StructuredDense(), "jacobian": nf.JacobianContraction()}[
        spec["method"]
    ]

    def run():
        return nf.empirical_ntk(problem, method=method).block_until_ready()

    t, times = _timed(run, spec["repeats"])
    out = {"seconds": t, "times": times, "p": problem.p}
    K = np.asarray(run(), dtype=np.float64)
    if spec.get("save"):
        np.save(spec["save"] + ".K.npy", K)
        params = problem.unravel(problem.w0)
        np.savez(
            spec["save"] + ".params.npz",
            X=np.asarray(problem.data.X),
            **{f"W{i}": np.asarray(layer["W"]) for i, layer in enumerate(params)},
        )
    elif spec.get("compare"):
        ours = np.load(spec["compare"] + ".K.npy")
        out["rel_diff"] = float(np.linalg.norm(K - ours) / np.linalg.norm(ours))
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="the n to run (default 256 1024 4096; --quick 256 1024)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per measurement (warm-up included)"
    )
    ap.add_argument("--nt-python", default=str(ROOT / ".venv-nt" / "bin" / "python"))
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cnn-bench-"))
    have_nt = Path(args.nt_python).is_file()
    script = Path(__file__)
    gemm = {
        dt: run_worker({"method": "gemm", "dtype": dt, "repeats": 5})
        for dt in ("float32", "float64")
    }
    rows: list[dict] = []
    history: dict[tuple[str, str], list[tuple[int, dict]]] = {}

    def measure(name: str, dtype: str, n: int, base: dict, call) -> None:
        past = history.setdefault((name, dtype), [])
        skip = not_run(past, n, args.timeout)
        t0 = time.perf_counter()
        r = {"skipped": skip} if skip else call()
        rows.append({**base, "impl": name, **r, "wall_s": time.perf_counter() - t0})
        past.append((n, rows[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    ns = args.sizes or ([256, 1024] if args.quick else [256, 1024, 4096])
    for dtype, n in itertools.product(("float32", "float64"), ns):
        base = {"workload": "cnn 32-32 3x3 erf, digits 8x8x1", "n": n, "dtype": dtype}
        base["limit_s"] = gemm_flops(n) / (gemm[dtype]["jax_gflops"] * 1e9)
        save = str(tmp / f"{dtype}-{n}")
        spec = {"dtype": dtype, "n": n, "repeats": args.repeats}
        todo = [
            ("structured", {"save": save}),
            ("jacobian", {"compare": save}),
            ("torch_jac", {"save": save}),
        ]
        if n <= 1024:
            todo.append(("torch_vp", {"save": save}))
        for method, extra in todo:
            name = {
                "structured": "ntkflow structured",
                "jacobian": "ntkflow jacobian",
                "torch_jac": "torch.func jacobian contraction",
                "torch_vp": "torch.func NTK-vector products",
            }[method]
            job = spec | {"method": method} | extra
            measure(
                name,
                dtype,
                n,
                base,
                lambda job=job: run_worker(job, script=script, timeout=args.timeout),
            )
        if have_nt:
            for impl, name in ((3, "structured"), (1, "jacobian contraction")):
                nt_spec = {"impl": impl, "dtype": dtype, "repeats": args.repeats, "save": save}
                nt_spec |= {"model": "cnn", "channels": list(CHANNELS)}
                measure(
                    f"neural-tangents {name}",
                    dtype,
                    n,
                    base,
                    lambda nt_spec=nt_spec: run_worker(
                        nt_spec,
                        python=args.nt_python,
                        script=HERE / "nt_worker.py",
                        timeout=args.timeout,
                    ),
                )
    result = {"gemm_gflops": gemm, "rows": rows, "cpus": os.cpu_count()}
    (out / "cnn.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (out / "cnn.md").write_text(md)
    print(md)


def render(result: dict) -> str:
    g = result["gemm_gflops"]
    lines = [
        f"GEMM throughput (jax, 4096²): f32 {g['float32']['jax_gflops']:.0f} GFLOP/s, "
        f"f64 {g['float64']['jax_gflops']:.0f} GFLOP/s; {result['cpus']} CPUs.",
        "",
        "| workload | n | dtype | implementation | seconds | × GEMM limit | vs ntkflow structured "
        "| peak RSS (MiB) | rel. diff. to ntkflow |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {
        (r["n"], r["dtype"]): r["seconds"]
        for r in result["rows"]
        if r["impl"] == "ntkflow structured" and "seconds" in r
    }
    for r in result["rows"]:
        head = f"| {r['workload']} | {r['n']} | {r['dtype']} | {r['impl']} |"
        if "seconds" not in r:
            why = r.get("skipped") or f"failed: {r.get('error', '?')}"
            lines.append(f"{head} {why} | | | | |")
            continue
        ref = ours.get((r["n"], r["dtype"]))
        diff = r.get("rel_diff")
        speed = "" if ref is None else f"{r['seconds'] / ref:.1f}×"
        lines.append(
            f"{head} {r['seconds']:.4g} | {r['seconds'] / r['limit_s']:.2f} | {speed} | "
            f"{r.get('peak_rss_mib', math.nan):.0f} | {'' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
