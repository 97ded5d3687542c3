"""The life of a training run in a directory, shared by `fit` and `sciml.pinn.solve`: the
lock and the check that a directory holds no other run, the metrics history and its checksum,
the non-finite policies and the snapshots a rollback returns to."""

import contextlib
import json
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax.tree_util as jtu
import numpy as np
import optax

from .._atomic import RunLock, append_line, atomic_write_bytes, remove_temporaries
from .._catalogue import NONFINITE_POLICIES, ROLLBACK_DEFAULTS
from .._validate import positive_int
from ._checkpoint import history_digest, latest_checkpoint
from ._sharding import is_writer, replicate, sync
from ._step import GuardState, init_guard

POLICIES = tuple(NONFINITE_POLICIES)
# Non-finite parameters are already in the model: they cannot be skipped.
UNSKIPPABLE = ("parameter update", "initial parameters")


def nonfinite_options(
    on_nonfinite: Any, rollback_lr_factor: Any, max_rollbacks: Any
) -> tuple[str, float, int]:
    """Checks the `on_nonfinite` policy of `fit` / `solve` and fills in its defaults."""
    if on_nonfinite not in POLICIES:
        raise ValueError(f"`on_nonfinite` must be one of {POLICIES}, got {on_nonfinite!r}.")
    if on_nonfinite != "rollback":
        given = [
            name
            for name, value in (
                ("rollback_lr_factor", rollback_lr_factor),
                ("max_rollbacks", max_rollbacks),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"`{given[0]}` applies only to on_nonfinite='rollback', got "
                f"on_nonfinite={on_nonfinite!r}."
            )
        return on_nonfinite, 1.0, 0
    defaults = ROLLBACK_DEFAULTS
    factor = defaults["rollback_lr_factor"] if rollback_lr_factor is None else rollback_lr_factor
    if (
        isinstance(factor, bool)
        or not isinstance(factor, int | float | np.integer | np.floating)
        or not 0 < factor < 1
    ):
        raise ValueError(f"`rollback_lr_factor` must be in (0, 1), got {rollback_lr_factor!r}.")
    count = (
        defaults["max_rollbacks"]
        if max_rollbacks is None
        else positive_int("max_rollbacks", max_rollbacks)
    )
    return on_nonfinite, float(factor), count


@contextlib.contextmanager
def released_on_error(lock: RunLock | None) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def open_run(
    run_dir: pathlib.Path, *, resume: bool, who: str
) -> tuple[RunLock | None, pathlib.Path | None]:
    """Locks `run_dir` for this run (the writing process only; held until `release()`, and
    dropped by the system if the process dies), checks that it holds no run unless resuming,
    and deletes the temporary files of writes a crash interrupted.

    **Returns:**

    `(lock, latest)`: the lock (`None` on processes that do not write) and the newest
    complete checkpoint, if any.
    """
    writer = is_writer()
    lock = RunLock(run_dir) if writer else None
    with released_on_error(lock):
        latest = latest_checkpoint(run_dir / "checkpoints")
        if not resume and (latest is not None or (run_dir / "metrics.jsonl").exists()):
            raise ValueError(
                f"`run_dir` = '{run_dir}' already holds a run; pass `resume=True` to continue "
                "it, or a fresh directory."
            )
        sync(f"{who}: run_dir checked")  # no process writes before all have checked
        if writer:
            for directory in (run_dir, run_dir / "checkpoints", run_dir / "plots"):
                remove_temporaries(directory)
    return lock, latest


def stop_unless_rollback(
    error: Callable[..., Exception],
    bad: tuple[int, str],
    on_nonfinite: str,
    rollbacks: int,
    max_rollbacks: int,
    lr_factor: float,
) -> None:
    """Raises `error(step, quantity, detail)` for the non-finite step `bad`, unless the policy
    rolls it back."""
    bad_step, quantity = bad
    if on_nonfinite != "rollback":
        skip = on_nonfinite == "skip"
        raise error(bad_step, quantity, " (cannot be skipped)" if skip else "")
    if rollbacks >= max_rollbacks:
        raise error(
            bad_step,
            quantity,
            f" after {rollbacks} rollback(s) (learning-rate factor {lr_factor:g})",
        )


class Snapshots:
    """The states at the newest checkpoints (references, not copies) and the initial state:
    the targets of a rollback."""

    def __init__(self, step: int, path: pathlib.Path | None, state: Any, keep: int):
        self.items = [(step, path, state)]
        self.keep = keep

    def add(self, step: int, path: pathlib.Path | None, state: Any) -> None:
        self.items.append((step, path, state))
        if len(self.items) > self.keep + 1:
            del self.items[1]  # the initial state stays, as the last resort

    def target(
        self, bad_step: int, quantity: str, delete: bool
    ) -> tuple[int, pathlib.Path | None, Any]:
        """The state to roll back to after a non-finite `quantity` at `bad_step`."""
        step, path, _ = self.items[-1]
        # A state whose very first step has a non-finite loss or gradient fails again at any
        # learning rate (e.g. a diverged but still finite state): drop it, and its checkpoint,
        # which would only fail once more on resuming, and go back one further.
        if bad_step == step + 1 and quantity != "parameter update" and len(self.items) > 1:
            self.items.pop()
            if path is not None and delete:
                path.with_suffix(".json").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
        return self.items[-1]


def last_learning_rate(opt_state: optax.OptState) -> float | None:
    """The learning rate of the last step, if the optimiser was built with
    `optax.inject_hyperparams`."""
    has_hyperparams = lambda s: hasattr(s, "hyperparams") and isinstance(s.hyperparams, dict)
    for s in jtu.tree_leaves(opt_state, is_leaf=has_hyperparams):
        if has_hyperparams(s) and "learning_rate" in s.hyperparams:
            return float(s.hyperparams["learning_rate"])
    return None


def read_history(path: pathlib.Path) -> list[dict[str, Any]]:
    """The records of a run's `metrics.jsonl`.

    A last line cut short (a crash while appending it) is dropped: records are appended
    before their checkpoint is written, so it is newer than any checkpoint and would be
    dropped on resuming anyway. A damaged earlier line is an error.
    """
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            if i == len(lines) - 1 and not text.endswith("\n"):
                break
            raise ValueError(
                f"`{path}` line {i + 1} is not a metrics record (a JSON object with a "
                "'step'); the file is damaged: remove the line to resume"
            )
        records.append(record)
    return records


def write_history(path: pathlib.Path, history: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in history).encode())


