"""`sciml.data.read_arrays`, `inspect_arrays` and `import_arrays` on files of every kind that
scientists already have, each written here: the values read equal the values written (exactly,
after the cast to float32), in the layout `(n, c, *spatial)`."""

import h5py
import numpy as np
import pytest
from external_files import (
    save_hdf5,
    save_mat5,
    save_mat73,
    save_pdebench_1d,
    save_pdebench_darcy,
    save_sciml,
)

import sciml.data as sdata

N, S = 5, 6


def f32(a):
    return np.asarray(a).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def check(ds, inputs, outputs, grid=None):
    """`ds` holds exactly `inputs`, `outputs` (channels first) in float32."""
    assert ds.inputs.dtype == np.float32 and ds.outputs.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(ds.inputs), f32(inputs))
    np.testing.assert_array_equal(np.asarray(ds.outputs), f32(outputs))
    if grid is not None:
        assert len(ds.grid) == len(grid)
        for got, want in zip(ds.grid, grid, strict=True):
            np.testing.assert_array_equal(got, want)


def test_npz_without_channel_axis(tmp_path, rng):
    """The FNO paper's Darcy layout: `coeff`, `sol` `(n, s, s)`; 'auto' reads one channel."""
    coeff, sol = rng.random((N, S, S)), rng.random((N, S, S))
    path = tmp_path / "darcy.npz"
    np.savez(path, coeff=coeff, sol=sol)
    info = sdata.inspect_arrays(path, inputs="coeff", outputs="sol")
    assert (info.format, info.n, info.in_channels, info.out_channels) == ("npz", N, 1, 1)
    assert info.spatial == (S, S) and info.channels == ("none", "none")
    assert info.nbytes == 4 * N * 2 * S * S
    ds = sdata.read_arrays(path, inputs="coeff", outputs="sol")
    check(ds, coeff[:, None], sol[:, None], [np.linspace(0, 1, S)] * 2)
    assert ds.attrs == {
        "source": str(path),
        "format": "npz",
        "inputs": "coeff",
        "outputs": "sol",
        "channels": ["none", "none"],
        "stride": [1, 1],
    }


def test_compressed_npz_and_casts(tmp_path, rng):
    """Booleans and integers are cast to float32; compressed members are read too."""
    mask = rng.random((N, S)) > 0.5
    counts = rng.integers(-100, 100, (N, S), dtype=np.int16)
    path = tmp_path / "a.npz"
    np.savez_compressed(path, mask=mask, counts=counts)
    ds = sdata.read_arrays(path, inputs="mask", outputs="counts")
    check(ds, mask[:, None], counts[:, None])


def test_npy_one_array_split_by_key(tmp_path, rng):
    """One `.npy` of shape (n, 2, s, s): inputs 'array[0:1]', outputs 'array[1]'."""
    a = rng.random((N, 2, S, S + 1))
    path = tmp_path / "pairs.npy"
    np.save(path, a)
    info = sdata.inspect_arrays(path, inputs="array[0:1]", outputs="array[1]")
    assert info.channels == ("first", "first") and info.spatial == (S, S + 1)
    ds = sdata.read_arrays(path, inputs="array[0:1]", outputs="array[-1]")
    check(ds, a[:, 0:1], a[:, 1:2])
    both = sdata.read_arrays(path, inputs="array", outputs="array[:1]")
    check(both, a, a[:, :1])


def test_fortran_order_npy(tmp_path, rng):
    a = np.asfortranarray(rng.random((N, S, 3)))
    path = tmp_path / "f.npy"
    np.save(path, a)
    ds = sdata.read_arrays(path, inputs="array[0:2]", outputs="array[2]", channels="last")
    check(ds, np.moveaxis(a[..., :2], -1, 1), a[:, None, :, 2])


@pytest.mark.parametrize("explicit", [False, True])
def test_channels_last(tmp_path, rng, explicit):
    x, y = rng.random((N, S, S + 2, 3)), rng.random((N, S, S + 2, 1))
    path = tmp_path / "last.npz"
    np.savez(path, x=x, y=y)
    ds = sdata.read_arrays(path, inputs="x", outputs="y", channels="last" if explicit else "auto")
    assert ds.attrs["channels"] == ["last", "last"]
    check(ds, np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1))


