"""Adding a dataset recipe touches one module of sciml: an entry in `sciml._catalogue` (plus
the recipe's own module). Here a toy recipe with an option of its own is added that way, in a
fresh interpreter, and `sciml data` and `sciml run` then know it: its name, its flag, its
config key, its file and a trained model."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# The recipe's own module: inputs a(x) on a periodic grid, outputs u = amplitude * a^2.
TOY_MODULE = """
import jax
import numpy as np


def generate(key, n, resolution, *, chunk_size=4, amplitude=1.0):
    x = np.arange(resolution) / resolution
    for start in range(0, n, chunk_size):
        count = min(chunk_size, n - start)
        key, sub = jax.random.split(key)
        c = np.asarray(jax.random.normal(sub, (count, 2)))
        a = c[:, :1] * np.sin(2 * np.pi * x) + c[:, 1:] * np.cos(2 * np.pi * x)
        yield (
            a[:, None].astype(np.float32),
            (amplitude * a**2)[:, None].astype(np.float32),
        )


def info(resolution, *, amplitude=1.0):
    if not 0 < amplitude <= 10:
        from sciml._validate import ArgumentError

        message = f"`amplitude` must be in (0, 10], got {amplitude!r}."
        raise ArgumentError(message, argument="amplitude", value=amplitude)
    return {"recipe": "toy", "resolution": resolution, "amplitude": float(amplitude)}


def cost(chunk, resolution, options):
    return resolution, 4 * chunk * resolution
"""

# What a contributor writes in sciml/_catalogue.py, applied before sciml reads it.
REGISTER = """
import sys
from sciml import _catalogue as c

c.RECIPE_OPTIONS["amplitude"] = c.RecipeOption(float, "scale of the outputs")
c.RECIPES["toy"] = c.Recipe(
    name="toy",
    description="u = amplitude a^2 of random periodic a",
    options=("amplitude",),
    grid="periodic",
    num_spatial_dims=1,
    generator="toy_recipe:generate",
    describer="toy_recipe:info",
    chunk_size=4,
    coster="toy_recipe:cost",
)
from sciml._app.cli import main

sys.exit(main(sys.argv[1:]))
"""

CONFIG = """
name = "toy"
[data]
recipe = "toy"
resolution = 16
n_train = 8
n_test = 4
amplitude = 2.0
cache_dir = "{cache}"
[model]
modes = [4]
width = 8
depth = 1
padding = 0
projection_channels = 8
[train]
epochs = 2
batch_size = 4
progress = false
[eval]
plot_samples = 0
"""


def _sciml(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", REGISTER, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        timeout=600,
    )


def test_a_recipe_added_in_the_catalogue_runs_end_to_end(tmp_path):
    (tmp_path / "toy_recipe.py").write_text(TOY_MODULE)

    out = _sciml(tmp_path, "data", "--help")
    assert out.returncode == 0, out.stderr
    assert "toy" in out.stdout and "--amplitude" in out.stdout

    made = _sciml(
        tmp_path, "data", "toy", "--n", "6", "--resolution", "16", "--amplitude", "3",
        "--out", "toy.h5", "--no-progress",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    import sciml.data

    dataset = sciml.data.load_dataset(tmp_path / "toy.h5")
    assert dataset.inputs.shape == (6, 1, 16) and dataset.outputs.shape == (6, 1, 16)
    assert dataset.attrs["recipe"] == {"recipe": "toy", "resolution": 16, "amplitude": 3.0}
    assert abs(dataset.outputs - 3 * dataset.inputs**2).max() < 1e-5

    bad = _sciml(tmp_path, "data", "toy", "--n", "6", "--resolution", "16", "--out", "x.h5",
                 "--nu", "0.1")  # fmt: skip
    assert bad.returncode == 2
    assert "--nu does not apply to the toy recipe; its options: --amplitude" in bad.stderr

    config = tmp_path / "toy.toml"
    config.write_text(textwrap.dedent(CONFIG.format(cache=tmp_path / "cache")))
    # The recipe's own check, reported as the config key it names.
    wrong = _sciml(tmp_path, "run", str(config), "--set", "data.amplitude=50")
    assert wrong.returncode == 2
    assert wrong.stderr == (
        "error: sciml run: config key 'data.amplitude' = 50.0 is invalid for data.recipe = "
        "'toy': `amplitude` must be in (0, 10], got 50.0.\n"
    )

    run = _sciml(tmp_path, "run", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test_relative_l2"] >= 0
    (cached,) = (tmp_path / "cache").glob("toy_s16_amplitude2.0_n12_seed0.h5")
    assert cached.is_file()
