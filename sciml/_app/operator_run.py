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

from .. import data as sdata
from .. import operators, train
from .._atomic import atomic_write_bytes
from .._catalogue import OPERATOR_ACTIVATIONS, OPTIMIZERS, get_recipe, resolve
from .config import ConfigError, nonfinite_options, reads_own_file
from .datasets import (
    dataset_path,
    obtain_dataset,
    recipe_options,
    split_arrays,
    task_arrays,
)
from .tracking import run_trackers


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
    loaded over this one). With `model.ensemble = K > 1`, a `sciml.uq.Ensemble` of K such
    models (the normalizers fitted once and shared by value), member k built with
    `jax.random.split(key, K)[k]`."""
    normalizers = None
    if config["train"]["normalize"]:
        normalizers = (
            train.UnitGaussianNormalizer.from_data(x_train),
            train.UnitGaussianNormalizer.from_data(y_train),
        )

    def make(key):
        model = build_model(config, x_train.shape[1], y_train.shape[1], key=key)
        return model if normalizers is None else train.Normalized(model, *normalizers)

    members = config["model"]["ensemble"]
    if members == 1:
        return make(key)
    from ..uq import Ensemble

    return Ensemble(make, members, key=key)


def point_model(model) -> Any:
    """The model's point prediction for one sample: an ensemble's mean, else the model."""
    from ..uq import Ensemble

    return model.mean if isinstance(model, Ensemble) else model


def _rows(array, start: int, stop: int):
    """Samples `start:stop` of a host array, without reading an on-disk one."""
    if hasattr(array, "subset"):
        return array.subset(rows=slice(start, stop))
    return array[start:stop]


def physics_loss(config: dict, metric, x_train, y_train):
    """The training loss: `metric` over the batch, or with `[physics]` the PINO loss
    (`sciml.operators.pino_loss`) of the data term and the PDE residual."""
    physics = config["physics"]
    if physics["pde"] == "none":
        return train.batch_loss(metric)
    if x_train.shape[1] != 1 or y_train.shape[1] != 1:
        raise ConfigError(
            f"config key 'physics.pde' = 'darcy' is invalid: it needs one input channel (a) and "
            f"one output channel (u), the data have {x_train.shape[1]} and {y_train.shape[1]}"
        )
    pde = functools.partial(
        operators.darcy_loss, f=physics["forcing"], boundary_weight=physics["boundary_weight"]
    )
    return operators.pino_loss(
        pde,
        data_weight=physics["data_weight"],
        physics_weight=physics["weight"],
        data_metric=metric,
    )


def build_optimizer(train_cfg: dict, steps_per_epoch: int) -> optax.GradientTransformation:
    """`train.optimizer` (Adam or SOAP) with L2 weight decay (added to the gradient, as in the
    FNO paper's PyTorch Adam), and the configured learning-rate schedule counted in optimizer
    steps."""
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
    decay = optax.add_decayed_weights(train_cfg["weight_decay"])
    if train_cfg["optimizer"] == "adam":  # Adam's state as before, so that older runs resume
        return optax.chain(decay, optax.scale_by_adam(), optax.scale_by_learning_rate(schedule))
    return optax.chain(decay, resolve(OPTIMIZERS[train_cfg["optimizer"]])(schedule))


def metrics_for(config: dict) -> dict[str, Any]:
    """The evaluation metrics (the first is the one `fit` tracks for the best model); the H1
    norm takes the recipe's grid (periodic or nodes) into account; your own data count as
    not periodic."""
    data = config["data"]
    periodic = not reads_own_file(data) and get_recipe(data["recipe"]).grid == "periodic"
    return {
        "relative_l2": train.relative_l2,
        "h1": functools.partial(train.h1_loss, periodic=periodic),
        "mse": train.mse,
    }


def model_metrics(config: dict) -> dict[str, Any]:
    """`metrics_for`, of the ensemble's mean prediction when `model.ensemble > 1`."""
    metrics = metrics_for(config)
    if config["model"]["ensemble"] == 1:
        return metrics
    from ..uq import ensemble_metric

    return {name: ensemble_metric(metric) for name, metric in metrics.items()}


@eqx.filter_jit
def _forward(model, batch):
    return jax.vmap(model)(batch)


def predict(model, x, *, batch_size: int) -> np.ndarray:
    """The model's predictions for every sample of `x` (in memory or on disk), batch by batch."""
    out = [
        np.asarray(
            _forward(model, jnp.asarray(np.asarray(x[start : start + batch_size], np.float32)))
        )
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def field_metrics(model, x, y, *, batch_size: int) -> dict[str, float]:
    """PDEBench's metrics (`sciml.train.PDEBENCH_METRICS`: RMSE, nRMSE, max error, cRMSE,
    bRMSE, fRMSE by band) over the whole of `(x, y)`, each computed once on all predictions
    (cRMSE, the max and the Fourier bands pool the samples; an ensemble's mean prediction).
    A metric the grid leaves undefined (a Fourier band it does not resolve) is left out."""
    pred = jnp.asarray(predict(point_model(model), x, batch_size=batch_size))
    target = jnp.asarray(np.asarray(y, np.float32))
    out = {}
    for name, metric in train.PDEBENCH_METRICS.items():
        value = float(metric(pred, target))
        if math.isfinite(value):
            out[name] = value
    return out


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


def ensemble_training(config: dict, metric, optimizer, train_data, *, key):
    """The loss, optimiser and training data of a `model.ensemble = K > 1` run: one compiled
    step trains every member, on the SUM of the member losses (so each member gets exactly
    its own gradient), each member with its own order of the training data (permutations
    drawn from `fold_in(key, K)`). Adam with weight decay acts element-wise, so the stacked
    parameters need no wrapping; SOAP's preconditioners would mix the members' entries, so it
    runs per member (`sciml.uq.ensemble_optimizer`)."""
    from .. import uq

    members = config["model"]["ensemble"]
    if config["train"]["optimizer"] != "adam":
        optimizer = uq.ensemble_optimizer(optimizer)
    orders_key = jax.random.fold_in(key, members)
    return (
        uq.ensemble_loss(metric, per_member=True),
        optimizer,
        uq.per_member_data(train_data, members, key=orders_key),
    )


def run_operator(
    config: dict, run_dir: Path, *, resume: bool, mesh: jax.sharding.Mesh | None = None
) -> dict:
    nonfinite = nonfinite_options(config["train"])
    run_dir = Path(run_dir)
    data_cfg, train_cfg = config["data"], config["train"]
    progress = train_cfg["progress"]

    (x_train, y_train), (x_test, y_test) = split_arrays(config, progress=progress)
    # `uncertainty.calibration`: the last samples of the training data calibrate the bands;
    # the model (and its normalisers) never see them.
    n_cal = config["uncertainty"]["calibration"]
    n_train = data_cfg["n_train"] - n_cal
    if n_cal:
        x_cal, y_cal = (_rows(a, n_train, n_train + n_cal) for a in (x_train, y_train))
        x_train, y_train = (_rows(a, 0, n_train) for a in (x_train, y_train))
    metrics = metrics_for(config)
    eval_metrics = model_metrics(config)
    if train.is_writer():
        write_model_shapes(run_dir, x_train, y_train)

    model_key, train_key = jax.random.split(jax.random.key(config["seed"]))
    model = build_normalized_model(config, x_train, y_train, key=model_key)
    steps_per_epoch = math.ceil(n_train / train_cfg["batch_size"])
    optimizer = build_optimizer(train_cfg, steps_per_epoch)
    loss_fn = physics_loss(config, metrics[train_cfg["loss"]], x_train, y_train)
    train_data = (x_train, y_train)
    members = config["model"]["ensemble"]
    if members > 1:
        loss_fn, optimizer, train_data = ensemble_training(
            config, metrics[train_cfg["loss"]], optimizer, train_data, key=train_key
        )

    start = time.perf_counter()
    with run_trackers(config, run_dir) as trackers:
        model, history = train.fit(
            model,
            loss_fn,
            train_data,
            optimizer=optimizer,
            epochs=train_cfg["epochs"],
            batch_size=train_cfg["batch_size"],
            eval_data=(x_test, y_test),
            eval_metrics=eval_metrics,
            eval_every=train_cfg["eval_every"],
            key=train_key,
            run_dir=run_dir,
            checkpoint_every=train_cfg["checkpoint_every"],
            keep_checkpoints=train_cfg["keep_checkpoints"],
            resume=resume,
            progress=progress,
            mesh=mesh,
            callback=train.chain_callbacks(*trackers),
            **nonfinite,
        )
    train_time = time.perf_counter() - start

    eval_batch = config["eval"]["batch_size"]
    if mesh is not None and eval_batch % train.data_size(mesh):
        mesh = None  # evaluation is cheap: one device rather than an error
    final = train.evaluate(model, (x_test, y_test), eval_metrics, batch_size=eval_batch, mesh=mesh)
    final = {f"test_{k}": float(v) for k, v in final.items()}
    fields = field_metrics(model, x_test, y_test, batch_size=eval_batch)
    final.update({f"test_{k}": v for k, v in fields.items()})
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
                    jnp.asarray(train_data[0][: train_cfg["batch_size"]]),
                    jnp.asarray(train_data[1][: train_cfg["batch_size"]]),
                ),
            ),
            3,
        ),
    }
    if members > 1:
        results["ensemble"] = members
    if n_cal:
        # One prediction of each set serves the bands, the coverage and the curve.
        batch_size = config["eval"]["batch_size"]
        cal = (*predict_mean_std(model, x_cal, batch_size=batch_size), y_cal)
        test = (*predict_mean_std(model, x_test, batch_size=batch_size), y_test)
        bands = calibrate_bands(config, *cal)
        if train.is_writer():
            write_bands(run_dir, bands)
        results.update(band_metrics(bands, *test))
        if train.is_writer():
            plot_calibration_curve(config, cal, test, run_dir)
    atomic_write_bytes(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())

    num = config["eval"]["plot_samples"]
    if num:
        preds = np.asarray(jax.vmap(point_model(model))(jnp.asarray(x_test[:num])))
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


