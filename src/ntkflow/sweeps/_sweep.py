"""Sweeps: a grid over experiment keys, each point an independent job, resumable.

    OUT/
      sweep.json        the manifest: the base experiment and the grid (what resuming checks)
      points/NNNNN.nc   one point's series over its save times (written atomically)
      points/NNNNN.json one point's scalars, checks and status (written last: "done")
      sweep.nc          every point in one xarray Dataset: a dimension per swept key, + t
      summary.json      per-point summaries, scaling fits, critical α ("complete": true)
      figures/, report.html

Points run through an `AbstractExecutor` — `LocalProcesses(jobs)` (`_executors`), and a
cluster engine can implement the same `run(fn, payloads, on_result)` — so nothing depends
on how they are scheduled. A point's numbers depend only on its configuration, so a
resumed sweep's dataset is identical to an uninterrupted one.

This module holds the entry points (`sweep`, `run_sweep`, `load_sweep`, `render_sweep`)
and the assembly of sweep.nc and summary.json from the parts: `_grid` (the grid,
`SweepError`), `_executors`, `_points` (one point, the resume manifest), `_sweep_dataset`
(sweep.nc) and `_scaling_laws` (the fits and critical α).
"""

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._json import jsonable
from .._progress import rich_bar, sweep_fields
from .._repr import concise, shown
from .._results import atomic_write_bytes, directory_lock, now, versions
from ._executors import (
    AbstractExecutor as AbstractExecutor,
    LocalProcesses as LocalProcesses,
    get_executor,
)
from ._grid import (
    FIT,
    Grid,
    SweepError,
    fit_ranges,
    make_grid as make_grid,
    sweep_settings,
)
from ._points import FORMAT, POINTS, adopt_point, dead_point, load_point, prepare, run_point
from ._scaling import ScalingFit
from ._scaling_laws import annotate_beta, critical_alphas, scaling_fits
from ._sweep_dataset import build_dataset

DATASET = "sweep.nc"


@concise
@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """A finished sweep: `dataset` (sweep.nc), `summary` (summary.json), `fits`, `path`."""

    dataset: Any
    summary: dict[str, Any]
    fits: list[ScalingFit]
    path: Path

    def _overview(self) -> list[tuple[str, Any]]:
        fits = "".join(
            f"\n    {f.quantity} vs {f.against.split('.')[-1]}: slope {f.slope:.3g}"
            for f in self.fits[:8]
        )
        return [
            ("path", str(self.path)),
            ("keys", self.summary.get("keys")),
            ("points", self.summary.get("n_points")),
            ("failed_points", len(self.summary.get("failed_points") or ())),
            ("complete", self.summary.get("complete")),
            ("dataset", self.dataset),
            ("fits", shown(f"{len(self.fits)}{fits}")),
            ("summary", self.summary),
        ]


def run_sweep(
    experiment_doc: dict[str, Any],
    out: str | os.PathLike,
    *,
    executor: AbstractExecutor | None = None,
    resume: bool = False,
    progress: bool = False,
    render: bool = True,
    cancelled: Callable[[], bool] | None = None,
) -> SweepResult:
    """Run every point of an experiment's `[sweep]` grid and assemble the results.

    **Arguments:**

    - `experiment_doc`: the experiment as a dict (a parsed TOML file) with a `sweep` table
      mapping dotted keys to lists, e.g. `{"problem.alpha": [1, 10, 100]}`.
    - `out`: the sweep directory.
    - `executor`: how points run (default `LocalProcesses(1)`).
    - `resume`: continue a sweep in `out`, skipping the points already done.
    - `progress`: a progress bar over points with ETA (stderr).
    - `render`: draw the figures and the report.
    - `cancelled`: polled as each point finishes; when it returns true the sweep stops
      with `KeyboardInterrupt` (the points done so far stay, for `resume`).

    **Returns:** a `SweepResult`.

    **Raises:** `SweepError` for a bad grid, an invalid point or a clashing `out`.
    """
    out = Path(out)
    executor = executor or LocalProcesses(1)
    # One driver per sweep directory: a second concurrent sweep into it is refused.
    with directory_lock(out, what="sweep directory"):
        return _run_locked(
            experiment_doc,
            out,
            executor,
            resume=resume,
            progress=progress,
            render=render,
            cancelled=cancelled,
        )


