"""A rich progress bar for diffrax solves (on stderr, so `--json` output stays clean).

diffrax calls a progress meter's `step` inside the compiled solve; the bar itself lives on
the host and is reached through JAX callbacks, as diffrax's own `TqdmProgressMeter` does.
"""

import itertools
import threading
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jaxtyping import Array, Int, ScalarLike

# Host-side bars, keyed by the integer the compiled code carries around.
_BARS: dict[int, Any] = {}
_IDS = itertools.count(1)
_LOCK = threading.Lock()


def rich_bar(*, counts: bool = False) -> Any:
    """A transient rich progress bar on stderr (so `--json` output stays clean): the task's
    description, the bar, the percentage (or `done/total` with `counts`), the elapsed
    time and an ETA. Every progress bar of ntkflow is one of these."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if counts else TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _open(description: str) -> np.ndarray:
    bar = rich_bar()
    bar.start()
    task = bar.add_task(description, total=100.0)
    with _LOCK:
        idx = next(_IDS)
        _BARS[idx] = (bar, task)
    return np.array(idx, dtype=np.int32)


def _update(progress: np.ndarray, idx: np.ndarray) -> np.ndarray:
    entry = _BARS.get(int(np.asarray(idx).reshape(-1)[0]))
    if entry is not None:
        bar, task = entry
        bar.update(task, completed=100.0 * float(np.asarray(progress).reshape(-1)[0]))
    return idx


def _close(idx: np.ndarray) -> None:
    with _LOCK:
        entry = _BARS.pop(int(np.asarray(idx).reshape(-1)[0]), None)
    if entry is not None:
        bar, task = entry
        bar.update(task, completed=100.0)
        bar.stop()


class _State(eqx.Module):
    idx: Int[Array, ""]
    step: Int[Array, ""]


class RichProgressMeter(diffrax.AbstractProgressMeter):
    """A rich progress bar with elapsed time and ETA, on stderr.

    **Arguments:**

    - `description`: the bar's label.
    - `refresh_steps`: solver steps between updates (each update is a host callback).
    """

    description: str = eqx.field(static=True, default="gradient flow")
    refresh_steps: int = eqx.field(static=True, default=25)

    def init(self) -> _State:
        idx = io_callback(
            lambda: _open(self.description), jax.ShapeDtypeStruct((), jnp.int32), ordered=True
        )
        return _State(idx=idx, step=jnp.array(0))

    def step(self, state: _State, progress: ScalarLike) -> _State:
        idx = jax.lax.cond(
            state.step % self.refresh_steps == 0,
            lambda i: io_callback(_update, jax.ShapeDtypeStruct((), jnp.int32), progress, i),
            lambda i: i,
            state.idx,
        )
        return _State(idx=idx, step=state.step + 1)

    def close(self, state: _State) -> None:
        io_callback(_close, None, state.idx, ordered=True)