_EPS = 1e-6  # added to the ensemble's spread in the conformity scores


def predict_mean_std(model, x, *, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Point predictions for every sample of `x` and, for an ensemble, the members' spread
    (`None` for a single model), batch by batch."""
    from ..uq import Ensemble

    if not isinstance(model, Ensemble):
        return predict(model, x, batch_size=batch_size), None
    means, stds = [], []
    for start in range(0, len(x), batch_size):
        batch = jnp.asarray(np.asarray(x[start : start + batch_size], np.float32))
        mean, std = _forward(model.mean_and_std, batch)
        means.append(np.asarray(mean))
        stds.append(np.asarray(std))
    return np.concatenate(means), np.concatenate(stds)


def _scores(mean, std, y) -> np.ndarray:
    from ..uq import conformity_scores

    return np.asarray(conformity_scores(np.asarray(y, np.float32), mean, std, eps=_EPS))


def calibrate_bands(config: dict, mean, std, y_cal):
    """Split-conformal bands per grid point at `uncertainty.levels`, calibrated on the
    held-out samples' predictions `mean` (and the ensemble's spread `std`, else `None`:
    absolute residuals) and targets `y_cal`."""
    from ..uq import calibrate

    return calibrate(
        np.asarray(y_cal, np.float32),
        mean,
        std,
        levels=tuple(config["uncertainty"]["levels"]),
        eps=_EPS,
    )


def _level_name(level: float) -> str:
    return f"{100 * level:.10g}"


def band_metrics(bands, mean, std, y) -> dict[str, float]:
    """`test_coverage_<level %>`: the fraction of the test points inside their band, and
    `test_band_width_<level %>`: the band's mean width (physical units), per level, for
    predictions `mean` (`std`: the ensemble's spread or `None`) of targets `y`."""
    target = np.asarray(y, np.float32)
    inside = np.asarray(bands.contains(target, mean, std))
    lower, upper = bands(mean, std)
    out = {}
    for i, level in enumerate(bands.levels):
        out[f"test_coverage_{_level_name(level)}"] = float(inside[i].mean())
        out[f"test_band_width_{_level_name(level)}"] = float(np.mean(upper[i] - lower[i]))
    return out


CALIBRATION_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def plot_calibration_curve(config: dict, cal, test, run_dir: Path) -> None:
    """`plots/calibration.png`: test coverage against nominal coverage, 5% to 95% and the
    configured levels; `cal` and `test` are `(mean, std, targets)` of the two sets."""
    from ..uq import calibration_curve, min_calibration, plot_calibration

    cal_scores = _scores(*cal)
    test_scores = _scores(*test)
    n = len(cal_scores)
    levels = sorted({*CALIBRATION_LEVELS, *config["uncertainty"]["levels"]})
    levels = [level for level in levels if min_calibration(level) <= n]
    coverages = calibration_curve(cal_scores, test_scores, levels)
    kind = "ensemble" if config["model"]["ensemble"] > 1 else "residual"
    plot_calibration(
        levels,
        coverages,
        run_dir / "plots" / "calibration.png",
        num_test=len(test_scores),
        title=f"conformal calibration ({kind}, n = {n})",
    )


BANDS_FILE = "conformal.npz"


def write_bands(run_dir: Path, bands) -> None:
    """`conformal.npz`: the thresholds and levels of a run's bands (for `sciml eval`)."""
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        quantiles=np.asarray(bands.quantiles),
        levels=np.asarray(bands.levels, np.float64),
        normalized=np.asarray(bands.normalized),
        eps=np.asarray(bands.eps),
        num_calibration=np.asarray(bands.num_calibration),
    )
    atomic_write_bytes(run_dir / BANDS_FILE, buffer.getvalue())


