"""`FlowSolution`: what `solve_flows` returns, its typed paths, and its xarray form (the
quantities under the names of `_quantities.SERIES`)."""

import dataclasses
import json
from typing import Any

import numpy as np

from ._json import jsonable
from ._paths import FlowPath, Gaps, KernelPath
from ._quantities import SERIES as SERIES, Series as Series
from ._repr import concise, shown
from ._stats import FlowStatus, GDStats, SolveStats


@concise
@dataclasses.dataclass(frozen=True, eq=False)
class FlowSolution:
    """The flows at the save times `ts`, each as a typed path, with how the solve went.

    **Paths** (`FlowPath`, `None` when not computed): `gradient` (the network's gradient
    flow `w(t)`, with its error budget and rounding), `tangent` (the tangent flow
    `u(t)`), `gd` (gradient descent, with `gd_step`), `limit` (the infinite-width tangent
    flow, set by `ntkflow.run` when the experiment asks for it); `gaps` (`Gaps`: the
    network against its linearisation) and `kernel` (`KernelPath`: `σ(J_{w(t)})` and the
    kernel's drift).

    **Flat names.** Every quantity also reads under its name in the results files
    (`SERIES`): `solution.loss_w` is `solution.gradient.loss`, `solution.step_gap_f` is
    `solution.gaps.step_f`, and so on (`None` when not computed).

    **How it went.** `stats` maps each flow computed (`"tangent"`, `"gradient"`,
    `"error_estimate"`, `"gd"`) to how it was computed (`SolveStats`, `GDStats`);
    `status` is a `FlowStatus` and `message` says how the solve ended, with times and
    the fix; `reached` maps each flow to the time it reached (`t1` unless it stopped
    early): nothing past that time is shown (`verify` calls checks there inconclusive).
    """

    ts: np.ndarray
    t1: float
    alpha: float
    R0: float
    sigma_min0: float
    sigma_max0: float
    dist_u_inf: float
    y_norm: float
    status: FlowStatus
    message: str
    gradient: FlowPath | None = None
    tangent: FlowPath | None = None
    gd: FlowPath | None = None
    limit: FlowPath | None = None
    gaps: Gaps | None = None
    kernel: KernelPath | None = None
    # The loss's name (`Problem.loss_name`): the paths' `loss` are of this loss.
    loss: str = "squared"

    def series(self, name: str) -> Any:
        """The quantity `name` of `SERIES`, read from the typed paths (`None` when not
        computed)."""
        value: Any = self
        for part in SERIES[name].at.split("."):
            value = getattr(value, part)
            if value is None:
                return None
        return value

    def __getattr__(self, name: str) -> Any:
        if name in SERIES:
            return self.series(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def paths(self) -> dict[str, FlowPath]:
        """The flows computed, by name: `"gradient"`, `"tangent"`, `"gd"`."""
        named = (("gradient", self.gradient), ("tangent", self.tangent), ("gd", self.gd))
        return {name: path for name, path in named if path is not None}

    @property
    def stats(self) -> dict[str, SolveStats | GDStats]:
        out: dict[str, SolveStats | GDStats] = {}
        if self.tangent is not None and self.tangent.stats is not None:
            out["tangent"] = self.tangent.stats
        if self.gradient is not None and self.gradient.stats is not None:
            out["gradient"] = self.gradient.stats
            if self.gradient.budget is not None:
                out["error_estimate"] = self.gradient.budget.stats
        if self.gd is not None and self.gd.stats is not None:
            out["gd"] = self.gd.stats
        return out

    @property
    def reached(self) -> dict[str, float]:
        named = (("tangent", self.tangent), ("gradient", self.gradient), ("gd", self.gd))
        return {name: path.reached for name, path in named if path is not None}

    @property
    def diagnostics(self) -> str | None:
        """How `σ(J_{w(t)})` and the kernel drift were computed: `"dense"`, `"lanczos"`
        (Ritz values: `verify` never calls a ball-lemma check held on them), or `None`."""
        return None if self.kernel is None else self.kernel.method

    @property
    def succeeded(self) -> bool:
        return self.status is FlowStatus.SUCCESS

    def time_reached(self, flow: str) -> float:
        """The time up to which `flow` (`"gradient"`, `"tangent"`, `"gd"`) was computed:
        `t1` when it completed, the last good time when it stopped early (step limit,
        non-finite values, divergence)."""
        return float(self.reached.get(flow, self.t1))

    def scalars(self) -> dict[str, Any]:
        """The scalar fields, JSON-ready."""
        return jsonable(
            {
                "t1": self.t1,
                "alpha": self.alpha,
                "R0": self.R0,
                "sigma_min0": self.sigma_min0,
                "sigma_max0": self.sigma_max0,
                "dist_u_inf": self.dist_u_inf,
                "status": self.status.name.lower(),
                "message": self.message,
                "reached": self.reached,
                "diagnostics": self.diagnostics,
                "loss": self.loss,
                "stats": {k: v.as_dict() for k, v in self.stats.items()},
            }
        )

    def to_xarray(self) -> Any:
        """An `xarray.Dataset` with coordinate `t` (the save times) and one variable per
        quantity of `SERIES` computed, under its name and with its dimensions (the
        per-step series have coordinate `step_t`; test predictions `(t, test_point,
        output)`; parameters `param`)."""
        import xarray as xr

        data_vars: dict[str, Any] = {}
        coords: dict[str, Any] = {"t": np.asarray(self.ts)}
        for name, entry in SERIES.items():
            value = self.series(name)
            if value is None:
                continue
            value = np.asarray(value)
            if entry.coordinate is not None:
                coords[entry.coordinate] = value
                continue
            if len(entry.dims) == 3:  # points × outputs (a flat `(saves, n_test)`: one)
                value = value.reshape(value.shape[0], value.shape[1], -1)
            attrs = {"long_name": entry.meaning} if entry.labelled else {}
            data_vars[name] = (entry.dims, value, attrs)
        scalars = self.scalars()
        attrs = {k: v for k, v in scalars.items() if k not in ("stats", "reached")}
        attrs["stats"] = json.dumps(scalars["stats"])
        attrs["reached"] = json.dumps(scalars["reached"])
        attrs["diagnostics"] = str(self.diagnostics or "none")  # (netCDF has no null)
        attrs = {k: (str(v) if isinstance(v, str) else v) for k, v in attrs.items()}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def _overview(self) -> list[tuple[str, Any]]:
        flows = ", ".join(f"{k}: t={v:.4g}" for k, v in self.reached.items())
        grad = self.stats.get("gradient") or {}
        series = [name for name in SERIES if self.series(name) is not None]
        return [
            ("status", self.status),
            ("t1", self.t1),
            ("ts", self.ts),
            ("reached", shown(flows)),
            ("solver", shown(f"{grad.get('solver')}, {grad.get('num_steps')} steps")),
            (
                "series",
                shown(
                    f"{len(series)} arrays over ts or steps: {', '.join(series[:12])}"
                    + (", …" if len(series) > 12 else "")
                ),
            ),
        ]
