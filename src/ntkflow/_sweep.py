"""Sweeps: a grid over experiment keys, each point an independent job, resumable.

    OUT/
      sweep.json        the manifest: the base experiment and the grid (what resuming checks)
      points/NNNNN.nc   one point's series over its save times (written atomically)
      points/NNNNN.json one point's scalars, checks and status (written last: "done")
      sweep.nc          every point in one xarray Dataset: a dimension per swept key, + t
      summary.json      per-point summaries, scaling fits, critical α ("complete": true)
      figures/, report.html

Points run through an `AbstractExecutor` — `LocalProcesses(jobs)` here, and a cluster
engine can implement the same `run(fn, payloads, on_result)` — so nothing depends on how
they are scheduled. A point's numbers depend only on its configuration, so a resumed
sweep's dataset is identical to an uninterrupted one.
"""

import abc
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._json import jsonable
from ._results import atomic_write_bytes, directory_lock, now, versions
from ._scaling import ScalingFit, critical_alpha, fit_power_law, power_law_slope

FORMAT = "ntkflow-sweep/1"
MANIFEST = "sweep.json"
DATASET = "sweep.nc"
POINTS = "points"

# Series kept per point (over its save times), and the theory's slopes.
SERIES = (
    "loss_w",
    "loss_u",
    "dist_w",
    "dist_u",
    "gap_f",
    "gap_w",
    "sigma_min_t",
    "sigma_max_t",
    "kernel_drift",
    "loss_w_test",
    "loss_u_test",
    "acc_w_test",
    "acc_u_test",
    "loss_gd",
)
# (quantity, theory's slope, kind, label): a "rate" is expected, a "bound" is an upper
# bound the quantity must fall at least as fast as. `None`: computed per grid (below).
ALPHA_LAWS = (
    ("sup_dist_w", -1.0, "rate", "sup_t ‖w(t) − w0‖"),
    ("sup_gap_f", -1.0, "bound", "sup_t ‖αf(w(t)) − αf_0(u(t))‖ (at most ∝ 1/α)"),
    ("sup_gap_w", -2.0, "rate", "sup_t ‖w(t) − u(t)‖ (−2 up to a log)"),
)
# The error budget that bounds each measured quantity from below: a point whose value is
# within FLOOR_FACTOR of it measures the integrator, not the network, and is left out.
ERROR_OF = {"sup_dist_w": "err_dist_w", "sup_gap_f": "err_gap_f", "sup_gap_w": "err_gap_w"}
FLOOR_FACTOR = 2.0
WIDTH_LAWS = (
    (
        "sup_kernel_drift",
        -0.5,
        "bound",
        "sup_t ‖K_t − K0‖/‖K0‖ (at most ∝ m^-1/2: 2σ_max·β·‖w − w0‖ with β ∝ m^-1/2; the "
        "first-order change averages out and finer theory predicts ∝ 1/m, Dyer & "
        "Gur-Ari 2020)",
    ),
    (
        "rel_weight_change",
        None,
        "rate",
        "‖w(t1) − w0‖/‖w0‖ (‖w − w0‖ = O(1), ‖w0‖ ∝ √p: slope −½·dlog p/dlog m)",
    ),
)
ALPHA_KEY = "problem.alpha"
WIDTH_KEYS = ("model.width", "model.widths")


class SweepError(ValueError):
    """A bad sweep specification or output directory: one line for the user.

    `directory` is set when the error is about the sweep directory itself (the CLI then
    says where that path came from: `--out`, or the experiment's `[output] dir`)."""

    def __init__(self, message: str, *, directory: bool = False):
        super().__init__(message)
        self.directory = directory


def _kind(value: Any) -> str:
    """The kind of a grid value, for the one-kind-per-key rule."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _same(value: Any) -> Any:
    """A value as the experiment sees it, for the distinctness rule: `1` and `1.0` are
    one number, `[1, 2]` and `[1.0, 2.0]` one list."""
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        return (type(value).__name__, repr(value))
    if isinstance(value, list):
        return ("list", tuple(_same(v) for v in value))
    return ("number", float(value))


# -- the grid --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Grid:
    """The Cartesian product of the swept keys' values, in the order given."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    def points(self) -> list[dict[str, Any]]:
        return [
            dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*self.values)
        ]

    def dims(self) -> list[str]:
        """netCDF dimension names: the dotted key with `.` → `_` (`problem_alpha`)."""
        return [k.replace(".", "_") for k in self.keys]


