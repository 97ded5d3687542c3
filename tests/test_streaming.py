"""Datasets larger than memory: `open_dataset` reads what it is indexed with, checks the file as
`load_dataset` does (streaming the checksum), and `fit` / `sciml run` train from it in bounded
memory with the same results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sciml._app.datasets import obtain_dataset, task_arrays
from sciml.data import (
    DatasetError,
    OnDiskArray,
    _io,
    darcy_recipe_info,
    load_dataset,
    open_dataset,
    write_dataset,
)

REPO = Path(__file__).parent.parent


def _write(path, n=23, chunk=5, nan_at=None, spatial=(4, 5)):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, *spatial)).astype(np.float32)
    y = rng.standard_normal((n, 2, *spatial)).astype(np.float32)
    if nan_at is not None:
        x.reshape(-1)[list(nan_at)] = np.nan
    write_dataset(
        path,
        ((x[i : i + chunk], y[i : i + chunk]) for i in range(0, n, chunk)),
        n=n,
        input_shape=x.shape[1:],
        output_shape=y.shape[1:],
        grid=tuple(np.linspace(0, 1, s) for s in spatial),
        recipe={"name": "test"},
        seed=3,
    )
    return x, y


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("streaming") / "d.h5"
    x, y = _write(path)
    return path, x, y


INDICES = [
    3,
    -1,
    np.int64(7),
    slice(None),
    slice(2, 9),
    slice(1, None, 4),
    slice(9, 2),  # empty
    np.array([0, 4, 19]),  # sorted: as the shuffled batches of `fit`
    np.array([19, 4, 4, -1]),  # any order, repeats, negative
    np.array([], dtype=int),
    [1, 2],
    np.arange(23) % 3 == 0,  # a boolean mask
    (slice(2, 9), 1),
    (np.array([3, 5]), slice(0, 2), 3),
    (slice(None), np.array([2, 0])),
    (4, ..., 2),
    (..., slice(1, 3)),
    (slice(0, 20, 3), 2, np.array([0, 3]), slice(None, None, 2)),
    ...,
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_indexing_reads_what_numpy_would(data, index):
    path, x, _ = data
    with open_dataset(path) as ds:
        got = ds.inputs[index]
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, x[index])
    assert got.shape == x[index].shape


def test_open_dataset_matches_load_dataset(data):
    path, x, y = data
    loaded = load_dataset(path)
    with open_dataset(path) as ds:
        for a, b in ((ds.inputs, x), (ds.outputs, y)):
            assert isinstance(a, OnDiskArray)
            assert (a.shape, a.dtype, a.ndim, a.size, len(a)) == (
                b.shape,
                b.dtype,
                b.ndim,
                b.size,
                len(b),
            )
            np.testing.assert_array_equal(np.asarray(a), b)
        np.testing.assert_array_equal(np.asarray(ds.outputs), loaded.outputs)
        assert ds.attrs == loaded.attrs and len(ds) == len(loaded) == 23
        for g, h in zip(ds.grid, loaded.grid, strict=True):
            np.testing.assert_array_equal(g, h)
        assert ds.inputs.path == Path(path) and ds.outputs.name == "outputs"
        assert "shape=(23, 3, 4, 5)" in repr(ds.inputs)


def test_subsets_and_split_stay_on_disk(data):
    path, x, y = data
    with open_dataset(path) as ds:
        part = ds.inputs.subset(rows=slice(3, 20), channels=slice(1, 3))
        assert isinstance(part, OnDiskArray) and part.shape == (17, 2, 4, 5)
        ref = x[3:20, 1:3]
        for index in (0, -2, slice(4, 11, 3), np.array([16, 0, 5]), (slice(None), 1), ...):
            np.testing.assert_array_equal(part[index], ref[index])
        nested = part.subset(rows=slice(2, None, 3), channels=slice(1, None))
        np.testing.assert_array_equal(np.asarray(nested), ref[2::3, 1:])
        assert part.subset(rows=slice(30, 40)).shape == (0, 2, 4, 5)
        head, tail = ds.split(15)
        assert all(isinstance(a, OnDiskArray) for a in (head.inputs, tail.outputs))
        np.testing.assert_array_equal(np.asarray(head.inputs), x[:15])
        np.testing.assert_array_equal(np.asarray(tail.outputs), y[15:])
        loaded_head, loaded_tail = load_dataset(path).split(15)
        np.testing.assert_array_equal(np.asarray(tail.inputs), loaded_tail.inputs)
        np.testing.assert_array_equal(np.asarray(head.outputs), loaded_head.outputs)


@pytest.mark.untyped
def test_bad_indices_and_subsets_are_clear_errors(data):
    path, _, _ = data
    with open_dataset(path) as ds:
        a = ds.inputs
        for index, fragment in [
            (23, "index 23 is out of bounds for an axis of size 23"),
            (np.array([0, 30]), "out of bounds"),
            (1.5, "takes integers, slices, 1-D integer arrays"),
            (np.zeros((2, 2), int), "takes integers, slices, 1-D integer arrays"),
            ((np.array([0]), np.array([1])), "at most one index array"),
            (slice(None, None, -1), "positive step only"),
            (None, "no new axes"),
            ((0, 0, 0, 0, 0), "too many indices"),
            ((..., 0, ...), "single ellipsis"),
        ]:
            with pytest.raises(IndexError, match=fragment):
                a[index]
        with pytest.raises(ValueError, match="needs `rows` to be a slice, e.g. slice"):
            a.subset(rows=3)
        with pytest.raises(ValueError, match="needs `channels` with a positive step"):
            a.subset(channels=slice(None, None, -1))
        with pytest.raises(ValueError, match="without a copy"):
            np.asarray(a, copy=False)


def test_the_file_handle(data, tmp_path):
    path, x, _ = data
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    ds = open_dataset(copy)
    ds.close()
    np.testing.assert_array_equal(ds.inputs[2], x[2])  # reopened after close
    ds.close()
    copy.unlink()
    with pytest.raises(DatasetError, match="copy.h5: the file no longer exists"):
        ds.inputs[0]

    # Deleted while open: it is still read as it was opened.
    copy.write_bytes(path.read_bytes())
    ds = open_dataset(copy)
    copy.unlink()
    np.testing.assert_array_equal(ds.outputs[-1], load_dataset(path).outputs[-1])
    ds.close()

    # Changed or truncated in place since it was opened: refused, even with the handle open.
    for change in ("touch", "truncate"):
        copy.write_bytes(path.read_bytes())
        with open_dataset(copy) as ds:
            if change == "touch":
                os.utime(copy, ns=(0, 0))
            else:
                os.truncate(copy, copy.stat().st_size // 2)
            with pytest.raises(DatasetError, match="the file changed since it was opened"):
                ds.inputs[-3:]


def _flip_byte_of(path, name):
    with h5py.File(path, "r") as f:
        offset = f[name].id.get_chunk_info(1).byte_offset + 7
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


def _errors(path):
    """The messages of `load_dataset` and of `open_dataset` for `path`."""
    messages = []
    for read in (load_dataset, open_dataset):
        with pytest.raises(DatasetError) as info:
            read(path)
        messages.append(str(info.value))
    return messages


@pytest.mark.parametrize("scan_bytes", [64 << 20, 1000])  # one block, or many per array
def test_corruption_is_found_while_streaming(tmp_path, monkeypatch, scan_bytes):
    monkeypatch.setattr(_io, "_SCAN_BYTES", scan_bytes)
    path = tmp_path / "d.h5"
    _write(path)
    for read in (load_dataset, open_dataset):
        assert read(path).attrs["seed"] == 3  # the checksum of an intact file holds

    for name in ("inputs", "outputs"):
        _write(path)
        _flip_byte_of(path, name)
        loaded, opened = _errors(path)
        assert loaded == opened and "checksum mismatch" in loaded
        with open_dataset(path, verify=False) as ds:  # still readable on request
            assert ds.inputs.shape == (23, 3, 4, 5)

    # NaNs written by the writer carry a valid checksum; two of them, far apart.
    _write(path, nan_at=(5, 23 * 60 - 1))
    loaded, opened = _errors(path)
    assert (
        loaded
        == opened
        == f"{path}: inputs hold 2 non-finite values (NaN or inf); " + ("expected finite numbers")
    )

    _write(path)
    os.truncate(path, path.stat().st_size - 2000)
    loaded, opened = _errors(path)
    assert loaded == opened and str(path) in loaded and len(loaded.splitlines()) == 1


def test_obtain_dataset_and_task_arrays_stream(data, tmp_path):
    path, x, y = data
    config = {"task": {"kind": "direct"}, "data": {"recipe": "darcy"}}
    with open_dataset(path) as ds:
        parts = task_arrays(config, ds, 20, 23)
        assert all(isinstance(a, OnDiskArray) for a in parts)
        np.testing.assert_array_equal(np.asarray(parts[0]), x[20:23])
        np.testing.assert_array_equal(np.asarray(parts[1]), y[20:23])
        trajectory = {"task": {"kind": "rollout", "t_in": 1, "t_out": 1}, "data": config["data"]}
        frames_in, frames_out = task_arrays(trajectory, ds, 5, 9)
        assert frames_in.shape == (4, 1, 4, 5)
        np.testing.assert_array_equal(np.asarray(frames_in), y[5:9, :1])
        np.testing.assert_array_equal(np.asarray(frames_out), y[5:9, 1:2])

    square = tmp_path / "square.h5"
    _write(square, spatial=(4, 4))
    data_cfg = {"path": str(square), "n_train": 20, "n_test": 3, "recipe": "darcy", "resolution": 4}
    assert isinstance(obtain_dataset(data_cfg).inputs, np.ndarray)
    with obtain_dataset({**data_cfg, "stream": True}) as ds:
        assert isinstance(ds.inputs, OnDiskArray) and ds.inputs.shape == (23, 3, 4, 4)


# --- bounded memory and `sciml run`, in subprocesses (the CPU backend, no float64) ------------

# Trains one epoch over the file with `fit` and reports the peak resident memory before and
# after. The warm-up epoch on arrays in memory of the same shapes compiles the step first, so
# the growth measured is what streaming the file costs. The child process after `os.fork`
# checks that a forked worker reopens the file (JAX has started no threads yet).
_FIT_SCRIPT = """
import json, os, resource, sys
import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
from sciml import train
from sciml.data import open_dataset

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

