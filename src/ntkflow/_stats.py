"""How each flow was computed (`SolveStats`, `GDStats`) and how a solve ended
(`FlowStatus`)."""

import dataclasses
import enum
import warnings
from typing import Any


class _Record:
    """Read access by key (`stats["gradient"]["num_steps"]`) to a frozen stats record, as
    to the dictionaries results held before the records were typed; `as_dict` is the
    record's JSON form."""

    _keep_none: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The fields, in order; those that are `None` are left out (they do not apply),
        except the ones named in `_keep_none`."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # pyright: ignore[reportArgumentType]
            if getattr(self, f.name) is not None or f.name in self._keep_none
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)


@dataclasses.dataclass(frozen=True)
class SolveStats(_Record):
    """How one flow was computed.

    **Fields:** `method` (the tangent flow's strategy, or how the error estimate was
    made), diffrax's step counts (`max_steps`, `num_accepted_steps`, `num_rejected_steps`,
    `num_steps`), `vf_evaluations` (vector-field evaluations, `None` when the solver's
    count is unknown), `kernel_evaluations` (the exponential integrator's steps:
    each forms an empirical NTK, except those from `w0`, which reuse `K0`'s factors),
    `wall_s`, `solver` (its class name), the tolerances `rtol`,
    `atol`, the flow's resolution `resolution` (`ρ`, docs/theory.md "Rounding"),
    `skipped` (why the flow was not integrated), `failed` (how a solve that was
    expected to finish ended) and, for the error estimate of an accuracy policy,
    `accuracy` (the targets, the solves it took and the budget it reached:
    `_accuracy.AccuracyReport.as_dict`). Fields that do not apply are `None`.
    """

    method: str | None = None
    max_steps: int | None = None
    num_accepted_steps: int | None = None
    num_rejected_steps: int | None = None
    num_steps: int | None = None
    vf_evaluations: int | None = None
    kernel_evaluations: int | None = None
    wall_s: float | None = None
    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    resolution: float | None = None
    skipped: str | None = None
    failed: str | None = None
    accuracy: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class GDStats(_Record):
    """How gradient descent ran: its step `η`, the `iterations` it took, the stability
    limit `2/(α² λ_max(K0))`, the iteration by which it diverged (`None` if it did not)
    and its wall time."""

    _keep_none = ("diverged_at",)

    step: float
    iterations: int
    stable_limit: float
    diverged_at: int | None
    wall_s: float


class FlowStatus(enum.Enum):
    """How a solve ended. The values are messages a user can act on; `FlowSolution.message`
    adds the times and numbers. In the results files a status is its name in lower case
    (`"success"`, `"max_steps"`, …)."""

    def __eq__(self, other: object) -> bool:
        # `Verification.status` was that string before it was a `FlowStatus`.
        if isinstance(other, str):
            warnings.warn(
                "comparing a FlowStatus with a string is deprecated: compare with "
                f"FlowStatus.{other.upper()} (or with `status.name.lower()`)",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.name.lower() == other
        return self is other

    __hash__ = enum.Enum.__hash__

    SUCCESS = "The flows were integrated to t1."
    MAX_STEPS = (
        "The maximum number of solver steps was reached before t1. Increase `max_steps`, "
        "loosen `rtol`, or shorten `t1`."
    )
    NONFINITE = (
        "The gradient flow produced NaN or inf. Lower α, check the model for overflow, or "
        "shorten `t1`."
    )
    GD_DIVERGED = "Gradient descent diverged: lower `gd_step` below 2/(α² λ_max(K0))."
    UNRESOLVED = (
        "The gradient flow was not integrated: in this dtype the network cannot resolve its "
        "own motion. Lower α or use float64."
    )
