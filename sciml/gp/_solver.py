"""GP-HM (Fang et al., ICLR 2024): a Gaussian process on a tensor grid of collocation nodes,
one spectral-mixture kernel per coordinate, trained against a `sciml.pinn.Problem`."""

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from ..pinn._conditions import (
    AbstractCondition,
    BoundaryOperator,
    Dirichlet,
    Initial,
    Neumann,
    Periodic,
    Robin,
)
from ..pinn._domain import AbstractDomain, Box, SpaceTime
from ..pinn._observations import Observations
from ..pinn._problem import Problem
from ._kernels import SpectralMixture


def _bounds(domain: AbstractDomain) -> tuple[tuple[float, ...], tuple[float, ...]]:
    box = (
        domain._box() if isinstance(domain, SpaceTime) and isinstance(domain.space, Box) else domain
    )
    if not isinstance(box, Box):
        raise ValueError(
            "`GridGP` needs a `Box` domain or a `SpaceTime` over a `Box` (a tensor grid of "
            f"nodes), got {type(domain).__name__}."
        )
    return box.lower, box.upper


def _apply_along(matrix: Array, grid: Array, axis: int) -> Array:
    """`matrix` applied to every fibre of `grid` along `axis`."""
    return jnp.moveaxis(jnp.tensordot(matrix, grid, axes=([1], [axis])), 0, axis)


