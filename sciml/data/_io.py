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

No timestamps are stored, so the same recipe and seed give byte-identical files. Each array is
stored in chunks of one sample, so that reading a batch reads only its samples.

Two readers check a file the same way (same errors): [`load_dataset`][] reads the arrays into
memory; [`open_dataset`][] leaves them on disk as [`OnDiskArray`][]s, read batch by batch, for
datasets larger than memory. Before reading any array, both check from the file's index that
the file stores every value the arrays' shapes declare (every chunk, within what their
compression can expand to), so that a damaged or crafted shape is refused at once whatever
size it declares; `load_dataset` also refuses arrays larger than the available memory. The
checksum and the finiteness check read about 64 MB at a time in both.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._atomic import atomic_path
from .._machine import MachineSettingError, available_memory
from .._progress import progress_bar
from .._signals import deferred as deferred_signals

FORMAT_NAME = "sciml-dataset"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1: the checksum covers the arrays only
_ARRAYS = ("inputs", "outputs")
_SCAN_BYTES = 64 << 20  # the checksum and the finiteness check read this much at a time
_STRING_ATTRS = ("format", "recipe", "sciml_version", "sha256", "description")
_INTEGER_ATTRS = ("format_version", "seed")


class DatasetError(ValueError):
    """A dataset file is missing, malformed or fails its checksum."""