def _run_locked(
    experiment_doc: dict[str, Any],
    out: Path,
    executor: AbstractExecutor,
    *,
    resume: bool,
    progress: bool,
    render: bool,
    cancelled: Callable[[], bool] | None,
) -> SweepResult:
    grid, payloads = prepare(experiment_doc, out, resume=resume)
    records = run_points(out, payloads, run_point, executor, progress=progress, cancelled=cancelled)
    return assemble(out, grid, payloads, records, experiment_doc, render=render)


def run_points(
    out: Path,
    payloads: list[dict[str, Any]],
    fn: Callable[[dict[str, Any]], dict[str, Any]],
    executor: AbstractExecutor,
    *,
    progress: bool = False,
    cancelled: Callable[[], bool] | None = None,
) -> dict[int, dict[str, Any]]:
    """The points of a claimed sweep directory `out`: those already written (resume),
    then `fn` on the rest through `executor`, each record adopted as it arrives
    (`_points.adopt_point`), with a progress bar; `cancelled()` polled as each point
    finishes (`KeyboardInterrupt` when true). Returns the records by index."""
    points_dir = out / POINTS
    records: dict[int, dict[str, Any]] = {}
    for p in payloads:
        done = load_point(points_dir, p["index"], p["id"])
        if done is not None:
            records[p["index"]] = done
    pending = [p for p in payloads if p["index"] not in records]

    bar = task = None
    if progress and pending:
        bar = rich_bar(counts=True)
        bar.start()
        fields = sweep_fields(records, len(payloads))
        task = bar.add_task("sweep", total=len(payloads), completed=len(records), **fields)

    def on_result(record: dict[str, Any]) -> None:
        record = adopt_point(points_dir, record)
        records[record["index"]] = record
        if bar is not None and task is not None:
            bar.update(task, advance=1, **sweep_fields(records, len(payloads)))
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt

    try:
        executor.run(fn, pending, on_result, lambda p, message: on_result(dead_point(p, message)))
    finally:
        if bar is not None:
            bar.stop()
    if cancelled is not None and cancelled():
        raise KeyboardInterrupt
    return records


def assemble(
    out: Path,
    grid: Grid,
    payloads: list[dict[str, Any]],
    records: dict[int, dict[str, Any]],
    experiment_doc: dict[str, Any],
    *,
    render: bool = True,
) -> SweepResult:
    """Build sweep.nc, the fits and summary.json, then the figures and report."""
    ds = build_dataset(grid, payloads, records, out / POINTS)
    centering = str(experiment_doc.get("problem", {}).get("centering", "none"))
    ranges = fit_ranges((experiment_doc.get("sweep") or {}).get(FIT))
    fits = scaling_fits(ds, grid, centering, ranges)
    crit = critical_alphas(ds, grid)
    annotate_beta(crit, records.values())
    failed = [
        {
            "index": i,
            "assignment": r["assignment"],
            "status": r["status"],
            "message": r.get("message", ""),
        }
        for i, r in sorted(records.items())
        if r.get("status") != "success"
    ]
    summary = {
        "format": FORMAT,
        "name": experiment_doc.get("name", "experiment"),
        "created": now(),
        "keys": list(grid.keys),
        "values": [list(v) for v in grid.values],
        "n_points": len(payloads),
        "points": [
            {k: v for k, v in records[p["index"]].items() if k not in ("complete",)}
            for p in payloads
            if p["index"] in records
        ],
        "failed_points": failed,
        "fits": [f.to_dict() for f in fits],
        "critical_alpha": crit,
        "config": experiment_doc,
        "versions": versions(),
        "complete": True,
    }
    tmp = out / f".{DATASET}.tmp-{os.getpid()}"
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, out / DATASET)
    result = SweepResult(dataset=ds, summary=jsonable(summary), fits=fits, path=out)
    # The data first: a figure that cannot be drawn must not lose a finished sweep
    # (`ntkflow report` re-renders from these two files).
    atomic_write_bytes(
        out / "summary.json", json.dumps(jsonable(summary), indent=2, ensure_ascii=False).encode()
    )
    if render:
        render_sweep(result)
    return result


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """Load a finished sweep directory.

    **Raises:** `SweepError` when it is missing or unfinished.
    """
    import xarray as xr

    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        raise SweepError(
            f"{str(path)!r} is not a finished ntkflow sweep (no readable summary.json); "
            "resume the sweep to finish it"
        ) from None
    if summary.get("format") != FORMAT or summary.get("complete") is not True:
        raise SweepError(f"{str(path)!r} is not a finished ntkflow sweep")
    try:
        ds = xr.load_dataset(path / DATASET, engine="h5netcdf")
    except Exception as e:  # netCDF/HDF5 raise their own types on a corrupt file
        raise SweepError(
            f"{str(path / DATASET)!r} cannot be read ({type(e).__name__}: "
            f"{' '.join(str(e).split())}); resume the sweep to rebuild it"
        ) from None
    fits = [ScalingFit.from_dict(f) for f in summary.get("fits", [])]
    return SweepResult(dataset=ds, summary=summary, fits=fits, path=path)


