"""Size budgets: the memory, disk and set-up time a run or a dataset will need, estimated from
the config alone before anything is allocated.

A config whose sizes are each valid may still ask for more than the machine has (a resolution
of 10^9, a model of 10^8 layers): without a check it runs the machine out of memory, or hangs
building layers, long after the run directory was made. Here every such size is turned into
what it implies, by one estimate per kind of run (operator configs, PINN configs, `sciml data`)
that is pure arithmetic on Python integers (no arrays, microseconds), and compared with what
the machine has. A refusal names the key whose value contributes most: the one whose reset to
its default lowers the estimate the most.

The estimates aim at a factor of about 2 of the real peak (measured for the repository's
configs on a CPU); they are bounds for absurd values, not a memory planner. What exceeds this
machine can still be run with `allow_large=True` (`--allow-large`); only what no machine can
run stays an error: more samples or points along one axis than JAX's 32-bit indices reach,
more optimizer steps than its 32-bit step counters count, or more memory than any single
machine has.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _machine
from .._catalogue import PINN_BENCHMARKS, get_recipe
from .config import PINN_SCHEMA, SCHEMA, ConfigError, reads_own_file, show_value
from .user_problem import problem_facts

# JAX indexes arrays (gathers, slices, `jax.random.split`) with int32 unless x64 is on, and
# counts optimizer and guard steps in int32: longer axes end in an OverflowError deep inside
# JAX (e.g. data.n_train = 10^12 while generating the data).
INDEX_LIMIT = 2**31 - 1
# No single machine has a pebibyte of memory (the largest shared-memory servers have tens of
# terabytes); above it a run is impossible, not merely large.
IMPOSSIBLE_MEMORY = 2**50
# HDF5 and NumPy address bytes with signed 64-bit offsets.
IMPOSSIBLE_DISK = 2**63 - 1
# Set-up before the first step (building, compiling, reference solves) that is not reported by
# a progress bar: beyond an hour a run looks hung.
SETUP_SECONDS = 3600.0
# Building one layer (eagerly, with its random initialisation) and compiling it into the
# forward and backward pass, on a 2-core CPU: 0.03 s per layer of a plain FNO or MLP, 0.13 s
# per convolution of an MgNO rolled out over 40 frames, 0.45 s per layer of an FNO rolled out
# over 40 frames (XLA's compile time grows faster than linearly with the graph). 0.1 s is the
# middle; drawing the initial parameters costs ~10 ns each.
SECONDS_PER_LAYER = 0.1
SECONDS_PER_PARAM = 1e-8
# Parameters, gradient, Adam's two moments, the best model kept by `fit` and one more copy
# for the update (or the rollback snapshot).
STATE_COPIES = 6
FLOAT32 = 4

# PINN benchmarks (`sciml._catalogue.PINN_BENCHMARKS`: dimension of the points and highest
# derivative order in the residual): one evaluation of the residual and its gradient holds
# about 4 (1 + dim)^order floats per point and hidden unit (measured: 16 for flow_mixing, 24
# for allen_cahn with a PIG, whose estimates are 16 and 36). Of the benchmarks with a
# numerical reference, nonlinear_diffusion solves on 4x the resolution, allen_cahn on >= 8192
# points.
ALLEN_CAHN_SOLVE = 8192
ALLEN_CAHN_STEPS = 1000
# nonlinear_diffusion's reference takes ~10 s at resolution 100 on a 2-core CPU, and its
# explicit solve takes (4 resolution)^2 points times ~(4 resolution)^2 stable steps.
NONLINEAR_DIFFUSION_SECONDS = 10.0
# `sciml.pinn.solve` evaluates errors in batches of 4096 points; RAD draws a pool of 10x the
# residual points; L-BFGS keeps 50 pairs of parameter vectors.
PINN_EVAL_BATCH = 4096
RAD_POOL = 10
LBFGS_MEMORY = 50

# The size keys of each kind of config, in the order a tie is reported.
OPERATOR_SIZE_KEYS = (
    "data.resolution",
    "data.n_train",
    "data.n_test",
    "data.solve_resolution",
    "data.record_steps",
    "task.t_in",
    "task.t_out",
    "model.width",
    "model.depth",
    "model.modes",
    "model.padding",
    "model.projection_channels",
    "model.channels",
    "model.levels",
    "model.smoothing_steps",
    "model.branch_widths",
    "model.trunk_widths",
    "model.basis",
    "model.sensors",
    "model.ensemble",
    "train.batch_size",
    "eval.batch_size",
    "eval.plot_samples",
)
PINN_SIZE_KEYS = (
    "train.num_residual",
    "train.num_boundary",
    "train.num_initial",
    "train.num_periodic",
    "model.mlp.width",
    "model.mlp.depth",
    "model.mlp.fourier_features",
    "model.pig.num_gaussians",
    "model.pig.feature_dim",
    "model.pig.hidden",
    "model.pig.layers",
    "problem.reference_resolution",
)
STEP_KEYS = ("train.steps", "train.lbfgs_steps")
DATA_FLAGS = ("--n", "--resolution", "--solve-resolution", "--record-steps", "--chunk-size")


@dataclass(frozen=True)
class Estimate:
    """What a run (or a dataset generation) needs, by part.

    **Fields:**

    - `memory`: bytes of host memory by part (e.g. `"dataset"`, `"model"`, `"one batch"`).
    - `disk`: bytes written to disk (a generated dataset), under `disk_path`.
    - `disk_path`: where they are written.
    - `seconds`: estimated set-up seconds before the first step, by part.
    - `axes`: `(keys, length, what)` of array axes and counters that JAX indexes with 32-bit
        integers: the key, or the keys, the length follows from (`what`: how).
    """

    memory: dict[str, int]
    disk: int = 0
    disk_path: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    axes: tuple[tuple[str | tuple[str, ...], int, str], ...] = ()

    @property
    def total_memory(self) -> int:
        return sum(self.memory.values())

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


# --- what the machine has ------------------------------------------------------------------


def available_memory() -> int:
    """Bytes of memory this process can still allocate (`sciml._machine.available_memory`:
    `SCIML_MEMORY_BYTES`, `MemAvailable`, a cgroup limit); unknown counts as unlimited, so
    that only the impossible is refused."""
    try:
        available = _machine.available_memory()
    except _machine.MachineSettingError as e:
        raise ConfigError(str(e)) from None
    return IMPOSSIBLE_MEMORY if available is None else available


def free_disk(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds `path` (`sciml._machine.free_disk`:
    `SCIML_DISK_BYTES` if set); unknown counts as unlimited."""
    try:
        free = _machine.free_disk(path)
    except _machine.MachineSettingError as e:
        raise ConfigError(str(e)) from None
    return IMPOSSIBLE_DISK if free is None else free


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    dataset: int  # bytes of all samples, float32
    generation: int  # working memory of the generator: its keys and one chunk
    axes: tuple[tuple[str, int, str], ...]