def read_bands(run_dir: Path):
    """The run's `ConformalBands`, or `None` if it has none."""
    from ..uq import ConformalBands

    path = Path(run_dir) / BANDS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return ConformalBands(
                quantiles=jnp.asarray(f["quantiles"]),
                levels=tuple(float(v) for v in f["levels"]),
                normalized=bool(f["normalized"]),
                eps=float(f["eps"]),
                num_calibration=int(f["num_calibration"]),
            )
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"'{path}' is damaged ({e}); the run's bands cannot be read") from None


def count_params(model) -> int:
    """Number of trainable scalars (normalizer statistics excluded)."""
    params = eqx.filter(model, train.trainable_filter(model))
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


MODEL_SHAPES = "model.json"


def write_model_shapes(run_dir: Path, x_train, y_train) -> None:
    """Records the shapes of one training sample and target (`model.json`), so that the
    trained model can be rebuilt without the training data (`load_model`)."""
    shapes = {"inputs": list(x_train.shape[1:]), "outputs": list(y_train.shape[1:])}
    atomic_write_bytes(run_dir / MODEL_SHAPES, (json.dumps(shapes) + "\n").encode())


def _skeleton(config: dict, run_dir: Path, x=None, y=None):
    """An untrained model of the run's shape: from `model.json`, or (runs made before it was
    written) from evaluation arrays `x`, `y` of the trained grid's channels."""
    path = run_dir / MODEL_SHAPES
    if path.is_file():
        try:
            shapes = json.loads(path.read_text())
            x_shape, y_shape = (tuple(int(k) for k in shapes[key]) for key in ("inputs", "outputs"))
        except (ValueError, KeyError, TypeError, OSError):
            raise ConfigError(f"'{path}' is damaged; the run's model cannot be rebuilt") from None
    elif x is not None:
        spatial = (config["data"]["resolution"],) * (x.ndim - 2)
        x_shape, y_shape = (x.shape[1], *spatial), (y.shape[1], *spatial)
    else:
        raise ConfigError(
            f"'{run_dir}' has no {MODEL_SHAPES} (made by an older version): evaluate it with "
            "sciml eval, which rebuilds the model from the test data"
        )
    dummy_x = np.zeros((2, *x_shape), np.float32)
    dummy_y = np.zeros((2, *y_shape), np.float32)
    return build_normalized_model(config, dummy_x, dummy_y, key=jax.random.key(0))


