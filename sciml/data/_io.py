"""The on-disk dataset format: one HDF5 file per dataset, written atomically and checksummed.

Layout of a file written by [`write_dataset`][]:

| object            | what it holds                                                        |
| ----------------- | -------------------------------------------------------------------- |
| `/inputs`         | float32 `(n, in_channels, *spatial)`: the input functions           |
| `/outputs`        | float32 `(n, out_channels, *spatial)`: the solutions                |
| `/grid/x0`, ...   | float64 coordinates of the sample grid along each spatial axis      |
| attribute `format`          | `"sciml-dataset"`                                         |
| attribute `format_version`  | `2` (version 1: checksum over the arrays only; still read) |
| attribute `recipe`          | JSON: how the data were made (equation, parameters, solver) |
| attribute `seed`            | integer PRNG seed the data were generated from            |
| attribute `sciml_version`   | package version that wrote the file                       |
| attribute `sha256`          | checksum of the array values and the other attributes      |
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
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1: the checksum covers the arrays only
_ARRAYS = ("inputs", "outputs")
_STRING_ATTRS = ("format", "recipe", "sciml_version", "sha256", "description")
_INTEGER_ATTRS = ("format_version", "seed")


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
        # Little-endian bytes whatever byte order the file declares: the checksum covers the
        # values, so a damaged byte-order flag in a file's header is caught too.
        array = np.asarray(array)
        self._h[name].update(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())

    def hexdigest(self) -> str:
        combined = hashlib.sha256()
        for name in sorted(self._h):
            combined.update(name.encode())
            combined.update(self._h[name].digest())
        return combined.hexdigest()


def _metadata(attrs: dict[str, Any]) -> np.ndarray:
    """The attributes a version-2 checksum covers (all but `sha256`), as canonical bytes."""
    meta = {k: attrs[k] for k in (*_STRING_ATTRS, *_INTEGER_ATTRS) if k != "sha256"}
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)


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

    hasher = _Hasher((*_ARRAYS, "grid", "attrs"))
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
            attrs = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "recipe": json.dumps(recipe, sort_keys=True),
                "seed": int(seed),
                "sciml_version": version("sciml"),
                "description": description,
            }
            hasher.update("attrs", _metadata(attrs))
            checksum = attrs["sha256"] = hasher.hexdigest()
            for name in ("format", "format_version", "recipe", "seed", "sciml_version", "sha256"):
                _write_attr(f, name, attrs[name])
            _write_attr(f, "description", description)
    return checksum


def _write_attr(f: h5py.File, name: str, value: str | int) -> None:
    if isinstance(value, int):
        f.attrs[name] = value
        return
    # Fixed-length strings live in the object header; variable-length ones in a global heap,
    # and reading a damaged heap can hang the HDF5 library.
    data = value.encode()
    f.attrs.create(name, np.array(data, h5py.string_dtype("utf-8", max(1, len(data)))))


def _where(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


# A damaged file can declare any HDF5 type; the types are checked before anything is read,
# since reading some (variable-length types with a broken heap) crashes the HDF5 library.
_TYPE_NAMES = {
    h5py.h5t.INTEGER: "integers",
    h5py.h5t.FLOAT: "floating-point numbers",
    h5py.h5t.STRING: "strings",
    h5py.h5t.COMPOUND: "a compound type (e.g. complex numbers)",
}


def _read_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    where = _where(path)
    names = set(f.attrs)
    if "format" not in names or "format_version" not in names:
        raise DatasetError(f"{where}: not a sciml dataset (attribute 'format' is missing or wrong)")

    def read(name: str, version: int) -> Any:
        if name not in names:
            raise DatasetError(f"{where}: attribute {name!r} is missing; the file is corrupted")
        string = name in _STRING_ATTRS
        attr = f.attrs.get_id(name)
        kind = attr.get_type().get_class()
        if (
            attr.shape != ()
            or kind != (h5py.h5t.STRING if string else h5py.h5t.INTEGER)
            # Version 2 writes fixed-length strings: nothing is read from a global heap.
            or (string and version >= 2 and attr.get_type().is_variable_str())
        ):
            what = "fixed-length string" if string and version >= 2 else "string"
            raise DatasetError(
                f"{where}: attribute {name!r} is not a single {what if string else 'integer'}; "
                "the file is corrupted"
            )
        value = f.attrs[name]
        if isinstance(value, bytes):
            return value.decode()
        return value.item() if isinstance(value, np.generic) else value

    version = read("format_version", 0)
    if version not in _READABLE_VERSIONS:
        raise DatasetError(
            f"{where}: format_version {version!r} is not supported; allowed: "
            f"{', '.join(map(str, _READABLE_VERSIONS))}"
        )
    if read("format", version) != FORMAT_NAME:
        raise DatasetError(f"{where}: not a sciml dataset (attribute 'format' is missing or wrong)")
    return {name: read(name, version) for name in (*_STRING_ATTRS, *_INTEGER_ATTRS)}


def _check_array(f: h5py.File, name: str, where: str, *, grid: bool, size: int) -> h5py.Dataset:
    """The array `name`, after checking (without reading it) that it can be what it should."""
    dtype, shape = ("float64", "(points,)") if grid else ("float32", "(n, channels, *spatial)")
    obj = f.get(name)
    if obj is None:
        raise DatasetError(f"{where}: missing {name} (expected a {dtype} array {shape})")
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(f"{where}: {name!r} is not an array; expected a {dtype} array {shape}")
    kind = obj.id.get_type().get_class()
    if kind != h5py.h5t.FLOAT or obj.dtype.itemsize != np.dtype(dtype).itemsize:
        held = str(obj.dtype) if kind == h5py.h5t.FLOAT else _TYPE_NAMES.get(kind, f"type {kind}")
        raise DatasetError(f"{where}: {name!r} holds {held}; expected {dtype}")
    if (obj.ndim != 1) if grid else (obj.ndim < 3):
        raise DatasetError(f"{where}: {name!r} has shape {obj.shape}; expected {shape}")
    # Without compression the values must fit in the file; a damaged shape could otherwise
    # make the reader allocate (and fill) any amount of memory.
    if obj.id.get_create_plist().get_nfilters() == 0 and obj.size * obj.dtype.itemsize > size:
        raise DatasetError(
            f"{where}: {name!r} has shape {obj.shape}, more than the file's {size} bytes "
            "hold; the file is truncated or corrupted"
        )
    return obj


def load_dataset(path: str | os.PathLike, *, verify: bool = True) -> Dataset:
    """Reads a dataset written by [`write_dataset`][] into host memory.

    **Arguments:**

    - `path`: the `.h5` file.
    - `verify`: recompute the checksum and compare it with the stored one, and check that
        every value is finite.

    **Returns:**

    A [`Dataset`][].

    **Raises:**

    `DatasetError` (a `ValueError`) with one line naming the file and what is wrong: missing
    file, not HDF5, truncated, missing arrays or attributes, wrong types, inconsistent shapes,
    checksum mismatch, non-finite values.
    """
    path = Path(path)
    where = _where(path)
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise DatasetError(f"dataset file {str(path)!r} is a directory; expected an HDF5 file")
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetError(f"{where}: the file is empty; expected an HDF5 dataset file")
    try:
        with h5py.File(path, "r") as f:
            attrs = _read_attrs(f, path)
            x = _check_array(f, "inputs", where, grid=False, size=size)
            y = _check_array(f, "outputs", where, grid=False, size=size)
            axes = [f"x{i}" for i in range(x.ndim - 2)]
            group = f.get("grid")
            if not isinstance(group, h5py.Group) or sorted(group) != axes:
                if group is None:
                    held = "missing grid"
                elif isinstance(group, h5py.Group):
                    held = f"'grid' holds {', '.join(sorted(group)) or 'nothing'}"
                else:
                    held = "'grid' is not a group"
                raise DatasetError(
                    f"{where}: {held}; expected the coordinate arrays {', '.join(axes)} (one "
                    f"per spatial axis of inputs {x.shape})"
                )
            coords = [_check_array(f, f"grid/{a}", where, grid=True, size=size) for a in axes]
            inputs, outputs = x[...], y[...]
            grid = tuple(c[...] for c in coords)
    except DatasetError:
        raise
    except Exception as e:  # h5py raises many kinds of error for a damaged file
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DatasetError(
            f"{where}: unreadable or corrupted HDF5 file ({reason}); expected a dataset "
            "written by sciml"
        ) from None
    spatial = tuple(len(c) for c in grid)
    if (
        inputs.shape[0] != outputs.shape[0]
        or inputs.shape[2:] != spatial
        or outputs.shape[2:] != spatial
    ):
        raise DatasetError(
            f"{where}: inconsistent shapes inputs {inputs.shape}, outputs {outputs.shape}, "
            f"grid {spatial}; expected (n, c_in, *spatial), (n, c_out, *spatial) and one "
            "coordinate vector per spatial axis"
        )
    if verify:
        names = (*_ARRAYS, "grid") if attrs["format_version"] == 1 else (*_ARRAYS, "grid", "attrs")
        hasher = _Hasher(names)
        hasher.update("inputs", inputs)
        hasher.update("outputs", outputs)
        for coords in grid:
            hasher.update("grid", coords)
        if "attrs" in names:
            hasher.update("attrs", _metadata(attrs))
        if hasher.hexdigest() != attrs["sha256"]:
            raise DatasetError(
                f"{where}: checksum mismatch (the stored sha256 does not match the contents); "
                "the file is corrupted: regenerate it"
            )
        for name, arrays in (("inputs", [inputs]), ("outputs", [outputs]), ("grid", grid)):
            bad = sum(a.size - np.count_nonzero(np.isfinite(a)) for a in arrays)
            if bad:
                raise DatasetError(
                    f"{where}: {name} hold {bad} non-finite values (NaN or inf); expected "
                    "finite numbers"
                )
    try:
        attrs["recipe"] = json.loads(attrs["recipe"])
    except (ValueError, RecursionError) as e:
        reason = " ".join(str(e).split())
        raise DatasetError(f"{where}: attribute 'recipe' is not valid JSON ({reason})") from None
    return Dataset(inputs, outputs, grid, attrs)
