"""`sciml run`: a validated config -> data, model, optimizer -> `sciml.train.fit` -> a run dir.

Everything here is assembled from public pieces (`sciml.data`, `sciml.operators`,
`sciml.train`); a user's own loop can do the same in a few lines (see the README).
"""

from __future__ import annotations

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

from .. import operators, train
from .._atomic import atomic_write_bytes
from .._catalogue import OPERATOR_ACTIVATIONS, get_recipe, resolve
from .config import nonfinite_options
from .datasets import dataset_path, obtain_dataset, recipe_options, task_arrays


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
        activation=resolve(OPERATOR_ACTIVATIONS[model_cfg["activation"]]),
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
        activation=resolve(OPERATOR_ACTIVATIONS[model_cfg["activation"]]),
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
        activation=resolve(OPERATOR_ACTIVATIONS[model_cfg["activation"]]),
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


def run_operator(
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
        if get_recipe(config["data"]["recipe"]).trajectory:
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
    from .config import load_config
    from .rundir import verify_config

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
        from .budget import check_data_budget

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
