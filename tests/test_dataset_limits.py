"""Dataset files that declare more than they hold, and dataset writes that fail or are
interrupted (issue 16, "Reliability II").

A reader checks, before it reads an array, that the file stores every value the array's shape
declares: a file of a few kB declaring gigabytes is refused at once with one line, by both
readers, where it used to allocate what it declared (`load_dataset`) or read fill values for
minutes (`open_dataset`). A writer that fails (disk full, file size limit) or is interrupted
reports one line, leaves no temporary file and never crashes the interpreter, where HDF5 used to
segfault at exit after a failed close. The size fuzzing is in tests/test_fuzz_datasets.py.
"""

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from sciml.data import DatasetError, _io, load_dataset, open_dataset, write_dataset

READERS = [load_dataset, open_dataset]
ATTRS = {
    "format": "sciml-dataset",
    "format_version": 2,
    "recipe": "{}",
    "seed": 0,
    "sciml_version": "0",
    "sha256": "0" * 64,
    "description": "",
}


def _crafted(path: Path, shape, *, write=None, **create) -> Path:
    """A file laid out as sciml writes one, whose `inputs` and `outputs` declare `shape` (not
    written unless `write(dataset)` writes them): what a damaged or hostile file can look like."""
    with h5py.File(path, "w") as f:
        for name in ("inputs", "outputs"):
            dataset = f.create_dataset(name, shape=shape, dtype=np.float32, **create)
            if write is not None:
                write(dataset)
        for i, s in enumerate(shape[2:]):
            f.create_dataset(f"grid/x{i}", data=np.linspace(0, 1, s))
        for name, value in ATTRS.items():
            _io._write_attr(f, name, value)
    return path


def _refused(path: Path, read) -> str:
    start = time.perf_counter()
    with pytest.raises(DatasetError) as caught:
        read(path)
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: "), message
    assert elapsed < 1.0, (elapsed, message)
    return message


def _write(path: Path, n=6, shape=(2, 5, 4)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = (2 * x + 1).astype(np.float32)
    write_dataset(
        path,
        [(x[:4], y[:4]), (x[4:], y[4:])],
        n=n,
        input_shape=shape,
        output_shape=shape,
        grid=tuple(np.linspace(0, 1, s) for s in shape[1:]),
        recipe={"name": "test"},
        seed=1,
    )
    return x, y


# --- files that declare more than they hold -----------------------------------------------


# The files of the issue: 6 kB, gzip-compressed arrays of 2e6 (load_dataset used 11 GB and a
# minute before "checksum mismatch") or 1e9 samples (open_dataset read fill values for over 5
# minutes), no chunk ever written.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [2_000_000, 1_000_000_000])
@pytest.mark.parametrize("read", READERS)
def test_a_few_kb_declaring_billions_of_values_is_refused_at_once(tmp_path, n, read):
    path = _crafted(tmp_path / "crafted.h5", (n, 1, 15, 15), chunks=(1, 1, 15, 15), compression=9)
    assert path.stat().st_size < 10_000
    message = _refused(path, read)
    assert f"'inputs' has shape ({n}, 1, 15, 15) in {n} chunks, of which the file stores 0" in (
        message
    )


@pytest.mark.parametrize("read", READERS)
def test_unwritten_or_partly_written_arrays_are_refused(tmp_path, read):
    # Contiguous, never written: HDF5 would return fill values.
    contiguous = _crafted(tmp_path / "contiguous.h5", (2**30, 1, 4, 4))
    assert "(68719476736 bytes), of which the file stores 0" in _refused(contiguous, read)
    # Chunked without compression, 3 of 10 chunks written.
    partly = _crafted(
        tmp_path / "partly.h5",
        (10, 1, 4, 4),
        chunks=(1, 1, 4, 4),
        write=lambda d: d.write_direct(np.ones((3, 1, 4, 4), np.float32), np.s_[:3], np.s_[:3]),
    )
    assert "in 10 chunks, of which the file stores 3" in _refused(partly, read)


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "filters, bound",
    [({"compression": "gzip"}, "gzip can hold (at most 1032:1)"),
     ({"compression": "gzip", "shuffle": True}, "shuffle + gzip can hold (at most 1032:1)"),
     ({"compression": "lzf"}, "lzf can hold (at most 88:1)")],
)  # fmt: skip
def test_compressed_chunks_cannot_hold_more_than_their_filters_expand_to(
    tmp_path, read, filters, bound
):
    # Every chunk is there, but each is a few bytes that claim to decompress to 1 MB.
    def tiny_chunks(dataset):
        for i in range(dataset.shape[0]):
            dataset.id.write_direct_chunk((i, 0, 0, 0), zlib.compress(bytes(64)))

    shape = (4, 1, 512, 512)
    path = _crafted(
        tmp_path / "ratio.h5", shape, chunks=(1, *shape[1:]), write=tiny_chunks, **filters
    )
    message = _refused(path, read)
    assert f"'inputs' has shape {shape} (4194304 bytes), more than its" in message
    assert bound in message and message.endswith("the file is corrupted"), message