def make_grid(sweep: dict[str, Sequence[Any]]) -> Grid:
    """Validate a `[sweep]` table: dotted `SECTION.KEY` names mapping to non-empty lists.

    **Raises:** `SweepError`.
    """
    if not sweep:
        raise SweepError(
            "the experiment has no [sweep] section; add e.g. "
            '`"problem.alpha" = [1, 10, 100]` under [sweep]'
        )
    keys, values = [], []
    for key, vals in sweep.items():
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise SweepError(f'[sweep] key {key!r} must be "SECTION.KEY", e.g. "problem.alpha"')
        if parts[0] == "sweep":
            raise SweepError(f"[sweep] key {key!r}: the sweep cannot sweep itself")
        if not isinstance(vals, list) or not vals:
            raise SweepError(f"[sweep] {key}: must be a non-empty list of values, got {vals!r}")
        kinds = sorted({_kind(v) for v in vals})
        if len(kinds) > 1:
            raise SweepError(
                f"[sweep] {key}: values must all be of one kind, got {vals!r} (a mix of "
                f"{' and '.join(kinds)}s); write numbers without quotes, e.g. [1.0, 2.0]"
            )
        seen: dict[Any, Any] = {}
        for v in vals:
            if _same(v) in seen:
                raise SweepError(
                    f"[sweep] {key}: values must be distinct, got {vals!r} ({seen[_same(v)]!r} "
                    f"and {v!r} are the same value); drop one"
                )
            seen[_same(v)] = v
        keys.append(key)
        values.append(tuple(vals))
    return Grid(tuple(keys), tuple(values))


def point_document(base: dict[str, Any], assignment: dict[str, Any]) -> dict[str, Any]:
    """The experiment document of one grid point (`base` without its sweep, plus the
    point's values)."""
    doc = json.loads(json.dumps(base))
    doc.pop("sweep", None)
    for key, value in assignment.items():
        section, name = key.split(".")
        doc.setdefault(section, {})[name] = value
    return doc


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# -- executors -------------------------------------------------------------------------


class AbstractExecutor(abc.ABC):
    """Runs independent jobs. `run(fn, payloads, on_result, on_dead)` calls `fn(payload)`
    for each payload (anywhere: this process, local processes, a cluster) and
    `on_result(result)` in this process as each finishes, in any order."""

    @abc.abstractmethod
    def run(
        self,
        fn: Callable[[dict[str, Any]], dict[str, Any]],
        payloads: Sequence[dict[str, Any]],
        on_result: Callable[[dict[str, Any]], None],
        on_dead: Callable[[dict[str, Any], str], None] | None = None,
    ) -> None:
        """Run `fn` on every payload; `on_dead(payload, message)` for a payload whose
        job died without a result (its process killed), where the engine can tell."""


