"""Malformed external dataset files and arguments: each gives a `DatasetError` whose message is
one line naming the file, never another exception (from h5py, SciPy, NumPy or zipfile).

Each case writes its file in the test. Cases whose fault lies in the values (non-finite numbers,
complex numbers in a MATLAB v5 file, data cut off after intact headers) are found when the
arrays are read: `inspect_arrays`, which reads headers only, may accept them.
"""

import os
import pickle

import h5py
import numpy as np
import pytest
import scipy.sparse
from external_files import matlab_header, save_hdf5, save_mat5, save_mat73, save_sciml

import sciml.data as sdata

N, S = 4, 6
RNG = np.random.default_rng(1)
X = RNG.random((N, S, S))
Y = RNG.random((N, S, S))


def save_npz(path, arrays):
    np.savez(path, **arrays)
    return path


WRITERS = {"npz": save_npz, "mat": save_mat5, "mat73": save_mat73, "h5": save_hdf5}
SUFFIX = {"npz": ".npz", "mat": ".mat", "mat73": ".mat", "h5": ".h5"}

CASES = {}  # id -> builder(tmp_path) -> (path, read_arrays arguments, whether headers tell)


def case(name, build):
    assert name not in CASES, name
    CASES[name] = build


def arrays_case(name, fmt, arrays, headers=True, **kwargs):
    """A file of format `fmt` holding `arrays`, read with `kwargs` (default keys x, y)."""
    kwargs = {"inputs": "x", "outputs": "y", **kwargs}

    def build(tmp):
        path = WRITERS[fmt](tmp / f"{fmt}_case{SUFFIX[fmt]}", arrays)
        return path, kwargs, headers

    case(name, build)


def bytes_case(name, filename, data, headers=True, **kwargs):
    def build(tmp):
        path = tmp / filename
        path.write_bytes(data)
        return path, {"inputs": "x", "outputs": "y", **kwargs}, headers

    case(name, build)


# --- Keys ---------------------------------------------------------------------------------------

BAD_KEYS = [
    ("nope", "y"),
    ("x", "nope"),
    ("X", "y"),
    ("x[", "y"),
    ("x[a]", "y"),
    ("x[5]", "y"),
    ("x[0:0]", "y"),
    ("x[3:1]", "y"),
    ("", "y"),
    ("   ", "y"),
    ("x[0:1:2]", "y"),
    ("x", "y[-9]"),
    ("x[]", "y"),
    ("x\n", "y"),
]
for fmt in WRITERS:
    for i, (kx, ky) in enumerate(BAD_KEYS):
        arrays_case(f"key-{fmt}-{i}", fmt, {"x": X, "y": Y}, inputs=kx, outputs=ky)
for i, (kx, ky) in enumerate(
    [("arr", "array"), ("array", "x"), ("array[9]", "array"), ("array", "array[3:1]")]
):

    def build(tmp, kx=kx, ky=ky):
        path = tmp / "one.npy"
        np.save(path, RNG.random((N, 2, S, S)))
        return path, {"inputs": kx, "outputs": ky}, True

    case(f"key-npy-{i}", build)
for i, (kx, ky) in enumerate(
    [("x", "outputs"), ("inputs", "y"), ("inputs[7]", "outputs"), ("inputs[1:1]", "")]
):

    def build(tmp, kx=kx, ky=ky):
        path = save_sciml(tmp / "own.h5", X[:, None].astype(np.float32), Y[:, None])
        return path, {"inputs": kx, "outputs": ky}, True

    case(f"key-sciml-{i}", build)
for i, key in enumerate(["g", "/", "#refs#", "g/missing", "x/deeper"]):

    def build(tmp, key=key, fmt=("h5", "mat73")[i % 2]):
        path = WRITERS[fmt](tmp / f"groups{SUFFIX[fmt]}", {"x": X, "y": Y, "g/a": X})
        return path, {"inputs": key, "outputs": "y"}, True

    case(f"key-group-{i}", build)

# --- Counts and shapes that do not match ----------------------------------------------------