def render_sweep(result: SweepResult, *, dpi: int = 110) -> Path:
    """(Re-)draw a finished sweep's figures and report.html from sweep.nc and summary.json
    alone; returns the report's path."""
    from ..plotting import save_sweep_figures
    from ..report import render_sweep_report

    paths = save_sweep_figures(result.path / "figures", result.dataset, result.summary, dpi=dpi)
    target = result.path / "report.html"
    atomic_write_bytes(target, render_sweep_report(result.summary, paths).encode())
    return target


def sweep_executor(
    experiment_doc: dict[str, Any],
    executor: str | AbstractExecutor | None = None,
    *,
    jobs: int = 1,
    address: str | None = None,
) -> AbstractExecutor:
    """The executor of a sweep: `executor` given as an instance, else by name (`"local"`,
    `"ray"`), else the experiment's `[sweep] executor` (default `"local"`); `address`
    (else `[sweep] address`) for Ray.

    **Raises:** `SweepError`.
    """
    if isinstance(executor, AbstractExecutor):
        if jobs != 1 or address is not None:
            raise SweepError(
                "jobs and address configure an executor given by name; set them on the "
                "executor instance instead"
            )
        return executor
    settings = sweep_settings(experiment_doc.get("sweep"))
    name = settings.get("executor", "local") if executor is None else executor
    if not isinstance(name, str):
        raise SweepError(
            f"executor must be 'local', 'ray' or an AbstractExecutor, got executor={name!r}"
        )
    return get_executor(name, jobs=jobs, address=address or settings.get("address"))


def sweep_file(
    experiment: str | os.PathLike | dict[str, Any],
    out: str | os.PathLike,
    *,
    jobs: int = 1,
    executor: str | AbstractExecutor | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: bool = False,
    overrides: Iterable[str] = (),
) -> SweepResult:
    """Run a sweep from an experiment file (or dict) with a `[sweep]` section.

    **Arguments:**

    - `experiment`: a TOML path or the parsed document.
    - `out`: the sweep directory.
    - `jobs`: parallel local worker processes (`executor="local"`).
    - `executor`: how points run: `"local"` (worker processes on this machine, the
      default), `"ray"` (Ray tasks: a local Ray instance, or the cluster at `address`),
      or any `AbstractExecutor`; default the experiment's `[sweep] executor`.
    - `address`: the Ray cluster to join (default `[sweep] address`, else a local one).
    - `resume`: skip points already done in `out`.
    - `progress`: a progress bar with ETA.
    - `overrides`: `SECTION.KEY=VALUE` changes to the base experiment.

    **Returns:** a `SweepResult` (`dataset`, `summary`, `fits`).
    """
    from ..config import apply_overrides, read_document

    doc = read_document(experiment) if not isinstance(experiment, dict) else dict(experiment)
    doc = apply_overrides(doc, list(overrides))
    chosen = sweep_executor(doc, executor, jobs=jobs, address=address)
    return run_sweep(doc, out, executor=chosen, resume=resume, progress=progress)
