"""One run, summarised once: the `summary.json` document, and the two views of it that
`ntkflow run --json` and a sweep's points read.

`summarize` builds the document from the run's live objects (the certificate, the flows'
solution and their verification); `run_view` and `point_view` only select from it, so
the CLI, a results directory and a sweep can never disagree about a run. The document's
`scalars` section holds the numbers of the flows that the scaling laws use (suprema over
time of the distances and gaps, final losses), each computed here once.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._certificate import Certificate
from ._json import jsonable
from ._limit_summary import LIMIT_SCALARS
from ._problem import Problem
from ._results import now, versions
from ._solution import FlowSolution
from ._verify import Verification, nanmax


def _last(a: Any) -> float:
    """The last finite entry (NaN if none)."""
    if a is None:
        return math.nan
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a[-1]) if a.size else math.nan


@dataclasses.dataclass(frozen=True)
class _Run:
    solution: FlowSolution
    verification: Verification
    w0_norm: float


def _sup(*names: str) -> Callable[[_Run], float]:
    """The supremum of the series `names` (`SERIES`) over their saves and steps."""
    return lambda r: nanmax(*(r.solution.series(n) for n in names))


def _final(name: str) -> Callable[[_Run], float]:
    return lambda r: _last(r.solution.series(name))


def _relative_change(r: _Run) -> float:
    return _last(r.solution.series("dist_w")) / r.w0_norm if r.w0_norm > 0 else math.nan


def _exit_time(r: _Run) -> float:
    return r.verification.exit_time if r.verification.exit_time is not None else math.inf


def _num_steps(r: _Run) -> int:
    gradient = r.solution.stats.get("gradient")
    return (gradient.get("num_steps") or 0) if gradient is not None else 0


# The numbers of the flows that the scaling laws and sweeps use (docs/theory.md, "Fitting
# the laws"), each named once, with what it is and how it is read from a run.
FLOW_SCALARS: dict[str, tuple[str, Callable[[_Run], Any]]] = {
    "w0_norm": ("‖w0‖", lambda r: r.w0_norm),
    "sup_dist_w": ("sup_t ‖w(t) − w0‖ (saves and solver steps)", _sup("dist_w", "step_dist_w")),
    "sup_dist_u": ("sup_t ‖u(t) − w0‖", _sup("dist_u")),
    "sup_gap_f": ("sup_t ‖αf(w(t)) − αf_0(u(t))‖", _sup("gap_f", "step_gap_f")),
    "sup_gap_w": ("sup_t ‖w(t) − u(t)‖", _sup("gap_w", "step_gap_w")),
    # The integrator's error budget on those (NaN without `error_estimate`).
    "err_dist_w": ("the error budget of sup_dist_w", _sup("err_w")),
    "err_gap_f": ("the error budget of sup_gap_f", _sup("err_res_w")),
    "err_gap_w": ("the error budget of sup_gap_w", _sup("err_w")),
    "sup_kernel_drift": ("sup_t ‖K_{w(t)} − K0‖/‖K0‖", _sup("kernel_drift")),
    "rel_weight_change": ("‖w(t1) − w0‖/‖w0‖", _relative_change),
    "final_loss_w": ("the gradient flow's loss at t1", _final("loss_w")),
    "final_loss_u": ("the tangent flow's loss at t1", _final("loss_u")),
    "final_test_loss_w": ("the gradient flow's test loss at t1", _final("loss_w_test")),
    "final_test_loss_u": ("the tangent flow's test loss at t1", _final("loss_u_test")),
    "final_test_acc_w": ("the gradient flow's test accuracy at t1", _final("acc_w_test")),
    "final_test_acc_u": ("the tangent flow's test accuracy at t1", _final("acc_u_test")),
    "exit_time": ("the first time w(t) left the ball (inf: never)", _exit_time),
    "num_steps": ("the gradient flow's solver steps", _num_steps),
}


def flow_scalars(
    problem: Problem, solution: FlowSolution, verification: Verification
) -> dict[str, Any]:
    """The numbers of the flows the scaling laws and sweeps use (`FLOW_SCALARS`, docs/theory.md,
    "Fitting the laws"): suprema over the save times and solver steps, their error budgets,
    final losses, the exit time (`inf`: never left the ball) and the solver's steps."""
    run = _Run(solution, verification, float(np.linalg.norm(np.asarray(problem.w0))))
    return {name: read(run) for name, (_, read) in FLOW_SCALARS.items()}