@pytest.mark.parametrize("read", READERS)
def test_filters_and_storage_that_sciml_does_not_read_are_refused(tmp_path, read):
    def ones(dataset):
        dataset[...] = 1.0

    # The scale-offset filter (HDF5 filter 6) can store a constant array in no bits at all.
    scaled = _crafted(
        tmp_path / "s.h5", (3, 1, 4, 4), chunks=(1, 1, 4, 4), scaleoffset=2, write=ones
    )
    assert "'inputs' is stored with HDF5 filter 6, which sciml does not read; allowed: no " in (
        _refused(scaled, read)
    )
    # Values in another file, named by this one.
    external = [(str(tmp_path / "elsewhere.bin"), 0, h5py.h5f.UNLIMITED)]
    elsewhere = _crafted(tmp_path / "e.h5", (3, 1, 4, 4), external=external, write=ones)
    assert "'inputs' keeps its values outside the file (virtual or external storage)" in (
        _refused(elsewhere, read)
    )


def test_arrays_larger_than_the_available_memory_are_left_on_disk(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    x, _ = _write(path)
    available = _io.available_memory()
    assert available is None or available > 0
    monkeypatch.setattr(_io, "available_memory", lambda: 500)
    message = _refused(path, load_dataset)
    assert message == (
        f"{path}: the arrays take 2.0 kB in memory, more than the 500 bytes available; read it "
        "batch by batch with open_dataset (data.stream = true in a config)"
    )
    with open_dataset(path) as ds:  # the suggested way
        np.testing.assert_array_equal(ds.inputs[...], x)


@pytest.mark.parametrize(
    "filters",
    [{"compression": "gzip", "shuffle": True, "fletcher32": True}, {"compression": "lzf"}, {}],
)
@pytest.mark.parametrize("scan_bytes", [64 << 20, 800, 100])
def test_compressed_and_multi_sample_chunks_read_as_written(
    tmp_path, monkeypatch, filters, scan_bytes
):
    # sciml writes one uncompressed chunk per sample; a file re-packed with compression and
    # chunks of several samples (same values, same checksum) reads the same.
    path, packed = tmp_path / "d.h5", tmp_path / "packed.h5"
    x, y = _write(path)
    with h5py.File(path) as f, h5py.File(packed, "w") as g:
        for name in ("inputs", "outputs"):
            g.create_dataset(name, data=f[name][...], chunks=(4, 2, 5, 2), **filters)
        f.copy("grid", g)
        for name, value in f.attrs.items():
            g.attrs[name] = value
    # The verification reads all at once, 4 samples (one row of chunks: 5 would fit), or one.
    monkeypatch.setattr(_io, "_SCAN_BYTES", scan_bytes)
    for read in READERS:
        with read(packed) as ds:
            np.testing.assert_array_equal(np.asarray(ds.inputs), x)
            np.testing.assert_array_equal(np.asarray(ds.outputs), y)
            assert ds.attrs == load_dataset(path).attrs


# --- writes that fail or are interrupted --------------------------------------------------

# `sciml data` with every descriptor open on its temporary file pointed at /dev/full once the
# HDF5 file is created: each write then fails with ENOSPC, as on a full disk.
_FULL_DISK = """
import os, sys
import h5py

create = h5py.File.__init__

def full(self, *args, **kwargs):
    create(self, *args, **kwargs)
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if os.path.basename(target).startswith(".x.h5.") and target.endswith(".tmp"):
            device = os.open("/dev/full", os.O_RDWR)
            os.dup2(device, int(fd))
            os.close(device)

h5py.File.__init__ = full
from sciml._app.cli import main
sys.exit(main(sys.argv[1:]))
"""
_CLI = "import sys; from sciml._app.cli import main; sys.exit(main(sys.argv[1:]))"
DATA = ["data", "darcy", "--n", "20", "--resolution", "16", "--solve-resolution", "16"]


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def _no_file_left(directory: Path) -> None:
    assert sorted(os.listdir(directory)) == [], os.listdir(directory)


# HDF5 used to leave a dataset half-closed when writing it out at close failed, and the
# interpreter crashed (exit 139) when HDF5 flushed the file again at exit.
@pytest.mark.skipif(
    not (os.path.exists("/dev/full") and os.path.isdir("/proc/self/fd")), reason="Linux only"
)
@pytest.mark.parametrize("cause", ["no space left", "file size limit"])
def test_a_failed_dataset_write_is_one_line_and_leaves_no_file(tmp_path, cause):
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    command = [sys.executable, "-c", _FULL_DISK if cause == "no space left" else _CLI]
    if cause == "file size limit":  # a real failing write: files of at most 16 kB (EFBIG)
        command = ["bash", "-c", "ulimit -f 16; trap '' XFSZ; exec \"$@\"", "bash", *command]
    done = subprocess.run(
        [*command, *DATA, "--out", str(out), "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and str(out) in line, line
    assert re.search(f"{cause}|file too large", line, re.IGNORECASE), line
    _no_file_left(out.parent)


# Ctrl-C while `sciml data` generates and writes its samples, shortly after the temporary file
# appears (the first samples compile and are written then) and later on.
@pytest.mark.timeout(300)
def test_ctrl_c_during_sciml_data_exits_130_and_leaves_no_file(tmp_path):
    for i, delay in enumerate([0.0, 0.4, 1.5]):
        directory = tmp_path / str(i)
        directory.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLI, "data", "darcy", "--n", "400", "--resolution", "16",
             "--out", str(directory / "x.h5"), "--no-progress"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not os.listdir(directory) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (delay, proc.returncode, err[-3000:])
        assert "Traceback" not in err and "Fatal Python error" not in err, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("error: interrupted"), err[-3000:]
        _no_file_left(directory)


# HDF5 writes through Python (`_Sink`): a signal handled there would raise inside HDF5, as a
# failed write does. It is handled right after the HDF5 call instead.
_SIGNAL_IN_A_WRITE = """
import os, signal, sys
import h5py
import numpy as np
from sciml.data import _io

write, calls = _io._Sink.write, []

def interrupted(self, data):
    calls.append(1)
    if len(calls) == 20:  # among the chunks of the first write of samples
        signal.raise_signal(signal.SIGINT)  # to this thread: no other thread takes it
    return write(self, data)

_io._Sink.write = interrupted
x = np.ones((50, 1, 8, 8), np.float32)
try:
    _io.write_dataset(sys.argv[1], [(x, x)], n=50, input_shape=(1, 8, 8), output_shape=(1, 8, 8),
                      grid=(np.zeros(8), np.zeros(8)), recipe={}, seed=0)
except KeyboardInterrupt as e:
    innermost = e.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    open_files = h5py.h5f.get_obj_count(types=h5py.h5f.OBJ_FILE)
    print(innermost.tb_frame.f_code.co_name, len(calls) >= 20, open_files)
else:
    print("not-interrupted", len(calls))
"""


def test_a_signal_during_an_hdf5_write_is_handled_after_it(tmp_path):
    out = tmp_path / "x.h5"
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_A_WRITE, str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Raised where the deferred signal is handled, with no HDF5 file left open.
    assert done.stdout.split() == ["deferred", "True", "0"], done
    assert "Exception ignored" not in done.stderr, done.stderr
    _no_file_left(tmp_path)
