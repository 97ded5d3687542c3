"""The on-disk dataset format: round trip, determinism, atomicity and clear errors."""

import hashlib

import h5py
import numpy as np
import pytest

from sciml.data._io import DatasetError, load_dataset, write_dataset


def _chunks(n, shape, seed, chunk):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = (2 * x + 1).astype(np.float32)
    for i in range(0, n, chunk):
        yield x[i : i + chunk], y[i : i + chunk]


def _write(path, seed=0, n=10, chunk=3, **kw):
    shape = (1, 6, 6)
    return write_dataset(
        path,
        _chunks(n, shape, seed, chunk),
        n=n,
        input_shape=shape,
        output_shape=shape,
        grid=(np.linspace(0, 1, 6), np.linspace(0, 1, 6)),
        recipe={"name": "test", "scale": 2},
        seed=seed,
        **kw,
    )


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "d.h5"
    checksum = _write(path)
    ds = load_dataset(path)
    expected = np.concatenate([x for x, _ in _chunks(10, (1, 6, 6), 0, 3)])
    np.testing.assert_array_equal(ds.inputs, expected)
    np.testing.assert_array_equal(ds.outputs, 2 * expected + 1)
    assert ds.inputs.dtype == np.float32
    assert len(ds.grid) == 2 and ds.grid[0].shape == (6,)
    assert ds.attrs["recipe"] == {"name": "test", "scale": 2}
    assert ds.attrs["seed"] == 0 and ds.attrs["sha256"] == checksum
    assert ds.attrs["sciml_version"]
    head, tail = ds.split(7)
    assert len(head) == 7 and len(tail) == 3


def test_same_seed_same_bytes_independent_of_chunking(tmp_path):
    _write(tmp_path / "a.h5", chunk=3)
    _write(tmp_path / "b.h5", chunk=5)
    _write(tmp_path / "c.h5", seed=1)
    digest = [hashlib.sha256((tmp_path / f"{f}.h5").read_bytes()).hexdigest() for f in "abc"]
    assert digest[0] == digest[1]
    assert digest[0] != digest[2]


def test_failed_generation_keeps_existing_file(tmp_path):
    path = tmp_path / "d.h5"
    _write(path)
    before = path.read_bytes()

    def broken():
        yield from _chunks(4, (1, 6, 6), 0, 2)
        raise RuntimeError("solver crashed")

    with pytest.raises(RuntimeError, match="solver crashed"):
        write_dataset(
            path,
            broken(),
            n=10,
            input_shape=(1, 6, 6),
            output_shape=(1, 6, 6),
            grid=(np.zeros(6), np.zeros(6)),
            recipe={},
            seed=0,
        )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]  # no temp files left behind


def test_wrong_sample_count_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="expected n=12"):
        write_dataset(
            tmp_path / "d.h5",
            _chunks(10, (1, 6, 6), 0, 3),
            n=12,
            input_shape=(1, 6, 6),
            output_shape=(1, 6, 6),
            grid=(np.zeros(6), np.zeros(6)),
            recipe={},
            seed=0,
        )
    assert not (tmp_path / "d.h5").exists()


def test_corruption_is_detected(tmp_path):
    path = tmp_path / "d.h5"
    _write(path)
    with h5py.File(path, "r+") as f:
        f["outputs"][0, 0, 0, 0] += 1.0
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset(path)
    load_dataset(path, verify=False)  # still readable on request


def test_truncated_missing_and_foreign_files(tmp_path):
    path = tmp_path / "d.h5"
    _write(path)
    data = path.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="trunc.h5"):
        load_dataset(tmp_path / "trunc.h5")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a sciml dataset"):
        load_dataset(tmp_path / "foreign.h5")
    with h5py.File(path, "r+") as f:
        del f["outputs"]
    with pytest.raises(DatasetError, match="missing outputs"):
        load_dataset(path)