def _data_needs(
    recipe: str, n: int, resolution: int, options: Mapping[str, Any], chunk_size: int | None
) -> _Data:
    """Bytes of `n` samples of a recipe and of generating them (keys, one chunk's solves, after
    the generators' own docstrings); `options` as for `make_dataset` (absent, None or 0: the
    recipe's default)."""
    spec = get_recipe(recipe)
    options = {k: v for k, v in options.items() if v is not None and v is not False and v != 0}
    channels = spec.channels(**options)
    chunk = min(chunk_size or spec.chunk_size, n)
    points = resolution**spec.num_spatial_dims
    solve, work = spec.generation_cost(chunk, resolution, options)
    axes = [("resolution", resolution, ""), ("solve_resolution", solve, "")]
    if spec.trajectory:
        axes.append(("record_steps", channels[1], ""))
    return _Data(
        dataset=n * sum(channels) * points * FLOAT32,
        # `jax.random.split(key, n)`: 8 bytes per sample, then one chunk at a time.
        generation=8 * n + (work + chunk * sum(channels) * points) * FLOAT32,
        axes=tuple(axes),
    )


# --- operator runs -------------------------------------------------------------------------


def _generated(data: Mapping) -> bool:
    """Whether a run of this `[data]` table generates its dataset (no file given, none cached)."""
    if data.get("path"):
        return False
    from .datasets import dataset_path

    try:
        return not dataset_path(data).exists()
    except (OSError, ValueError):
        return True


