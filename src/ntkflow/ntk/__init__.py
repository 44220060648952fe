"""The empirical neural tangent kernel: the Jacobian and its kernel-method registry
(`_jacobian`, `_kernel`), the structured MLP kernel (`_structured`), the kernel function of
two input sets (`_ntk_fn`), kernel-vector products (`_ntkvp`), the initial kernel with its
spectrum (`_initial_kernel`) and the kernel sharded over devices (`_sharding`). The public
names are re-exported by `ntkflow`."""
