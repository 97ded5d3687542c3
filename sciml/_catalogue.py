"""What the package offers by name, written once: dataset recipes, PINN benchmarks, activation
functions, optimisers and non-finite policies.

The config schema, the command line's choices and flags, the experiment runners, the size
budgets and `sciml.data.make_dataset` all read these tables; `tests/test_catalogue.py` checks
them against the implementations. Adding a dataset recipe means one entry in `RECIPES` (and
its generator and description functions, in a module of their own).

Imports neither JAX nor the subpackages: `sciml --help` and config errors read this module.
Implementations are named as `"module:attribute"` and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def resolve(reference: str) -> Any:
    """The object named by `"package.module:attribute"`, importing the module."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


# --- dataset recipes ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeOption:
    """A recipe-specific option: `int`, `float` (both positive; 0 in a config means the
    recipe's default) or `bool` (a flag)."""

    type: type
    help: str


RECIPE_OPTIONS: dict[str, RecipeOption] = {
    "solve_resolution": RecipeOption(int, "grid of the reference solve, subsampled to resolution"),
    "zero_mean": RecipeOption(
        bool, "drop the constant mode of the coefficient field (FNO MATLAB generator)"
    ),
    "nu": RecipeOption(float, "viscosity"),
    "t_final": RecipeOption(float, "final time"),
    "dt": RecipeOption(float, "time step"),
    "record_steps": RecipeOption(int, "recorded frames"),
    "length_scale": RecipeOption(float, "length scale of the input Gaussian process"),
}


def _one_in_one_out(**_: Any) -> tuple[int, int]:
    return 1, 1


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe: what its samples look like and where its generator lives.

    **Fields:**

    - `name`: the recipe's name in configs and on the command line.
    - `description`: one line stored in the file.
    - `options`: its keyword options (keys of `RECIPE_OPTIONS`; all optional).
    - `grid`: `"nodes"` (`x_i = i / (s - 1)`, both ends included) or `"periodic"`
        (`x_j = j / s` on `[0, 1)`).
    - `num_spatial_dims`: spatial dimensions of the samples.
    - `generator`: `"module:function"` of `generate(key, n, resolution, *, chunk_size,
        **options)` -> iterator of channels-first `(inputs, outputs)` float32 chunks.
    - `describer`: `"module:function"` of `info(resolution, **options)` -> the JSON
        description stored in the file; it checks the arguments, raising `ValueError`
        (`sciml._validate.ArgumentError` naming the argument) with a one-sentence message.
    - `chunk_size`: samples per jitted call of the generator by default.
    - `coster`: `"module:function"` of `cost(chunk, resolution, options)` ->
        `(solve_resolution, floats)`: the grid of the reference solve and the floats held
        while one chunk of `chunk` samples is generated (for the size budget; plain
        arithmetic that checks nothing, so that absurd sizes can be weighed).
    - `channels`: `channels(**options)` -> `(in_channels, out_channels)`.
    - `trajectory`: the outputs are frames in time (the channel axis), usable by the
        `rollout` and `space_time` tasks.
    - `cache_stem`: `(resolution, options) -> str`, the start of a cached file's name, when it
        is not `<name>_s<resolution><_option value...>`.
    - `resolution_help`: what `--resolution` means for this recipe, if not grid points.
    """

    name: str
    description: str
    options: tuple[str, ...]
    grid: str
    num_spatial_dims: int
    generator: str
    describer: str
    chunk_size: int
    coster: str
    channels: Callable[..., tuple[int, int]] = _one_in_one_out
    trajectory: bool = False
    cache_stem: Callable[[int, Mapping[str, Any]], str] | None = None
    resolution_help: str = ""

    def generate(self, key, n: int, resolution: int, **options: Any):
        """The recipe's generator (see `generator`)."""
        return resolve(self.generator)(key, n, resolution, **options)

    def info(self, resolution: int, **options: Any) -> dict[str, Any]:
        """The recipe's description of a data set (see `describer`)."""
        return resolve(self.describer)(resolution, **options)

    def generation_cost(
        self, chunk: int, resolution: int, options: Mapping[str, Any]
    ) -> tuple[int, int]:
        """The solve grid and the floats of generating one chunk (see `coster`)."""
        return resolve(self.coster)(chunk, resolution, options)

    def coordinates(self, resolution: int) -> tuple[np.ndarray, ...]:
        """The coordinate vector of every spatial axis at `resolution` points per axis."""
        if self.grid == "nodes":
            axis = np.linspace(0.0, 1.0, resolution)
        else:
            axis = np.arange(resolution) / resolution
        return (axis,) * self.num_spatial_dims

    def cache_name(self, resolution: int, options: Mapping[str, Any], n: int, seed: int) -> str:
        """The file name under which generated data are cached: every setting they depend on
        (`options`: those that differ from the recipe's defaults)."""
        if self.cache_stem is not None:
            stem = self.cache_stem(resolution, options)
        else:
            stem = f"{self.name}_s{resolution}" + "".join(
                f"_{k}{v}" for k, v in sorted(options.items())
            )
        return f"{stem}_n{n}_seed{seed}.h5"


