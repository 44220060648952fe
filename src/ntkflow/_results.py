"""Results on disk: a directory that is either complete or absent.

    RESULTS_DIR/
      summary.json       certificate, checks, solver statistics, versions, resolved config
      trajectories.nc    xarray Dataset: coordinate t, one variable per tracked quantity
      figures/*.png      the figures (plotting)
      report.html        one self-contained page (report.py)

Everything is written into a hidden sibling directory `.NAME.partial-PID-…` and renamed
into place only when complete, so an interrupted run (SIGINT, SIGKILL, a crash) never
leaves a directory that looks finished; `summary.json` also carries `"complete": true`,
which `load_results` and `ntkflow report` require.

One process at a time writes a results directory: `output_lock` holds an exclusive
`flock` on `.NAME.lock` beside it from the check of the target to the rename, so a second
writer is refused at once instead of silently replacing the first one's results. The
kernel releases the lock when its process dies, so a killed run never blocks the next.
"""

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError
from ._files import path_kind
from ._json import jsonable
from ._repr import concise

FORMAT = "ntkflow-results/1"
SUMMARY = "summary.json"
TRAJECTORIES = "trajectories.nc"
REPORT = "report.html"
FIGURES = "figures"


class ResultsError(InputError):
    """A results directory that is missing, incomplete or not ntkflow's (`key` is
    `"path"`, `value` the directory)."""

    def __init__(self, message: str, *, path: Any = None):
        super().__init__("path" if path is not None else None, path, message=message)


