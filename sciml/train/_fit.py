"""`fit`: a complete training loop built from the public pieces of `sciml.train`."""

import math
import os
import pathlib
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .. import _signals
from .._progress import progress_bar
from .._validate import positive_int
from ._batching import batch_indices, check_arrays, check_batch_size, iterate, num_batches
from ._checkpoint import (
    history_digest,
    remove_model_file,
    restore_newest_valid,
    save_checkpoint,
    save_model_file,
)
from ._lifecycle import (
    UNSKIPPABLE,
    Snapshots,
    append_record,
    last_learning_rate,
    nonfinite_options,
    open_run,
    released_on_error,
    restore_history,
    run_guard,
    stop_unless_rollback,
    write_history,
)
from ._losses import relative_l2
from ._plots import plot_history
from ._sharding import data_size, is_writer, replicate, shard_like, shard_params, sync
from ._step import (
    GuardState,
    evaluate,
    init_optimizer,
    nonfinite_error,
    train_step,
)


@eqx.filter_jit
def _fit_step(
    model: PyTree,
    opt_state: optax.OptState,
    batch: tuple[Array, Array],
    guard: GuardState,
    loss_sum: Array,
    weight: Array,
    *,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    filter_spec: PyTree[bool] | None,
) -> tuple[PyTree, optax.OptState, GuardState, Array, Array]:
    """A guarded `train_step` that also adds its sample-weighted loss to `loss_sum` (one
    dispatch per step; skipped steps add nothing)."""
    model, opt_state, loss, guard = train_step(
        model,
        opt_state,
        batch,
        loss_fn=loss_fn,
        optimizer=optimizer,
        filter_spec=filter_spec,
        guard=guard,
    )
    n = batch[0].shape[0]
    loss_sum = loss_sum + jnp.where(guard.applied, loss * n, 0)
    weight = weight + jnp.where(guard.applied, n, 0)
    return model, opt_state, guard, loss_sum, weight


def _check_pair(data: Any, name: str) -> tuple[Any, Any]:
    data = check_arrays(data, name)
    if len(data) != 2:
        raise ValueError(f"`{name}` must be a pair (inputs, targets), got {len(data)} arrays.")
    if data[0].shape[0] == 0:
        raise ValueError(f"`{name}` must contain at least one sample, got 0.")
    return data


