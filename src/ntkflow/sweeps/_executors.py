"""Executors: how a sweep's independent points run (strategies behind one interface).

An `AbstractExecutor` calls `fn(payload)` for each payload anywhere — this process, local
processes, a cluster — and hands each result back in the driver's process, so nothing in
a sweep depends on how its points are scheduled. `LocalProcesses(jobs)` is a pool on this
machine; `RayExecutor(address)` runs the points as Ray tasks, on a local Ray instance or
a cluster. `get_executor(name, …)` looks them up by name (`EXECUTORS`).
"""

import abc
import concurrent.futures
import inspect
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._grid import SweepError


class AbstractExecutor(abc.ABC):
    """Runs independent jobs. `run(fn, payloads, on_result, on_dead)` calls `fn(payload)`
    for each payload (anywhere: this process, local processes, a cluster) and
    `on_result(result)` in this process as each finishes, in any order."""

    @classmethod
    def from_settings(cls, *, jobs: int = 1, address: str | None = None) -> "AbstractExecutor":
        """The executor for a sweep's settings (`--jobs`, `--address`); refuses those it
        does not take."""
        raise NotImplementedError

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

    @classmethod
    def from_settings(cls, *, jobs: int = 1, address: str | None = None) -> "LocalProcesses":
        if address is not None:
            raise SweepError(
                f"address={address!r} is for executor='ray'; drop it, or run with executor='ray'"
            )
        return cls(jobs)

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


# Environment that decides a point's numbers (float64, the platform): a Ray cluster's
# workers get the driver's, so a point computes the same on any node.
_PASSED_ENV = ("NTKFLOW_X64", "JAX_ENABLE_X64", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(
            "the ray executor needs Ray, which is not installed: pip install 'ntkflow[ray]' "
            "(or run with the local executor)"
        ) from None
    return ray


class RayExecutor(AbstractExecutor):
    """Each point a Ray task (`ray.remote`, Ray's own task API).

    Without `address`, `run` starts a local Ray instance sized to this machine
    (`os.cpu_count()` CPUs) and shuts it down afterwards; with one (`"auto"`,
    `"ray://host:10001"`, `"host:6379"`) it joins that cluster. If Ray is already
    initialised in this process, that instance is used as it is. Each point asks for
    `cpus_per_point` CPUs, so Ray runs as many at once as its CPUs allow.

    A point whose worker dies (killed, out of memory, its node lost) is retried
    `retries` times by Ray, then recorded by `on_dead`. The workers write the points'
    files themselves when they see the sweep directory (this machine, or a shared
    filesystem); otherwise the files travel back with the result and the driver writes
    them (`_points.run_point`).
    """

    def __init__(
        self, address: str | None = None, *, cpus_per_point: float | int = 1.0, retries: int = 1
    ):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise SweepError(
                f"address must be a Ray address such as 'auto' or 'ray://HOST:10001', got "
                f"address={address!r}"
            )
        ok = isinstance(cpus_per_point, int | float) and not isinstance(cpus_per_point, bool)
        if not ok or not cpus_per_point > 0:
            raise SweepError(
                f"cpus_per_point must be a positive number, got cpus_per_point={cpus_per_point!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise SweepError(f"retries must be an integer ≥ 0, got retries={retries!r}")
        _import_ray()  # refused here, before a sweep directory is touched
        self.address = address
        self.cpus_per_point = float(cpus_per_point)
        self.retries = retries

    @classmethod
    def from_settings(cls, *, jobs: int = 1, address: str | None = None) -> "RayExecutor":
        if jobs != 1:
            raise SweepError(
                f"jobs={jobs!r} is for executor='local'; Ray runs as many points at once as "
                "its CPUs allow, so drop jobs"
            )
        return cls(address)

    def _init(self, ray: Any) -> None:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "runtime_env": {"env_vars": env} if env else None,
        }
        if self.address is None:
            # Payloads and results are small (a point's files at most): a small object
            # store, not Ray's default of 30% of memory.
            options |= {"num_cpus": os.cpu_count() or 1, "object_store_memory": 256 * 2**20}
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SweepError(
                f"could not join the Ray cluster at address={self.address!r} "
                f"({' '.join(str(e).split())}); check the address, or leave it out to start "
                "a local Ray instance"
            ) from None

    def run(self, fn, payloads, on_result, on_dead=None):
        if not payloads:
            return
        ray = _import_ray()
        from ray import exceptions as rex

        owned = not ray.is_initialized()
        if owned:
            self._init(ray)
        dead = (rex.WorkerCrashedError, rex.OutOfMemoryError, rex.NodeDiedError)
        pending: list[Any] = []
        try:
            job = fn if inspect.isfunction(fn) else (lambda payload: fn(payload))  # (Ray: a def)
            task = ray.remote(num_cpus=self.cpus_per_point, max_retries=self.retries)(job)
            refs = {task.remote(p): p for p in payloads}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except dead as e:
                        if on_dead is not None:
                            reason = type(e).__name__
                            on_dead(
                                refs[ref],
                                f"its Ray worker died ({reason}; killed, or out of memory)",
                            )
                        continue
                    except rex.RayTaskError as e:  # the point's own exception, as raised
                        raise e.as_instanceof_cause() from None
                    on_result(result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if owned:
                ray.shutdown()


EXECUTORS: dict[str, type[AbstractExecutor]] = {"local": LocalProcesses, "ray": RayExecutor}


def get_executor(name: str, *, jobs: int = 1, address: str | None = None) -> AbstractExecutor:
    """The executor called `name` (`EXECUTORS`): `"local"` with `jobs` worker processes,
    `"ray"` on the cluster at `address` (a local instance without one).

    **Raises:** `SweepError` for an unknown name or a setting the executor does not take.
    """
    if name not in EXECUTORS:
        raise SweepError(
            f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got executor={name!r}"
        )
    return EXECUTORS[name].from_settings(jobs=jobs, address=address)
