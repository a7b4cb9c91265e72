"""Rows of the audit's work split over every device JAX sees.

Everything expensive in the audit is a computation over rows: SVGD particles (the rows of the
``N x N`` kernel matrix), KSD row blocks, basin ascents, importance draws. Each is written for
the rows one device holds and run with :func:`jax.shard_map` over a one-axis mesh
(:data:`ROWS`) of ``jax.devices()``: a device takes a contiguous share of the rows and reads the
replicated rest (all particles, all draws). With one device the mesh has one member and the
code path is the same, so a laptop and a multi-GPU node run the same program; results agree
up to the order of floating-point sums.

Rows are split evenly, so a mesh uses the largest number of devices that divides the rows: the
fixed chunks (256 ascents, 32 Hessians, 2048 log densities) use all of 1, 2, 4 or 8 devices,
but only 2 of 3 or 6 and 4 of 12; the KSD pads its rows to use them all.

Fake several CPU devices to try it: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(set before JAX starts; the fake devices share the machine's cores).

Several processes (several machines of a cluster) are JAX's multi-controller runtime: every
process runs the same program on the same inputs after ``jax.distributed.initialize(...)``,
and ``jax.devices()``, hence the mesh, then lists every process's devices. Inputs are the same
NumPy arrays on every process (replicated), the rows are split over all the devices as
above, and what leaves a compiled call is gathered onto every device, so that each process
can read the whole result (a process cannot read rows held by another process's devices):
:func:`map_rows` all-gathers its output and :func:`place_on_rows` keeps SVGD's state whole
between its compiled chunks. With one process neither gathers anything.
"""

from __future__ import annotations

from functools import cache

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["ROWS", "row_mesh", "map_rows", "shard_rows", "place_on_rows"]

ROWS = "rows"


@cache
def _mesh(size: int) -> Mesh:
    # Auto axes: shard_map and sharding constraints move their inputs to the mesh as needed
    return Mesh(np.array(jax.devices()[:size]), (ROWS,), axis_types=(AxisType.Auto,))


def row_mesh(num_rows: int | None = None) -> Mesh:
    """A one-axis mesh over the first ``k`` devices, ``k`` the largest device count that divides
    ``num_rows`` (all devices when ``num_rows`` is None), so that every device gets equal rows."""
    count = jax.device_count()
    if num_rows is not None:
        count = max(k for k in range(1, count + 1) if num_rows % k == 0)
    return _mesh(count)


def map_rows(fn, num_rows: int):
    """``fn`` run on each device's share of the leading axis of every argument (``num_rows`` rows
    in all), its outputs joined along the leading axis again. ``fn`` sees a device's rows only:
    anything it needs in full (all particles, all draws) it reads from its closure.

    ``fn`` uses no collectives (each device's rows are independent), so shard_map's check of
    which values vary across devices is off: library code inside ``fn`` (optax's line search)
    mixes varying and replicated branches in ``lax.cond``, which that check rejects.

    With several processes the joined outputs are gathered onto every device, so that each
    process can read them."""
    mesh = row_mesh(num_rows)
    split = jax.shard_map(fn, mesh=mesh, in_specs=PartitionSpec(ROWS), out_specs=PartitionSpec(ROWS), check_vma=False)
    if jax.process_count() == 1:
        return split
    return lambda *args: jax.lax.with_sharding_constraint(split(*args), NamedSharding(mesh, PartitionSpec()))


def shard_rows(x):
    """Inside jit: ``x (n, ...)`` laid out by rows over the devices, so that what is computed from
    it row by row (a vmapped score) is computed where the rows are."""
    return jax.lax.with_sharding_constraint(x, NamedSharding(row_mesh(x.shape[0]), PartitionSpec(ROWS)))


def place_on_rows(tree, num_rows: int):
    """Every array of ``tree`` moved onto the row mesh: those with ``num_rows`` leading rows split
    by rows, the others (scalars, lengthscales) copied to every device. That is how a jitted loop
    over row-split state returns it, so its first call and the later ones compile once.

    With several processes every array is copied to every device instead (each process can then
    read the state), and a loop's state is put back that way after each call."""
    mesh = row_mesh(num_rows)

    def place(leaf):
        rows = jax.process_count() == 1 and np.ndim(leaf) > 0 and np.shape(leaf)[0] == num_rows
        return jax.device_put(leaf, NamedSharding(mesh, PartitionSpec(ROWS) if rows else PartitionSpec()))

    return jax.tree.map(place, tree)