def load_trained_model(run_dir: str | Path, x=None, y=None):
    """The best model of an operator run (normalisers included), acting on one sample
    `(channels, *spatial)` (with `model.ensemble > 1`, a `sciml.uq.Ensemble` returning the
    members' predictions), and the run's config."""
    from .rundir import stored_config

    run_dir = Path(run_dir)
    config = stored_config(run_dir)
    if config.get("kind") == "pinn":
        from .pinn_run import load_trained_pinn

        return load_trained_pinn(run_dir, config), config
    # Operator runs train in single precision: the skeleton must be float32 also where the
    # caller has turned on jax_enable_x64 (else the stored leaves do not fit it).
    with jax.enable_x64(False):
        model = train.load_model_file(run_dir / "best_model.eqx", _skeleton(config, run_dir, x, y))
    return model, config


def _own_keys(config: dict, inputs, outputs, channels, stride) -> dict:
    """The array names and layout of a `--data` file: as given, else the run's own."""
    data = config["data"]
    own = reads_own_file(data)
    keys = {
        "inputs": inputs or (data["inputs"] if own else ""),
        "outputs": outputs or (data["outputs"] if own else ""),
        "channels": channels or (data["channels"] if own else "auto"),
        "stride": stride or (data["stride"] if own else 1),
    }
    return keys