MISMATCHES = [
    (RNG.random((N, S, S)), RNG.random((N + 1, S, S))),
    (RNG.random((N, S, S)), RNG.random((N, S, S + 1))),
    (RNG.random((N, S)), RNG.random((N, S, S))),
    (RNG.random((N, S, S)), RNG.random((N,))),
    (RNG.random((N, 2, S, S)), RNG.random((N, S, S + 1, 2))),
]
for fmt in WRITERS:
    for i, (x, y) in enumerate(MISMATCHES):
        arrays_case(f"shape-{fmt}-{i}", fmt, {"x": x, "y": y})
        arrays_case(f"shape-none-{fmt}-{i}", fmt, {"x": x, "y": y}, channels="none")


def pdebench_mismatch(tmp):
    path = tmp / "2D_DarcyFlow.hdf5"
    grid = np.linspace(0, 1, S)
    save_hdf5(
        path,
        {
            "nu": X,
            "tensor": RNG.random((N, 1, S, S + 1)),
            "x-coordinate": grid,
            "y-coordinate": grid,
        },
    )
    return path, {"inputs": "nu", "outputs": "tensor"}, True


case("shape-pdebench", pdebench_mismatch)

# --- Non-finite values ------------------------------------------------------------------------


def spoiled(value, where):
    a = X.copy()
    a[where] = value
    return a


NONFINITE = [
    spoiled(np.nan, (0, 0, 0)),
    spoiled(np.inf, (N - 1, S - 1, S - 1)),
    spoiled(-np.inf, (2, 3, 1)),
    spoiled(1e300, (1, 1, 1)),  # beyond float32's range
]
for fmt in WRITERS:
    for i, bad in enumerate(NONFINITE):
        arrays_case(f"nonfinite-{fmt}-x{i}", fmt, {"x": bad, "y": Y}, headers=False)
        arrays_case(f"nonfinite-{fmt}-y{i}", fmt, {"x": X, "y": bad}, headers=False)
for i, bad in enumerate(NONFINITE):

    def build(tmp, bad=bad):
        path = tmp / "bad.npy"
        np.save(path, np.stack([X, bad], axis=1))
        return path, {"inputs": "array[0]", "outputs": "array[1]"}, False

    case(f"nonfinite-npy-{i}", build)


def bad_coordinates(tmp):
    path = tmp / "coords.h5"
    grid = np.linspace(0, 1, S)
    save_hdf5(path, {"x": X, "y": Y, "x-coordinate": grid, "y-coordinate": grid * np.nan})
    return path, {"inputs": "x", "outputs": "y"}, True


case("nonfinite-coordinates", bad_coordinates)

# --- Objects, pickles, strings, complex numbers, MATLAB's non-numeric classes -------------------

OBJECTS = np.empty(N, dtype=object)
OBJECTS[:] = [np.zeros(S)] * N


def npy_of(array, allow_pickle=False):
    def build(tmp):
        path = tmp / "odd.npy"
        np.save(path, array, allow_pickle=allow_pickle)
        return path, {"inputs": "array", "outputs": "array"}, True

    return build


case("object-npy", npy_of(OBJECTS, allow_pickle=True))
case("complex-npy", npy_of(X + 1j))
case("strings-npy", npy_of(np.array([["ab"] * S] * N)))
case("bytes-npy", npy_of(np.array([[b"ab"] * S] * N)))
case("structured-npy", npy_of(np.zeros((N, S), dtype=[("a", "f8"), ("b", "i4")])))
case("datetime-npy", npy_of(np.zeros((N, S), dtype="datetime64[s]")))
case("timedelta-npy", npy_of(np.zeros((N, S), dtype="timedelta64[s]")))
bytes_case("pickled-npy", "p.npy", pickle.dumps(X), inputs="array", outputs="array")
bytes_case("pickled-npz", "p.npz", pickle.dumps({"x": X, "y": Y}))
bytes_case("pickled-mat", "p.mat", pickle.dumps({"x": X, "y": Y}))
bytes_case("pickled-h5", "p.h5", pickle.dumps({"x": X, "y": Y}))


def npz_object(tmp):
    path = tmp / "obj.npz"
    np.savez(path, x=OBJECTS, y=Y, allow_pickle=True)
    return path, {"inputs": "x", "outputs": "y"}, True


