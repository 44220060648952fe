"""One run, summarised once: the `summary.json` document, and the two views of it that
`ntkflow run --json` and a sweep's points read.

`summarize` builds the document from the run's live objects (the certificate, the flows'
solution and their verification); `run_view` and `point_view` only select from it, so
the CLI, a results directory and a sweep can never disagree about a run. The document's
`scalars` section holds the numbers of the flows that the scaling laws use (suprema over
time of the distances and gaps, final losses), each computed here once.
"""

from typing import Any

import numpy as np

from ._certificate import Certificate
from ._json import jsonable
from ._problem import Problem
from ._quantities import FLOW_SCALARS as FLOW_SCALARS, POINT_CERTIFICATE, Run
from ._results import now, versions
from ._solution import FlowSolution
from ._verify import Verification
from .infinite._limit_summary import LIMIT_SCALARS


def flow_scalars(
    problem: Problem, solution: FlowSolution, verification: Verification
) -> dict[str, Any]:
    """The numbers of the flows the scaling laws and sweeps use (`FLOW_SCALARS`, docs/theory.md,
    "Fitting the laws"): suprema over the save times and solver steps, their error budgets,
    final losses, the exit time (`inf`: never left the ball) and the solver's steps."""
    run = Run(solution, verification, float(np.linalg.norm(np.asarray(problem.w0))))
    return {name: scalar.read(run) for name, scalar in FLOW_SCALARS.items()}


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
