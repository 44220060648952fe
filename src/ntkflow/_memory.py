"""How much memory a problem may use, so that an impossible size is refused before it is
allocated (a width of 1e9 would otherwise ask the allocator for hundreds of GB, and fail
with an allocator's traceback or the operating system's out-of-memory killer)."""

import os


class TooLarge(ValueError):
    """A problem that would not fit in memory: the message names the estimate and the fix.

    `part` says what to shrink: `"model"` (the parameters) or `"data"` (the points, whose
    `n × n` kernel is formed).
    """

    def __init__(self, message: str, part: str):
        super().__init__(message)
        self.part = part


def available_bytes() -> int | None:
    """The memory a computation here can use: the accelerator's when JAX reports it, else
    the machine's physical memory (lowered to a cgroup's limit, as in a container);
    `None` when unknown."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except (RuntimeError, NotImplementedError):
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return int(total)


def human_bytes(nbytes: int | float) -> str:
    """`12.3 GB`, `80 PB`, `512 B`: for messages."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError  # unreachable
