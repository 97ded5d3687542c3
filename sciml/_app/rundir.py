"""Run directories of `sciml run`: created atomically, locked before anything is written, the
config stored with its checksum, resumed only with the inputs they were started with.

Layout added to what `sciml.train.fit` / `sciml.pinn.solve` write:

- `config.toml`: the resolved config (every key), written once the directory is locked.
- `run.json`: the checksum of `config.toml` (`sciml._atomic.checksummed_path`); `--resume`
    and `sciml eval` refuse a `config.toml` that no longer matches it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import tomli_w

from .._atomic import checksum_matches, checksummed_path
from .config import ConfigError, applicable, load_config

MANIFEST = "run.json"

# The keys that `--set` may change on `--resume`: a larger budget (the totals count over all
# sessions), and what only affects how the run is shown, kept or laid out on devices. Every
# other key shapes the data, the model or the optimisation that the checkpoints continue.
RESUMABLE_KEYS = (
    "train.epochs",
    "train.steps",
    "train.lbfgs_steps",
    "train.time_limit",
    "train.time_clock",
    "log.trackers",
    "log.project",
    "log.wandb_mode",
    "log.mlflow_uri",
    "train.alignment",
    "train.progress",
    "train.keep_checkpoints",
    "train.devices",
    "train.model_parallel",
    "data.stream",
    "data.cache_dir",
    "eval.batch_size",
    "eval.plot_samples",
)

# What a run directory holds before its first metrics record or checkpoint: nothing that would
# be lost by removing it after a failed start.
_STARTUP_FILES = {"config.toml", MANIFEST, ".lock", "problem.json", "problem.py"}


def new_run_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """Creates and returns a fresh `parent/prefix-<timestamp>` (with `-2`, `-3`, ... if taken).

    The directory is made with one `mkdir`, which fails if the name exists, so runs started in
    the same second by several processes each get their own.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while True:
        path = parent / (f"{prefix}-{stamp}" if suffix == 1 else f"{prefix}-{stamp}-{suffix}")
        try:
            path.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return path


def write_config(run_dir: Path, config: dict) -> None:
    """Writes `config.toml` atomically with its checksum in `run.json` (see
    `sciml._atomic.checksummed_path`)."""
    with checksummed_path(Path(run_dir) / "config.toml", Path(run_dir) / MANIFEST) as tmp:
        tmp.write_bytes(tomli_w.dumps(applicable(config)).encode())


def verify_config(run_dir: Path) -> None:
    """Raises `ConfigError` if `run_dir/config.toml` differs from the config the run was
    started with (its checksum in `run.json`); runs written before `run.json` pass."""
    run_dir = Path(run_dir)
    try:
        matches = checksum_matches(run_dir / "config.toml", run_dir / MANIFEST)
    except ValueError:
        raise ConfigError(
            f"'{run_dir / MANIFEST}' is damaged (not a run record); the run's config cannot be "
            "verified"
        ) from None
    if matches is False:
        raise ConfigError(
            f"'{run_dir / 'config.toml'}' was changed or damaged since the run started (its "
            f"sha256 differs from the one in {MANIFEST}); restore it: a run continues with "
            "the config it was started with (change a key with --set on --resume where "
            "allowed)"
        )


def stored_config(run_dir: Path) -> dict:
    """The verified config a run was started with, without checking its data files (which
    the trained model does not need)."""
    run_dir = Path(run_dir)
    verify_config(run_dir)
    return load_config(run_dir / "config.toml", check_data=False)


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def resume_config(run_dir: Path, overrides: list[str]) -> dict:
    """The config to resume `run_dir` with: its verified `config.toml` with the `--set`
    overrides applied; `ConfigError` for an override of a key that shapes what the run's
    checkpoints continue (see `RESUMABLE_KEYS`)."""
    config_file = Path(run_dir) / "config.toml"
    verify_config(run_dir)
    stored = _flatten(load_config(config_file))
    config = load_config(config_file, overrides)
    for key, value in _flatten(config).items():
        if key not in RESUMABLE_KEYS and stored.get(key) != value:
            raise ConfigError(
                f"config key '{key}' cannot change on --resume (the run was started with "
                f"{stored.get(key)!r}, now {value!r}): its checkpoints continue that run; "
                f"start a new run instead. Allowed on --resume: {', '.join(RESUMABLE_KEYS)}",
                key=key,
            )
    return config


def discard_unstarted(run_dir: Path) -> bool:
    """Removes a run directory that a failed start left holding only its config (no metrics
    record, no checkpoint, nothing else); returns whether it did."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    for entry in run_dir.iterdir():
        if entry.name in _STARTUP_FILES or (
            entry.name.startswith(".") and entry.name.endswith(".tmp")
        ):
            continue
        if entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir()):
            continue  # an empty `plots/` or `checkpoints/`
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True
