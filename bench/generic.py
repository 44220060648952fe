"""Benchmark: the generic kernel path (models the structured kernel does not cover) against
the naive recipe and neural-tangents' Jacobian contraction.

    python bench/generic.py [--quick] [--nt-python .venv-nt/bin/python]

On the MLP 64 → 512 → 512 → 1 tanh of `bench/ntk.py`, for n ∈ {512, 1024, 2048, 4096}
(`--quick`: 512, 2048), float32 and float64, one fresh process per measurement
(`bench/ntk.py`'s worker): ntkflow's `JacobianContraction` and `NTKVectorProducts`, plain
JAX `vmap(grad)` then `J @ J.T` in one `jit` (the usual recipe), and neural-tangents 0.6.5's
Jacobian contraction (`.venv-nt`, same inputs and weights; its kernel is compared with
ntkflow's). A measurement whose memory, extrapolated linearly in n from the same
implementation's at the size before, would exceed `--max-gib`, or whose time projected from
the sizes before exceeds `--timeout` (`ntk.not_run`), is not run and says so; one still
running after `--timeout` seconds is stopped and reported as such. Times are the
median of at least `--repeats` calls after a compiling warm-up, repeated until the timed
calls fill 1 s (at most 50; one call when the warm-up took over 20 s); ratios are against
plain JAX measured in the same run.

Writes `OUT/generic.json` and `OUT/generic.md`.
"""

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ntk import MLP, ROOT, not_run, run_worker  # noqa: E402

PLAIN = "plain JAX: vmap(grad), J Jᵀ"
IMPLS = {
    "jacobian": "ntkflow jacobian",
    "ntk_vp": "ntkflow ntk_vp",
    "plain_jax": PLAIN,
    "nt": "neural-tangents jacobian contraction",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-gib", type=float, default=20.0)
    ap.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per measurement (warm-up included)"
    )
    ap.add_argument("--nt-python", default=str(ROOT / ".venv-nt" / "bin" / "python"))
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="generic-bench-"))
    have_nt = Path(args.nt_python).is_file()
    ns = [512, 2048] if args.quick else [512, 1024, 2048, 4096]
    rows: list[dict] = []
    peak: dict[tuple[str, str], tuple[int, float]] = {}
    history: dict[tuple[str, str], list[tuple[int, dict]]] = {}

    def add(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        history.setdefault((row["impl"], row["dtype"]), []).append((row["n"], row))
        if "peak_rss_mib" in row:
            peak[(row["impl"], row["dtype"])] = (row["n"], row["peak_rss_mib"])

    def too_big(impl: str, dtype: str, n: int) -> str | None:
        slow = not_run(history.get((impl, dtype), []), n, args.timeout)
        prev = peak.get((impl, dtype))
        if slow or prev is None:
            return slow
        estimate = prev[1] * n / prev[0] / 1024
        if estimate > args.max_gib:
            return (
                f"not run: needs ≈ {estimate:.0f} GiB (its n = {prev[0]} peak × n), "
                f"over {args.max_gib:g}"
            )
        return None

    for dtype, n in itertools.product(("float32", "float64"), ns):
        base = {"workload": "mlp 64-512-512-1 tanh", "n": n, "dtype": dtype}
        save = str(tmp / f"{dtype}-{n}")
        for method in ("plain_jax", "jacobian", "ntk_vp"):
            impl = IMPLS[method]
            skip = too_big(impl, dtype, n)
            if skip:
                add({**base, "impl": impl, "skipped": skip})
                continue
            spec = {"method": method, "dtype": dtype, "n": n, "workload": MLP}
            spec |= {"repeats": args.repeats}
            if method == "jacobian" and have_nt:
                spec["save"] = save
            add({**base, "impl": impl, **run_worker(spec, timeout=args.timeout)})
        if have_nt:
            impl = IMPLS["nt"]
            skip = too_big(impl, dtype, n)
            if skip:
                add({**base, "impl": impl, "skipped": skip})
                continue
            spec = {"impl": 1, "dtype": dtype, "repeats": args.repeats, "save": save}
            r = run_worker(
                spec, python=args.nt_python, script=HERE / "nt_worker.py", timeout=args.timeout
            )
            add({**base, "impl": impl, **r})
    result = {"rows": rows, "cpus": os.cpu_count()}
    (out / "generic.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (out / "generic.md").write_text(md)
    print(md)


def render(result: dict) -> str:
    lines = [
        f"Generic kernel path, MLP 64-512-512-1 tanh; {result['cpus']} CPUs. Ratio: seconds / "
        "plain JAX's in the same run (below 1: faster).",
        "",
        "| n | dtype | implementation | seconds | vs plain JAX | peak RSS (MiB) | rel. diff. |",
        "|---|---|---|---|---|---|---|",
    ]
    plain = {
        (r["n"], r["dtype"]): r["seconds"]
        for r in result["rows"]
        if r["impl"] == PLAIN and "seconds" in r
    }
    for r in result["rows"]:
        head = f"| {r['n']} | {r['dtype']} | {r['impl']} |"
        if "seconds" not in r:
            lines.append(f"{head} {r.get('skipped') or 'failed: ' + r.get('error', '?')} | | | |")
            continue
        ref = plain.get((r["n"], r["dtype"]))
        ratio = "" if ref is None else f"{r['seconds'] / ref:.2f}"
        diff = r.get("rel_diff")
        lines.append(
            f"{head} {r['seconds']:.4g} | {ratio} | {r.get('peak_rss_mib', math.nan):.0f} | "
            f"{'' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
