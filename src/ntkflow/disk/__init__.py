"""Kernels larger than memory: written in blocks to a zarr store (`_write`), read back
in row blocks (`_store`), and solved against without loading them (`_solve`). The
public names are re-exported by `ntkflow`."""
