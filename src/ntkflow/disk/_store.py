"""A kernel on disk (docs/kernel.md, "Kernels larger than memory"): a zarr group
holding one chunked array per kernel (`nngp`, `ntk`), each chunk one block of
`block × block` point pairs, and a record of the blocks written (`ntkflow_blocks.json`,
replaced atomically after each block), which is what makes a killed run resumable.

`DiskArray` is one kernel, read in row blocks: `K @ X` and its diagonal without loading
`K`; `np.asarray(K)` loads it (only for kernels that fit). `DiskKernel` is the group,
with neural-tangents' `nngp`/`ntk` attributes, so the predictors take it as they take
`predict.Kernel`.
"""

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError

RECORD = "ntkflow_blocks.json"


class KernelStoreError(InputError):
    """A kernel store that cannot be used as asked (`key` names the argument)."""


def read_record(path: Path) -> dict[str, Any] | None:
    """The store's record of what it holds and the blocks written, or `None` where
    `path` holds none."""
    record = Path(path) / RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text())


@dataclasses.dataclass(frozen=True)
class DiskArray:
    """One kernel `(n1, n2, …)` in a zarr array on disk, read in row blocks.

    **Attributes:** `path` (the store), `name` (`"nngp"` or `"ntk"`).
    """

    path: Path
    name: str

    @property
    def zarr(self) -> Any:
        import zarr

        return zarr.open_array(Path(self.path) / self.name, mode="r")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.zarr.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.zarr.dtype)

    @property
    def block(self) -> int:
        """The rows (and columns) of one chunk."""
        return int(self.zarr.chunks[0])

    def rows(self, block: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """`(rows, K[rows])` for each block of `block` rows (default: one chunk's)."""
        array, n = self.zarr, self.shape[0]
        step = block or self.block
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            yield rows, np.asarray(array[rows])

    def __matmul__(self, X: Any) -> np.ndarray:
        """`K @ X` for a matrix kernel, one row block at a time (memory: one block of
        rows and `X`)."""
        self._matrix("K @ X")
        X = np.asarray(X)
        out = np.empty((self.shape[0], *X.shape[1:]), np.result_type(self.dtype, X.dtype))
        for rows, A in self.rows():
            out[rows] = A @ X
        return out

    def diagonal(self) -> np.ndarray:
        """`K[i, i]` of a square matrix kernel, read block by block."""
        self._matrix("the diagonal")
        if self.shape[0] != self.shape[1]:
            raise ValueError(f"the diagonal needs a square kernel, got shape {self.shape}")
        array, n, step = self.zarr, self.shape[0], self.block
        parts = []
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            parts.append(np.diagonal(np.asarray(array[rows, rows])))
        return np.concatenate(parts)

    def _matrix(self, what: str) -> None:
        if self.ndim != 2:
            raise ValueError(
                f"{what} on disk needs a kernel of one entry per pair of points (n1, n2), got "
                f"shape {self.shape}; write it with trace_axes covering the outputs"
            )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.zarr[...], dtype=dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.zarr[key])

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, {self.name!r}, shape={self.shape})"


@dataclasses.dataclass(frozen=True)
class DiskKernel:
    """The kernels of one `kernel_to_disk` call: `nngp` and `ntk` (each a `DiskArray`, or
    `None` where not written), as neural-tangents' `Kernel` has them.

    **Attributes:** `path`, `names` (the kernels written), `shape`, `block`,
    `symmetric` (a set of points with itself: each off-diagonal block computed once and
    written with its transpose), `blocks_done`, `blocks_total`.
    """

    path: Path
    names: tuple[str, ...]
    shape: tuple[int, ...]
    block: int
    symmetric: bool
    blocks_done: int
    blocks_total: int

    @property
    def complete(self) -> bool:
        return self.blocks_done == self.blocks_total

    @property
    def nngp(self) -> DiskArray | None:
        return self["nngp"] if "nngp" in self.names else None

    @property
    def ntk(self) -> DiskArray | None:
        return self["ntk"] if "ntk" in self.names else None

    def __getitem__(self, name: str) -> DiskArray:
        if name not in self.names:
            raise KeyError(f"this store holds {self.names}, not {name!r}")
        return DiskArray(self.path, name)


def open_kernel(path: str | Path) -> DiskKernel:
    """The kernels `kernel_to_disk` wrote at `path` (complete or not: see `complete`).

    **Raises:** `KernelStoreError` where `path` holds no kernel store.
    """
    path = Path(path)
    record = read_record(path)
    if record is None:
        raise KernelStoreError("path", str(path), f"a folder kernel_to_disk wrote (with {RECORD})")
    return DiskKernel(
        path,
        tuple(record["names"]),
        tuple(record["shape"]),
        int(record["block"]),
        bool(record["symmetric"]),
        len(record["done"]),
        int(record["total"]),
    )
