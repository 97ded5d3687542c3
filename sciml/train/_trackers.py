"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) behind one small interface.

Each tracker is a callback of `fit` and `pinn.solve` (`tracker(model, record)`) that sends the
record's numbers to its service; none of their packages is a dependency of sciml, each is an
extra (`pip install 'sciml[tensorboard]'`, `[wandb]`, `[mlflow]`) imported when a tracker is
made. `metrics.jsonl` stays the run's own record either way.
"""

from __future__ import annotations

import abc
import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._catalogue import TRACKERS


class MissingTrackerError(ImportError):
    """A tracker's package is not installed."""


def _require(name: str):
    module, extra = TRACKERS[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingTrackerError(
            f"the {name} tracker needs the {module} package: pip install 'sciml[{extra}]'"
        ) from None


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite real numbers of a record (not its step counters, flags or strings)."""
    out = {}
    for key, value in record.items():
        if key in ("step", "epoch") or isinstance(value, bool):
            continue
        if isinstance(value, numbers.Real) and math.isfinite(value):
            out[key] = float(value)
    return out


def _step(record: Mapping[str, Any]) -> int:
    return int(record.get("step", record.get("epoch", 0)))


class AbstractTracker(abc.ABC):
    """A destination for metric records. `tracker(model, record)` logs and returns `None`
    (so it never stops training), which makes a tracker a `callback` of `fit` and
    `pinn.solve`; `close()` ends the tracker's run (also on exit from `with tracker:`)."""

    @abc.abstractmethod
    def log(self, values: Mapping[str, float], step: int) -> None:
        """Send the numbers of one record at training step (or epoch) `step`."""

    def close(self) -> None:  # noqa: B027 (a tracker with nothing to flush keeps it)
        """Flush and end the tracker's run."""

    def __call__(self, model, record: Mapping[str, Any]) -> None:
        values = scalars(record)
        if values:
            self.log(values, _step(record))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardTracker(AbstractTracker):
    """Event files for TensorBoard (`tensorboard --logdir DIR`), written by tensorboardX.

    **Arguments:**

    - `log_dir`: the folder of the event files (a run's `RUN/tensorboard`).
    - `config`: an optional flat mapping of hyperparameters, written once as text.
    """

    def __init__(self, log_dir, *, config: Mapping[str, Any] | None = None):
        self.writer = _require("tensorboard").SummaryWriter(logdir=str(log_dir))
        if config:
            lines = "\n".join(f"    {k} = {v!r}" for k, v in sorted(config.items()))
            self.writer.add_text("config", lines, 0)

    def log(self, values, step):
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self):
        self.writer.close()


class WandbTracker(AbstractTracker):
    """A Weights & Biases run (`wandb.init`): online, or `mode="offline"` to sync later.

    **Arguments:**

    - `project`: the W&B project.
    - `name`: the run's name (a sciml run: its directory name).
    - `config`: hyperparameters shown with the run.
    - `dir`: where wandb keeps its local files.
    - `mode`: `"online"`, `"offline"` or `"disabled"` (default: wandb's own setting).
    """

    def __init__(
        self,
        project: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        dir=None,
        mode: str | None = None,
    ):
        wandb = _require("wandb")
        options = {"project": project, "name": name, "config": dict(config or {})}
        if dir is not None:
            options["dir"] = str(dir)
        if mode is not None:
            options["mode"] = mode
        self.run = wandb.init(**options)

    def log(self, values, step):
        self.run.log(dict(values), step=step)

    def close(self):
        self.run.finish()


class MlflowTracker(AbstractTracker):
    """An MLflow run: metrics by step, hyperparameters as params.

    **Arguments:**

    - `experiment`: the MLflow experiment (made if missing).
    - `tracking_uri`: the tracking server or store (default: MLflow's, e.g. `./mlruns`).
    - `run_name`: the run's name.
    - `config`: hyperparameters, logged as params.
    """

    def __init__(
        self,
        experiment: str,
        *,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        self.mlflow = _require("mlflow")
        if tracking_uri:
            self.mlflow.set_tracking_uri(tracking_uri)
        self.mlflow.set_experiment(experiment)
        self.run = self.mlflow.start_run(run_name=run_name)
        if config:
            # MLflow limits a param's value to 6,000 characters (older servers: 500).
            self.mlflow.log_params({k: str(v)[:500] for k, v in config.items()})

    def log(self, values, step):
        self.mlflow.log_metrics(dict(values), step=step)

    def close(self):
        self.mlflow.end_run()


def chain_callbacks(*callbacks: Callable | None) -> Callable | None:
    """One callback calling each given one in order (`None`s skipped); it stops training
    when any of them asks to. `None` if none is given."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def chained(model, record):
        stops = [bool(c(model, record)) for c in given]  # every one sees every record
        return any(stops)

    return chained


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"steps": 10}}` -> `{"train.steps": 10}`: hyperparameters for trackers."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            out[name] = list(value)
        else:
            out[name] = value
    return out
