"""One experiment end to end: certificate, flows, checks, and their results directory.

This sits above the numerical core (it reads configs and writes files); the CLI, the demo
and sweeps call it.
"""

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._certificate import Certificate, certify
from ._flows import solve_flows
from ._results import REPORT, atomic_write_bytes, versions, write_results
from ._solution import FlowSolution
from ._verify import Verification, verify
from .config import Experiment, build_problem, flow_settings


@dataclasses.dataclass(frozen=True, eq=False)
class RunOutput:
    """Everything one run produced: the live objects and their saved forms (`summary`,
    JSON-ready; `dataset`, an `xarray.Dataset`)."""

    experiment: Experiment
    problem: Any
    certificate: Certificate
    solution: FlowSolution | None
    verification: Verification | None
    summary: dict[str, Any]
    dataset: Any


def _dataset(certificate: Certificate, solution: FlowSolution | None) -> Any:
    import xarray as xr

    ds = solution.to_xarray() if solution is not None else xr.Dataset()
    spectrum = certificate.spectrum
    if spectrum is not None:
        ds["ntk_eigenvalues"] = ("mode", np.asarray(spectrum.eigenvalues))
        ds["ntk_eigenvalues"].attrs["long_name"] = "eigenvalues of K0, ascending"
    if solution is not None:
        # The same series with a `flow` dimension, for comparing flows in one variable.
        flows = [
            (name, loss, dist)
            for name, loss, dist in (
                ("gradient", solution.loss_w, solution.dist_w),
                ("tangent", solution.loss_u, solution.dist_u),
                ("gd", solution.loss_gd, solution.dist_gd),
            )
            if loss is not None and dist is not None
        ]
        if flows:
            ds = ds.assign_coords(flow=[f[0] for f in flows])
            ds["loss"] = (("flow", "t"), np.stack([f[1] for f in flows]))
            ds["distance"] = (("flow", "t"), np.stack([f[2] for f in flows]))
    return ds


def run_experiment(
    experiment: Experiment,
    *,
    source: str = "experiment",
    flows: bool = True,
    progress: bool = False,
    cancelled: Callable[[], bool] | None = None,
) -> RunOutput:
    """Certify an experiment and (with `flows=True`) integrate and check both flows.

    `cancelled()` is asked between the phases; when true, `KeyboardInterrupt` is raised.

    **Raises:** `ConfigError`/`ValueError` for bad input, with a one-line message.
    """

    def check() -> None:
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt

    start = time.perf_counter()
    problem = build_problem(experiment, source=source)
    cert = certify(problem)
    t_cert = time.perf_counter() - start
    solution = verification = None
    if flows:
        check()
        solution = solve_flows(
            problem, progress=progress, kernel=cert.kernel, **flow_settings(experiment)
        )
        check()
        verification = verify(solution, cert)
    summary: dict[str, Any] = {
        "name": experiment.name,
        "created": _now(),
        "config": experiment.model_dump(mode="json"),
        "problem": problem.describe(),
        "certificate": cert.to_dict(details=True),
        "versions": versions(),
    }
    if solution is not None and verification is not None:
        summary["verification"] = {**verification.to_dict(), "summary": verification.summary()}
        summary["solver"] = solution.scalars()
    summary["timings"] = {"certify_s": t_cert, "total_s": time.perf_counter() - start}
    return RunOutput(
        experiment=experiment,
        problem=problem,
        certificate=cert,
        solution=solution,
        verification=verification,
        summary=summary,
        dataset=_dataset(cert, solution),
    )


def _now() -> str:
    from ._results import now

    return now()


def render(
    directory: str | os.PathLike,
    ds: Any,
    summary: dict[str, Any],
    *,
    figures: bool = True,
    report: bool = True,
    dpi: int = 110,
) -> None:
    """Draw the figures into `directory/figures/` and the report into
    `directory/report.html` (each file written atomically)."""
    from .plotting import save_figures
    from .report import render_report

    directory = Path(directory)
    paths = save_figures(directory / "figures", ds, summary, dpi=dpi) if figures else {}
    if report:
        html = render_report(summary, paths)
        atomic_write_bytes(directory / REPORT, html.encode("utf-8"))


def save_run(
    run: RunOutput, out: str | os.PathLike, *, cancelled: Callable[[], bool] | None = None
) -> Path:
    """Write a run's results directory atomically (see `_results.py`)."""
    o = run.experiment.output

    def _render(tmp: Path, ds: Any, summary: dict[str, Any]) -> None:
        render(tmp, ds, summary, figures=o.figures, report=o.report, dpi=o.dpi)

    return write_results(out, run.summary, run.dataset, render=_render, cancelled=cancelled)