def _exit_with_parent() -> None:
    """In a worker: end this process as soon as the process that started it is gone (a
    `kill -9` of the sweep's driver must not leave workers computing for nobody)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes
        os._exit(1)

    threading.Thread(target=watch, name="ntkflow-parent-watch", daemon=True).start()


class LocalProcesses(AbstractExecutor):
    """`jobs` worker processes on this machine (`spawn`ed, as JAX does not survive
    `fork`); `jobs=1` runs the points in this process.

    Workers end with their driver (a `kill -9` of the sweep leaves none behind). A point
    whose worker dies (killed, or out of memory) is run again alone in a fresh worker, so
    it takes down no other point; if it kills that one too, `on_dead(payload, message)`
    records it."""

    def __init__(self, jobs: int = 1):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise SweepError(f"jobs must be an integer ≥ 1, got jobs={jobs!r}")
        self.jobs = jobs

    def run(self, fn, payloads, on_result, on_dead=None):
        if self.jobs == 1 or len(payloads) <= 1:
            for payload in payloads:
                on_result(fn(payload))
            return
        broken = self._pool(fn, payloads, on_result, self.jobs)
        for payload in broken:  # one at a time: a second death is the point's own
            if self._pool(fn, [payload], on_result, 1) and on_dead is not None:
                on_dead(payload, "its worker process died (killed, or out of memory)")

    @staticmethod
    def _pool(fn, payloads, on_result, jobs: int) -> list[dict[str, Any]]:
        """Run `payloads` on a pool of `jobs` workers; return those whose worker died."""
        context = multiprocessing.get_context("spawn")
        broken = []
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_exit_with_parent
        ) as pool:
            futures = {pool.submit(fn, p): p for p in payloads}
            try:
                for future in concurrent.futures.as_completed(futures):
                    try:
                        result = future.result()
                    except concurrent.futures.process.BrokenProcessPool:
                        broken.append(futures[future])
                        continue
                    on_result(result)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return broken


# -- one point -------------------------------------------------------------------------


def _nanmax(*arrays: Any) -> float:
    vals = [np.asarray(a, dtype=np.float64) for a in arrays if a is not None]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    return float(max(np.max(v) for v in vals)) if vals else math.nan


def _last(a: Any) -> float:
    if a is None:
        return math.nan
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    return float(finite[-1]) if finite.size else math.nan


def point_scalars(run: Any) -> dict[str, Any]:
    """The per-point numbers a sweep keeps from a run."""
    c, s, v = run.certificate, run.solution, run.verification
    w0_norm = float(np.linalg.norm(np.asarray(run.problem.w0)))
    out: dict[str, Any] = {
        "status": s.status.name.lower(),
        "message": s.message,
        "alpha_star": c.alpha_star,
        "sigma_min": c.sigma_min,
        "sigma_max": c.sigma_max,
        "beta": c.beta,
        "beta_kind": c.beta_kind,
        "R0": c.R0,
        "B": c.B,
        "B_prime": c.B_prime,
        "hypotheses_hold": c.hypotheses_hold,
        "p": c.p,
        "w0_norm": w0_norm,
        "t1": s.t1,
        "sup_dist_w": _nanmax(s.dist_w, s.step_dist_w),
        "sup_dist_u": _nanmax(s.dist_u),
        "sup_gap_f": _nanmax(s.gap_f, s.step_gap_f),
        "sup_gap_w": _nanmax(s.gap_w, s.step_gap_w),
        # The integrator's error budget on those (NaN without `error_estimate`).
        "err_dist_w": _nanmax(s.err_w),
        "err_gap_f": _nanmax(s.err_res_w),
        "err_gap_w": _nanmax(s.err_w),
        "sup_kernel_drift": _nanmax(s.kernel_drift),
        "rel_weight_change": _last(s.dist_w) / w0_norm if w0_norm > 0 else math.nan,
        "final_loss_w": _last(s.loss_w),
        "final_loss_u": _last(s.loss_u),
        "final_test_loss_w": _last(s.loss_w_test),
        "final_test_loss_u": _last(s.loss_u_test),
        "final_test_acc_w": _last(s.acc_w_test),
        "final_test_acc_u": _last(s.acc_u_test),
        "exit_time": v.exit_time if v.exit_time is not None else math.inf,
        "all_hold": v.all_hold,
        "num_steps": s.stats.get("gradient", {}).get("num_steps", 0),
        "checks": {
            ch.name: {"holds": ch.holds, "margin": ch.margin, "guaranteed": ch.guaranteed}
            for ch in v.checks
        },
    }
    return out


def run_point(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point and write its files atomically (the `.json` last). Runs in a
    worker; errors become a point with status `"error"` and its message."""
    from .config import parse_experiment
    from .experiment import run_experiment

    index, directory = payload["index"], Path(payload["dir"])
    start = time.perf_counter()
    record: dict[str, Any] = {
        "index": index,
        "id": payload["id"],
        "assignment": payload["assignment"],
        "complete": True,
    }
    try:
        exp = parse_experiment(payload["doc"], source=f"[sweep] point {index}")
        run = run_experiment(exp)
        record.update(point_scalars(run))
        sol = run.solution
        assert sol is not None
        import xarray as xr

        from ._solution import SERIES as MEANING

        data: dict[str, Any] = {
            name: (
                "t",
                np.asarray(getattr(sol, name), dtype=np.float64),
                {"long_name": MEANING[name]},
            )
            for name in SERIES
            if getattr(sol, name) is not None
        }
        data["time"] = ("t", np.asarray(sol.ts, dtype=np.float64))
        ds = xr.Dataset(data)
        tmp = directory / f".{index:05d}.nc.tmp-{os.getpid()}"
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, directory / f"{index:05d}.nc")
    except (ValueError, TypeError) as e:  # bad input for this point, in one line
        record.update(status="error", message=" ".join(str(e).split()))
    except Exception as e:  # a point that cannot run (memory, a runtime error) fails alone
        record.update(status="error", message=f"{type(e).__name__}: {' '.join(str(e).split())}")
    record["wall_s"] = time.perf_counter() - start
    _write_record(directory, record)
    return record


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    """A point's `.json`, atomically: once it exists the point is done."""
    atomic_write_bytes(
        directory / f"{record['index']:05d}.json",
        json.dumps(jsonable(record), ensure_ascii=False).encode(),
    )


