"""The certified β of an MLP against its estimates, as width and depth grow.

    python bench/beta_looseness.py [--widths 16,64,256,1024] [--depths 1,2,3] [--out bench/results]

For `MLP((m,) * depth, "tanh")`, antisymmetric centring, `n = 32` inputs uniform on the
unit sphere in R^16 (targets `sign(x0)`), seed 0: `certify` gives `σ_min`, the certified
`β` (docs/theory.md, "Deep networks: a certified β", at the consistent radius
`B = σ_min/(2β)`) and the curvature and ball-sampling estimates (each a lower bound on the
truth). Reported: the three values, `B`, and the ratio of the certified value to the
curvature estimate. Writes `OUT/beta_looseness.json` and `OUT/beta_looseness.md`.
"""

import argparse
import time
from pathlib import Path

from flows import write_results  # (bench/flows.py: this script runs from bench/)

HERE = Path(__file__).resolve().parent
N, DIM = 32, 16


def row(width: int, depth: int) -> dict:
    import numpy as np

    import ntkflow as nf

    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = nf.datasets.from_arrays(X, np.sign(X[:, 0]))
    problem = nf.Problem(nf.MLP((width,) * depth, "tanh"), data, centering="antisymmetric")
    start = time.perf_counter()
    cert = nf.certify(problem)
    by = {b.method: b for b in cert.beta_estimates}
    certified, curvature = by["mlp ball bound"], by["curvature"]
    sampled = by.get("ball sampling")
    return {
        "width": width,
        "depth": depth,
        "p": problem.p,
        "sigma_min": cert.sigma_min,
        "beta_certified": certified.value,
        "B": certified.radius,
        "beta_curvature": curvature.value,
        "beta_sampled": None if sampled is None else sampled.value,
        "ratio": certified.value / curvature.value,
        "certify_s": time.perf_counter() - start,
    }


def render(result: dict) -> str:
    lines = [
        "# Certified β of an MLP against its estimates",
        "",
        '`MLP((m,)·depth, "tanh")`, antisymmetric, n = 32 points on the sphere in R^16.',
        "",
        "| depth | m | σ_min | certified β | B | curvature β | sampled β | certified / curvature |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        sampled = "—" if r["beta_sampled"] is None else f"{r['beta_sampled']:.3g}"
        lines.append(
            f"| {r['depth']} | {r['width']} | {r['sigma_min']:.3g} | {r['beta_certified']:.3g} "
            f"| {r['B']:.3g} | {r['beta_curvature']:.3g} | {sampled} | {r['ratio']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--widths", default="16,64,256,1024")
    ap.add_argument("--depths", default="1,2,3")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        for width in (int(m) for m in args.widths.split(",")):
            rows.append(row(width, depth))
            r = rows[-1]
            print(
                f"depth {depth} m {width}: certified {r['beta_certified']:.3g}, curvature "
                f"{r['beta_curvature']:.3g}, ratio {r['ratio']:.3g} ({r['certify_s']:.0f} s)",
                flush=True,
            )
    write_results(Path(args.out), "beta_looseness", {"rows": rows}, render)


if __name__ == "__main__":
    main()
