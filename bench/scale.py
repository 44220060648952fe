"""Benchmark: the kernel and the flows split over devices, against one device.

    python bench/scale.py [--quick]

This machine has no accelerator; JAX can still split its CPU into `D` host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=D`, set in each fresh worker
process before JAX starts). They share the same cores, so what this measures is the
sharded code's *overhead* — the ring's extra programs and transfers, XLA's partitioned
flows — not a speed-up: on `D` real devices the work per device is `1/D` of this
(docs/scale.md). Measured, each in a fresh process, median of at least `--repeats` calls
after a compiling warm-up (as `bench/ntk.py`):

- the kernel of the MLP 64 → 512 → 512 → 1 tanh of `bench/ntk.py`, float32, n ∈ {2048,
  8192} (`--quick`: 2048): `empirical_ntk(problem)` (one device, the default path: BLAS
  `syrk` on the host) and `empirical_ntk(problem, devices=D)` (the ring) for D = 1, 2;
- both flows of a shallow tanh network (width 1024, n = 256 digits 0/1, α = 10,
  antisymmetric, float64, t1 = 20, 50 saves, no diagnostics):
  `solve_flows(problem, devices=D)` against `solve_flows(problem)`.

Writes `OUT/scale.json` and `OUT/scale.md`.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ntk import MLP, _timed, run_worker  # noqa: E402


def worker(spec: dict) -> dict:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={spec['devices']}"
    if spec["dtype"] == "float32":
        os.environ["NTKFLOW_X64"] = "0"
    import jax
    import numpy as np

    import ntkflow as nf

    assert len(jax.devices()) == spec["devices"]
    sharded = spec["sharded"]
    if spec["what"] == "kernel":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((spec["n"], MLP["d"]))
        data = nf.datasets.from_arrays(X, rng.standard_normal(spec["n"]))
        problem = nf.Problem(nf.MLP(tuple(MLP["widths"]), MLP["activation"]), data)

        def run():
            devices = spec["devices"] if sharded else None
            return jax.block_until_ready(nf.empirical_ntk(problem, devices=devices))

    else:
        data = nf.datasets.digits(spec["n"])
        problem = nf.Problem(nf.Shallow(1024, "tanh"), data, alpha=10.0, centering="antisymmetric")

        def run():
            devices = spec["devices"] if sharded else None
            options = {"saveat": 50, "error_estimate": False, "diagnostics": False}
            return nf.solve_flows(problem, 20.0, devices=devices, **options)

    t, times = _timed(run, spec["repeats"])
    result = run()
    out: dict = {"seconds": t, "times": times}
    if spec["what"] == "kernel":
        K = np.asarray(result, dtype=np.float64)
        out["devices_holding_K"] = len(result.sharding.device_set)
        if spec.get("save"):
            np.save(spec["save"], K)
        if spec.get("compare"):
            ref = np.load(spec["compare"])
            out["rel_diff"] = float(np.linalg.norm(K - ref) / np.linalg.norm(ref))
    else:
        out["loss_w_end"] = float(result.loss_w[-1])
        out["status"] = result.status.name
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    script = Path(__file__)
    cases = [("kernel", "float32", n) for n in ([2048] if args.quick else [2048, 8192])]
    cases.append(("flows", "float64", 256))
    for what, dtype, n in cases:
        ref = f"/tmp/ntkflow-scale-{n}.npy"
        for label, devices, sharded in (
            ("one device (default path)", 1, False),
            ("devices=1", 1, True),
            ("devices=2 (forced host devices)", 2, True),
        ):
            spec = {"what": what, "dtype": dtype, "n": n, "devices": devices}
            spec |= {"sharded": sharded, "repeats": args.repeats}
            if what == "kernel":
                spec |= {"save": ref} if not sharded else {"compare": ref}
            t0 = time.perf_counter()
            r = run_worker(spec, script=script, timeout=args.timeout)
            row = {"what": what, "dtype": dtype, "n": n, "impl": label, **r}
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"rows": rows, "cpus": os.cpu_count()}
    (out / "scale.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (out / "scale.md").write_text(md)
    print(md)


def render(result: dict) -> str:
    lines = [
        f"# Sharded kernel and flows on forced host devices ({result['cpus']} CPUs)",
        "",
        "The devices share this machine's cores: the ratios are the sharded code's "
        "overhead, not a speed-up (docs/scale.md).",
        "",
        "| what | n | dtype | implementation | seconds | × one device | check |",
        "|---|---|---|---|---|---|---|",
    ]
    base: dict = {}
    for r in result["rows"]:
        key = (r["what"], r["n"])
        if "seconds" not in r:
            lines.append(f"| {r['what']} | {r['n']} | {r['dtype']} | {r['impl']} | "
                         f"{r.get('error', '?')} | | |")  # fmt: skip
            continue
        base.setdefault(key, r["seconds"])
        if "rel_diff" in r:
            check = f"K vs one device: {r['rel_diff']:.1e}; on {r['devices_holding_K']} device(s)"
        elif "loss_w_end" in r:
            check = f"loss_w(t1) = {r['loss_w_end']:.6g} ({r['status']})"
        else:
            check = ""
        lines.append(
            f"| {r['what']} | {r['n']} | {r['dtype']} | {r['impl']} | {r['seconds']:.3g} | "
            f"{r['seconds'] / base[key]:.2f} | {check} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
