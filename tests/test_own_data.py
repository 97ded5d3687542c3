"""Your own data through the command line: the same arrays, written in every supported kind of
file, train through `sciml run` from a config naming only the file and its arrays, to the same
test error; then `sciml eval`, `sciml predict`, `sciml.load_model` and `sciml data import` on
the run."""

import json
import shutil
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
import scipy.io

import sciml
from sciml._app.cli import main

N, S = 24, 32

CONFIG = """
name = "own"
[data]
path = "{path}"
{keys}
[model]
modes = [6]
width = 8
depth = 2
padding = 0
projection_channels = 8
[train]
epochs = 2
batch_size = 4
progress = false
[eval]
plot_samples = 0
"""


def _arrays():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((N, S))
    u = np.cumsum(a, axis=1) / S  # the antiderivative, on the same points
    return a, u


def _mat73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 after a 512-byte header, each array
    stored column-major (h5py sees the axes reversed), with its `MATLAB_class`."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=np.ascontiguousarray(array.T))
            f[name].attrs["MATLAB_class"] = np.bytes_("double")
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 12:00:00 2026 "
        b"HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")


def _write(kind: str, folder: Path) -> tuple[str, str]:
    """Writes the arrays as `kind`; returns the file name and the config's key lines."""
    a, u = _arrays()
    if kind == "npz":
        np.savez(folder / "d.npz", coeff=a, sol=u)
        return "d.npz", 'inputs = "coeff"\noutputs = "sol"'
    if kind == "npy":
        np.save(folder / "d.npy", np.stack([a, u], axis=1))
        return "d.npy", 'inputs = "array[0:1]"\noutputs = "array[1:2]"\nchannels = "first"'
    if kind == "mat5":
        scipy.io.savemat(folder / "d.mat", {"coeff": a, "sol": u})
        return "d.mat", 'inputs = "coeff"\noutputs = "sol"'
    if kind == "mat73":
        _mat73(folder / "d.mat", {"coeff": a, "sol": u})
        return "d.mat", 'inputs = "coeff"\noutputs = "sol"'
    if kind == "h5":
        with h5py.File(folder / "d.h5", "w") as f:
            f["fields/a"] = a[..., None]  # channels last
            f["fields/u"] = u[..., None]
        return "d.h5", 'inputs = "fields/a"\noutputs = "fields/u"\nchannels = "last"'
    raise AssertionError(kind)


def _run(folder: Path, name: str, keys: str) -> Path:
    config = folder / "c.toml"
    config.write_text(CONFIG.format(path=name, keys=keys))
    runs = folder / "runs"
    assert main(["run", str(config), "--runs-dir", str(runs)]) == 0
    (run_dir,) = runs.iterdir()
    return run_dir


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npz")
    name, keys = _write("npz", folder)
    return _run(folder, name, keys)


@pytest.mark.parametrize("kind", ["npy", "mat5", "mat73", "h5"])
def test_every_kind_of_file_trains_to_the_same_test_error(npz_run, tmp_path, kind):
    name, keys = _write(kind, tmp_path)
    run_dir = _run(tmp_path, name, keys)
    got = json.loads((run_dir / "results.json").read_text())
    want = json.loads((npz_run / "results.json").read_text())
    for metric in ("test_relative_l2", "test_mse"):
        assert got[metric] == pytest.approx(want[metric], rel=1e-6), metric


def test_the_resolved_config_reads_its_split_and_shape_from_the_file(npz_run):
    config = (npz_run / "config.toml").read_text()
    assert "n_train = 20\n" in config and "n_test = 4\n" in config  # the last fifth tests
    assert "resolution = 32\n" in config
    assert str(npz_run.parent.parent / "d.npz") in config  # absolute: --resume from anywhere
    # Only what applies to a file run: no recipe, no recipe options, no trajectory keys.
    for key in ("recipe", "solve_resolution", "zero_mean", "t_in", "levels", "basis"):
        assert f"{key} =" not in config, key


def test_eval_scores_the_runs_own_test_data(npz_run, capsys):
    assert main(["eval", str(npz_run)]) == 0
    scored = json.loads((npz_run / "eval_test.json").read_text())
    final = json.loads((npz_run / "results.json").read_text())
    assert scored["test_relative_l2"] == pytest.approx(final["test_relative_l2"], rel=1e-6)
    assert scored["n"] == 4


def test_eval_refuses_fresh_recipe_data_for_a_file_run(npz_run, capsys):
    assert main(["eval", str(npz_run), "--resolution", "64"]) == 2
    err = capsys.readouterr().err
    assert "trained on your own file" in err and "--data FILE" in err


