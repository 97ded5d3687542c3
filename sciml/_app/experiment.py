"""`run_experiment`: one validated config into one run directory, operator or PINN."""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax

from .. import train
from .._atomic import RunLock
from .config import ConfigError
from .rundir import write_config


def run_experiment(config: dict, run_dir: Path, *, resume: bool = False) -> dict:
    """Runs a validated config into `run_dir`; returns the final test metrics.

    Matrix products run at full float32 precision (no TF32 on GPUs), so results do not depend
    on the accelerator's default.
    """
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
            from .pinn_run import run_pinn

            return run_pinn(config, run_dir, resume=resume, mesh=mesh)
        from .operator_run import run_operator

        return run_operator(config, run_dir, resume=resume, mesh=mesh)


def build_mesh(config: dict) -> jax.sharding.Mesh | None:
    """The device mesh that `train.devices` (and `train.model_parallel`) ask for; `None` for
    the plain single-device path. Raises `ConfigError` for what the machine cannot do."""
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
            "XLA_FLAGS=--xla_force_host_platform_device_count=N provides N)",
            key="train.devices",
        )
    if n % model != 0:
        raise ConfigError(
            f"config key 'train.model_parallel' = {model} is invalid: it must divide the "
            f"{n} devices of train.devices",
            key="train.model_parallel",
        )
    batch_size = train_cfg.get("batch_size")
    if batch_size is not None and batch_size % (n // model) != 0:
        raise ConfigError(
            f"config key 'train.batch_size' = {batch_size} is invalid: it must be a multiple "
            f"of the {n // model} data-parallel devices",
            key="train.batch_size",
        )
    return train.make_mesh(n, model=model)