def test_channels_pair_and_auto_mixed(tmp_path, rng):
    """`(n, s, s)` inputs and `(n, 1, s, s)` outputs: 'auto' reads ('none', 'first'), which can
    also be declared."""
    x, y = rng.random((N, S, S)), rng.random((N, 1, S, S))
    path = tmp_path / "mixed.npz"
    np.savez(path, x=x, y=y)
    for channels in ("auto", ("none", "first"), ["none", "first"]):
        ds = sdata.read_arrays(path, inputs="x", outputs="y", channels=channels)
        check(ds, x[:, None], y)


def test_auto_refuses_ambiguous_layouts(tmp_path, rng):
    """`(n, 3, 16, 16)` pairs hold 3 channels or a 3 x 16 x 16 grid: 'auto' asks for
    `channels`; `(n, 5, 16)` pairs, 5 channels being more than a quarter of 16 points, are one
    field on a 5 x 16 grid."""
    a = rng.random((N, 3, 16, 16))
    path = tmp_path / "amb.npz"
    np.savez(path, x=a, y=a)
    with pytest.raises(sdata.DatasetError, match="channels 'auto' cannot tell") as e:
        sdata.inspect_arrays(path, inputs="x", outputs="y")
    assert "amb.npz" in str(e.value) and "'x'" in str(e.value)
    check(sdata.read_arrays(path, inputs="x", outputs="y", channels="first"), a, a)
    check(sdata.read_arrays(path, inputs="x", outputs="y", channels="none"), a[:, None], a[:, None])
    np.savez(path, x=a[:, :, 0, :5], y=a[:, :, 0, :5])
    assert sdata.inspect_arrays(path, inputs="x", outputs="y").channels == ("none", "none")


def test_stride(tmp_path, rng):
    """`stride` keeps every r-th point of each spatial axis, and of the grid."""
    x, y = rng.random((N, 9, 10)), rng.random((N, 9, 10))
    path = tmp_path / "s.npz"
    np.savez(path, x=x, y=y)
    ds = sdata.read_arrays(path, inputs="x", outputs="y", stride=2)
    check(ds, x[:, None, ::2, ::2], y[:, None, ::2, ::2])
    np.testing.assert_array_equal(ds.grid[0], np.linspace(0, 1, 9)[::2])
    info = sdata.inspect_arrays(path, inputs="x", outputs="y", stride=(3, 1))
    assert info.spatial == (3, 10) and info.stride == (3, 1)
    ds = sdata.read_arrays(path, inputs="x", outputs="y", stride=[3, 1])
    check(ds, x[:, None, ::3], y[:, None, ::3])
    ds = sdata.read_arrays(path, inputs="x", outputs="y", stride=(9, 10))  # one point left
    check(ds, x[:, None, :1, :1], y[:, None, :1, :1])


def test_mat_v5(tmp_path, rng):
    """The FNO paper's `.mat` files: `coeff`, `sol` `(n, s, s)`; logical arrays become floats."""
    coeff = rng.random((N, S, S)) > 0.5
    sol = rng.random((N, S, S)).astype(np.float32)
    path = save_mat5(tmp_path / "piececonst_r421.mat", {"coeff": coeff, "sol": sol, "t": 1.0})
    info = sdata.inspect_arrays(path, inputs="coeff", outputs="sol", stride=2)
    assert (info.format, info.spatial, info.channels) == ("mat5", (3, 3), ("none", "none"))
    ds = sdata.read_arrays(path, inputs="coeff", outputs="sol", stride=2)
    check(ds, coeff[:, None, ::2, ::2], sol[:, None, ::2, ::2])


