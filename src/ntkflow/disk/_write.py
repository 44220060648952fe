"""`kernel_to_disk`: any kernel ntkflow computes, in blocks into a zarr store on disk,
resumable after a kill, on several devices or as Ray tasks (docs/kernel.md, "Kernels
larger than memory")."""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._results import atomic_write_bytes, directory_lock, remove_stale_partials
from ..datasets import Dataset
from ..infinite._kernel_fn import as_kernel_fn
from ..models._base import AbstractModel
from ._store import RECORD, DiskKernel, KernelStoreError, open_kernel, read_record

FORMAT = 1


def _points(x: Any, name: str) -> np.ndarray:
    X = np.asarray(x.X if isinstance(x, Dataset) else x)
    if X.ndim < 1 or X.shape[0] < 1 or not np.issubdtype(X.dtype, np.number):
        raise KernelStoreError(name, f"an array of shape {X.shape}", "points (n, …) with n ≥ 1")
    return X


@dataclasses.dataclass(frozen=True)
class BlockJob:
    """Computes one block `K(x1[rows], x2[cols])` of each kernel asked for: a picklable
    callable (`LocalProcesses`, Ray tasks) taking the payload `{"i": …, "j": …}`."""

    kernel_fn: Any
    X1: np.ndarray
    X2: np.ndarray
    names: tuple[str, ...]
    block: int
    params: Any
    kwargs: dict[str, Any]

    def slices(self, i: int, j: int) -> tuple[slice, slice]:
        b = self.block
        return (
            slice(i * b, min((i + 1) * b, self.X1.shape[0])),
            slice(j * b, min((j + 1) * b, self.X2.shape[0])),
        )

    def compute(self, i: int, j: int) -> dict[str, Any]:
        rows, cols = self.slices(i, j)
        a, b = self.X1[rows], self.X2[cols]
        if self.params is not None:  # an empirical kernel_fn(x1, x2, params)
            return {self.names[0]: self.kernel_fn(a, b, self.params, **self.kwargs)}
        fn = as_kernel_fn(self.kernel_fn)
        if len(self.names) == 1:
            return {self.names[0]: fn(a, b, self.names[0], **self.kwargs)}
        out = fn(a, b, self.names, **self.kwargs)
        return {name: getattr(out, name) for name in self.names}

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _result(payload["i"], payload["j"], self.compute(payload["i"], payload["j"]))


def _result(i: int, j: int, out: dict[str, Any]) -> dict[str, Any]:
    """A block's result as the writer takes it: its position and host arrays."""
    return {"i": i, "j": j, **{k: np.asarray(v) for k, v in out.items()}}


def _describe(kernel_fn: Any) -> str:
    if isinstance(kernel_fn, AbstractModel):
        return json.dumps(kernel_fn.describe(), sort_keys=True)
    return f"{getattr(kernel_fn, '__module__', '')}.{getattr(kernel_fn, '__qualname__', '')}"


