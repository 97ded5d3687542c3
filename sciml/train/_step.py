"""One optimisation step, optimiser initialisation and batched evaluation."""

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ._batching import batches, check_arrays, check_batch_size
from ._normalize import trainable_filter


def init_optimizer(
    optimizer: optax.GradientTransformation,
    model: PyTree,
    filter_spec: PyTree[bool] | None = None,
) -> optax.OptState:
    """Initialises `optimizer` over the trainable part of `model`.

    **Arguments:**

    - `optimizer`: an Optax gradient transformation.
    - `model`: the model (any pytree).
    - `filter_spec`: which leaves are trainable; default `trainable_filter(model)`
        (floating-point arrays outside normalisers).

    **Returns:**

    The optimiser state, to pass to `train_step`.
    """
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    return optimizer.init(eqx.filter(model, spec))


# Codes of `GuardState.quantity`, in the order in which a step is checked.
_QUANTITIES = ("", "loss", "gradient", "parameter update")


class NonFiniteError(FloatingPointError):
    """Training hit a NaN or an infinity: raised by `fit` and `sciml.pinn.solve` under their
    `on_nonfinite` policies.

    The message is one line naming the step, the quantity that was not finite and the last
    good checkpoint. The same facts are attributes:

    - `step`: the number (1-based, as the `step` of the records) of the first non-finite
        optimiser step.
    - `quantity`: `"loss"`, `"gradient"` or `"parameter update"` (loss and gradient were
        finite, but the update overflowed a parameter).
    - `checkpoint`: the path of the last complete checkpoint, or `None`.
    - `model`: the model training stopped with, or `None`: for a non-finite loss or gradient
        the model after step `step - 1`, bit for bit; for a non-finite parameter update the
        (non-finite) model that update produced.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        quantity: str,
        checkpoint: pathlib.Path | None = None,
        model: PyTree = None,
    ):
        super().__init__(message)
        self.step = step
        self.quantity = quantity
        self.checkpoint = checkpoint
        self.model = model


def nonfinite_error(
    who: str,
    step: int,
    quantity: str,
    *,
    checkpoint: pathlib.Path | None,
    run_dir: pathlib.Path | None,
    model: PyTree = None,
    detail: str = "",
) -> NonFiniteError:
    """The one-line `NonFiniteError` of `fit` / `solve` for a first bad step `step`."""
    if checkpoint is not None:
        where = f"last good checkpoint: {checkpoint}"
    elif run_dir is not None:
        where = f"no checkpoint had been written to {run_dir} yet"
    else:
        where = "no checkpoint (run_dir=None)"
    message = (
        f"{who}: non-finite {quantity} (NaN or Inf) at step {step}{detail}; nothing from that "
        f"step on was written; {where}"
    )
    return NonFiniteError(message, step=step, quantity=quantity, checkpoint=checkpoint, model=model)


class GuardState(eqx.Module):
    """The device-side record of non-finite steps that `train_step(..., guard=...)` carries.

    Create it with `init_guard`. Every field is a scalar array, so a guarded loop needs no
    host synchronisation: read the fields (e.g. with `first_nonfinite`) where the loop
    synchronises anyway, e.g. once per epoch.

    **Fields:**

    - `steps`: optimiser steps taken so far (applied or skipped).
    - `applied`: whether the last step was applied.
    - `skipped`: steps not applied.
    - `first_bad`: the number (1-based: the value of `steps` after it) of the first
        non-finite step; a non-finite parameter update replaces an earlier (skipped) entry.
    - `quantity`: what was non-finite at `first_bad`: 0 (nothing yet), 1 (loss), 2
        (gradient), 3 (parameter update, or with `first_bad == 0` the initial parameters: no
        step is applied after it).
    - `lr_factor`: a factor on every update (lowering the learning rate, for any optimiser),
        or `None` for none.
    - `sticky`: if true, no step after the first non-finite one is applied (the parameters
        stay those before it); if false, only non-finite steps are skipped.
    """

    steps: Int[Array, ""]
    applied: Bool[Array, ""]
    skipped: Int[Array, ""]
    first_bad: Int[Array, ""]
    quantity: Int[Array, ""]
    lr_factor: Float[Array, ""] | None
    sticky: bool = eqx.field(static=True)

    def check_parameters(
        self, model: PyTree, filter_spec: PyTree[bool] | None = None
    ) -> "GuardState":
        """Records non-finite trainable parameters of `model` as a non-finite parameter update
        at step `steps`: for the end of a guarded loop, where no next step tests the last
        update (JIT-compiled; no synchronisation).

        **Arguments:**

        - `model`: the model after the last step.
        - `filter_spec`: trainable leaves; default `trainable_filter(model)`.

        **Returns:**

        The updated guard.
        """
        spec = trainable_filter(model) if filter_spec is None else filter_spec
        return _check_params(self, eqx.filter(model, spec))

    def first_nonfinite(self) -> tuple[int, str] | None:
        """`(step, quantity)` of the first non-finite step (quantity `"loss"`, `"gradient"`,
        `"parameter update"` or, at step 0, `"initial parameters"`), or `None`
        (synchronises with the device)."""
        quantity, first = int(self.quantity), int(self.first_bad)
        if quantity == 0:
            return None
        if quantity == 3 and first == 0:
            return 0, "initial parameters"
        return first, _QUANTITIES[quantity]


def init_guard(
    steps: int = 0, *, sticky: bool = True, lr_factor: float | None = None
) -> GuardState:
    """A fresh `GuardState` for `train_step(..., guard=...)`.

    **Arguments:**

    - `steps`: the number of steps already taken (e.g. when resuming), so that
        `first_bad` counts steps like the records of `fit`.
    - `sticky`: stop applying steps after the first non-finite one (for "stop" or "roll
        back" policies) rather than only skipping non-finite steps.
    - `lr_factor`: multiply every update by this factor (default: no factor).

    **Returns:**

    The `GuardState`.
    """
    zero = jnp.zeros((), jnp.int32)
    factor = None if lr_factor is None else jnp.asarray(lr_factor, jnp.result_type(float))
    return GuardState(
        steps=jnp.asarray(steps, jnp.int32),
        applied=jnp.asarray(True),
        skipped=zero,
        first_bad=zero,
        quantity=zero,
        lr_factor=factor,
        sticky=sticky,
    )


def _all_finite(tree: PyTree) -> Bool[Array, ""]:
    # One reduction per leaf (local to each device under sharding; XLA fuses the reductions of
    # equally shaped leaves), then a scalar `all`.
    leaves = [jnp.isfinite(x).all() for x in jtu.tree_leaves(tree) if eqx.is_array(x)]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def _select(pred: Bool[Array, ""], on_true: PyTree, on_false: PyTree) -> PyTree:
    return jtu.tree_map(
        lambda a, b: jnp.where(pred, a, b) if eqx.is_array(a) else a, on_true, on_false
    )


def _flag_params(guard: GuardState, params: PyTree) -> GuardState:
    """Records non-finite `params` as a non-finite parameter update at step `guard.steps`
    (the step that produced them)."""
    broken = ~_all_finite(params) & (guard.quantity != 3)
    return eqx.tree_at(
        lambda g: (g.first_bad, g.quantity),
        guard,
        (jnp.where(broken, guard.steps, guard.first_bad), jnp.where(broken, 3, guard.quantity)),
    )


_check_params = eqx.filter_jit(_flag_params)


def guarded_update(
    guard: GuardState,
    loss: Array,
    grads: PyTree,
    params: PyTree,
    new_params: PyTree,
    state: PyTree,
    new_state: PyTree,
) -> tuple[PyTree, PyTree, GuardState]:
    """Keeps `(new_params, new_state)` if loss and gradient are finite (and the guard allows
    another step), else `(params, state)`, bit for bit."""
    # Everything the decision needs is known before the optimiser's update, so XLA fuses the
    # select into the update's own kernels: the guard costs one reduction per leaf (gradient
    # and parameters side by side) and a few scalar operations, no host synchronisation. A
    # `lax.cond` would save nothing (the gradient is needed for the test) and costs a
    # device-to-host predicate copy per step on GPUs. Testing the new parameters before
    # applying them would split every select into a kernel of its own (measured on an H100:
    # +5 to 10% per FNO step), so an update that overflows is caught by the next step's
    # test of its input parameters (or by `check_parameters` where a loop synchronises): it is
    # applied, and no step after it is.
    guard = _flag_params(guard, params)
    code = jnp.where(~jnp.isfinite(loss).all(), 1, jnp.where(~_all_finite(grads), 2, 0))
    none_yet = guard.quantity == 0
    ok = (code == 0) & (guard.quantity != 3)
    if guard.sticky:
        ok = ok & none_yet
    steps = guard.steps + 1
    new_bad = none_yet & (code > 0)
    guard = GuardState(
        steps=steps,
        applied=ok,
        skipped=guard.skipped + (~ok).astype(jnp.int32),
        first_bad=jnp.where(new_bad, steps, guard.first_bad),
        quantity=jnp.where(new_bad, code, guard.quantity).astype(jnp.int32),
        lr_factor=guard.lr_factor,
        sticky=guard.sticky,
    )
    return _select(ok, new_params, params), _select(ok, new_state, state), guard


@eqx.filter_jit
def train_step(
    model: PyTree,
    opt_state: optax.OptState,
    batch: tuple[PyTree[ArrayLike], PyTree[ArrayLike]],
    *,
    loss_fn: Callable[[PyTree, PyTree[ArrayLike], PyTree[ArrayLike]], Float[Array, ""]],
    optimizer: optax.GradientTransformation,
    filter_spec: PyTree[bool] | None = None,
    guard: GuardState | None = None,
) -> (
    tuple[PyTree, optax.OptState, Float[Array, ""]]
    | tuple[PyTree, optax.OptState, Float[Array, ""], GuardState]
):
    """One optimiser step on one batch (JIT-compiled with `eqx.filter_jit`).

    The model is split with `eqx.partition(model, filter_spec)` into trainable parameters
    and the rest; only the former are differentiated and updated.

    **Non-finite guard.** With `guard` (from `init_guard`) the step is applied only if the
    loss and every gradient are finite; otherwise the model and optimiser state are returned
    unchanged (bit for bit) and the guard records the step and what was non-finite. The
    checks are reductions inside the compiled step: no host synchronisation. Non-finite
    input parameters (an update that overflowed) are recorded as a non-finite parameter
    update at the previous step, and no step is applied to them. A guard with `lr_factor`
    also multiplies the update by it.

    **Arguments:**

    - `model`: the model.
    - `opt_state`: from `init_optimizer(optimizer, model, filter_spec)`.
    - `batch`: `(x, y)` with a leading batch axis.
    - `loss_fn`: `loss_fn(model, x, y) -> scalar`, e.g. `batch_loss(relative_l2)`.
    - `optimizer`: an Optax gradient transformation. It is a static argument: create it
        once and reuse the same object, or every call recompiles.
    - `filter_spec`: trainable leaves; default `trainable_filter(model)`.
    - `guard`: a `GuardState`, or `None` for an unguarded step.

    **Returns:**

    `(model, opt_state, loss)`: the updated model and state, and the loss *before* the
    update; with `guard`, `(model, opt_state, loss, guard)` with the updated guard. The
    inputs are not donated, so earlier models (e.g. a best model) stay valid.
    """
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    params, static = eqx.partition(model, spec)
    x, y = batch

    def loss_of(params: PyTree) -> Array:
        return loss_fn(eqx.combine(params, static), x, y)

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, new_state = optimizer.update(grads, opt_state, params)
    if guard is None:
        params = eqx.apply_updates(params, updates)
        return eqx.combine(params, static), new_state, loss
    if guard.lr_factor is not None:
        factor = guard.lr_factor
        updates = jtu.tree_map(lambda u: u * factor.astype(u.dtype), updates)
    new_params = eqx.apply_updates(params, updates)
    params, opt_state, guard = guarded_update(
        guard, loss, grads, params, new_params, opt_state, new_state
    )
    return eqx.combine(params, static), opt_state, loss, guard


@eqx.filter_jit
def _metric_sums(
    model: PyTree, x: Array, y: Array, metrics: Mapping[str, Callable[[Array, Array], Array]]
) -> dict[str, Array]:
    pred = jax.vmap(model)(x)
    return {name: jnp.sum(jax.vmap(metric)(pred, y)) for name, metric in metrics.items()}


def evaluate(
    model: PyTree,
    data: Sequence[Any],
    metrics: Mapping[str, Callable[[Array, Array], Array]],
    *,
    batch_size: int,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Mean of per-sample metrics over a dataset, batch by batch.

    **Arguments:**

    - `model`: acts on ONE sample; it is `jax.vmap`-ed over each batch.
    - `data`: `(inputs, targets)` host arrays (NumPy or h5py) with a leading sample axis.
    - `metrics`: maps a name to a per-sample metric `metric(pred, target) -> scalar`,
        e.g. `{"relative_l2": relative_l2}`.
    - `batch_size`: samples per evaluation batch (memory only: the result does not depend
        on it, apart from floating-point rounding).
    - `mesh`: a device mesh (`make_mesh`): each batch is split over its `"data"` axis.

    **Returns:**

    A dict mapping each name to the mean of its metric over all samples (a Python float).
    Batch sums are accumulated, so a last partial batch is weighted by its size.
    """
    data = check_arrays(data, "data")
    if len(data) != 2:
        raise ValueError(f"`data` must be a pair (inputs, targets), got {len(data)} arrays.")
    batch_size = check_batch_size(batch_size)
    metrics = dict(metrics)
    n = int(data[0].shape[0])
    if n == 0:
        raise ValueError("`data` must contain at least one sample, got 0.")
    # Keep the per-batch sums on the device until the end (no host sync per batch), then
    # add them up in float64 on the host.
    per_batch = [
        _metric_sums(model, x, y, metrics) for x, y in batches(data, batch_size, mesh=mesh)
    ]
    return {name: sum(float(s[name]) for s in per_batch) / n for name in metrics}