path, batch = sys.argv[1], 32
ds = open_dataset(path, verify=False)
pid = os.fork()
if pid == 0:
    os._exit(0 if np.isfinite(ds.inputs[np.array([1, 7])]).all() else 1)
forked = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

class Affine(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return self.w * x + self.b

model, loss_fn = Affine(jnp.ones(()), jnp.zeros(())), train.batch_loss(train.mse)
kw = dict(optimizer=optax.sgd(1e-3), epochs=1, batch_size=batch, progress=False)
warm = np.zeros((2 * batch, *ds.inputs.shape[1:]), np.float32)
train.fit(model, loss_fn, (warm, warm), eval_data=(warm, warm), key=jax.random.key(0), **kw)
del warm
before = peak()
test = (ds.inputs.subset(rows=slice(0, 4 * batch)), ds.outputs.subset(rows=slice(0, 4 * batch)))
model, history = train.fit(
    model, loss_fn, (ds.inputs, ds.outputs), eval_data=test, key=jax.random.key(1), **kw
)
fitted = peak()
ds.close()
with open_dataset(path):  # the checksum and finiteness check over the whole file
    pass
print(json.dumps({
    "forked": forked, "before": before, "fitted": fitted, "verified": peak(),
    "loss": history[-1]["train_loss"], "w": float(model.w),
}))
"""


def _write_large(path: Path, n: int) -> int:
    """`n` samples of 2 x 64 KB from cheap chunks (a random block plus an offset)."""
    shape = (1, 128, 128)
    block = np.random.default_rng(0).standard_normal((64, *shape), dtype=np.float32)
    write_dataset(
        path,
        ((block[: n - i] + i / n, 2 * block[: n - i] + 1) for i in range(0, n, 64)),
        n=n,
        input_shape=shape,
        output_shape=shape,
        grid=(np.linspace(0, 1, 128),) * 2,
        recipe={"name": "noise"},
        seed=0,
    )
    return path.stat().st_size


# The tiny `sciml run` of tests/test_cli_run.py, once in memory and once streamed, in one
# process (`main` twice: one start-up and import), then `sciml eval` of the streamed run, with
# `open_dataset` counted. The data files are written beforehand (random values of the Darcy
# shapes), so that no solver compiles.
_RUN_SCRIPT = """
import json, sys
from pathlib import Path
import sciml.data
from sciml._app.cli import main

opened = []
open_dataset = sciml.data.open_dataset
sciml.data.open_dataset = lambda *a, **k: opened.append(a) or open_dataset(*a, **k)
args = sys.argv[1:]
codes = [main(["run", "c.toml", *args, "--runs-dir", "memory"])]
codes.append(main(["run", "c.toml", *args, "--set", "data.stream=true", "--runs-dir", "stream"]))
by_run = len(opened)
(run_dir,) = Path("stream").iterdir()
codes.append(main(["eval", str(run_dir), "--n", "2", "--seed", "5"]))
print(json.dumps({"codes": codes, "opened_by_run": by_run, "opened": len(opened)}))
"""

TINY = {
    "data.path": "tiny.h5",
    "data.resolution": 17,
    "data.solve_resolution": 65,
    "data.n_train": 12,
    "data.n_test": 4,
    "model.modes": "[4, 4]",
    "model.width": 8,
    "model.depth": 1,
    "model.padding": 2,
    "model.projection_channels": 16,
    "train.batch_size": 4,
    "train.epochs": 1,
    "train.progress": "false",
    "eval.plot_samples": 2,
}


def _write_darcy_shaped(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.choice(np.float32([3, 12]), (n, 1, 17, 17))
    y = rng.random((n, 1, 17, 17), dtype=np.float32)
    grid = (np.linspace(0, 1, 17),) * 2
    write_dataset(
        path,
        [(x, y)],
        n=n,
        input_shape=x.shape[1:],
        output_shape=y.shape[1:],
        grid=grid,
        recipe=darcy_recipe_info(17, solve_resolution=65),  # as `sciml eval` checks a cached file
        seed=seed,
    )


def test_fit_and_sciml_run_stream_in_bounded_memory(tmp_path):
    size = _write_large(tmp_path / "large.h5", n=2048)  # 269 MB
    (tmp_path / "c.toml").write_text((REPO / "experiments" / "quickstart.toml").read_text())
    _write_darcy_shaped(tmp_path / "tiny.h5", 16, seed=0)
    (tmp_path / "data").mkdir()  # where `sciml eval` looks for its test data first
    _write_darcy_shaped(tmp_path / "data" / "darcy_s17_solve65_n2_seed5.h5", 2, seed=5)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    # Both at once: the machine has two cores.
    run = subprocess.Popen(
        [sys.executable, "-c", _RUN_SCRIPT, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fit = subprocess.run(
        [sys.executable, "-c", _FIT_SCRIPT, str(tmp_path / "large.h5")],
        env=env,
        capture_output=True,
        text=True,
    )
    stdout, stderr = run.communicate()
    assert fit.returncode == 0, fit.stderr
    rss = json.loads(fit.stdout.splitlines()[-1])
    assert rss["forked"] == 0 and np.isfinite(rss["loss"]) and rss["w"] != 1.0
    mib = 1 << 20
    # One epoch holds a few batches of 4 MiB at a time (2 prefetched, a few more queued for
    # the CPU), whatever the file's size: measured +31 MiB over a 420 MB file and +29 MiB
    # over an 840 MB one. Bound: 64 MiB, a quarter of this file.
    assert rss["fitted"] - rss["before"] < 64 * mib, rss
    # The verification holds one 64 MiB block and its 16 MiB finiteness mask: measured +80
    # MiB over the epoch's peak. Bound for both together: 160 MiB, 62% of this file but
    # independent of its size (loading the file would add all of its 269 MB).
    assert rss["verified"] - rss["before"] < 160 * mib < size, (rss, size)

    assert run.returncode == 0, stderr
    result = json.loads(stdout.splitlines()[-1])
    assert result == {"codes": [0, 0, 0], "opened_by_run": 1, "opened": 2}, result
    (memory,), (stream,) = ((tmp_path / d).iterdir() for d in ("memory", "stream"))
    # The same values batch by batch: the same metrics, bit for bit.
    results = [json.loads((d / "results.json").read_text()) for d in (memory, stream)]
    for r in results:
        del r["train_time_s"], r["step_time_ms"]
    assert results[0] == results[1]
    histories = [
        [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"} for line in lines]
        for lines in ((d / "metrics.jsonl").read_text().splitlines() for d in (memory, stream))
    ]
    assert histories[0] == histories[1] and len(histories[0]) == 1
    assert (stream / "plots" / "predictions.png").is_file()
    assert json.loads((stream / "eval_s17_seed5.json").read_text())["test_relative_l2"] > 0
