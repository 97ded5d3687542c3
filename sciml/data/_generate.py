"""Dataset files from recipes: what `sciml data <recipe>` and `sciml run` call."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from ._io import write_dataset
from ._recipes import darcy_recipe_info, generate_darcy

RECIPES = ("darcy",)


def make_dataset(
    recipe: str,
    path: str | os.PathLike,
    *,
    n: int,
    resolution: int,
    seed: int,
    solve_resolution: int | None = None,
    chunk_size: int = 16,
    zero_mean: bool = False,
    progress: bool = True,
) -> str:
    """Generates `n` samples of a recipe and writes them to `path` (atomically).

    **Arguments:**

    - `recipe`: one of `"darcy"` (the FNO paper's Darcy flow data).
    - `path`: destination `.h5` file; an existing file is replaced only once the new one is
      complete.
    - `n`: number of samples.
    - `resolution`: grid points per axis of the stored data.
    - `seed`: PRNG seed; the same seed gives byte-identical files.
    - `solve_resolution`: grid of the reference solve (default: the recipe's).
    - `chunk_size`: samples solved per batched call (memory vs speed; does not change results).
    - `zero_mean`: drop the constant mode of the Neumann field (as the FNO paper's MATLAB
      generator did; the paper's text keeps it, and so does the default).
    - `progress`: show a progress bar.

    **Returns:**

    The checksum stored in the file.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} is unknown; allowed: {', '.join(RECIPES)}")
    key = jax.random.key(seed)
    chunks = generate_darcy(
        key,
        n,
        resolution,
        solve_resolution=solve_resolution,
        chunk_size=chunk_size,
        zero_mean=zero_mean,
    )
    info = darcy_recipe_info(resolution, solve_resolution=solve_resolution, zero_mean=zero_mean)
    grid = tuple(np.linspace(0.0, 1.0, resolution) for _ in range(2))
    return write_dataset(
        Path(path),
        ((a[:, None], u[:, None]) for a, u in chunks),
        n=n,
        input_shape=(1, resolution, resolution),
        output_shape=(1, resolution, resolution),
        grid=grid,
        recipe=info,
        seed=seed,
        description=(
            "Darcy flow -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary; inputs: "
            "coefficient a, outputs: solution u, on the node grid including the boundary"
        ),
        progress=progress,
    )
