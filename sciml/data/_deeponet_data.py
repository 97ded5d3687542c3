"""Grid datasets in the layout DeepONet trains on: branch inputs, trunk points, targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ._io import Dataset


class DeepONetData(NamedTuple):
    """A dataset as DeepONet sees it ("aligned" data: every function at the same points).

    **Fields:**

    - `branch`: `(n, num_sensors)`, each input function at the sensors, flattened channels
        first and then in C order over the sensor grid.
    - `trunk`: `(n_points, coord_dim)`, the query points (grid coordinates).
    - `targets`: `(n, n_points, out_channels)`, each output function at the query points.

    A `DeepONet` `net` predicts `jax.vmap(net.evaluate_grid, (0, None))(branch, trunk)`, of the
    shape of `targets`.
    """

    branch: np.ndarray
    trunk: np.ndarray
    targets: np.ndarray


def _grid_kind(x: np.ndarray) -> str | None:
    """`"nodes"` for `linspace(0, 1, s)`, `"periodic"` for `arange(s) / s`, else None."""
    s = x.size
    if s >= 2 and np.allclose(x, np.linspace(0.0, 1.0, s), rtol=0, atol=1e-9):
        return "nodes"
    if np.allclose(x, np.arange(s) / s, rtol=0, atol=1e-9):
        return "periodic"
    return None


def _per_axis(name: str, value, d: int) -> tuple[int, ...]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (int(value),) * d
    if (
        not isinstance(value, Sequence)
        or len(value) != d
        or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in value)
    ):
        raise ValueError(
            f"`to_deeponet` got `{name}={value!r}`, but it must be a positive int or a tuple of "
            f"{d} positive ints (one per spatial axis)."
        )
    return tuple(int(v) for v in value)


def _strides(grid, spatial, sensor_stride, sensors_per_axis) -> tuple[int, ...]:
    d = len(spatial)
    if sensor_stride is not None and sensors_per_axis is not None:
        raise ValueError(
            "`to_deeponet` got both `sensor_stride` and `sensors_per_axis`; give at most one."
        )
    if sensors_per_axis is None:
        strides = _per_axis("sensor_stride", 1 if sensor_stride is None else sensor_stride, d)
        for axis, (r, s) in enumerate(zip(strides, spatial, strict=True)):
            if r > s:
                raise ValueError(
                    f"`to_deeponet` got `sensor_stride={sensor_stride!r}`, but axis {axis} has "
                    f"only {s} points: the stride must be between 1 and {s}."
                )
        return strides
    counts = _per_axis("sensors_per_axis", sensors_per_axis, d)
    strides = []
    for axis, (x, m, s) in enumerate(zip(grid, counts, spatial, strict=True)):
        kind = _grid_kind(x)
        if kind == "nodes" and m >= 2 and (s - 1) % (m - 1) == 0:
            strides.append((s - 1) // (m - 1))
        elif kind == "periodic" and s % m == 0:
            strides.append(s // m)
        else:
            rule = {
                "nodes": f"m >= 2 with {s} - 1 a multiple of m - 1",
                "periodic": f"m dividing {s}",
                None: "a unit-domain grid, nodes linspace(0, 1, s) or periodic arange(s) / s; "
                "use `sensor_stride` for other grids",
            }[kind]
            raise ValueError(
                f"`to_deeponet` got `sensors_per_axis={sensors_per_axis!r}`, but along axis "
                f"{axis} ({s} points, {kind or 'unrecognised'} grid) uniform sensors that are "
                f"grid points need {rule}."
            )
    return tuple(strides)


def _query_index(queries, spatial) -> np.ndarray | None:
    if isinstance(queries, str):
        if queries != "grid":
            raise ValueError(
                f"`to_deeponet` got `queries={queries!r}`, but it must be 'grid' or an array of "
                "grid-point indices."
            )
        return None
    index = np.asarray(queries)
    n_points = math.prod(spatial)
    if not np.issubdtype(index.dtype, np.integer) or index.ndim not in (1, 2):
        raise ValueError(
            f"`to_deeponet` got `queries` of shape {index.shape} and dtype {index.dtype}, but "
            f"it must be 'grid', integer flat indices (k,) in [0, {n_points}), or integer "
            f"multi-indices (k, {len(spatial)})."
        )
    if index.ndim == 2:
        if index.shape[1] != len(spatial) or np.any(index < 0) or np.any(index >= spatial):
            raise ValueError(
                f"`to_deeponet` got multi-index `queries` of shape {index.shape}, but they must "
                f"have {len(spatial)} columns with entries in [0, {spatial})."
            )
        return np.ravel_multi_index(tuple(index.T), spatial)
    if np.any(index < 0) or np.any(index >= n_points):
        raise ValueError(
            f"`to_deeponet` got flat `queries` outside [0, {n_points}), the grid's {n_points} "
            "points."
        )
    return index


def to_deeponet(
    data: Dataset | tuple[Any, Any, Sequence[Any]],
    *,
    sensor_stride: int | Sequence[int] | None = None,
    sensors_per_axis: int | Sequence[int] | None = None,
    queries: str | np.ndarray = "grid",
) -> DeepONetData:
    """Converts a grid dataset (1-D, 2-D, ...) to the arrays a DeepONet trains on.

    The branch input of a sample is its input function at the sensors, every `r_i`-th grid
    point along axis `i` starting from the first, all channels, flattened channels first and
    then in C order. The query points are grid points with their coordinates from the dataset's
    grid; the targets are the output functions there, channels last. This is the layout of
    [`sciml.operators.GridDeepONet`][] with the same sensors, so a `DeepONet` trained on these
    arrays can be wrapped by it to act on grid functions.

    **Arguments:**

    - `data`: a [`Dataset`][] (`inputs (n, c_in, *spatial)`, `outputs (n, c_out, *spatial)`,
        `grid` with one coordinate vector per axis), or a tuple `(inputs, outputs, grid)` of
        the same.
    - `sensor_stride`: the stride `r` between sensors, an int or one per axis (default 1: every
        grid point is a sensor).
    - `sensors_per_axis`: instead of `sensor_stride`, the number of uniformly spaced sensors
        per axis, on a grid of the unit domain: on nodes `linspace(0, 1, s)` (`s - 1` must be a
        multiple of `m - 1`) or periodic points `arange(s) / s` (`m` must divide `s`), as for
        `GridDeepONet`.
    - `queries`: `"grid"` for all grid points (C order), or integer indices of some of them:
        flat indices `(k,)` or multi-indices `(k, d)`.

    **Returns:**

    A [`DeepONetData`][] with `branch (n, c_in * prod(sensors))`, `trunk (k, d)` and
    `targets (n, k, c_out)` (`k = prod(spatial)` for `"grid"`), in the dtype of the data (the
    coordinates as float32 if the data are float32, else float64).
    """
    if isinstance(data, Dataset):
        inputs, outputs, grid = data.inputs, data.outputs, data.grid
    elif isinstance(data, tuple | list) and len(data) == 3:
        inputs, outputs, grid = data
    else:
        raise ValueError(
            f"`to_deeponet` got `data` of type {type(data).__name__}, but it must be a "
            "`Dataset` or a tuple (inputs, outputs, grid)."
        )
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    if isinstance(grid, np.ndarray) and grid.ndim == 1:
        grid = (grid,)
    grid = tuple(np.asarray(x, dtype=np.float64) for x in grid)
    d = len(grid)
    spatial = tuple(x.size for x in grid)
    if (
        d == 0
        or any(x.ndim != 1 for x in grid)
        or inputs.ndim != d + 2
        or outputs.ndim != d + 2
        or inputs.shape[2:] != spatial
        or outputs.shape[2:] != spatial
        or inputs.shape[0] != outputs.shape[0]
    ):
        raise ValueError(
            "`to_deeponet` needs `inputs (n, c_in, *spatial)`, `outputs (n, c_out, *spatial)` "
            "and `grid` with one coordinate vector per spatial axis, of matching sizes; got "
            f"inputs {inputs.shape}, outputs {outputs.shape} and grid sizes {spatial}."
        )
    strides = _strides(grid, spatial, sensor_stride, sensors_per_axis)
    n = inputs.shape[0]
    branch = inputs[(slice(None), slice(None), *(slice(None, None, r) for r in strides))]
    branch = branch.reshape(n, -1)

    index = _query_index(queries, spatial)
    coord_dtype = np.float32 if outputs.dtype == np.float32 else np.float64
    trunk = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, d)
    targets = np.moveaxis(outputs, 1, -1).reshape(n, -1, outputs.shape[1])
    if index is not None:
        trunk, targets = trunk[index], targets[:, index]
    return DeepONetData(branch, trunk.astype(coord_dtype), targets)
