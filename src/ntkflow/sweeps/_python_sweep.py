"""Sweeps of problems built in Python: `ntkflow.sweep(make_problem, grid, out=…)`.

The same directory, files and resume semantics as a sweep of an experiment file
(`_sweep`): `sweep.json` (the manifest), `points/NNNNN.{nc,json}` (each written
atomically, the `.json` last), `sweep.nc`, `summary.json` with the scaling fits and
critical α, the figures and the report. Each point is `make_problem(**values)` run by
`experiment.run`, in this process (a Python function is not a file a worker can read);
a point already written is never rerun.

`sweep` is also the public entry point for experiment files, which it hands to
`_sweep.sweep_file`.
"""

import difflib
import inspect
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._json import jsonable
from .._results import directory_lock
from ._executors import AbstractExecutor, LocalProcesses
from ._grid import FIT, SweepError, _hash, fit_ranges, make_grid
from ._points import FORMAT, MANIFEST, POINTS, claim, run_point_with, write_record
from ._sweep import SweepResult, assemble, run_points, sweep_file

# Plain names a user sweeps, and the dotted keys the scaling laws know them by.
_ALIASES = {"alpha": "problem.alpha", "width": "model.width", "widths": "model.widths"}


def _grid_keys(grid: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The grid with dotted keys (`alpha` → `problem.alpha`, `width` → `model.width`,
    another plain `name` → `problem.name`), and each dotted key's keyword for
    `make_problem` (the part after the dot)."""
    if not isinstance(grid, dict) or not grid:
        raise SweepError(
            f"grid must be a non-empty dict of name → list of values, e.g. "
            f'{{"alpha": [1, 10, 100]}}; got {grid!r}'
        )
    dotted: dict[str, Any] = {}
    keyword: dict[str, str] = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise SweepError(f"grid keys must be names (strings), got {key!r}")
        full = key if "." in key else _ALIASES.get(key, f"problem.{key}")
        name = full.split(".")[-1]
        if name in keyword.values():
            raise SweepError(
                f"grid keys {key!r} and another both give make_problem the keyword {name!r}; "
                "rename one"
            )
        dotted[full] = list(values) if isinstance(values, list | tuple) else values
        keyword[full] = name
    return dotted, keyword


def _fit_table(fit_range: Any) -> dict[str, Any]:
    """`fit_range={"alpha": (10, None)}` as `[sweep.fit]`'s keys (`alpha_min = 10`),
    checked (`_grid.fit_ranges`)."""
    if fit_range is None:
        return {}
    where = "fit_range"
    if not isinstance(fit_range, dict):
        raise SweepError(f'{where} must be a dict, e.g. {{"alpha": (10, None)}}; got {fit_range!r}')
    table: dict[str, Any] = {}
    for key, bounds in fit_range.items():
        if not isinstance(bounds, tuple | list) or len(bounds) != 2:
            raise SweepError(
                f"{where}[{key!r}] must be a pair (low, high), None for open, got {bounds!r}"
            )
        table[f"{key}_min"], table[f"{key}_max"] = bounds
    fit_ranges(table, where=where)
    # (TOML has no null: an open end is left out, unless both are, which keeps the key)
    kept = {k: v for k, v in table.items() if v is not None}
    for key in fit_range:
        if f"{key}_min" not in kept and f"{key}_max" not in kept:
            kept[f"{key}_min"] = 0.0
    return kept


def _check_signature(make_problem: Callable[..., Any], keyword: dict[str, str]) -> None:
    """Refuse, before any point runs, a grid key that `make_problem` does not take (a
    typo would otherwise fail at every point) and a parameter it needs that the grid does
    not give, naming the key and the closest parameter."""
    try:
        params = inspect.signature(make_problem).parameters
    except (TypeError, ValueError):  # (a builtin or C callable: nothing to check against)
        return
    kinds = {p.kind for p in params.values()}
    names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    taken = [n for n in names if params[n].kind is not inspect.Parameter.POSITIONAL_ONLY]
    label = getattr(make_problem, "__name__", "make_problem")
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        for name in keyword.values():
            if name not in taken:
                close = difflib.get_close_matches(name, taken, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise SweepError(
                    f"grid key {name!r}: {label}() takes no parameter {name!r}; {hint}its "
                    f"parameters: {', '.join(taken) or 'none'}"
                )
    given = set(keyword.values())
    for n in names:
        p = params[n]
        if p.default is inspect.Parameter.empty and n not in given:
            raise SweepError(
                f"{label}() needs {n!r}, which the grid does not give; add it to the grid "
                f"(e.g. {{{n!r}: [...]}}) or give it a default"
            )


def _refuse_all_failed(out: Path, records: dict[int, dict[str, Any]], resume: bool) -> None:
    """A sweep whose every point failed is an error, with the first point's: raised
    before anything is assembled, and (unless resuming) with what it wrote removed."""
    if not records or any(r.get("status", "success") == "success" for r in records.values()):
        return
    first = records[min(records)]
    point = ", ".join(f"{k.split('.')[-1]}={v!r}" for k, v in first["assignment"].items())
    if not resume:
        shutil.rmtree(out / POINTS, ignore_errors=True)
        (out / MANIFEST).unlink(missing_ok=True)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    raise SweepError(
        f"every point of the sweep failed ({len(records)} of {len(records)}); the first "
        f"({point}): {first.get('message', '')}"
    )


def problem_sweep(
    make_problem: Callable[..., Any],
    grid: Any,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    resume: bool = False,
    progress: bool = False,
    render: bool = True,
    fit_range: dict[str, Any] | None = None,
    **flow_options: Any,
) -> SweepResult:
    """Run `make_problem(**point)` at every point of `grid` and assemble a sweep directory.
    See `sweep`."""
    dotted, keyword = _grid_keys(grid)
    g = make_grid(dotted)
    fit = _fit_table(fit_range)
    _check_signature(make_problem, keyword)
    label = name or getattr(make_problem, "__name__", "make_problem")
    settings = {"flows": jsonable(flow_options), "make_problem": label}
    out = Path(out)
    payloads = [
        {
            "index": i,
            "id": _hash({"point": jsonable(a), **settings}),
            "assignment": a,
            "dir": str(out / POINTS),
        }
        for i, a in enumerate(g.points())
    ]
    manifest = {
        "format": FORMAT,
        "keys": list(g.keys),
        "values": [list(v) for v in g.values],
        "points": [p["id"] for p in payloads],
        "base": {"source": "python", **settings},
    }
    with directory_lock(out, what="sweep directory"):
        claim(out, manifest, resume=resume)
        fn = _point_runner(make_problem, keyword, label, flow_options)
        # (in this process: a Python function is not a file a worker can read)
        records = run_points(out, payloads, fn, LocalProcesses(1), progress=progress)
        _refuse_all_failed(out, records, resume)
        doc = {"name": label, "source": "python", **_described(records)}
        doc |= {"flows": settings["flows"]}
        if fit:
            doc["sweep"] = {FIT: fit}
        return assemble(out, g, payloads, records, doc, render=render)


def _described(records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The sweep's `model`, `data` and `problem` sections, as a file sweep's configuration
    has them, from the points' problems (`Problem.describe`): each as the points have it,
    or the first point's with `varies: true` where the points differ."""
    described = [r["problem"] for _, r in sorted(records.items()) if r.get("problem")]
    centering = next((r["centering"] for r in records.values() if r.get("centering")), "none")
    if not described:
        return {"problem": {"centering": centering}}
    out: dict[str, Any] = {}
    for section in ("model", "data"):
        values = [d.get(section) for d in described]
        out[section] = dict(values[0] or {})
        if any(v != values[0] for v in values[1:]):
            out[section]["varies"] = True  # (the first point's; each point has its own)
    first = described[0]
    out["problem"] = {k: first[k] for k in ("centering", "loss", "dtype") if k in first}
    return out


def _point_runner(
    make_problem: Callable[..., Any],
    keyword: dict[str, str],
    label: str,
    flow_options: dict[str, Any],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A point of the sweep: `make_problem(**point)` run by `experiment.run`, its files
    written (`_points.run_point_with`, the record last)."""
    from ..experiment import run
    from ..infinite._limit_summary import has_limit

    def one(p: dict[str, Any]) -> dict[str, Any]:
        kwargs = {keyword[k]: v for k, v in p["assignment"].items()}
        width_study = any(k in ("model.width", "model.widths") for k in p["assignment"])

        def go() -> Any:
            problem = make_problem(**kwargs)
            limit = width_study and has_limit(problem)
            return run(problem, None, name=label, limit=limit, **flow_options)

        record = run_point_with(p, go, Path(p["dir"]))
        write_record(Path(p["dir"]), record)
        return record

    return one


def sweep(
    experiment: str | os.PathLike | dict[str, Any] | Callable[..., Any],
    target: Any = None,
    *,
    out: str | os.PathLike | None = None,
    jobs: int = 1,
    executor: str | AbstractExecutor | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: bool = False,
    overrides: Iterable[str] = (),
    name: str | None = None,
    fit_range: dict[str, Any] | None = None,
    **flow_options: Any,
) -> SweepResult:
    """Run a sweep: of an experiment file, or of problems built in Python.

    - `sweep("experiment.toml", "results/dir", jobs=2)`: the experiment's `[sweep]` grid,
      each point in a worker process (as `ntkflow sweep FILE`); `executor="ray"` runs
      the points as Ray tasks, on a local Ray instance or the cluster at `address`.
    - `sweep(make_problem, {"alpha": [1, 10, 100], "width": [64, 256]}, out="results/dir")`:
      `make_problem(alpha=…, width=…)` returns a `Problem` (any model, an adapted PyTorch
      one included) at each point; each runs in this process through `ntkflow.run`, with
      `flow_options` passed to `solve_flows`. Grid names `alpha`, `width`, `widths` are
      the keys the scaling laws fit against (`problem.alpha`, `model.width(s)`); a dotted
      key `"SECTION.NAME"` gives `make_problem` the keyword `NAME`.

    Both write the same directory (`sweep.nc`, `summary.json` with the fits, figures,
    `report.html`) and resume the same way: with `resume=True` a point already written is
    never rerun.

    **Arguments:** `experiment` (a TOML path, a parsed document, or `make_problem`);
    `target` (the output directory for a file; the grid for `make_problem`); `out` (the
    output directory, by keyword); `jobs`, `executor` (`"local"`, `"ray"` or an
    `AbstractExecutor`), `address` (Ray's), `overrides` (files only); `resume`;
    `progress`; `name` (the sweep's name, `make_problem` only); `fit_range` (`make_problem`
    only; a file has `[sweep.fit]`): the range of each swept variable the scaling laws
    are fitted over, `{"alpha": (10, None), "width": (64, None)}` (`None`: open). By
    default the α-laws are fitted over the points the runs showed lazy (from the smallest
    α at which every check held) and the width laws over every point.

    **Returns:** a `SweepResult` (`dataset`, `summary`, `fits`, `path`).

    **Raises:** `SweepError` for a bad grid or a clashing output directory.
    """
    if callable(experiment) and not isinstance(experiment, str | os.PathLike | dict):
        if out is None:
            raise SweepError(
                "sweep(make_problem, grid, out=...): give the output directory as out="
            )
        if jobs != 1 or executor is not None or address is not None or tuple(overrides):
            raise SweepError(
                "jobs, executor, address and overrides apply to experiment files; a sweep of "
                "make_problem runs its points in this process"
            )
        return problem_sweep(
            experiment,
            target,
            out,
            name=name,
            resume=resume,
            progress=progress,
            fit_range=fit_range,
            **flow_options,
        )
    if flow_options or name is not None or fit_range is not None:
        raise SweepError(
            "solve_flows options, name and fit_range apply to a sweep of make_problem; an "
            "experiment file sets them in its [flows] and [sweep.fit] sections (got "
            f"{sorted(flow_options) or ['name' if name is not None else 'fit_range']})"
        )
    directory = out if out is not None else target
    if directory is None:
        raise SweepError("sweep(experiment, out): give the output directory")
    return sweep_file(
        experiment,
        directory,
        jobs=jobs,
        executor=executor,
        address=address,
        resume=resume,
        progress=progress,
        overrides=overrides,
    )