def dead_point(payload: dict[str, Any], message: str) -> dict[str, Any]:
    """Record a point whose worker process died as a failed point (status `"error"`)."""
    record = {
        "index": payload["index"],
        "id": payload["id"],
        "assignment": payload["assignment"],
        "complete": True,
        "status": "error",
        "message": message,
    }
    _write_record(Path(payload["dir"]), record)
    return record


# -- the sweep -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """A finished sweep: `dataset` (sweep.nc), `summary` (summary.json), `fits`, `path`."""

    dataset: Any
    summary: dict[str, Any]
    fits: list[ScalingFit]
    path: Path


def _load_point(directory: Path, index: int, point_id: str) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / f"{index:05d}.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("complete") is not True or record.get("id") != point_id:
        return None
    if record.get("status") != "error" and not (directory / f"{index:05d}.nc").is_file():
        return None
    return record


def prepare(
    experiment_doc: dict[str, Any], out: Path, *, resume: bool
) -> tuple[Grid, list[dict[str, Any]]]:
    """Validate the grid and every point's configuration, write (or check) the manifest,
    and return the grid and the payloads of all points."""
    from .config import ConfigError, parse_experiment

    base = dict(experiment_doc)
    sweep = base.pop("sweep", {}) or {}
    grid = make_grid(sweep)
    payloads = []
    for index, assignment in enumerate(grid.points()):
        doc = point_document(base, assignment)
        try:
            exp = parse_experiment(doc, source="[sweep]")
        except ConfigError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in assignment.items())
            raise SweepError(
                f"[sweep] point ({shown}): {str(e).removeprefix('[sweep]: ')}"
            ) from None
        resolved = exp.model_dump(mode="json")
        payloads.append(
            {
                "index": index,
                "id": _hash(resolved),
                "assignment": assignment,
                "doc": resolved,
                "dir": str(out / POINTS),
            }
        )
    manifest = {
        "format": FORMAT,
        "keys": list(grid.keys),
        "values": [list(v) for v in grid.values],
        "points": [p["id"] for p in payloads],
        "base": base,
    }
    path = out / MANIFEST
    where = f"the sweep directory {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise SweepError(f"{where} is a file; give a directory path", directory=True)
    if out.is_dir() and any(out.iterdir()):
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            raise SweepError(
                f"{where} exists and is not an ntkflow sweep; choose another directory",
                directory=True,
            ) from None
        if not resume:
            raise SweepError(
                f"{where} already holds a sweep; resume it, or choose another directory",
                directory=True,
            )
        if old.get("points") != manifest["points"]:
            raise SweepError(
                f"{where} holds a sweep of a different experiment or grid; resuming needs "
                "the same one (or choose another directory)",
                directory=True,
            )
    try:
        (out / POINTS).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(jsonable(manifest), indent=2).encode())
    except OSError as e:
        raise SweepError(
            f"{where} cannot be created or written ({e.strerror or e}); choose another directory",
            directory=True,
        ) from None
    return grid, payloads


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
    points_dir = out / POINTS
    records: dict[int, dict[str, Any]] = {}
    for p in payloads:
        done = _load_point(points_dir, p["index"], p["id"])
        if done is not None:
            records[p["index"]] = done
    pending = [p for p in payloads if p["index"] not in records]

    bar = task = None
    if progress and pending:
        from ._progress import rich_bar

        bar = rich_bar(counts=True)
        bar.start()
        task = bar.add_task("sweep", total=len(payloads), completed=len(records))

    def on_result(record: dict[str, Any]) -> None:
        records[record["index"]] = record
        if bar is not None and task is not None:
            bar.advance(task)
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt

    try:
        executor.run(
            run_point, pending, on_result, lambda p, message: on_result(dead_point(p, message))
        )
    finally:
        if bar is not None:
            bar.stop()
    if cancelled is not None and cancelled():
        raise KeyboardInterrupt
    return assemble(out, grid, payloads, records, experiment_doc, render=render)


