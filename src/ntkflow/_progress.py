"""Progress on stderr (so `--json` output stays clean): a rich bar on a terminal, and
plain lines where stderr is not one (a log file, a CI job, `nohup`), at least every 10% of
the work or every 30 s, so that a long run is never silent: `gradient flow  40%  t=12.5
steps=120  2m10s`, `sweep  3/10  failed=1 remaining=6  41s`.

diffrax calls a progress meter's `step` inside the compiled solve; the bar itself lives on
the host and is reached through JAX callbacks, as diffrax's own `TqdmProgressMeter` does.
"""

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator
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


# Without a terminal: a line whenever the work has advanced this fraction of the total,
# or this many seconds have passed since the last line.
LINE_FRACTION = 0.1
LINE_SECONDS = 30.0


def _elapsed(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _field(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LineProgress:
    """`rich.progress.Progress`'s calls that ntkflow makes (`start`, `add_task`,
    `update`, `advance`, `stop`), written as plain lines to `stream`: one when a task
    starts, then whenever it has advanced `LINE_FRACTION` of its total or `LINE_SECONDS`
    have passed, and one when it ends. A task's extra fields (`t=…`, `steps=…`,
    `failed=…`) are shown after its progress."""

    def __init__(self, *, counts: bool = False, stream: Any = None):
        self.counts = counts
        self.stream = stream if stream is not None else sys.stderr
        self.tasks: dict[int, dict[str, Any]] = {}

    def start(self) -> None:
        pass

    def add_task(
        self, description: str, total: float | int = 100.0, completed: float | int = 0.0, **fields
    ):
        idx = len(self.tasks)
        now = time.monotonic()
        self.tasks[idx] = dict(
            description=description,
            total=float(total),
            completed=float(completed),
            fields=dict(fields),
            start=now,
            last=now,
            shown=-1.0,
            done=False,
        )
        self._line(idx)
        return idx

    def update(
        self,
        task: int,
        *,
        completed: float | int | None = None,
        advance: float | int = 0.0,
        **fields,
    ):
        t = self.tasks[task]
        t["completed"] = (t["completed"] if completed is None else float(completed)) + advance
        t["fields"].update(fields)
        now = time.monotonic()
        step = LINE_FRACTION * t["total"]
        if t["completed"] >= t["shown"] + step or now - t["last"] >= LINE_SECONDS:
            self._line(task)

    def advance(self, task: int, advance: float | int = 1.0) -> None:
        self.update(task, advance=advance)

    def stop(self) -> None:
        for idx, t in self.tasks.items():
            if t["completed"] > t["shown"]:
                self._line(idx)

    def _line(self, task: int) -> None:
        t = self.tasks[task]
        total, done = t["total"], t["completed"]
        if self.counts:
            amount = f"{int(done)}/{int(total)}"
        else:
            amount = f"{100.0 * done / total:3.0f}%" if total > 0 else "…"
        extra = "  ".join(f"{k}={_field(v)}" for k, v in t["fields"].items() if v is not None)
        now = time.monotonic()
        parts = [t["description"], amount, extra, _elapsed(now - t["start"])]
        print("  ".join(p for p in parts if p), file=self.stream, flush=True)
        t["shown"], t["last"] = done, now


def sweep_fields(records: dict[int, dict[str, Any]], total: int) -> dict[str, int]:
    """A sweep bar's extra fields: points failed so far and points remaining."""
    failed = sum(r.get("status", "success") != "success" for r in records.values())
    return {"failed": failed, "remaining": total - len(records)}


def on_terminal() -> bool:
    """Whether stderr is a terminal (rich's view of it, which honours `FORCE_COLOR`/`TTY_*`
    settings)."""
    from rich.console import Console

    return Console(stderr=True).is_terminal


def rich_bar(*, counts: bool = False) -> Any:
    """A transient rich progress bar on stderr (so `--json` output stays clean): the task's
    description, the bar, the percentage (or `done/total` with `counts`), the elapsed
    time and an ETA; where stderr is not a terminal, `LineProgress`. Every progress bar
    of ntkflow is one of these."""
    if not on_terminal():
        return LineProgress(counts=counts)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Fields(ProgressColumn):
        def render(self, task: Any) -> Text:
            shown = (f"{k}={_field(v)}" for k, v in task.fields.items() if v is not None)
            return Text("  ".join(shown))

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if counts else TaskProgressColumn(),
        Fields(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _open(description: str) -> np.ndarray:
    bar = rich_bar()
    bar.start()
    task = bar.add_task(description, total=100.0, t=None, steps=0)
    with _LOCK:
        idx = next(_IDS)
        _BARS[idx] = (bar, task)
    return np.array(idx, dtype=np.int32)


def _scalar(x: Any) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def _update(progress: Any, steps: Any, t1: Any, scale: Any, idx: Any) -> Any:
    entry = _BARS.get(int(_scalar(idx)))
    if entry is not None:
        bar, task = entry
        frac, horizon, tau = _scalar(progress), _scalar(t1), _scalar(scale)
        t = frac * horizon if np.isfinite(horizon) else None
        if t is not None and np.isfinite(tau) and tau > 0:
            # (steps are spread evenly in log t: the share of log t done is what tells)
            frac = float(np.log1p(t / tau) / np.log1p(horizon / tau))
        bar.update(task, completed=100.0 * frac, t=t, steps=int(_scalar(steps)))
    return idx


def _close(idx: Any) -> None:
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
    - `refresh_steps`: solver steps between updates (each update is a host callback;
      without a terminal every step is one, so that a line is due at least every 30 s).
    - `t1`: the horizon, to show the time reached (`t=…`) beside the steps.
    - `scale`: the fastest mode's time scale `1/(α²λ_max(K0))`; with it the bar shows
      the share of `log(1 + t/scale)` done, which the steps follow, not of `t`.
    """

    description: str = eqx.field(static=True, default="gradient flow")
    refresh_steps: int = eqx.field(static=True, default=25)
    t1: float = eqx.field(static=True, default=float("nan"))
    scale: float = eqx.field(static=True, default=float("nan"))

    def init(self) -> _State:
        idx = io_callback(
            lambda: _open(self.description), jax.ShapeDtypeStruct((), jnp.int32), ordered=True
        )
        return _State(idx=idx, step=jnp.array(0))

    def step(self, state: _State, progress: ScalarLike) -> _State:
        shape = jax.ShapeDtypeStruct((), jnp.int32)
        t1, scale = jnp.asarray(self.t1), jnp.asarray(self.scale)
        idx = jax.lax.cond(
            state.step % self.refresh_steps == 0,
            lambda i: io_callback(_update, shape, progress, state.step, t1, scale, i),
            lambda i: i,
            state.idx,
        )
        return _State(idx=idx, step=state.step + 1)

    def close(self, state: _State) -> None:
        io_callback(_close, None, state.idx, ordered=True)


def meter(description: str = "gradient flow", *, t1: float = float("nan")) -> RichProgressMeter:
    """The gradient flow's progress meter: a bar updated every 25 steps on a terminal,
    lines checked at every step otherwise."""
    return RichProgressMeter(description, 25 if on_terminal() else 1, float(t1))


@contextlib.contextmanager
def stage(description: str, enabled: bool) -> Iterator[None]:
    """A long step without a measure of its progress (`certify`'s kernel, its `β`
    estimates): a spinner on a terminal; otherwise a line when it starts and one with its
    time when it ends."""
    if not enabled:
        yield
        return
    if on_terminal():
        from rich.console import Console

        with Console(stderr=True).status(description):
            yield
        return
    start = time.monotonic()
    print(f"{description} …", file=sys.stderr, flush=True)
    yield
    print(f"{description}  done  {_elapsed(time.monotonic() - start)}", file=sys.stderr, flush=True)
