"""`sciml run`: a validated config -> data, model, optimizer -> `sciml.train.fit` -> a run dir.

Everything here is assembled from public pieces (`sciml.data`, `sciml.operators`,
`sciml.train`); a user's own loop can do the same in a few lines (see the README).
"""

from __future__ import annotations

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
import tomli_w

from . import data as sdata
from . import operators, train

ACTIVATIONS = {
    "gelu": jax.nn.gelu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
}


def dataset_path(data_cfg: dict) -> Path:
    """Where the dataset of a `[data]` table lives: the given path or a cache file name."""
    if data_cfg["path"]:
        return Path(data_cfg["path"])
    n = data_cfg["n_train"] + data_cfg["n_test"]
    solve = data_cfg["solve_resolution"] or "default"
    mean = "_zeromean" if data_cfg["zero_mean"] else ""
    name = (
        f"{data_cfg['recipe']}_s{data_cfg['resolution']}_solve{solve}{mean}_n{n}"
        f"_seed{data_cfg['seed']}.h5"
    )
    return Path(data_cfg["cache_dir"]) / name


def obtain_dataset(data_cfg: dict, *, progress: bool = True) -> sdata.Dataset:
    """Loads the configured dataset, generating and caching it first if needed."""
    path = dataset_path(data_cfg)
    n = data_cfg["n_train"] + data_cfg["n_test"]
    if not path.exists():
        if data_cfg["path"]:
            raise sdata.DatasetError(f"config key 'data.path' = {str(path)!r}: no such file")
        print(f"generating {n} {data_cfg['recipe']} samples -> {path}", flush=True)
        sdata.make_dataset(
            data_cfg["recipe"],
            path,
            n=n,
            resolution=data_cfg["resolution"],
            seed=data_cfg["seed"],
            solve_resolution=data_cfg["solve_resolution"] or None,
            zero_mean=data_cfg["zero_mean"],
            progress=progress,
        )
    dataset = sdata.load_dataset(path)
    if len(dataset) < n:
        raise sdata.DatasetError(
            f"{path} holds {len(dataset)} samples but data.n_train + data.n_test = {n}"
        )
    if dataset.inputs.shape[2:] != (data_cfg["resolution"],) * 2:
        raise sdata.DatasetError(
            f"{path} has resolution {dataset.inputs.shape[2:]} but data.resolution = "
            f"{data_cfg['resolution']}"
        )
    return dataset


def build_model(
    model_cfg: dict, in_channels: int, out_channels: int, *, resolution: int, key
) -> Any:
    """The operator named by a `[model]` table, for data at `resolution` points per axis.

    `model.padding` counts grid points at the training `resolution`; the FNO receives it as a
    fraction of the grid, so that the padded domain keeps its physical size (and each Fourier
    mode its wavenumber) when the trained model is evaluated at another resolution.
    """
    if model_cfg["name"] == "fno":
        return operators.FNO(
            in_channels,
            out_channels,
            modes=tuple(model_cfg["modes"]),
            width=model_cfg["width"],
            depth=model_cfg["depth"],
            activation=ACTIVATIONS[model_cfg["activation"]],
            grid_features=model_cfg["grid_features"],
            padding=model_cfg["padding"] / resolution,
            projection_channels=model_cfg["projection_channels"],
            key=key,
        )
    raise ValueError(f"model.name {model_cfg['name']!r} is unknown")  # unreachable after checks


def build_normalized_model(config: dict, x_train, y_train, *, key) -> Any:
    """The configured operator, wrapped in normalizers fitted on the training data if
    `train.normalize` (the statistics only need the right shape when a trained model is
    loaded over this one)."""
    model = build_model(
        config["model"],
        x_train.shape[1],
        y_train.shape[1],
        resolution=config["data"]["resolution"],
        key=key,
    )
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
    else:
        schedule = optax.constant_schedule(lr)
    return optax.chain(
        optax.add_decayed_weights(train_cfg["weight_decay"]),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    )


METRICS = {"relative_l2": train.relative_l2, "h1": train.h1_loss}


def run_experiment(config: dict, run_dir: Path, *, resume: bool = False) -> dict:
    """Runs a validated config into `run_dir`; returns the final test metrics.

    Matrix products run at full float32 precision (no TF32 on GPUs), so results do not depend
    on the accelerator's default.
    """
    with jax.default_matmul_precision("highest"):
        return _run_experiment(config, run_dir, resume=resume)


