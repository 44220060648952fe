"""Sweeps over α, width and seeds: the grid (`_grid`), its points (`_points`), the
executors that run them (`_executors`), the file and Python sweeps (`_sweep`,
`_python_sweep`), the sweep's dataset (`_sweep_dataset`) and the scaling-law fits
(`_scaling`, `_scaling_laws`). The public names are re-exported by `ntkflow`."""
