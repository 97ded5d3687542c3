"""Per-sample losses and the batch-loss convention used by `train_step` and `fit`."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


def safe_sqrt(x: Array) -> Array:
    # sqrt has an infinite derivative at 0, which would turn the gradient of a loss into NaN
    # exactly when the prediction is perfect. Use the double-`where` trick so the gradient there
    # is 0 instead. Only an exact 0 is special: a NaN stays NaN, so that a NaN prediction
    # shows in the loss (and is caught by the non-finite guard there), not only in gradients.
    zero = x == 0
    return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, x)))


def same_shape(fn_name: str, pred, target) -> tuple[Array, Array]:
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"`{fn_name}` needs `pred` and `target` of the same shape, got {pred.shape} and "
            f"{target.shape}."
        )
    return pred, target


def relative_l2(
    pred: Float[ArrayLike, "*shape"], target: Float[ArrayLike, "*shape"]
) -> Float[Array, ""]:
    """Relative L2 error of ONE sample, `||pred - target|| / ||target||`.

    The norms are Euclidean norms over all axes (channels and grid points), as in the FNO
    code. Use `jax.vmap` (or [`sciml.train.batch_loss`][]) for a batch.

    **Arguments:**

    - `pred`: the prediction.
    - `target`: the reference, of the same shape. Must not be identically zero.

    **Returns:**

    A scalar. Its gradient is finite (zero) at `pred == target`.
    """
    pred, target = same_shape("relative_l2", pred, target)
    return safe_sqrt(jnp.sum((pred - target) ** 2)) / jnp.sqrt(jnp.sum(target**2))


def mse(pred: Float[ArrayLike, "*shape"], target: Float[ArrayLike, "*shape"]) -> Float[Array, ""]:
    """Mean squared error of ONE sample over all axes (the DeepONet paper's training loss).

    **Arguments:**

    - `pred`: the prediction.
    - `target`: the reference, of the same shape.

    **Returns:**

    A scalar.
    """
    pred, target = same_shape("mse", pred, target)
    return jnp.mean((pred - target) ** 2)


def _gradient(f: Array, axis: int, h: float) -> Array:
    """Second-order finite-difference derivative of `f` along `axis` on a uniform grid.

    Central differences in the interior, second-order one-sided differences at both ends
    (`numpy.gradient(..., edge_order=2)`), so the error is O(h^2) everywhere.
    """
    n = f.shape[axis]
    sl = lambda start, stop: jax.lax.slice_in_dim(f, start, stop, axis=axis)
    interior = (sl(2, n) - sl(0, n - 2)) / (2 * h)
    first = (-3 * sl(0, 1) + 4 * sl(1, 2) - sl(2, 3)) / (2 * h)
    last = (3 * sl(n - 1, n) - 4 * sl(n - 2, n - 1) + sl(n - 3, n - 2)) / (2 * h)
    return jnp.concatenate([first, interior, last], axis=axis)


def _periodic_gradient(f: Array, axis: int, h: float) -> Array:
    """Second-order central difference along a periodic `axis` (the grid wraps around)."""
    return (jnp.roll(f, -1, axis=axis) - jnp.roll(f, 1, axis=axis)) / (2 * h)


def _trapezoid_weights(
    shape: Sequence[int], spacing: Sequence[float], periodic: Sequence[bool]
) -> np.ndarray:
    """Tensor-product trapezoid-rule weights: h/2 on the end nodes of a node-grid axis, h
    everywhere on a periodic axis (where the trapezoid rule is the rectangle rule, spectrally
    accurate for smooth periodic functions).

    Built with NumPy: the shapes are static, so this is a compile-time constant.
    """
    weights = np.ones(())
    for n, h, wrap in zip(shape, spacing, periodic, strict=True):
        w = np.full((n,), h)
        if not wrap:
            w[0] = w[-1] = h / 2
        weights = weights[..., None] * w
    return weights


def h1_loss(
    pred: Float[ArrayLike, " channels *spatial"],
    target: Float[ArrayLike, " channels *spatial"],
    *,
    spacing: float | Sequence[float] | None = None,
    periodic: bool | Sequence[bool] = False,
    relative: bool = True,
) -> Float[Array, ""]:
    """(Relative) H1 error of ONE sample, channels first.

    With `e = pred - target` and `t = target`,

    `relative=True`: `sqrt(||e||^2 + ||grad e||^2) / sqrt(||t||^2 + ||grad t||^2)`,

    `relative=False`: `sqrt(||e||^2 + ||grad e||^2)`,

    where `||u||^2 = sum_c ∫ u_c^2 dx` and `||grad u||^2 = sum_c sum_i ∫ (d u_c / d x_i)^2 dx`.

    **Discretisation.** The fields are taken to be sampled on a uniform *node* grid that
    includes both ends of every axis (the grid of `sciml.data.darcy_solve`). Derivatives use
    second-order finite differences (central in the interior, second-order one-sided at the
    ends, like `numpy.gradient(..., edge_order=2)`), and the integrals use the trapezoid rule,
    so for smooth fields the discrete norms converge to the continuous ones at second order.
    The default `spacing` is `1 / (n - 1)` along an axis with `n` points, i.e. the unit
    domain `[0, 1]^d`.

    On a periodic axis (`periodic=True`: the grid `x_j = j / n` of `[0, 1)`, as in the
    Burgers and Navier-Stokes data) the derivative is the central difference that wraps
    around and the integral the rectangle rule; the default spacing there is `1 / n`.

    **Arguments:**

    - `pred`: prediction, shape `(channels, *spatial)` with 1 to 3 spatial axes each of at
        least 3 points.
    - `target`: reference of the same shape.
    - `spacing`: grid spacing; `None` (unit domain, see above), one float for all axes, or
        one float per spatial axis.
    - `periodic`: whether the axes are periodic; one bool for all axes or one per axis.
    - `relative`: divide by the H1 norm of `target` (default) or return the absolute error.

    **Returns:**

    A scalar.
    """
    pred, target = same_shape("h1_loss", pred, target)
    if pred.ndim < 2:
        raise ValueError(
            f"`h1_loss` needs arrays of shape (channels, *spatial) with at least one spatial "
            f"axis, got shape {pred.shape}."
        )
    spatial = pred.shape[1:]
    if min(spatial) < 3:
        raise ValueError(
            f"`h1_loss` needs at least 3 points along every spatial axis for second-order "
            f"differences, got spatial shape {spatial}."
        )
    if isinstance(periodic, bool):
        wraps = (periodic,) * len(spatial)
    else:
        wraps = tuple(bool(p) for p in periodic)
        if len(wraps) != len(spatial):
            raise ValueError(
                f"`h1_loss` got `periodic` with {len(wraps)} entries for {len(spatial)} spatial "
                "axes; pass one bool or one per spatial axis."
            )
    if spacing is None:
        hs = tuple(
            1.0 / n if wrap else 1.0 / (n - 1) for n, wrap in zip(spatial, wraps, strict=True)
        )
    elif isinstance(spacing, int | float):
        hs = (float(spacing),) * len(spatial)
    else:
        hs = tuple(float(h) for h in spacing)
        if len(hs) != len(spatial):
            raise ValueError(
                f"`h1_loss` got `spacing` with {len(hs)} entries for {len(spatial)} spatial "
                "axes; pass one float or one per spatial axis."
            )
    if any(h <= 0 for h in hs):
        raise ValueError(f"`h1_loss` needs a positive `spacing`, got {spacing}.")
    weights = jnp.asarray(_trapezoid_weights(spatial, hs, wraps), dtype=pred.dtype)

    def squared_h1(u: Array) -> Array:
        total = jnp.sum(weights * u**2)
        for axis, (h, wrap) in enumerate(zip(hs, wraps, strict=True), start=1):
            derivative = _periodic_gradient if wrap else _gradient
            total = total + jnp.sum(weights * derivative(u, axis, h) ** 2)
        return total

    error = safe_sqrt(squared_h1(pred - target))
    if relative:
        return error / jnp.sqrt(squared_h1(target))
    return error


def batch_loss(
    metric: Callable[[Array, Array], Array],
) -> Callable[[Any, ArrayLike, ArrayLike], Float[Array, ""]]:
    """Turns a per-sample metric into the batch loss used by `train_step` and `fit`.

    **Arguments:**

    - `metric`: `metric(pred, target) -> scalar` for ONE sample, e.g. `relative_l2`, or
        `functools.partial(h1_loss, spacing=...)`.

    **Returns:**

    `loss_fn(model, x, y)`: the mean over the batch of `metric(model(x[i]), y[i])`, with
    `model` applied through `jax.vmap`.
    """

    def loss_fn(model: Any, x: ArrayLike, y: ArrayLike) -> Float[Array, ""]:
        return jnp.mean(jax.vmap(metric)(jax.vmap(model)(x), y))

    return loss_fn
