"""Nonlinear (porous-medium) diffusion u_t = alpha (|grad u|^2 + u Lap u) on [-1, 1]^2.

Second-order finite differences in space, adaptive Runge-Kutta (diffrax) in time, and the
reference solution of the (2+1)-d nonlinear diffusion PINN benchmark (SPINN, PIG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ..._validate import check_int
from .._checks import check_dtype, check_real, check_save_at, real_float_array

# The benchmark (Cho et al. 2023, SPINN, diffusion3d; Kang et al. 2025, PIG, Sec. 4.2.4).
ND_ALPHA = 0.05
ND_T_FINAL = 1.0
# Default tolerances of the adaptive solve in float64. The steps are limited by stability, not
# accuracy (~330 steps at n = 200, ~1700 at n = 400, against ~100 that accuracy alone would
# need), so a tight tolerance costs almost nothing: at n = 100 the time error is ~6e-8 relative
# L2 with rtol = atol = 1e-8 and below 1e-9 with 1e-10. In float32: 1e-6.
DEFAULT_TOLERANCE = 1e-10
DEFAULT_TOLERANCE_FLOAT32 = 1e-6
# PI step-size control (Soederlind 2002; Hairer & Wanner II, IV.2): on this stability-limited
# problem it cuts the rejected steps from ~20% (I control) to ~1%.
_PCOEFF = 0.4
_ICOEFF = 0.3
INITIAL_CONDITIONS = ("spinn",)


def _spinn_initial(x, y):
    """The benchmark's initial condition: three Gaussian bumps (SPINN's diffusion3d)."""
    return (
        0.25 * np.exp(-((x - 0.3) ** 2 + (y - 0.2) ** 2) / 0.1)
        + 0.4 * np.exp(-((x + 0.5) ** 2 + (y + 0.1) ** 2) * 15)
        + 0.3 * np.exp(-(x**2 + (y + 0.5) ** 2) * 20)
    )


def _grid_nodes(n: int) -> np.ndarray:
    """The n + 1 nodes -1 + 2 i / n, i = 0..n, in float64."""
    return -1 + 2 * np.arange(n + 1, dtype=np.float64) / n


def _check_u0(u0):
    if not hasattr(u0, "shape") or not hasattr(u0, "dtype"):
        u0 = jnp.asarray(u0)
    if u0.ndim != 2 or u0.shape[0] != u0.shape[1] or u0.shape[0] < 1:
        raise ValueError(
            "`u0` must be a square 2-D array of the values at the interior nodes, shape "
            f"(n - 1, n - 1) for a grid of (n + 1) x (n + 1) nodes, got shape {u0.shape}."
        )
    return real_float_array("u0", u0)


def nonlinear_diffusion_solve(
    u0: Float[ArrayLike, "m m"],
    *,
    alpha: float = ND_ALPHA,
    t_final: float = ND_T_FINAL,
    save_at: Sequence[int | float] | Real[ArrayLike, " times"] | None = None,
    source: Callable[..., ArrayLike] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1_000_000,
) -> Float[Array, "m m"] | Float[Array, "times m m"]:
    r"""Solves $u_t = \alpha (|\nabla u|^2 + u \Delta u) + s$ on $[-1, 1]^2$, $u = 0$ on the edge.

    Since $|\nabla u|^2 + u \Delta u = \tfrac12 \Delta (u^2)$ this is the porous-medium
    equation $u_t = \tfrac{\alpha}{2} \Delta(u^2) + s = \alpha \nabla \cdot (u \nabla u) + s$,
    a diffusion with coefficient $\alpha u$ (degenerate where $u = 0$); $s(t, x, y)$ is an
    optional source.

    **Space.** Uniform grid $x_i = -1 + i h$, $y_j = -1 + j h$, $h = 2 / n$,
    $i, j = 0, \dots, n$ (axis 0 is $x$, axis 1 is $y$); the unknowns are the $(n - 1)^2$
    interior values, the boundary values are 0. The conservative form is discretised with the
    five-point Laplacian of $v = u^2$: $u_{ij}' = \tfrac{\alpha}{2 h^2} (v_{i+1,j} + v_{i-1,j}
    + v_{i,j+1} + v_{i,j-1} - 4 v_{ij}) + s_{ij}$, second order for smooth solutions (observed
    order 1.99 for the benchmark). It is a flux difference, so $h^2 \sum u_{ij}$ changes only
    through the boundary fluxes and the source; Runge-Kutta methods keep such linear invariants
    exactly.

    **Time.** Tsit5 (Tsitouras 2011, explicit, order 5(4)) in `diffrax.diffeqsolve` with a PI
    step-size controller, landing exactly on the times of `save_at`. The semi-discrete system
    is mildly stiff: its spectral radius is about $8 \alpha \max u / h^2$ (6400 at $n = 400$
    for the benchmark), so the explicit steps are limited by stability, and their number grows
    as $n^2$ (~100, ~330, ~1700 steps to $t = 1$ at $n = 100, 200, 400$). An implicit solver
    (`Kvaerno5`) would take ~100 steps, but each needs Newton solves with the Jacobian of the
    $(n - 1)^2$ unknowns, dense in diffrax's default root finder (160,000 unknowns at
    $n = 400$); the explicit solve is simpler and cheaper up to a few hundred points per axis.

    **Arguments:**

    - `u0`: initial values at the interior nodes, shape `(n - 1, n - 1)`, float32 or float64,
      the dtype of the result. The arithmetic runs in the dtype of the time variable, float64
      when `jax_enable_x64` is on (diffrax promotes the state to it), float32 otherwise.
    - `alpha`: coefficient $\alpha \ge 0$.
    - `t_final`: final time $\ge 0$.
    - `save_at`: optional non-decreasing times in `[0, t_final]` at which to return the
      solution.
    - `source`: optional source $s$: a function `source(t, x, y)` of the time (a scalar array)
      and the interior node coordinates `x`, `y` (arrays of shape `(n - 1, n - 1)`, indexing
      `"ij"`) returning an array broadcastable to `(n - 1, n - 1)`; it is traced by JAX.
    - `rtol`, `atol`: tolerances of the step-size controller (> 0); default 1e-10 (1e-6 when
      the arithmetic is float32).
    - `max_steps`: largest number of steps (> 0); the solve raises an error beyond it.

    `alpha`, `t_final`, `save_at`, `rtol`, `atol` and `max_steps` must be concrete (static
    under `jax.jit`).

    **Returns:**

    The interior values at `t_final`, shape `(n - 1, n - 1)`, or at the times of `save_at`,
    shape `(len(save_at), n - 1, n - 1)`.

    Works under `jax.jit` and `jax.vmap` over `u0`; differentiable with respect to `u0`
    (diffrax's checkpointed adjoint).

    **References:** Vazquez, "The Porous Medium Equation", Oxford 2007; Tsitouras, "Runge-Kutta
    pairs of order 5(4) satisfying only the first column simplifying assumption", Comput. Math.
    Appl. 62 (2011); Cho et al., "Separable physics-informed neural networks", NeurIPS 2023.
    """
    u0 = _check_u0(u0)
    alpha = check_real("alpha", alpha, nonnegative=True)
    t_final = check_real("t_final", t_final, nonnegative=True)
    time_dtype = jnp.result_type(float)
    dtype = jnp.result_type(u0.dtype, time_dtype)  # diffrax promotes the state to time's dtype
    tolerance = DEFAULT_TOLERANCE if dtype == jnp.float64 else DEFAULT_TOLERANCE_FLOAT32
    rtol = tolerance if rtol is None else check_real("rtol", rtol, positive=True)
    atol = tolerance if atol is None else check_real("atol", atol, positive=True)
    max_steps = check_int("max_steps", max_steps)
    if source is not None and not callable(source):
        raise ValueError(f"`source` must be None or a callable source(t, x, y), got {source!r}.")
    if save_at is not None:
        save_at = check_save_at(save_at, t_final)
    if t_final == 0:
        return u0 if save_at is None else jnp.stack([u0] * len(save_at))
    n = u0.shape[0] + 1
    h = 2.0 / n
    nodes = _grid_nodes(n)[1:-1]
    x, y = (jnp.asarray(c, dtype) for c in np.meshgrid(nodes, nodes, indexing="ij"))
    ts = None if save_at is None else jnp.asarray(save_at, time_dtype)
    u = _integrate(
        u0.astype(dtype),
        source,
        x,
        y,
        jnp.asarray(alpha / (2 * h * h), dtype),
        jnp.asarray(t_final, time_dtype),
        ts,
        jnp.asarray(rtol, time_dtype),
        jnp.asarray(atol, time_dtype),
        max_steps=max_steps,
    )
    return u.astype(u0.dtype)


def _laplacian_of_square(u):
    """Five-point sum v_{i+1,j} + v_{i-1,j} + v_{i,j+1} + v_{i,j-1} - 4 v_{ij}, v = u^2, v = 0
    outside."""
    v = jnp.pad(u * u, 1)
    return v[2:, 1:-1] + v[:-2, 1:-1] + v[1:-1, 2:] + v[1:-1, :-2] - 4 * v[1:-1, 1:-1]


@eqx.filter_jit
def _integrate(u0, source, x, y, scale, t_final, ts, rtol, atol, *, max_steps):
    def vector_field(t, u, args):
        du = scale * _laplacian_of_square(u)
        if source is not None:
            du = du + jnp.broadcast_to(jnp.asarray(source(t, x, y), u.dtype), u.shape)
        return du

    controller = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=_PCOEFF, icoeff=_ICOEFF)
    if ts is not None:
        controller = diffrax.ClipStepSizeController(controller, step_ts=ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        t0=jnp.zeros_like(t_final),
        t1=t_final,
        dt0=None,
        y0=u0,
        saveat=diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    return sol.ys[0] if ts is None else sol.ys


def nonlinear_diffusion_reference(
    resolution: int = 100,
    num_times: int = 101,
    *,
    initial: str = "spinn",
    solve_resolution: int | None = None,
    richardson: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    dtype=jnp.float64,
) -> tuple[Float[Array, " x"], Float[Array, " y"], Float[Array, " t"], Float[Array, "t x y"]]:
    r"""The reference solution of the (2+1)-d nonlinear diffusion PINN benchmark.

    $u_t = 0.05\, (|\nabla u|^2 + u \Delta u)$ on $[-1, 1]^2 \times [0, 1]$, $u = 0$ on the
    boundary, and (SPINN's `diffusion3d`, also PIG's)
    $u_0 = 0.25\, e^{-((x - 0.3)^2 + (y - 0.2)^2) / 0.1} + 0.4\, e^{-15 ((x + 0.5)^2 +
    (y + 0.1)^2)} + 0.3\, e^{-20 (x^2 + (y + 0.5)^2)}$,
    solved with [`nonlinear_diffusion_solve`][] on a finer grid.

    $u_0$ does not vanish on the boundary (up to 9.4e-3 at $x = -1$, $y = -0.1$): the
    boundary condition holds for $t > 0$ only. As in the benchmark's test data (SPINN's
    `heat_gaussian_*.npy`: 101 times on the 101 x 101 nodes), the $t = 0$ slice is $u_0$ on all
    nodes and the later slices are 0 on the boundary.

    With `richardson` the solution is extrapolated from the solves at `solve_resolution` and
    `solve_resolution / 2`, $u = (4 u_{h} - u_{2h}) / 3$, which removes the $O(h^2)$ term.
    Relative $L^2$ errors over $t \in (0, 1]$ on the 101 x 101 nodes, measured against the
    extrapolation from 400 and 800: 4.0e-4 for a plain solve at $n = 100$, 1.0e-4 at 200,
    2.6e-5 at 400, 1.8e-6 for the default (extrapolation from 200 and 400; ~10 s on a 2-core
    CPU). SPINN's published data differ from this reference by 7.0e-4 relative $L^2$ (their
    peaks decay slightly slower; the largest differences are near the boundary at early
    times), which is not negligible next to the 1.4e-3 to 2.7e-3 reported for PIG.

    **Arguments:**

    - `resolution`: output grid of `resolution + 1` nodes per axis, $x_i = -1 + 2 i /
      \text{resolution}$; >= 2.
    - `num_times`: output times `linspace(0, 1, num_times)`; >= 2.
    - `initial`: the initial condition, `"spinn"` (the benchmark's).
    - `solve_resolution`: grid intervals of the (finer) solve, a multiple of `resolution` (of
      `2 * resolution` with `richardson`). Default `4 * resolution`.
    - `richardson`: extrapolate from `solve_resolution` and `solve_resolution / 2`.
    - `rtol`, `atol`: tolerances of the time integration, as in [`nonlinear_diffusion_solve`][].
    - `dtype`: float32 or float64, the dtype of the output (and of `u0`; see
      [`nonlinear_diffusion_solve`][] for the arithmetic).

    **Returns:**

    `(x, y, t, u)` with `x`, `y` of shape `(resolution + 1,)`, `t` of shape `(num_times,)` and
    `u` of shape `(num_times, resolution + 1, resolution + 1)`, `u[k, i, j]` $= u(t_k, x_i,
    y_j)$.
    """
    resolution = check_int("resolution", resolution, 2)
    num_times = check_int("num_times", num_times, 2)
    if initial not in INITIAL_CONDITIONS:
        raise ValueError(f"`initial` must be one of {INITIAL_CONDITIONS}, got {initial!r}.")
    if not isinstance(richardson, bool):
        raise ValueError(f"`richardson` must be a bool, got {richardson!r}.")
    if solve_resolution is None:
        solve_resolution = 4 * resolution
    solve_resolution = check_int("solve_resolution", solve_resolution, 2)
    multiple = 2 * resolution if richardson else resolution
    if solve_resolution % multiple:
        raise ValueError(
            f"`solve_resolution` must be a multiple of {multiple} (= "
            f"{'2 * ' if richardson else ''}resolution: the output nodes must be nodes of the "
            f"solve grid{'s' if richardson else ''}), got {solve_resolution}."
        )
    dtype = check_dtype(dtype)
    t = np.linspace(0.0, ND_T_FINAL, num_times)

    def solve(n):
        nodes = _grid_nodes(n)[1:-1]
        xx, yy = np.meshgrid(nodes, nodes, indexing="ij")
        u = nonlinear_diffusion_solve(
            jnp.asarray(_spinn_initial(xx, yy), dtype),
            alpha=ND_ALPHA,
            t_final=ND_T_FINAL,
            save_at=t[1:],
            rtol=rtol,
            atol=atol,
        )
        stride = n // resolution
        return jnp.pad(u, ((0, 0), (1, 1), (1, 1)))[:, ::stride, ::stride]

    u = solve(solve_resolution)
    if richardson:
        u = (4 * u - solve(solve_resolution // 2)) / 3
    x = _grid_nodes(resolution)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    u = jnp.concatenate([jnp.asarray(_spinn_initial(xx, yy), dtype)[None], u])
    x = jnp.asarray(x, dtype)
    return x, x, jnp.asarray(t, dtype), u