def _fingerprint(job: BlockJob, symmetric: bool, dtype: Any) -> str:
    """What the store holds, as a hash: the points, the kernel (a model's description or
    a function's name), the parameters, the names, the blocking and the stored dtype."""
    import jax

    h = hashlib.sha256()
    for part in (job.X1, None if symmetric else job.X2):
        if part is not None:
            h.update(np.ascontiguousarray(part).tobytes())
    for leaf in jax.tree_util.tree_leaves(job.params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    stored = None if dtype is None else np.dtype(dtype).str
    h.update(repr((_describe(job.kernel_fn), job.names, job.block, symmetric, stored)).encode())
    h.update(repr(sorted(job.kwargs.items())).encode())
    return h.hexdigest()


def _blocks(n1: int, n2: int, block: int, symmetric: bool) -> list[tuple[int, int]]:
    b1, b2 = -(-n1 // block), -(-n2 // block)
    return [(i, j) for i in range(b1) for j in range(b2) if not symmetric or j >= i]


def _prepare(path: Path, fingerprint: str, overwrite: bool) -> dict[str, Any] | None:
    """The record to resume from (same fingerprint), or `None` after clearing `path`."""
    record = read_record(path)
    if record is not None and record.get("fingerprint") == fingerprint and not overwrite:
        return record
    if path.exists():
        if record is None and any(path.iterdir()) and not overwrite:
            raise KernelStoreError("path", str(path), "a new folder (this one holds other files)")
        if record is not None and not overwrite:
            raise KernelStoreError(
                "path",
                str(path),
                "a new folder, or overwrite=True: it holds another kernel (other points, "
                "kernel, parameters or blocking)",
            )
        shutil.rmtree(path)
    return None


def _start(path: Path, job: BlockJob, record: dict[str, Any], dtype: Any) -> None:
    """A new store at `path` holding its first block and the record of it, built in a
    fresh folder beside `path` and renamed into place: a kill leaves no store (and a
    partial folder the next call removes) or a resumable one, never one without its
    record."""
    import zarr

    remove_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
    try:
        first = job({"i": 0, "j": 0})
        group = zarr.open_group(tmp, mode="w")
        for name in job.names:
            trail = first[name].shape[2:]
            group.create_array(
                name,
                shape=(job.X1.shape[0], job.X2.shape[0], *trail),
                chunks=(job.block, job.block, *trail),
                dtype=np.dtype(dtype or first[name].dtype),
                compressors=None,
                fill_value=np.nan,
            )
        record["shape"] = [job.X1.shape[0], job.X2.shape[0], *first[job.names[0]].shape[2:]]
        _commit(group, tmp, job, record, first)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _in_process(job: BlockJob, todo: list[tuple[int, int]], devices: Any) -> Iterator[dict]:
    """Each block's kernels computed here, dealt round-robin to `devices` (each device's
    block dispatched before any is read back, so that devices overlap)."""
    import jax

    chosen = [None] if devices is None else _devices(devices)
    for start in range(0, len(todo), len(chosen)):
        wave = []
        for (i, j), device in zip(todo[start : start + len(chosen)], chosen, strict=False):
            if device is None:
                wave.append((i, j, job.compute(i, j)))
            else:
                with jax.default_device(device):
                    wave.append((i, j, job.compute(i, j)))
        for i, j, out in wave:
            yield _result(i, j, out)


def _devices(devices: Any) -> list[Any]:
    from ..ntk._sharding import data_mesh

    return list(data_mesh(devices).devices.flat)


def _write_block(group: Any, job: BlockJob, result: dict[str, Any], symmetric: bool) -> None:
    i, j = result["i"], result["j"]
    rows, cols = job.slices(i, j)
    for name in job.names:
        block = np.asarray(result[name])
        group[name][rows, cols] = block
        if symmetric and i != j:  # K(b, a) = K(a, b)ᵀ, outputs' axes swapped too
            order = (1, 0, *range(block.ndim - 1, 1, -1)) if block.ndim > 2 else (1, 0)
            group[name][cols, rows] = np.transpose(block, order)


def kernel_to_disk(
    kernel_fn: Any,
    x1: Any,
    x2: Any = None,
    *,
    path: str | Path,
    get: str | tuple[str, ...] = "ntk",
    params: Any = None,
    block: int = 2048,
    dtype: Any = None,
    progress: bool = True,
    devices: Any = None,
    executor: Any = None,
    overwrite: bool = False,
    **kernel_fn_kwargs: Any,
) -> DiskKernel:
    """The kernel `K(x1, x2)` (`x2=None`: `x1` with itself) written block by block to a
    zarr store at `path`, never held whole in memory: each block of `block × block`
    point pairs is computed, written as one chunk, and recorded; a run killed part way
    resumes from the blocks recorded when called again with the same arguments (a model
    is recognised by its description, a function by its module and name). Of a
    set of points with itself only the blocks on and above the diagonal are computed,
    each written with its transpose.

    **Arguments:**

    - `kernel_fn`: an ntkflow model (`MLP`, `Shallow`, `CNN`: its infinite-width
      kernels), a neural-tangents-style `kernel_fn(x1, x2, get)` (e.g. a `stax` kernel
      or `monte_carlo_kernel_fn`), or with `params` an empirical
      `kernel_fn(x1, x2, params)` (`empirical_ntk_fn`).
    - `x1`, `x2`: the points, arrays or `Dataset`s.
    - `path`: the store (a folder; created).
    - `get`: `"nngp"`, `"ntk"` or both as a tuple.
    - `params`: the parameters of an empirical kernel function.
    - `block`: points per block side (memory: a few blocks).
    - `dtype`: the stored dtype (default: the kernel's).
    - `progress`: a progress bar over the blocks.
    - `devices`: a number of devices or a list of `jax.Device`: blocks dealt round-robin.
    - `executor`: `"ray"`, `"local"` or a sweep executor (`ntkflow.RayExecutor(address)`):
      the blocks as its jobs, written here as they return.
    - `overwrite`: replace a store at `path` that holds another kernel.
    - `**kernel_fn_kwargs`: passed to `kernel_fn`.

    **Returns:** the `DiskKernel` (`.nngp`, `.ntk`: `DiskArray`s), which
    `predict.gp_inference` and `predict.gradient_descent_mse` take as they are.

    **Raises:** `KernelStoreError` for a `path` holding something else, bad `block` or
    `get`.
    """
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names or len(set(names)) != len(names) or not set(names) <= {"nngp", "ntk"}:
        raise KernelStoreError("get", get, "'nngp', 'ntk' or a tuple of both")
    if params is not None and len(names) != 1:
        raise KernelStoreError("get", get, "one name with params (an empirical kernel)")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise KernelStoreError("block", block, "an integer ≥ 1")
    X1 = _points(x1, "x1")
    symmetric = x2 is None
    X2 = X1 if symmetric else _points(x2, "x2")
    job = BlockJob(kernel_fn, X1, X2, names, block, params, dict(kernel_fn_kwargs))
    path = Path(path)
    fingerprint = _fingerprint(job, symmetric, dtype)
    blocks = _blocks(X1.shape[0], X2.shape[0], block, symmetric)
    with directory_lock(path, what="kernel store"):  # one writer per store
        record = _prepare(path, fingerprint, overwrite)
        if record is None:
            record = {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "names": list(names),
                "block": block,
                "symmetric": symmetric,
                "total": len(blocks),
                "done": [],
            }
            _start(path, job, record, dtype)
        done = {tuple(b) for b in record["done"]}
        todo = [b for b in blocks if b not in done]
        _run(path, job, record, todo, progress=progress, devices=devices, executor=executor)
    return open_kernel(path)


def _commit(group: Any, path: Path, job: BlockJob, record: dict, result: dict) -> None:
    """Write one block (and its transpose) and then record it, atomically."""
    _write_block(group, job, result, record["symmetric"])
    record["done"].append([result["i"], result["j"]])
    atomic_write_bytes(path / RECORD, json.dumps(record).encode())


def _run(
    path: Path,
    job: BlockJob,
    record: dict[str, Any],
    todo: list[tuple[int, int]],
    *,
    progress: bool,
    devices: Any,
    executor: Any,
) -> None:
    """Compute the blocks `todo` (here, or as the executor's jobs), write each as it
    comes and record it: the record is replaced atomically after the block's chunks
    are written, so a kill in between recomputes that block."""
    import zarr

    group = zarr.open_group(path, mode="r+")
    bar = task = None
    if progress and todo:
        from .._progress import rich_bar

        bar = rich_bar(counts=True)
        bar.start()
        done = len(record["done"])
        task = bar.add_task("kernel blocks", total=record["total"], completed=done)

    def write(result: dict[str, Any]) -> None:
        _commit(group, path, job, record, result)
        if bar is not None:
            bar.advance(task)

    try:
        if executor is None:
            for result in _in_process(job, todo, devices):
                write(result)
        else:
            from ..sweeps._executors import get_executor

            runner = get_executor(executor) if isinstance(executor, str) else executor
            runner.run(job, [{"i": i, "j": j} for i, j in todo], write)
    finally:
        if bar is not None:
            bar.stop()