def test_mat_v73_transposed(tmp_path, rng):
    """A v7.3 file stores arrays column-major behind a 512-byte header: read back in MATLAB's
    axis order, exactly, streamed or not."""
    coeff = rng.random((N, S, S + 1))
    sol = rng.integers(0, 5, (N, 2, S, S + 1)).astype(np.int32)
    path = save_mat73(tmp_path / "darcy73.mat", {"coeff": coeff, "sol": sol})
    with open(path, "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"
    with h5py.File(path, "r") as f:  # h5py sees the axes reversed
        assert f["coeff"].shape == (S + 1, S, N)
    info = sdata.inspect_arrays(path, inputs="coeff", outputs="sol")
    assert (info.format, info.channels, info.spatial) == ("mat73", ("none", "first"), (S, S + 1))
    for stream in (False, True):
        with sdata.read_arrays(path, inputs="coeff", outputs="sol", stream=stream) as ds:
            assert isinstance(ds.inputs, sdata.OnDiskArray) == stream
            check(ds, coeff[:, None], sol)
        with sdata.read_arrays(
            path, inputs="coeff", outputs="sol[1]", stride=(2, 3), stream=stream
        ) as ds:
            check(ds, coeff[:, None, ::2, ::3], sol[:, 1:2, ::2, ::3])


@pytest.mark.parametrize("cls", ["cell", "struct", "char"])
def test_mat_v73_refuses_non_numeric_classes(tmp_path, rng, cls):
    a = rng.random((N, S))
    path = tmp_path / "c.mat"
    save_mat73(path, {"x": a, "y": a.astype(np.uint16)}, classes={"y": cls})
    with pytest.raises(sdata.DatasetError, match=f"'y' is a MATLAB {cls}; expected a numeric"):
        sdata.inspect_arrays(path, inputs="x", outputs="y")


def test_generic_hdf5_nested_keys(tmp_path, rng):
    x, y = rng.random((N, S, S, 2)).astype(np.float32), rng.random((N, S, S, 1))
    path = save_hdf5(tmp_path / "mine.h5", {"train/forcing": x, "train/solution": y})
    info = sdata.inspect_arrays(path, inputs="train/forcing", outputs="train/solution")
    assert info.format == "hdf5" and info.channels == ("last", "last")
    for stream in (False, True):
        with sdata.read_arrays(
            path, inputs="train/forcing", outputs="train/solution", stream=stream
        ) as ds:
            check(ds, np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1))


