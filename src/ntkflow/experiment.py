"""One experiment end to end: the problem its file describes, certificate, flows, checks,
and their results directory.

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

from . import datasets
from ._certificate import Certificate, certify
from ._flows import solve_flows
from ._json import jsonable
from ._memory import TooLarge
from ._problem import Problem
from ._repr import concise, count_checks, shown
from ._results import REPORT, atomic_write_bytes, results_writer
from ._solution import FlowSolution
from ._summary import summarize
from ._verify import Verification, verify
from .config import (
    CNNModel,
    ConfigError,
    DigitsData,
    Experiment,
    MLPModel,
    ShallowModel,
    SphereData,
)
from .infinite._limit_summary import limit_kernel, limit_path, limit_scalars
from .models import CNN, MLP, Shallow


@concise
@dataclasses.dataclass(frozen=True, eq=False)
class RunOutput:
    """Everything one run produced: the live objects and their saved forms (`summary`,
    JSON-ready; `dataset`, an `xarray.Dataset`)."""

    experiment: Experiment | None  # None for a run of a `Problem` built in Python (`run`)
    problem: Any
    certificate: Certificate
    solution: FlowSolution | None
    verification: Verification | None
    summary: dict[str, Any]
    dataset: Any

    def _overview(self) -> list[tuple[str, Any]]:
        cert, sol, ver = self.certificate, self.solution, self.verification
        items: list[tuple[str, Any]] = [
            ("problem", shown(f"n={cert.n}, p={cert.p}, α={cert.alpha:.4g}, loss={cert.loss}")),
            ("hypotheses_hold", cert.hypotheses_hold),
            ("alpha_star", cert.alpha_star),
            ("beta", shown(f"{cert.beta:.4g} ({cert.beta_kind})")),
        ]
        if sol is not None:
            items.append(
                ("solution", shown(f"{sol.status.name}, t1={sol.t1:.4g}, {len(sol.ts)} saves"))
            )
        if ver is not None:
            items.append(("all_hold", ver.all_hold))
            items.append(("checks", shown(count_checks(ver.checks))))
        path = self.summary.get("path") if isinstance(self.summary, dict) else None
        if path:
            items.append(("path", path))
        items.append(("dataset", self.dataset))
        return items


def _dataset(certificate: Certificate, solution: FlowSolution | None) -> Any:
    import xarray as xr

    ds = solution.to_xarray() if solution is not None else xr.Dataset()
    spectrum = certificate.spectrum
    if spectrum is not None:
        ds["ntk_eigenvalues"] = ("mode", np.asarray(spectrum.eigenvalues))
        ds["ntk_eigenvalues"].attrs["long_name"] = "eigenvalues of K0, ascending"
    # The same series with a `flow` dimension, for comparing flows in one variable.
    paths = solution.paths() if solution is not None else {}
    flows = {k: (p.loss, p.dist) for k, p in paths.items() if p.dist is not None}
    if flows:
        ds = ds.assign_coords(flow=list(flows))
        ds["loss"] = (("flow", "t"), np.stack([loss for loss, _ in flows.values()]))
        ds["distance"] = (("flow", "t"), np.stack([dist for _, dist in flows.values()]))
    return ds


def build_problem(exp: Experiment, *, source: str = "experiment") -> Any:
    """Build the `ntkflow.Problem` an experiment describes.

    **Raises:** `ConfigError` (one line, prefixed by `source` and the section) for values
    only the library can reject (more points than the digits have, a model whose outputs
    do not match the targets, …).
    """
    d, m, p = exp.data, exp.model, exp.problem
    section = "[data]"
    try:
        if isinstance(d, DigitsData):
            data = datasets.digits(
                d.n, tuple(d.classes), n_test=d.n_test, seed=d.seed, images=d.images
            )
        elif isinstance(d, SphereData):
            data = datasets.sphere(
                d.n,
                d.d,
                teacher=d.teacher_width,
                teacher_activation=d.teacher_activation,
                noise=d.noise,
                n_test=d.n_test,
                seed=d.seed,
            )
        else:
            data = datasets.load(d.path, y_column=d.y_column, n_test=d.n_test, seed=d.seed)
        section = "[model]"
        if isinstance(m, ShallowModel):
            model = Shallow(width=m.width, activation=m.activation, train=m.train)
        elif isinstance(m, CNNModel):
            model = CNN(
                tuple(m.channels),
                m.kernel_size,
                m.activation,
                out_dim=m.out_dim,
                bias=m.bias,
                readout=m.readout,
                strides=m.strides,
                padding=m.padding,
                pool=m.pool,
            )
        else:
            model = MLP(tuple(m.widths), m.activation, out_dim=m.out_dim, bias=m.bias)
        outputs = 1 if isinstance(m, ShallowModel) else m.out_dim
        if outputs != data.k:
            raise ValueError(_outputs_fix(m, data.k))
        section = "[problem]"
        return Problem(
            model,
            data,
            alpha=p.alpha,
            centering=p.centering,
            key=p.seed,
            dtype=p.dtype,
            loss=p.loss,
        )
    except TooLarge as e:
        raise ConfigError(f"{source}: [{e.part}] {e}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {section} {e}") from None


def _outputs_fix(m: "ShallowModel | MLPModel | CNNModel", k: int) -> str:
    """A model whose outputs per point do not match the targets' columns, in the file's
    terms (the library's message names `MLP(out_dim=…)`)."""
    columns = "one target column" if k == 1 else f"{k} target columns"
    if isinstance(m, ShallowModel):
        return (
            f'kind = "shallow" has one output per point but the data have {columns}; use '
            f'kind = "mlp" with out_dim = {k}, or data with one target column'
        )
    return f"out_dim = {m.out_dim} but the data have {columns}; set out_dim = {k}"


def flow_settings(exp: Experiment) -> dict[str, Any]:
    """The keyword arguments of `ntkflow.solve_flows` an experiment's `[flows]` gives."""
    f = exp.flows
    return {
        "t1": f.t1,
        "saveat": f.saves,
        "spacing": f.spacing,
        "solver": f.solver,
        "rtol": f.rtol,
        "atol": f.atol,
        "max_steps": f.max_steps,
        "tangent": f.tangent,
        "gd_step": f.gd_step,
        "error_estimate": f.error_estimate,
        "diagnostics": f.diagnostics,
    }


def run_experiment(
    experiment: Experiment,
    *,
    source: str = "experiment",
    flows: bool = True,
    progress: bool = False,
    cancelled: Callable[[], bool] | None = None,
    certificate: Certificate | None = None,
) -> RunOutput:
    """Certify an experiment and (with `flows=True`) integrate and check both flows.

    `cancelled()` is asked between the phases; when true, `KeyboardInterrupt` is raised.
    `certificate`: the experiment's problem's, when already computed (not again).

    **Raises:** `ConfigError`/`ValueError` for bad input, with a one-line message.
    """
    start = time.perf_counter()
    problem = build_problem(experiment, source=source)
    return run_problem(
        problem,
        name=experiment.name,
        config=experiment.model_dump(mode="json"),
        experiment=experiment,
        beta=experiment.problem.beta,
        limit=bool(experiment.output.limit),
        flows=flows,
        progress=progress,
        cancelled=cancelled,
        start=start,
        certificate=certificate,
        flow_options=flow_settings(experiment),
    )


def run_problem(
    problem: Problem,
    *,
    name: str,
    config: dict[str, Any],
    experiment: Experiment | None = None,
    beta: float | None = None,
    limit: bool = False,
    flows: bool = True,
    progress: bool = False,
    cancelled: Callable[[], bool] | None = None,
    start: float | None = None,
    certificate: Certificate | None = None,
    flow_options: dict[str, Any] | None = None,
) -> RunOutput:
    """The run pipeline every entry point shares (`ntkflow run`, `run_experiment`, `run`,
    the sweeps' points): certify → (with `flows`) solve both flows → verify → summarise,
    and the run's dataset. `cancelled()` is asked between the phases (`KeyboardInterrupt`
    when true); `start` is when the run began (for the summary's timings); `certificate`
    the problem's, when already computed (it is not computed again)."""

    def check() -> None:
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt

    start = time.perf_counter() if start is None else start
    if certificate is None:
        certificate = certify(problem, beta=beta, progress=progress is True)
    cert = certificate
    theta = limit_kernel(problem) if limit else None  # (once: scalars and series read it)
    limits = limit_scalars(problem, cert, theta)
    t_cert = time.perf_counter() - start
    solution = verification = None
    if flows:
        check()
        solution = solve_flows(
            problem, progress=progress, kernel=cert.kernel, **(flow_options or {})
        )
        check()
        verification = verify(solution, cert)
    if limits and solution is not None:
        solution = dataclasses.replace(solution, limit=limit_path(problem, solution.ts, theta))
    summary = summarize(
        name,
        config,
        problem,
        cert,
        solution,
        verification,
        timings={"certify_s": t_cert, "total_s": time.perf_counter() - start},
        limit=limits,
    )
    return RunOutput(
        experiment=experiment,
        problem=problem,
        certificate=cert,
        solution=solution,
        verification=verification,
        summary=summary,
        dataset=_dataset(cert, solution),
    )


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
    run: RunOutput,
    out: str | os.PathLike,
    *,
    cancelled: Callable[[], bool] | None = None,
    figures: bool = True,
    report: bool = True,
    dpi: int = 110,
) -> Path:
    """Write a run's results directory atomically, figures and report included (see
    `_results.py`); an experiment's `[output]` settings replace the keywords."""
    if run.experiment is not None:
        o = run.experiment.output
        figures, report, dpi = o.figures, o.report, o.dpi
    with results_writer(out, run.summary, run.dataset, cancelled=cancelled) as (tmp, summary):
        render(tmp, run.dataset, summary, figures=figures, report=report, dpi=dpi)
    return Path(out)


