"""`solve`: train a model on a `Problem`, Adam (or natural gradient) then L-BFGS, from the pieces
of `sciml.train`."""

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
from jaxtyping import Array, PRNGKeyArray, PyTree

from .. import _signals
from .._progress import progress_bar
from .._validate import positive_int
from ..train import (
    init_optimizer,
    plot_history,
    plot_solution,
    replicate,
    save_checkpoint,
    shard_batch,
    shard_params,
    train_step,
    trainable_filter,
)
from ..train._checkpoint import history_digest, restore_newest_valid
from ..train._lifecycle import (
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
from ..train._plots import plot_parameters
from ..train._sharding import is_writer, shard_like, sync
from ..train._step import (
    GuardState,
    guarded_update,
    nonfinite_error,
)
from ._adaptive import grad_norm_weights, rad_resample
from ._alignment import alignment_record, gradient_alignment
from ._domain import SpaceTime
from ._natural_gradient import NaturalGradient
from ._parameterized import parameter_values
from ._problem import RESIDUAL, Problem

BALANCING = ("fixed", "grad_norm")


def _strong(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype) if eqx.is_array(x) else x, tree)


def _pinn_loss(problem: Problem) -> Callable:
    # `train_step` calls `loss_fn(model, x, y)`: here x = points by term, y = weights by term.
    def loss_fn(model, points, weights):
        return problem.loss(model, points, weights)

    return loss_fn


def _guarded_loop(step_fn, params, state, guard: GuardState, n: Array, dtype):
    """Runs `step_fn(params, state, guard) -> (params, state, loss, guard)` `n` times in one
    compiled loop; a sticky guard ends it at its first non-finite step. Returns the mean loss
    over the applied steps."""

    def cond(carry):
        i, _, _, guard, _, _ = carry
        go = i < n
        if guard.sticky:  # the remaining steps could not be applied: leave at once
            go = go & (guard.quantity == 0)
        return go

    def body(carry):
        i, p, s, guard, total, count = carry
        p, s, loss, guard = step_fn(p, s, guard)
        total = total + jnp.where(guard.applied, loss, 0)
        return i + 1, p, s, guard, total, count + guard.applied.astype(jnp.int32)

    # `n` is traced (blocks of any length share one compilation), so `fori_loop` would be a
    # `while_loop` anyway: the early exit adds nothing to its per-iteration test.
    zero = jnp.zeros((), dtype)
    init = (jnp.zeros((), jnp.int32), params, state, guard, zero, jnp.zeros((), jnp.int32))
    _, params, state, guard, total, count = jax.lax.while_loop(cond, body, init)
    return params, state, total / count, guard


@eqx.filter_jit
def _adam_block(
    model, opt_state, points, weights, problem, optimizer, filter_spec, n: Array, guard
):
    """`n` guarded first-order steps (`train_step(..., guard=guard)`) on fixed points in one
    compiled loop. Returns the model, the state, the mean loss over the applied steps and the
    guard."""
    loss_fn = _pinn_loss(problem)
    params, static = eqx.partition(model, filter_spec)

    def step_fn(p, s, guard):
        m, s, loss, guard = train_step(
            eqx.combine(p, static),
            s,
            (points, weights),
            loss_fn=loss_fn,
            optimizer=optimizer,
            filter_spec=filter_spec,
            guard=guard,
        )
        return eqx.filter(m, filter_spec), s, loss, guard

    dtype = jnp.result_type(*jax.tree.leaves(weights))
    params, opt_state, loss, guard = _guarded_loop(step_fn, params, opt_state, guard, n, dtype)
    return eqx.combine(params, static), opt_state, loss, guard


@eqx.filter_jit
def _natural_gradient_block(
    model, damping, points, weights, problem, method, filter_spec, n: Array, guard
):
    """`n` natural-gradient steps (`NaturalGradient.step`) on fixed points, one compiled loop,
    guarded like the first-order steps (the direction in the gradient's place); the state is
    the damping. A rollback's learning-rate factor scales the candidate step sizes."""
    params, static = eqx.partition(model, filter_spec)

    def step_fn(p, damping, guard):
        m, info = method.step(
            problem,
            eqx.combine(p, static),
            points,
            weights,
            damping,
            filter_spec=filter_spec,
            eta_factor=guard.lr_factor,
        )
        new_p = eqx.filter(m, filter_spec)
        loss = info["loss"]
        p, damping, guard = guarded_update(
            guard, loss, info["direction"], p, new_p, damping, info["damping"]
        )
        return p, damping, loss, guard

    dtype = jnp.result_type(*jax.tree.leaves(weights))
    params, damping, loss, guard = _guarded_loop(step_fn, params, damping, guard, n, dtype)
    return eqx.combine(params, static), damping, loss, guard