case("object-npz", npz_object)
arrays_case("complex-npz", "npz", {"x": X + 1j, "y": Y})
arrays_case("strings-npz", "npz", {"x": X, "y": np.array([["s"] * S] * N)})
arrays_case("complex-mat", "mat", {"x": X, "y": Y - 2j}, headers=False)
arrays_case("char-mat", "mat", {"x": X, "y": "text"})
arrays_case("cell-mat", "mat", {"x": X, "y": np.array([X, "a"], dtype=object)})
arrays_case("struct-mat", "mat", {"x": X, "y": {"field": X}})
arrays_case("sparse-mat", "mat", {"x": X[:, 0], "y": scipy.sparse.csc_matrix(X[:, 0])})
for cls in ("cell", "struct", "char", "function_handle", "sparse"):

    def build(tmp, cls=cls):
        path = save_mat73(tmp / "classes.mat", {"x": X, "y": Y}, classes={"y": cls})
        return path, {"inputs": "x", "outputs": "y"}, True

    case(f"class-mat73-{cls}", build)


def h5_special(kind):
    def build(tmp):
        path = tmp / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            f["x"] = X
            if kind == "complex":
                f["y"] = Y + 1j
            elif kind == "strings":
                f["y"] = np.array([["ab"] * S] * N, dtype="S2")
            elif kind == "vlen":
                f.create_dataset("y", (N,), dtype=h5py.vlen_dtype(np.float64))
            elif kind == "reference":
                f.create_dataset("y", (N,), dtype=h5py.ref_dtype)
            elif kind == "opaque":
                f["y"] = np.void(b"\0" * 8)
            elif kind == "enum":
                f.create_dataset("y", (N, S), dtype=h5py.enum_dtype({"A": 0, "B": 5, "C": 7}))
            elif kind == "compound":
                f["y"] = np.zeros((N, S), dtype=[("a", "f8"), ("b", "i4")])
            elif kind == "scalar":
                f["y"] = 3.0
            elif kind == "external":
                f.create_dataset(
                    "y", (N, S, S), "f8", external=[(str(tmp / "raw.bin"), 0, 1 << 20)]
                )
        return path, {"inputs": "x", "outputs": "y"}, True

    return build


for kind in (
    "complex",
    "strings",
    "vlen",
    "reference",
    "opaque",
    "enum",
    "compound",
    "scalar",
    "external",
):
    case(f"type-h5-{kind}", h5_special(kind))


def mat73_complex(tmp):
    path = tmp / "cplx.mat"
    save_mat73(path, {"x": X})
    with h5py.File(path, "r+") as f:
        f["y"] = np.zeros((S, S, N), dtype=[("real", "f8"), ("imag", "f8")])
        f["y"].attrs["MATLAB_class"] = np.bytes_("double")
    return path, {"inputs": "x", "outputs": "y"}, True


case("complex-mat73", mat73_complex)

# --- Truncated files, random bytes, bare headers ---------------------------------------------


def valid_file(fmt, tmp):
    """A valid file of each kind, and the arguments that read it."""
    xy = {"inputs": "x", "outputs": "y"}
    if fmt == "npy":
        path = tmp / "whole.npy"
        np.save(path, np.stack([X, Y], axis=1))
        return path, {"inputs": "array[0]", "outputs": "array[1]"}
    if fmt == "npz-compressed":
        path = tmp / "whole.npz"
        np.savez_compressed(path, x=X, y=Y)
        return path, xy
    if fmt == "sciml":
        return save_sciml(tmp / "whole.h5", X[:, None], Y[:, None]), {"inputs": "", "outputs": ""}
    if fmt == "pdebench":
        return save_hdf5(tmp / "whole.hdf5", {"x": X, "y": Y, "x-coordinate": np.arange(S) / S}), xy
    return WRITERS[fmt](tmp / f"whole{SUFFIX[fmt]}", {"x": X, "y": Y}), xy


FORMATS = ("npz", "npz-compressed", "npy", "mat", "mat73", "h5", "sciml", "pdebench")
for fmt in FORMATS:
    for fraction in (0.0005, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95):

        def build(tmp, fmt=fmt, fraction=fraction):
            path, kwargs = valid_file(fmt, tmp)
            data = path.read_bytes()
            path.write_bytes(data[: max(1, int(len(data) * fraction))])
            return path, kwargs, False

        case(f"truncated-{fmt}-{fraction}", build)