def run(
    problem: Problem,
    out: str | os.PathLike | None = None,
    *,
    name: str = "python",
    beta: float | None = None,
    figures: bool = True,
    report: bool = True,
    dpi: int = 110,
    progress: bool = False,
    limit: bool = False,
    **flow_options: Any,
) -> RunOutput:
    """What `ntkflow run FILE` does, for a `Problem` built in Python (any model: `MLP`,
    `from_torch(...)`, …): certify it, integrate both flows, check every conclusion and,
    with `out`, write the same results directory (`summary.json`, `trajectories.nc`,
    `figures/`, `report.html`, atomically).

    **Arguments:**

    - `problem`: the `Problem`.
    - `out`: the results directory (created or replaced); `None` writes nothing.
    - `name`: the run's name in the summary and report.
    - `beta`: a user's β for the certificate (`certify(problem, beta=…)`).
    - `figures`, `report`, `dpi`: what `out` gets.
    - `progress`: a progress bar for the gradient flow.
    - `limit`: also the distances of `K0`, `σ_min`, `σ_max`, `α*` to the infinite-width
      limit (`MLP`, `Shallow`, `CNN`; the summary's `limit` section).
    - `flow_options`: passed to `solve_flows` (`t1`, `saveat`, `solver`, `rtol`, …).

    **Returns:** a `RunOutput` (`certificate`, `solution`, `verification`, `summary`,
    `dataset`; `experiment` is `None`).
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"run needs an ntkflow Problem, got {type(problem).__name__}")
    output = run_problem(
        problem,
        name=name,
        config={"source": "python", "beta": beta, "flows": jsonable(flow_options)},
        beta=beta,
        limit=limit,
        progress=progress,
        flow_options=flow_options,
    )
    if out is not None:
        save_run(output, out, figures=figures, report=report, dpi=dpi)
    return output