@eqx.filter_jit
def _lbfgs_block(model, state, points, weights, problem, optimizer, filter_spec, n: Array, guard):
    """`n` L-BFGS iterations (Optax, zoom line search) on fixed points, one compiled loop,
    guarded like the first-order steps."""
    params, static = eqx.partition(model, filter_spec)

    def value_fn(p):
        return problem.loss(eqx.combine(p, static), points, weights)

    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step_fn(p, s, guard):
        value, grad = value_and_grad(p, state=s)
        updates, new_s = optimizer.update(grad, s, p, value=value, grad=grad, value_fn=value_fn)
        new_p = optax.apply_updates(p, updates)
        p, s, guard = guarded_update(guard, value, grad, p, new_p, s, new_s)
        return p, s, value, guard

    dtype = jnp.result_type(*jax.tree.leaves(weights))
    params, state, loss, guard = _guarded_loop(step_fn, params, state, guard, n, dtype)
    return eqx.combine(params, static), state, loss, guard


@eqx.filter_jit
def _terms(model, points, problem):
    return problem.losses(model, points)


@eqx.filter_jit
def _balance(model, points, weights, problem, filter_spec, momentum):
    params, static = eqx.partition(model, filter_spec)
    losses_fn = lambda p: problem.losses(eqx.combine(p, static), points)
    return grad_norm_weights(losses_fn, params, weights, momentum=momentum)


@eqx.filter_jit
def _error(model, problem, eval_points, eval_values):
    pred = jax.lax.map(model, eval_points, batch_size=4096).reshape(eval_values.shape)
    return jnp.linalg.norm(pred - eval_values) / jnp.linalg.norm(eval_values), pred


def _sample(problem, key, num_points, method, dtype, adaptive, model):
    points = problem.sample(key, num_points, method, dtype=dtype)
    if adaptive is None:
        return points
    pool_key, pick_key = jax.random.split(jax.random.fold_in(key, 10_000))
    n = num_points[RESIDUAL]
    pool = problem.domain.sample_interior(pool_key, adaptive.get("pool", 10) * n, dtype=dtype)
    residual_fn = eqx.filter_jit(lambda m, x: problem.residuals(m, x))
    points[RESIDUAL] = rad_resample(
        pick_key,
        lambda x: residual_fn(model, x),
        pool,
        n,
        k=adaptive.get("k", 1.0),
        c=adaptive.get("c", 1.0),
    )
    return points


