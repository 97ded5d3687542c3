"""The trackers of a run's `[log]` section, as one `fit` / `pinn.solve` callback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .. import train


@contextlib.contextmanager
def run_trackers(config: dict, run_dir: Path) -> Iterator[list[train.AbstractTracker]]:
    """The trackers `log.trackers` asks for (none on a non-writing process of a multi-host
    run), closed when the run ends, also by an error. W&B and MLflow runs are named after
    the run directory and get the resolved config as hyperparameters."""
    log = config["log"]
    names = log["trackers"] if train.is_writer() else []
    hyper = train.flatten_config(config) if names else {}
    with contextlib.ExitStack() as stack:
        trackers = []
        for name in names:
            if name == "tensorboard":
                tracker = train.TensorBoardTracker(run_dir / "tensorboard", config=hyper)
            elif name == "wandb":
                mode = None if log["wandb_mode"] == "default" else log["wandb_mode"]
                tracker = train.WandbTracker(
                    log["project"], name=run_dir.name, config=hyper, dir=run_dir, mode=mode
                )
            else:
                tracker = train.MlflowTracker(
                    log["project"],
                    tracking_uri=log["mlflow_uri"] or None,
                    run_name=run_dir.name,
                    config=hyper,
                )
            stack.enter_context(tracker)
            trackers.append(tracker)
        yield trackers
