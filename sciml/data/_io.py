"""The on-disk dataset format: one HDF5 file per dataset, written atomically and checksummed.

Layout of a file written by [`write_dataset`][]:

| object            | what it holds                                                        |
| ----------------- | -------------------------------------------------------------------- |
| `/inputs`         | float32 `(n, in_channels, *spatial)`: the input functions           |
| `/outputs`        | float32 `(n, out_channels, *spatial)`: the solutions                |
| `/grid/x0`, ...   | float64 coordinates of the sample grid along each spatial axis      |
| attribute `format`          | `"sciml-dataset"`                                         |
| attribute `format_version`  | `1`                                                       |
| attribute `recipe`          | JSON: how the data were made (equation, parameters, solver) |
| attribute `seed`            | integer PRNG seed the data were generated from            |
| attribute `sciml_version`   | package version that wrote the file                       |
| attribute `sha256`          | checksum of the array contents (see [`dataset_checksum`][]) |
| attribute `description`     | one line of prose                                          |

No timestamps are stored, so the same recipe and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._atomic import atomic_path
from .._progress import progress_bar

FORMAT_NAME = "sciml-dataset"
FORMAT_VERSION = 1
_ARRAYS = ("inputs", "outputs")


class DatasetError(ValueError):
    """A dataset file is missing, malformed or fails its checksum."""


@dataclass(frozen=True)
class Dataset:
    """An operator-learning dataset held in host memory.

    **Fields:**

    - `inputs`: `(n, in_channels, *spatial)` array.
    - `outputs`: `(n, out_channels, *spatial)` array.
    - `grid`: one coordinate vector per spatial axis.
    - `attrs`: the file's metadata (`recipe` is decoded from JSON).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    grid: tuple[np.ndarray, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def split(self, n_first: int) -> tuple[Dataset, Dataset]:
        """Splits into the first `n_first` samples and the rest (same grid and attrs)."""
        if not 0 < n_first < len(self):
            raise DatasetError(
                f"cannot split a dataset of {len(self)} samples at {n_first}; "
                f"allowed: 0 < n_first < {len(self)}"
            )
        head = Dataset(self.inputs[:n_first], self.outputs[:n_first], self.grid, self.attrs)
        tail = Dataset(self.inputs[n_first:], self.outputs[n_first:], self.grid, self.attrs)
        return head, tail


class _Hasher:
    """sha256 over each named array's bytes in write order, combined in a fixed order."""

    def __init__(self, names: Iterable[str]):
        self._h = {name: hashlib.sha256() for name in names}

    def update(self, name: str, array: np.ndarray) -> None:
        self._h[name].update(np.ascontiguousarray(array).tobytes())

    def hexdigest(self) -> str:
        combined = hashlib.sha256()
        for name in sorted(self._h):
            combined.update(name.encode())
            combined.update(self._h[name].digest())
        return combined.hexdigest()


