r"""Pieces for inverse problems through sciml's differentiable solvers.

An inverse problem is written as an ordinary JAX loss,
`misfit(observe(solve(params), points), values) + beta * penalty(params)`, and minimised with
any Optax optimiser; [`minimize_lbfgs`][] runs Optax's L-BFGS to convergence in one compiled
loop. The grid functions here use the node grid of [`darcy_solve`][] and of `grf` with
`boundary="dirichlet"` / `"neumann"`: $x_i = i / (s - 1)$, $i = 0, \dots, s - 1$, per axis
of the unit cube $[0, 1]^d$ (both ends included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._validate import ArgumentError, check_int
from ._checks import check_real


def _check_field(field, *, minimum: int = 2):
    field = jnp.asarray(field)
    if field.ndim == 0 or any(n < minimum for n in field.shape):
        raise ArgumentError(
            f"`field` must be an array of node values with at least one axis and every size "
            f">= {minimum}, got shape {field.shape}.",
            argument="field",
        )
    if not jnp.issubdtype(field.dtype, jnp.floating):
        field = field.astype(jnp.result_type(float))
    return field


def observe(
    field: Float[ArrayLike, "*spatial"], points: Float[ArrayLike, "n dim"]
) -> Float[Array, " n"]:
    r"""Samples a grid field at measurement points by multilinear interpolation.

    The observation operator of an inverse problem on a grid: bilinear in 2-D (trilinear in
    3-D, linear in 1-D), hence exact for functions that are linear along each axis (e.g.
    $1 + 2x - y + 3xy$), second-order accurate for smooth fields, and linear in `field`
    (so its adjoint is the scatter of the residuals, as `jax.grad` computes).

    **Arguments:**

    - `field`: values at the nodes $x_i = i / (s_k - 1)$ of $[0, 1]^d$, shape
      $(s_1, \dots, s_d)$, every $s_k \ge 2$.
    - `points`: measurement points, shape `(n, d)`, inside $[0, 1]^d$ (checked with
      `equinox.error_if`).

    **Returns:**

    The interpolated values, shape `(n,)`.
    """
    field = _check_field(field)
    points = jnp.asarray(points, field.dtype)
    if points.ndim != 2 or points.shape[1] != field.ndim:
        raise ArgumentError(
            f"`points` must have shape (n, {field.ndim}) for a field with {field.ndim} axes, "
            f"got shape {points.shape}.",
            argument="points",
        )
    slack = 10 * jnp.finfo(field.dtype).eps
    outside = jnp.any((points < -slack) | (points > 1 + slack))
    points = eqx.error_if(points, outside, "`points` must lie inside the unit cube [0, 1]^d.")
    sizes = jnp.asarray(field.shape, field.dtype) - 1
    coordinates = jnp.clip(points, 0, 1) * sizes  # fractional node indices
    return jax.scipy.ndimage.map_coordinates(field, list(coordinates.T), order=1, mode="nearest")


def _trapezoid_weights(n: int, dtype) -> Array:
    # Trapezoid rule on the nodes i / (n - 1): h at interior nodes, h / 2 at the two ends.
    w = jnp.full((n,), 1.0 / (n - 1), dtype)
    return w.at[0].divide(2).at[-1].divide(2)


def _weighted_sum(values, weights_per_axis):
    # sum_i values[i] * prod_k w_k[i_k], one contraction for any number of axes.
    out = values
    for w in reversed(weights_per_axis):
        out = out @ w
    return out


def l2_penalty(field: Float[ArrayLike, "*spatial"]) -> Float[Array, ""]:
    r"""Tikhonov (zeroth-order) penalty $\int_{[0,1]^d} m^2\,dx$ of a node field $m$.

    Trapezoid rule on the node grid $x_i = i / (s_k - 1)$: exact when $m^2$ is linear along
    each axis (e.g. constant $m$), second-order accurate for smooth fields. Penalise the
    distance to a prior mean with `l2_penalty(m - m_prior)`.
    """
    field = _check_field(field)
    weights = [_trapezoid_weights(n, field.dtype) for n in field.shape]
    return _weighted_sum(field**2, weights)


def h1_penalty(field: Float[ArrayLike, "*spatial"]) -> Float[Array, ""]:
    r"""Squared $H^1$ seminorm $\int_{[0,1]^d} |\nabla m|^2\,dx$ of a node field $m$.

    The smoothing (first-order Tikhonov) regulariser. Each partial derivative is a forward
    difference $(m_{i+1} - m_i) / h_k$ on the edges along axis $k$, squared, summed with
    weight $h_k$ along that axis and trapezoid weights along the others; exact for fields
    linear along each axis and constant across the others (e.g. $m = a + b x$ gives $b^2$), and
    second-order accurate for smooth fields. Equivalent to $m^T (-\Delta_h) m$ with the
    natural (Neumann) boundary, so it leaves constants free.
    """
    field = _check_field(field)
    total = jnp.zeros((), field.dtype)
    for axis, n in enumerate(field.shape):
        h = 1.0 / (n - 1)
        slope = jnp.diff(field, axis=axis) / h
        weights = [
            jnp.full((n - 1,), h, field.dtype) if k == axis else _trapezoid_weights(m, field.dtype)
            for k, m in enumerate(field.shape)
        ]
        total = total + _weighted_sum(slope**2, weights)
    return total


def tv_penalty(field: Float[ArrayLike, "*spatial"], *, eps: float = 1e-3) -> Float[Array, ""]:
    r"""Smoothed isotropic total variation $\int_{[0,1]^d} \sqrt{|\nabla m|^2 + \epsilon^2}\,dx$.

    The edge-preserving regulariser for piecewise-constant unknowns. The gradient in each cell
    $[x_i, x_{i+1}]$ (per axis) is taken from the forward differences at its lower corner,
    $\partial_k m \approx (m_{i + e_k} - m_i) / h_k$, and the cells are summed with weight
    $\prod_k h_k$. Exact for linear $m$ at `eps = 0` (e.g. $m = a + b x$ gives $|b|$).

    **Arguments:**

    - `field`: node values, every size >= 2.
    - `eps`: smoothing, >= 0, in the units of $|\nabla m|$: it makes the penalty
      differentiable where $\nabla m = 0$ (at `eps = 0` the gradient there is NaN). Choose it
      well below the gradients to be preserved.
    """
    field = _check_field(field)
    eps = check_real("eps", eps, nonnegative=True)
    corner = tuple(slice(0, n - 1) for n in field.shape)
    squared = jnp.zeros(tuple(n - 1 for n in field.shape), field.dtype)
    for axis, n in enumerate(field.shape):
        slope = jnp.diff(field, axis=axis) * (n - 1)
        squared = squared + slope[corner] ** 2
    cell = 1.0
    for n in field.shape:
        cell /= n - 1
    return cell * jnp.sum(jnp.sqrt(squared + eps**2))


class LBFGSInfo(NamedTuple):
    """What [`minimize_lbfgs`][] reports: the final loss `value`, the norm of its gradient
    `grad_norm` and the number of L-BFGS iterations `num_steps`."""

    value: Float[Array, ""]
    grad_norm: Float[Array, ""]
    num_steps: Int[Array, ""]


def minimize_lbfgs(
    fun: Callable[[Any], Any],
    params: PyTree,
    *,
    max_steps: int = 500,
    tol: float = 1e-8,
    memory_size: int = 10,
) -> tuple[PyTree, LBFGSInfo]:
    r"""Minimises a scalar loss with Optax's L-BFGS (zoom line search) in one compiled loop.

    A thin, reusable loop around `optax.lbfgs` and `optax.value_and_grad_from_state` (which
    reuses the line search's last evaluation), stopped by `jax.lax.while_loop`; write your own
    loop from the same pieces to log or checkpoint each step.

    **Arguments:**

    - `fun`: the loss, `params -> scalar`, traceable by JAX (e.g. a misfit through
      [`darcy_solve`][] plus a penalty).
    - `params`: the starting point, any pytree of floating arrays.
    - `max_steps`: at most this many iterations (>= 1).
    - `tol`: stop once the gradient's Euclidean norm is $\le$ `tol` (>= 0).
    - `memory_size`: number of L-BFGS correction pairs kept.

    **Returns:**

    `(params, info)`, the last iterate and an [`LBFGSInfo`][].
    """
    max_steps = check_int("max_steps", max_steps)
    memory_size = check_int("memory_size", memory_size)
    tol = check_real("tol", tol, nonnegative=True)
    return _lbfgs_loop(fun, params, max_steps, tol, memory_size)


def _norm(tree):
    return jnp.sqrt(sum(jnp.vdot(x, x).real for x in jax.tree.leaves(tree)))


@eqx.filter_jit
def _lbfgs_loop(fun, params, max_steps, tol, memory_size):
    optimizer = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimizer.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    def proceed(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        grad_norm = _norm(grad)
        return (count == 0) | ((count < max_steps) & (grad_norm > tol))

    params, state = jax.lax.while_loop(proceed, step, (params, optimizer.init(params)))
    info = LBFGSInfo(
        value=otu.tree_get(state, "value"),
        grad_norm=_norm(otu.tree_get(state, "grad")),
        num_steps=otu.tree_get(state, "count"),
    )
    return params, info
