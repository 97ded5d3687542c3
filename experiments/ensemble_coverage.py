"""Deep ensembles and split-conformal bands on Darcy and Burgers: held-out coverage of the
90% bands, and the training cost of K members against one model.

For each problem, two runs of the `sciml run` pipeline (`run_experiment` on a validated
config, the same code as the command line): a K-member ensemble (`model.ensemble = K`) and a
single model, both with `uncertainty.calibration` samples held out from the training data.
The ensemble's bands use scores normalised by the members' spread, the single model's plain
absolute residuals. Coverage is the fraction of test points (every sample and grid point)
inside their band; split-conformal calibration promises, for every grid point, a coverage
of at least 90% and below 90% + 1/(n + 1) in expectation over the calibration set.

The step-time ratio is measured in this one process, on the first training batch, with the
compiled `train_step` of each model alternated (K=1, K, one model on K batches, K=1, ...)
so that a busy machine slows all alike; the median over `--repeats` steps of each.

    .venv/bin/python experiments/ensemble_coverage.py

prints a markdown table (defaults: small grids for a CPU, a few minutes).
"""

import argparse
import functools
import math
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sciml import train, uq
from sciml._app.config import load_config
from sciml._app.datasets import split_arrays
from sciml._app.experiment import run_experiment
from sciml._app.operator_run import (
    build_normalized_model,
    build_optimizer,
    ensemble_training,
    metrics_for,
)

REPO = Path(__file__).resolve().parent.parent


def _problems(args) -> dict[str, list[str]]:
    n_train = args.n_train + args.calibration
    common = [
        f"data.n_train={n_train}",
        f"data.n_test={args.n_test}",
        f"train.epochs={args.epochs}",
        "train.batch_size=20",
        "train.progress=false",
        "train.checkpoint_every=1000",
        "eval.plot_samples=0",
        f"uncertainty.calibration={args.calibration}",
        "uncertainty.levels=[0.9]",
    ]
    return {
        "darcy": [
            "data.resolution=29",
            "data.solve_resolution=57",
            "model.modes=[8, 8]",
            "model.width=16",
            "model.padding=5",
            "model.projection_channels=64",
            "train.learning_rate=3e-3",
            "train.schedule=cosine",
            *common,
        ],
        "burgers": [
            "data.resolution=128",
            "data.solve_resolution=1024",
            "model.modes=[16]",
            "model.width=32",
            "train.learning_rate=3e-3",
            "train.schedule=cosine",
            *common,
        ],
    }


_TOMLS = {"darcy": "darcy_fno.toml", "burgers": "burgers_fno.toml"}


def step_times(config: dict, members: int, *, repeats: int) -> tuple[float, float, float]:
    """Median seconds of one compiled training step (the runner's model, loss and optimiser)
    of: a single model on a batch, a `members` ensemble on one batch per member, and the
    single model on a batch `members` times as large (the same work as the ensemble, which
    separates how the CPU scales with work from what the ensemble itself costs). The three
    steps are alternated on fixed batches."""
    (x, y), _ = split_arrays(config, progress=False)
    batch = config["train"]["batch_size"]
    metric = metrics_for(config)[config["train"]["loss"]]
    runs = []
    for k, rows in ((1, batch), (members, batch), (1, members * batch)):
        cfg = {**config, "model": {**config["model"], "ensemble": k}}
        model = build_normalized_model(cfg, x, y, key=jax.random.key(0))
        optimizer = build_optimizer(config["train"], 10)
        loss, data = train.batch_loss(metric), (x, y)
        if k > 1:
            loss, optimizer, data = ensemble_training(
                cfg, metric, optimizer, data, key=jax.random.key(1)
            )
        data = tuple(jnp.asarray(np.asarray(a[:rows])) for a in data)
        opt_state = train.init_optimizer(optimizer, model)
        step = functools.partial(train.train_step, loss_fn=loss, optimizer=optimizer)
        jax.block_until_ready(step(model, opt_state, data))  # compile
        runs.append(functools.partial(step, model, opt_state, data))
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            jax.block_until_ready(run())
            times[i].append(time.perf_counter() - start)
    one, ensemble, big = (float(np.median(t)) for t in times)
    return one, ensemble, big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8, help="ensemble size K")
    parser.add_argument("--n-train", type=int, default=300, help="training samples")
    parser.add_argument("--calibration", type=int, default=100, help="calibration samples")
    parser.add_argument("--n-test", type=int, default=100, help="test samples")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per model")
    parser.add_argument("--problems", default="darcy,burgers")
    parser.add_argument("--out", default="", help="folder for the runs (default: temporary)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="ensemble_coverage-"))
    problems = _problems(args)
    n = args.calibration
    k = uq.quantile_rank(n, 0.9)
    expected = k / (n + 1)
    point_sd = math.sqrt(k * (n + 1 - k) / ((n + 1) ** 2 * (n + 2)))
    rows, timing = [], []
    for name in args.problems.split(","):
        for members in (args.members, 1):
            overrides = [
                *problems[name],
                f"model.ensemble={members}",
                f"name={name}-k{members}",
                f"data.cache_dir={out / 'data'}",
            ]
            config = load_config(REPO / "experiments" / _TOMLS[name], overrides)
            start = time.perf_counter()
            results = run_experiment(config, out / f"{name}-k{members}")
            rows.append(
                (
                    name,
                    members,
                    "ensemble spread" if members > 1 else "absolute residual",
                    results["test_relative_l2"],
                    results["test_coverage_90"],
                    results["test_band_width_90"],
                    results["train_time_s"],
                    time.perf_counter() - start,
                )
            )
        timing.append((name, *step_times(config, args.members, repeats=args.repeats)))

    print(
        f"\nSplit-conformal 90% bands, {n} calibration samples held out of "
        f"{args.n_train + n} training samples, {args.n_test} test samples, {args.epochs} "
        f"epochs. Expected coverage under exchangeability k/(n+1) = {expected:.4f} "
        f"(k = {k}); per grid point, given the calibration set, sd {point_sd:.3f}.\n"
    )
    print(
        "| problem | K | scores | test rel. L2 (mean) | coverage 90% | mean band width "
        "| train time (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, members, scores, rel, cov, width, train_s, _ in rows:
        print(
            f"| {name} | {members} | {scores} | {rel:.4f} | {100 * cov:.1f}% | {width:.3g} "
            f"| {train_s:.1f} |"
        )
    k = args.members
    print(f"\nTraining step time, median of {args.repeats} alternated steps:\n")
    print(
        f"| problem | K = 1 (ms) | K = {k} (ms) | ratio K = {k} / K = 1 | one model, "
        f"{k}x batch (ms) | ratio K = {k} / ({k}x batch) |"
    )
    print("|---|---|---|---|---|---|")
    for name, one, many, big in timing:
        print(
            f"| {name} | {1e3 * one:.2f} | {1e3 * many:.2f} | {many / one:.2f}x | "
            f"{1e3 * big:.2f} | {many / big:.2f}x |"
        )
    print(f"\nruns in {out}")


if __name__ == "__main__":
    main()
