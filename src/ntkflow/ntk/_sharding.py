"""The data axis split over devices: a `jax.sharding.Mesh` with one axis, `"data"`.

- `data_mesh(devices)`: the mesh of a `devices=` argument (a count, a list of devices, or
  a mesh of one's own).
- `sharded_ntk`: `K` in row blocks, one per device, by a ring (docs/scale.md): each device
  forms the per-point factors of its own points (a Jacobian's rows, or the structured
  kernel's layer inputs and cotangents), and the factors travel once around the devices
  (`ppermute`), so that device `d` computes `K[R_d, R_e]` for every `e` while holding
  only its own and one visiting block. Any `n`: the last block is padded with copies of
  a point, whose rows and columns are dropped.
- `shard_problem`: a `Problem` whose training points (inputs, targets, offsets and
  outputs at `w0`) are split over the mesh. Every jitted computation on it — the flows'
  vector fields, the `β` estimates — is then partitioned by XLA: each device runs the
  forward and backward passes of its points, and the reductions over points (`Jᵀ∇ℓ`)
  become sums across devices. Needs `n` divisible by the device count (a `jax.Array`
  splits evenly).

The same code runs on one CPU, forced host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`), a multi-GPU node, or a multi-host
job after `jax.distributed.initialize()` (`jax.devices()` then lists every host's).
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, Float, PyTree

from .._problem import Problem
from ._jacobian import AbstractNTKMethod

AXIS = "data"


def data_mesh(devices: Any) -> Mesh:
    """The mesh of a `devices=` argument: an integer (the first that many of
    `jax.devices()`), a sequence of `jax.Device`, or a `Mesh` with a `"data"` axis.

    **Raises:** `ValueError` naming the argument and the fix.
    """
    if isinstance(devices, Mesh):
        if devices.axis_names != (AXIS,):
            raise ValueError(
                f"devices must be a Mesh with the one axis {AXIS!r}, got axes "
                f"{devices.axis_names}; build it as Mesh(np.array(devices), ({AXIS!r},))"
            )
        return devices
    available = jax.devices()
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices} but this process sees {len(available)} "
                f"device(s) ({available[0].platform}); use 1…{len(available)}, or on a CPU "
                "force more host devices with the XLA flag "
                "xla_force_host_platform_device_count=N"
            )
        chosen = available[: int(devices)]
    elif (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        chosen = list(devices)
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices lists a device twice: {chosen}; give each once")
    else:
        raise ValueError(
            f"devices must be a number of devices, a list of jax.Device or a Mesh with a "
            f"{AXIS!r} axis, got devices={devices!r}"
        )
    return Mesh(np.array(chosen), (AXIS,))


def _pad_points(X: Array, rows: int) -> Array:
    """`X` with copies of its first point appended up to `rows` points."""
    extra = rows - X.shape[0]
    if extra == 0:
        return X
    return jnp.concatenate([X, jnp.broadcast_to(X[:1], (extra, *X.shape[1:]))])


def ring_kernel(
    features: Callable[[Array], PyTree],
    block: Callable[[PyTree, PyTree], Array],
    X: Float[Array, " n *d"],
    mesh: Mesh,
    *,
    k: int = 1,
) -> Float[Array, "nk nk"]:
    """`K = [block(φ(X_a), φ(X_b))]_{a,b}` over the mesh's `D` devices, `K` split by rows.

    Device `d` forms `φ` of its `m = ⌈n/D⌉` points once; at step `s` it holds the
    factors of device `d + s (mod D)`, computes that `(m·k, m·k)` block of its rows, and
    passes them on (`ppermute`). Each device thus keeps two blocks of factors and its
    `m·k × n·k` rows of `K`; the factors cross each link `D − 1` times.
    """
    D = mesh.shape[AXIS]
    n = X.shape[0]
    m = math.ceil(n / D)
    Xp = jax.device_put(_pad_points(jnp.asarray(X), m * D), NamedSharding(mesh, P(AXIS)))
    shift = [(j, (j - 1) % D) for j in range(D)]  # device j sends to j − 1

    def local(x: Array) -> Array:
        mine = features(x)
        me = jax.lax.axis_index(AXIS)
        out = jnp.zeros((m * k, D * m * k), x.dtype)
        visiting = mine
        for step in range(D):
            part = block(mine, visiting)
            col = (((me + step) % D) * (m * k)).astype(jnp.int32)
            out = jax.lax.dynamic_update_slice(out, part, (jnp.int32(0), col))
            if step < D - 1:
                visiting = jax.tree_util.tree_map(
                    lambda a: jax.lax.ppermute(a, AXIS, shift), visiting
                )
        return out

    # Without the varying-axes check: the factors' code (`_factors_impl`, `jacobian_rows`)
    # is single-device code whose constants (cotangent seeds) are not marked as varying.
    ring = jax.shard_map(local, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS), check_vma=False)
    K = jax.jit(ring)(Xp)
    if m * D != n:
        K = K[: n * k, : n * k]
    return K


def sharded_ntk(
    problem: Problem, w: Float[Array, " p"], method: AbstractNTKMethod, mesh: Mesh
) -> Float[Array, "nk nk"]:
    """`K_w` by `ring_kernel`, split by rows over `mesh`, of the per-point factors
    `method` gives (`AbstractNTKMethod.ring_parts`: the structured kernel's layer
    factors, or a Jacobian's rows). Exactly symmetric."""
    k = problem.data.k
    features, block = method.ring_parts(problem, w)
    K = ring_kernel(features, block, problem.data.X, mesh, k=k)
    rows = K.shape[0] % mesh.shape[AXIS] == 0
    keep = NamedSharding(mesh, P(AXIS)) if rows else None
    return jax.jit(_symmetrize, out_shardings=keep)(K)


def _symmetrize(K: Array) -> Array:
    """`(K + Kᵀ)/2`: the ring computes `K[a, b]` and `K[b, a]` on different devices,
    whose GEMMs round differently."""
    return 0.5 * (K + K.T)


def shard_problem(problem: Problem, mesh: Mesh) -> Problem:
    """`problem` with its training points split over `mesh` (inputs, targets and the
    network's offsets and outputs at `w0`); parameters and test points are replicated.

    **Raises:** `ValueError` when the device count does not divide `n`.
    """
    D = mesh.shape[AXIS]
    n = problem.data.n
    if n % D:
        divisors = [d for d in range(1, min(n, len(jax.devices())) + 1) if n % d == 0]
        raise ValueError(
            f"devices: the n={n} training points do not split evenly over {D} devices; use "
            f"a device count that divides n ({', '.join(map(str, divisors))}), or drop "
            f"{n % D} point(s)"
        )
    rows = NamedSharding(mesh, P(AXIS))
    every = NamedSharding(mesh, P())
    replicated = jax.tree_util.tree_map(
        lambda x: jax.device_put(x, every) if eqx.is_array(x) else x, problem
    )
    return eqx.tree_at(
        lambda q: (q.data.X, q.data.y, q.offset, q.f0, q.y),
        replicated,
        (
            jax.device_put(problem.data.X, rows),
            jax.device_put(problem.data.y, rows),
            jax.device_put(problem.offset, rows),  # (n·k,), point-major: D | n·k
            jax.device_put(problem.f0, rows),
            jax.device_put(problem.y, rows),
        ),
    )


def split_problem(problem: Problem, devices: Any, *, strict: bool) -> tuple[Problem, Mesh | None]:
    """`problem` for a `devices=` argument (`None`: as it is, no mesh): its points split
    over the mesh when the device count divides `n`; otherwise an error if `strict`
    (the flows), else the problem as it is (the certificate's estimates)."""
    if devices is None:
        return problem, None
    mesh = data_mesh(devices)
    if strict or problem.n % mesh.size == 0:
        problem = shard_problem(problem, mesh)
    return problem, mesh