def _darcy_stem(resolution: int, options: Mapping[str, Any]) -> str:
    solve = options.get("solve_resolution") or "default"
    mean = "_zeromean" if options.get("zero_mean") else ""
    return f"darcy_s{resolution}_solve{solve}{mean}"


RECIPES: dict[str, Recipe] = {
    "darcy": Recipe(
        name="darcy",
        description=(
            "Darcy flow -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary; inputs: "
            "coefficient a, outputs: solution u, on the node grid including the boundary"
        ),
        options=("solve_resolution", "zero_mean"),
        grid="nodes",
        num_spatial_dims=2,
        generator="sciml.data._recipes.darcy:darcy_dataset_chunks",
        describer="sciml.data._recipes.darcy:darcy_recipe_info",
        chunk_size=16,
        coster="sciml.data._recipes.darcy:darcy_generation_cost",
        cache_stem=_darcy_stem,
    ),
    "burgers": Recipe(
        name="burgers",
        description=(
            "viscous Burgers u_t + (u^2/2)_x = nu u_xx on the periodic [0,1); inputs: u(0), "
            "outputs: u(t_final)"
        ),
        options=("solve_resolution", "nu", "t_final", "dt"),
        grid="periodic",
        num_spatial_dims=1,
        generator="sciml.data._recipes.burgers:generate_burgers",
        describer="sciml.data._recipes.burgers:burgers_recipe_info",
        chunk_size=64,
        coster="sciml.data._recipes.burgers:burgers_generation_cost",
    ),
    "navier_stokes": Recipe(
        name="navier_stokes",
        description=(
            "2-D Navier-Stokes in vorticity form on the unit torus; inputs: w(0), outputs: "
            "w at record_steps equally spaced times up to t_final (time is the channel axis)"
        ),
        options=("solve_resolution", "nu", "t_final", "dt", "record_steps"),
        grid="periodic",
        num_spatial_dims=2,
        generator="sciml.data._recipes.navier_stokes:generate_navier_stokes",
        describer="sciml.data._recipes.navier_stokes:navier_stokes_recipe_info",
        chunk_size=8,
        coster="sciml.data._recipes.navier_stokes:navier_stokes_generation_cost",
        channels=lambda record_steps=None, **_: (1, record_steps or 50),
        trajectory=True,
    ),
    "antiderivative": Recipe(
        name="antiderivative",
        description=(
            "antiderivative s(y) = int_0^y u(x) dx of Gaussian-process inputs u on [0,1]; "
            "inputs: u, outputs: s, on the same points"
        ),
        options=("length_scale",),
        grid="nodes",
        num_spatial_dims=1,
        generator="sciml.data._recipes.antiderivative:generate_antiderivative",
        describer="sciml.data._recipes.antiderivative:antiderivative_recipe_info",
        chunk_size=1000,
        coster="sciml.data._recipes.antiderivative:antiderivative_generation_cost",
        resolution_help="sensor points",
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; `ValueError` naming the allowed ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is unknown; allowed: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipes_with(option: str) -> tuple[str, ...]:
    """The recipes that take `option`."""
    return tuple(name for name, recipe in RECIPES.items() if option in recipe.options)


# --- PINN benchmarks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """A problem of `sciml.pinn.benchmarks` as configs see it.

    **Fields:**

    - `terms`: its loss terms, in order (`train.weights` gives one weight per term).
    - `dims`: dimension of its points (space, and time if time-dependent).
    - `order`: highest derivative order in its residual (for the memory estimate).
    - `zero_dirichlet`: u = 0 on the whole boundary (`model.hard_constraint` applies).
    - `reference`: `(resolution, output times)` of its numerical reference solution when it
        has no exact one (`problem.reference_resolution` applies); `None` otherwise.
    """

    terms: tuple[str, ...]
    dims: int
    order: int
    zero_dirichlet: bool = False
    reference: tuple[int, int] | None = None

    @property
    def time_dependent(self) -> bool:
        return "initial" in self.terms


PINN_BENCHMARKS: dict[str, Benchmark] = {
    "poisson_2d": Benchmark(("residual", "boundary"), 2, 2, zero_dirichlet=True),
    "helmholtz_2d": Benchmark(("residual", "boundary"), 2, 2, zero_dirichlet=True),
    "klein_gordon": Benchmark(("residual", "initial", "boundary"), 3, 2),
    "flow_mixing": Benchmark(("residual", "initial", "boundary"), 3, 1),
    "nonlinear_diffusion": Benchmark(
        ("residual", "initial", "boundary"), 3, 2, zero_dirichlet=True, reference=(100, 101)
    ),
    "allen_cahn": Benchmark(("residual", "initial", "periodic"), 2, 2, reference=(512, 201)),
    # GP-HM's high-frequency cases with PINN configs (sciml.pinn.benchmarks.HIGH_FREQUENCY)
    "poisson_1d_x_sin_200x": Benchmark(("residual", "boundary"), 1, 2),
    "poisson_1d_multiscale": Benchmark(("residual", "boundary"), 1, 2),
    "allen_cahn_1d_sin_100x": Benchmark(("residual", "boundary"), 1, 2),
    "poisson_2d_sin_100x": Benchmark(("residual", "boundary"), 2, 2),
    "advection_sin": Benchmark(("residual", "initial", "boundary"), 2, 1),
}


# --- activations --------------------------------------------------------------------------

# `model.activation` of operator configs and `model.mlp.activation` of PINN configs.
OPERATOR_ACTIVATIONS: dict[str, str] = {
    "gelu": "jax.nn:gelu",
    "relu": "jax.nn:relu",
    "tanh": "jax.numpy:tanh",
    "silu": "jax.nn:silu",
    "elu": "jax.nn:elu",
}
FIELD_ACTIVATIONS: dict[str, str] = {
    "tanh": "jax.numpy:tanh",
    "sin": "jax.numpy:sin",
    "gelu": "jax.nn:gelu",
    "silu": "jax.nn:silu",
}


# --- optimisers ---------------------------------------------------------------------------

# `train.optimizer` of operator and PINN configs: factories `f(learning_rate)` of first-order
# Optax optimisers (the learning rate a float or a schedule). PINN runs wrap them in
# `optax.inject_hyperparams`; operator runs put the L2 weight decay before them.
OPTIMIZERS: dict[str, str] = {
    "adam": "optax:adam",
    "soap": "sciml.train:soap",
}
# `train.optimizer` of PINN configs only: optimisers that need the residuals, not only the
# loss's gradient (no Optax transformation), with their default hyperparameters.
PINN_OPTIMIZERS: dict[str, str] = {
    "natural_gradient": "sciml.pinn:NaturalGradient",
}

# --- experiment trackers (`log.trackers`) -----------------------------------------------------
# name -> (the module it imports, the sciml extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


# --- non-finite policies ----------------------------------------------------------------------

# What a NaN or Inf in the loss, the gradient or an update does (`fit`, `pinn.solve`,
# `train.on_nonfinite`).
NONFINITE_POLICIES: dict[str, str] = {
    "stop": "exit status 1, naming the step and the last good checkpoint",
    "rollback": "to the newest checkpoint, with the learning rate times train.rollback_lr_factor",
    "skip": "that step only",
}
ROLLBACK_DEFAULTS = {"rollback_lr_factor": 0.5, "max_rollbacks": 3}


def describe_policies() -> str:
    """One line naming each policy and what it does."""
    return ", ".join(f"{name} ({what})" for name, what in NONFINITE_POLICIES.items())