def _run_experiment(config: dict, run_dir: Path, *, resume: bool) -> dict:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.toml"
    if not resume:
        config_path.write_text(tomli_w.dumps(config))
    data_cfg, train_cfg = config["data"], config["train"]
    progress = train_cfg["progress"]

    dataset = obtain_dataset(data_cfg, progress=progress)
    n_train, n_test = data_cfg["n_train"], data_cfg["n_test"]
    x_train, y_train = dataset.inputs[:n_train], dataset.outputs[:n_train]
    x_test = dataset.inputs[n_train : n_train + n_test]
    y_test = dataset.outputs[n_train : n_train + n_test]

    model_key, train_key = jax.random.split(jax.random.key(config["seed"]))
    model = build_normalized_model(config, x_train, y_train, key=model_key)
    steps_per_epoch = math.ceil(n_train / train_cfg["batch_size"])
    optimizer = build_optimizer(train_cfg, steps_per_epoch)
    loss_fn = train.batch_loss(METRICS[train_cfg["loss"]])

    start = time.perf_counter()
    model, history = train.fit(
        model,
        loss_fn,
        (x_train, y_train),
        optimizer=optimizer,
        epochs=train_cfg["epochs"],
        batch_size=train_cfg["batch_size"],
        eval_data=(x_test, y_test),
        eval_metrics=METRICS,
        key=train_key,
        run_dir=run_dir,
        checkpoint_every=train_cfg["checkpoint_every"],
        keep_checkpoints=train_cfg["keep_checkpoints"],
        resume=resume,
        progress=progress,
    )
    train_time = time.perf_counter() - start

    final = train.evaluate(
        model, (x_test, y_test), METRICS, batch_size=config["eval"]["batch_size"]
    )
    final = {f"test_{k}": float(v) for k, v in final.items()}
    best_epoch = min(history, key=lambda r: r["eval_relative_l2"])["epoch"] if history else None
    results = {
        **final,
        "best_epoch": best_epoch,
        "epochs": len(history),
        "train_time_s": round(train_time, 2),
        "params": count_params(model),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    num = config["eval"]["plot_samples"]
    if num:
        preds = np.asarray(jax.vmap(model)(jnp.asarray(x_test[:num])))
        train.plot_predictions(
            x_test[:num], y_test[:num], preds, run_dir / "plots" / "predictions.png", num=num
        )
    return results


def count_params(model) -> int:
    """Number of trainable scalars (normalizer statistics excluded)."""
    params = eqx.filter(model, train.trainable_filter(model))
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def evaluate_run(
    run_dir: Path, *, resolution: int | None, n: int, seed: int, progress: bool = True
) -> dict:
    """Evaluates a run's best model on fresh data at any resolution (zero-shot super-resolution).

    The test data come from the run's recipe with a different seed, generated (and cached) like
    training data.
    """
    from ._config import load_config

    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.toml")
    data_cfg = dict(config["data"])
    trained_resolution = data_cfg["resolution"]
    resolution = resolution or trained_resolution
    data_cfg.update(resolution=resolution, n_train=0, n_test=n, seed=seed, path="")
    if resolution != trained_resolution:
        data_cfg["solve_resolution"] = 0  # the recipe's default solve grid for this resolution
    dataset = obtain_dataset(data_cfg, progress=progress)
    x, y = dataset.inputs[:n], dataset.outputs[:n]

    # A skeleton of the trained model (normalizer statistics of the trained grid's shape).
    shape = (x.shape[1], trained_resolution, trained_resolution)
    dummy = np.zeros((2, *shape), np.float32)
    like = build_normalized_model(config, dummy, dummy, key=jax.random.key(0))
    model = eqx.tree_deserialise_leaves(run_dir / "best_model.eqx", like)
    metrics = train.evaluate(model, (x, y), METRICS, batch_size=config["eval"]["batch_size"])
    return {
        "trained_resolution": trained_resolution,
        "resolution": resolution,
        "n": n,
        "seed": seed,
        **{f"test_{k}": float(v) for k, v in metrics.items()},
    }
