"""`solve`: train a model on a `Problem`, Adam then L-BFGS, from the pieces of `sciml.train`."""

import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._progress import progress_bar
from ..train import (
    init_optimizer,
    latest_checkpoint,
    plot_history,
    plot_solution,
    replicate,
    restore_checkpoint,
    save_checkpoint,
    shard_batch,
    shard_params,
    train_step,
    trainable_filter,
)
from ..train._fit import _append_record, _learning_rate, _read_history, _write_history
from ..train._sharding import is_writer, shard_like, sync
from ._adaptive import grad_norm_weights, rad_resample
from ._problem import RESIDUAL, Problem

BALANCING = ("fixed", "grad_norm")


def _positive(name: str, value: Any, allow_zero: bool = False) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be a {kind} integer, got {value!r}.")
    return int(value)


def _strong(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype) if eqx.is_array(x) else x, tree)


def _pinn_loss(problem: Problem) -> Callable:
    # `train_step` calls `loss_fn(model, x, y)`: here x = points by term, y = weights by term.
    def loss_fn(model, points, weights):
        return problem.loss(model, points, weights)

    return loss_fn


@eqx.filter_jit
def _adam_block(model, opt_state, points, weights, problem, optimizer, filter_spec, n: Array):
    """`n` first-order steps on fixed points in one compiled loop (`n` is traced, so blocks of
    any length share one compilation). Returns the mean loss over the block."""
    loss_fn = _pinn_loss(problem)
    params, static = eqx.partition(model, filter_spec)

    def body(_, carry):
        p, s, total = carry
        m, s, loss = train_step(
            eqx.combine(p, static),
            s,
            (points, weights),
            loss_fn=loss_fn,
            optimizer=optimizer,
            filter_spec=filter_spec,
        )
        return eqx.filter(m, filter_spec), s, total + loss

    zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(weights)))
    params, opt_state, total = jax.lax.fori_loop(0, n, body, (params, opt_state, zero))
    return eqx.combine(params, static), opt_state, total / n