for extension in (".npz", ".npy", ".mat", ".h5", ".hdf5"):
    for seed in range(6):
        data = np.random.default_rng(seed).bytes(int(10 ** (1 + seed * 0.6)))
        bytes_case(f"random{extension}-{seed}", f"noise{extension}", data, headers=False)

MAGICS = {
    "npy": (b"\x93NUMPY\x01\x00", ".npy"),
    "npy-header": (b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, ", ".npy"),
    "zip": (b"PK\x03\x04", ".npz"),
    "hdf5": (b"\x89HDF\r\n\x1a\n", ".h5"),
    "mat73": (matlab_header() + b"\x89HDF\r\n\x1a\n", ".mat"),
    "mat5": (matlab_header()[:124].replace(b"7.3", b"5.0") + b"\x00\x01IM", ".mat"),
}
for name, (magic, extension) in MAGICS.items():
    for seed in range(3):
        data = magic + np.random.default_rng(seed).bytes(64 * (1 + seed))
        bytes_case(f"magic-{name}-{seed}", f"magic{extension}", data, headers=False)
        if seed == 0:
            bytes_case(f"magic-{name}-bare", f"bare{extension}", magic, headers=False)


def npy_lying_header(tmp):
    """A header that declares far more values than the file holds."""
    path = tmp / "lies.npy"
    with open(path, "wb") as f:
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**8, S)}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(800))
    return path, {"inputs": "array[0]", "outputs": "array[1]"}, True


case("npy-lying-header", npy_lying_header)


def h5_lying_chunks(tmp):
    """A chunked HDF5 array with chunks never written: declared but not stored."""
    path = tmp / "sparse.h5"
    with h5py.File(path, "w") as f:
        f["x"] = X
        f.create_dataset("y", (10**6, S, S), chunks=(1, S, S), dtype="f8")
    return path, {"inputs": "x", "outputs": "y"}, True


case("h5-unstored-chunks", h5_lying_chunks)

# --- Channel declarations ----------------------------------------------------------------------

BAD_CHANNELS = [
    "first",
    "none",
    "last",
    "auto2",
    "FIRST",
    "",
    "channels",
    ("none",),
    ("none", "first", "last"),
    ("none", "middle"),
    ("first", "none"),
    ["last", "auto"],
]
for fmt in WRITERS:
    for i, channels in enumerate(BAD_CHANNELS):
        arrays_case(f"channels-{fmt}-{i}", fmt, {"x": X, "y": Y[:, None]}, channels=channels)
for i, channels in enumerate(["first", "last", ("first", "first")]):
    arrays_case(f"channels-1d-{i}", "npz", {"x": X[:, 0], "y": Y[:, 0]}, channels=channels)
for i, channels in enumerate(["none", "last", ("first", "none")]):

    def build(tmp, channels=channels):
        path = save_sciml(tmp / "own.h5", X[:, None], Y[:, None])
        return path, {"inputs": "", "outputs": "", "channels": channels}, True

    case(f"channels-sciml-{i}", build)
arrays_case(
    "channels-ambiguous",
    "npz",
    {"x": RNG.random((N, 3, 16, 16))} | {"y": RNG.random((N, 3, 16, 16))},
)

# --- Strides -----------------------------------------------------------------------------------

BAD_STRIDES = [0, -1, 7, 100, (1,), (1, 2, 3), (0, 1), (2, 9), (1, -2), True, [True, 1], ()]
for fmt in ("npz", "h5", "mat73"):
    for i, stride in enumerate(BAD_STRIDES):
        arrays_case(f"stride-{fmt}-{i}", fmt, {"x": X, "y": Y}, stride=stride)

# --- Paths: directories, missing, empty, unknown extensions ---------------------------------

for name in ("plain", "data.npz", "data.h5", "data.mat", "data.npy"):

    def build(tmp, name=name):
        (tmp / name).mkdir()
        return tmp / name, {"inputs": "x", "outputs": "y"}, True

    case(f"directory-{name}", build)
