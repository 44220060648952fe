"""`FlowOptions`: the settings of `solve_flows`, grouped in one typed, checked object."""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import diffrax
import numpy.typing as npt

from ._adams import ExponentialAdams
from ._errors import InputError

FLOWS = ("gradient", "tangent")


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """How `solve_flows` integrates the flows (docs/flows.md). Each field may also be
    given to `solve_flows` as a keyword argument.

    **Fields:**

    - `saveat`: an int (that many save times: 0 and the rest evenly spaced in `log t`
      from 1% of the fastest time scale `1/(α²Lλ_max)` to `t1`, or in `t` with
      `spacing="linear"`) or an increasing array of times (0 is prepended if absent).
    - `spacing`: `"log"` or `"linear"` (docs/flows.md, "Save times").
    - `solver`: `"auto"` (an exponential integrator when the flow is stiff, see
      `choose_solver`), `"adams"` (`ExponentialAdams`, squared loss), `"exponential"`
      (`ExponentialNTK`), `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`, or any diffrax
      solver. The tangent flow's ODE (`tangent="ode"`) uses Tsit5 when the gradient
      flow's solver is exponential.
    - `rtol`, `atol`: the tolerances. With `ExponentialAdams`, `rtol="auto"` is the
      accuracy policy (docs/flows.md, "The accuracy policy"): the gaps `‖w − u‖`,
      `‖αf(w) − αf_0(u)‖` to `1e-3` of themselves, the distance and the loss to `1e-6`,
      solved loose first and tightened until the error budget shows it
      (`stats["error_estimate"]["accuracy"]` reports what it reached); a number is used
      for all of them, with one re-solve 10× looser for the budget. Otherwise they are
      the PID controller's on the displacement `w − w0`: `rtol="auto"` is `1e-8`, or
      what the dtype can resolve when that is coarser (`max(1e-8, 1000ε, ρ)` with the
      flow's resolution `ρ` from `motion_resolution`; float32: about `1e-4` or more); a
      number below `ρ` is raised to `ρ` with a `RuntimeWarning`. When `ρ > 1e-2` the
      gradient flow is not integrated (`FlowStatus.UNRESOLVED`): rounding would be most
      of what it shows. `atol="auto"` is `rtol` times the RMS entry of `u∞ − w0` (the
      scale of the motion).
    - `flows`: which of `"gradient"`, `"tangent"` to integrate.
    - `tangent`: how the tangent flow is computed: `"auto"` (the closed form for the
      squared loss, the ODE for any other), `"closed_form"` (`ClosedForm`: the
      eigendecomposition of `K0`; exact; squared loss only), `"ode"` (`TangentODE`:
      diffrax on `jax.linearize`), or an `AbstractTangentMethod`.
    - `gd_step`: if given, also run gradient descent with this step `η`.
    - `max_steps`: the solver's step budget.
    - `error_estimate`: re-solve the gradient flow at 10× looser tolerances and use the
      difference as the error budget of every gradient-flow quantity (see `verify`).
    - `save_params`: keep `w(t) − w0` and `u(t) − w0` (`n_saves × p` numbers each).
    - `diagnostics`: `σ(J_{w(t)})` and the kernel drift at every save: `True`/`"dense"`
      (a kernel and two `eigh`s each), `"lanczos"` (iterative, no kernel formed:
      docs/flows.md, "Kernel diagnostics at scale") or `False`.

    A bad value raises `InputError` (a `ValueError`) with the field (`key`), the value
    and what it may be (`fix`).
    """

    saveat: int | npt.ArrayLike = 100
    spacing: str = "log"
    solver: str | diffrax.AbstractSolver | ExponentialAdams = "auto"
    rtol: float | str = "auto"
    atol: float | str = "auto"
    flows: Sequence[str] = FLOWS
    tangent: Any = "auto"
    gd_step: float | None = None
    max_steps: int = 100_000
    error_estimate: bool = True
    save_params: bool = False
    diagnostics: bool | str = True

    def __post_init__(self) -> None:
        flows = tuple(self.flows)
        if set(flows) - set(FLOWS) or not flows:
            raise InputError("flows", flows, f"a non-empty subset of {FLOWS!r}")
        object.__setattr__(self, "flows", flows)
        rtol, atol, max_steps = self.rtol, self.atol, self.max_steps
        if rtol != "auto" and not (
            isinstance(rtol, int | float) and not isinstance(rtol, bool) and 0 < rtol < 1
        ):
            raise InputError("rtol", rtol, "'auto' or a number in (0, 1)")
        if atol != "auto" and not (
            isinstance(atol, int | float) and math.isfinite(atol) and atol > 0
        ):
            raise InputError("atol", atol, "'auto' or a number > 0")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise InputError("max_steps", max_steps, "an integer ≥ 1")

    @classmethod
    def merged(cls, options: "FlowOptions | None", keywords: dict[str, Any]) -> "FlowOptions":
        """`options` (or the defaults) with the fields named in `keywords` replaced; a
        name that is not a field raises `TypeError`, as a Python call would."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(
                f"solve_flows() got an unexpected keyword argument {unknown[0]!r} "
                f"(its settings: {', '.join(sorted(names))})"
            )
        if options is None:
            return cls(**keywords)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a FlowOptions, got {type(options).__name__}")
        return dataclasses.replace(options, **keywords) if keywords else options