def fit(
    model: PyTree,
    loss_fn: Callable[[PyTree, Array, Array], Float[Array, ""]],
    train_data: tuple[Any, Any],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 20,
    eval_data: tuple[Any, Any] | None = None,
    eval_metrics: Mapping[str, Callable[[Array, Array], Array]] | None = None,
    eval_every: int = 1,
    key: PRNGKeyArray,
    run_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    keep_checkpoints: int = 3,
    resume: bool = False,
    progress: bool = True,
    filter_spec: PyTree[bool] | None = None,
    callback: Callable[[PyTree, dict[str, Any]], Any] | None = None,
    mesh: Mesh | None = None,
    on_nonfinite: str = "stop",
    rollback_lr_factor: float | None = None,
    max_rollbacks: int | None = None,
) -> tuple[PyTree, list[dict[str, Any]]]:
    """Trains `model` by mini-batch gradient descent.

    Built only from public pieces: `batches`-style shuffling (`jax.random.fold_in(key,
    epoch)` for epoch `epoch = 0, 1, ...`), `init_optimizer`, `train_step`, `evaluate`,
    `save_checkpoint` / `restore_checkpoint` and `plot_history`. A user's own loop can
    combine them differently.

    Each epoch: shuffle, one `train_step` per batch (the last batch may be smaller), then
    evaluate `eval_metrics` on `eval_data`, append a record to the history (and to
    `run_dir/metrics.jsonl`), track the best model by the first metric (lower is better) and
    checkpoint every `checkpoint_every` epochs and at the end.

    **`run_dir` layout:**

    - `metrics.jsonl`: one JSON record per epoch (see *Returns*).
    - `best_model.eqx`: the best model so far (`eqx.tree_serialise_leaves`; load with
        `eqx.tree_deserialise_leaves(path, model)`, or verified against its checksum in
        `best_model.json` with `load_model_file`), only with `eval_data`.
    - `checkpoints/ckpt_{step:08d}.eqx` + `.json`: the newest `keep_checkpoints`
        checkpoints; state `{"model", "opt_state", "key", "best_model"}` (key as
        `jax.random.key_data`), metadata epoch, step, best metric, `num_train`, `batch_size`.
    - `plots/loss.png`: `plot_history` of the run, written at the end.
    - `.lock`: locked (`flock`) while a process trains the run, so a second `fit` on the
        same directory stops with a one-line error instead of interleaving checkpoints; the
        system releases it when the process ends, however it ends. A symbolic link at
        `.lock` or `metrics.jsonl` is refused (`StorageError`), never written through.

    Every file is written atomically (temporary file, fsync, rename), so a crash at any
    moment leaves complete files; temporaries of interrupted writes are deleted when a run
    starts or resumes.

    **Resuming.** With `resume=True` the newest complete and valid checkpoint in
    `run_dir/checkpoints` is restored (model, optimiser state, best model and best metric; a
    newer one that fails its checksum is set aside as `*.corrupt` with a warning, see
    `restore_newest_valid`), the records of `metrics.jsonl` after its step are dropped (the file
    is rewritten atomically; the ones before must match the checksum the checkpoint stored, so
    an edited file is refused) and training continues at that step, skipping the batches of the
    current epoch that were already used. Since the shuffling depends only on `(key, epoch)`,
    the result equals the uninterrupted run bit for bit (on the same machine and software). The
    checkpoint must come from the same `key`, number of training samples and `batch_size`.
    Without a checkpoint, `resume=True` starts from scratch. `epochs`/`steps` is the total over
    all sessions, so a finished run can be extended by resuming with a larger value. If a run
    stopped mid-epoch (see `steps`) is extended, that epoch gets a second record covering its
    remaining batches.

    **Non-finite losses and gradients.** Every step is guarded (`train_step(...,
    guard=...)`): a step whose loss or gradient holds a NaN or an infinity is not applied; an
    update that overflows a parameter is recorded at its step too (it is caught by the next
    step, or at the end of the epoch). The first such step is read at the end of its epoch,
    where `fit` synchronises anyway. Then, by `on_nonfinite`:

    - `"stop"`: no later step is applied; the epoch is neither recorded nor checkpointed
        (the newest checkpoint stays the last good one, `metrics.jsonl` gets no record of it)
        and a `NonFiniteError` names the step, the quantity and the last good checkpoint; its
        `model` is the model after the step before, bit for bit (after an overflowing
        update: the model it produced).
    - `"rollback"`: go back to the newest checkpoint (the state at the last point where one
        is written, also with `run_dir=None`; the initial state before the first; a
        checkpoint whose very first step fails is deleted and the one before it used), drop
        the newer records, multiply the learning rate by `rollback_lr_factor` (every later
        update is scaled, for any optimiser, schedules included) and continue; after
        `max_rollbacks` rollbacks, stop as above. Records after a rollback carry `lr_factor`;
        checkpoints store it, so a resumed run keeps it.
    - `"skip"`: skip only the non-finite steps and go on; the record of an epoch with
        skipped steps holds `skipped_steps` and a `train_loss` over the applied ones. An
        epoch in which no step could be applied, or an overflowing update, stops as above.

    **Arguments:**

    - `model`: the model; acts on ONE sample (`jax.vmap`-ed by the loss).
    - `loss_fn`: `loss_fn(model, x_batch, y_batch) -> scalar`, e.g.
        `batch_loss(relative_l2)`.
    - `train_data`: `(inputs, targets)` host arrays (NumPy or h5py) with a leading sample
        axis of equal length.
    - `optimizer`: an Optax gradient transformation.
    - `epochs`: number of epochs (exactly one of `epochs` and `steps`).
    - `steps`: number of optimiser steps. Training stops exactly after `steps` steps, so the
        last epoch may be partial (it is still evaluated, recorded and checkpointed).
    - `batch_size`: training (and evaluation) batch size; must not exceed the number of
        training samples (a `ValueError` rather than a silent clamp).
    - `eval_data`: optional `(inputs, targets)` evaluated after each epoch.
    - `eval_metrics`: per-sample metrics by name; default `{"relative_l2": relative_l2}`
        when `eval_data` is given. The first one selects the best model.
    - `eval_every`: evaluate every `eval_every` epochs (and after the last one); records of
        the other epochs have no `eval_*` entries. For runs of many short epochs.
    - `key`: PRNG key for the shuffling (typed or raw).
    - `run_dir`: directory for metrics, checkpoints and plots; `None` writes nothing. It
        must not already hold a run unless `resume=True`.
    - `checkpoint_every`: epochs between checkpoints (a checkpoint is also written at the
        end and when `callback` stops training).
    - `keep_checkpoints`: how many checkpoints to keep.
    - `resume`: continue from the newest checkpoint in `run_dir` (see above).
    - `progress`: show a `tqdm` progress bar over steps with the last train loss and eval
        metric.
    - `filter_spec`: trainable leaves (default `trainable_filter(model)`, which freezes
        normalisers).
    - `callback`: `callback(model, record)` after each epoch's record; a truthy return value
        stops training after that epoch.
    - `mesh`: train on several devices (`make_mesh()`: all local devices). Every batch is
        split along its sample axis over the mesh's `"data"` axis (`shard_batch`), the model
        and optimiser state are replicated, with large weights split over a `"model"` axis
        of size > 1 (`shard_params`), and the same compiled `train_step` runs on all devices
        (XLA inserts the gradient all-reduce). `batch_size` must be a multiple of the number
        of data devices (a last partial batch that is not is replicated). The result equals
        single-device training up to floating-point rounding. Checkpoints hold plain
        (gathered) arrays, so a run may resume on another number of devices. With several
        processes (`jax.distributed.initialize`), each reads only its devices' rows of every
        batch and only process 0 writes to `run_dir` (which all of them must be able to read
        to resume).
    - `on_nonfinite`: `"stop"` (default), `"rollback"` or `"skip"`, see above.
    - `rollback_lr_factor`: the learning-rate factor per rollback, in (0, 1); default 0.5.
        Only with `on_nonfinite="rollback"`.
    - `max_rollbacks`: rollbacks before giving up; default 3. Only with
        `on_nonfinite="rollback"`.

    **Returns:**

    `(model, history)`: the best model (by the first eval metric) when `eval_data` is given,
    else the final model; and the list of records, one dict per epoch with `epoch` (0-based
    index), `step` (optimiser steps so far), `train_loss` (sample-weighted mean of the
    batch losses of the epoch, with the parameters before each step), `eval_<name>` for
    every metric, `lr` (only for optimisers built with `optax.inject_hyperparams`) and
    `epoch_time_s`. After a resume the history includes the restored earlier records.
    """
    train_data = _check_pair(train_data, "train_data")
    n = int(train_data[0].shape[0])
    if (epochs is None) == (steps is None):
        raise ValueError(
            f"`fit` needs exactly one of `epochs` and `steps`, got epochs={epochs!r}, "
            f"steps={steps!r}."
        )
    batch_size = check_batch_size(batch_size)
    if batch_size > n:
        raise ValueError(
            f"`batch_size` = {batch_size} exceeds the {n} samples of `train_data`; use at most {n}."
        )
    nb = num_batches(n, batch_size)
    if epochs is not None:
        total_steps = positive_int("epochs", epochs) * nb
    else:
        total_steps = positive_int("steps", steps)
    if eval_data is not None:
        eval_data = _check_pair(eval_data, "eval_data")
        if eval_metrics is None:
            eval_metrics = {"relative_l2": relative_l2}
        eval_metrics = dict(eval_metrics)
        if not eval_metrics or not all(callable(m) for m in eval_metrics.values()):
            raise ValueError(
                f"`eval_metrics` must be a non-empty dict of per-sample metrics, got "
                f"{eval_metrics!r}."
            )
    elif eval_metrics is not None:
        raise ValueError("`eval_metrics` was given without `eval_data`; pass both or neither.")
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    eval_every = positive_int("eval_every", eval_every)
    keep_checkpoints = positive_int("keep_checkpoints", keep_checkpoints)
    on_nonfinite, rollback_lr_factor, max_rollbacks = nonfinite_options(
        on_nonfinite, rollback_lr_factor, max_rollbacks
    )
    rollback = on_nonfinite == "rollback"
    if resume and run_dir is None:
        raise ValueError("`resume=True` needs a `run_dir` to resume from, got run_dir=None.")
    if mesh is not None and batch_size % data_size(mesh) != 0:
        raise ValueError(
            f"`batch_size` = {batch_size} must be a multiple of the {data_size(mesh)} devices "
            "of the mesh's 'data' axis."
        )
    if jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key_data = jax.random.key_data(key)
    else:
        key_data = jnp.asarray(key)

    if mesh is None:
        opt_state = init_optimizer(optimizer, model, filter_spec)
    else:
        model = shard_params(model, mesh)
        # Initialised under `jit`, the optimiser state inherits its parameters' shardings.
        opt_state = eqx.filter_jit(init_optimizer)(optimizer, model, filter_spec)
    step = 0
    history: list[dict[str, Any]] = []
    best_model = None
    best_metric = math.inf
    first_metric = next(iter(eval_metrics)) if eval_data is not None else None
    lr_factor, rollbacks, last_checkpoint = 1.0, 0, None
    lock = writer = None

    if run_dir is not None:
        run_dir = pathlib.Path(run_dir)
        writer = is_writer()
        lock, latest = open_run(run_dir, resume=resume, who="sciml.fit")
        with released_on_error(lock):
            ckpt_dir = run_dir / "checkpoints"
            metrics_path = run_dir / "metrics.jsonl"
            meta = {}
            if latest is not None:
                like = {
                    "model": model,
                    "opt_state": opt_state,
                    "key": key_data,
                    "best_model": model,
                }
                state, meta, latest = restore_newest_valid(ckpt_dir, like)
                for name, now in (("num_train", n), ("batch_size", batch_size)):
                    if meta.get(name) != now:
                        raise ValueError(
                            f"Cannot resume from `{latest}`: it was written with {name}="
                            f"{meta.get(name)!r}, now {name}={now!r}."
                        )
                if not np.array_equal(np.asarray(state["key"]), np.asarray(key_data)):
                    raise ValueError(
                        f"Cannot resume from `{latest}`: `key` differs from the key of the run; "
                        "pass the original key."
                    )
                if mesh is not None:
                    state = shard_like(state, like)
                model, opt_state = state["model"], state["opt_state"]
                step = int(meta["step"])
                last_checkpoint = latest
                if rollback:
                    lr_factor = float(meta.get("lr_factor", 1.0))
                    rollbacks = int(meta.get("rollbacks", 0))
                if eval_data is not None and meta.get("best_metric") is not None:
                    best_model = state["best_model"]
                    best_metric = float(meta["best_metric"])
                    if writer:
                        save_model_file(run_dir / "best_model.eqx", best_model)
            # Drop records newer than the checkpoint (or all of them, when starting afresh).
            history = restore_history(metrics_path, step, meta, latest)
            sync("sciml.fit: run restored")
            if writer:
                write_history(metrics_path, history)

    def fresh_guard() -> GuardState:
        return run_guard(step, on_nonfinite, lr_factor if rollback else None, mesh)

    def error(bad_step: int, quantity: str, detail: str = ""):
        return nonfinite_error(
            "fit",
            bad_step,
            quantity,
            checkpoint=last_checkpoint,
            run_dir=run_dir,
            model=model,
            detail=detail,
        )

    if rollback:
        state = (model, opt_state, best_model, best_metric)
        snapshots = Snapshots(step, last_checkpoint, state, keep_checkpoints)
    epoch = step // nb
    stop = False
    bar = progress_bar(
        total=total_steps,
        initial=step,
        disable=not progress,
        unit="step",
        desc="fit",
        dynamic_ncols=True,
    )
    try:
        while step < total_steps and not stop:
            start_time = time.perf_counter()
            chunks = batch_indices(n, batch_size, jax.random.fold_in(key, epoch), False)
            first, last = step - epoch * nb, min(nb, total_steps - epoch * nb)
            # Accumulated on the device: no host synchronisation inside the epoch.
            sums = (jnp.zeros(()), jnp.zeros((), jnp.int32))
            loss_sum, weight = sums if mesh is None else replicate(sums, mesh)
            guard = fresh_guard()
            for x, y in iterate(train_data, chunks[first:last], prefetch=2, mesh=mesh):
                model, opt_state, guard, loss_sum, weight = _fit_step(
                    model,
                    opt_state,
                    (x, y),
                    guard,
                    loss_sum,
                    weight,
                    loss_fn=loss_fn,
                    optimizer=optimizer,
                    filter_spec=filter_spec,
                )
                step += 1
                bar.update(1)
                _signals.check()
            # An update of the epoch's last step that overflowed is caught here.
            guard = guard.check_parameters(model, filter_spec)
            bad = guard.first_nonfinite()
            if bad is not None and (on_nonfinite != "skip" or bad[1] in UNSKIPPABLE):
                bad_step, quantity = bad
                stop_unless_rollback(error, bad, on_nonfinite, rollbacks, max_rollbacks, lr_factor)
                rollbacks += 1
                lr_factor *= rollback_lr_factor
                delete = run_dir is not None and writer
                step, last_checkpoint, state = snapshots.target(bad_step, quantity, delete)
                model, opt_state, best_model, best_metric = state
                epoch = step // nb
                history = [r for r in history if r["step"] <= step]
                if run_dir is not None and writer:
                    write_history(metrics_path, history)
                    if best_model is not None:
                        save_model_file(run_dir / "best_model.eqx", best_model)
                    else:
                        remove_model_file(run_dir / "best_model.eqx")
                warnings.warn(
                    f"fit: non-finite {quantity} at step {bad_step}; rolled back to step {step} "
                    f"with learning-rate factor {lr_factor:g} (rollback {rollbacks} of "
                    f"{max_rollbacks})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                bar.n = bar.last_print_n = step
                bar.refresh()
                continue
            applied, skipped = int(weight), int(guard.skipped)
            if applied == 0:
                raise error(*bad, f" (the first of epoch {epoch}, whose every step was skipped)")
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "train_loss": float(loss_sum) / applied,
            }
            if skipped:
                record["skipped_steps"] = skipped
                warnings.warn(
                    f"fit: skipped {skipped} non-finite step(s) in epoch {epoch}, the first at "
                    f"step {bad[0]} ({bad[1]})",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if eval_data is not None and ((epoch + 1) % eval_every == 0 or step >= total_steps):
                scores = evaluate(model, eval_data, eval_metrics, batch_size=batch_size, mesh=mesh)
                record.update({f"eval_{name}": value for name, value in scores.items()})
                if scores[first_metric] < best_metric:
                    best_metric, best_model = scores[first_metric], model
                    if run_dir is not None and writer:
                        save_model_file(run_dir / "best_model.eqx", best_model)
            lr = last_learning_rate(opt_state)
            if lr is not None:
                record["lr"] = lr * lr_factor
            if lr_factor != 1.0:
                record["lr_factor"] = lr_factor
            record["epoch_time_s"] = time.perf_counter() - start_time
            history.append(record)
            if run_dir is not None and writer:
                append_record(metrics_path, record)
            if callback is not None:
                stop = bool(callback(model, record))
            postfix = {"loss": f"{record['train_loss']:.3e}"}
            if f"eval_{first_metric}" in record:
                postfix[first_metric] = f"{record[f'eval_{first_metric}']:.3e}"
            bar.set_postfix(postfix, refresh=False)
            epoch += 1
            if epoch % checkpoint_every == 0 or step >= total_steps or stop:
                if run_dir is not None:
                    last_checkpoint = ckpt_dir / f"ckpt_{step:08d}.eqx"
                if rollback:
                    state = (model, opt_state, best_model, best_metric)
                    snapshots.add(step, last_checkpoint, state)
                if run_dir is not None and writer:
                    state = {
                        "model": model,
                        "opt_state": opt_state,
                        "key": key_data,
                        "best_model": model if best_model is None else best_model,
                    }
                    metadata = {
                        "epoch": record["epoch"],
                        "best_metric": None if best_model is None else best_metric,
                        "num_train": n,
                        "batch_size": batch_size,
                        "history_sha256": history_digest(history),
                    }
                    if rollback:
                        metadata.update(lr_factor=lr_factor, rollbacks=rollbacks)
                    save_checkpoint(ckpt_dir, step, state, metadata=metadata, keep=keep_checkpoints)
        if run_dir is not None and history and writer:
            plot_history(history, run_dir / "plots" / "loss.png")
    finally:
        bar.close()
        if lock is not None:
            lock.release()
    if eval_data is not None and best_model is not None:
        return best_model, history
    return model, history
