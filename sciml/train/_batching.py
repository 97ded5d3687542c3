"""Mini-batch iteration over host arrays (NumPy arrays or h5py datasets)."""

import collections
import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, PRNGKeyArray

from ._sharding import batch_sharding


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches `batches` yields for `n` samples.

    **Arguments:**

    - `n`: number of samples.
    - `batch_size`: samples per batch, at least 1.
    - `drop_last`: whether a last partial batch is dropped.

    **Returns:**

    `n // batch_size` if `drop_last` else `ceil(n / batch_size)`.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}.")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def check_arrays(arrays: Any, name: str = "arrays") -> tuple[Any, ...]:
    if not isinstance(arrays, tuple | list) or len(arrays) == 0:
        raise ValueError(
            f"`{name}` must be a non-empty tuple of arrays with a leading sample axis, got "
            f"{type(arrays).__name__}."
        )
    lengths = []
    for i, a in enumerate(arrays):
        shape = getattr(a, "shape", None)
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"`{name}[{i}]` must be an array with a leading sample axis, got "
                f"{type(a).__name__} with shape {shape}."
            )
        lengths.append(int(shape[0]))
    if len(set(lengths)) != 1:
        raise ValueError(
            f"`{name}` must all have the same number of samples (leading axis), got {lengths}."
        )
    return tuple(arrays)


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}.")
    return int(batch_size)


def batch_indices(
    n: int, batch_size: int, key: PRNGKeyArray | None, drop_last: bool
) -> list[np.ndarray | slice]:
    """The index set of every batch: contiguous slices, or sorted index arrays if shuffled."""
    stops = range(batch_size, n + batch_size, batch_size)
    chunks: list[np.ndarray | slice] = []
    if key is None:
        for start, stop in zip(range(0, n, batch_size), stops, strict=False):
            chunks.append(slice(start, min(stop, n)))
    else:
        perm = np.asarray(jax.random.permutation(key, n))
        for start in range(0, n, batch_size):
            # h5py fancy indexing needs strictly increasing indices; sorting within a batch
            # changes only the order of samples inside the batch, not the batch's content.
            chunks.append(np.sort(perm[start : start + batch_size]))
    if drop_last and chunks and _chunk_len(chunks[-1]) < batch_size:
        chunks.pop()
    return chunks


def _chunk_len(chunk: np.ndarray | slice) -> int:
    if isinstance(chunk, slice):
        return chunk.stop - chunk.start
    return len(chunk)


def _take(array: Any, chunk: np.ndarray | slice, mesh: Mesh | None = None) -> Array:
    if mesh is None:
        if isinstance(array, jax.Array):
            return array[chunk]
        return jax.device_put(np.asarray(array[chunk]))
    shape = (_chunk_len(chunk), *array.shape[1:])
    sharding = batch_sharding(mesh, shape)
    if jax.process_count() == 1:
        rows = array[chunk] if isinstance(array, jax.Array) else np.asarray(array[chunk])
        return jax.device_put(rows, sharding)
    # Several processes: each reads only the rows its own devices hold.
    rows = np.arange(chunk.start, chunk.stop) if isinstance(chunk, slice) else chunk

    def read(index: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(array[rows[index[0]]])[(slice(None), *index[1:])]

    return jax.make_array_from_callback(shape, sharding, read)


def iterate(
    arrays: Sequence[Any],
    chunks: Sequence[np.ndarray | slice],
    prefetch: int,
    mesh: Mesh | None = None,
) -> Iterator[tuple[Array, ...]]:
    # `jax.device_put` is asynchronous, so keeping a look-ahead of up to `prefetch` batches
    # overlaps the host->device copy of the next batch with the computation on the current
    # one, while never holding more than `prefetch` batches on the device ourselves.
    queue: collections.deque[tuple[Array, ...]] = collections.deque()
    for chunk in chunks:
        queue.append(tuple(_take(a, chunk, mesh) for a in arrays))
        if len(queue) >= prefetch:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def batches(
    arrays: Sequence[Any],
    batch_size: int,
    *,
    key: PRNGKeyArray | None = None,
    drop_last: bool = False,
    prefetch: int = 2,
    mesh: Mesh | None = None,
) -> Iterator[tuple[Array, ...]]:
    """Iterates over mini-batches of host arrays, one epoch.

    **Arguments:**

    - `arrays`: tuple of arrays sharing a leading sample axis: NumPy arrays, JAX arrays or
        h5py datasets (read batch by batch, never loaded whole).
    - `batch_size`: samples per batch.
    - `key`: if given, the samples are shuffled with `jax.random.permutation(key, n)`
        (deterministic per key); otherwise batches are contiguous ranges in order. Within a
        shuffled batch the samples are in increasing index order (h5py needs this).
    - `drop_last`: drop the last batch if it has fewer than `batch_size` samples.
    - `prefetch`: maximum number of batches this iterator holds on the device (the one just
        yielded included); the next batches are transferred while the current one is used.
    - `mesh`: a device mesh (`make_mesh`): each batch is split along its leading axis over
        the mesh's `"data"` axis (replicated when that axis does not divide it), see
        `shard_batch`. With several processes each one reads only its devices' rows.

    **Returns:**

    An iterator over tuples of JAX arrays, one per entry of `arrays`, each with leading
    axis `batch_size` (the last one possibly smaller unless `drop_last`). There are
    `num_batches(n, batch_size, drop_last)` of them.
    """
    arrays = check_arrays(arrays)
    batch_size = check_batch_size(batch_size)
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ValueError(f"`prefetch` must be a positive integer, got {prefetch!r}.")
    n = int(arrays[0].shape[0])
    return iterate(arrays, batch_indices(n, batch_size, key, drop_last), prefetch, mesh)