def _coord(values: tuple[Any, ...]) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.asarray([str(v).lower() for v in values])
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(
            values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64
        )
    return np.asarray([json.dumps(v) if not isinstance(v, str) else v for v in values])


_SCALARS = (
    "alpha_star",
    "sigma_min",
    "sigma_max",
    "beta",
    "R0",
    "B",
    "B_prime",
    "t1",
    "w0_norm",
    "sup_dist_w",
    "sup_dist_u",
    "sup_gap_f",
    "sup_gap_w",
    "err_dist_w",
    "err_gap_f",
    "err_gap_w",
    "sup_kernel_drift",
    "rel_weight_change",
    "final_loss_w",
    "final_loss_u",
    "final_test_loss_w",
    "final_test_loss_u",
    "final_test_acc_w",
    "final_test_acc_u",
    "exit_time",
    "num_steps",
    "p",
)


def _as_float(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, bool):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def build_dataset(
    grid: Grid, payloads: list[dict[str, Any]], records: dict[int, dict[str, Any]], points_dir: Path
) -> Any:
    """One `xarray.Dataset` for the whole sweep: a dimension per swept key, plus `t`
    (the fraction `t/t1` of each point's horizon), every series, scalar and check."""
    import xarray as xr

    shape = grid.shape
    dims = grid.dims()
    series: dict[str, np.ndarray] = {}
    n_t = 0
    loaded: dict[int, Any] = {}
    for p in payloads:
        rec = records.get(p["index"])
        if rec is not None and rec.get("status") != "error":
            loaded[p["index"]] = xr.load_dataset(
                points_dir / f"{p['index']:05d}.nc", engine="h5netcdf"
            )
            n_t = max(n_t, loaded[p["index"]].sizes["t"])
    names = sorted({v for ds in loaded.values() for v in ds.data_vars})
    for name in names:
        series[name] = np.full((*shape, n_t), np.nan)
    scalars = {name: np.full(shape, np.nan) for name in _SCALARS}
    flags = {name: np.full(shape, np.nan) for name in ("hypotheses_hold", "all_hold")}
    status = np.full(shape, "missing", dtype=object)
    check_names = sorted({c for r in records.values() for c in (r.get("checks") or {})})
    holds = {c: np.full(shape, np.nan) for c in check_names}
    margins = {c: np.full(shape, np.nan) for c in check_names}
    for p in payloads:
        idx = np.unravel_index(p["index"], shape)
        rec = records.get(p["index"])
        if rec is None:
            continue
        status[idx] = rec.get("status", "missing")
        for name in _SCALARS:
            scalars[name][idx] = _as_float(rec.get(name))
        for name in flags:
            flags[name][idx] = _as_float(rec.get(name))
        for c, v in (rec.get("checks") or {}).items():
            holds[c][idx] = _as_float(v.get("holds"))
            margins[c][idx] = _as_float(v.get("margin"))
        ds = loaded.get(p["index"])
        if ds is not None:
            for name in ds.data_vars:
                values = np.asarray(ds[name].values, dtype=np.float64)
                series[name][(*idx, slice(0, values.size))] = values
    data: dict[str, Any] = {}
    for name, arr in series.items():
        data[name] = ((*dims, "t"), arr)
    for name, arr in {**scalars, **flags}.items():
        data[name] = (tuple(dims), arr)
    for c in check_names:
        data[f"holds_{c}"] = (tuple(dims), holds[c])
        data[f"margin_{c}"] = (tuple(dims), margins[c])
    data["status"] = (tuple(dims), status.astype(str))
    coords = {d: _coord(v) for d, v in zip(dims, grid.values, strict=True)}
    coords["t"] = np.linspace(0.0, 1.0, n_t) if n_t else np.zeros(0)
    ds = xr.Dataset(data, coords=coords)
    ds["t"].attrs["long_name"] = "t/t1: fraction of each point's horizon (variable `time` has t)"
    for d, k in zip(dims, grid.keys, strict=True):
        ds[d].attrs["key"] = k
    for c in check_names:
        ds[f"holds_{c}"].attrs["long_name"] = "1: held, 0: failed, nan: inconclusive"
    for point in loaded.values():  # what each series means, as the points recorded it
        for name in point.data_vars:
            if "long_name" in point[name].attrs and name in ds:
                ds[name].attrs.setdefault("long_name", point[name].attrs["long_name"])
    return ds


