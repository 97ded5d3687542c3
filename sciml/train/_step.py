"""One optimisation step, optimiser initialisation and batched evaluation."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float, PyTree

from ._batching import _check_arrays, _check_batch_size, batches
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


@eqx.filter_jit
def train_step(
    model: PyTree,
    opt_state: optax.OptState,
    batch: tuple[Array, Array],
    *,
    loss_fn: Callable[[PyTree, Array, Array], Float[Array, ""]],
    optimizer: optax.GradientTransformation,
    filter_spec: PyTree[bool] | None = None,
) -> tuple[PyTree, optax.OptState, Float[Array, ""]]:
    """One optimiser step on one batch (JIT-compiled with `eqx.filter_jit`).

    The model is split with `eqx.partition(model, filter_spec)` into trainable parameters
    and the rest; only the former are differentiated and updated.

    **Arguments:**

    - `model`: the model.
    - `opt_state`: from `init_optimizer(optimizer, model, filter_spec)`.
    - `batch`: `(x, y)` with a leading batch axis.
    - `loss_fn`: `loss_fn(model, x, y) -> scalar`, e.g. `batch_loss(relative_l2)`.
    - `optimizer`: an Optax gradient transformation. It is a static argument: create it
        once and reuse the same object, or every call recompiles.
    - `filter_spec`: trainable leaves; default `trainable_filter(model)`.

    **Returns:**

    `(model, opt_state, loss)`: the updated model and state, and the loss *before* the
    update. The inputs are not donated, so earlier models (e.g. a best model) stay valid.
    """
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    params, static = eqx.partition(model, spec)
    x, y = batch

    def loss_of(params: PyTree) -> Array:
        return loss_fn(eqx.combine(params, static), x, y)

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = eqx.apply_updates(params, updates)
    return eqx.combine(params, static), opt_state, loss


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
    data = _check_arrays(data, "data")
    if len(data) != 2:
        raise ValueError(f"`data` must be a pair (inputs, targets), got {len(data)} arrays.")
    batch_size = _check_batch_size(batch_size)
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