def solve(
    problem: Problem,
    model: PyTree,
    *,
    key: PRNGKeyArray,
    steps: int,
    num_points: Mapping[str, int] | None = None,
    points: Mapping[str, Array] | None = None,
    learning_rate: float | optax.Schedule = 1e-3,
    optimizer: optax.GradientTransformation | NaturalGradient | None = None,
    method: str | Mapping[str, str] = "uniform",
    resample_every: int | None = None,
    adaptive: Mapping[str, int | float] | None = None,
    weights: Mapping[str, float] | None = None,
    balancing: str = "fixed",
    balance_every: int = 1000,
    balance_momentum: float = 0.9,
    lbfgs_steps: int = 0,
    lbfgs_memory: int = 50,
    eval_every: int = 1000,
    eval_set: tuple[Array, Array] | None = None,
    dtype=None,
    run_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    progress: bool = True,
    filter_spec: PyTree[bool] | None = None,
    callback: Callable[[PyTree, dict[str, Any]], Any] | None = None,
    alignment: bool = False,
    mesh: Mesh | None = None,
    on_nonfinite: str = "stop",
    rollback_lr_factor: float | None = None,
    max_rollbacks: int | None = None,
) -> tuple[PyTree, list[dict[str, Any]]]:
    """Trains `model` to solve `problem`: `steps` first-order (or natural-gradient) steps, then
    `lbfgs_steps` L-BFGS iterations.

    Built from public pieces: `Problem.sample` / `Problem.loss`, `sciml.train.train_step`
    (fused `eval_every`-long runs of it in one compiled loop), `grad_norm_weights`,
    `rad_resample`, Optax's `lbfgs`, and the checkpoints and plots of `sciml.train`.

    **Schedule.** Steps run in blocks on fixed points; a block ends at every multiple of
    `eval_every`, `resample_every`, `balance_every` (with `balancing="grad_norm"`) and
    `checkpoint_every`. After a block: points are redrawn (`resample_every`; by
    `Problem.sample` with key `fold_in(key, step)`, and the residual points by RAD when
    `adaptive` is given), weights rebalanced, the run evaluated and recorded, and checkpointed.
    L-BFGS runs on the last points, with the last weights, in blocks of `eval_every`.

    **Non-finite losses and gradients.** Every step runs guarded (`train_step(...,
    guard=...)`; L-BFGS iterations alike): a step whose loss or gradient holds a NaN or an
    infinity is not applied, an update that overflows a parameter is recorded at its step,
    and each block is checked when it ends. Then, by `on_nonfinite` (as in
    `sciml.train.fit`): `"stop"` ends the block at that step and raises a
    `sciml.train.NonFiniteError` naming the step, the quantity and the last good checkpoint,
    with nothing of the block recorded or checkpointed; `"rollback"` restores the newest
    checkpoint (the state at the last point where one is written, also with `run_dir=None`;
    the initial state before the first; a checkpoint whose very first step fails is deleted
    and the one before it used), drops the newer records and goes on with the first-order
    learning rate multiplied by `rollback_lr_factor` (after a failure in the L-BFGS phase,
    also with the L-BFGS memory cleared), and stops as `"stop"` after `max_rollbacks`
    rollbacks; `"skip"` skips only the non-finite steps (records count them in
    `skipped_steps`) and stops when a whole block was skipped or an update overflowed.

    **Precision.** Points take `dtype` (default: JAX's default float). For a float64 run,
    enable `jax.config.update("jax_enable_x64", True)` first and build the model in float64;
    L-BFGS in particular profits from it.

    **Arguments:**

    - `problem`: the `Problem`.
    - `model`: a function of one point (e.g. `sciml.fields.MLP`, `PIG`, or a
        `HardConstraint` around one).
    - `key`: PRNG key for the points.
    - `steps`: first-order steps (0 for L-BFGS only).
    - `num_points`: points per loss term (`problem.terms`; `Observations` terms may be left
        out: their points are fixed); may be omitted with `points`.
    - `points`: the first point sets, by term (e.g. read from a file); default: sampled.
        Without `resample_every` they are used for the whole run.
    - `learning_rate`: Adam's learning rate or an Optax schedule (ignored with `optimizer`).
    - `optimizer`: any Optax transformation instead of Adam, or a `NaturalGradient`: the
        `steps` are then energy natural gradient (Gauss-Newton) steps with their line search
        (records name the phase `"natural_gradient"` and carry the `damping`; the
        checkpointed optimiser state is the damping; a rollback's learning-rate factor scales
        the candidate step sizes).
    - `method`: sampling method(s), see `Problem.sample`.
    - `resample_every`: steps between fresh points; `None` keeps the first points.
    - `adaptive`: RAD options `{"pool": 10, "k": 1.0, "c": 1.0}` for the residual points at
        each resampling (`pool` x `num_points["residual"]` uniform candidates).
    - `weights`: initial loss weights by term (default 1 each).
    - `balancing`: `"fixed"` or `"grad_norm"` (every `balance_every` steps, with momentum
        `balance_momentum`, see `grad_norm_weights`).
    - `lbfgs_steps`, `lbfgs_memory`: L-BFGS iterations and history size.
    - `eval_every`: steps between evaluations and records.
    - `eval_set`: `(points, values)` for the relative L2 error (default
        `problem.evaluation_set()` when the problem has `exact` or `reference`).
    - `dtype`: dtype of the points.
    - `run_dir`: writes `metrics.jsonl` (one record per block), checkpoints
        (`checkpoints/ckpt_*.eqx`), `plots/loss.png`, `plots/solution.png` and, for a
        `Parameterized` model, `plots/parameters.png` (the unknowns' trajectories).
    - `checkpoint_every`: steps between checkpoints (default `eval_every`).
    - `keep_checkpoints`: checkpoints kept.
    - `resume`: continue from the newest checkpoint of `run_dir` (points, weights and both
        optimiser states are restored, so the run continues exactly).
    - `progress`: a progress bar.
    - `filter_spec`: trainable leaves (default `trainable_filter(model)`).
    - `callback`: `callback(model, record)` after each record; truthy return stops.
    - `alignment`: add the gradient-alignment diagnostic to every record (`alignment`,
        `grad_norm_<term>`, `cos_<a>_<b>`; see `gradient_alignment`): a score near -1 says the
        loss terms pull against each other.
    - `mesh`: solve on several devices (`sciml.train.make_mesh()`): the points of every term
        are split along their leading axis over the mesh's `"data"` axis
        (`sciml.train.shard_batch`; a term whose point count the axis does not divide is
        replicated), the model and optimiser states are replicated (`shard_params`). Equal
        to the single-device solve up to floating-point rounding. With several processes
        only process 0 writes to `run_dir`.
    - `on_nonfinite`: `"stop"` (default), `"rollback"` or `"skip"`, see above.
    - `rollback_lr_factor`: learning-rate factor per rollback, in (0, 1); default 0.5. Only
        with `on_nonfinite="rollback"`.
    - `max_rollbacks`: rollbacks before giving up; default 3. Only with
        `on_nonfinite="rollback"`.

    **Returns:** `(model, history)`; records hold `step`, `phase` (`"adam"` or `"lbfgs"`),
    `train_loss` (mean over the block), `loss_<term>` and `weight_<term>` at its end,
    `param_<name>` (a `Parameterized` model's parameters, numbers or nested lists; also in the
    progress bar),
    `eval_relative_l2`, `lr` where known (times `lr_factor`, recorded after a rollback),
    `skipped_steps` (policy `"skip"`, when any) and `time_s`.
    """
    steps = positive_int("steps", steps, allow_zero=True)
    lbfgs_steps = positive_int("lbfgs_steps", lbfgs_steps, allow_zero=True)
    if steps + lbfgs_steps == 0:
        raise ValueError("`solve` needs `steps` or `lbfgs_steps` > 0, got both 0.")
    eval_every = positive_int("eval_every", eval_every)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every or eval_every)
    if resample_every is not None:
        resample_every = positive_int("resample_every", resample_every)
    if balancing not in BALANCING:
        raise ValueError(f"`balancing` must be one of {BALANCING}, got {balancing!r}.")
    balance_every = positive_int("balance_every", balance_every)
    if adaptive is not None:
        unknown = set(adaptive) - {"pool", "k", "c"}
        if unknown:
            raise ValueError(f"`adaptive` accepts keys pool, k, c; got {sorted(unknown)}.")
        if resample_every is None:
            raise ValueError("`adaptive` resampling needs `resample_every`.")
    if weights is None:
        weights = {}
    unknown = [name for name in weights if name not in problem.terms]
    if unknown:
        raise ValueError(f"`weights` has unknown terms {unknown}; allowed: {list(problem.terms)}.")
    if resume and run_dir is None:
        raise ValueError("`resume=True` needs a `run_dir`.")
    on_nonfinite, rollback_lr_factor, max_rollbacks = nonfinite_options(
        on_nonfinite, rollback_lr_factor, max_rollbacks
    )
    rollback = on_nonfinite == "rollback"
    if points is not None:
        fixed = problem.fixed_terms
        sampled = [t for t in problem.terms if t not in fixed]
        if sorted(t for t in points if t not in fixed) != sorted(sampled) or any(
            t not in problem.terms for t in points
        ):
            raise ValueError(
                f"`points` must have exactly the keys {sampled}"
                + (f" (and optionally {list(fixed)})" if fixed else "")
                + f", got {list(points)}."
            )
        for name in fixed:
            own = problem.conditions[name].points
            if name in points and not np.array_equal(np.asarray(points[name]), np.asarray(own)):
                raise ValueError(
                    f"`points[{name!r}]` differ from the term's observation points; leave them "
                    "out (the points of `Observations` are fixed)."
                )
        points = {
            name: points[name] if name in points else problem.conditions[name].points
            for name in problem.terms
        }
        for name, x in points.items():
            if jnp.ndim(x) != 2 or jnp.shape(x)[1] != problem.domain.dim:
                raise ValueError(
                    f"`points[{name!r}]` must have shape (n, {problem.domain.dim}), got "
                    f"{jnp.shape(x)}."
                )
        given = {name: int(jnp.shape(x)[0]) for name, x in points.items()}
        if num_points is not None and problem.point_counts(num_points) != given:
            raise ValueError(
                f"`num_points` = {dict(num_points)} disagrees with `points` ({given})."
            )
        num_points = given
    elif num_points is None:
        raise ValueError("`solve` needs `num_points` or `points`.")
    else:
        num_points = problem.point_counts(num_points)

    dtype = jnp.zeros((), dtype).dtype
    weights = {name: jnp.asarray(weights.get(name, 1.0), dtype) for name in problem.terms}
    if optimizer is None:
        optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    natural = isinstance(optimizer, NaturalGradient)
    lbfgs = optax.lbfgs(memory_size=lbfgs_memory)
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    # Strong types from the start: a weakly typed scalar in an optimiser state would come back
    # strongly typed from the first block and make the second one compile again.
    if natural:
        opt_state = optimizer.init(dtype)
    else:
        opt_state = _strong(init_optimizer(optimizer, model, spec))
    init_lbfgs = lambda m: _strong(lbfgs.init(eqx.filter(m, spec)))
    lbfgs_state = init_lbfgs(model)
    if eval_set is None and (problem.exact is not None or problem.reference is not None):
        eval_set = problem.evaluation_set(dtype=dtype)
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if mesh is None:
        shard = lambda tree: tree
    else:
        shard = lambda tree: shard_batch(tree, mesh)
        model, weights = shard_params(model, mesh), replicate(weights, mesh)
        # Initialised under `jit`, the optimiser states inherit the parameters' shardings.
        if natural:
            opt_state = replicate(opt_state, mesh)
        else:
            init = eqx.filter_jit(lambda opt, m: _strong(init_optimizer(opt, m, spec)))
            opt_state = init(optimizer, model)
        init_lbfgs = eqx.filter_jit(init_lbfgs)
        lbfgs_state = init_lbfgs(model)

    step, history = 0, []
    lr_factor, rollbacks, last_checkpoint = 1.0, 0, None
    lock = writer = None
    first_points, points = points, None
    if run_dir is not None:
        run_dir = pathlib.Path(run_dir)
        writer = is_writer()
        lock, latest = open_run(run_dir, resume=resume, who="sciml.pinn.solve")
        with released_on_error(lock):
            ckpt_dir, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"
            meta = {}
            if latest is not None:
                like_points = problem.sample(jax.random.key(0), num_points, "uniform", dtype=dtype)
                like = {
                    "model": model,
                    "opt_state": opt_state,
                    "lbfgs_state": lbfgs_state,
                    "weights": weights,
                    "points": like_points,
                    "key": key_data,
                }
                state, meta, latest = restore_newest_valid(ckpt_dir, like)
                if not np.array_equal(np.asarray(state["key"]), np.asarray(key_data)):
                    raise ValueError(
                        f"Cannot resume from `{latest}`: it was written with another key."
                    )
                if mesh is not None:
                    state = shard_like(state, like)
                model, opt_state = state["model"], state["opt_state"]
                lbfgs_state, weights = state["lbfgs_state"], state["weights"]
                points = shard(state["points"])
                step = int(meta["step"])
                last_checkpoint = latest
                if rollback:
                    lr_factor = float(meta.get("lr_factor", 1.0))
                    rollbacks = int(meta.get("rollbacks", 0))
            history = restore_history(metrics_path, step, meta, latest)
            sync("sciml.pinn.solve: run restored")
            if writer:
                write_history(metrics_path, history)
    if points is None and first_points is not None:
        points = shard({name: jnp.asarray(x, dtype) for name, x in first_points.items()})
    elif points is None:
        points = problem.sample(jax.random.fold_in(key, 0), num_points, method, dtype=dtype)
        points = shard(points)

    def boundaries(s: int) -> int:
        """The end of the block starting at step `s`."""
        total = steps + lbfgs_steps
        periods = [eval_every, checkpoint_every]
        if s < steps:
            if resample_every is not None:
                periods.append(resample_every)
            if balancing == "grad_norm":
                periods.append(balance_every)
            limit = steps
        else:
            limit = total
        return min([limit] + [(s // p + 1) * p for p in periods])

    def fresh_guard(phase: str) -> GuardState:
        factor = lr_factor if rollback and phase == "adam" else None
        return run_guard(step, on_nonfinite, factor, mesh)

    def error(bad_step: int, quantity: str, detail: str = ""):
        return nonfinite_error(
            "solve",
            bad_step,
            quantity,
            checkpoint=last_checkpoint,
            run_dir=run_dir,
            model=model,
            detail=detail,
        )

    if rollback:
        state = (model, opt_state, lbfgs_state, weights, points)
        snapshots = Snapshots(step, last_checkpoint, state, keep_checkpoints)
    skipped_since_record = 0
    total = steps + lbfgs_steps
    bar = progress_bar(total=total, initial=step, disable=not progress, unit="step", desc="solve")
    stop = False
    align = eqx.filter_jit(gradient_alignment) if alignment else None
    try:
        while step < total and not stop:
            start = time.perf_counter()
            end = boundaries(step)
            phase = "adam" if step < steps else "lbfgs"
            # Rebalance and resample at the start of a block, so that a checkpoint written at
            # the end of the previous one resumes into exactly the same actions.
            if phase == "adam" and step > 0:
                if balancing == "grad_norm" and step % balance_every == 0:
                    momentum = jnp.asarray(balance_momentum, dtype)
                    weights = _balance(model, points, weights, problem, spec, momentum)
                if resample_every is not None and step % resample_every == 0:
                    points = _sample(
                        problem,
                        jax.random.fold_in(key, step),
                        num_points,
                        method,
                        dtype,
                        adaptive,
                        model,
                    )
                    points = shard(points)
            if phase == "adam":
                block = _natural_gradient_block if natural else _adam_block
                model, opt_state, loss, guard = block(
                    model,
                    opt_state,
                    points,
                    weights,
                    problem,
                    optimizer,
                    spec,
                    jnp.asarray(end - step),
                    fresh_guard(phase),
                )
            else:
                model, lbfgs_state, loss, guard = _lbfgs_block(
                    model,
                    lbfgs_state,
                    points,
                    weights,
                    problem,
                    lbfgs,
                    spec,
                    jnp.asarray(end - step),
                    fresh_guard(phase),
                )
            # One synchronisation per block; an overflowed last update is caught here.
            guard = guard.check_parameters(model, spec)
            bad = guard.first_nonfinite()
            if bad is not None and (on_nonfinite != "skip" or bad[1] in UNSKIPPABLE):
                bad_step, quantity = bad
                stop_unless_rollback(error, bad, on_nonfinite, rollbacks, max_rollbacks, lr_factor)
                rollbacks += 1
                lr_factor *= rollback_lr_factor
                delete = run_dir is not None and writer
                step, last_checkpoint, state = snapshots.target(bad_step, quantity, delete)
                model, opt_state, lbfgs_state, weights, points = state
                action = f"learning-rate factor {lr_factor:g}"
                if phase == "lbfgs":
                    lbfgs_state = init_lbfgs(model)
                    action += " and the L-BFGS memory cleared"
                history = [r for r in history if r["step"] <= step]
                if run_dir is not None and writer:
                    write_history(metrics_path, history)
                warnings.warn(
                    f"solve: non-finite {quantity} at step {bad_step}; rolled back to step "
                    f"{step} with {action} (rollback {rollbacks} of {max_rollbacks})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                skipped_since_record = 0
                bar.n = bar.last_print_n = step
                bar.refresh()
                continue
            skipped = int(guard.skipped) if on_nonfinite == "skip" else 0
            if skipped == end - step:
                raise error(*bad, f" (the first of steps {step + 1}-{end}, all skipped)")
            if skipped:
                warnings.warn(
                    f"solve: skipped {skipped} non-finite step(s) of steps {step + 1}-{end}, "
                    f"the first at step {bad[0]} ({bad[1]})",
                    RuntimeWarning,
                    stacklevel=2,
                )
            skipped_since_record += skipped
            bar.update(end - step)
            step = end
            _signals.check()
            if step % eval_every == 0 or step == total or step == steps:
                shown = "natural_gradient" if natural and phase == "adam" else phase
                record: dict[str, Any] = {"step": step, "phase": shown, "train_loss": float(loss)}
                terms = _terms(model, points, problem)
                record.update({f"loss_{k}": float(v) for k, v in terms.items()})
                record.update({f"weight_{k}": float(v) for k, v in weights.items()})
                unknowns = parameter_values(model)
                record.update(unknowns)
                if alignment:
                    aligned = align(problem, model, points, weights, filter_spec=spec)
                    record.update(alignment_record(aligned))
                if eval_set is not None:
                    record["eval_relative_l2"] = float(_error(model, problem, *eval_set)[0])
                lr = last_learning_rate(opt_state) if phase == "adam" and not natural else None
                if lr is not None:
                    record["lr"] = lr * lr_factor
                if natural and phase == "adam":
                    record["damping"] = float(opt_state)
                if lr_factor != 1.0:
                    record["lr_factor"] = lr_factor
                if skipped_since_record:
                    record["skipped_steps"] = skipped_since_record
                    skipped_since_record = 0
                record["time_s"] = time.perf_counter() - start
                history.append(record)
                if run_dir is not None and writer:
                    append_record(metrics_path, record)
                if callback is not None:
                    stop = bool(callback(model, record))
                postfix = {"loss": f"{record['train_loss']:.3e}"}
                if "eval_relative_l2" in record:
                    postfix["rel_l2"] = f"{record['eval_relative_l2']:.3e}"
                for k, v in unknowns.items():
                    if isinstance(v, float):
                        postfix[k[len("param_") :]] = f"{v:.4g}"
                bar.set_postfix(postfix, refresh=False)
            checkpoint = step % checkpoint_every == 0 or step == total or stop
            if checkpoint:
                if run_dir is not None:
                    last_checkpoint = ckpt_dir / f"ckpt_{step:08d}.eqx"
                if rollback:
                    state = (model, opt_state, lbfgs_state, weights, points)
                    snapshots.add(step, last_checkpoint, state)
            if run_dir is not None and writer and checkpoint:
                state = {
                    "model": model,
                    "opt_state": opt_state,
                    "lbfgs_state": lbfgs_state,
                    "weights": weights,
                    "points": points,
                    "key": key_data,
                }
                metadata: dict[str, Any] = {
                    "phase": phase,
                    "history_sha256": history_digest(history),
                }
                if rollback:
                    metadata.update(lr_factor=lr_factor, rollbacks=rollbacks)
                save_checkpoint(ckpt_dir, step, state, metadata=metadata, keep=keep_checkpoints)
        if run_dir is not None and history and writer:
            plot_history(history, run_dir / "plots" / "loss.png", x="step")
            if any(k.startswith("param_") for k in history[-1]):
                plot_parameters(history, run_dir / "plots" / "parameters.png", x="step")
            if 1 <= problem.domain.dim <= 3:
                _plot_field(model, problem, eval_set, run_dir / "plots" / "solution.png", dtype)
    finally:
        bar.close()
        if lock is not None:
            lock.release()
    return model, history


def _plot_field(model, problem: Problem, eval_set, path: pathlib.Path, dtype) -> None:
    """The solution (its first component for a system) with the reference and the error
    where there is one, else alone, on the evaluation points or a grid over the domain."""
    points, reference = (
        eval_set if eval_set is not None else (problem.grid_points(dtype=dtype), None)
    )
    if len(points) < 3:
        return
    prediction = np.asarray(jax.vmap(model)(points)).reshape(len(points), -1)[:, 0]
    if reference is not None:
        reference = np.asarray(reference).reshape(len(points), -1)[:, 0]
    domain = problem.domain
    plane = domain if domain.dim == 2 else getattr(domain, "space", None)
    inside = None
    if plane is not None and plane.dim == 2:
        inside = lambda c: np.asarray(jax.vmap(plane.contains)(jnp.asarray(c, points.dtype)))
    time = isinstance(domain, SpaceTime)
    labels = [f"x{i}" for i in range(domain.dim - time)] + (["t"] if time else [])
    plot_solution(points, prediction, reference, path, labels=labels, inside=inside)


def relative_error(model: Callable, problem: Problem, eval_set=None) -> float:
    """The relative L2 error of `model` on `eval_set` (default `problem.evaluation_set()`)."""
    eval_set = problem.evaluation_set() if eval_set is None else eval_set
    return float(_error(model, problem, *eval_set)[0])