@eqx.filter_jit
def _lbfgs_block(model, state, points, weights, problem, optimizer, filter_spec, n: Array):
    """`n` L-BFGS iterations (Optax, zoom line search) on fixed points, one compiled loop."""
    params, static = eqx.partition(model, filter_spec)

    def value_fn(p):
        return problem.loss(eqx.combine(p, static), points, weights)

    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def body(_, carry):
        p, s, total = carry
        value, grad = value_and_grad(p, state=s)
        updates, s = optimizer.update(grad, s, p, value=value, grad=grad, value_fn=value_fn)
        return optax.apply_updates(p, updates), s, total + value

    zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(weights)))
    params, state, total = jax.lax.fori_loop(0, n, body, (params, state, zero))
    return eqx.combine(params, static), state, total / n


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
    optimizer: optax.GradientTransformation | None = None,
    method: str | Mapping[str, str] = "uniform",
    resample_every: int | None = None,
    adaptive: Mapping[str, float] | None = None,
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
    mesh: Mesh | None = None,
) -> tuple[PyTree, list[dict[str, Any]]]:
    """Trains `model` to solve `problem`: `steps` first-order steps, then `lbfgs_steps` L-BFGS
    iterations.

    Built from public pieces: `Problem.sample` / `Problem.loss`, `sciml.train.train_step`
    (fused `eval_every`-long runs of it in one `lax.scan`), `grad_norm_weights`,
    `rad_resample`, Optax's `lbfgs`, and the checkpoints and plots of `sciml.train`.

    **Schedule.** Steps run in blocks on fixed points; a block ends at every multiple of
    `eval_every`, `resample_every`, `balance_every` (with `balancing="grad_norm"`) and
    `checkpoint_every`. After a block: points are redrawn (`resample_every`; by
    `Problem.sample` with key `fold_in(key, step)`, and the residual points by RAD when
    `adaptive` is given), weights rebalanced, the run evaluated and recorded, and checkpointed.
    L-BFGS runs on the last points, with the last weights, in blocks of `eval_every`.

    **Precision.** Points take `dtype` (default: JAX's default float). For a float64 run,
    enable `jax.config.update("jax_enable_x64", True)` first and build the model in float64;
    L-BFGS in particular profits from it.

    **Arguments:**

    - `problem`: the `Problem`.
    - `model`: a function of one point (e.g. `sciml.fields.MLP`, `PIG`, or a
        `HardConstraint` around one).
    - `key`: PRNG key for the points.
    - `steps`: first-order steps (0 for L-BFGS only).
    - `num_points`: points per loss term (`problem.terms`); may be omitted with `points`.
    - `points`: the first point sets, by term (e.g. read from a file); default: sampled.
        Without `resample_every` they are used for the whole run.
    - `learning_rate`: Adam's learning rate or an Optax schedule (ignored with `optimizer`).
    - `optimizer`: any Optax transformation instead of Adam.
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
        (`checkpoints/ckpt_*.eqx`), `plots/loss.png` and `plots/solution.png`.
    - `checkpoint_every`: steps between checkpoints (default `eval_every`).
    - `keep_checkpoints`: checkpoints kept.
    - `resume`: continue from the newest checkpoint of `run_dir` (points, weights and both
        optimiser states are restored, so the run continues exactly).
    - `progress`: a progress bar.
    - `filter_spec`: trainable leaves (default `trainable_filter(model)`).
    - `callback`: `callback(model, record)` after each record; truthy return stops.
    - `mesh`: solve on several devices (`sciml.train.make_mesh()`): the points of every term
        are split along their leading axis over the mesh's `"data"` axis
        (`sciml.train.shard_batch`; a term whose point count the axis does not divide is
        replicated), the model and optimiser states are replicated (`shard_params`). Equal
        to the single-device solve up to floating-point rounding. With several processes
        only process 0 writes to `run_dir`.

    **Returns:** `(model, history)`; records hold `step`, `phase` (`"adam"` or `"lbfgs"`),
    `train_loss` (mean over the block), `loss_<term>` and `weight_<term>` at its end,
    `eval_relative_l2`, `lr` where known and `time_s`.
    """
    steps = _positive("steps", steps, allow_zero=True)
    lbfgs_steps = _positive("lbfgs_steps", lbfgs_steps, allow_zero=True)
    if steps + lbfgs_steps == 0:
        raise ValueError("`solve` needs `steps` or `lbfgs_steps` > 0, got both 0.")
    eval_every = _positive("eval_every", eval_every)
    checkpoint_every = _positive("checkpoint_every", checkpoint_every or eval_every)
    if resample_every is not None:
        resample_every = _positive("resample_every", resample_every)
    if balancing not in BALANCING:
        raise ValueError(f"`balancing` must be one of {BALANCING}, got {balancing!r}.")
    balance_every = _positive("balance_every", balance_every)
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
    if points is not None:
        if sorted(points) != sorted(problem.terms):
            raise ValueError(
                f"`points` must have exactly the keys {list(problem.terms)}, got {list(points)}."
            )
        for name, x in points.items():
            if jnp.ndim(x) != 2 or jnp.shape(x)[1] != problem.domain.dim:
                raise ValueError(
                    f"`points[{name!r}]` must have shape (n, {problem.domain.dim}), got "
                    f"{jnp.shape(x)}."
                )
        given = {name: int(jnp.shape(x)[0]) for name, x in points.items()}
        if num_points is not None and dict(num_points) != given:
            raise ValueError(
                f"`num_points` = {dict(num_points)} disagrees with `points` ({given})."
            )
        num_points = given
    elif num_points is None:
        raise ValueError("`solve` needs `num_points` or `points`.")

    dtype = jnp.zeros((), dtype).dtype
    weights = {name: jnp.asarray(weights.get(name, 1.0), dtype) for name in problem.terms}
    if optimizer is None:
        optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    lbfgs = optax.lbfgs(memory_size=lbfgs_memory)
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    # Strong types from the start: a weakly typed scalar in an optimiser state would come back
    # strongly typed from the first block and make the second one compile again.
    opt_state = _strong(init_optimizer(optimizer, model, spec))
    lbfgs_state = _strong(lbfgs.init(eqx.filter(model, spec)))
    if eval_set is None and (problem.exact is not None or problem.reference is not None):
        eval_set = problem.evaluation_set(dtype=dtype)
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if mesh is None:
        shard = lambda tree: tree
    else:
        shard = lambda tree: shard_batch(tree, mesh)
        model, weights = shard_params(model, mesh), replicate(weights, mesh)
        # Initialised under `jit`, the optimiser states inherit the parameters' shardings.
        init = eqx.filter_jit(lambda opt, m: _strong(init_optimizer(opt, m, spec)))
        opt_state = init(optimizer, model)
        lbfgs_state = eqx.filter_jit(lambda m: _strong(lbfgs.init(eqx.filter(m, spec))))(model)

    step, history = 0, []
    first_points, points = points, None
    if run_dir is not None:
        run_dir = pathlib.Path(run_dir)
        ckpt_dir, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"
        latest = latest_checkpoint(ckpt_dir)
        if not resume and (latest is not None or metrics_path.exists()):
            raise ValueError(
                f"`run_dir` = '{run_dir}' already holds a run; pass `resume=True` or a fresh "
                "directory."
            )
        sync("sciml.pinn.solve: run_dir checked")  # no process writes before all checked
        writer = is_writer()
        run_dir.mkdir(parents=True, exist_ok=True)
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
            state, meta = restore_checkpoint(latest, like)
            if not np.array_equal(np.asarray(state["key"]), np.asarray(key_data)):
                raise ValueError(f"Cannot resume from `{latest}`: it was written with another key.")
            if mesh is not None:
                state = shard_like(state, like)
            model, opt_state = state["model"], state["opt_state"]
            lbfgs_state, weights = state["lbfgs_state"], state["weights"]
            points = shard(state["points"])
            step = int(meta["step"])
        history = [r for r in _read_history(metrics_path) if r["step"] <= step]
        sync("sciml.pinn.solve: run restored")
        if writer:
            _write_history(metrics_path, history)
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

    total = steps + lbfgs_steps
    bar = progress_bar(total=total, initial=step, disable=not progress, unit="step", desc="solve")
    stop = False
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
                model, opt_state, loss = _adam_block(
                    model,
                    opt_state,
                    points,
                    weights,
                    problem,
                    optimizer,
                    spec,
                    jnp.asarray(end - step),
                )
            else:
                model, lbfgs_state, loss = _lbfgs_block(
                    model,
                    lbfgs_state,
                    points,
                    weights,
                    problem,
                    lbfgs,
                    spec,
                    jnp.asarray(end - step),
                )
            bar.update(end - step)
            step = end
            if step % eval_every == 0 or step == total or step == steps:
                record: dict[str, Any] = {"step": step, "phase": phase, "train_loss": float(loss)}
                terms = _terms(model, points, problem)
                record.update({f"loss_{k}": float(v) for k, v in terms.items()})
                record.update({f"weight_{k}": float(v) for k, v in weights.items()})
                if eval_set is not None:
                    record["eval_relative_l2"] = float(_error(model, problem, *eval_set)[0])
                lr = _learning_rate(opt_state) if phase == "adam" else None
                if lr is not None:
                    record["lr"] = lr
                record["time_s"] = time.perf_counter() - start
                history.append(record)
                if run_dir is not None and writer:
                    _append_record(metrics_path, record)
                if callback is not None:
                    stop = bool(callback(model, record))
                postfix = {"loss": f"{record['train_loss']:.3e}"}
                if "eval_relative_l2" in record:
                    postfix["rel_l2"] = f"{record['eval_relative_l2']:.3e}"
                bar.set_postfix(postfix, refresh=False)
            checkpoint = step % checkpoint_every == 0 or step == total or stop
            if run_dir is not None and writer and checkpoint:
                state = {
                    "model": model,
                    "opt_state": opt_state,
                    "lbfgs_state": lbfgs_state,
                    "weights": weights,
                    "points": points,
                    "key": key_data,
                }
                save_checkpoint(
                    ckpt_dir, step, state, metadata={"phase": phase}, keep=keep_checkpoints
                )
    finally:
        bar.close()

    if run_dir is not None and history and writer:
        plot_history(history, run_dir / "plots" / "loss.png", x="step")
        if eval_set is not None and 1 <= problem.domain.dim <= 3:
            pred = _error(model, problem, *eval_set)[1]
            plot_solution(eval_set[0], pred, eval_set[1], run_dir / "plots" / "solution.png")
    return model, history


def relative_error(model: Callable, problem: Problem, eval_set=None) -> float:
    """The relative L2 error of `model` on `eval_set` (default `problem.evaluation_set()`)."""
    eval_set = problem.evaluation_set() if eval_set is None else eval_set
    return float(_error(model, problem, *eval_set)[0])
