"""`sciml run`: a validated config -> data, model, optimizer -> `sciml.train.fit` -> a run dir.

Everything here is assembled from public pieces (`sciml.data`, `sciml.operators`,
`sciml.train`); a user's own loop can do the same in a few lines (see the README).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import data as sdata
from . import operators, train
from ._atomic import RunLock, atomic_write_bytes, remove_temporaries
from .data._generate import get_recipe

ACTIVATIONS = {
    "gelu": jax.nn.gelu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
}


def recipe_options(data_cfg: dict) -> dict[str, Any]:
    """The recipe-specific options of a `[data]` table that differ from the recipe's defaults
    (0 / false in a config means "the recipe's default")."""
    from ._config import _RECIPE_KEYS

    return {k: data_cfg[k] for k in _RECIPE_KEYS[data_cfg["recipe"]] if data_cfg[k]}


def dataset_path(data_cfg: dict) -> Path:
    """Where the dataset of a `[data]` table lives: the given path or a cache file name that
    encodes every setting the data depend on."""
    if data_cfg["path"]:
        return Path(data_cfg["path"])
    n = data_cfg["n_train"] + data_cfg["n_test"]
    recipe, resolution, seed = data_cfg["recipe"], data_cfg["resolution"], data_cfg["seed"]
    if recipe == "darcy":
        solve = data_cfg["solve_resolution"] or "default"
        mean = "_zeromean" if data_cfg["zero_mean"] else ""
        name = f"darcy_s{resolution}_solve{solve}{mean}_n{n}_seed{seed}.h5"
    else:
        options = "".join(f"_{k}{v}" for k, v in sorted(recipe_options(data_cfg).items()))
        name = f"{recipe}_s{resolution}{options}_n{n}_seed{seed}.h5"
    return Path(data_cfg["cache_dir"]) / name


def obtain_dataset(data_cfg: dict, *, progress: bool = True) -> sdata.Dataset:
    """Loads the configured dataset, generating and caching it first if needed; with
    `data.stream` its arrays stay on disk (`sciml.data.open_dataset`)."""
    path = dataset_path(data_cfg)
    n = data_cfg["n_train"] + data_cfg["n_test"]
    recipe = get_recipe(data_cfg["recipe"])
    if not path.exists():
        if data_cfg["path"]:
            raise sdata.DatasetError(f"config key 'data.path' = {str(path)!r}: no such file")
        # Runs started together (a sweep in several shells) generate a cached file once: the
        # others wait for it. Under the lock, the temporary file of a generation that was
        # killed is deleted, since no other process is writing this one.
        with RunLock(path.parent, wait=True, lock_name=f".{path.name}.lock"):
            remove_temporaries(path.parent, target=path.name)
            if not path.exists():
                print(f"generating {n} {recipe.name} samples -> {path}", flush=True)
                sdata.make_dataset(
                    recipe.name,
                    path,
                    n=n,
                    resolution=data_cfg["resolution"],
                    seed=data_cfg["seed"],
                    progress=progress,
                    **recipe_options(data_cfg),
                )
    read = sdata.open_dataset if data_cfg.get("stream", False) else sdata.load_dataset
    dataset = read(path)
    if not data_cfg["path"]:
        _check_cached(path, dataset, data_cfg, recipe)
    if len(dataset) < n:
        raise sdata.DatasetError(
            f"{path} holds {len(dataset)} samples but data.n_train + data.n_test = {n}"
        )
    spatial = (data_cfg["resolution"],) * recipe.num_spatial_dims
    if dataset.inputs.shape[2:] != spatial:
        raise sdata.DatasetError(
            f"{path} has spatial shape {dataset.inputs.shape[2:]} but data.resolution = "
            f"{data_cfg['resolution']} needs {spatial} for the {recipe.name} recipe"
        )
    return dataset


def _check_cached(path: Path, dataset: sdata.Dataset, data_cfg: dict, recipe) -> None:
    """A cached file must hold what its name promises: the recipe, its settings and the seed
    of the config (a file replaced or renamed in the cache would silently change the data)."""
    expected = json.loads(
        json.dumps(recipe.info(data_cfg["resolution"], **recipe_options(data_cfg)), sort_keys=True)
    )
    held = dataset.attrs.get("recipe")
    pairs = [("seed", dataset.attrs.get("seed"), data_cfg["seed"])]
    if isinstance(held, dict):
        pairs += [(k, held.get(k), v) for k, v in expected.items()]
    else:
        pairs.append(("recipe", held, expected))
    for name, was, wanted in pairs:
        if was != wanted:
            raise sdata.DatasetError(
                f"cached dataset {path} does not match the config: it was made with {name} = "
                f"{was!r}, the config asks for {wanted!r} (the file was replaced, renamed or "
                "made by another version); delete it to regenerate it"
            )


def task_arrays(config: dict, dataset: sdata.Dataset, start: int, stop: int):
    """The model's `(inputs, targets)` for samples `start:stop` of the dataset.

    For `task.kind = 'direct'` these are the dataset's inputs and outputs; for trajectory
    tasks the first `task.t_in` recorded frames are the input and the next `task.t_out` frames
    the target (the initial condition itself is not used, as in the FNO paper). Nothing is
    read here: NumPy views of arrays in memory, `OnDiskArray` subsets of arrays on disk.
    """
    rows = slice(start, stop)
    if config["task"]["kind"] == "direct" and config["data"]["recipe"] != "navier_stokes":
        return _part(dataset.inputs, rows), _part(dataset.outputs, rows)
    t_in, t_out = config["task"]["t_in"], config["task"]["t_out"]
    frames = dataset.outputs
    return _part(frames, rows, slice(0, t_in)), _part(frames, rows, slice(t_in, t_in + t_out))


def _part(array, rows: slice, channels: slice = slice(None)):
    if isinstance(array, sdata.OnDiskArray):
        return array.subset(rows=rows, channels=channels)
    return array[rows, channels]


def _fno(config: dict, in_channels: int, out_channels: int, *, key) -> operators.FNO:
    model_cfg, resolution = config["model"], config["data"]["resolution"]
    padding: Any = model_cfg["padding"] / resolution
    if config["task"]["kind"] == "space_time":
        # Space is periodic; only the (non-periodic) time axis is padded.
        padding = (0.0, 0.0, model_cfg["padding"] / config["task"]["t_out"])
    return operators.FNO(
        in_channels,
        out_channels,
        modes=tuple(model_cfg["modes"]),
        width=model_cfg["width"],
        depth=model_cfg["depth"],
        activation=ACTIVATIONS[model_cfg["activation"]],
        grid_features=model_cfg["grid_features"],
        padding=padding,
        projection_channels=model_cfg["projection_channels"],
        key=key,
    )


def _mgno(config: dict, in_channels: int, out_channels: int, *, key) -> operators.MgNO:
    model_cfg = config["model"]
    recipe = get_recipe(config["data"]["recipe"])
    boundary = model_cfg["boundary"] or ("circular" if recipe.grid == "periodic" else "zeros")
    channels = model_cfg["channels"]
    return operators.MgNO(
        in_channels,
        out_channels,
        channels=channels[0] if len(channels) == 1 else tuple(channels),
        levels=model_cfg["levels"],
        depth=model_cfg["depth"],
        padding=boundary,
        num_spatial_dims=recipe.num_spatial_dims,
        smoothing_steps=model_cfg["smoothing_steps"],
        activation=ACTIVATIONS[model_cfg["activation"]],
        key=key,
    )


def _deeponet(config: dict, in_channels: int, out_channels: int, *, key):
    model_cfg = config["model"]
    recipe = get_recipe(config["data"]["recipe"])
    return operators.GridDeepONet(
        in_channels,
        out_channels,
        num_spatial_dims=recipe.num_spatial_dims,
        sensors_per_axis=model_cfg["sensors"] or config["data"]["resolution"],
        grid=recipe.grid,
        branch_widths=tuple(model_cfg["branch_widths"]),
        trunk_widths=tuple(model_cfg["trunk_widths"]),
        basis=model_cfg["basis"],
        stacked=model_cfg["stacked"],
        activation=ACTIVATIONS[model_cfg["activation"]],
        key=key,
    )


_BUILDERS = {"fno": _fno, "mgno": _mgno, "deeponet": _deeponet}


def build_model(config: dict, in_channels: int, out_channels: int, *, key) -> Any:
    """The operator named by the `[model]` table, for the `[task]`'s input and output.

    `model.padding` counts grid points at the training `resolution`; the FNO receives it as a
    fraction of the grid, so that the padded domain keeps its physical size (and each Fourier
    mode its wavenumber) when the trained model is evaluated at another resolution.
    Trajectory tasks wrap the operator: `rollout` in [`sciml.operators.Autoregressive`][]
    (one frame per call), `space_time` in [`sciml.operators.SpaceTimeOperator`][] (FNO-3D).
    """
    build = _BUILDERS[config["model"]["name"]]
    kind = config["task"]["kind"]
    if kind == "rollout":
        return operators.Autoregressive(build(config, in_channels, 1, key=key), out_channels)
    if kind == "space_time":
        return operators.SpaceTimeOperator(build(config, in_channels, 1, key=key), out_channels)
    return build(config, in_channels, out_channels, key=key)


def build_normalized_model(config: dict, x_train, y_train, *, key) -> Any:
    """The configured operator, wrapped in normalizers fitted on the training data if
    `train.normalize` (the statistics only need the right shape when a trained model is
    loaded over this one)."""
    model = build_model(config, x_train.shape[1], y_train.shape[1], key=key)
    if config["train"]["normalize"]:
        model = train.Normalized(
            model,
            train.UnitGaussianNormalizer.from_data(x_train),
            train.UnitGaussianNormalizer.from_data(y_train),
        )
    return model


def build_optimizer(train_cfg: dict, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam with L2 weight decay (added to the gradient, as in the FNO paper's PyTorch Adam),
    and the configured learning-rate schedule counted in optimizer steps."""
    lr = train_cfg["learning_rate"]
    total = train_cfg["epochs"] * steps_per_epoch
    if train_cfg["schedule"] == "step":
        schedule = optax.exponential_decay(
            lr,
            transition_steps=train_cfg["step_size"] * steps_per_epoch,
            decay_rate=train_cfg["gamma"],
            staircase=True,
        )
    elif train_cfg["schedule"] == "cosine":
        schedule = optax.cosine_decay_schedule(lr, total)
    elif train_cfg["schedule"] == "onecycle":
        # Warm-up over the first 30% of the steps, then cosine annealing (as MgNO trains).
        schedule = optax.cosine_onecycle_schedule(total, lr)
    else:
        schedule = optax.constant_schedule(lr)
    return optax.chain(
        optax.add_decayed_weights(train_cfg["weight_decay"]),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    )


