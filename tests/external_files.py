"""Writers of the dataset files scientists already have, for the tests of
`sciml.data.read_arrays` (tests/test_external_data.py, tests/test_fuzz_external.py)."""

from pathlib import Path

import h5py
import numpy as np
import scipy.io

import sciml.data as sdata

# MATLAB's class of each NumPy type, as MATLAB writes it into a v7.3 file's `MATLAB_class`.
MATLAB_CLASSES = {
    "float64": "double",
    "float32": "single",
    "bool": "logical",
    **{f"{s}int{b}": f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)},
}


def matlab_header() -> bytes:
    """The 512-byte user block at the start of a MATLAB v7.3 file: 116 bytes of text, 8 bytes of
    subsystem offset, the version 0x0200 and the endian indicator 'IM', then zeros."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 "
    text += b"schema 1.00 ."
    return (text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM").ljust(512, b"\0")


def save_mat73(path: Path, arrays: dict, classes: dict | None = None) -> Path:
    """Writes `arrays` as MATLAB v7.3 does: HDF5 behind a 512-byte header, each array stored
    column-major (h5py sees its axes reversed), compressed in chunks, with its `MATLAB_class`
    attribute (logical arrays stored as uint8). `classes` overrides the class of some names."""
    classes = classes or {}
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in arrays.items():
            value = np.asarray(value)
            cls = classes.get(name, MATLAB_CLASSES.get(str(value.dtype), "double"))
            stored = value.astype(np.uint8) if value.dtype == np.bool_ else value
            dset = f.create_dataset(
                name, data=np.ascontiguousarray(stored.T), chunks=True, compression="gzip"
            )
            dset.attrs["MATLAB_class"] = np.bytes_(cls)
    with open(path, "r+b") as f:
        f.write(matlab_header())
    return path


def save_mat5(path: Path, arrays: dict) -> Path:
    scipy.io.savemat(path, arrays)
    return path


def save_hdf5(path: Path, arrays: dict) -> Path:
    """Writes `arrays` into an HDF5 file; a name `"group/name"` makes the group."""
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value)
    return path


def save_pdebench_darcy(path: Path, nu: np.ndarray, tensor: np.ndarray) -> Path:
    """PDEBench's 2-D Darcy flow layout: `nu (n, s, s)`, `tensor (n, 1, s, s)`, cell centres."""
    s = nu.shape[-1]
    centres = (np.arange(s) + 0.5) / s
    return save_hdf5(
        path, {"nu": nu, "tensor": tensor, "x-coordinate": centres, "y-coordinate": centres}
    )


def save_pdebench_1d(path: Path, tensor: np.ndarray) -> Path:
    """PDEBench's 1-D layout (advection, Burgers, ...): `tensor (n, t, x)`, the coordinates of
    the cell centres and the times (one more than the frames stored)."""
    t, s = tensor.shape[1:]
    return save_hdf5(
        path,
        {
            "tensor": tensor,
            "x-coordinate": (np.arange(s) + 0.5) / s,
            "t-coordinate": np.linspace(0.0, 2.0, t + 1),
        },
    )


def save_sciml(path: Path, inputs: np.ndarray, outputs: np.ndarray, grid=None) -> Path:
    """A sciml dataset file (channels first) through `write_dataset`."""
    spatial = inputs.shape[2:]
    grid = grid or tuple(np.linspace(-1.0, 1.0, s) ** 3 for s in spatial)
    sdata.write_dataset(
        path,
        [(inputs, outputs)],
        n=inputs.shape[0],
        input_shape=inputs.shape[1:],
        output_shape=outputs.shape[1:],
        grid=grid,
        recipe={"recipe": "test"},
        seed=0,
    )
    return path