class GridGP(eqx.Module):
    r"""GP-HM's model of a scalar PDE solution: a Gaussian process with the product kernel
    $k(x, x') = \prod_i k_i(x_i - x'_i)$ (each $k_i$ a `SpectralMixture`), represented by its
    values $U$ on a tensor grid of collocation nodes (linspace with both ends per axis).

    The prior is $U \sim N(0, \bigotimes_i (K_i + \epsilon I))$, $K_i$ the kernel matrix of
    axis $i$ on its nodes and $\epsilon$ the `jitter` (as in the paper's code, one per
    factor, so every solve and log-determinant is per axis: Cholesky of $n_i \times n_i$
    matrices, never the $N \times N$ one). The solution is the conditional mean
    $u(x) = k(x, X) \alpha$, $\alpha = \bigotimes_i (K_i + \epsilon I)^{-1} U$, and its
    derivatives at the nodes are per-axis products with $\partial^m K_i$: any linear or
    nonlinear differential operator of order at most `max_order` per coordinate is exact at
    the nodes.

    **Arguments:**

    - `domain`: a `Box`, or a `SpaceTime` over a box (time is the last axis).
    - `shape`: nodes per axis, e.g. `(900,)` or `(200, 200)`.
    - `components`: mixture components per axis (the paper's `Q = 30`).
    - `max_frequency`: the initial means are `linspace(0, max_frequency, components)`
        (cycles per unit length): cover the solution's suspected band (a number, or one per
        axis). Components that are not needed are pruned during training.
    - `scale`: the initial spectral width of every component (default
        `1 / (pi sqrt 2)`, i.e. an envelope `exp(-tau^2)` as in the paper's code).
    - `jitter`: the nugget `epsilon` on each factor.
    - `max_order`: the highest derivative order per coordinate the PDE may use (checked
        when a `Problem` meets the model).
    - `dtype`: of the parameters (default: float64 when `jax_enable_x64` is on; GP-HM needs
        it, float32 cannot resolve the jitter).
    """

    kernels: tuple[SpectralMixture, ...]
    values: Array
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    jitter: float = eqx.field(static=True)
    max_order: int = eqx.field(static=True)

    def __init__(
        self,
        domain: AbstractDomain,
        shape: Sequence[int],
        *,
        components: int = 30,
        max_frequency: float | Sequence[float] = 20.0,
        scale: float | None = None,
        jitter: float = 1e-6,
        max_order: int = 2,
        dtype=None,
    ):
        lower, upper = _bounds(domain)
        shape = tuple(int(n) for n in shape) if isinstance(shape, Sequence) else (shape,)
        if len(shape) != len(lower) or any(n < 3 for n in shape):
            raise ValueError(
                f"`GridGP`: `shape` must give at least 3 nodes for each of the domain's "
                f"{len(lower)} axes, got {shape}."
            )
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"`GridGP`: `components` must be an int >= 1, got {components!r}.")
        freqs = (
            [float(max_frequency)] * len(shape)
            if not isinstance(max_frequency, Sequence)
            else [float(f) for f in max_frequency]
        )
        if len(freqs) != len(shape) or any(not f > 0 for f in freqs):
            raise ValueError(
                f"`GridGP`: `max_frequency` must be > 0 (one number or one per axis), got "
                f"{max_frequency!r}."
            )
        if not jitter > 0:
            raise ValueError(f"`GridGP`: `jitter` must be > 0, got {jitter!r}.")
        if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 1:
            raise ValueError(f"`GridGP`: `max_order` must be an int >= 1, got {max_order!r}.")
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        width = 1 / (math.pi * math.sqrt(2)) if scale is None else float(scale)
        self.kernels = tuple(
            SpectralMixture(
                jnp.linspace(0.0, f, components, dtype=dtype),
                jnp.full((components,), width, dtype),
            )
            for f in freqs
        )
        self.values = jnp.zeros(shape, dtype)
        self.lower, self.upper, self.shape = lower, upper, shape
        self.jitter, self.max_order = float(jitter), max_order

    @property
    def dim(self) -> int:
        return len(self.shape)

    def nodes(self, axis: int) -> Float[Array, " n"]:
        """The collocation nodes of one axis."""
        return jnp.linspace(
            self.lower[axis], self.upper[axis], self.shape[axis], dtype=self.values.dtype
        )

    def points(self) -> Float[Array, "N dim"]:
        """All nodes as rows `(N, dim)`, row-major over the grid."""
        mesh = jnp.meshgrid(*[self.nodes(i) for i in range(self.dim)], indexing="ij")
        return jnp.stack([m.reshape(-1) for m in mesh], axis=-1)

    def step(self, axis: int) -> float:
        return (self.upper[axis] - self.lower[axis]) / (self.shape[axis] - 1)

    def _grams(self, axis: int, order: int) -> Array:
        """`[d^j k_axis(x_i - x_k) / dtau^j]` on the nodes for `j <= order`, `(order + 1, n, n)`."""
        return self.kernels[axis].toeplitz(self.shape[axis], self.step(axis), order)

    def _factors(self) -> list[tuple[Array, bool]]:
        """The Cholesky factors of `K_i + jitter I`, one per axis."""
        return [
            jax.scipy.linalg.cho_factor(
                self._grams(i, 0)[0] + self.jitter * jnp.eye(n, dtype=self.values.dtype)
            )
            for i, n in enumerate(self.shape)
        ]

    def _alpha(self, factors) -> Array:
        """`alpha = (K_1 x ... x K_d)^-1 U`, one axis at a time."""
        alpha = self.values
        for axis, factor in enumerate(factors):
            moved = jnp.moveaxis(alpha, axis, 0)
            solved = jax.scipy.linalg.cho_solve(factor, moved.reshape(moved.shape[0], -1))
            alpha = jnp.moveaxis(solved.reshape(moved.shape), 0, axis)
        return alpha

    def log_prior(self, factors=None, alpha=None) -> Float[Array, ""]:
        """`log N(U; 0, K)` up to its constant: `-(log det K + U^T K^-1 U) / 2`."""
        factors = self._factors() if factors is None else factors
        alpha = self._alpha(factors) if alpha is None else alpha
        size = math.prod(self.shape)
        logdet = sum(
            (size // n) * 2 * jnp.sum(jnp.log(jnp.diag(c)))
            for (c, _), n in zip(factors, self.shape, strict=True)
        )
        return -0.5 * (logdet + jnp.sum(self.values * alpha))

    def taylor_coefficients(self, order: int | None = None, alpha=None) -> Array:
        """The derivatives of the conditional mean at every node: entry `[m_1, ..., m_d]` of
        the leading axes is `d^(m_1 + ... + m_d) u / dx_1^m_1 ... dx_d^m_d` on the grid,
        `m_i <= order` (default `max_order`). Shape `(order + 1,) * d + shape`."""
        order = self.max_order if order is None else order
        out = self._alpha(self._factors()) if alpha is None else alpha
        for axis in range(self.dim):
            # `axis` derivative axes lead, so this grid axis sits at 2 * axis
            out = jnp.stack([_apply_along(b, out, 2 * axis) for b in self._grams(axis, order)])
            out = jnp.moveaxis(out, 0, axis)
        return out

    def on_grid(self, axes: Sequence[Float[ArrayLike, " _"]]) -> Array:
        """The conditional mean on the tensor grid of `axes` (one 1-D array per coordinate),
        shape `(len(axes[0]), ...)`, by per-axis products."""
        if len(axes) != self.dim:
            raise ValueError(f"`GridGP.on_grid`: needs {self.dim} axes, got {len(axes)}.")
        out = self._alpha(self._factors())
        for axis, (kernel, x) in enumerate(zip(self.kernels, axes, strict=True)):
            x = jnp.asarray(x, out.dtype)
            out = _apply_along(kernel.gram(x, self.nodes(axis)), out, axis)
        return out

    def __call__(self, x: Float[ArrayLike, " dim"]) -> Float[Array, ""]:
        """The conditional mean at one point (`O(N)`, and the kernel factorised again: for
        many points use `mean` or `on_grid`)."""
        return _mean_at(self._alpha(self._factors()), self, jnp.asarray(x))

    def mean(self) -> Callable[[Array], Array]:
        """The conditional mean as a function of one point, the kernel solve done once: map
        it over scattered points (`O(N)` each)."""
        alpha = self._alpha(self._factors())
        return lambda x: _mean_at(alpha, self, jnp.asarray(x))


def _mean_at(alpha: Array, model: GridGP, x: Array) -> Array:
    out = alpha
    for axis in reversed(range(model.dim)):
        row = jax.vmap(model.kernels[axis])(x[axis] - model.nodes(axis))
        out = jnp.tensordot(out, row, axes=([axis], [0]))
    return out


def _local_field(coeffs: Array, node: Array) -> Callable[[Array], Array]:
    """The Taylor polynomial of the mean about one node: exact derivatives there up to the
    order of `coeffs` (shape `(order + 1,) * d`) in every coordinate."""
    order = coeffs.shape[0] - 1
    factorials = jnp.asarray([math.factorial(m) for m in range(order + 1)], coeffs.dtype)

    def u(x):
        out = coeffs
        for axis in reversed(range(node.shape[0])):
            h = x[axis] - node[axis]
            powers = jnp.stack([h**m for m in range(order + 1)]) / factorials
            out = jnp.tensordot(out, powers, axes=([axis], [0]))
        return out

    return u


def _node_field(model: GridGP, coeffs: Array) -> Callable[[Array], Array]:
    """A field that at (and near) any node is the Taylor polynomial about the nearest node:
    conditions stated at nodes (values, normal derivatives, periodic pairs) read the GP's
    exact derivatives there."""
    lower = jnp.asarray(model.lower, coeffs.dtype)
    step = (jnp.asarray(model.upper, coeffs.dtype) - lower) / (jnp.asarray(model.shape) - 1)
    d = model.dim

    def u(x):
        index = jnp.clip(
            jnp.round(jax.lax.stop_gradient((x - lower) / step)).astype(int),
            0,
            jnp.asarray(model.shape) - 1,
        )
        local = coeffs[(slice(None),) * d + tuple(index[i] for i in range(d))]
        return _local_field(local, lower + index * step)(x)

    return u


def _face_mask(model: GridGP, faces) -> np.ndarray:
    index = np.indices(model.shape)
    mask = np.zeros(model.shape, bool)
    for axis, side in faces:
        mask |= index[axis] == (0 if side == 0 else model.shape[axis] - 1)
    return mask


def _all_faces(model: GridGP, domain: AbstractDomain) -> list[tuple[int, int]]:
    axes = range(model.dim - 1) if isinstance(domain, SpaceTime) else range(model.dim)
    return [(axis, side) for axis in axes for side in (0, 1)]


def condition_points(
    model: GridGP, name: str, condition: AbstractCondition, domain: AbstractDomain
) -> Array:
    """Where `condition` is imposed: the nodes on its faces (the whole boundary by default;
    the lateral one for space-time domains), the initial slice for `Initial`, the first face
    of the axis for `Periodic`, the measurement points for `Observations`."""
    if isinstance(condition, Observations):
        return condition.points
    if isinstance(condition, Initial):
        faces = [(model.dim - 1, 0)]
    elif isinstance(condition, Periodic):
        faces = [(condition.axis, 0)]
    elif isinstance(condition, Dirichlet | Neumann | Robin | BoundaryOperator):
        faces = _all_faces(model, domain) if condition.faces is None else list(condition.faces)
    else:
        raise ValueError(
            f"`GridGP`: condition {name!r} ({type(condition).__name__}) has no place on a grid; "
            "supported: Dirichlet, Neumann, Robin, BoundaryOperator, Periodic, Initial, "
            "Observations."
        )
    for axis, side in faces:
        if not (0 <= axis < model.dim and side in (0, 1)):
            raise ValueError(
                f"`GridGP`: condition {name!r} has face {(axis, side)}; axes are 0..{model.dim - 1}"
                " and sides 0 or 1."
            )
    return model.points()[jnp.asarray(_face_mask(model, faces).reshape(-1))]


def _check_order(model: GridGP, problem: Problem) -> None:
    """Refuses a residual that differentiates further than `max_order` in some coordinate
    (the node polynomials would silently miss those terms)."""
    m, d = model.max_order, model.dim
    key = jax.random.PRNGKey(0)
    coeffs = jax.random.normal(key, (m + 2,) * d, model.values.dtype)
    node = model.points()[0] + 0.1 * (jnp.asarray(model.upper) - jnp.asarray(model.lower)) / 3
    cut = coeffs * np.all(np.indices((m + 2,) * d) <= m, axis=0)
    full = problem.residual(_local_field(coeffs, node), node)
    low = problem.residual(_local_field(cut, node), node)
    if not np.allclose(np.asarray(full), np.asarray(low), rtol=1e-9, atol=1e-12):
        raise ValueError(
            f"`GridGP`: the problem's residual uses derivatives of order above max_order = {m} "
            "in some coordinate; build the model with a larger `max_order`."
        )


def _residuals(
    model: GridGP, problem: Problem, points: Mapping[str, Array], alpha: Array
) -> dict[str, Array]:
    """Each term's residuals: the PDE at every node, each condition at its points."""
    coeffs = model.taylor_coefficients(alpha=alpha)
    flat = jnp.moveaxis(coeffs.reshape(coeffs.shape[: model.dim] + (-1,)), -1, 0)
    residual = jax.vmap(lambda c, p: problem.residual(_local_field(c, p), p))(flat, model.points())
    terms = {"residual": residual}
    field = _node_field(model, coeffs)
    for name, condition in problem.conditions.items():
        if isinstance(condition, Observations):
            global_field = lambda x: _mean_at(alpha, model, x)
            terms[name] = condition.residuals(global_field, points[name], problem.domain)
        else:
            terms[name] = condition.residuals(field, points[name], problem.domain)
    return terms


def gauss_newton_values(
    model: GridGP,
    log_precisions: Mapping[str, Array],
    problem: Problem,
    points: Mapping[str, Array],
    weights: Mapping[str, float],
    iterations: int = 1,
    *,
    log_precision: float = 30.0,
    nugget_floor: float = 1e-11,
) -> tuple[GridGP, dict[str, Array]]:
    r"""Minimises `gp_loss` over the node values, the kernels fixed and every precision
    raised to at least `exp(log_precision)`: the collocation limit, in which the residuals are
    fitted as closely as the kernel allows (left to Adam, the precisions grow only slowly,
    and the closed-form optimum `n / sum r^2` shrinks them while the fit is poor).

    Each iteration minimises $\frac12 U^T K^{-1} U + \frac12 (J U - z)^T W (J U - z)$,
    the residuals linearised at the current values ($J$ their Jacobian, $z = J U - r$, $W$
    the weighted precisions), in the form $U = K J^T (J K J^T + W^{-1})^{-1} z$, whose nugget
    $W^{-1}$ is floored at `nugget_floor` times each term's scale (the mean diagonal of its
    block of $J K J^T$), so that large precisions never make it singular; the floor bounds the
    attainable accuracy (for `sin(100 x)` at 400 nodes: 2.5e-4 at 1e-11, 4e-5 at 1e-13, NaN
    at 1e-15). For a linear PDE one iteration is exact; nonlinear ones (Allen-Cahn) take a
    few. Dense in the `N` nodes: for grids of a few thousand.

    **Returns:** the model with its new values, and the new log precisions.
    """
    factors = model._factors()
    dtype = model.values.dtype
    covariance = jnp.ones((1, 1), dtype)
    for axis, n in enumerate(model.shape):
        factor = model._grams(axis, 0)[0] + model.jitter * jnp.eye(n, dtype=dtype)
        covariance = jnp.kron(covariance, factor)

    def stacked(u):
        changed = eqx.tree_at(lambda m: m.values, model, u.reshape(model.shape))
        terms = _residuals(changed, problem, points, changed._alpha(factors))
        return jnp.concatenate([jnp.ravel(r) for r in terms.values()]), terms

    u = model.values.reshape(-1)
    precisions = {k: jnp.maximum(v, log_precision) for k, v in log_precisions.items()}
    for _ in range(iterations):
        (r, terms), jac = stacked(u), jax.jacfwd(lambda v: stacked(v)[0])(u)
        kj = covariance @ jac.T
        system = jac @ kj
        # the nugget W^-1, floored at nugget_floor of each term's own scale (diagonal of
        # J K J^T): a larger precision would only add rounding noise to the solve
        diagonal, nugget, start = jnp.diag(system), [], 0
        for k, t in terms.items():
            floor = nugget_floor * jnp.mean(diagonal[start : start + t.size])
            inverse = 1.0 / (weights.get(k, 1.0) * jnp.exp(precisions[k]))
            nugget.append(jnp.full(t.size, jnp.maximum(inverse, floor), dtype))
            start += t.size
        system = system + jnp.diag(jnp.concatenate(nugget))
        u = kj @ jax.scipy.linalg.solve(system, jac @ u - r, assume_a="pos")
    return eqx.tree_at(lambda m: m.values, model, u.reshape(model.shape)), precisions


def gp_loss(
    model: GridGP,
    log_precisions: Mapping[str, Array],
    problem: Problem,
    points: Mapping[str, Array],
    weights: Mapping[str, float],
) -> tuple[Array, dict[str, Array]]:
    r"""GP-HM's negative log joint: the GP prior of the node values, plus a Gaussian
    likelihood for each term with its own learned precision $\tau$,

    $$-\log p(U) + \sum_t w_t \left(\frac{\tau_t}{2} \sum_j r_{t,j}^2
    - \frac{n_t}{2} \log \tau_t\right),$$

    the PDE residual at every node (term `"residual"`, weight 1) and each condition at its
    points (weights from `weights`; the paper uses 200 to 1000 for the boundary).

    **Returns:** the loss and each term's mean squared residual.
    """
    factors = model._factors()
    alpha = model._alpha(factors)
    terms = _residuals(model, problem, points, alpha)
    loss = -model.log_prior(factors, alpha)
    mean_squares = {}
    for name, r in terms.items():
        r = jnp.ravel(r)
        square = jnp.sum(r**2)
        tau = jnp.exp(log_precisions[name])
        loss = loss + weights.get(name, 1.0) * (
            0.5 * tau * square - 0.5 * r.size * log_precisions[name]
        )
        mean_squares[name] = square / r.size
    return loss, mean_squares


def _test_axes(model: GridGP, test_shape):
    if test_shape is None:  # several points per node: the solutions oscillate between nodes
        per_node = {1: 4, 2: 2}.get(model.dim, 0)
        test_shape = [min(max(300, per_node * n), 4001) if per_node else 40 for n in model.shape]
    shape = test_shape
    return [
        jnp.linspace(model.lower[i], model.upper[i], shape[i], dtype=model.values.dtype)
        for i in range(model.dim)
    ]


def relative_l2(model: GridGP, exact: Callable, test_shape: Sequence[int] | None = None) -> float:
    """`||u - exact|| / ||exact||` on a uniform tensor grid (default: 4 points per node in
    1-D, 2 in 2-D, at least 300 and at most 4001 per axis; 40 per axis above)."""
    axes = _test_axes(model, test_shape)
    mesh = jnp.meshgrid(*axes, indexing="ij")
    points = jnp.stack([m.reshape(-1) for m in mesh], axis=-1)
    want = jax.vmap(exact)(points).reshape(mesh[0].shape)
    got = model.on_grid(axes)
    return float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))


