"""Benchmark: does the reported error budget bound the true error? (issue 27)

    python bench/flows_budget.py [--quick] [--out bench/results]

On a set of small problems — shallow and deep, centred and not, `cond(K0)` from 10² to
10⁶, `α` from 1 to 10⁴, squared and logistic losses — the gradient flow at default
settings (`solve_flows` with `rtol="auto"`, the error estimate on: for the squared loss's
stiff flows the accuracy policy of `ExponentialAdams`) is compared at 30 save times with
a reference: the exponential Runge–Kutta integrator at `rtol = 1e-12`, whose own error is
estimated by a second reference at `rtol = 1e-11` (it is an independent method from the
default's). Per problem: the default's solver, its cost in gradient evaluations (every
solve of the accuracy policy, or both solves of the budget, included) beside the previous
default's (the exponential Runge–Kutta pair at `rtol = 1e-8` for a stiff flow, else
Tsit5, with its re-solve), the largest ratio of true error to budget over the saves
for `w`, the loss and the residual (where the true error is above the reference's own
uncertainty), and whether any check of `verify` changes verdict against the reference's
(held ↔ failed: a contradiction; decided ↔ inconclusive is counted apart).

Writes `OUT/flows_budget.json` and `OUT/flows_budget.md`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from flows import (
    eps_for,
    solve_cost,
    write_results,
)  # (bench/flows.py: this script runs from bench/)

HERE = Path(__file__).resolve().parent
SAVES = 30


def _shallow_cond(cond: float, alpha: float):
    from flows import _problem

    return _problem(eps_for(cond), alpha)


def problems(quick: bool) -> list[tuple[str, object]]:
    """`(label, thunk)`: each thunk builds its `Problem`."""
    import numpy as np

    import ntkflow as nf

    def mlp(widths, n, d, alpha, centering="antisymmetric", loss="squared", seed=0):
        def make():
            data = nf.datasets.sphere(n, d, seed=seed)
            if loss == "logistic":
                data = nf.datasets.from_arrays(data.X, np.sign(np.asarray(data.y)))
            model = nf.MLP(widths, "tanh")
            return nf.Problem(model, data, alpha=alpha, centering=centering, loss=loss)

        return make

    def seed(alpha):
        def make():
            data = nf.datasets.digits(32, classes=(0, 1))
            return nf.Problem(nf.Shallow(256), data, alpha=alpha, centering="antisymmetric")

        return make

    def shallow(cond, alpha):
        return lambda: _shallow_cond(cond, alpha)

    out = [(f"MLP(32,32) n=24 α={a:g}", mlp((32, 32), 24, 4, a)) for a in (1, 10, 100, 1e3, 1e4)]
    out += [(f"MLP(128,128) n=64 α={a:g}", mlp((128, 128), 64, 16, a)) for a in (10, 100, 1e3)]
    out += [
        (f"Shallow(64) n=8 cond {c:.0e} α={a:g}", shallow(c, a))
        for c in (1e2, 1e4, 1e6)
        for a in (1, 10, 100)
    ]
    out += [(f"seed Shallow(256) digits α={a:g}", seed(a)) for a in (10.0, 2.14e4)]
    out += [
        (f"MLP(32,32) n=24 uncentred α={a:g}", mlp((32, 32), 24, 4, a, "none")) for a in (1, 10)
    ]
    out += [("MLP(64,64,64) n=32 α=100", mlp((64, 64, 64), 32, 8, 100.0))]
    out += [
        (f"MLP(32,32) n=24 logistic α={a:g}", mlp((32, 32), 24, 4, a, loss="logistic"))
        for a in (10, 100)
    ]
    # Far from lazy: narrow, small α, no centring.
    out += [("MLP(16) n=24 uncentred α=0.3 (far from lazy)", mlp((16,), 24, 4, 0.3, "none"))]
    return out[:4] if quick else out


def _ratio(true, budget, floor) -> float:
    import numpy as np

    keep = np.isfinite(true) & (true > floor)
    if not keep.any():
        return 0.0
    return float(np.max(true[keep] / np.maximum(budget[keep], 1e-300)))


def _grad_seconds(problem) -> float:
    import jax

    grad = jax.jit(lambda w: jax.grad(problem.loss)(w))
    grad(problem.w0).block_until_ready()
    start = time.perf_counter()
    for _ in range(5):
        grad(problem.w0).block_until_ready()
    return (time.perf_counter() - start) / 5


def _assess(problem, cert, sol, ref, ref2) -> dict:
    """The largest true/budget ratios of `sol` against the reference (where the true error
    is above 10× the reference's own uncertainty), its relative error in `w`, and the
    checks whose verdict differs from the reference's."""
    import numpy as np

    import ntkflow as nf
    from ntkflow._integrate import residuals

    def res(s):
        return np.asarray(residuals(problem, s.params_w))

    dw = np.linalg.norm(sol.params_w - ref.params_w, axis=1)
    u_w = np.linalg.norm(ref2.params_w - ref.params_w, axis=1)
    dl = np.abs(sol.loss_w - ref.loss_w)
    u_l = np.abs(ref2.loss_w - ref.loss_w)
    dr = np.linalg.norm(res(sol) - res(ref), axis=1)
    u_r = np.linalg.norm(res(ref2) - res(ref), axis=1)
    v, vr = nf.verify(sol, cert), nf.verify(ref, cert)
    pairs = [(c.holds, vr[c.name].holds) for c in v.checks]
    return {
        "ratio_w": _ratio(dw, sol.err_w, 10 * u_w),
        "ratio_loss": _ratio(dl, sol.err_loss_w, 10 * u_l),
        "ratio_res": _ratio(dr, sol.err_res_w, 10 * u_r),
        "rel_error_w": float(np.max(dw) / np.max(np.linalg.norm(ref.params_w, axis=1))),
        "contradictions": sum(1 for a, b in pairs if a is not None and b is not None and a != b),
        "inconclusive_vs_decided": sum(1 for a, b in pairs if a is None and b is not None),
    }


def _alternative(solver: str) -> tuple[str, dict]:
    """The other candidate for `solver="auto"`, beside the one it chose: the exponential
    Adams policy against the Runge–Kutta pair at `rtol = 1e-8` (the previous default) and
    the other way round; for Tsit5 and the logistic loss, the previous default."""
    if solver == "ExponentialAdams":
        return "exponential", {"rtol": 1e-8}
    if solver == "ExponentialNTK":
        return "adams", {}
    return "auto", {"rtol": 1e-8}


def run_one(label: str, make) -> dict:
    import ntkflow as nf

    problem = make()
    cert = nf.certify(problem)
    assert cert.kernel is not None
    t_grad = _grad_seconds(problem)
    sol = nf.solve_flows(
        problem, saveat=SAVES, save_params=True, diagnostics=False, kernel=cert.kernel
    )
    st = sol.stats["gradient"]
    common = dict(saveat=sol.ts, diagnostics=False, kernel=cert.kernel, save_params=True)
    name, kw = _alternative(st["solver"])
    if name == "adams" and not problem.squared:
        name, kw = "auto", {"rtol": 1e-8}
    alt = nf.solve_flows(problem, sol.t1, solver=name, **kw, **common)
    exact = dict(common, error_estimate=False, solver="exponential")
    rtol = max(1e-12, 1.01 * st["resolution"])
    ref = nf.solve_flows(problem, sol.t1, rtol=rtol, max_steps=10**6, **exact)
    ref2 = nf.solve_flows(problem, sol.t1, rtol=1e-11, max_steps=10**6, **exact)
    steps, wall, acc = solve_cost(sol)
    alt_steps, alt_wall, alt_acc = solve_cost(alt)
    # The previous default (issue 13): the exponential Runge–Kutta pair at rtol 1e-8 for a
    # stiff flow, Tsit5 otherwise, with its 10× looser re-solve.
    prev_is_alt = st["solver"] == "ExponentialAdams" or name == "auto"
    prev_steps, prev_wall = (alt_steps, alt_wall) if prev_is_alt else (steps, wall)
    return {
        "label": label,
        "n": problem.n,
        "p": problem.p,
        "alpha": problem.alpha,
        "loss": problem.loss_name,
        "cond": float(cert.kernel.eigenvalues[-1] / cert.kernel.eigenvalues[0]),
        "solver": st["solver"],
        "status": sol.status.name,
        "steps": steps,
        "wall_s": wall,
        "in_gradients": wall / t_grad,
        "accuracy": acc,
        **_assess(problem, cert, sol, ref, ref2),
        "prev_steps": prev_steps,
        "prev_in_gradients": prev_wall / t_grad,
        "alt": {
            "solver": alt.stats["gradient"]["solver"],
            "status": alt.status.name,
            "steps": alt_steps,
            "in_gradients": alt_wall / t_grad,
            "accuracy": alt_acc,
            **_assess(problem, cert, alt, ref, ref2),
        },
    }


def _cells(r: dict) -> str:
    acc = r["accuracy"]
    taus = ", ".join(f"{t:g}" for t in acc["taus"]) if acc else "—"
    return (
        f"{r['solver']} | {taus} | {r['steps']} | {r['in_gradients']:.0f} | "
        f"{r['ratio_w']:.2g} | {r['ratio_loss']:.2g} | {r['ratio_res']:.2g} | "
        f"{r['rel_error_w']:.1e} | {r['contradictions']} | {r['inconclusive_vs_decided']}"
    )


def render(result: dict) -> str:
    head = (
        "solver | τ solved at | steps | in gradients | true/budget w | loss | residual "
        "| rel. error w | verdicts changed | inconclusive (ref decided)"
    )
    out = [
        "Error budget against the true error (reference: the exponential Runge–Kutta "
        f"integrator at rtol 1e-12), {SAVES} saves. A ratio ≤ 1 means the budget bounded "
        "the true error everywhere. Costs count every solve (the policy's, or a solve and "
        f"its re-solve). {result['machine']}.",
        "",
        'Default settings (`solver="auto"`, `rtol="auto"`), and the previous default\'s '
        "cost (the exponential Runge–Kutta pair at rtol 1e-8 for a stiff flow, else Tsit5, "
        "with its re-solve):",
        "",
        f"| problem | loss | cond(K0) | {head} | previous default: steps, gradients |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        out.append(
            f"| {r['label']} | {r['loss']} | {r['cond']:.2g} | {_cells(r)} | "
            f"{r['prev_steps']}, {r['prev_in_gradients']:.0f} |"
        )
    out += [
        "",
        'The other candidate of `solver="auto"` on the same problems (the exponential '
        "Adams policy where the default is the Runge–Kutta pair, and the other way round; "
        "for Tsit5 and the logistic loss, the previous default):",
        "",
        f"| problem | {head} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    out += [f"| {r['label']} | {_cells(r['alt'])} |" for r in result["rows"]]

    def worst(rows):
        return max(max(r["ratio_w"], r["ratio_loss"], r["ratio_res"]) for r in rows)

    default, other = worst(result["rows"]), worst([r["alt"] for r in result["rows"]])
    out += [
        "",
        f"Largest true/budget ratio at default settings: {default:.3g}; of the other "
        f"candidate: {other:.3g}.",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first four problems")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    import ntkflow  # noqa: F401  (float64 on)

    rows = []
    for label, make in problems(args.quick):
        row = run_one(label, make)
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    result = {"machine": f"{os.cpu_count()} CPUs", "rows": rows}
    write_results(Path(args.out), "flows_budget", result, render)
    print(render(result))


if __name__ == "__main__":
    main()