def test_pdebench_darcy(tmp_path, rng):
    """PDEBench's Darcy file: `nu (n, s, s)` 'none', `tensor (n, 1, s, s)` 'first', and the
    grid from `x-coordinate`, `y-coordinate`."""
    nu, tensor = rng.random((N, S, S)), rng.random((N, 1, S, S))
    path = save_pdebench_darcy(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", nu, tensor)
    centres = (np.arange(S) + 0.5) / S
    info = sdata.inspect_arrays(path, inputs="nu", outputs="tensor", stride=2)
    assert info.channels == ("none", "first") and info.spatial == (3, 3)
    np.testing.assert_array_equal(info.grid[1], centres[::2])
    for stream in (False, True):
        with sdata.read_arrays(path, inputs="nu", outputs="tensor", stream=stream) as ds:
            check(ds, nu[:, None], tensor, [centres, centres])


def test_pdebench_1d_time_series(tmp_path, rng):
    """PDEBench's 1-D `tensor (n, t, x)`: time is the channel axis ('auto' finds it from the
    length of `x-coordinate`), so that a rollout task reads inputs = outputs = 'tensor'."""
    tensor = rng.random((N, 4, 2 * S))
    path = save_pdebench_1d(tmp_path / "1D_Advection_Sols_beta0.1.hdf5", tensor)
    centres = (np.arange(2 * S) + 0.5) / (2 * S)
    for channels in ("auto", "first"):
        info = sdata.inspect_arrays(path, inputs="tensor", outputs="tensor", channels=channels)
        assert (info.in_channels, info.spatial, info.channels) == (4, (2 * S,), ("first",) * 2)
        ds = sdata.read_arrays(path, inputs="tensor[0:1]", outputs="tensor[1:4]", channels=channels)
        check(ds, tensor[:, :1], tensor[:, 1:], [centres])
    # Without a channel axis the trajectory is one field on a (t, x) grid (space-time tasks).
    ds = sdata.read_arrays(path, inputs="tensor", outputs="tensor", channels="none")
    check(ds, tensor[:, None], tensor[:, None])
    assert [len(g) for g in ds.grid] == [4, 2 * S]


def test_sciml_format(tmp_path, rng):
    """sciml's own files go through `load_dataset` / `open_dataset` (checksum and all)."""
    x, y = rng.random((N, 2, S, S)).astype(np.float32), rng.random((N, 1, S, S))
    path = save_sciml(tmp_path / "own.h5", x, y)
    own = sdata.load_dataset(path)
    info = sdata.inspect_arrays(path, inputs="", outputs="outputs")
    assert (info.format, info.channels, info.in_channels) == ("sciml", ("first", "first"), 2)
    for stream in (False, True):
        with sdata.read_arrays(path, inputs="inputs", outputs="", stream=stream) as ds:
            check(ds, x, y, own.grid)
            assert ds.attrs["recipe"] == {"recipe": "test"} and ds.attrs["format"] == "sciml"
        with sdata.read_arrays(
            path, inputs="inputs[1]", outputs="outputs", stride=(1, 2), stream=stream
        ) as ds:
            check(ds, x[:, 1:2, :, ::2], y[..., ::2], (own.grid[0], own.grid[1][::2]))


HDF5_LAYOUTS = [
    # (name, writer, stored array, channels, the array as (n, c, *spatial))
    ("first", save_hdf5, lambda a: a, "first", lambda a: a),
    ("last", save_hdf5, lambda a: np.moveaxis(a, 1, -1), "last", lambda a: a),
    ("none", save_hdf5, lambda a: a[:, 0], "none", lambda a: a[:, :1]),
    ("mat73", save_mat73, lambda a: a, "first", lambda a: a),
    ("mat73-last", save_mat73, lambda a: np.moveaxis(a, 1, -1), "last", lambda a: a),
]

INDICES = [
    3,
    -1,
    np.int64(2),
    slice(None),
    slice(1, 5, 2),
    slice(-3, None),
    slice(4, 1, -1),  # refused: h5py reads in increasing order
    np.array([4, 0, 2, 2]),
    np.array([], dtype=int),
    [1, 3],
    np.arange(6) % 2 == 0,
    (slice(None), 0),
    (slice(0, 4), slice(None), slice(1, None, 2)),
    (np.array([5, 1]), 0, slice(None, None, 3)),
    (Ellipsis, 2),
    (2, Ellipsis, slice(0, 3)),
    (slice(None), slice(None), np.array([2, 0])),
]


@pytest.mark.parametrize(
    "name,save,store,channels,logical", HDF5_LAYOUTS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_streamed_equals_in_memory(tmp_path, rng, name, save, store, channels, logical):
    """Every indexing pattern of the streamed arrays reads what the same index of the arrays
    in memory gives, for each layout and with a stride; `subset` and `split` stay on disk."""
    a = rng.random((6, 3, 5, 7)).astype(np.float64)
    path = save(
        tmp_path / ("f.mat" if save is save_mat73 else "f.h5"), {"a": store(a), "b": store(a)}
    )
    kwargs = dict(inputs="a", outputs="b[0:2]" if channels != "none" else "b", channels=channels)
    for stride in (1, (2, 3)):
        memory = sdata.read_arrays(path, **kwargs, stride=stride)
        want = f32(logical(a))[
            (slice(None), slice(None), *(slice(None, None, r) for r in np.broadcast_to(stride, 2)))
        ]
        np.testing.assert_array_equal(memory.inputs, want)
        with sdata.read_arrays(path, **kwargs, stride=stride, stream=True) as lazy:
            x = lazy.inputs
            assert isinstance(x, sdata.OnDiskArray)
            assert (x.shape, x.dtype, x.ndim, x.size, len(x)) == (
                want.shape,
                np.float32,
                4,
                want.size,
                6,
            )
            np.testing.assert_array_equal(np.asarray(x), want)
            np.testing.assert_array_equal(np.asarray(lazy.outputs), memory.outputs)
            for index in INDICES:
                if isinstance(index, slice) and (index.step or 1) < 0:
                    with pytest.raises(IndexError):
                        x[index]
                    continue
                np.testing.assert_array_equal(x[index], want[index], err_msg=repr(index))
            part = x.subset(rows=slice(1, 5), channels=slice(0, 1))
            assert isinstance(part, sdata.OnDiskArray)
            np.testing.assert_array_equal(part[::2], want[1:5, 0:1][::2])
            head, tail = lazy.split(4)
            assert isinstance(head.inputs, sdata.OnDiskArray)
            np.testing.assert_array_equal(np.asarray(tail.inputs), want[4:])


def test_inspect_reads_headers_only(tmp_path, rng):
    """`inspect_arrays` reads no values: non-finite values are found by `read_arrays`, which
    names the key; streamed arrays are checked when opened."""
    x, y = rng.random((N, S)), rng.random((N, S))
    y[3, 2] = np.nan
    for path in (tmp_path / "n.npz", tmp_path / "n.h5"):
        (np.savez if path.suffix == ".npz" else lambda p, **k: save_hdf5(p, k))(path, x=x, y=y)
        assert sdata.inspect_arrays(path, inputs="x", outputs="y").n == N
        for stream in (False, True):
            with pytest.raises(sdata.DatasetError, match="outputs key 'y' holds 1 non-finite"):
                sdata.read_arrays(path, inputs="x", outputs="y", stream=stream)


@pytest.mark.parametrize("kind", ["npz", "mat73", "pdebench"])
def test_import_round_trip(tmp_path, rng, kind):
    """`import_arrays` writes a checksummed sciml file that `load_dataset` reads back equal to
    `read_arrays` of the source; the file records where it came from."""
    x, y = rng.random((7, S, S)), rng.random((7, 1, S, S))
    src = tmp_path / f"src.{'npz' if kind == 'npz' else 'mat' if kind == 'mat73' else 'h5'}"
    if kind == "npz":
        np.savez(src, x=x, y=y)
    elif kind == "mat73":
        save_mat73(src, {"x": x, "y": y})
    else:
        src = save_pdebench_darcy(src, x, y)
    keys = ("nu", "tensor") if kind == "pdebench" else ("x", "y")
    out = tmp_path / "imported.h5"
    checksum = sdata.import_arrays(
        src, out, inputs=keys[0], outputs=keys[1], stride=2, progress=False
    )
    back = sdata.load_dataset(out)
    assert back.attrs["sha256"] == checksum
    ref = sdata.read_arrays(src, inputs=keys[0], outputs=keys[1], stride=2)
    check(back, ref.inputs, ref.outputs, ref.grid)
    assert back.attrs["recipe"] == {
        "recipe": "imported",
        "source": src.name,
        "format": "hdf5" if kind == "pdebench" else kind,
        "inputs": keys[0],
        "outputs": keys[1],
        "channels": ["none", "first"],
        "stride": [2, 2],
    }
    again = sdata.read_arrays(out, inputs="inputs", outputs="outputs")
    check(again, ref.inputs, ref.outputs, ref.grid)


def test_import_streams_in_parts(tmp_path, rng, monkeypatch):
    """An HDF5 source is converted a bounded number of samples at a time."""
    import sciml.data._external as external

    x, y = rng.random((9, S, S)), rng.random((9, S, S))
    src = save_hdf5(tmp_path / "big.h5", {"x": x, "y": y})
    monkeypatch.setattr(external, "_SCAN_BYTES", 4 * 2 * S * S * 2)  # two samples a part
    seen = []
    write = external.write_dataset

    def spy(path, chunks, **kwargs):
        def parts():
            for cx, cy in chunks:
                seen.append(len(cx))
                yield cx, cy

        return write(path, parts(), **kwargs)

    monkeypatch.setattr(external, "write_dataset", spy)
    sdata.import_arrays(src, tmp_path / "o.h5", inputs="x", outputs="y", progress=False)
    assert seen == [2, 2, 2, 2, 1]
    check(sdata.load_dataset(tmp_path / "o.h5"), x[:, None], y[:, None])
