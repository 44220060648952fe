"""Benchmark: the gradient flow's solvers on stiff problems.

    python bench/flows.py [--quick] [--out bench/results]

Problems: a centred (antisymmetric) `Shallow(64)` tanh network on `n = 8` unit-norm
inputs in `d = 16`, the inputs drawn close together (`x_i ∝ b + ε·z_i`) with `ε` chosen by
bisection so that `cond(K0)` is 10, 10³ or 10⁵; `α ∈ {1, 10, 100}`; horizon `t1 = "auto"`
(the theorem's envelope falls to 1e-6·R0), save times rounded to GD's grid `k·η`. For
each problem, in one process:

- ntkflow's exponential integrator (`solver="exponential"`), diffrax Tsit5 and Dopri8
  (PID controller), all at `rtol = 1e-8` with `atol="auto"` and the default
  `max_steps = 100_000`;
- gradient descent at `η = 1/(α² λ_max(K0))` to the same horizon;
- the reference: diffrax Dopri8 at `rtol = 1e-12` (max_steps 10⁷).

Reported: vector-field evaluations, kernel evaluations, wall time (a second, compiled
call), status, and the global error `max_t ‖δ(t) − δ_ref(t)‖ / max_t ‖δ_ref(t)‖` over 20
save times. Writes `OUT/flows.json` and `OUT/flows.md`.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

N_POINTS, DIM, WIDTH = 8, 16, 64
SAVES = 20
RTOL = 1e-8


def _problem(eps: float, alpha: float = 1.0):
    import numpy as np

    import ntkflow as nf

    rng = np.random.default_rng(0)
    base = rng.standard_normal(DIM)
    X = base[None, :] + eps * rng.standard_normal((N_POINTS, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = nf.datasets.from_arrays(X, rng.standard_normal(N_POINTS))
    return nf.Problem(nf.Shallow(WIDTH), data, alpha=alpha, centering="antisymmetric")


def _cond(eps: float) -> float:
    import numpy as np

    import ntkflow as nf

    lam = np.linalg.eigvalsh(np.asarray(nf.empirical_ntk(_problem(eps))))
    return float(lam[-1] / lam[0])


def eps_for(cond: float) -> float:
    """Bisection on log ε: cond(K0) falls as the inputs spread."""
    lo, hi = 1e-4, 1e3
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if _cond(mid) > cond:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _error(deltas, ref) -> float:
    import numpy as np

    if deltas is None or not np.all(np.isfinite(deltas)):
        return math.nan
    scale = np.max(np.linalg.norm(ref, axis=1))
    return float(np.max(np.linalg.norm(deltas - ref, axis=1)) / scale)


def run_problem(cond: float, eps: float, alpha: float) -> list[dict]:
    import numpy as np

    import ntkflow as nf

    problem = _problem(eps, alpha)
    K0 = nf.empirical_ntk(problem)
    lam = np.linalg.eigvalsh(np.asarray(K0))
    eta = 1.0 / (alpha**2 * lam[-1])
    # The horizon solve_flows' t1="auto" gives, and save times on GD's grid k·η, so that
    # every method is compared with the reference at the same times.
    t1 = 2.0 * math.log(1e6) / (alpha**2 * lam[0])
    ts = np.rint(np.linspace(0.0, t1, SAVES) / eta) * eta
    common = dict(
        flows=("gradient",), diagnostics=False, error_estimate=False, save_params=True, kernel=K0
    )

    def solve(name, rtol, max_steps=100_000, warm=True):
        if warm:  # compile on a 1e-6 shorter horizon: same shapes, same compiled solve
            nf.solve_flows(
                problem, solver=name, rtol=rtol, max_steps=max_steps, saveat=ts * 1e-6, **common
            )
        return nf.solve_flows(
            problem, solver=name, rtol=rtol, max_steps=max_steps, saveat=ts, **common
        )

    ref = solve("dopri8", 1e-12, max_steps=10**7, warm=False)
    assert ref.params_w is not None
    base = {
        "cond_target": cond,
        "cond": float(lam[-1] / lam[0]),
        "alpha": alpha,
        "t1": float(ts[-1]),
        "p": problem.p,
        "ref_steps": ref.stats["gradient"]["num_steps"],
        "ref_status": ref.status.name,
    }
    rows = []
    for name in ("exponential", "tsit5", "dopri8"):
        sol = solve(name, RTOL)
        st = sol.stats["gradient"]
        rows.append(
            base
            | {
                "method": name,
                "status": sol.status.name,
                "steps": st["num_steps"],
                "vf_evaluations": st["vf_evaluations"],
                "kernel_evaluations": st["kernel_evaluations"],
                "wall_s": st["wall_s"],
                "error": _error(sol.params_w, ref.params_w),
            }
        )
    nf.gradient_descent(problem, eta, ts[:2], lambda_max=float(lam[-1]))  # compile
    start = time.perf_counter()
    gd = nf.gradient_descent(problem, eta, ts, lambda_max=float(lam[-1]))
    wall = time.perf_counter() - start
    rows.append(
        base
        | {
            "method": "gd",
            "status": "DIVERGED" if gd.diverged_at is not None else "SUCCESS",
            "steps": int(gd.iterations[-1]),
            "vf_evaluations": int(gd.iterations[-1]),
            "kernel_evaluations": 0,
            "wall_s": wall,
            "error": _error(gd.deltas, ref.params_w),
        }
    )
    return rows


def render(result: dict) -> str:
    rows = result["rows"]
    out = [
        f"Gradient-flow solvers, `rtol = {RTOL:g}` (GD: η = 1/(α²λ_max)); error: max over "
        f"{SAVES} saves of ‖δ − δ_ref‖ / max‖δ_ref‖, reference Dopri8 rtol 1e-12. "
        f"{result['machine']}.",
        "",
        "| cond(K0) | α | method | status | steps | VF evals | kernel evals | wall (s) "
        "| × exponential | error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        expo = next(
            x
            for x in rows
            if x["method"] == "exponential"
            and x["cond_target"] == r["cond_target"]
            and x["alpha"] == r["alpha"]
        )
        ratio = r["wall_s"] / expo["wall_s"]
        out.append(
            f"| {r['cond']:.3g} | {r['alpha']:g} | {r['method']} | {r['status']} | "
            f"{r['steps']} | {r['vf_evaluations']} | {r['kernel_evaluations']} | "
            f"{r['wall_s']:.3g} | {ratio:.3g}× | {r['error']:.2e} |"
        )
    return "\n".join(out) + "\n"


def solve_cost(sol) -> tuple[int, float, dict | None]:
    """(steps, wall seconds) over every solve behind a `FlowSolution`'s gradient flow — the
    accuracy policy's, or the solve and its re-solve — and the policy's report (`None`
    without it)."""
    st, est = sol.stats["gradient"], sol.stats.get("error_estimate")
    acc = est.get("accuracy") if est is not None else None
    if acc is not None:
        return sum(acc["steps"]), sum(acc["wall_s"]), acc
    extra = (est["num_steps"], est["wall_s"]) if est is not None else (0, 0.0)
    return st["num_steps"] + extra[0], st["wall_s"] + extra[1], None


def write_results(out: Path, stem: str, result: dict, render) -> None:
    """`OUT/STEM.json` and `OUT/STEM.md` (the table `render(result)`), each written to a
    temporary file and renamed: never half a result."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (f"{stem}.json", json.dumps(result, indent=2)),
        (f"{stem}.md", render(result)),
    ):
        tmp = out / f".{name}.partial"
        tmp.write_text(text)
        tmp.replace(out / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="cond 10 and 10³, α = 10 only")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    import os

    import ntkflow  # noqa: F401  (float64 on)

    conds = [10.0, 1e3] if args.quick else [10.0, 1e3, 1e5]
    alphas = [10.0] if args.quick else [1.0, 10.0, 100.0]
    rows = []
    for cond in conds:
        eps = eps_for(cond)
        for alpha in alphas:
            for row in run_problem(cond, eps, alpha):
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    result = {"machine": f"{os.cpu_count()} CPUs, float64", "rows": rows}
    write_results(Path(args.out), "flows", result, render)
    print(render(result))


if __name__ == "__main__":
    main()
