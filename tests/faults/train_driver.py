"""A small training run that tests/test_fault_injection.py kills and resumes.

    python tests/faults/train_driver.py RUN_DIR [--kill EVENT:N:WHEN] [--epochs E]

Trains a 1-D FNO with AdamW and a warm-up/cosine schedule on a fixed synthetic operator
(the periodic antiderivative) with `sciml.train.fit(..., resume=True)`, one checkpoint per
epoch, and prints the step of the checkpoint it resumes from (`resume-from: S`, -1 if none).

`--kill EVENT:N:WHEN` sends this process SIGKILL at the N-th EVENT of the run's file writes:

| EVENT          | the N-th call of                                   | WHEN                   |
| -------------- | -------------------------------------------------- | ---------------------- |
| `serialise`    | `eqx.tree_serialise_leaves` (checkpoint or best model) | `torn`: half written |
| `fsync`        | `os.fsync` of a temporary file                     | `before`               |
| `replace`      | `os.replace` of a finished temporary file          | `before`, `after`      |
| `prune`        | deleting an old checkpoint's file                  | `after`                |
| `append`       | appending a record to `metrics.jsonl`              | `torn`, `after`        |

The events are counted in this process only, from its start.
"""

import argparse
import json
import os
import pathlib
import signal
import sys

import equinox as eqx
import jax
import numpy as np
import optax

import sciml._atomic as atomic
import sciml.train._checkpoint as checkpoint
import sciml.train._fit as fit_module
from sciml.operators import FNO
from sciml.train import batch_loss, fit, latest_checkpoint, relative_l2

N_TRAIN, N_EVAL, GRID, BATCH = 48, 16, 32, 8


def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Smooth periodic inputs and their zero-mean antiderivatives, channels first."""
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_EVAL
    k = np.arange(1, 6)
    a, b = rng.normal(size=(2, n, 5)) / k
    x = np.arange(GRID) / GRID
    phase = 2 * np.pi * k[None, :, None] * x[None, None, :]
    u = (a[..., None] * np.cos(phase) + b[..., None] * np.sin(phase)).sum(1)
    # d/dx of (a sin - b cos) / (2 pi k) is a cos + b sin.
    scale = 2 * np.pi * k[None, :, None]
    s = ((a[..., None] * np.sin(phase) - b[..., None] * np.cos(phase)) / scale).sum(1)
    u, s = u[:, None].astype(np.float32), s[:, None].astype(np.float32)
    return (u[:N_TRAIN], s[:N_TRAIN]), (u[N_TRAIN:], s[N_TRAIN:])


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(spec: str) -> None:
    """Patches the file-writing functions the run uses so that the chosen event kills it."""
    event, nth, when = spec.split(":")
    nth = int(nth)
    count = {"n": 0}

    def hit(name: str) -> bool:
        if name != event:
            return False
        count["n"] += 1
        return count["n"] == nth

    serialise = eqx.tree_serialise_leaves

    def tree_serialise_leaves(path, tree, *args, **kwargs):
        serialise(path, tree, *args, **kwargs)
        if hit("serialise"):
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)
            _die()

    checkpoint.eqx.tree_serialise_leaves = tree_serialise_leaves  # the module `equinox`

    fsync, replace = os.fsync, os.replace

    def fsync_hook(fd):
        if hit("fsync") and when == "before":
            _die()
        return fsync(fd)

    def replace_hook(src, dst, *args, **kwargs):
        fire = hit("replace")
        if fire and when == "before":
            _die()
        replace(src, dst, *args, **kwargs)
        if fire and when == "after":
            _die()

    atomic.os.fsync, atomic.os.replace = fsync_hook, replace_hook  # the module `os`

    unlink = pathlib.Path.unlink

    def unlink_hook(self, missing_ok=False):
        unlink(self, missing_ok=missing_ok)
        if self.parent.name == "checkpoints" and self.name.startswith("ckpt_") and hit("prune"):
            _die()

    pathlib.Path.unlink = unlink_hook

    append = fit_module.append_record

    def append_hook(path, record):
        fire = hit("append")
        if fire and when == "torn":
            line = (json.dumps(record) + "\n").encode()
            with open(path, "ab") as f:
                f.write(line[: len(line) // 2])
                f.flush()
            _die()
        append(path, record)
        if fire and when == "after":
            _die()

    fit_module.append_record = append_hook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill", default=None)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    if args.kill:
        arm(args.kill)
    train, test = data()
    model = FNO(1, 1, modes=(6,), width=12, depth=2, key=jax.random.key(1), padding=0)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 12, args.epochs * N_TRAIN // BATCH)
    latest = latest_checkpoint(pathlib.Path(args.run_dir) / "checkpoints")
    resumed = -1 if latest is None else int(latest.stem.split("_")[1])
    print(f"resume-from: {resumed}", flush=True)
    fit(
        model,
        batch_loss(relative_l2),
        train,
        optimizer=optax.adamw(schedule, weight_decay=1e-4),
        epochs=args.epochs,
        batch_size=BATCH,
        eval_data=test,
        key=jax.random.key(2),
        run_dir=args.run_dir,
        checkpoint_every=1,
        keep_checkpoints=2,
        resume=True,
        progress=False,
    )
    print("finished", flush=True)


if __name__ == "__main__":
    main()