def metrics_for(config: dict) -> dict[str, Any]:
    """The evaluation metrics (the first is the one `fit` tracks for the best model); the H1
    norm takes the recipe's grid (periodic or nodes) into account."""
    periodic = get_recipe(config["data"]["recipe"]).grid == "periodic"
    return {
        "relative_l2": train.relative_l2,
        "h1": functools.partial(train.h1_loss, periodic=periodic),
        "mse": train.mse,
    }


def nonfinite_options(train_cfg: dict) -> dict[str, Any]:
    """The `on_nonfinite` keyword arguments of `fit` / `solve` from a `[train]` table; the
    rollback keys set to anything but their defaults under another policy are a
    `ConfigError` rather than silently ignored."""
    from ._config import SCHEMA, ConfigError

    policy = train_cfg["on_nonfinite"]
    if policy == "rollback":
        return {
            "on_nonfinite": policy,
            "rollback_lr_factor": train_cfg["rollback_lr_factor"],
            "max_rollbacks": train_cfg["max_rollbacks"],
        }
    for key in ("rollback_lr_factor", "max_rollbacks"):
        if train_cfg[key] != SCHEMA["train"][key].default:
            raise ConfigError(
                f"config key 'train.{key}' = {train_cfg[key]!r} does not apply to "
                f"train.on_nonfinite = {policy!r}; it needs 'rollback'"
            )
    return {"on_nonfinite": policy}