def test_eval_of_another_file_at_twice_the_resolution(npz_run, tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 2 * S))
    np.savez(tmp_path / "fine.npz", coeff=a, sol=np.cumsum(a, axis=1) / (2 * S))
    assert main(["eval", str(npz_run), "--data", str(tmp_path / "fine.npz")]) == 0
    scored = json.loads((npz_run / "eval_fine.json").read_text())
    assert scored["resolution"] == 2 * S and scored["n"] == 6
    assert np.isfinite(scored["test_relative_l2"])


def test_predict_equals_the_loaded_model(npz_run, tmp_path):
    a, _ = _arrays()
    np.savez(tmp_path / "x.npz", coeff=a[:5])
    out = tmp_path / "p.npz"
    assert main(["predict", str(npz_run), "--input", str(tmp_path / "x.npz"), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    predictions = np.load(out)["predictions"]
    model = sciml.load_model(npz_run)
    expected = jax.vmap(model)(a[:5, None].astype(np.float32))
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-7)
    assert predictions.shape == (5, 1, S)


def test_an_imported_file_trains_like_its_source(npz_run, tmp_path):
    shutil.copy(npz_run.parent.parent / "d.npz", tmp_path / "d.npz")
    out = tmp_path / "d.h5"
    assert main(["data", "import", str(tmp_path / "d.npz"), "--inputs", "coeff", "--outputs",
                 "sol", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    run_dir = _run(tmp_path, "d.h5", "")
    got = json.loads((run_dir / "results.json").read_text())
    want = json.loads((npz_run / "results.json").read_text())
    assert got["test_relative_l2"] == pytest.approx(want["test_relative_l2"], rel=1e-6)


def test_a_failed_start_leaves_no_run_directory(tmp_path, capsys):
    a, u = _arrays()
    np.savez(tmp_path / "d.npz", coeff=a, sol=u[:10])
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(path="d.npz", keys='inputs = "coeff"\noutputs = "sol"'))
    assert main(["run", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sciml run: config key 'data.path' = ") and "d.npz" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["npz", "npy", "mat5", "mat73", "h5"])
def test_the_run_trains_on_exactly_the_arrays_written(tmp_path, kind):
    """What `sciml run` feeds `fit` is the arrays as the Python API holds them: the first
    n_train samples, float32, channels first; the test set the last n_test."""
    from sciml._app.config import load_config
    from sciml._app.datasets import split_arrays

    name, keys = _write(kind, tmp_path)
    (tmp_path / "c.toml").write_text(CONFIG.format(path=name, keys=keys))
    config = load_config(tmp_path / "c.toml")
    (x_train, y_train), (x_test, y_test) = split_arrays(config)
    a, u = (v[:, None].astype(np.float32) for v in _arrays())
    np.testing.assert_array_equal(np.asarray(x_train), a[:20])
    np.testing.assert_array_equal(np.asarray(y_train), u[:20])
    np.testing.assert_array_equal(np.asarray(x_test), a[20:])
    np.testing.assert_array_equal(np.asarray(y_test), u[20:])


def test_eval_without_its_test_file_names_what_to_pass(npz_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(npz_run, run_dir)
    config = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(config)  # unchanged: still verified
    source = npz_run.parent.parent / "d.npz"
    moved = tmp_path / "elsewhere.npz"
    shutil.move(source, moved)
    try:
        assert main(["eval", str(run_dir)]) == 2
    finally:
        shutil.move(moved, source)
    err = capsys.readouterr().err
    assert "the run's own test data cannot be read" in err and "--data FILE" in err
    assert err.count("\n") == 1


def test_a_time_series_file_trains_as_a_rollout(tmp_path):
    """PDEBench's 1-D layout: `tensor (n, t, x)` with its coordinates; the frames are the
    channels, the first t_in predict the next t_out."""
    rng = np.random.default_rng(2)
    x = np.arange(S) / S
    tensor = np.stack(
        [np.sin(2 * np.pi * (x[None] - 0.05 * t) + rng.uniform(0, 6, (N, 1))) for t in range(6)],
        axis=1,
    )
    with h5py.File(tmp_path / "adv.hdf5", "w") as f:
        f["tensor"] = tensor.astype(np.float32)
        f["x-coordinate"] = x
        f["t-coordinate"] = np.linspace(0, 1, 7)
    keys = 'inputs = "tensor"\noutputs = "tensor"\n[task]\nkind = "rollout"\nt_in = 2\nt_out = 3'
    config = tmp_path / "c.toml"
    text = CONFIG.format(path="adv.hdf5", keys=keys).replace(
        "[train]", "[train]\nnormalize = false"
    )
    config.write_text(text)
    assert main(["run", str(config), "--runs-dir", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "model.json").read_text()) == {
        "inputs": [2, S],
        "outputs": [3, S],
    }
    assert main(["eval", str(run_dir)]) == 0