def _replicate_key(keys: Sequence[str]) -> str | None:
    for k in keys:
        if k.endswith(".seed"):
            return k
    return None


def _first_finite(a: np.ndarray) -> np.ndarray:
    """Along axis 0, the first finite entry of each column (the parameter count does not
    depend on the seed)."""
    out = np.full(a.shape[1], np.nan)
    for row in a[::-1]:
        out = np.where(np.isfinite(row), row, out)
    return out


def _numeric(values: Sequence[Any]) -> np.ndarray:
    """Grid values as numbers: a list of widths (`model.widths`) counts as its mean."""
    return np.asarray(
        [float(np.mean(v)) if isinstance(v, list | tuple) else float(v) for v in values]
    )


def scaling_fits(ds: Any, grid: Grid, centering: str) -> list[ScalingFit]:
    """Every scaling law the grid allows: vs `problem.alpha` and vs `model.width`, each at
    every combination of the other swept keys, replicated over a swept `*.seed` key."""
    fits = []
    keys = list(grid.keys)
    rep = _replicate_key(keys)
    for against, laws in ((ALPHA_KEY, ALPHA_LAWS), *((k, WIDTH_LAWS) for k in WIDTH_KEYS)):
        if against not in keys or len(grid.values[keys.index(against)]) < 3:
            continue
        if any(not isinstance(v, int | float | list) for v in grid.values[keys.index(against)]):
            continue
        x_dim = against.replace(".", "_")
        rep_dim = rep.replace(".", "_") if rep else None
        others = [k for k in keys if k not in (against, rep)]
        other_dims = [k.replace(".", "_") for k in others]
        for combo in itertools.product(*(range(len(grid.values[keys.index(k)])) for k in others)):
            sel = dict(zip(other_dims, combo, strict=True))
            where = {k: grid.values[keys.index(k)][i] for k, i in zip(others, combo, strict=True)}
            x = _numeric(grid.values[keys.index(against)])
            for quantity, theory, kind, label in laws:
                if theory is None:  # −½ · d log p / d log m, from the points' p
                    pa = ds["p"].isel(sel)
                    p = np.asarray(
                        (pa.transpose(rep_dim, x_dim) if rep_dim else pa).values, dtype=float
                    )
                    if rep_dim:
                        p = _first_finite(p)
                    theory = -0.5 * power_law_slope(x, p)
                arr = ds[quantity].isel(sel)
                if rep_dim:
                    arr = arr.transpose(rep_dim, x_dim)
                y = np.asarray(arr.values, dtype=np.float64)
                note = label
                if quantity in ERROR_OF:
                    err = ds[ERROR_OF[quantity]].isel(sel)
                    if rep_dim:
                        err = err.transpose(rep_dim, x_dim)
                    e = np.asarray(err.values, dtype=np.float64)
                    floor = np.isfinite(e) & (y <= FLOOR_FACTOR * e)
                    if floor.any():
                        y = np.where(floor, np.nan, y)
                        note += (
                            f"; {int(floor.sum())} value(s) within {FLOOR_FACTOR:g}× of the "
                            "integrator's error budget left out (lower rtol to keep them)"
                        )
                if against == ALPHA_KEY and centering == "none":
                    note += "; without centring f(w0) ≠ 0 and the 1/α laws need not hold"
                if quantity == "sup_gap_f" and centering == "antisymmetric":
                    note += (
                        "; with antisymmetric centring f is odd in w − w0 along the flow, "
                        "its second-order term cancels and the gap can fall faster"
                    )
                meta: dict[str, Any] = dict(
                    quantity=quantity, against=against, theory=theory, where=where
                )
                try:
                    fits.append(fit_power_law(x, y, note=note, kind=kind, **meta))
                except Exception as e:  # a fit that cannot be made must not lose the sweep
                    why = f"fit unavailable ({type(e).__name__}: {' '.join(str(e).split())})"
                    nan = math.nan
                    fits.append(
                        ScalingFit(
                            slope=nan, low=nan, high=nan, intercept=nan, x=tuple(map(float, x)),
                            y=(nan,) * len(x), replicates=0, method="none",
                            note=f"{note}; {why}", kind=kind, **meta,
                        )
                    )  # fmt: skip
    return fits


