"""Dataset files from recipes: what `sciml data <recipe>` and `sciml run` call.

The recipes themselves (options, grids, generators) are listed once, in `sciml._catalogue`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax

from ..._catalogue import RECIPES as RECIPES
from ..._catalogue import Recipe as Recipe
from ..._catalogue import get_recipe as get_recipe
from .._io import write_dataset


def make_dataset(
    recipe: str,
    path: str | os.PathLike,
    *,
    n: int,
    resolution: int,
    seed: int,
    chunk_size: int | None = None,
    progress: bool = True,
    **options: Any,
) -> str:
    """Generates `n` samples of a recipe and writes them to `path` (atomically).

    **Arguments:**

    - `recipe`: `"darcy"`, `"burgers"`, `"navier_stokes"` or `"antiderivative"` (see
        `RECIPES`).
    - `path`: destination `.h5` file; an existing file is replaced only once the new one is
      complete.
    - `n`: number of samples.
    - `resolution`: grid points per axis of the stored data.
    - `seed`: PRNG seed; the same seed gives byte-identical files.
    - `chunk_size`: samples computed per batched call (memory vs speed; does not change the
        samples); `None` for the recipe's default.
    - `progress`: show a progress bar.
    - `**options`: the recipe's own options (e.g. `solve_resolution`, `nu`, `dt`); `None`
        values mean the recipe's default. See the recipe's generator for their meaning.

    **Returns:**

    The checksum stored in the file.
    """
    spec = get_recipe(recipe)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"recipe {recipe!r} takes no option {unknown[0]!r}; allowed: {', '.join(spec.options)}"
        )
    options = {k: v for k, v in options.items() if v is not None}
    info = spec.info(resolution, **options)
    if chunk_size is not None:
        options["chunk_size"] = chunk_size
    chunks = spec.generate(jax.random.key(seed), n, resolution, **options)
    in_channels, out_channels = spec.channels(**options)
    spatial = (resolution,) * spec.num_spatial_dims
    return write_dataset(
        Path(path),
        chunks,
        n=n,
        input_shape=(in_channels, *spatial),
        output_shape=(out_channels, *spatial),
        grid=spec.coordinates(resolution),
        recipe=info,
        seed=seed,
        description=spec.description,
        progress=progress,
    )