def summarize(
    name: str,
    config: dict[str, Any],
    problem: Problem,
    certificate: Certificate,
    solution: FlowSolution | None,
    verification: Verification | None,
    *,
    timings: dict[str, float],
    limit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's `summary.json` document (without `format`/`complete`, which
    `write_results` adds): `name`, `created`, `config`, `problem`, `certificate` (with
    details), `versions`, and, when the flows ran, `verification` (with its one-paragraph
    `summary`), `solver` (`FlowSolution.scalars`) and `scalars` (`flow_scalars`); the
    distances to the infinite-width limit (`limit`, `_limit_summary.limit_scalars`) when
    computed; then `timings`."""
    document: dict[str, Any] = {
        "name": name,
        "created": now(),
        "config": config,
        "problem": problem.describe(),
        "certificate": certificate.to_dict(details=True),
        "versions": versions(),
    }
    if solution is not None and verification is not None:
        document["verification"] = {**verification.to_dict(), "summary": verification.summary()}
        document["solver"] = solution.scalars()
        document["scalars"] = jsonable(flow_scalars(problem, solution, verification))
    if limit:
        document["limit"] = jsonable(limit)
    document["timings"] = timings
    return document


def run_view(document: dict[str, Any], path: Any = None) -> dict[str, Any]:
    """`ntkflow run --json`: the results directory (`path`), the certificate's keys
    (`Certificate.KEYS`), the checks, the exit time, whether all held and the solve
    completed, how it ended, the solver's statistics and the flows' `scalars` (the
    summary's section of that name: final losses, suprema, …)."""
    out: dict[str, Any] = {"path": None if path is None else str(path)}
    out.update({k: document["certificate"][k] for k in Certificate.KEYS})
    v, solver = document["verification"], document["solver"]
    out.update(
        checks=v["checks"],
        exit_time=v["exit_time"],
        all_hold=v["all_hold"],
        complete=v["complete"],
        status=solver["status"],
        message=solver["message"],
        t1=solver["t1"],
        t_reached=v["t_reached"],
        reached=v["reached"],
        solver=solver["stats"],
        scalars=document.get("scalars", {}),
    )
    return out


# The certificate's numbers a sweep keeps per point.
POINT_CERTIFICATE = (
    "alpha_star",
    "sigma_min",
    "sigma_max",
    "beta",
    "beta_kind",
    "R0",
    "B",
    "B_prime",
    "hypotheses_hold",
    "p",
)


def point_view(document: dict[str, Any]) -> dict[str, Any]:
    """The numbers a sweep keeps from a run: how it ended, the certificate's numbers, the
    flows' `scalars`, `t1`, `all_hold`, and each check's verdict, margin and whether it is
    guaranteed."""
    cert, solver, v = document["certificate"], document["solver"], document["verification"]
    return {
        "status": solver["status"],
        "message": solver["message"],
        **{k: cert[k] for k in POINT_CERTIFICATE},
        "t1": solver["t1"],
        **document["scalars"],
        **{k: v for k, v in document.get("limit", {}).items() if k in LIMIT_SCALARS},
        "all_hold": v["all_hold"],
        "checks": {
            c["name"]: {"holds": c["holds"], "margin": c["margin"], "guaranteed": c["guaranteed"]}
            for c in v["checks"]
        },
    }