def solve_gp(
    problem: Problem,
    model: GridGP,
    *,
    steps: int,
    learning_rate: float | optax.Schedule = 1e-2,
    boundary_weight: float = 200.0,
    weights: Mapping[str, float] | None = None,
    lbfgs_steps: int = 0,
    gauss_newton: int = 0,
    polish: int = 0,
    nugget_floor: float = 1e-11,
    eval_every: int = 1000,
    test_shape: Sequence[int] | None = None,
    time_limit: float | None = None,
    progress: bool = True,
) -> tuple[GridGP, list[dict[str, Any]]]:
    """Trains a `GridGP` on `problem` by Adam on `gp_loss` (all of kernel weights, means,
    widths, node values and the terms' precisions), then optionally L-BFGS.

    **Arguments:**

    - `problem`: a `sciml.pinn.Problem` (the PINNs' definitions: residual written with
        `sciml.derivatives` or `jax`, scalar solution).
    - `model`: the `GridGP` (its domain must be the problem's).
    - `steps`, `learning_rate`: Adam (the paper: 1e-2).
    - `boundary_weight`: the likelihood weight of every condition (the paper's
        `llk_weight`); `weights` overrides it per term name.
    - `lbfgs_steps`: L-BFGS iterations after Adam.
    - `gauss_newton`: if > 0, after every block of first-order steps the node values are
        re-solved by that many `gauss_newton_values` iterations (and the precisions set to
        their optimum): the optimiser then only has to find the kernel, which is what makes
        high accuracy reachable in thousands rather than 10^5 steps. Dense in the number of
        nodes (refused above 6000). It leaves the mixture weights little reason to prune.
    - `nugget_floor`: of the node solves (see `gauss_newton_values`).
    - `polish`: `gauss_newton_values` iterations once, after all steps (and recorded): the
        paper's schedule (Adam finds and prunes the frequencies) finished by an exact solve
        for the node values under the learned kernel.
    - `eval_every`: steps per compiled block; a record is made after each.
    - `test_shape`: nodes per axis of the error grid (with `problem.exact`).
    - `time_limit`: stop after the block that passes this many seconds of wall time.

    **Returns:** the trained model and the records (`step`, `loss`, `loss_<term>` mean
    squared residuals, `rel_l2` with an exact solution, `time`, `active_components`: per
    axis, how many mixture weights carry more than 1e-6 of that axis' total).
    """
    if model.values.dtype != jnp.float64:
        warnings.warn(
            "`solve_gp`: the model is not float64; GP-HM's kernel matrices need it "
            "(`jax.config.update('jax_enable_x64', True)` before building the model).",
            stacklevel=2,
        )
    if _bounds(problem.domain) != (model.lower, model.upper):
        raise ValueError(
            f"`solve_gp`: the model's grid spans {model.lower}..{model.upper}, the problem's "
            f"domain {_bounds(problem.domain)}."
        )
    for name, value in (
        ("steps", steps),
        ("lbfgs_steps", lbfgs_steps),
        ("gauss_newton", gauss_newton),
        ("polish", polish),
        ("eval_every", eval_every),
    ):
        least = int(name == "eval_every")
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"`solve_gp`: `{name}` must be an int >= {least}, got {value!r}.")
    _check_order(model, problem)
    points = {
        name: condition_points(model, name, c, problem.domain)
        for name, c in problem.conditions.items()
    }
    unknown = set(weights or {}) - {"residual", *problem.conditions}
    if unknown:
        raise ValueError(
            f"`solve_gp`: `weights` names {sorted(unknown)}; the terms are "
            f"{['residual', *problem.conditions]}."
        )
    term_weights = {name: boundary_weight for name in problem.conditions}
    term_weights.update(weights or {})
    params = (model, {name: jnp.zeros((), model.values.dtype) for name in ["residual", *points]})

    def loss_fn(p):
        return gp_loss(p[0], p[1], problem, points, term_weights)

    adam = optax.adam(learning_rate)

    @eqx.filter_jit
    def adam_block(p, state, n):
        def body(_, carry):
            p, state = carry
            grads = jax.grad(lambda q: loss_fn(q)[0])(p)
            updates, state = adam.update(grads, state, p)
            return optax.apply_updates(p, updates), state

        return jax.lax.fori_loop(0, n, body, (p, state))

    lbfgs = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(lambda q: loss_fn(q)[0])

    @eqx.filter_jit
    def lbfgs_block(p, state, n):
        def body(_, carry):
            p, state = carry
            value, grads = value_and_grad(p, state=state)
            updates, state = lbfgs.update(
                grads, state, p, value=value, grad=grads, value_fn=lambda q: loss_fn(q)[0]
            )
            return optax.apply_updates(p, updates), state

        return jax.lax.fori_loop(0, n, body, (p, state))

    if not 0 < nugget_floor < 1:
        raise ValueError(f"`solve_gp`: `nugget_floor` must be in (0, 1), got {nugget_floor!r}.")
    if (gauss_newton or polish) and math.prod(model.shape) > 6000:
        raise ValueError(
            f"`solve_gp`: `gauss_newton` and `polish` solve densely in the "
            f"{math.prod(model.shape)} nodes; use them on grids of at most 6000 nodes."
        )

    @eqx.filter_jit
    def resolve(p, iterations):
        return gauss_newton_values(
            p[0], p[1], problem, points, term_weights, iterations, nugget_floor=nugget_floor
        )

    evaluate = eqx.filter_jit(loss_fn)
    records: list[dict[str, Any]] = []
    start = time.perf_counter()

    def record(p, step):
        loss, squares = evaluate(p)
        rec = {"step": step, "loss": float(loss), "time": time.perf_counter() - start}
        rec.update({f"loss_{k}": float(v) for k, v in squares.items()})
        if problem.exact is not None:
            rec["rel_l2"] = relative_l2(p[0], problem.exact, test_shape)
        rec["active_components"] = [
            int(jnp.sum(jax.nn.softmax(k.log_weights) > 1e-6)) for k in p[0].kernels
        ]
        records.append(rec)
        if progress:
            shown = ", ".join(
                f"{k} {v:.3e}" for k, v in rec.items() if k.startswith(("loss", "rel_l2"))
            )
            print(f"step {step}: {shown}", flush=True)

    phases = [("adam", steps, adam_block, adam.init(eqx.filter(params, eqx.is_inexact_array)))]
    if lbfgs_steps:
        phases.append(
            (
                "lbfgs",
                lbfgs_steps,
                lbfgs_block,
                lbfgs.init(eqx.filter(params, eqx.is_inexact_array)),
            )
        )
    if gauss_newton:
        params = resolve(params, gauss_newton)
    done, stopped = 0, False
    for _, total, block, state in phases:
        taken = 0
        while taken < total and not stopped:
            n = min(eval_every, total - taken)
            params, state = block(params, state, n)
            if gauss_newton:
                params = resolve(params, gauss_newton)
            taken += n
            done += n
            record(params, done)
            if not np.isfinite(records[-1]["loss"]):
                raise FloatingPointError(
                    f"`solve_gp`: the loss became {records[-1]['loss']} at step {done}; lower "
                    "`learning_rate` or raise `jitter`."
                )
            stopped = time_limit is not None and records[-1]["time"] > time_limit
    if polish:
        params = resolve(params, polish)
        record(params, done)
        records[-1]["polished"] = True
    return params[0], records
