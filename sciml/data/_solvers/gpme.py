r"""The generalised porous medium equation (GPME) $u_t = \partial_x (k(u)\, \partial_x u)$ in
one dimension, and the three regimes of ProbConserv (Hansen et al., ICML 2023).

- `"heat"`: $k(u) = k$ constant (easy, parabolic), ProbConserv's $k \in [1, 5]$, periodic on
  $[0, 2\pi]$, $u_0 = \sin x$, $t \in [0, 1]$; exact $u = e^{-k t} \sin x$.
- `"porous_medium"`: $k(u) = u^m$ (medium, degenerate), $m \in [1, 6]$, on $[0, 1]$ with
  $u(t, 0) = (m t)^{1/m}$, $u(t, 1) = 0$, $u_0 = 0$, $t \in [0, 1]$; exact travelling wave
  $u = (m\, (t - x)_+)^{1/m}$, front at $x = t$.
- `"stefan"`: $k(u) = 1$ for $u \ge u^*$, 0 otherwise (hard: a moving shock), $u^* \in [0.55,
  0.7]$, on $[0, 1]$ with $u(t, 0) = 1$, $u(t, 1) = 0$, $u_0 = 0$, $t \in [0, 0.1]$; exact
  self-similar solution with the front at $x^*(t) = 2 z \sqrt t$ ([`stefan_solution`][]).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..._validate import ArgumentError, check_int
from .._checks import check_dtype, check_real

PROBLEMS = ("heat", "porous_medium", "stefan")
# ProbConserv's setups (Hansen et al. 2023, Sec. 4 and App. E; their experiment configs).
PARAMETER_RANGES = {"heat": (1.0, 5.0), "porous_medium": (1.0, 6.0), "stefan": (0.55, 0.7)}
T_FINAL = {"heat": 1.0, "porous_medium": 1.0, "stefan": 0.1}
LENGTH = {"heat": 2 * math.pi, "porous_medium": 1.0, "stefan": 1.0}
# Explicit SSP Runge-Kutta is stable and monotone (maximum principle) under the forward-Euler
# limit dt <= h^2 / (2 k_max) for interior cells, h^2 / (3 k_max) for a cell next to a
# Dirichlet wall (the wall is half a cell away, so its flux has 2 / h^2).
DEFAULT_CFL = 0.3
MAX_CFL = 1.0 / 3.0

Boundary = float | Callable[[Array], Array] | None


def _check_problem(problem):
    if problem not in PROBLEMS:
        raise ArgumentError(
            f"`problem` must be one of {PROBLEMS}, got {problem!r}.", argument="problem"
        )
    return problem


def gpme_potential(
    u: Float[ArrayLike, "..."], problem: str, parameter: float | Float[ArrayLike, ""]
) -> Float[Array, "..."]:
    r"""The Kirchhoff potential $\Phi(u) = \int_0^u k(s)\,ds$, so that $k(u) u_x = \Phi(u)_x$.

    `"heat"`: $k u$; `"porous_medium"`: $u_+^{m+1} / (m + 1)$; `"stefan"`: $(u - u^*)_+$.
    Lipschitz and non-decreasing in every case, including the discontinuous Stefan $k$: the
    Stefan flux is the exact one of the discontinuous $k$ (no smoothing).

    **Arguments:**

    - `u`: values, any shape.
    - `problem`: `"heat"`, `"porous_medium"` or `"stefan"`.
    - `parameter`: $k$, $m$ or $u^*$ (may be traced).

    **Returns:**

    $\Phi(u)$, the shape of `u`.
    """
    _check_problem(problem)
    u = jnp.asarray(u)
    p = jnp.asarray(parameter, u.dtype)
    if problem == "heat":
        return p * u
    if problem == "porous_medium":
        return jnp.maximum(u, 0) ** (p + 1) / (p + 1)
    return jnp.maximum(u - p, 0)


def _boundary_value(g, t, dtype):
    return jnp.asarray(g(t) if callable(g) else g, dtype)


def _check_boundary(name, g):
    if g is None or callable(g):
        return g
    return check_real(name, g)


def gpme_solve(
    u0: Float[ArrayLike, " n"],
    *,
    problem: str,
    parameter: float | Float[ArrayLike, ""],
    t_final: float,
    length: float = 1.0,
    left: Boundary = None,
    right: Boundary = None,
    periodic: bool = False,
    save_times: int | None = None,
    max_conductivity: float | None = None,
    num_steps: int | None = None,
    cfl: float = DEFAULT_CFL,
) -> Float[Array, " n"] | Float[Array, "save_times n"]:
    r"""Solves $u_t = \partial_x (k(u)\, u_x)$ on $[0, L]$ with a conservative finite-volume
    scheme.

    **Space.** $n$ cells of width $h = L / n$, unknowns the cell averages $u_i$ at the centres
    $x_i = (i + \tfrac12) h$. The flux through the face between cells $i$ and $i + 1$ is
    $F_{i+1/2} = -(\Phi(u_{i+1}) - \Phi(u_i)) / h$ with the Kirchhoff potential $\Phi$
    ([`gpme_potential`][]); at a Dirichlet wall with value $g$, $F = -(\Phi(u_0) - \Phi(g)) /
    (h / 2)$ (and mirrored on the right); a `None` wall has $F = 0$. Then $u_i' = (F_{i-1/2} -
    F_{i+1/2}) / h$: a flux difference, so $h \sum_i u_i$ changes only through the wall fluxes
    (exactly 0 with no-flux or periodic walls), and Runge-Kutta keeps that linear invariant
    to rounding. Second order for smooth solutions (heat: observed order 2); for the Stefan
    problem $\Phi(u) = (u - u^*)_+$ is the exact flux of the discontinuous $k$, the enthalpy
    method: the front sits in one partially filled cell, and its position is first order in
    $h$.

    **Time.** Three-stage SSP Runge-Kutta (Shu & Osher 1988), third order, with a constant
    step $\Delta t \le \text{cfl}\; h^2 / k_{\max}$: stable and monotone (the discrete
    solution stays within its initial and boundary values) for `cfl` $\le 1/3$.

    **Arguments:**

    - `u0`: initial cell values, shape `(n,)`, `n >= 2`; its dtype is the result's.
    - `problem`: `"heat"` ($k$), `"porous_medium"` ($u^m$) or `"stefan"` ($1_{u \ge u^*}$).
    - `parameter`: $k$, $m$ or $u^*$; may be traced (e.g. `jax.vmap` over parameters) when
      `num_steps` or `max_conductivity` is given.
    - `t_final`: final time > 0.
    - `length`: $L > 0$.
    - `left`, `right`: `None` (no flux), a number or a function `g(t)` of the (traced) time:
      the Dirichlet value at that wall.
    - `periodic`: periodic walls (then `left` and `right` must be `None`).
    - `save_times`: `None` for $u(t_\text{final})$, or an int >= 2 for $u$ at
      `linspace(0, t_final, save_times)` (the first row is `u0`).
    - `max_conductivity`: a bound on $k(u)$ over the solve that sets the step; default $k$
      (`"heat"`, concrete `parameter`), 1 (`"stefan"`); required for `"porous_medium"`
      ($\max u^m$: e.g. $m\, t_\text{final}$ for ProbConserv's setup).
    - `num_steps`: the number of steps, overriding `max_conductivity` and `cfl` (rounded up
      to a multiple of `save_times - 1`).
    - `cfl`: $\Delta t\, k_{\max} / h^2$, in $(0, 1/3]$.

    **Returns:**

    $u$ at `t_final`, shape `(n,)`, or at the saved times, shape `(save_times, n)`.

    Works under `jax.jit` (all arguments but `u0` and `parameter` static) and `jax.vmap`;
    differentiable with respect to `u0` and `parameter` (the Stefan potential has a kink at
    $u^*$, where JAX takes a one-sided derivative).

    **References:** Hansen et al., "Learning Physical Models that Can Respect Conservation
    Laws", ICML 2023; Maddix, Sampaio, Gerritsen, "Numerical artifacts in the generalized
    porous medium equation", J. Comput. Phys. 361 (2018); Shu, Osher, J. Comput. Phys. 77
    (1988).
    """
    _check_problem(problem)
    u0 = jnp.asarray(u0)
    if u0.ndim != 1 or u0.shape[0] < 2:
        raise ArgumentError(
            f"`u0` must be a 1-D array of at least 2 cell values, got shape {u0.shape}.",
            argument="u0",
        )
    if not jnp.issubdtype(u0.dtype, jnp.floating):
        u0 = u0.astype(jnp.result_type(float))
    t_final = check_real("t_final", t_final, positive=True)
    length = check_real("length", length, positive=True)
    left = _check_boundary("left", left)
    right = _check_boundary("right", right)
    if not isinstance(periodic, bool):
        raise ArgumentError(f"`periodic` must be a bool, got {periodic!r}.", argument="periodic")
    if periodic and (left is not None or right is not None):
        raise ArgumentError(
            "`left` and `right` must be None with `periodic=True` (a periodic domain has no "
            f"walls), got left={left!r}, right={right!r}.",
            argument="periodic",
        )
    if save_times is not None:
        save_times = check_int("save_times", save_times, 2)
    intervals = 1 if save_times is None else save_times - 1
    n = u0.shape[0]
    h = length / n
    if num_steps is None:
        cfl = check_real("cfl", cfl, positive=True)
        if cfl > MAX_CFL:
            raise ArgumentError(f"`cfl` must be in (0, 1/3], got {cfl!r}.", argument="cfl")
        if max_conductivity is None:
            if problem == "stefan":
                max_conductivity = 1.0
            elif problem == "heat":
                try:
                    max_conductivity = float(parameter)
                except (TypeError, jax.errors.ConcretizationTypeError):
                    raise ArgumentError(
                        "`max_conductivity` (or `num_steps`) is needed when `parameter` is traced.",
                        argument="max_conductivity",
                    ) from None
            else:
                raise ArgumentError(
                    "`max_conductivity` (a bound on u^m over the solve) or `num_steps` is "
                    "needed for problem 'porous_medium', got None.",
                    argument="max_conductivity",
                )
        max_conductivity = check_real("max_conductivity", max_conductivity, positive=True)
        num_steps = math.ceil(t_final * max_conductivity / (cfl * h * h))
    else:
        num_steps = check_int("num_steps", num_steps)
    per_save = -(-num_steps // intervals)
    dt = t_final / (per_save * intervals)
    dtype = u0.dtype
    u = _integrate(
        u0,
        jnp.asarray(parameter, dtype),
        problem=problem,
        h=h,
        dt=dt,
        left=left,
        right=right,
        periodic=periodic,
        intervals=intervals,
        per_save=per_save,
    )
    if save_times is None:
        return u[-1]
    return jnp.concatenate([u0[None], u])


def _integrate(u0, p, *, problem, h, dt, left, right, periodic, intervals, per_save):
    dtype = u0.dtype

    def rhs(u, t):
        phi = gpme_potential(u, problem, p)
        if periodic:
            flux = -(jnp.roll(phi, -1) - phi) / h  # F_{i+1/2}, i = 0..n-1
            return (jnp.roll(flux, 1) - flux) / h
        inner = -(phi[1:] - phi[:-1]) / h  # F_{i+1/2}, i = 0..n-2
        zero = jnp.zeros((1,), dtype)
        if left is None:
            f_left = zero
        else:
            g = gpme_potential(_boundary_value(left, t, dtype), problem, p)
            f_left = (-(phi[:1] - g) / (h / 2)).astype(dtype)
        if right is None:
            f_right = zero
        else:
            g = gpme_potential(_boundary_value(right, t, dtype), problem, p)
            f_right = (-(g - phi[-1:]) / (h / 2)).astype(dtype)
        flux = jnp.concatenate([f_left, inner, f_right])
        return (flux[:-1] - flux[1:]) / h

    dt_ = jnp.asarray(dt, dtype)

    def step(i, carry):
        u, t0 = carry
        t = t0 + i * dt_
        u1 = u + dt_ * rhs(u, t)
        u2 = 0.75 * u + 0.25 * (u1 + dt_ * rhs(u1, t + dt_))
        u3 = u / 3 + 2 / 3 * (u2 + dt_ * rhs(u2, t + 0.5 * dt_))
        return u3, t0

    def save(u, j):
        t0 = j * per_save * dt_
        u, _ = jax.lax.fori_loop(0, per_save, step, (u, t0))
        return u, u

    _, us = jax.lax.scan(save, u0, jnp.arange(intervals, dtype=dtype))
    return us


def _erf(x):
    return jax.scipy.special.erf(x)


def _stefan_z(p):
    """The root z of p erf(z) z exp(z^2) = (1 - p) / sqrt(pi) by 64 bisections on [0, 4] (the
    left side increases in z; z < 4 for p > 1e-7)."""
    target = (1 - p) / jnp.sqrt(jnp.pi)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = p * _erf(mid) * mid * jnp.exp(mid * mid) > target
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 64, bisect, (jnp.zeros_like(p), jnp.full_like(p, 4.0)))
    return 0.5 * (lo + hi)


def stefan_solution(
    x: Float[ArrayLike, "..."], t: Float[ArrayLike, "..."], u_star: float | Float[ArrayLike, ""]
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The exact solution of ProbConserv's Stefan problem and its front.

    On $x \ge 0$ with $u(t, 0) = 1$, $u_0 = 0$ and $k = 1_{u \ge u^*}$: $u = 1 - c\,
    \operatorname{erf}(x / (2 \sqrt t))$ behind the front $x^*(t) = 2 z \sqrt t$ and 0 beyond
    it, where $z$ solves $u^* \operatorname{erf}(z)\, z\, e^{z^2} = (1 - u^*) / \sqrt\pi$
    (the front moves with the flux it receives, $u^* \dot x^* = -u_x(x^{*-})$) and $c = (1 -
    u^*) / \operatorname{erf}(z)$, so $u(x^{*-}) = u^*$. The mass is $\int u\,dx = 2 c
    \sqrt{t / \pi}$ (the inflow at $x = 0$ is $c / \sqrt{\pi t}$). On $[0, 1]$ with $u(t, 1)
    = 0$ it is exact while the front is inside ($x^* < 1$; at $t = 0.1$, $x^* \le 0.31$ for
    $u^* \ge 0.55$), up to the erf tail at $x = 1$ (below $10^{-20}$ for $t \le 0.1$).

    **Arguments:**

    - `x`, `t`: positions and times (broadcast together), $t > 0$.
    - `u_star`: $u^* \in (0, 1)$ (may be traced).

    **Returns:**

    `(u, front)`: $u(t, x)$ and $x^*(t)$, broadcast shapes.
    """
    x = jnp.asarray(x)
    t = jnp.asarray(t)
    dtype = jnp.result_type(x.dtype, t.dtype, float)
    p = jnp.asarray(u_star, dtype)
    z = _stefan_z(p)
    c = (1 - p) / _erf(z)
    front = 2 * z * jnp.sqrt(t)
    u = jnp.where(x < front, 1 - c * _erf(x / (2 * jnp.sqrt(t))), 0.0)
    return u.astype(dtype), jnp.broadcast_to(front, u.shape).astype(dtype)


def stefan_mass(t: Float[ArrayLike, "..."], u_star: float | Float[ArrayLike, ""]):
    r"""$\int_0^\infty u\,dx = 2 c \sqrt{t / \pi}$ of [`stefan_solution`][]: the inflow at
    $x = 0$ integrated in time (the right-hand side of ProbConserv's Stefan constraint)."""
    t = jnp.asarray(t, jnp.result_type(float))
    p = jnp.asarray(u_star, t.dtype)
    c = (1 - p) / _erf(_stefan_z(p))
    return 2 * c * jnp.sqrt(t / jnp.pi)


def porous_medium_solution(
    x: Float[ArrayLike, "..."], t: Float[ArrayLike, "..."], m: float | Float[ArrayLike, ""]
) -> Float[Array, "..."]:
    r"""The travelling wave $u = (m\,(t - x)_+)^{1/m}$ of $u_t = (u^m u_x)_x$ (front $x = t$,
    mass $m^{1 + 1/m} t^{1 + 1/m} / (m + 1)$ on $x \ge 0$): ProbConserv's PME data."""
    x, t = jnp.asarray(x), jnp.asarray(t)
    m = jnp.asarray(m, jnp.result_type(x.dtype, t.dtype, float))
    return (m * jnp.maximum(t - x, 0)) ** (1 / m)


class GPMEData(NamedTuple):
    """Samples of a GPME regime: `parameters` `(n,)`, `x` `(num_points,)` (cell centres), `t`
    `(num_times,)`, `u` `(n, num_times, num_points)` and `mass` `(n, num_times)` ($h \\sum_i
    u_i$ at each time: the initial mass plus the boundary inflow, exactly)."""

    parameters: Array
    x: Array
    t: Array
    u: Array
    mass: Array


def gpme_setup(problem: str, num_points: int, dtype=jnp.float32) -> dict:
    """ProbConserv's setup of a regime on `num_points` cells: the keywords of
    [`gpme_solve`][] (all but `parameter` and `num_steps`) and the cell centres `x`."""
    _check_problem(problem)
    num_points = check_int("num_points", num_points, 2)
    length = LENGTH[problem]
    x = (np.arange(num_points) + 0.5) * length / num_points
    setup = {"problem": problem, "t_final": T_FINAL[problem], "length": length}
    if problem == "heat":
        setup["periodic"] = True
        u0 = np.sin(x)
    else:
        u0 = np.zeros(num_points)
        setup["right"] = 0.0
        if problem == "stefan":
            setup["left"] = 1.0
        else:
            setup["left"] = lambda t, m: (m * t) ** (1 / m)
    return {"u0": jnp.asarray(u0, dtype), "x": jnp.asarray(x, dtype), **setup}


def gpme_dataset(
    key: PRNGKeyArray,
    n: int,
    problem: str,
    *,
    num_points: int = 64,
    num_times: int = 21,
    parameter_range: tuple[float, float] | None = None,
    parameters: Float[ArrayLike, " n"] | None = None,
    cfl: float = DEFAULT_CFL,
    dtype=jnp.float32,
) -> GPMEData:
    r"""Samples `(parameter -> space-time solution)` pairs of a GPME regime, solved with
    [`gpme_solve`][] in ProbConserv's setup (see the module's description).

    The parameter is drawn uniformly from `parameter_range` (default ProbConserv's: $k \in
    [1, 5]$, $m \in [1, 6]$, $u^* \in [0.55, 0.7]$); all samples are solved in one batched
    call with the step of the range's worst case ($k_{\max} = k$, $m\, t_\text{final}$ or 1).

    **Arguments:**

    - `key`: a `jax.random` key.
    - `n`: number of samples, >= 1.
    - `problem`: `"heat"`, `"porous_medium"` or `"stefan"`.
    - `num_points`: cells, >= 2.
    - `num_times`: saved times `linspace(0, t_final, num_times)`, >= 2.
    - `parameter_range`: `(low, high)`, `0 < low <= high` (`high < 1` for `"stefan"`).
    - `parameters`: the parameters themselves, shape `(n,)`, instead of drawing them.
    - `cfl`: as for [`gpme_solve`][].
    - `dtype`: float32 or float64.

    **Returns:**

    A [`GPMEData`][].
    """
    _check_problem(problem)
    n = check_int("n", n)
    num_times = check_int("num_times", num_times, 2)
    dtype = check_dtype(dtype)
    low, high = PARAMETER_RANGES[problem] if parameter_range is None else parameter_range
    low, high = check_real("parameter_range", low), check_real("parameter_range", high)
    if not 0 < low <= high or (problem == "stefan" and high >= 1):
        raise ArgumentError(
            f"`parameter_range` must satisfy 0 < low <= high{' < 1' if problem == 'stefan' else ''}"
            f" for problem {problem!r}, got {(low, high)}.",
            argument="parameter_range",
        )
    if parameters is None:
        parameters = jax.random.uniform(key, (n,), dtype, low, high)
    else:
        parameters = jnp.asarray(parameters, dtype)
        if parameters.shape != (n,):
            raise ArgumentError(
                f"`parameters` must have shape ({n},), got {parameters.shape}.",
                argument="parameters",
            )
        high = float(jnp.max(parameters))
    setup = gpme_setup(problem, num_points, dtype)
    u0, x = setup.pop("u0"), setup.pop("x")
    k_max = {"heat": high, "porous_medium": high * T_FINAL[problem], "stefan": 1.0}[problem]
    h = setup["length"] / num_points
    num_steps = math.ceil(setup["t_final"] * k_max / (cfl * h * h))
    left = setup.pop("left", None)

    def one(p):
        g = (lambda t: left(t, p)) if callable(left) else left
        return gpme_solve(
            u0, parameter=p, left=g, save_times=num_times, num_steps=num_steps, **setup
        )

    u = jax.jit(jax.vmap(one))(parameters)
    t = jnp.linspace(0, setup["t_final"], num_times, dtype=dtype)
    mass = h * jnp.sum(u, axis=-1)
    return GPMEData(parameters, x, t, u, mass)