def _mlp_params(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def _deep_params(n_in: int, width: int, depth: int, n_out: int) -> int:
    """`_mlp_params([n_in, *[width] * depth, n_out])` without building the list."""
    return _mlp_params([n_in, width]) + (depth - 1) * (width + 1) * width + (width + 1) * n_out


@dataclass(frozen=True)
class _Model:
    params: int
    layers: int  # layers built, and compiled once per call
    train: int  # floats held per sample for the backward pass of one call
    forward: int  # floats live per sample in one call without gradients
    shared: int = 0  # floats per batch that do not grow with it (a DeepONet's trunk)


def _fno(model: Mapping, channels: tuple[int, int], spatial: list[int], padded: list[int]):
    width, depth, projection = model["width"], model["depth"], model["projection_channels"]
    d = len(model["modes"])
    lifted = channels[0] + (d if model["grid_features"] else 0)
    # Spectral weights: real and imaginary (in, out, 2 m_1, ..., 2 m_{d-1}, m_d).
    spectral = width**2 * 2 ** (d - 1) * math.prod(model["modes"]) * 2
    params = (
        _mlp_params([lifted, width])
        + depth * (spectral + width**2 + width)
        + _mlp_params([width, projection, channels[1]])
    )
    n, n_padded = math.prod(spatial), math.prod(padded)
    # Per Fourier layer about 4 grids of `width` channels are kept for the backward pass (the
    # input, the two branches' sum, the activation's input and output; measured: 9.2 GB for
    # navier_stokes_fno, estimated 9.6 GB, 5.4 GB for navier_stokes_fno3d, estimated 5.1 GB);
    # the projection keeps its hidden layer before and after the activation.
    train = depth * width * n_padded * 4 + (3 * projection + width + lifted) * n
    forward = 3 * width * n_padded + 2 * projection * n
    return _Model(params, 2 * depth + 3, train, forward)


def _mgno(model: Mapping, channels: tuple[int, int], spatial: list[int]):
    levels, depth, steps = model["levels"], model["depth"], model["smoothing_steps"]
    per_level = list(model["channels"]) * (levels if len(model["channels"]) == 1 else 1)
    d = len(spatial)
    c0 = max(per_level[0], *channels)
    # Per V-cycle: A and one S per smoothing step on every level (3^d kernels), R (3^d) and
    # P (4^d) between levels; per layer the pointwise W and its bias.
    vcycle = sum(c * c * 3**d * (1 + steps) for c in per_level) + sum(
        a * b * (3**d + 4**d) for a, b in zip(per_level[:-1], per_level[1:], strict=False)
    )
    params = depth * (vcycle + c0 * c0 + c0)
    n = math.prod(spatial)
    # The finest grid dominates, the coarser ones add a fraction (measured for
    # navier_stokes_mgno: 1.05 GB per sample, i.e. 10 floats per channel, grid point and layer
    # with one smoothing step).
    train = depth * c0 * n * (6 + 2 * steps) * 5 // 4
    forward = 2 * c0 * n * (4 + steps)
    layers = depth * (levels * (2 + steps) + 2 * (levels - 1) + 1)
    return _Model(params, layers, train, forward)


def _deeponet(
    model: Mapping, channels: tuple[int, int], spatial: list[int], resolution: int
) -> _Model:
    basis, d = model["basis"], len(spatial)
    sensors = channels[0] * (model["sensors"] or resolution) ** d
    branch_out = channels[1] if model["stacked"] else basis * channels[1]
    nets = basis if model["stacked"] else 1
    branch = [sensors, *model["branch_widths"], branch_out]
    trunk = [d, *model["trunk_widths"], basis]
    params = nets * _mlp_params(branch) + _mlp_params(trunk)
    n = math.prod(spatial)
    per_sample = nets * sum(branch) + n * channels[1] * 2
    # The trunk does not depend on the sample: under `vmap` it is evaluated once per batch.
    shared = 3 * n * sum(trunk)
    return _Model(params, len(branch) + len(trunk), 3 * per_sample, per_sample, shared)


@functools.lru_cache(maxsize=16)
def _own_file(path: str, inputs: str, outputs: str, channels: str, stride: int, mtime: float):
    """`sciml.data.inspect_arrays` of your own file, once per file version (the size checks
    estimate many variants of one config)."""
    from ..data import inspect_arrays

    return inspect_arrays(path, inputs=inputs, outputs=outputs, channels=channels, stride=stride)


def _own_files(data: Mapping) -> list[Any]:
    """The `ArraysInfo` of data.path and data.test_path (if given) of a config that reads
    your own file."""
    infos = []
    for key in ("path", "test_path"):
        if data.get(key):
            keys = (data["inputs"], data["outputs"], data["channels"], data["stride"])
            infos.append(_own_file(data[key], *keys, os.path.getmtime(data[key])))
    return infos


def _operator_model(config: Mapping) -> tuple[_Model, int, tuple[int, int], list[int]]:
    """The model's sizes, how often one forward pass calls it, its channels and its grid."""
    data, task, model = config["data"], config["task"], config["model"]
    resolution = data["resolution"]
    if reads_own_file(data):
        info = _own_files(data)[0]
        spatial = list(info.spatial)
        channels, calls = (info.in_channels, info.out_channels), 1
        trajectory = task["kind"] != "direct"
    else:
        recipe = get_recipe(data["recipe"])
        spatial = [resolution] * recipe.num_spatial_dims
        channels, calls = (1, 1), 1
        trajectory = recipe.trajectory
    dims = len(spatial)
    if trajectory:
        kind, t_in, t_out = task["kind"], task["t_in"], task["t_out"]
        channels = (t_in, t_out)
        if kind == "rollout":  # one frame per call, unrolled over t_out calls
            channels, calls = (t_in, 1), t_out
        elif kind == "space_time":  # FNO-3D over (x, y, t)
            channels = (t_in, 1)
            spatial = [*spatial, t_out]
    name = model["name"]
    if name == "fno":
        if len(spatial) > dims:  # only the time axis is padded
            padded = [*spatial[:-1], spatial[-1] + model["padding"]]
        else:
            padded = [n + model["padding"] for n in spatial]
        sizes = _fno(model, channels, spatial, padded)
    elif name == "mgno":
        sizes = _mgno(model, channels, spatial)
    else:
        sizes = _deeponet(model, channels, spatial, resolution)
    return sizes, calls, channels, spatial


def _estimate_operator(config: Mapping) -> Estimate:
    data, train = config["data"], config["train"]
    evaluation = config.get("eval", {})
    n_train, n_test = data["n_train"], data["n_test"]
    n = n_train + n_test
    from .datasets import recipe_options

    if reads_own_file(data):
        needs = _Data(dataset=sum(info.nbytes for info in _own_files(data)), generation=0, axes=())
    else:
        needs = _data_needs(data["recipe"], n, data["resolution"], recipe_options(data), None)
    memory: dict[str, int] = {}
    generated = _generated(data)
    if not data.get("stream"):
        stored = needs.dataset
        if data.get("path"):
            try:  # the whole file is read, whatever n_train + n_test
                stored = max(stored, os.path.getsize(data["path"]))
            except OSError:
                pass
        memory["dataset"] = stored
    if generated:
        memory["data generation"] = needs.generation

    sizes, calls, channels, spatial = _operator_model(config)
    # A deep ensemble holds and runs every member at once (one vmapped model).
    members = config["model"].get("ensemble", 1)
    memory["model"] = STATE_COPIES * FLOAT32 * sizes.params * members
    points = math.prod(spatial)
    batch = train["batch_size"]
    samples = batch * (sum(channels) * points + calls * sizes.train * members)
    seen = min(max(evaluation.get("batch_size", 0), evaluation.get("plot_samples", 0)), n_test)
    evaluated = seen * (sum(channels) * points + calls * sizes.forward * members)
    memory["one batch"] = FLOAT32 * (max(samples, evaluated) + sizes.shared)

    layers = sizes.layers * calls
    seconds = {"model build": SECONDS_PER_LAYER * layers + SECONDS_PER_PARAM * sizes.params}
    steps = train["epochs"] * -(-n_train // batch)
    axes = (
        (("data.n_train", "data.n_test"), n, "data.n_train + data.n_test"),
        *((f"data.{key}", length, what) for key, length, what in needs.axes),
        (
            ("train.epochs", "data.n_train", "train.batch_size"),
            steps,
            "train.epochs x batches per epoch (optimizer steps)",
        ),
        *_model_axes(config["model"]),
        *((("model.ensemble", members, "members"),) if members > 1 else ()),
    )
    return Estimate(
        memory=memory,
        disk=needs.dataset if generated else 0,
        disk_path=str(data.get("cache_dir") or "."),
        seconds=seconds,
        axes=axes,
    )


def _model_axes(model: Mapping) -> list[tuple[str, int, str]]:
    axes = []
    for key in ("width", "projection_channels", "basis", "sensors"):
        axes.append((f"model.{key}", model[key], ""))
    for key in ("channels", "branch_widths", "trunk_widths", "modes"):
        axes.append((f"model.{key}", max(model[key], default=0), "its largest entry"))
    return axes


# --- PINN runs -----------------------------------------------------------------------------


def _pinn_model(config: Mapping) -> _Model:
    """The PINN model's sizes; `train` and `forward` count hidden units per point."""
    model = config["model"]
    dim = problem_facts(config).dims
    if model["name"] == "gp":
        gp = model["gp"]
        nodes = math.prod(gp["nodes"])
        # node values, the mixture per axis; per node the Taylor coefficients of the mean
        params = nodes + 3 * gp["components"] * dim
        per_node = (gp["max_order"] + 1) ** dim
        return _Model(params, 4, per_node, per_node)
    if model["name"] == "mlp":
        mlp = model["mlp"]
        width, depth, features = mlp["width"], mlp["depth"], mlp["fourier_features"]
        # Random Fourier features (cos and sin), or the periodic embedding, or the point.
        embedded = 2 * features if features else (2 * dim if mlp["periodic"] else dim)
        params = _deep_params(embedded, width, depth, 1) + features * dim
        units, layers = width * depth + embedded, depth + 2
    else:
        pig = model["pig"]
        gaussians, features, hidden = pig["num_gaussians"], pig["feature_dim"], pig["hidden"]
        # Means, scales (and off-diagonals) and features per Gaussian, then the small MLP.
        per_gaussian = dim + (dim * (dim + 1) // 2 if pig["covariance"] == "full" else dim)
        params = gaussians * (per_gaussian + features) + _deep_params(
            features, hidden, pig["layers"], 1
        )
        units, layers = gaussians + features + hidden * pig["layers"], pig["layers"] + 2
    return _Model(params, layers, units, units)


def _estimate_pinn(config: Mapping) -> Estimate:
    problem, model, train = config["problem"], config["model"], config["train"]
    name = problem["name"]
    # A problem module's own `num_points` are not counted here (nor observations: few).
    facts = problem_facts(config)
    benchmark = None if problem["module"] else PINN_BENCHMARKS[name]
    dim, order = facts.dims, facts.order
    size = 8 if train["float64"] else FLOAT32
    dropped = facts.hard_constraint_drops if model["hard_constraint"] else ()
    count_keys = {
        key.removeprefix("train.") for term, key in facts.count_keys.items() if term not in dropped
    }
    points = sum(train[key] for key in count_keys)
    sizes = _pinn_model(config)
    params, units, layers = sizes.params, sizes.train, sizes.layers
    per_unit = 4 * (1 + dim) ** order  # see PINN_BENCHMARKS above
    memory = {
        "model": size * params * (STATE_COPIES + (2 * LBFGS_MEMORY if train["lbfgs_steps"] else 0))
    }
    step = points * (dim + 1) + points * units * per_unit
    if train["adaptive"]:  # residuals (no gradient) on the RAD pool
        step += RAD_POOL * train["num_residual"] * (dim + units * per_unit // 2)
    memory["one step"] = size * max(step, PINN_EVAL_BATCH * units * 4)
    if model["name"] == "gp":  # nodes, not sampled points; dense node solves
        gp = model["gp"]
        nodes = math.prod(gp["nodes"])
        per_axis = sum(n * n for n in gp["nodes"]) * (gp["max_order"] + 1)
        memory["one step"] = size * (nodes * units * 8 + per_axis * 4)
        if gp["gauss_newton"] or gp["polish"]:
            memory["node solve"] = size * 4 * nodes * nodes

    seconds = {"model build": SECONDS_PER_LAYER * layers + SECONDS_PER_PARAM * params}
    if benchmark is not None and benchmark.reference is not None:
        default, times = benchmark.reference
        resolution = problem["reference_resolution"] or default
        if name == "nonlinear_diffusion":
            grid = (resolution + 1) ** 2 * times
            solve = (4 * resolution) ** 2 * times  # the saved fine-grid solution
            seconds["reference solve"] = NONLINEAR_DIFFUSION_SECONDS * (resolution / 100) ** 4
        else:
            grid = resolution * times
            fine = resolution * -(-ALLEN_CAHN_SOLVE // resolution)
            solve = fine * times
            # ETDRK4: per step a few FFTs of the fine grid, ~100 n log2 n flops at ~1 GFLOP/s.
            seconds["reference solve"] = ALLEN_CAHN_STEPS * 100 * fine * math.log2(fine) / 1e9
        # float64 solve, then points (dim coordinates) and values, also as JAX arrays.
        memory["reference solution"] = 8 * (solve + 2 * grid * (dim + 1))
    axes = [(f"train.{key}", train[key], "") for key in sorted(count_keys)]
    if train["adaptive"]:
        axes.append(("train.num_residual", RAD_POOL * train["num_residual"], "the RAD pool"))
    total_steps = train["steps"] + train["lbfgs_steps"]
    axes.append((STEP_KEYS, total_steps, "train.steps + train.lbfgs_steps"))
    for section, keys in (
        ("mlp", ("width", "fourier_features")),
        ("pig", ("num_gaussians", "feature_dim", "hidden")),
    ):
        if model["name"] == section:
            axes += [(f"model.{section}.{k}", model[section][k], "") for k in keys]
    if benchmark is not None and benchmark.reference is not None:
        axes.append(("problem.reference_resolution", problem["reference_resolution"], ""))
    return Estimate(memory=memory, seconds=seconds, axes=tuple(axes))


def estimate_run(config: Mapping) -> Estimate:
    """What a validated config (`sciml._config.load_config`) will need: memory by part (the
    dataset unless streamed, generating it, the model with its optimizer state, one training
    or evaluation batch; for PINNs one step over all points and the reference solution), disk
    for a dataset it generates, and set-up seconds (building and compiling the model, a PINN
    reference solve)."""
    if config.get("kind") == "pinn":
        return _estimate_pinn(config)
    return _estimate_operator(config)


def estimate_data(
    recipe: str,
    n: int,
    resolution: int,
    options: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    chunk_size: int | None = None,
) -> Estimate:
    """What `sciml data RECIPE --n N --resolution S [options] --out OUT` will need: the
    generator's memory and the file's bytes on disk."""
    needs = _data_needs(recipe, n, resolution, options, chunk_size)
    flags = {"resolution": "--resolution", "solve_resolution": "--solve-resolution"}
    flags["record_steps"] = "--record-steps"
    axes = (
        ("--n", n, ""),
        *((flags[key], length, what) for key, length, what in needs.axes),
    )
    return Estimate(
        memory={"data generation": needs.generation},
        disk=needs.dataset,
        disk_path=str(Path(os.path.abspath(out)).parent),
        axes=axes,
    )


# --- the checks ----------------------------------------------------------------------------

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def format_bytes(count: int) -> str:
    """`count` bytes in decimal units, e.g. `'7.3 EB'`; `'1e+30 B'` beyond exabytes."""
    if count.bit_length() > 1000:
        return "more than 1e300 B"
    value = float(count)
    for unit in _UNITS:
        if value < 999.5 or unit == _UNITS[-1]:
            break
        value /= 1000
    if value >= 999.5:
        return f"{float(count):.2g} B"
    return f"{value:.3g} {unit}"


def format_seconds(seconds: float) -> str:
    for unit, length in (("years", 365 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= length:
            return f"{seconds / length:.3g} {unit}"
    return f"{seconds / 60:.2g} minutes" if seconds >= 60 else f"{seconds:.2g} s"


def _replace(config: Mapping, key: str, value: Any) -> dict:
    """A copy of `config` (copied along the dotted `key` only) with `key` set to `value`."""
    head, _, rest = key.partition(".")
    out = dict(config)
    out[head] = _replace(config[head], rest, value) if rest else value
    return out


def _lookup(config: Mapping, key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def _culprit(
    estimate: Callable[[Mapping], Estimate],
    config: Mapping,
    defaults: Mapping[str, Any],
    metric: Callable[[Estimate], float],
) -> str:
    """The key (of `defaults`, set to something else in `config`) whose reset to its default
    lowers `metric` the most; the first key set at all if none does."""
    best, best_value = None, metric(estimate(config))
    for key, default in defaults.items():
        if _lookup(config, key) == default:
            continue
        try:
            value = metric(estimate(_replace(config, key, default)))
        except (ArithmeticError, ValueError, KeyError, TypeError):
            continue
        if value < best_value:
            best, best_value = key, value
    if best is not None:
        return best
    return next((k for k in defaults if _lookup(config, k) != defaults[k]), next(iter(defaults)))


def _parts(estimate: Estimate) -> str:
    parts = sorted(estimate.memory.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{part} {format_bytes(size)}" for part, size in parts)


def _check(
    estimate: Callable[[Mapping], Estimate],
    config: Mapping,
    defaults: Mapping[str, Any],
    subject: Callable[[str], str],
    *,
    what: str,
    allow_large: bool,
    memory_bytes: int | None,
    disk_bytes: int | None,
) -> None:
    needs = estimate(config)
    for keys, length, how in needs.axes:
        if length > INDEX_LIMIT:
            if isinstance(keys, str):
                key = keys
            else:  # the one whose default shortens the axis most

                def axis(e: Estimate, how=how) -> int:
                    return max((n for _, n, h in e.axes if h == how), default=0)

                key = _culprit(estimate, config, {k: defaults[k] for k in keys}, axis)
            counted = f"{how} = {length}, but " if how else ""
            raise ConfigError(
                f"{subject(key)} is invalid: {counted}JAX indexes arrays and counts steps with "
                f"32-bit integers: at most {INDEX_LIMIT}, even with --allow-large",
                key=key,
            )
    memory = needs.total_memory

    def culprit(metric: Callable[[Estimate], float]) -> str:
        return _culprit(estimate, config, defaults, metric)

    def total(e: Estimate) -> int:
        return e.total_memory

    if memory > IMPOSSIBLE_MEMORY:
        key = culprit(total)
        raise ConfigError(
            f"{subject(key)} is invalid: {what} would need about {format_bytes(memory)} of "
            f"memory ({_parts(needs)}), more than any single machine has; lower it",
            key=key,
        )
    if needs.disk > IMPOSSIBLE_DISK:
        key = culprit(lambda e: e.disk)
        raise ConfigError(
            f"{subject(key)} is invalid: the dataset would need about "
            f"{format_bytes(needs.disk)} on disk, more than a file can hold; lower it",
            key=key,
        )
    if allow_large:
        return
    hint = "lower it, or pass --allow-large to run anyway"
    available = available_memory() if memory_bytes is None else memory_bytes
    if memory > available:
        key = culprit(total)
        raise ConfigError(
            f"{subject(key)} is invalid: {what} would need about {format_bytes(memory)} of "
            f"memory ({_parts(needs)}) but this machine has {format_bytes(available)} "
            f"available; {hint}",
            key=key,
        )
    if needs.disk:
        free = free_disk(needs.disk_path) if disk_bytes is None else disk_bytes
        if needs.disk > free:
            key = culprit(lambda e: e.disk)
            raise ConfigError(
                f"{subject(key)} is invalid: the dataset would need about "
                f"{format_bytes(needs.disk)} on disk in {needs.disk_path!r} but "
                f"{format_bytes(free)} are free there; {hint}",
                key=key,
            )
    seconds = needs.total_seconds
    if seconds > SETUP_SECONDS:
        parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in needs.seconds.items() if v)
        key = culprit(lambda e: e.total_seconds)
        raise ConfigError(
            f"{subject(key)} is invalid: setting up {what} would take "
            f"about {format_seconds(seconds)} before the first step ({parts}); {hint}",
            key=key,
        )


def _defaults(schema: Mapping, keys: tuple[str, ...], config: Mapping) -> dict[str, Any]:
    out = {}
    for key in keys:
        try:
            _lookup(config, key)
        except (KeyError, TypeError):
            continue
        out[key] = _lookup(schema, key).default
    return out


def check_run_budget(
    config: Mapping,
    *,
    allow_large: bool = False,
    memory_bytes: int | None = None,
    disk_bytes: int | None = None,
) -> None:
    """Refuses a validated config that this machine cannot run, before anything is allocated.

    **Arguments:**

    - `config`: a validated config (`sciml._config.load_config`), operator or PINN.
    - `allow_large`: run what exceeds this machine's memory, disk or the set-up time bound;
        only what no machine can run is still refused.
    - `memory_bytes`, `disk_bytes`: the memory available and the free disk to compare with;
        default what this machine has (`available_memory`, `free_disk`).

    **Raises:**

    `ConfigError` with one line naming the key that contributes most, its value, what the
    run would need and what is available.
    """
    if config.get("kind") == "pinn":
        schema, keys = PINN_SCHEMA, PINN_SIZE_KEYS + STEP_KEYS
    else:
        schema, keys = SCHEMA, OPERATOR_SIZE_KEYS + ("train.epochs",)
    _check(
        estimate_run,
        config,
        _defaults(schema, keys, config),
        lambda key: f"config key '{key}' = {show_value(_lookup(config, key))}",
        what="the run",
        allow_large=allow_large,
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
    )


def check_data_budget(
    recipe: str,
    n: int,
    resolution: int,
    options: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    chunk_size: int | None = None,
    allow_large: bool = False,
    memory_bytes: int | None = None,
    disk_bytes: int | None = None,
) -> None:
    """Refuses `sciml data RECIPE --n N --resolution S [options] --out OUT` when generating the
    file needs more memory, or the file more disk, than this machine has (see
    `check_run_budget`); the one-line `ConfigError` names the flag, e.g. `--resolution`."""
    flags = {
        "--n": n,
        "--resolution": resolution,
        "--solve-resolution": options.get("solve_resolution"),
        "--record-steps": options.get("record_steps"),
        "--chunk-size": chunk_size,
    }

    def estimate(values: Mapping) -> Estimate:
        given = dict(options)
        given.update(
            solve_resolution=values["--solve-resolution"], record_steps=values["--record-steps"]
        )
        return estimate_data(
            recipe,
            values["--n"],
            values["--resolution"],
            given,
            out,
            chunk_size=values["--chunk-size"],
        )

    data = SCHEMA["data"]
    defaults = {"--n": data["n_train"].default, "--resolution": data["resolution"].default}
    defaults.update({flag: None for flag in DATA_FLAGS[2:]})
    _check(
        estimate,
        flags,
        defaults,
        lambda flag: f"{flag} {show_value(flags[flag])}",
        what="generating the data",
        allow_large=allow_large,
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
    )