def measure_step_time(model, loss_fn, optimizer, batch, *, repeats: int = 10) -> float:
    """Median wall time in seconds of one compiled `train_step` on `batch` (after warm-up)."""
    opt_state = train.init_optimizer(optimizer, model)
    step = functools.partial(train.train_step, loss_fn=loss_fn, optimizer=optimizer)
    out = step(model, opt_state, batch)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(model, opt_state, batch))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_experiment(config: dict, run_dir: Path, *, resume: bool = False) -> dict:
    """Runs a validated config into `run_dir`; returns the final test metrics.

    Matrix products run at full float32 precision (no TF32 on GPUs), so results do not depend
    on the accelerator's default.
    """
    from ._run import write_config

    mesh = build_mesh(config)
    run_dir = Path(run_dir)
    # The writing process locks the directory for the whole run before anything is written
    # into it; `fit` / `solve` join this lock (with several processes only process 0 writes).
    writer = train.is_writer()
    lock = RunLock(run_dir, scope=True) if writer else contextlib.nullcontext()
    with lock, jax.default_matmul_precision("highest"):
        if not resume and (run_dir / "config.toml").exists():
            raise ValueError(
                f"`run_dir` = '{run_dir}' already holds a run; pass `resume=True` to continue "
                "it, or a fresh directory."
            )
        if writer:
            write_config(run_dir, config)
        if config.get("kind") == "pinn":
            from ._pinn_experiment import run_pinn

            return run_pinn(config, run_dir, resume=resume, mesh=mesh)
        return _run_experiment(config, run_dir, resume=resume, mesh=mesh)


