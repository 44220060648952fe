"""The infinite-width limit: the MLP's NNGP and NTK (`_infinite`) from the activation's
dual (`_dual`, `_dual_quadrature`), the tangent flow of the limit kernel
(`_infinite_flow`) and a run's distances to the limit (`_limit_summary`). The public
names are re-exported by `ntkflow`."""
