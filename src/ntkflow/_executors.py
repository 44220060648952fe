"""Executors: how a sweep's independent points run (strategies behind one interface).

An `AbstractExecutor` calls `fn(payload)` for each payload anywhere — this process, local
processes, a cluster — and hands each result back in the driver's process, so nothing in
a sweep depends on how its points are scheduled. `LocalProcesses(jobs)` is the one here.
"""

import abc
import concurrent.futures
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