@concise
@dataclasses.dataclass(frozen=True)
class Results:
    """A results directory loaded back: `dataset` (the trajectories as an
    `xarray.Dataset`), `summary` (the parsed `summary.json`), `path`."""

    dataset: Any
    summary: dict[str, Any]
    path: Path

    def _overview(self) -> list[tuple[str, Any]]:
        return [("path", str(self.path)), ("dataset", self.dataset), ("summary", self.summary)]


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    import importlib.metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("ntkflow", "jax", "jaxlib", "diffrax", "equinox", "numpy", "scipy", "xarray"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_results_dir(path: Path) -> bool:
    try:
        with open(path / SUMMARY) as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> None:
    """Remove `.NAME.partial-PID-…` left by killed runs whose process is gone."""
    for p in target.parent.glob(f".{target.name}.partial-*"):
        try:
            pid = int(p.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def check_output_dir(target: str | os.PathLike) -> Path:
    """Refuse a results directory that cannot be written: a file, the current or a root
    directory, a parent that is a file, or a directory that is not an ntkflow results
    directory (results directories are replaced whole).

    Writes nothing. **Raises:** `ResultsError` naming the path and the fix.
    """
    target = Path(target)
    try:
        return _check_output_dir(target)
    except OSError as e:  # a name too long, a symlink loop, …
        raise ResultsError(
            f"results directory {str(target)[:80]!r} cannot be used ({e.strerror}); choose "
            "another path"
        ) from None


def _check_output_dir(target: Path) -> Path:
    shown = repr(str(target))
    if target.name in ("", ".", ".."):
        raise ResultsError(
            f"results directory {shown} names no new directory; give a path like "
            "results/NAME (results directories are replaced whole)"
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ResultsError(
                    f"results directory {shown}: {str(parent)!r} is a file, not a directory; "
                    "choose another path"
                )
            break
    if target.exists() and not target.is_dir():
        raise ResultsError(f"results directory {shown} is a file; give a directory path")
    try:
        foreign = target.is_dir() and any(target.iterdir()) and not _is_results_dir(target)
    except OSError as e:
        raise ResultsError(
            f"results directory {shown} cannot be read ({e.strerror}); choose another path"
        ) from None
    if foreign:
        raise ResultsError(
            f"results directory {shown} exists and is not an ntkflow results directory; "
            "choose another path (results directories are replaced whole, so ntkflow will "
            "not overwrite other files)"
        )
    return target


def _make_parents(target: Path, what: str = "results directory") -> list[Path]:
    """Create `target`'s missing parents; return those created, deepest first.

    **Raises:** `ResultsError` when a parent cannot be created (permissions, a file).
    """
    missing = [p for p in reversed(target.parents) if not p.exists()]
    created = []
    try:
        for p in missing:
            try:
                p.mkdir()
            except FileExistsError:
                if not p.is_dir():
                    raise
                continue  # made by another process meanwhile: not ours to remove
            created.append(p)
    except OSError as e:
        _remove_empty(created[::-1])
        raise ResultsError(
            f"{what} {str(target)!r} cannot be created ({e.strerror} on "
            f"{e.filename or str(target.parent)!r}); choose a writable path"
        ) from None
    return created[::-1]


def _remove_empty(directories: list[Path]) -> None:
    for p in directories:
        with contextlib.suppress(OSError):
            p.rmdir()


# Locks this process holds, by lock-file path: a nested writer (`write_results` inside the
# CLI's `output_lock`) reuses its caller's, as `flock` on a second descriptor would block.
_HELD: set[str] = set()


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _acquire(path: Path, target: Path, what: str) -> int:
    """An exclusive `flock` on `path` (created if absent); its file descriptor.

    After locking, the file must still be the one at `path`: a holder removes it on
    release, and a lock on the removed inode would guard nothing.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the write is still atomic)
        fcntl = None

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as e:
            raise ResultsError(
                f"{what} {str(target)!r} cannot be written ({e.strerror} on "
                f"{str(path.parent)!r}); choose a writable path"
            ) from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return fd  # a file system without locks (ENOLCK, …): write unlocked
            os.close(fd)
            try:
                holder = path.read_text().strip()
            except OSError:
                holder = ""
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise ResultsError(
                f"{what} {str(target)!r} is being written by another ntkflow "
                f"process{pid}; wait for it to finish, or choose another path"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Check `target` (`check_output_dir`) and hold the exclusive write lock on it until
    the block ends; on the way out the lock file goes, and so do the parents this made
    when nothing was written.

    **Raises:** `ResultsError` when the target cannot be written or another process is
    writing it.
    """
    target = Path(target)
    if os.path.abspath(_lock_path(target)) in _HELD:
        # A nested writer (`write_results` inside the CLI's `output_lock`): the outer one
        # checked the target under this very lock.
        yield target
        return
    # Before the lock, so that a refused target makes no parents and no lock file; and
    # under it, where no other writer can change the target until the rename.
    target = check_output_dir(target)
    with directory_lock(target):
        yield check_output_dir(target)


@contextlib.contextmanager
def directory_lock(target: str | os.PathLike, *, what: str = "results directory") -> Iterator[Path]:
    """Hold the exclusive write lock on the directory `target` (a `flock` on `.NAME.lock`
    beside it, made with its missing parents) until the block ends; then remove the lock
    file, and the parents made when nothing was written. `what` names the directory in
    errors.

    **Raises:** `ResultsError` when it cannot be written or another process holds it.
    """
    target = Path(target)
    lock = _lock_path(target)
    key = os.path.abspath(lock)
    if key in _HELD:
        yield target
        return
    created = _make_parents(target, what)
    try:
        fd = _acquire(lock, target, what)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD.add(key)
    try:
        yield target
    finally:
        _HELD.discard(key)
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
        if not target.exists():
            _remove_empty(created)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike, *, cancelled: Callable[[], bool] | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; on success, move it to `target`
    (replacing an older results directory there), on any exception or interrupt, delete
    it.

    `cancelled()` is asked once more just before the move: a Ctrl-C whose
    `KeyboardInterrupt` was swallowed on the way (Python ignores exceptions raised in
    weakref callbacks and destructors) still cancels the write.
    """
    with output_lock(target) as target:
        remove_stale_partials(target)
        prefix = f".{target.name}.partial-{os.getpid()}-"
        try:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        except OSError as e:
            raise ResultsError(
                f"results directory {str(target)!r} cannot be written ({e.strerror}); "
                "choose a writable path"
            ) from None
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; results are not
        try:
            yield tmp
            if cancelled is not None and cancelled():
                raise KeyboardInterrupt
            if target.exists():
                old = target.parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temporary sibling and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """netCDF attributes are numbers or strings: encode the rest as JSON text."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bool) or v is None or isinstance(v, dict | list | tuple):
            out[k] = json.dumps(jsonable(v))
        elif isinstance(v, int | float | str | np.number):
            out[k] = v
        else:
            out[k] = str(v)
    return out


@contextlib.contextmanager
def results_writer(
    target: str | os.PathLike,
    summary: dict[str, Any],
    dataset: Any,
    *,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Write a results directory atomically, with room for the caller's files.

    Writes `trajectories.nc` into a fresh hidden directory and yields it with the
    summary as it will be saved (`format` and `complete` added); the block adds its
    files there (the figures and the report); then `summary.json` is written, last, and
    the directory moved into place (replacing older results). An exception or interrupt
    in the block leaves nothing.

    **Arguments:** `target` (the directory to create or replace), `summary` (JSON-ready),
    `dataset` (the trajectories, an `xarray.Dataset`), `cancelled` (see
    `atomic_directory`).
    """
    with atomic_directory(target, cancelled=cancelled) as tmp:
        ds = dataset.copy()
        ds.attrs = _netcdf_attrs(ds.attrs)
        ds.to_netcdf(tmp / TRAJECTORIES, engine="h5netcdf")
        summary = {"format": FORMAT, **jsonable(summary), "complete": True}
        yield tmp, summary
        # Last, so a directory with a summary always has everything else.
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def write_results(
    target: str | os.PathLike,
    summary: dict[str, Any],
    dataset: Any,
    *,
    cancelled: Callable[[], bool] | None = None,
) -> Path:
    """Write a results directory (`summary.json`, `trajectories.nc`) atomically; see
    `results_writer` to add files to it. **Returns:** the path written."""
    with results_writer(target, summary, dataset, cancelled=cancelled):
        pass
    return Path(target)


def load_results(path: str | os.PathLike) -> Results:
    """Load a results directory written by `ntkflow run` (or `write_results`).

    **Raises:** `ResultsError` when the directory is missing, incomplete (an interrupted
    run) or not ntkflow's.
    """
    import xarray as xr

    path = Path(path)
    kind = path_kind(path, what="results directory", error=ResultsError)
    if kind == "file":
        raise ResultsError(f"{str(path)!r} is a file, expected a results directory")
    if kind == "missing":
        raise ResultsError(f"results directory {str(path)!r} does not exist; check the path")
    damaged = "the results directory is damaged: run the experiment again"
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(
            f"{str(path)!r} has no {SUMMARY}: not a complete ntkflow results directory "
            "(an interrupted run?); run the experiment again"
        ) from None
    except OSError as e:
        raise ResultsError(
            f"{str(path / SUMMARY)!r} cannot be read ({e.strerror}); {damaged}"
        ) from None
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError
        raise ResultsError(f"{str(path / SUMMARY)!r} is not valid JSON ({e}); {damaged}") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise ResultsError(f"{str(path)!r} is not an ntkflow results directory ({FORMAT})")
    if summary.get("complete") is not True:
        raise ResultsError(f"{str(path)!r} is incomplete; run the experiment again")
    if not isinstance(summary.get("certificate"), dict):
        raise ResultsError(f"{str(path / SUMMARY)!r} has no certificate; {damaged}")
    if not (path / TRAJECTORIES).is_file():
        raise ResultsError(f"{str(path)!r} lacks {TRAJECTORIES}; run the experiment again")
    try:
        dataset = xr.load_dataset(path / TRAJECTORIES, engine="h5netcdf")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        shown = " ".join(str(e).split())[:160] or type(e).__name__
        raise ResultsError(
            f"{str(path / TRAJECTORIES)!r} cannot be read ({shown}); {damaged}"
        ) from None
    return Results(dataset=dataset, summary=summary, path=path)