def evaluate_run(
    run_dir: Path,
    *,
    data: str | None = None,
    inputs: str | None = None,
    outputs: str | None = None,
    channels: str | None = None,
    stride: int | None = None,
    resolution: int | None = None,
    n: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    allow_large: bool = False,
) -> dict:
    """Scores a run's best model.

    By default on the run's own test data (its recipe's data, regenerated identically if the
    cached file is gone, or its data.test_path / the last data.n_test samples of data.path).
    `data`: another file instead (array names and layout as given, else the run's own), e.g.
    the same problem at twice the resolution. `resolution`, `n`, `seed`: fresh samples of the
    run's recipe (zero-shot super-resolution), for runs trained on a recipe's data.
    A run with conformal bands (`uncertainty.calibration`) also gets `test_coverage_<level>`
    and `test_band_width_<level>` on data of its training grid (the bands hold one threshold
    per grid point, so other resolutions are scored without them).
    """
    from .rundir import stored_config

    run_dir = Path(run_dir)
    config = stored_config(run_dir)
    fresh = resolution is not None or n is not None or seed is not None
    if data is not None and fresh:
        raise ConfigError("give --data FILE or --resolution / --n / --seed, not both")
    if data is not None:
        keys = _own_keys(config, inputs, outputs, channels, stride)
        dataset = sdata.read_arrays(data, **keys, stream=config["data"]["stream"])
        x, y = task_arrays(config, dataset, 0, len(dataset))
        source = {"data": str(data), **keys, "n": len(dataset)}
    elif fresh:
        x, y, source = _fresh_recipe_data(
            config, resolution, n, seed, progress=progress, allow_large=allow_large
        )
    else:
        try:
            _, (x, y) = split_arrays(config, progress=progress)
        except sdata.DatasetError as e:
            raise sdata.DatasetError(
                f"the run's own test data cannot be read ({e}); pass --data FILE to score "
                "another file"
            ) from None
        source = {"data": "the run's own test data", "n": config["data"]["n_test"]}

    model, _ = load_trained_model(run_dir, x, y)
    batch_size = config["eval"]["batch_size"]
    metrics = train.evaluate(model, (x, y), model_metrics(config), batch_size=batch_size)
    fields = field_metrics(model, x, y, batch_size=batch_size)
    out = {
        **source,
        "trained_resolution": config["data"]["resolution"],
        "resolution": int(min(x.shape[2:])),
        **{f"test_{k}": float(v) for k, v in metrics.items()},
        **{f"test_{k}": v for k, v in fields.items()},
    }
    bands = read_bands(run_dir)
    # The bands hold one threshold per point of the calibration grid: scored on that grid only.
    if bands is not None and tuple(y.shape[1:]) == tuple(bands.quantiles.shape[1:]):
        mean, std = predict_mean_std(model, x, batch_size=config["eval"]["batch_size"])
        out.update(band_metrics(bands, mean, std, y))
    return out


def _fresh_recipe_data(config, resolution, n, seed, *, progress, allow_large):
    """Fresh samples of the run's recipe at any resolution (by default 100 samples with seed
    1000, distinct from the training data)."""
    if reads_own_file(config["data"]):
        raise ConfigError(
            "--resolution, --n and --seed draw fresh samples from a recipe, but this run was "
            f"trained on your own file {config['data']['path']!r}: pass --data FILE instead"
        )
    n = 100 if n is None else n
    seed = 1000 if seed is None else seed
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
    return x, y, {"data": f"{data_cfg['recipe']} recipe", "n": n, "seed": seed}


def predict_file(
    run_dir: Path,
    source: str,
    out: str,
    *,
    inputs: str | None = None,
    channels: str | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> int:
    """Writes the run's predictions for every sample of `source` (the array `inputs`, as the
    run's own data name it unless given) to `out` (`.npz`: array `predictions`; `.h5`:
    dataset `predictions`), in batches; returns the number of samples."""
    model, config = load_trained_model(run_dir)
    keys = _own_keys(config, inputs, None, channels, stride)
    if not keys["inputs"]:
        raise ConfigError("--inputs is missing: name the array of inputs in the --input file")
    keys["outputs"] = keys["inputs"]  # only the inputs are read
    dataset = sdata.read_arrays(source, **keys, stream=True)
    x = dataset.inputs
    if config["task"]["kind"] != "direct":
        x = x[:, : config["task"]["t_in"]]
    batch_size = batch_size or config["eval"]["batch_size"]
    chunks = []
    from .._progress import progress_bar

    with progress_bar(total=len(x), disable=not progress, unit="sample", desc="predict") as bar:
        for start in range(0, len(x), batch_size):
            chunks.append(
                predict(point_model(model), x[start : start + batch_size], batch_size=batch_size)
            )
            bar.update(len(chunks[-1]))
    predictions = np.concatenate(chunks)
    write_predictions(Path(out), predictions)
    return len(predictions)


def write_predictions(out: Path, predictions: np.ndarray) -> None:
    """Writes `predictions` atomically to `out`: `.npz` (array `predictions`) or `.h5` /
    `.hdf5` (dataset `predictions`)."""
    import io

    suffix = out.suffix.lower()
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, predictions=predictions)
        atomic_write_bytes(out, buffer.getvalue())
    elif suffix in (".h5", ".hdf5"):
        import h5py

        from .._atomic import atomic_path

        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("predictions", data=predictions)
    else:
        raise ConfigError(f"--out {str(out)!r} is invalid: give a .npz or .h5 / .hdf5 file name")
