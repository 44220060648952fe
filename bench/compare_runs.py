"""Compare two `ntkflow run` results directories number by number.

    python bench/compare_runs.py BASELINE NEW [--rtol 1e-9]

For a refactoring that must not change results (issue 12): every data variable of
`trajectories.nc` and every number of the certificate and of the verification in
`summary.json` is compared; the largest relative difference of each is printed, and the
exit status is 1 when any exceeds `--rtol` (relative to the baseline's largest magnitude of
that quantity), or when a check's verdict or a variable's shape differs. Timings, dates,
versions and solver statistics are not results and are not compared.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import xarray as xr


def _numbers(tree, prefix=""):
    """Every number in a JSON tree, by its dotted path."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(tree, bool) or tree is None or isinstance(tree, str):
        return
    elif isinstance(tree, int | float):
        yield prefix, float(tree)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    same_nan = np.isnan(a) == np.isnan(b)
    if not same_nan.all():
        return math.inf
    ok = ~np.isnan(a)
    if not ok.any():
        return 0.0
    scale = max(float(np.max(np.abs(a[ok]))), 1e-300)
    return float(np.max(np.abs(a[ok] - b[ok]))) / scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    verdicts: list[str] = []
    with (
        xr.open_dataset(args.baseline / "trajectories.nc", engine="h5netcdf") as a,
        xr.open_dataset(args.new / "trajectories.nc", engine="h5netcdf") as b,
    ):
        for name in sorted(set(a.data_vars) | set(b.data_vars)):
            if name not in a or name not in b:
                rows.append((f"trajectories.{name} (only in one)", math.inf))
                continue
            rows.append((f"trajectories.{name}", _rel(a[name].values, b[name].values)))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (args.baseline, args.new))
    for part in ("certificate", "verification"):
        na, nb = dict(_numbers(sa[part], part)), dict(_numbers(sb[part], part))
        for key in sorted(set(na) | set(nb)):
            if key not in na or key not in nb:
                rows.append((f"{key} (only in one)", math.inf))
            else:
                rows.append((key, _rel(np.array(na[key]), np.array(nb[key]))))
    checks_a = {c["name"]: c["holds"] for c in sa["verification"]["checks"]}
    checks_b = {c["name"]: c["holds"] for c in sb["verification"]["checks"]}
    if checks_a != checks_b:
        verdicts.append(f"check verdicts differ: {checks_a} vs {checks_b}")
    worst = max((r for _, r in rows), default=0.0)
    for key, r in sorted(rows, key=lambda kr: -kr[1])[:15]:
        print(f"{r:10.3g}  {key}")
    for v in verdicts:
        print(v)
    print(f"largest relative difference {worst:.3g} over {len(rows)} quantities", end="")
    print(f" (rtol {args.rtol:g})")
    return 1 if worst > args.rtol or verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
