"""The sweep's dataset (sweep.nc): every point in one xarray Dataset, a dimension per
swept key plus `t`, built from the points' files.
"""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._quantities import FLOW_SCALARS, POINT_CERTIFICATE
from ..infinite._limit_summary import LIMIT_SCALARS
from ._grid import Grid

# `holds_<check>` of a point that does not have the check (a loss other than the square
# keeps only the checks that apply to it: docs/theory.md, "What is checked for each loss").
NOT_CHECKED = -1.0


def _coord(values: tuple[Any, ...]) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.asarray([str(v).lower() for v in values])
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(
            values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64
        )
    return np.asarray([json.dumps(v) if not isinstance(v, str) else v for v in values])


# The numbers kept per point (flags and the β's kind are kept apart).
_SCALARS = (
    *(k for k in POINT_CERTIFICATE if k not in ("beta_kind", "hypotheses_hold")),
    "t1",
    *FLOW_SCALARS,
    *LIMIT_SCALARS,
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


def _time_axis(loaded: dict[int, Any], n_t: int) -> tuple[np.ndarray, str]:
    """The sweep's `t` coordinate: the fractions `t/t1` of the horizon at which every
    point saved, where they are the same for all (an α sweep: the save times of
    docs/flows.md, "Save times", scale with the horizon); else the save's index."""
    fractions = [
        np.asarray(ds["time"].values, dtype=np.float64) / float(ds["time"].values[-1])
        for ds in loaded.values()
        if "time" in ds and ds.sizes["t"] == n_t and float(ds["time"].values[-1]) > 0
    ]
    if fractions and len(fractions) == len(loaded):
        first = fractions[0]
        if all(np.allclose(f, first, rtol=1e-9, atol=0.0) for f in fractions[1:]):
            return first, "t/t1: fraction of each point's horizon (variable `time` has t)"
    why = "the points saved at different fractions of their horizons"
    return np.arange(n_t, dtype=np.float64), f"save index: {why} (variable `time` has t)"


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
        checked = rec.get("checks") or {}
        for c in check_names:  # a check the point's loss does not have: NOT_CHECKED
            holds[c][idx] = NOT_CHECKED
        for c, v in checked.items():
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
    coords["t"], meaning = _time_axis(loaded, n_t)
    ds = xr.Dataset(data, coords=coords)
    ds["t"].attrs["long_name"] = meaning
    for d, k in zip(dims, grid.keys, strict=True):
        ds[d].attrs["key"] = k
    for c in check_names:
        ds[f"holds_{c}"].attrs["long_name"] = (
            "1: held, 0: failed, nan: inconclusive, −1: not checked (it does not apply to "
            "the point's loss)"
        )
    for point in loaded.values():  # what each series means, as the points recorded it
        for name in point.data_vars:
            if "long_name" in point[name].attrs and name in ds:
                ds[name].attrs.setdefault("long_name", point[name].attrs["long_name"])
    return ds