def append_record(path: pathlib.Path, record: Mapping[str, Any]) -> None:
    append_line(path, json.dumps(record) + "\n")


def restore_history(
    path: pathlib.Path, step: int, meta: Mapping[str, Any], checkpoint: pathlib.Path | None
) -> list[dict[str, Any]]:
    """The records of `metrics.jsonl` up to `step`, the restored checkpoint's; they must be the
    ones the checkpoint saw (its `history_sha256`), so that an edited file cannot steer the
    resumed run (e.g. its best epoch)."""
    history = [r for r in read_history(path) if r["step"] <= step]
    expected = meta.get("history_sha256")
    if expected is not None and history_digest(history) != expected:
        raise ValueError(
            f"`{path}` was changed since `{checkpoint}` was written: its records up to step "
            f"{step} differ from the ones the checkpoint recorded (sha256); restore the file "
            "or start a new run"
        )
    return history


def run_guard(step: int, on_nonfinite: str, lr_factor: float | None, mesh) -> GuardState:
    """The non-finite guard of a run's next steps: it stops applying steps after a bad one
    unless the policy is "skip", scales updates by a rollback's learning-rate factor, and is
    replicated over `mesh` (if any)."""
    guard = init_guard(step, sticky=on_nonfinite != "skip", lr_factor=lr_factor)
    return guard if mesh is None else replicate(guard, mesh)
