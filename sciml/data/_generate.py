"""Dataset files from recipes: what `sciml data <recipe>` and `sciml run` call.

Every recipe is registered in `RECIPES` with its generator, its description function and the
options it takes, so the CLI, the config checks and the experiment runner share one list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._antiderivative import antiderivative_recipe_info, generate_antiderivative
from ._burgers import burgers_recipe_info, generate_burgers
from ._io import write_dataset
from ._navier_stokes import generate_navier_stokes, navier_stokes_recipe_info
from ._recipes import darcy_recipe_info, generate_darcy


def _darcy_chunks(key, n, resolution, **options) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    # `generate_darcy` yields fields without a channel axis.
    for a, u in generate_darcy(key, n, resolution, **options):
        yield a[:, None], u[:, None]


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe: how to generate it and what its samples look like.

    **Fields:**

    - `name`: the recipe's name in configs and on the command line.
    - `generate`: `generate(key, n, resolution, *, chunk_size, **options)` -> iterator of
        channels-first `(inputs, outputs)` float32 chunks.
    - `info`: `info(resolution, **options)` -> the JSON description stored in the file; it
        checks the arguments, raising `ValueError` with a one-sentence message.
    - `options`: the recipe-specific keyword options (all optional).
    - `grid`: `"nodes"` (`x_i = i / (s - 1)`, both ends included) or `"periodic"`
        (`x_j = j / s` on `[0, 1)`).
    - `num_spatial_dims`: spatial dimensions of the samples.
    - `channels`: `channels(**options)` -> `(in_channels, out_channels)`.
    - `description`: one line stored in the file.
    """

    name: str
    generate: Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]]
    info: Callable[..., dict[str, Any]]
    options: tuple[str, ...]
    grid: str
    num_spatial_dims: int
    channels: Callable[..., tuple[int, int]]
    description: str

    def coordinates(self, resolution: int) -> tuple[np.ndarray, ...]:
        """The coordinate vector of every spatial axis at `resolution` points per axis."""
        if self.grid == "nodes":
            axis = np.linspace(0.0, 1.0, resolution)
        else:
            axis = np.arange(resolution) / resolution
        return (axis,) * self.num_spatial_dims


RECIPES: dict[str, Recipe] = {
    "darcy": Recipe(
        name="darcy",
        generate=_darcy_chunks,
        info=darcy_recipe_info,
        options=("solve_resolution", "zero_mean"),
        grid="nodes",
        num_spatial_dims=2,
        channels=lambda **_: (1, 1),
        description=(
            "Darcy flow -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary; inputs: "
            "coefficient a, outputs: solution u, on the node grid including the boundary"
        ),
    ),
    "burgers": Recipe(
        name="burgers",
        generate=generate_burgers,
        info=burgers_recipe_info,
        options=("solve_resolution", "nu", "t_final", "dt"),
        grid="periodic",
        num_spatial_dims=1,
        channels=lambda **_: (1, 1),
        description=(
            "viscous Burgers u_t + (u^2/2)_x = nu u_xx on the periodic [0,1); inputs: u(0), "
            "outputs: u(t_final)"
        ),
    ),
    "navier_stokes": Recipe(
        name="navier_stokes",
        generate=generate_navier_stokes,
        info=navier_stokes_recipe_info,
        options=("solve_resolution", "nu", "t_final", "dt", "record_steps"),
        grid="periodic",
        num_spatial_dims=2,
        channels=lambda record_steps=None, **_: (1, record_steps or 50),
        description=(
            "2-D Navier-Stokes in vorticity form on the unit torus; inputs: w(0), outputs: "
            "w at record_steps equally spaced times up to t_final (time is the channel axis)"
        ),
    ),
    "antiderivative": Recipe(
        name="antiderivative",
        generate=generate_antiderivative,
        info=antiderivative_recipe_info,
        options=("length_scale",),
        grid="nodes",
        num_spatial_dims=1,
        channels=lambda **_: (1, 1),
        description=(
            "antiderivative s(y) = int_0^y u(x) dx of Gaussian-process inputs u on [0,1]; "
            "inputs: u, outputs: s, on the same points"
        ),
    ),
}


def get_recipe(name: str) -> Recipe:
    """The registered recipe called `name`; `ValueError` naming the allowed ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is unknown; allowed: {', '.join(RECIPES)}")
    return RECIPES[name]


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