for extension in (".npz", ".npy", ".mat", ".h5", ".hdf5"):
    case(
        f"missing{extension}",
        lambda tmp, e=extension: (tmp / f"absent{e}", {"inputs": "x", "outputs": "y"}, True),
    )
    bytes_case(f"empty{extension}", f"empty{extension}", b"")
for extension in (".txt", ".csv", ".pt", ".pkl", "", ".npy.gz", ".json"):
    bytes_case(f"extension-{extension or 'none'}", f"data{extension}", b"x,y\n1,2\n")

# --- No samples, no spatial axis ---------------------------------------------------------------

for fmt in WRITERS:
    arrays_case(f"zero-{fmt}", fmt, {"x": np.zeros((0, S, S)), "y": np.zeros((0, S, S))})
    if fmt != "mat":  # MATLAB stores a vector (n,) as a (1, n) matrix: one sample
        arrays_case(f"nospatial-{fmt}", fmt, {"x": X[:, 0, 0], "y": Y[:, 0, 0]})
    arrays_case(f"emptyaxis-{fmt}", fmt, {"x": np.zeros((N, 0, S)), "y": np.zeros((N, 0, S))})
arrays_case("scalar-npz", "npz", {"x": np.float64(1.0), "y": Y})


def zero_npy(tmp):
    path = tmp / "zero.npy"
    np.save(path, np.zeros((0, 2, S)))
    return path, {"inputs": "array[0]", "outputs": "array[1]"}, True


case("zero-npy", zero_npy)


def mat73_empty(tmp):
    path = save_mat73(tmp / "empty73.mat", {"x": X, "y": np.zeros((2, 2))})
    with h5py.File(path, "r+") as f:
        f["y"].attrs["MATLAB_empty"] = np.uint8(1)
    return path, {"inputs": "x", "outputs": "y"}, True


case("zero-mat73-empty", mat73_empty)


def test_enough_cases():
    assert len(CASES) >= 300


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_gives_one_line_naming_the_file(tmp_path, name):
    path, kwargs, headers = CASES[name](tmp_path)
    calls = [
        ("inspect", lambda: sdata.inspect_arrays(path, **kwargs)),
        ("read", lambda: sdata.read_arrays(path, **kwargs)),
        ("stream", lambda: sdata.read_arrays(path, **kwargs, stream=True)),
        ("import", lambda: sdata.import_arrays(path, tmp_path / "o.h5", progress=False, **kwargs)),
    ]
    for what, call in calls:
        try:
            call()
        except sdata.DatasetError as e:
            message = str(e)
            assert "\n" not in message and message, (what, message)
            assert path.name in message, (what, message)
            continue
        assert what == "inspect" and not headers, f"{what} accepted {name}"
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.untyped
@pytest.mark.parametrize(
    "kwargs",
    [
        {"stride": 1.5},
        {"stride": "2"},
        {"stride": None},
        {"channels": None},
        {"channels": 3},
        {"inputs": 3},
        {"outputs": None},
    ],
)
def test_wrong_types_give_dataset_errors(tmp_path, kwargs):
    """Without the runtime type checks (a config can hold any TOML value), wrongly typed
    arguments are refused as bad values are."""
    path = save_npz(tmp_path / "ok.npz", {"x": X, "y": Y})
    with pytest.raises(sdata.DatasetError, match="ok.npz"):
        sdata.inspect_arrays(path, **{"inputs": "x", "outputs": "y", **kwargs})


def test_corrupted_bytes_never_escape(tmp_path):
    """Bytes flipped anywhere in a valid file: the file reads (the damage hit values) or gives a
    `DatasetError`, nothing else."""
    rng = np.random.default_rng(3)
    for fmt in FORMATS:
        for _ in range(6):
            path, kwargs = valid_file(fmt, tmp_path)
            data = bytearray(path.read_bytes())
            for i in rng.integers(0, len(data), 4):
                data[i] ^= 1 + int(rng.integers(0, 255))
            path.write_bytes(bytes(data))
            for stream in (False, True):
                try:
                    sdata.read_arrays(path, **kwargs, stream=stream).close()
                except sdata.DatasetError as e:
                    assert "\n" not in str(e) and path.name in str(e)
            os.remove(path)
