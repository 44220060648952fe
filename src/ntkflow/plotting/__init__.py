"""Figures of a run, drawn from its saved results (the trajectories `Dataset` and the
summary), the theory beside the measurement. matplotlib is imported lazily and only its
object-oriented API is used, so no global backend is touched.

Every function of a run's figures takes `(dataset, summary)` as `load_results` returns
them and gives a `matplotlib.figure.Figure`; `FIGURES` lists them in report order with
their captions.

Every figure draws for any results — all-NaN series, one save, a truncated solve, no
tangent flow, no diagnostics, no test split: what has no finite value is left out (and out
of the legend), and axes with nothing to show say "no data" and why. An axis is
logarithmic only when what it shows spans at least `_DECADES` decades (power laws, whose
slope is the point, always are), so that a narrow range never sits on a log axis with
unreadable tick labels.

Re-exports only: one run's figures are in `_run`, a sweep's in `_sweep`, what they share
(reading the results, `_Panel`) in `_common`.
"""

from ._common import stopped_at as stopped_at
from ._run import (
    FIGURES as FIGURES,
    captions as captions,
    make_figures as make_figures,
    plot_distances as plot_distances,
    plot_gaps as plot_gaps,
    plot_kernel_drift as plot_kernel_drift,
    plot_losses as plot_losses,
    plot_singular_values as plot_singular_values,
    plot_spectrum as plot_spectrum,
    plot_test_loss as plot_test_loss,
    save_figures as save_figures,
)
from ._sweep import (
    plot_critical_alpha as plot_critical_alpha,
    plot_lazy_active as plot_lazy_active,
    plot_scaling as plot_scaling,
    save_sweep_figures as save_sweep_figures,
)