def _why_not(ds: Any, sel: dict[str, int], x_dim: str) -> str:
    """Why no α on the grid held every check: at each α, the checks that failed or were
    inconclusive and how the solve ended."""
    alphas = np.asarray(ds[x_dim].values, dtype=np.float64)
    names = sorted(str(v).removeprefix("holds_") for v in ds.data_vars if v.startswith("holds_"))
    said = []
    for j in np.argsort(alphas)[::-1]:  # the largest α first: closest to holding
        at = {**sel, x_dim: int(j)}
        status = str(ds["status"].isel(at).values)
        failed = [c for c in names if float(ds[f"holds_{c}"].isel(at).values) == 0.0]
        unsure = [c for c in names if math.isnan(float(ds[f"holds_{c}"].isel(at).values))]
        parts = []
        if status in ("error", "missing"):
            said.append(f"at α={alphas[j]:.4g}: the point did not run ({status})")
            continue
        if status != "success":
            parts.append(f"the solve ended {status}")
        if failed:
            parts.append(f"{', '.join(failed)} failed")
        if unsure:
            parts.append(f"{', '.join(unsure)} inconclusive")
        said.append(f"at α={alphas[j]:.4g}: " + ("; ".join(parts) or "not every check held"))
    return "no α on the grid held every check (" + " | ".join(said) + ")"


def critical_alphas(ds: Any, grid: Grid) -> list[dict[str, Any]]:
    """Per combination of the other swept keys: the smallest α on the grid at which every
    conclusion held, and the looseness `α*/α_emp`; where none did, `why` says which
    checks failed or were inconclusive at each α."""
    keys = list(grid.keys)
    if ALPHA_KEY not in keys:
        return []
    x_dim = ALPHA_KEY.replace(".", "_")
    others = [k for k in keys if k != ALPHA_KEY]
    rows = []
    for combo in itertools.product(*(range(len(grid.values[keys.index(k)])) for k in others)):
        sel = {k.replace(".", "_"): i for k, i in zip(others, combo, strict=True)}
        held = np.asarray(ds["all_hold"].isel(sel).values) == 1.0
        alphas = np.asarray(ds[x_dim].values, dtype=np.float64)
        a_emp = critical_alpha(alphas, held)
        star = np.asarray(ds["alpha_star"].isel(sel).values, dtype=np.float64)
        finite = star[np.isfinite(star)]
        a_star = float(np.median(finite)) if finite.size else math.nan
        rows.append(
            {
                "where": {
                    k: grid.values[keys.index(k)][i] for k, i in zip(others, combo, strict=True)
                },
                "alpha_empirical": a_emp,
                "alpha_star": a_star,
                "looseness": a_star / a_emp if math.isfinite(a_emp) and a_emp > 0 else math.nan,
            }
        )
        if not math.isfinite(a_emp):
            rows[-1]["why"] = _why_not(ds, sel, x_dim)
    return rows


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
    fits = scaling_fits(ds, grid, centering)
    crit = critical_alphas(ds, grid)
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
    from .plotting import save_sweep_figures
    from .report import render_sweep_report

    paths = save_sweep_figures(result.path / "figures", result.dataset, result.summary, dpi=dpi)
    target = result.path / "report.html"
    atomic_write_bytes(target, render_sweep_report(result.summary, paths).encode())
    return target


def sweep(
    experiment: str | os.PathLike | dict[str, Any],
    out: str | os.PathLike,
    *,
    jobs: int = 1,
    executor: AbstractExecutor | None = None,
    resume: bool = False,
    progress: bool = False,
    overrides: Iterable[str] = (),
) -> SweepResult:
    """Run a sweep from an experiment file (or dict) with a `[sweep]` section.

    **Arguments:**

    - `experiment`: a TOML path or the parsed document.
    - `out`: the sweep directory.
    - `jobs`: parallel local worker processes.
    - `executor`: how points run, overriding `jobs` (any `AbstractExecutor`).
    - `resume`: skip points already done in `out`.
    - `progress`: a progress bar with ETA.
    - `overrides`: `SECTION.KEY=VALUE` changes to the base experiment.

    **Returns:** a `SweepResult` (`dataset`, `summary`, `fits`).
    """
    from .config import apply_overrides, read_document

    doc = read_document(experiment) if not isinstance(experiment, dict) else dict(experiment)
    doc = apply_overrides(doc, list(overrides))
    executor = executor or LocalProcesses(jobs)
    return run_sweep(doc, out, executor=executor, resume=resume, progress=progress)
