"""Multi-device training on `jax.sharding`: a device mesh, sharded batches, placed parameters.

The mesh has two named axes: `"data"` (batches and collocation points are split along their
leading axis over it) and `"model"` (large weights may be split over it). Everything else is
left to XLA's SPMD partitioner: a step compiled with `jax.jit` on sharded inputs runs on all
devices of the mesh, with the gradient all-reduce inserted by the compiler. There is no
`pmap` and no per-device code, so the same `train_step` serves one device and many.

Multi-host: call `jax.distributed.initialize()` in every process first; `make_mesh` then
spans the devices of all processes, and `shard_batch` has each process read only the rows of
a global batch that its own devices hold.
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from .._validate import positive_int

DATA = "data"
MODEL = "model"


def is_writer() -> bool:
    """Whether this process writes run files: always with one process, only process 0 with
    several (they all compute the same replicated results)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process reaches this point (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def make_mesh(
    num_devices: int | None = None,
    *,
    model: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A device mesh with axes `("data", "model")` for `fit(..., mesh=...)` and
    `sciml.pinn.solve(..., mesh=...)`.

    **Arguments:**

    - `num_devices`: how many devices to use (default: all of `devices`).
    - `model`: size of the `"model"` axis; the `"data"` axis gets `num_devices // model`
        devices. With `model > 1`, `shard_params` splits large weights (e.g. FNO spectral
        weights) over it.
    - `devices`: the devices (default `jax.devices()`: every device of every process).

    **Returns:**

    A `jax.sharding.Mesh` of shape `(num_devices // model, model)`.

    **Example:** on a CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=8` before JAX
    starts gives eight devices, and `make_mesh()` a mesh of 8 x 1.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices) if num_devices is None else positive_int("num_devices", num_devices)
    model = positive_int("model", model)
    if n > len(devices):
        raise ValueError(
            f"`num_devices` = {n} exceeds the {len(devices)} available device(s) "
            f"({devices[0].platform}); use at most {len(devices)}."
        )
    if n % model != 0:
        raise ValueError(f"`model` = {model} must divide `num_devices` = {n}.")
    grid = np.asarray(devices[:n], dtype=object).reshape(n // model, model)
    return Mesh(grid, (DATA, MODEL))


def _check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh) or DATA not in mesh.axis_names:
        raise ValueError(
            f"`mesh` must be a `jax.sharding.Mesh` with a '{DATA}' axis (see "
            f"`sciml.train.make_mesh`), got {mesh!r}."
        )
    return mesh


def data_size(mesh: Mesh) -> int:
    """The number of devices along the mesh's `"data"` axis."""
    return int(_check_mesh(mesh).shape[DATA])


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Several processes: each one materialises only the shards of its own devices.
    shape = np.shape(x)
    return jax.make_array_from_callback(shape, sharding, lambda index: np.asarray(x[index]))


def batch_sharding(mesh: Mesh, shape: Sequence[int]) -> NamedSharding:
    """The sharding `shard_batch` gives an array of `shape`: leading axis split over
    `"data"` when divisible by its size, else replicated."""
    if len(shape) > 0 and shape[0] % data_size(mesh) == 0:
        return NamedSharding(mesh, PartitionSpec(DATA))
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Splits every array of `batch` along its leading (sample / point) axis over the
    mesh's `"data"` axis.

    An array whose leading size is not a multiple of the number of data devices (e.g. the
    last, partial batch of an epoch, or a small set of boundary points) is replicated
    instead: still correct, only not split.

    **Arguments:**

    - `batch`: a pytree of host or device arrays, all describing the same global batch.
    - `mesh`: from `make_mesh`.

    **Returns:**

    The same pytree of `jax.Array`s placed on the mesh.
    """
    _check_mesh(mesh)
    return jax.tree.map(lambda x: _put(x, batch_sharding(mesh, np.shape(x))), batch)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every array leaf of `tree` on every device of `mesh` (other leaves are kept)."""
    _check_mesh(mesh)
    full = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: _put(x, full) if eqx.is_array(x) else x, tree)


def param_sharding(mesh: Mesh, shape: Sequence[int], min_size: int = 2**18) -> NamedSharding:
    """The sharding `shard_params` gives an array of `shape`.

    Replicated, unless the mesh has a `"model"` axis of size m > 1 and the array has at
    least `min_size` elements: then its largest axis divisible by m (the later one on ties,
    e.g. the output channels of an FNO spectral weight `(in, out, *modes)`) is split over
    `"model"`.
    """
    m = int(mesh.shape.get(MODEL, 1))
    if m > 1 and int(np.prod(shape, dtype=np.int64)) >= min_size:
        candidates = [(size, axis) for axis, size in enumerate(shape) if size % m == 0]
        if candidates:
            _, axis = max(candidates)
            spec = [None] * len(shape)
            spec[axis] = MODEL
            return NamedSharding(mesh, PartitionSpec(*spec))
    return NamedSharding(mesh, PartitionSpec())


def _on(x: Any, mesh: Mesh) -> bool:
    sharding = getattr(x, "sharding", None)
    return isinstance(sharding, NamedSharding) and sharding.mesh == mesh


def shard_params(tree: PyTree, mesh: Mesh, *, min_size: int = 2**18) -> PyTree:
    """Places a model on `mesh`: replicated, with large weights split over the `"model"`
    axis (see `param_sharding`).

    Arrays already placed on `mesh` keep their sharding, so a model placed by hand (or by an
    earlier call with another `min_size`) passes through `fit` unchanged.

    **Arguments:**

    - `tree`: any pytree; array leaves are placed, other leaves kept.
    - `mesh`: from `make_mesh`.
    - `min_size`: the smallest array (in elements) that is split over `"model"`.

    **Returns:**

    The pytree with its arrays on the mesh.
    """
    _check_mesh(mesh)
    min_size = positive_int("min_size", min_size)

    def place(x):
        if not eqx.is_array(x) or _on(x, mesh):
            return x
        return _put(x, param_sharding(mesh, x.shape, min_size))

    return jax.tree.map(place, tree)


def shard_like(tree: PyTree, like: PyTree) -> PyTree:
    """Places every array of `tree` with the sharding of the matching array of `like` (e.g.
    a restored checkpoint like the state it was restored into)."""

    def place(x, ref):
        if eqx.is_array(x) and isinstance(getattr(ref, "sharding", None), NamedSharding):
            return _put(x, ref.sharding)
        return x

    return jax.tree.map(place, tree, like)