def build_mesh(config: dict) -> jax.sharding.Mesh | None:
    """The device mesh that `train.devices` (and `train.model_parallel`) ask for; `None` for
    the plain single-device path. Raises `ConfigError` for what the machine cannot do."""
    from ._config import ConfigError

    train_cfg = config["train"]
    devices, model = train_cfg["devices"], train_cfg.get("model_parallel", 1)
    if devices == 1 and model == 1:
        return None
    available = jax.devices()
    n = len(available) if devices == "all" else devices
    if n > len(available):
        raise ConfigError(
            f"config key 'train.devices' = {devices!r} is invalid: {len(available)} "
            f"{available[0].platform} device(s) visible (on a CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N provides N)"
        )
    if n % model != 0:
        raise ConfigError(
            f"config key 'train.model_parallel' = {model} is invalid: it must divide the "
            f"{n} devices of train.devices"
        )
    batch_size = train_cfg.get("batch_size")
    if batch_size is not None and batch_size % (n // model) != 0:
        raise ConfigError(
            f"config key 'train.batch_size' = {batch_size} is invalid: it must be a multiple "
            f"of the {n // model} data-parallel devices"
        )
    return train.make_mesh(n, model=model)


def _run_experiment(
    config: dict, run_dir: Path, *, resume: bool, mesh: jax.sharding.Mesh | None = None
) -> dict:
    nonfinite = nonfinite_options(config["train"])
    run_dir = Path(run_dir)
    data_cfg, train_cfg = config["data"], config["train"]
    progress = train_cfg["progress"]

    dataset = obtain_dataset(data_cfg, progress=progress)
    n_train, n_test = data_cfg["n_train"], data_cfg["n_test"]
    x_train, y_train = task_arrays(config, dataset, 0, n_train)
    x_test, y_test = task_arrays(config, dataset, n_train, n_train + n_test)
    metrics = metrics_for(config)

    model_key, train_key = jax.random.split(jax.random.key(config["seed"]))
    model = build_normalized_model(config, x_train, y_train, key=model_key)
    steps_per_epoch = math.ceil(n_train / train_cfg["batch_size"])
    optimizer = build_optimizer(train_cfg, steps_per_epoch)
    loss_fn = train.batch_loss(metrics[train_cfg["loss"]])

    start = time.perf_counter()
    model, history = train.fit(
        model,
        loss_fn,
        (x_train, y_train),
        optimizer=optimizer,
        epochs=train_cfg["epochs"],
        batch_size=train_cfg["batch_size"],
        eval_data=(x_test, y_test),
        eval_metrics=metrics,
        eval_every=train_cfg["eval_every"],
        key=train_key,
        run_dir=run_dir,
        checkpoint_every=train_cfg["checkpoint_every"],
        keep_checkpoints=train_cfg["keep_checkpoints"],
        resume=resume,
        progress=progress,
        mesh=mesh,
        **nonfinite,
    )
    train_time = time.perf_counter() - start

    eval_batch = config["eval"]["batch_size"]
    if mesh is not None and eval_batch % train.data_size(mesh):
        mesh = None  # evaluation is cheap: one device rather than an error
    final = train.evaluate(model, (x_test, y_test), metrics, batch_size=eval_batch, mesh=mesh)
    final = {f"test_{k}": float(v) for k, v in final.items()}
    evaluated = [r for r in history if "eval_relative_l2" in r]
    best_epoch = min(evaluated, key=lambda r: r["eval_relative_l2"])["epoch"] if evaluated else None
    results = {
        **final,
        "best_epoch": best_epoch,
        "epochs": len(history),
        "train_time_s": round(train_time, 2),
        "params": count_params(model),
        "step_time_ms": round(
            1e3
            * measure_step_time(
                model,
                loss_fn,
                optimizer,
                (
                    jnp.asarray(x_train[: train_cfg["batch_size"]]),
                    jnp.asarray(y_train[: train_cfg["batch_size"]]),
                ),
            ),
            3,
        ),
    }
    atomic_write_bytes(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())

    num = config["eval"]["plot_samples"]
    if num:
        preds = np.asarray(jax.vmap(model)(jnp.asarray(x_test[:num])))
        inputs, targets = np.asarray(x_test[:num]), np.asarray(y_test[:num])
        titles = None
        if config["data"]["recipe"] == "navier_stokes":
            # Trajectories: the last input frame and the last predicted frame.
            inputs, targets, preds = inputs[:, -1:], targets[:, -1:], preds[:, -1:]
            titles = ["last input frame", "last frame: truth", "prediction", "|error|"]
        train.plot_predictions(
            inputs, targets, preds, run_dir / "plots" / "predictions.png", num=num, titles=titles
        )
    return results


def count_params(model) -> int:
    """Number of trainable scalars (normalizer statistics excluded)."""
    params = eqx.filter(model, train.trainable_filter(model))
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def evaluate_run(
    run_dir: Path,
    *,
    resolution: int | None,
    n: int,
    seed: int,
    progress: bool = True,
    allow_large: bool = False,
) -> dict:
    """Evaluates a run's best model on fresh data at any resolution (zero-shot super-resolution).

    The test data come from the run's recipe with a different seed, generated (and cached) like
    training data.
    """
    from ._config import load_config
    from ._run import verify_config

    run_dir = Path(run_dir)
    verify_config(run_dir)
    # The evaluation data are generated afresh: the training file need not exist any more.
    config = load_config(run_dir / "config.toml", ['data.path=""'])
    data_cfg = dict(config["data"])
    trained_resolution = data_cfg["resolution"]
    resolution = resolution or trained_resolution
    data_cfg.update(resolution=resolution, n_train=0, n_test=n, seed=seed, path="")
    if resolution != trained_resolution:
        data_cfg["solve_resolution"] = 0  # the recipe's default solve grid for this resolution
    path = dataset_path(data_cfg)
    if not path.exists():  # to be generated: weighed against this machine first
        from ._budget import check_data_budget

        options = recipe_options(data_cfg)
        check_data_budget(data_cfg["recipe"], n, resolution, options, path, allow_large=allow_large)
    dataset = obtain_dataset(data_cfg, progress=progress)
    x, y = task_arrays(config, dataset, 0, n)

    # A skeleton of the trained model (normalizer statistics of the trained grid's shape).
    spatial = (trained_resolution,) * (x.ndim - 2)
    dummy_x = np.zeros((2, x.shape[1], *spatial), np.float32)
    dummy_y = np.zeros((2, y.shape[1], *spatial), np.float32)
    like = build_normalized_model(config, dummy_x, dummy_y, key=jax.random.key(0))
    model = train.load_model_file(run_dir / "best_model.eqx", like)
    metrics = train.evaluate(
        model, (x, y), metrics_for(config), batch_size=config["eval"]["batch_size"]
    )
    return {
        "trained_resolution": trained_resolution,
        "resolution": resolution,
        "n": n,
        "seed": seed,
        **{f"test_{k}": float(v) for k, v in metrics.items()},
    }
