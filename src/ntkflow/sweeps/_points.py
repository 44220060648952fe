"""One sweep point, and the resume manifest: what a point runs and keeps, its files, and
the checks that let a sweep directory be resumed.

    OUT/sweep.json        the manifest: the base experiment and the grid (what resuming checks)
    OUT/points/NNNNN.nc   one point's series over its save times (written atomically)
    OUT/points/NNNNN.json one point's scalars, checks and status (written last: "done")

`run_point` runs in a worker process (`LocalProcesses` submits it by name, Ray pickles it
by reference), so it lives at module level and takes and returns plain data. A worker that
does not see the sweep directory (a cluster node without a shared filesystem) sends the
point's files back with its record, and the driver writes them (`adopt_point`).
"""

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._json import jsonable
from .._results import atomic_write_bytes
from ._grid import Grid, SweepError, _hash, make_grid, point_document

FORMAT = "ntkflow-sweep/1"
MANIFEST = "sweep.json"
POINTS = "points"


def run_point(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point of an experiment file and write its files atomically (the
    `.json` last). Runs in a worker; errors become a point with status `"error"` and its
    message."""
    from ..config import parse_experiment
    from ..experiment import run_experiment

    index, directory = payload["index"], Path(payload["dir"])
    here = _sees_sweep(directory, payload["id"])
    if not here:  # written beside this worker, then carried back to the driver
        directory = Path(tempfile.mkdtemp(prefix="ntkflow-point-"))

    def run() -> Any:
        return run_experiment(parse_experiment(payload["doc"], source=f"[sweep] point {index}"))

    record = run_point_with(payload, run, directory)
    if here:
        write_record(directory, record)
        return record
    series = directory / f"{index:05d}.nc"
    files = {series.name: series.read_bytes()} if series.is_file() else {}
    shutil.rmtree(directory, ignore_errors=True)
    return {**record, FILES: files}


def run_point_with(
    payload: dict[str, Any], run: Callable[[], Any], directory: Path
) -> dict[str, Any]:
    """One point of any sweep: `run()` (a `RunOutput`), its series saved into `directory`
    (`save_point`) and its record returned (the caller writes it, last); an error is the
    point's own, with status `"error"` and its message in one line."""
    start = time.perf_counter()
    record: dict[str, Any] = {
        "index": payload["index"],
        "id": payload["id"],
        "assignment": payload["assignment"],
        "complete": True,
    }
    try:
        save_point(run(), record, directory)
    except (ValueError, TypeError) as e:  # bad input for this point, in one line
        record.update(status="error", message=" ".join(str(e).split()))
    except Exception as e:  # a point that cannot run (memory, a runtime error) fails alone
        record.update(status="error", message=f"{type(e).__name__}: {' '.join(str(e).split())}")
    record["wall_s"] = time.perf_counter() - start
    return record


# A record's key for point files that travelled back from a worker (`adopt_point`).
FILES = "_files"


def _sees_sweep(directory: Path, point_id: str) -> bool:
    """Whether `directory` is, from this process, the points directory of the sweep the
    point belongs to (this machine, or a shared filesystem): its manifest lists it."""
    try:
        manifest = json.loads((directory.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return point_id in manifest.get("points", ())


def adopt_point(directory: Path, record: dict[str, Any]) -> dict[str, Any]:
    """In the driver: write the files a worker sent back with `record` (its series, then
    the record last), and return the record without them. A record its worker already
    wrote passes through."""
    if FILES not in record:
        return record
    record = dict(record)
    for name, data in record.pop(FILES).items():
        atomic_write_bytes(directory / name, data)
    write_record(directory, record)
    return record


def save_point(run: Any, record: dict[str, Any], directory: Path) -> None:
    """A finished run as a sweep point: its scalars into `record` (`point_view`) and its
    series into `NNNNN.nc` (atomically); the caller writes the record last."""
    import xarray as xr

    from .._solution import SERIES
    from .._summary import point_view

    record.update(point_view(run.summary))
    record["centering"] = run.problem.centering.name
    record["problem"] = jsonable(run.problem.describe())
    sol = run.solution
    assert sol is not None
    data: dict[str, Any] = {
        name: ("t", np.asarray(sol.series(name), dtype=np.float64), {"long_name": kept.meaning})
        for name, kept in SERIES.items()
        if kept.per_point and sol.series(name) is not None
    }
    data["time"] = ("t", np.asarray(sol.ts, dtype=np.float64))
    index = record["index"]
    tmp = directory / f".{index:05d}.nc.tmp-{os.getpid()}"
    xr.Dataset(data).to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, directory / f"{index:05d}.nc")


def write_record(directory: Path, record: dict[str, Any]) -> None:
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
    write_record(Path(payload["dir"]), record)
    return record


def load_point(directory: Path, index: int, point_id: str) -> dict[str, Any] | None:
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
    from ..config import ConfigError, parse_experiment

    base = dict(experiment_doc)
    sweep = base.pop("sweep", {}) or {}
    grid = make_grid(sweep)
    payloads = []
    width_study = any(k in ("model.width", "model.widths") for k in grid.keys)
    for index, assignment in enumerate(grid.points()):
        doc = point_document(base, assignment)
        output = dict(doc.get("output") or {})
        if width_study and output.get("limit") is None:
            kind = (doc.get("model") or {}).get("kind", "shallow")
            output["limit"] = kind in ("mlp", "shallow")  # the distances to the limit
            doc = {**doc, "output": output}
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
    claim(out, manifest, resume=resume)
    return grid, payloads


def claim(out: Path, manifest: dict[str, Any], *, resume: bool) -> None:
    """Take the sweep directory `out` for this manifest: create it, or (with `resume`)
    check that it holds the same sweep; then write the manifest.

    **Raises:** `SweepError` for a file, a foreign or different sweep, or an unwritable
    directory.
    """
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
                f"{where} already holds a sweep; continue it with {{resume}}, or choose "
                "another directory",
                directory=True,
            )
        if old.get("points") != manifest["points"]:
            raise SweepError(
                f"{where} holds a sweep of a different experiment or grid; {{resume}} needs "
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