def write_dataset(
    path: str | os.PathLike,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    n: int,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    grid: tuple[np.ndarray, ...],
    recipe: dict[str, Any],
    seed: int,
    description: str = "",
    progress: bool = False,
) -> str:
    """Streams `(inputs, outputs)` chunks into a new dataset file, atomically.

    Only one chunk is in memory at a time. The file appears at `path` only once it is complete;
    if generation fails or is interrupted, an existing file at `path` is untouched.

    **Arguments:**

    - `path`: destination `.h5` file.
    - `chunks`: iterable of `(inputs, outputs)` arrays with a leading sample axis.
    - `n`: total number of samples the chunks add up to.
    - `input_shape`, `output_shape`: per-sample shapes, channels first.
    - `grid`: coordinate vector per spatial axis.
    - `recipe`: JSON-serialisable description of how the data were made.
    - `seed`: the PRNG seed.
    - `description`: one line of prose stored with the data.
    - `progress`: show a progress bar over samples.

    **Returns:**

    The sha256 checksum stored in the file.
    """
    from importlib.metadata import version

    hasher = _Hasher((*_ARRAYS, "grid"))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver="earliest") as f:
            # Chunked layout along the sample axis, so later readers can stream batches.
            dsets = {
                "inputs": f.create_dataset(
                    "inputs",
                    shape=(n, *input_shape),
                    dtype=np.float32,
                    chunks=(1, *input_shape),
                    track_times=False,
                ),
                "outputs": f.create_dataset(
                    "outputs",
                    shape=(n, *output_shape),
                    dtype=np.float32,
                    chunks=(1, *output_shape),
                    track_times=False,
                ),
            }
            start = 0
            with progress_bar(total=n, desc="samples", unit="sample", disable=not progress) as bar:
                for x, y in chunks:
                    x = np.asarray(x, np.float32)
                    y = np.asarray(y, np.float32)
                    stop = start + x.shape[0]
                    if stop > n or x.shape[1:] != input_shape or y.shape[1:] != output_shape:
                        raise DatasetError(
                            f"chunk of inputs {x.shape} / outputs {y.shape} does not fit a "
                            f"dataset of {n} samples of {input_shape} -> {output_shape}"
                        )
                    dsets["inputs"][start:stop] = x
                    dsets["outputs"][start:stop] = y
                    hasher.update("inputs", x)
                    hasher.update("outputs", y)
                    start = stop
                    bar.update(x.shape[0])
            if start != n:
                raise DatasetError(f"generator produced {start} samples, expected n={n}")
            g = f.create_group("grid", track_order=True)
            for i, coords in enumerate(grid):
                coords = np.asarray(coords, np.float64)
                g.create_dataset(f"x{i}", data=coords, track_times=False)
                hasher.update("grid", coords)
            checksum = hasher.hexdigest()
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["recipe"] = json.dumps(recipe, sort_keys=True)
            f.attrs["seed"] = int(seed)
            f.attrs["sciml_version"] = version("sciml")
            f.attrs["sha256"] = checksum
            f.attrs["description"] = description
    return checksum


def _read_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    if attrs.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a sciml dataset (attribute 'format' is missing or wrong)")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {attrs.get('format_version')!r} is not supported; "
            f"allowed: {FORMAT_VERSION}"
        )
    try:
        attrs["recipe"] = json.loads(attrs.get("recipe", "{}"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: attribute 'recipe' is not valid JSON ({e})") from None
    return attrs


def load_dataset(path: str | os.PathLike, *, verify: bool = True) -> Dataset:
    """Reads a dataset written by [`write_dataset`][] into host memory.

    **Arguments:**

    - `path`: the `.h5` file.
    - `verify`: recompute the checksum and compare it with the stored one.

    **Returns:**

    A [`Dataset`][].

    **Raises:**

    `DatasetError` (a `ValueError`) with one line naming the file and what is wrong: missing
    file, not HDF5, truncated, missing arrays, inconsistent shapes, checksum mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = _read_attrs(f, path)
            missing = [k for k in (*_ARRAYS, "grid") if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing {', '.join(missing)}")
            inputs = f["inputs"][...]
            outputs = f["outputs"][...]
            grid = tuple(f["grid"][f"x{i}"][...] for i in range(len(f["grid"])))
    except DatasetError:
        raise
    except (OSError, KeyError) as e:
        raise DatasetError(f"{path}: unreadable or truncated HDF5 file ({e})") from None
    spatial = tuple(len(c) for c in grid)
    if (
        inputs.shape[0] != outputs.shape[0]
        or inputs.shape[2:] != spatial
        or outputs.shape[2:] != spatial
    ):
        raise DatasetError(
            f"{path}: inconsistent shapes inputs {inputs.shape}, outputs {outputs.shape}, "
            f"grid {spatial}"
        )
    if verify:
        hasher = _Hasher((*_ARRAYS, "grid"))
        hasher.update("inputs", inputs)
        hasher.update("outputs", outputs)
        for coords in grid:
            hasher.update("grid", coords)
        if hasher.hexdigest() != attrs.get("sha256"):
            raise DatasetError(f"{path}: checksum mismatch; the file is corrupted")
    return Dataset(inputs, outputs, grid, attrs)
