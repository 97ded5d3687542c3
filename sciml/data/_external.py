"""Reading the operator datasets scientists already have: NumPy `.npz` and `.npy`, MATLAB `.mat`
(v5 and v7.3), HDF5 with one's own array names (PDEBench's layouts included) and sciml's own
format.

Three public functions share one reading of a file for operator datasets:

- [`inspect_arrays`][] reads the headers only (shapes, types, coordinates) and checks that the
    arrays named can be an operator dataset;
- [`read_arrays`][] returns a [`Dataset`][] `(n, channels, *spatial)` in float32, in memory or,
    for HDF5-based files, left on disk;
- [`import_arrays`][] converts a file to sciml's checksummed format;

and [`read_named`][] reads whole arrays of any shape by name (measurements, references).

Which library reads what: `.npy` headers and the arrays of `.npy`/`.npz` files are read with
NumPy's `numpy.lib.format` (never `allow_pickle`), the members of an `.npz` with `zipfile`;
MATLAB v5 files with SciPy (`whosmat` for the headers, `loadmat` for the arrays: the format is
SciPy's to parse); MATLAB v7.3 files, which are HDF5 files behind a 512-byte header, and every
other HDF5 file with h5py, which reads any part of an array without the rest.

Keys and channel layouts are described in [`read_arrays`][].
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._machine import MachineSettingError, available_memory
from ._io import (
    Dataset,
    DatasetError,
    OnDiskArray,
    ReadOnlyFile,
    check_storage,
    load_dataset,
    open_dataset,
    write_dataset,
)

FORMATS = ("npz", "npy", "mat5", "mat73", "hdf5", "sciml")
LAYOUTS = ("none", "first", "last")
_EXTENSIONS = {".npz": "npz", ".npy": "npy", ".mat": "mat", ".h5": "hdf5", ".hdf5": "hdf5"}
_STREAMED = ("mat73", "hdf5", "sciml")  # HDF5 inside: read part by part
_COORDINATES = ("x-coordinate", "y-coordinate", "z-coordinate")  # PDEBench's grid vectors
_MATLAB_NUMERIC = (
    *("double", "single", "logical"),
    *(f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)),
)
_SCAN_BYTES = 64 << 20  # the finiteness check of streamed arrays reads this much at a time
_LISTED = 8  # names of the file's arrays listed in a message


@dataclass(frozen=True, eq=False)
class ArraysInfo:
    """What [`inspect_arrays`][] learns about a dataset file from its headers.

    **Fields:**

    - `path`: the file.
    - `format`: one of `"npz"`, `"npy"`, `"mat5"`, `"mat73"`, `"hdf5"`, `"sciml"`.
    - `inputs`, `outputs`: the keys, as given.
    - `n`: the number of samples.
    - `in_channels`, `out_channels`: channels of the inputs and outputs (after key selection).
    - `spatial`: the size of each spatial axis, after `stride`.
    - `grid`: one coordinate vector per spatial axis, after `stride`.
    - `channels`: the resolved layouts `(of inputs, of outputs)`, each `"none"`, `"first"` or
        `"last"`; passing it back as `channels` reads the file the same way.
    - `stride`: the stride of each spatial axis.
    - `nbytes`: bytes of inputs and outputs in float32, after `stride`.
    """

    path: str
    format: str
    inputs: str
    outputs: str
    n: int
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    grid: tuple[np.ndarray, ...]
    channels: tuple[str, str]
    stride: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class _Array:
    """One array named by a key, as laid out for reading."""

    role: str  # "inputs" or "outputs"
    key: str  # as given
    name: str  # the array's name in the file
    shape: tuple[int, ...]  # in the file's own axis order (MATLAB's for .mat files)
    layout: str  # "none", "first" or "last"
    perm: tuple[int | None, ...]  # storage axis of each axis of (n, c, *spatial)
    channels: range  # the channels selected, in the file's channel axis


@dataclass(frozen=True, eq=False)
class _Plan:
    where: str
    inputs: _Array
    outputs: _Array
    spatial: tuple[int, ...]  # before the stride
    info: ArraysInfo


def inspect_arrays(
    path: str | os.PathLike,
    *,
    inputs: str,
    outputs: str,
    channels: str | Sequence[str] = "auto",
    stride: int | Sequence[int] = 1,
) -> ArraysInfo:
    """Checks that two arrays of a file can be an operator dataset, reading only headers.

    Shapes, types and coordinates are read; the values of the arrays are not (so non-finite
    values, and complex numbers in a MATLAB v5 file, are found by [`read_arrays`][] only).

    **Arguments:** as [`read_arrays`][].

    **Returns:**

    An [`ArraysInfo`][].

    **Raises:**

    `DatasetError`, with one line naming the file, the key and what was expected.
    """
    path = Path(os.fspath(path))
    return _with_source(
        path, lambda source: _resolve(source, inputs, outputs, channels, stride).info
    )


def read_arrays(
    path: str | os.PathLike,
    *,
    inputs: str,
    outputs: str,
    channels: str | Sequence[str] = "auto",
    stride: int | Sequence[int] = 1,
    stream: bool = False,
) -> Dataset:
    """Reads an operator dataset from a file in one of the formats scientists already use.

    **Arguments:**

    - `path`: a `.npz`, `.npy`, MATLAB `.mat` (v5, or v7.3 which is HDF5), `.h5`/`.hdf5`
        file (e.g. PDEBench's), or a dataset file written by sciml.
    - `inputs`, `outputs`: the keys of the input functions and of the solutions: an array's
        name (`"coeff"`; an HDF5 path such as `"group/name"`), or a name with a selection of
        channels along the channel axis, `"name[i]"` or `"name[i:j]"`, so that one array can
        give both (`"array[0:1]"` and `"array[1:2]"`). A `.npy` file holds one array, named
        `"array"`; for a sciml file the keys are `"inputs"` and `"outputs"` (or empty).
    - `channels`: how the arrays hold channels: `"none"` (`(n, *spatial)`, one channel),
        `"first"` (`(n, c, *spatial)`), `"last"` (`(n, *spatial, c)`), a pair of these
        (for the inputs, for the outputs), or `"auto"`:

        - a sciml file: `"first"`;
        - a file with PDEBench's coordinate vectors (`x-coordinate`, `y-coordinate`,
            `z-coordinate`): for each array, the layout whose spatial axes have the lengths of
            the coordinates (e.g. Darcy `nu (n, s, s)` is `"none"`, `tensor (n, 1, s, s)` and
            the 1-D `tensor (n, t, x)` are `"first"`, time being the channel axis);
        - otherwise, of the layouts (one for both arrays, or `"none"` for one of them) under
            which the inputs and outputs have the same spatial shape (at least one axis; a key
            that selects channels needs a channel axis) and every channel axis is shorter than
            every spatial axis: the only one; or else the only one whose channel axes are at
            most a quarter of the shortest spatial axis. So `(n, s, s)` pairs are `"none"`
            (and `(n, 9, 10)` pairs); `(n, 2, s, s)` and `(n, 1, s, s)` are `"first"`;
            `(n, s, s)` and `(n, 1, s, s)` are `("none", "first")`. Where no layout or more
            than one is left (e.g. `(n, 10, 64)` pairs: ten channels, or one on a 10 x 64
            grid), `DatasetError` asks for `channels`.

        MATLAB drops trailing axes of length 1, so an `(n, s, s, 1)` array comes back from a
        `.mat` file as `(n, s, s)`.
    - `stride`: keep every `stride`-th point of each spatial axis (the FNO paper's `r`): a
        positive integer, or one per spatial axis; at most the length of the axis.
    - `stream`: for HDF5-based files (HDF5, PDEBench, MATLAB v7.3, sciml), leave the arrays on
        disk as [`OnDiskArray`][]s that read, lay out, subsample and cast to float32 only the
        samples they are indexed with (the finiteness check reads the file once, about 64 MB
        at a time); `.npz`, `.npy` and MATLAB v5 files are read into memory either way.

    **Returns:**

    A [`Dataset`][] with float32 `inputs (n, in_channels, *spatial)` and
    `outputs (n, out_channels, *spatial)` (booleans and integers are cast), `grid` (the file's
    coordinate vectors where it has one per spatial axis, PDEBench's or sciml's, otherwise
    `linspace(0, 1, s)` on each axis; subsampled by `stride`) and `attrs` with `source`,
    `format`, `inputs`, `outputs`, `channels` (the resolved pair) and `stride` (one per axis);
    a sciml file's own attributes too.

    **Raises:**

    `DatasetError` (a `ValueError`), with one line naming the file, the key and what was
    expected: missing file or a directory, unknown extension, unreadable, truncated or
    corrupted file, missing key (the file's arrays are listed), object or pickled arrays
    (never unpickled), strings or complex numbers, MATLAB cells, structs and text, non-finite
    values, zero samples, inputs and outputs of different counts or spatial shapes, a
    channel layout or a `stride` that does not fit, arrays larger than the available memory.
    """
    path = Path(os.fspath(path))

    def read(source: _Source) -> Dataset:
        plan = _resolve(source, inputs, outputs, channels, stride)
        info = plan.info
        attrs = {
            "source": info.path,
            "format": info.format,
            "inputs": info.inputs,
            "outputs": info.outputs,
            "channels": list(info.channels),
            "stride": list(info.stride),
        }
        if info.format == "sciml" and (not stream or set(info.stride) == {1}):
            return _read_sciml(plan, attrs, stream)
        if stream and info.format in _STREAMED:
            if info.format == "sciml":  # checked as `open_dataset` checks it, then read strided
                with open_dataset(path) as own:
                    attrs = {**own.attrs, **attrs}
            return _open_lazy(source, plan, attrs, scan=info.format != "sciml")
        _check_memory(plan)
        return _read_whole(source, plan, attrs)

    return _with_source(path, read)


def import_arrays(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    inputs: str,
    outputs: str,
    channels: str | Sequence[str] = "auto",
    stride: int | Sequence[int] = 1,
    progress: bool = True,
) -> str:
    """Converts a dataset file to sciml's checksummed format (see [`write_dataset`][]).

    HDF5-based sources are streamed, about 64 MB of samples at a time; the others are read into
    memory. The file written records where it came from: `recipe` is
    `{"recipe": "imported", "source": <file name>, "format", "inputs", "outputs", "channels",
    "stride"}`.

    **Arguments:**

    - `src`: the file to convert; `inputs`, `outputs`, `channels`, `stride` as in
        [`read_arrays`][].
    - `out`: the `.h5` file to write (atomically).
    - `progress`: show a progress bar over samples.

    **Returns:**

    The sha256 checksum stored in `out`.

    **Raises:**

    `DatasetError` as [`read_arrays`][]; `OSError` naming `out` if writing fails.
    """
    with read_arrays(
        src, inputs=inputs, outputs=outputs, channels=channels, stride=stride, stream=True
    ) as ds:
        n = len(ds)
        row_bytes = 4 * (ds.inputs.size + ds.outputs.size) // n
        rows = max(1, _SCAN_BYTES // max(1, row_bytes))
        chunks = (
            (np.asarray(ds.inputs[i : i + rows]), np.asarray(ds.outputs[i : i + rows]))
            for i in range(0, n, rows)
        )
        recipe = {
            "recipe": "imported",
            "source": Path(src).name,
            **{k: ds.attrs[k] for k in ("format", "inputs", "outputs", "channels", "stride")},
        }
        return write_dataset(
            out,
            chunks,
            n=n,
            input_shape=ds.inputs.shape[1:],
            output_shape=ds.outputs.shape[1:],
            grid=ds.grid,
            recipe=recipe,
            seed=0,
            description=f"imported from {Path(src).name}",
            progress=progress,
        )


def read_named(path: str | os.PathLike, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Whole arrays of any shape, by name, from a `.npz`, `.npy`, `.mat` (v5 or v7.3) or HDF5
    file: e.g. measurement points and values, or a reference solution and its grid vectors.

    Each array comes back in float64 with MATLAB's axis order (a v7.3 file's arrays are
    transposed back); `.npy` holds the one array `array`, and HDF5 names may be paths
    (`group/name`). Nothing is unpickled.

    **Raises:** `DatasetError`, one line naming the file, for a missing file or array, an
    array that is not real numbers, or non-finite entries.
    """
    path = Path(path)

    def read(source: _Source) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            if not source.has(name):
                raise DatasetError(
                    f"{source.where}: no array {name!r}; the file holds {_short(source.names())}"
                )
            _, dtype, _ = source.meta(name)
            why = _not_numbers(np.dtype(dtype))
            if why is not None:
                raise DatasetError(f"{source.where}: {name!r} holds {why}; expected real numbers")
            values = np.asarray(source.array(name)[()], dtype=np.float64)
            if getattr(source, "reversed", False):
                values = values.T
            if not np.all(np.isfinite(values)):
                raise DatasetError(
                    f"{source.where}: {name!r} holds non-finite entries (NaN or Inf); expected "
                    "finite numbers"
                )
            out[name] = values
        return out

    return _with_source(path, read)


# --- Opening a file ----------------------------------------------------------------------------

_WHAT = {
    "npz": "NumPy .npz",
    "npy": "NumPy .npy",
    "mat": "MATLAB .mat",
    "mat5": "MATLAB .mat",
    "mat73": "MATLAB v7.3 .mat",
    "hdf5": "HDF5",
    "sciml": "sciml dataset",
}
_MATLAB_TYPES = {"double": "float64", "single": "float32", "logical": "bool"}


def _where(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _short(names: Sequence[str]) -> str:
    if not names:
        return "no numeric arrays"
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (" and others" if len(names) > _LISTED else "")


def _not_numbers(dtype: np.dtype) -> str | None:
    """What an array of `dtype` holds if not real numbers (or booleans), else None."""
    if dtype.kind in "biuf":
        return None
    if dtype.kind == "O":
        return "Python objects (pickled data, which sciml never reads)"
    if dtype.kind == "c":
        return "complex numbers"
    if dtype.kind in "SU":
        return "strings"
    return f"values of type {dtype}"


# A source is one of the classes below: `names()` lists its arrays (for messages), `has(name)`,
# `meta(name)` gives `(shape in the file's axis order, dtype, axes stored reversed)` from the
# headers, `coordinates()` the file's grid vectors if it has some, `array(name)` something that
# NumPy-style indexing reads from (in storage order), `close()`.


class _Npy:
    """A `.npy` file: one array, named "array"; its header is read when it is opened."""

    format = "npy"

    def __init__(self, path: Path, where: str):
        self.path, self.where = path, where
        with open(path, "rb") as f:
            self._shape, self._dtype, offset = _npy_header(f, where, "the file")
        stored = os.path.getsize(path) - offset
        _check_npy_size(where, "the array", self._shape, self._dtype, stored)

    def names(self) -> list[str]:
        return ["array"]

    def has(self, name: str) -> bool:
        return name == "array"

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        return self._shape, self._dtype, False

    def coordinates(self) -> tuple[np.ndarray, ...]:
        return ()

    def array(self, name: str) -> np.ndarray:
        # Memory-mapped: a stride or a channel selection reads only what it keeps.
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def close(self) -> None:
        pass


def _npy_header(f: Any, where: str, what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, type and data offset from a `.npy` header, without reading the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
    except ValueError:
        raise DatasetError(
            f"{where}: {what} is not a NumPy .npy array (no .npy header; pickled data is never "
            "read); expected an array saved by numpy.save"
        ) from None
    if version not in ((1, 0), (2, 0)):
        raise DatasetError(
            f"{where}: {what} has .npy format version {version}; expected 1.0 or 2.0"
        )
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _, dtype = read(f)
    return tuple(int(s) for s in shape), np.dtype(dtype), f.tell()


def _check_npy_size(where: str, what: str, shape: tuple[int, ...], dtype: np.dtype, stored: int):
    declared = math.prod(shape) * dtype.itemsize
    if _not_numbers(dtype) is None and declared > stored:
        raise DatasetError(
            f"{where}: {what} has shape {shape} of {dtype} ({declared} bytes), of which the "
            f"file stores {max(stored, 0)}; the file is truncated or corrupted"
        )


class _Npz:
    """An `.npz` file: a zip archive of `.npy` members, whose headers are read on demand."""

    format = "npz"

    def __init__(self, path: Path, where: str):
        self.path, self.where = path, where
        self._zip = zipfile.ZipFile(path)
        members = [m for m in self._zip.namelist() if m.endswith(".npy")]
        self._members = {m[: -len(".npy")]: m for m in members}

    def names(self) -> list[str]:
        return list(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        member = self._members[name]
        with self._zip.open(member) as f:
            shape, dtype, offset = _npy_header(f, self.where, f"member {member!r}")
        stored = self._zip.getinfo(member).file_size - offset
        _check_npy_size(self.where, f"member {member!r}", shape, dtype, stored)
        return shape, dtype, False

    def coordinates(self) -> tuple[np.ndarray, ...]:
        return ()

    def array(self, name: str) -> np.ndarray:
        with self._zip.open(self._members[name]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def close(self) -> None:
        self._zip.close()


class _Mat5:
    """A MATLAB v5 (or v4, v6, v7) file, read by SciPy: `whosmat` for the headers."""

    format = "mat5"

    def __init__(self, path: Path, where: str):
        import scipy.io

        self.path, self.where = path, where
        self._vars = {name: (tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(path)}

    def names(self) -> list[str]:
        return [name for name, (_, cls) in self._vars.items() if cls in _MATLAB_NUMERIC]

    def has(self, name: str) -> bool:
        return name in self._vars

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        shape, cls = self._vars[name]
        _check_matlab_class(self.where, name, cls)
        return shape, np.dtype(_MATLAB_TYPES.get(cls, cls)), False

    def coordinates(self) -> tuple[np.ndarray, ...]:
        return ()

    def array(self, name: str) -> np.ndarray:
        import scipy.io

        values = scipy.io.loadmat(self.path, variable_names=[name])[name]
        if not isinstance(values, np.ndarray):  # a sparse matrix
            raise DatasetError(
                f"{self.where}: {name!r} is a sparse MATLAB matrix; expected a full array"
            )
        why = _not_numbers(values.dtype)
        if why is not None:  # complex numbers: `whosmat` does not tell
            raise DatasetError(f"{self.where}: {name!r} holds {why}; expected real numbers")
        return values

    def close(self) -> None:
        pass


def _check_matlab_class(where: str, name: str, cls: str | None) -> None:
    if cls is not None and cls not in _MATLAB_NUMERIC:
        raise DatasetError(
            f"{where}: {name!r} is a MATLAB {cls}; expected a numeric array (double, single, "
            "integer or logical)"
        )


class _H5:
    """An HDF5 file: generic (PDEBench's too), MATLAB v7.3 (axes stored reversed) or sciml's."""

    def __init__(self, path: Path, where: str, handle: h5py.File, format: str):
        self.path, self.where, self.format = path, where, format
        # MATLAB stores arrays column-major: h5py, row-major, sees their axes reversed.
        self.reversed = format == "mat73"
        self._size = os.path.getsize(path)
        self.handle: h5py.File | None = handle

    def names(self) -> list[str]:
        found: list[str] = []

        def visit(name: str, obj: Any) -> bool | None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                found.append(name)
            return len(found) > _LISTED or None  # stops early in a file of many arrays

        self.handle.visititems(visit)
        return found

    def has(self, name: str) -> bool:
        # MATLAB's own groups start with '#'.
        return not name.startswith("#") and self.handle.get(name) is not None

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        obj = self.handle[name]
        if self.reversed:
            _check_matlab_class(self.where, name, _fixed_string(obj, "MATLAB_class"))
        if not isinstance(obj, h5py.Dataset):
            raise DatasetError(f"{self.where}: {name!r} is a group; expected an array")
        # The type is checked before anything else is read: reading some types of a damaged
        # file (variable-length ones with a broken heap) crashes the HDF5 library.
        kind = obj.id.get_type().get_class()
        if not (
            kind in (h5py.h5t.INTEGER, h5py.h5t.FLOAT)
            or (kind == h5py.h5t.ENUM and obj.dtype == np.bool_)
        ):
            held = {
                h5py.h5t.COMPOUND: "a compound type (e.g. complex numbers)",
                h5py.h5t.STRING: "strings",
                h5py.h5t.REFERENCE: "references (e.g. a MATLAB cell array)",
            }.get(kind, f"HDF5 type class {kind}")
            raise DatasetError(f"{self.where}: {name!r} holds {held}; expected real numbers")
        if self.reversed and obj.attrs.get("MATLAB_empty", 0):
            return (0,), obj.dtype, True
        check_storage(obj, name, self.where, self._size)
        shape = tuple(int(s) for s in obj.shape)
        return (shape[::-1] if self.reversed else shape), obj.dtype, self.reversed

    def coordinates(self) -> tuple[np.ndarray, ...]:
        if self.format == "sciml":
            group = self.handle.get("grid")
            names = (
                [f"grid/x{i}" for i in range(len(group))] if isinstance(group, h5py.Group) else []
            )
        else:
            names = [c for c in _COORDINATES if c in self.handle]
        coords = []
        for name in names:
            if not self.has(name):
                return ()
            shape, _, _ = self.meta(name)
            if math.prod(shape) != max(shape, default=0):  # a vector (MATLAB's are 2-D)
                return ()
            values = np.asarray(self.handle[name][...], np.float64).reshape(-1)
            if not np.all(np.isfinite(values)):
                raise DatasetError(
                    f"{self.where}: coordinate vector {name!r} holds non-finite values; "
                    "expected finite numbers"
                )
            coords.append(values)
        return tuple(coords)

    def array(self, name: str) -> h5py.Dataset:
        return self.handle[name]

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


_Source = _Npy | _Npz | _Mat5 | _H5


def _fixed_string(obj: Any, name: str) -> str | None:
    """A fixed-length string attribute (such as MATLAB's), or None: reading a variable-length
    one of a damaged file can hang HDF5."""
    if name not in obj.attrs:
        return None
    kind = obj.attrs.get_id(name).get_type()
    if kind.get_class() != h5py.h5t.STRING or kind.is_variable_str():
        return None
    value = obj.attrs[name]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _open(path: Path, where: str) -> _Source:
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise DatasetError(f"data file {where} is a directory; expected a file")
        raise DatasetError(f"data file {where} does not exist")
    extension = path.suffix.lower()
    if extension not in _EXTENSIONS:
        raise DatasetError(
            f"{where}: unknown extension {path.suffix or '(none)'!r}; expected one of "
            f"{', '.join(_EXTENSIONS)}"
        )
    if os.path.getsize(path) == 0:
        raise DatasetError(
            f"{where}: the file is empty; expected {_WHAT[_EXTENSIONS[extension]]} data"
        )
    kind = _EXTENSIONS[extension]
    try:
        if kind == "npy":
            return _Npy(path, where)
        if kind == "npz":
            return _Npz(path, where)
        if kind == "mat" and not h5py.is_hdf5(path):
            return _Mat5(path, where)
        handle = h5py.File(path, "r")
        own = "format" in handle.attrs and "format_version" in handle.attrs
        return _H5(path, where, handle, "mat73" if kind == "mat" else "sciml" if own else "hdf5")
    except DatasetError:
        raise
    except Exception as e:  # each library raises its own errors for a damaged file
        raise DatasetError(
            f"{where}: unreadable or corrupted {_WHAT[kind]} file ({_reason(e)})"
        ) from None


def _with_source(path: Path, run: Any) -> Any:
    """`run(source)` on the opened file; every failure a `DatasetError` naming the file."""
    where = _where(path)
    source = _open(path, where)
    try:
        return run(source)
    except DatasetError:
        raise
    except Exception as e:  # a damaged file fails in the libraries in many ways
        raise DatasetError(
            f"{where}: unreadable or corrupted {_WHAT[source.format]} file ({_reason(e)})"
        ) from None
    finally:
        source.close()


# --- Keys, layouts, stride ---------------------------------------------------------------------

_PATTERNS = {"none": "(n, *spatial)", "first": "(n, c, *spatial)", "last": "(n, *spatial, c)"}


def _parse_key(source: _Source, role: str, key: str) -> tuple[str, int | slice | None]:
    """The array's name and the channel selection of a key `name`, `name[i]` or `name[i:j]`."""
    where = source.where
    if not key.strip():
        if source.format == "npy" or source.format == "sciml":
            return ("array" if source.format == "npy" else role), None
        raise DatasetError(
            f"{where}: the {role} key is empty; expected the name of an array of the file "
            f"({_short(source.names())})"
        )
    if not key.endswith("]") or "[" not in key or source.has(key):
        return key, None
    name, inner = key[:-1].rsplit("[", 1)
    parts = inner.split(":")
    try:
        if len(parts) == 1:
            return name, int(parts[0])
        if len(parts) == 2:
            return name, slice(*(int(p) if p.strip() else None for p in parts))
    except ValueError:
        pass
    raise DatasetError(
        f"{where}: {role} key {key!r} selects channels with [{inner}]; expected name, name[i] "
        "or name[i:j] with integers i, j"
    )


def _spatial_of(shape: tuple[int, ...], layout: str) -> tuple[int, ...] | None:
    """The spatial shape of an array of `shape` laid out as `layout`, if it has one."""
    if len(shape) < (2 if layout == "none" else 3):
        return None
    return {"none": shape[1:], "first": shape[2:], "last": shape[1:-1]}[layout]


def _channels_of(shape: tuple[int, ...], layout: str) -> int:
    return {"none": 1, "first": shape[1], "last": shape[-1]}[layout]


def _resolve(source: _Source, inputs: str, outputs: str, channels: Any, stride: Any) -> _Plan:
    """Checks what the headers tell and decides how to read the two arrays."""
    where = source.where
    named = []
    for role, key in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(key, str):
            raise DatasetError(
                f"{where}: the {role} key {key!r} is not a string; expected an array name"
            )
        name, select = _parse_key(source, role, key)
        if source.format == "sciml" and name != role:
            raise DatasetError(
                f"{where}: {role} key {key!r} names no array of a sciml dataset file; expected "
                f"{role!r} (or empty)"
            )
        if not source.has(name):
            raise DatasetError(
                f"{where}: {role} key {key!r}: the file has no array {name!r}; it has "
                f"{_short(source.names())}"
            )
        shape, dtype, reversed_ = source.meta(name)
        why = _not_numbers(dtype)
        if why is not None:
            raise DatasetError(
                f"{where}: {role} key {key!r} holds {why}; expected real numbers (floats, "
                "integers or booleans)"
            )
        if not shape or shape[0] == 0:
            raise DatasetError(
                f"{where}: {role} key {key!r} has shape {shape}: no samples; expected at least "
                "one sample along the first axis"
            )
        named.append((role, key, name, select, shape, reversed_))
    coords = source.coordinates()
    layouts = _layouts(where, source.format, named, channels, coords)
    x, y = (_lay_out(where, *item, layout) for item, layout in zip(named, layouts, strict=True))
    (_, kx, _, _, sx, _), (_, ky, _, _, sy, _) = named
    if sx[0] != sy[0]:
        raise DatasetError(
            f"{where}: inputs key {kx!r} has {sx[0]} samples and outputs key {ky!r} has "
            f"{sy[0]}; expected the same number"
        )
    spatial = _spatial_of(sx, x.layout)
    if spatial != _spatial_of(sy, y.layout):
        raise DatasetError(
            f"{where}: inputs key {kx!r} {sx} (channels {x.layout!r}) has spatial shape "
            f"{spatial}, outputs key {ky!r} {sy} (channels {y.layout!r}) has "
            f"{_spatial_of(sy, y.layout)}; expected the same"
        )
    if 0 in spatial:
        raise DatasetError(
            f"{where}: inputs key {kx!r} has spatial shape {spatial} with an empty axis; "
            "expected at least one point on each axis"
        )
    strides = _strides(where, stride, spatial)
    if tuple(len(c) for c in coords) != spatial:
        coords = tuple(np.linspace(0.0, 1.0, s) for s in spatial)
    grid = tuple(np.ascontiguousarray(c[::r]) for c, r in zip(coords, strides, strict=True))
    kept = tuple(len(c) for c in grid)
    info = ArraysInfo(
        path=str(source.path),
        format=source.format,
        inputs=inputs,
        outputs=outputs,
        n=sx[0],
        in_channels=len(x.channels),
        out_channels=len(y.channels),
        spatial=kept,
        grid=grid,
        channels=(x.layout, y.layout),
        stride=strides,
        nbytes=4 * sx[0] * (len(x.channels) + len(y.channels)) * math.prod(kept),
    )
    return _Plan(where, x, y, spatial, info)


def _layouts(
    where: str, format: str, named: list, channels: Any, coords: tuple[np.ndarray, ...]
) -> tuple[str, str]:
    allowed = "'auto', 'none', 'first', 'last' or a pair of the last three (inputs, outputs)"
    if isinstance(channels, str) and channels == "auto":
        return ("first", "first") if format == "sciml" else _auto(where, named, coords)
    if isinstance(channels, str):
        pair = (channels, channels)
    elif isinstance(channels, Sequence) and len(channels) == 2:
        pair = tuple(channels)
    else:
        pair = None
    if pair is None or any(not isinstance(c, str) or c not in LAYOUTS for c in pair):
        raise DatasetError(f"{where}: channels {channels!r} is not allowed; expected {allowed}")
    if format == "sciml" and pair != ("first", "first"):
        raise DatasetError(
            f"{where}: channels {channels!r} does not fit a sciml dataset file, which holds "
            "channels first; expected 'first' or 'auto'"
        )
    for (role, key, _, _, shape, _), layout in zip(named, pair, strict=True):
        if _spatial_of(shape, layout) is None:
            raise DatasetError(
                f"{where}: {role} key {key!r} has shape {shape}, which does not fit channels "
                f"{layout!r}; expected {_PATTERNS[layout]} with at least one spatial axis"
            )
    return pair


def _auto(where: str, named: list, coords: tuple[np.ndarray, ...]) -> tuple[str, str]:
    """The rule of `channels="auto"` (see `read_arrays`) for files other than sciml's."""
    (_, kx, _, x_select, sx, _), (_, ky, _, y_select, sy, _) = named

    def spatial(shape: tuple[int, ...], select: Any, layout: str) -> tuple[int, ...] | None:
        found = _spatial_of(shape, layout)
        if found is None or 0 in found or (layout == "none" and select is not None):
            return None
        return found

    # One layout for both arrays, or none for one of them (e.g. PDEBench's Darcy files).
    fitting = [
        (a, b)
        for a in LAYOUTS
        for b in LAYOUTS
        if (a == b or "none" in (a, b))
        and spatial(sx, x_select, a) is not None
        and spatial(sx, x_select, a) == spatial(sy, y_select, b)
    ]
    # PDEBench's files say which axes are spatial: `x-coordinate`, ... give their lengths.
    sizes = tuple(len(c) for c in coords)
    by_coords = [p for p in fitting if coords and _spatial_of(sx, p[0]) == sizes]

    # A channel axis looks like one if it is shorter than the spatial axes, and more so if it
    # is at most a quarter of the shortest.
    def looks(shape: tuple[int, ...], layout: str, quarter: bool) -> bool:
        if layout == "none":
            return True
        channels, shortest = _channels_of(shape, layout), min(_spatial_of(shape, layout))
        return 4 * channels <= shortest if quarter else channels < shortest

    shorter, plausible = (
        [p for p in fitting if looks(sx, p[0], quarter) and looks(sy, p[1], quarter)]
        for quarter in (False, True)
    )
    for pairs in (by_coords, shorter, plausible):
        if len(pairs) == 1:
            return pairs[0]
    shapes = f"inputs key {kx!r} {sx} and outputs key {ky!r} {sy}"
    if not shorter:
        raise DatasetError(
            f"{where}: channels 'auto' finds no layout under which {shapes} have the same "
            "spatial shape, with channel axes shorter than the spatial ones; expected arrays "
            "(n, *spatial), (n, c, *spatial) or (n, *spatial, c) of one spatial shape: set "
            "channels to 'none', 'first' or 'last'"
        )
    raise DatasetError(
        f"{where}: channels 'auto' cannot tell how {shapes} hold channels (they fit "
        f"{' and '.join(map(str, plausible or shorter))}); set channels to 'none', 'first' or "
        "'last' (or a pair of them)"
    )


def _lay_out(
    where: str,
    role: str,
    key: str,
    name: str,
    select: int | slice | None,
    shape: tuple[int, ...],
    reversed_: bool,
    layout: str,
) -> _Array:
    count = _channels_of(shape, layout)
    if count == 0:
        raise DatasetError(
            f"{where}: {role} key {key!r} has shape {shape}: no channels (channels "
            f"{layout!r}); expected at least one"
        )
    if select is None:
        chosen = range(count)
    elif isinstance(select, int):
        if not -count <= select < count:
            raise DatasetError(
                f"{where}: {role} key {key!r} selects channel {select} of {count} (shape "
                f"{shape}, channels {layout!r}); expected an index in [0, {count})"
            )
        chosen = range(select % count, select % count + 1)
    else:
        chosen = range(count)[select]
        if not chosen:
            raise DatasetError(
                f"{where}: {role} key {key!r} selects no channel of {count} (shape {shape}, "
                f"channels {layout!r}); expected a non-empty range within [0, {count})"
            )
    d = len(shape)
    axes = {"none": (0, None, *range(1, d)), "first": tuple(range(d))}.get(
        layout, (0, d - 1, *range(1, d - 1))
    )
    perm = tuple(a if a is None or not reversed_ else d - 1 - a for a in axes)
    return _Array(role, key, name, shape, layout, perm, chosen)


def _strides(where: str, stride: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    allowed = (
        f"a positive integer, or {len(spatial)} of them (one per spatial axis of "
        f"{spatial}), each at most the axis' length"
    )
    is_int = lambda r: isinstance(r, int | np.integer) and not isinstance(r, bool | np.bool_)
    if is_int(stride):
        strides = (int(stride),) * len(spatial)
    elif (
        isinstance(stride, Sequence)
        and not isinstance(stride, str)
        and len(stride) == len(spatial)
        and all(is_int(r) for r in stride)
    ):
        strides = tuple(int(r) for r in stride)
    else:
        raise DatasetError(f"{where}: stride {stride!r} is not allowed; expected {allowed}")
    for r, s in zip(strides, spatial, strict=True):
        if not 1 <= r <= s:
            raise DatasetError(
                f"{where}: stride {stride!r} does not fit spatial shape {spatial} (a stride of "
                f"{r} on an axis of {s} points); expected {allowed}"
            )
    return strides


# --- Reading -----------------------------------------------------------------------------------


def _take(array: Any, perm: tuple[int | None, ...], selection: tuple[Any, ...]) -> np.ndarray:
    """Reads `selection` of the `(n, c, *spatial)` axes from `array` (an h5py dataset or a NumPy
    array in the file's storage order, whose axis `perm[k]` is axis `k`, or absent: one channel)
    as float32 `(n, c, *spatial)` less the axes indexed by an integer.

    Each key is a slice, an integer, or an increasing integer array (at most one): what h5py
    reads. Integers are read as slices of one, so that NumPy and h5py give the same axes.
    """
    storage: list[Any] = [slice(None)] * array.ndim
    dropped = []
    for axis, key in enumerate(selection):
        if isinstance(key, int | np.integer):
            key = slice(int(key), int(key) + 1)
            dropped.append(axis)
        if perm[axis] is not None:
            storage[perm[axis]] = key
    values = np.asarray(array[tuple(storage)])
    values = np.transpose(values, [p for p in perm if p is not None])
    if perm[1] is None:
        values = values[:, None]  # channels 'none': the one channel
    with np.errstate(over="ignore"):  # values beyond float32's range: inf, refused later
        return np.ascontiguousarray(values.squeeze(tuple(dropped)), dtype=np.float32)


def _read_h5(
    name: str, perm: tuple[int | None, ...], handle: h5py.File, selection: tuple
) -> np.ndarray:
    return _take(handle[name], perm, selection)


def _nonfinite(values: np.ndarray) -> int:
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def _check_finite(where: str, array: _Array, bad: int) -> None:
    if bad:
        raise DatasetError(
            f"{where}: {array.role} key {array.key!r} holds {bad} non-finite values (NaN or inf, "
            "or beyond float32's range); expected finite numbers"
        )


def _read_whole(source: _Source, plan: _Plan, attrs: dict[str, Any]) -> Dataset:
    values = []
    for a in (plan.inputs, plan.outputs):
        selection = (
            slice(None),
            slice(a.channels.start, a.channels.stop),
            *(slice(None, None, r) for r in plan.info.stride),
        )
        v = _take(source.array(a.name), a.perm, selection)
        expected = (plan.info.n, len(a.channels), *plan.info.spatial)
        if v.shape != expected:
            raise DatasetError(
                f"{plan.where}: {a.role} key {a.key!r} read as {v.shape}, not the {expected} its "
                "header declares; the file is corrupted"
            )
        _check_finite(plan.where, a, _nonfinite(v))
        values.append(v)
    return Dataset(*values, plan.info.grid, attrs)


def _open_lazy(source: _H5, plan: _Plan, attrs: dict[str, Any], *, scan: bool) -> Dataset:
    info = plan.info
    arrays = (plan.inputs, plan.outputs)
    readers = {a.role: functools.partial(_read_h5, a.name, a.perm) for a in arrays}
    file = ReadOnlyFile(Path(info.path), source.handle, readers=readers)
    source.handle = None  # `file` holds it now
    spatial = [range(0, s, r) for s, r in zip(plan.spatial, info.stride, strict=True)]
    lazy = [
        OnDiskArray(file, a.role, range(info.n), a.channels, spatial, np.float32) for a in arrays
    ]
    try:
        if scan:  # the finiteness check, in parts of about _SCAN_BYTES
            for a, array in zip(arrays, lazy, strict=True):
                rows = max(1, _SCAN_BYTES // max(1, 4 * array.size // info.n))
                bad = sum(_nonfinite(array[i : i + rows]) for i in range(0, info.n, rows))
                _check_finite(plan.where, a, bad)
    except BaseException:
        file.close()
        raise
    return Dataset(*lazy, info.grid, attrs)


def _read_sciml(plan: _Plan, attrs: dict[str, Any], stream: bool) -> Dataset:
    """A sciml file through `load_dataset` / `open_dataset` (checksum and all), then the keys'
    channel selection and the stride."""
    ds = (open_dataset if stream else load_dataset)(plan.info.path)
    x, y = (slice(a.channels.start, a.channels.stop) for a in (plan.inputs, plan.outputs))
    if stream:  # stride 1
        inputs, outputs = ds.inputs.subset(channels=x), ds.outputs.subset(channels=y)
    else:
        keep = tuple(slice(None, None, r) for r in plan.info.stride)
        inputs = np.ascontiguousarray(ds.inputs[(slice(None), x, *keep)])
        outputs = np.ascontiguousarray(ds.outputs[(slice(None), y, *keep)])
    return Dataset(inputs, outputs, plan.info.grid, {**ds.attrs, **attrs})


def _check_memory(plan: _Plan) -> None:
    try:
        available = available_memory()
    except MachineSettingError as e:
        raise DatasetError(str(e)) from None
    needed = plan.info.nbytes
    if available is not None and needed > available:
        hint = (
            "read it with stream=True (data.stream = true)"
            if plan.info.format in _STREAMED
            else "convert a part of it, or a larger stride"
        )
        raise DatasetError(
            f"{plan.where}: inputs and outputs take {needed} bytes in float32, more than the "
            f"{available} bytes of memory available; {hint}"
        )