@dataclass(frozen=True)
class Dataset:
    """An operator-learning dataset: its arrays in host memory ([`load_dataset`][]) or on disk
    ([`open_dataset`][]).

    **Fields:**

    - `inputs`: `(n, in_channels, *spatial)` array: a NumPy array, or an [`OnDiskArray`][]
        that reads from the file only what is indexed.
    - `outputs`: `(n, out_channels, *spatial)` array, of the same kind as `inputs`.
    - `grid`: one coordinate vector per spatial axis (in memory).
    - `attrs`: the file's metadata (`recipe` is decoded from JSON).

    A dataset is a context manager: `with open_dataset(path) as ds: ...` closes the file at
    the end (see `close`).
    """

    inputs: np.ndarray | OnDiskArray
    outputs: np.ndarray | OnDiskArray
    grid: tuple[np.ndarray, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def split(self, n_first: int) -> tuple[Dataset, Dataset]:
        """Splits into the first `n_first` samples and the rest (same grid and attrs).

        On-disk arrays stay on disk: the parts are [`OnDiskArray`][] subsets, nothing is read.
        """
        if not 0 < n_first < len(self):
            raise DatasetError(
                f"cannot split a dataset of {len(self)} samples at {n_first}; "
                f"allowed: 0 < n_first < {len(self)}"
            )
        head, tail = slice(None, n_first), slice(n_first, None)
        return (
            Dataset(_rows(self.inputs, head), _rows(self.outputs, head), self.grid, self.attrs),
            Dataset(_rows(self.inputs, tail), _rows(self.outputs, tail), self.grid, self.attrs),
        )

    def close(self) -> None:
        """Closes the file behind on-disk arrays (a later read reopens it); nothing to do for
        arrays in memory."""
        for array in (self.inputs, self.outputs):
            if isinstance(array, OnDiskArray):
                array.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _rows(array: np.ndarray | OnDiskArray, rows: slice) -> np.ndarray | OnDiskArray:
    return array.subset(rows=rows) if isinstance(array, OnDiskArray) else array[rows]


def _identity(handle: h5py.File) -> tuple[int, int, int, int]:
    """Which file an open handle reads, and its state: device, inode, size, modification time."""
    st = os.fstat(handle.id.get_vfd_handle())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class ReadOnlyFile:
    """The read-only HDF5 handle shared by the `OnDiskArray`s of one `open_dataset` call (or
    of one `sciml.data.read_arrays(..., stream=True)` call).

    A read checks (one `fstat`) that the file is still the one that was verified; after
    `close`, or in a child process after `os.fork`, the next read opens the file again, under
    the same check. `identity` defaults to the open handle's.

    `readers` maps an array's name to the function that reads a selection of it from the open
    file (by default `handle[name][selection]`): external files store arrays in other layouts
    (channels last, MATLAB's reversed axes) that such a function turns into `(n, c, *spatial)`.
    """

    def __init__(
        self,
        path: Path,
        handle: h5py.File,
        identity: tuple[int, int, int, int] | None = None,
        readers: dict[str, Callable[[h5py.File, tuple[Any, ...]], np.ndarray]] | None = None,
    ):
        self.path = path
        self.where = _where(path)
        self._handle: h5py.File | None = handle
        self._pid = os.getpid()
        self._identity = _identity(handle) if identity is None else identity
        self._readers = dict(readers or {})
        self._lock = threading.Lock()

    def check(self, handle: h5py.File) -> None:
        if _identity(handle) != self._identity:
            raise DatasetError(
                f"{self.where}: the file changed since it was opened (its size or modification "
                "time differs); expected it unchanged: open it again"
            )

    def _open(self) -> h5py.File:
        if self._handle is not None and self._pid == os.getpid():
            return self._handle
        # After a fork the parent's handle is dropped, never used: HDF5 is not fork-safe.
        self._handle = None
        if not os.path.isfile(self.path):
            raise DatasetError(
                f"{self.where}: the file no longer exists; it was deleted or moved since it "
                "was opened"
            )
        try:
            handle = h5py.File(self.path, "r")
        except Exception as e:
            raise DatasetError(
                f"{self.where}: the file cannot be opened again ({_reason(e)}); expected it "
                "unchanged since it was opened"
            ) from None
        try:
            self.check(handle)
        except DatasetError:
            handle.close()
            raise
        self._handle, self._pid = handle, os.getpid()
        return handle

    def read(self, name: str, selection: tuple[Any, ...]) -> np.ndarray:
        with self._lock:
            handle = self._open()
            try:
                reader = self._readers.get(name)
                values = reader(handle, selection) if reader else handle[name][selection]
            except Exception as e:
                self.check(handle)  # a file changed under us explains any failure best
                raise DatasetError(
                    f"{self.where}: reading {name} failed ({_reason(e)}); the file is "
                    "corrupted: regenerate it"
                ) from None
            # Reads past the end of a file truncated since it was opened give zeros in HDF5.
            self.check(handle)
        return np.asarray(values)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None and self._pid == os.getpid():
                self._handle.close()
            self._handle = None


class OnDiskArray:
    """An array of a dataset file, read from disk only where it is indexed.

    [`open_dataset`][] returns the `inputs` and `outputs` of a file as `OnDiskArray`s. They
    have the `shape`, `dtype`, `ndim`, `size` and `len()` of the array they stand for;
    indexing reads just the selected values into a new NumPy array, as h5py does:

    - the sample axis takes an integer, a slice (positive step) or a 1-D integer index
        array (any order, repeats allowed; sorted without repeats reads fastest), or a
        boolean mask;
    - an index of each further axis may follow (the same kinds, at most one array in all),
        or `...`.

    `np.asarray(array)` reads the whole array, explicitly; `subset` selects a range of
    samples and channels without reading anything. `sciml.train.fit`, `evaluate`, `batches`
    and `UnitGaussianNormalizer.from_data` read batch by batch, so a dataset larger than
    memory trains in bounded memory.

    The arrays of one `open_dataset` call share one read-only file handle; `close` (or
    [`Dataset.close`][], or garbage collection) closes it. The next read after `close`, or
    in a child process after `os.fork`, opens the file again. Every read checks (one `fstat`)
    that the file is still the one that was opened and verified, with the same inode, size and
    modification time: a file changed in place (e.g. truncated), or deleted or replaced before
    it is opened again, gives a `DatasetError`. A file deleted or replaced while it is open
    keeps being read as it was.
    """

    def __init__(self, file: ReadOnlyFile, name: str, rows: range, channels: range, spatial, dtype):
        # Built by `open_dataset` and `subset`: `rows` and `channels` are ranges (positive
        # step) of the file's sample and channel axes; `spatial` holds the size of each spatial
        # axis, or a range (positive step) of it, e.g. every second point.
        self._file = file
        self._name = name
        self._rows = rows
        self._channels = channels
        self._spatial = tuple(s if isinstance(s, range) else range(int(s)) for s in spatial)
        self._dtype = np.dtype(dtype)

    @property
    def path(self) -> Path:
        """The dataset file."""
        return self._file.path

    @property
    def name(self) -> str:
        """The array's name in the file: `"inputs"` or `"outputs"`."""
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        """`(samples, channels, *spatial)`."""
        return (len(self._rows), len(self._channels), *map(len, self._spatial))

    @property
    def dtype(self) -> np.dtype:
        """The values' type (float32 for files written by [`write_dataset`][])."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return 2 + len(self._spatial)

    @property
    def size(self) -> int:
        """The number of values."""
        return math.prod(self.shape)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return (
            f"OnDiskArray({str(self.path)!r}, {self._name!r}, shape={self.shape}, "
            f"dtype={self._dtype})"
        )

    def subset(self, rows: slice = slice(None), channels: slice = slice(None)) -> OnDiskArray:
        """A range of samples and/or channels of this array, on disk too: nothing is read.

        **Arguments:**

        - `rows`: a slice of the sample axis, e.g. `slice(0, 1000)` (positive step).
        - `channels`: a slice of the channel axis, e.g. `slice(0, 10)` (positive step).

        **Returns:**

        An `OnDiskArray` of shape `(len(rows), len(channels), *spatial)` that reads the same
        file: `array.subset(rows=r, channels=c)[k]` equals `array[r, c][k]`.
        """
        return OnDiskArray(
            self._file,
            self._name,
            _subrange(self._rows, rows, "rows"),
            _subrange(self._channels, channels, "channels"),
            self._spatial,
            self._dtype,
        )

    def close(self) -> None:
        """Closes the file (shared with the other arrays of its dataset); the next read opens
        it again."""
        self._file.close()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError(
                "`OnDiskArray` cannot be converted without a copy (copy=False): its values "
                "are read from the file"
            )
        values = self[...]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, index: Any) -> np.ndarray:
        axes = (self._rows, self._channels, *self._spatial)
        selection: list[Any] = []
        shape: list[int] = []
        reorder = None
        arrays = 0
        for key, axis in zip(self._expand(index), axes, strict=True):
            if isinstance(key, slice):
                sub = _positive(axis[key])
                selection.append(slice(sub.start, sub.stop, sub.step))
                shape.append(len(sub))
                continue
            if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
                if not -len(axis) <= key < len(axis):
                    raise IndexError(
                        f"index {key} is out of bounds for an axis of size {len(axis)} of {self!r}"
                    )
                selection.append(axis[key])
                continue
            where = np.asarray(key)
            if where.dtype == np.bool_ and where.shape == (len(axis),):
                where = np.flatnonzero(where)
            elif where.shape == (0,):
                where = where.astype(np.intp)  # e.g. [], which NumPy reads as float64
            if where.ndim != 1 or not np.issubdtype(where.dtype, np.integer):
                raise IndexError(
                    f"{self!r} takes integers, slices, 1-D integer arrays, boolean masks of an "
                    f"axis and `...` as indices, got {_describe(key)}"
                )
            arrays += 1
            if arrays > 1:
                raise IndexError(
                    f"{self!r} takes at most one index array (h5py reads one fancy "
                    "selection); index the result for more"
                )
            if where.size and not (-len(axis) <= where.min() and where.max() < len(axis)):
                raise IndexError(
                    f"index array with values in [{where.min()}, {where.max()}] is out of "
                    f"bounds for an axis of size {len(axis)} of {self!r}"
                )
            where = np.where(where < 0, where + len(axis), where)
            unique, inverse = np.unique(where, return_inverse=True)
            if len(unique) != len(where) or np.any(unique != where):
                reorder = (len(shape), inverse)
            selection.append(axis.start + axis.step * unique)
            shape.append(len(where))
        if 0 in shape:
            return np.empty(tuple(shape), self._dtype)
        values = self._file.read(self._name, tuple(selection))
        if reorder is not None:
            values = np.take(values, reorder[1], axis=reorder[0])
        return values

    def _expand(self, index: Any) -> tuple[Any, ...]:
        """`index` as one key per axis (`...` and missing trailing keys become `:`)."""
        keys = index if isinstance(index, tuple) else (index,)
        if any(k is None for k in keys):
            raise IndexError(
                f"{self!r} takes no new axes (None) in an index; add them after reading"
            )
        ellipses = [i for i, k in enumerate(keys) if k is Ellipsis]
        if len(ellipses) > 1:
            raise IndexError(f"an index of {self!r} can only have a single ellipsis ('...')")
        if ellipses:
            i = ellipses[0]
            keys = keys[:i] + (slice(None),) * (self.ndim - len(keys) + 1) + keys[i + 1 :]
        if len(keys) > self.ndim:
            raise IndexError(
                f"too many indices for {self!r}: {len(keys)} given, at most {self.ndim}"
            )
        return keys + (slice(None),) * (self.ndim - len(keys))


def _positive(axis: range) -> range:
    """A range in increasing order (h5py reads nothing else): one of at most one element
    may have come from a negative step."""
    if axis.step > 0:
        return axis
    if len(axis) > 1:
        raise IndexError(
            "`OnDiskArray` takes slices with a positive step only (h5py reads in increasing "
            "order); reverse the result instead"
        )
    start = axis.start if len(axis) else 0
    return range(start, start + len(axis))


def _subrange(axis: range, part: Any, name: str) -> range:
    if not isinstance(part, slice):
        raise ValueError(
            f"`OnDiskArray.subset` needs `{name}` to be a slice, e.g. slice(0, 10), got "
            f"{_describe(part)}."
        )
    if part.step is not None and (isinstance(part.step, bool) or not part.step > 0):
        raise ValueError(f"`OnDiskArray.subset` needs `{name}` with a positive step, got {part!r}.")
    return _positive(axis[part])


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


class _Hasher:
    """sha256 over each named array's bytes in write order, combined in a fixed order."""

    def __init__(self, names: Iterable[str]):
        self._h = {name: hashlib.sha256() for name in names}

    def update(self, name: str, array: np.ndarray) -> None:
        # Little-endian bytes whatever byte order the file declares: the checksum covers the
        # values, so a damaged byte-order flag in a file's header is caught too. Updating with
        # consecutive parts of an array gives the checksum of the whole.
        array = np.asarray(array)
        self._h[name].update(np.ascontiguousarray(array, array.dtype.newbyteorder("<")))

    def hexdigest(self) -> str:
        combined = hashlib.sha256()
        for name in sorted(self._h):
            combined.update(name.encode())
            combined.update(self._h[name].digest())
        return combined.hexdigest()


def _scan(hasher: _Hasher, name: str, array: Any) -> int | np.integer:
    """Adds `array` (in memory, or an h5py dataset: then read) to the checksum, about
    `_SCAN_BYTES` at a time; returns its number of non-finite values.

    A chunked dataset is read in whole chunks along the sample axis where they fit in a part,
    so that a compressed chunk is decompressed once.
    """
    row_bytes = array.dtype.itemsize * math.prod(array.shape[1:])
    rows = max(1, _SCAN_BYTES // max(1, row_bytes))
    chunk_rows = (getattr(array, "chunks", None) or (1,))[0]
    if chunk_rows <= rows:
        rows -= rows % chunk_rows
    bad = 0
    for start in range(0, array.shape[0], rows):
        chunk = np.asarray(array[start : start + rows])
        hasher.update(name, chunk)
        bad += chunk.size - np.count_nonzero(np.isfinite(chunk))
        del chunk  # before the next one is read
    return bad


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
    if generation fails or is interrupted, or a write fails (disk full, quota, file size limit),
    an existing file at `path` is untouched and the temporary file is removed.

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

    **Raises:**

    `OSError` naming `path` and the cause (e.g. `errno.ENOSPC`) if a write fails; `DatasetError`
    if the chunks do not add up to `n` samples of the given shapes.
    """
    from importlib.metadata import version

    hasher = _Hasher((*_ARRAYS, "grid", "attrs"))
    with atomic_path(path) as tmp, _Sink(tmp) as sink:
        f = None
        try:
            with deferred_signals():
                f = h5py.File(sink, "w", libver="earliest")
                # Chunked layout along the sample axis, so later readers can stream batches.
                dsets = {
                    name: f.create_dataset(
                        name,
                        shape=(n, *shape),
                        dtype=np.float32,
                        chunks=(1, *shape),
                        track_times=False,
                    )
                    for name, shape in (("inputs", input_shape), ("outputs", output_shape))
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
                    with deferred_signals():
                        dsets["inputs"][start:stop] = x
                        dsets["outputs"][start:stop] = y
                    sink.check(path)
                    hasher.update("inputs", x)
                    hasher.update("outputs", y)
                    start = stop
                    bar.update(x.shape[0])
            if start != n:
                raise DatasetError(f"generator produced {start} samples, expected n={n}")
            attrs = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "recipe": json.dumps(recipe, sort_keys=True),
                "seed": int(seed),
                "sciml_version": version("sciml"),
                "description": description,
            }
            with deferred_signals():
                g = f.create_group("grid", track_order=True)
                for i, coords in enumerate(grid):
                    coords = np.asarray(coords, np.float64)
                    g.create_dataset(f"x{i}", data=coords, track_times=False)
                    hasher.update("grid", coords)
                hasher.update("attrs", _metadata(attrs))
                checksum = attrs["sha256"] = hasher.hexdigest()
                for name in ("format", "format_version", "recipe", "seed", "sciml_version"):
                    _write_attr(f, name, attrs[name])
                _write_attr(f, "sha256", checksum)
                _write_attr(f, "description", description)
        finally:
            if f is not None:
                with deferred_signals():
                    f.close()
        sink.check(path)
    return checksum


class _Sink:
    """The file object through which HDF5 writes a new dataset file (h5py's `fileobj` driver),
    so that HDF5 never sees a failed write.

    HDF5 does not recover from one: a dataset whose buffered values cannot be written when it
    is closed (disk full, quota, file size limit, I/O error) is left half-closed, and the
    interpreter crashes (segfault) when HDF5 next flushes the file, at exit at the latest. Here
    the first failure is recorded in `error` instead, and what HDF5 writes after it is kept in
    memory (and read back from there); the writer stops at the next `check`, closes the file,
    and reports the error. Only what HDF5 still buffers at that point is kept: a chunk of
    samples and the metadata, not the dataset.
    """

    def __init__(self, path: Path):
        self._file = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed by __exit__
        self._position = 0
        self._kept: list[tuple[int, bytes]] = []  # (offset, bytes) written after the failure
        self.error: OSError | None = None

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def check(self, path: str | os.PathLike) -> None:
        """Raises the recorded failure as an `OSError` naming `path` (not the temporary)."""
        if self.error is not None:
            raise OSError(self.error.errno, self.error.strerror, str(path)) from self.error

    def _fail(self, error: OSError) -> None:
        if self.error is None:
            self.error = error

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            offset += max(
                [os.fstat(self._file.fileno()).st_size, *(o + len(b) for o, b in self._kept)]
            )
        elif whence == os.SEEK_CUR:
            offset += self._position
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def write(self, data: Any) -> int:
        data = memoryview(data).cast("B")
        if self.error is None:
            try:
                self._file.seek(self._position)
                done = 0
                while done < len(data):
                    written = self._file.write(data[done:])
                    if not written:
                        raise OSError(errno.EIO, os.strerror(errno.EIO))
                    done += written
            except OSError as e:
                self._fail(e)
        if self.error is not None:
            self._kept.append((self._position, bytes(data)))
        self._position += len(data)
        return len(data)

    def read(self, size: int) -> bytes:
        out = bytearray(size)  # beyond the end of the file: zeros, as HDF5's own driver reads
        try:
            self._file.seek(self._position)
            done = 0
            while done < size:
                got = self._file.readinto(memoryview(out)[done:])
                if not got:
                    break
                done += got
        except OSError as e:
            self._fail(e)
        for offset, data in self._kept:
            lo, hi = max(offset, self._position), min(offset + len(data), self._position + size)
            if lo < hi:
                out[lo - self._position : hi - self._position] = data[lo - offset : hi - offset]
        self._position += size
        return bytes(out)

    def truncate(self, size: int) -> None:
        if self.error is None:
            try:
                self._file.truncate(size)
            except OSError as e:
                self._fail(e)

    def flush(self) -> None:
        pass  # unbuffered; `atomic_path` fsyncs the complete file


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
    check_storage(obj, name, where, size)
    return obj


# For each HDF5 filter a dataset file may use: its name, and the most bytes one stored byte can
# decode to. Deflate (gzip) reaches at most 1032:1 (a 258-byte match coded in 2 bits); an LZF
# back reference of 3 bytes copies at most 264 bytes; shuffle reorders bytes and Fletcher-32 only
# adds a checksum.
_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: ("gzip", 1032),
    h5py.h5z.FILTER_LZF: ("lzf", 88),
    h5py.h5z.FILTER_SHUFFLE: ("shuffle", 1),
    h5py.h5z.FILTER_FLETCHER32: ("fletcher32", 1),
}


def check_storage(obj: h5py.Dataset, name: str, where: str, size: int) -> None:
    """Checks, from the file's index alone, that every value `obj` declares is stored in the
    file, and fits in what is stored: otherwise reading it would allocate and fill (HDF5 returns
    a fill value for what is not stored) as much memory, and take as long, as a damaged or
    crafted shape declares, whatever the size of the file."""
    plist = obj.id.get_create_plist()
    layout = plist.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT) or (
        plist.get_external_count()
    ):
        raise DatasetError(
            f"{where}: {name!r} keeps its values outside the file (virtual or external "
            "storage); expected them in the file"
        )
    expansion, filters = 1, []
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in _FILTERS:
            raise DatasetError(
                f"{where}: {name!r} is stored with HDF5 filter {code}, which sciml does not "
                f"read; allowed: no filter, {', '.join(n for n, _ in _FILTERS.values())}"
            )
        filters.append(_FILTERS[code][0])
        expansion *= _FILTERS[code][1]
    itemsize = obj.dtype.itemsize
    if layout == h5py.h5d.CHUNKED:
        needed = math.prod(-(-s // c) for s, c in zip(obj.shape, obj.chunks, strict=True))
        stored = obj.id.get_num_chunks()
        if stored != needed:
            raise DatasetError(
                f"{where}: {name!r} has shape {obj.shape} in {needed} chunks, of which the "
                f"file stores {stored}; the file is truncated or corrupted"
            )
        declared = needed * math.prod(obj.chunks) * itemsize  # a chunk at an edge is whole
    else:
        declared = obj.size * itemsize
        stored = obj.id.get_storage_size()
        if stored < declared:
            raise DatasetError(
                f"{where}: {name!r} has shape {obj.shape} ({declared} bytes), of which the file "
                f"stores {stored}; the file is truncated or corrupted"
            )
    if not filters:
        if declared > size:
            raise DatasetError(
                f"{where}: {name!r} has shape {obj.shape}, more than the file's {size} bytes "
                "hold; the file is truncated or corrupted"
            )
        return
    stored = min(obj.id.get_storage_size(), size)  # an index can claim more than the file holds
    if declared > stored * expansion:
        raise DatasetError(
            f"{where}: {name!r} has shape {obj.shape} ({declared} bytes), more than its "
            f"{stored} bytes compressed with {' + '.join(filters)} can hold (at most "
            f"{expansion}:1); the file is corrupted"
        )


def load_dataset(path: str | os.PathLike, *, verify: bool = True) -> Dataset:
    """Reads a dataset written by [`write_dataset`][] into host memory.

    **Arguments:**

    - `path`: the `.h5` file.
    - `verify`: recompute the checksum and compare it with the stored one, and check that
        every value is finite (both over bounded parts of the arrays at a time).

    **Returns:**

    A [`Dataset`][] of NumPy arrays. For a file larger than memory, see [`open_dataset`][].

    **Raises:**

    `DatasetError` (a `ValueError`) with one line naming the file and what is wrong: missing
    file, not HDF5, truncated, missing arrays or attributes, wrong types, inconsistent shapes,
    arrays larger than what the file stores or than the available memory, checksum mismatch,
    non-finite values.
    """
    return _read(Path(path), verify=verify, lazy=False)


def open_dataset(path: str | os.PathLike, *, verify: bool = True) -> Dataset:
    """Opens a dataset written by [`write_dataset`][] without reading its arrays into memory.

    The file is checked as by [`load_dataset`][], with the same errors: with `verify`, the
    checksum and the finiteness check read the file once, about 64 MB at a time. The `inputs`
    and `outputs` of the result are [`OnDiskArray`][]s, which read only the samples they are
    indexed with, so that `sciml.train.fit` and `evaluate` stream a dataset larger than memory
    batch by batch (`sciml run` does with `data.stream = true`).

    **Arguments:**

    - `path`: the `.h5` file.
    - `verify`: recompute the checksum and compare it with the stored one, and check that
        every value is finite.

    **Returns:**

    A [`Dataset`][] whose arrays stay on disk; the grid and the attributes are in memory. It
    holds the file open (read-only) until `close()`, the end of a `with` block, or garbage
    collection.

    **Raises:**

    `DatasetError`, as [`load_dataset`][]; later, from a read, if the file changed or was
    deleted since it was opened.
    """
    return _read(Path(path), verify=verify, lazy=True)


def _read(path: Path, *, verify: bool, lazy: bool) -> Dataset:
    """`load_dataset` (`lazy=False`) and `open_dataset` (`lazy=True`): the same checks, in the
    same order, with the same messages. All that can be checked without reading the arrays
    (types, shapes, storage, memory) is checked before they are read."""
    where = _where(path)
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise DatasetError(f"dataset file {str(path)!r} is a directory; expected an HDF5 file")
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetError(f"{where}: the file is empty; expected an HDF5 dataset file")
    handle = None
    bad: dict[str, int] = {}
    try:
        handle = h5py.File(path, "r")
        identity = _identity(handle) if lazy else None
        attrs = _read_attrs(handle, path)
        x = _check_array(handle, "inputs", where, grid=False, size=size)
        y = _check_array(handle, "outputs", where, grid=False, size=size)
        axes = [f"x{i}" for i in range(x.ndim - 2)]
        group = handle.get("grid")
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
        coords = [_check_array(handle, f"grid/{a}", where, grid=True, size=size) for a in axes]
        spatial = tuple(c.shape[0] for c in coords)
        if x.shape[0] != y.shape[0] or x.shape[2:] != spatial or y.shape[2:] != spatial:
            raise DatasetError(
                f"{where}: inconsistent shapes inputs {x.shape}, outputs {y.shape}, "
                f"grid {spatial}; expected (n, c_in, *spatial), (n, c_out, *spatial) and one "
                "coordinate vector per spatial axis"
            )
        if not lazy:
            _check_memory(where, (x, y, *coords))
        names = (*_ARRAYS, "grid") if attrs["format_version"] == 1 else (*_ARRAYS, "grid", "attrs")
        hasher = _Hasher(names)
        # Either way the file is read in the same order: inputs, outputs, grid.
        inputs, outputs = (x, y) if lazy else (_read_whole(x), _read_whole(y))
        if verify:
            arrays = (("inputs", inputs), ("outputs", outputs))
            bad = {name: _scan(hasher, name, a) for name, a in arrays}
        grid = tuple(c[...] for c in coords)
        if not lazy:
            handle.close()
    except Exception as e:  # h5py raises many kinds of error for a damaged file
        if handle is not None:
            handle.close()
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(
            f"{where}: unreadable or corrupted HDF5 file ({_reason(e)}); expected a dataset "
            "written by sciml"
        ) from None
    try:
        if verify:
            bad["grid"] = sum(_scan(hasher, "grid", c) for c in grid)
            if "attrs" in names:
                hasher.update("attrs", _metadata(attrs))
            if hasher.hexdigest() != attrs["sha256"]:
                raise DatasetError(
                    f"{where}: checksum mismatch (the stored sha256 does not match the "
                    "contents); the file is corrupted: regenerate it"
                )
            for name in ("inputs", "outputs", "grid"):
                if bad[name]:
                    raise DatasetError(
                        f"{where}: {name} hold {bad[name]} non-finite values (NaN or inf); "
                        "expected finite numbers"
                    )
        try:
            attrs["recipe"] = json.loads(attrs["recipe"])
        except (ValueError, RecursionError) as e:
            raise DatasetError(
                f"{where}: attribute 'recipe' is not valid JSON ({_reason(e)})"
            ) from None
        if not lazy:
            return Dataset(inputs, outputs, grid, attrs)
        file = ReadOnlyFile(path, handle, identity)
        file.check(handle)  # nothing changed the file while it was verified
    except BaseException:
        handle.close()
        raise
    return Dataset(
        *(
            OnDiskArray(file, name, range(a.shape[0]), range(a.shape[1]), a.shape[2:], a.dtype)
            for name, a in (("inputs", x), ("outputs", y))
        ),
        grid,
        attrs,
    )


def _read_whole(array: h5py.Dataset) -> np.ndarray:
    # One read of the whole array: HDF5 then walks a chunked array's index once, where reads of
    # parts look every chunk up (30% slower over 200,000 small chunks).
    values = np.empty(array.shape, array.dtype)
    if values.size:
        array.read_direct(values)
    return values


def _check_memory(where: str, arrays: Iterable[h5py.Dataset]) -> None:
    """Refuses arrays that would take more memory than is available, before they are read."""
    needed = sum(a.size * a.dtype.itemsize for a in arrays)
    try:
        available = available_memory()
    except MachineSettingError as e:
        raise DatasetError(str(e)) from None
    if available is not None and needed > available:
        raise DatasetError(
            f"{where}: the arrays take {_human(needed)} in memory, more than the "
            f"{_human(available)} available; read it batch by batch with open_dataset "
            "(data.stream = true in a config)"
        )


def _human(nbytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
