"""Viscous Burgers' equation u_t + (u^2 / 2)_x = nu u_xx, periodic on [0, 1).

Fourier pseudo-spectral in space, exponential time differencing (ETDRK4) in time, and the FNO
paper's Burgers data set built on it.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validate import ArgumentError
from ._grf import grf
from ._recipes import _check_dtype, _check_int

# Default step of `burgers_solve`, for |u| = O(1) and nu >= ~0.01: for u0 = sin(2 pi x) the
# ETDRK4 time error at t = 1 is ~1e-12 relative (nu = 0.1 and 0.02).
DEFAULT_DT = 1e-3
NUM_CONTOUR_POINTS = 32
# Default step of the recipe: for the FNO recipe the float64 time error at dt = 5e-3 is ~5e-9
# relative, well below float32 rounding; see `burgers_recipe_sample`.
BURGERS_DT = 5e-3

# The recipe's constants (FNO paper, Section 5.1, and its data-generation code).
BURGERS_NU = 0.1
BURGERS_T_FINAL = 1.0
BURGERS_ALPHA = 2.0
BURGERS_TAU = 5.0
BURGERS_SIGMA = 25.0
BURGERS_SOLVE_RESOLUTION = 8192


def etdrk4_coefficients(
    linear: Float[ArrayLike, " n"], dt: float, num_points: int = NUM_CONTOUR_POINTS
) -> tuple[np.ndarray, ...]:
    r"""The ETDRK4 coefficients for a real diagonal linear part, in float64.

    For $z = h \lambda$ ($h$ = `dt`, $\lambda$ = `linear`) returns
    $E = e^{z}$, $E_2 = e^{z/2}$ and (Kassam & Trefethen 2005, eq. (2.5) and (2.6))

    - $Q = h\, (e^{z/2} - 1) / z$,
    - $f_1 = h\, (-4 - z + e^{z} (4 - 3z + z^2)) / z^3$,
    - $f_2 = h\, (2 + z + e^{z} (z - 2)) / z^3$,
    - $f_3 = h\, (-4 - 3z - z^2 + e^{z} (4 - z)) / z^3$.

    These formulas cancel catastrophically for small $|z|$ (and are 0/0 at $z = 0$). As
    proposed by Kassam & Trefethen, each function $g$ is evaluated instead as the mean of
    $g(z + e^{i\theta_j})$ over `num_points` points of the upper half of the unit circle around
    $z$ (Cauchy's integral formula by the trapezoid rule; $g$ is entire, so the rule converges
    geometrically; taking the real part accounts for the lower half when $z$ is real). With 32
    points the coefficients are accurate to about 1e-15 relative for every real $z \le 0$.

    **Arguments:**

    - `linear`: the real diagonal $\lambda$ of the linear operator (concrete values).
    - `dt`: the step $h$.
    - `num_points`: points on the half circle.

    **Returns:**

    `(E - 1, E2 - 1, Q, f1, f2, f3)`, float64 NumPy arrays of the shape of `linear`. The
    exponentials are returned minus one (`expm1`) so that a step can apply them as
    `y + (E - 1) y`: a rounded `E` close to 1 would otherwise be raised to the power of the
    number of steps, a systematic error of (number of steps) x (rounding of E), e.g. 1e-5
    after 1000 float32 steps.
    """
    z = dt * np.asarray(linear, dtype=np.float64)
    r = np.exp(1j * np.pi * (np.arange(1, num_points + 1) - 0.5) / num_points)
    lr = z[..., None] + r
    elr = np.exp(lr)

    def mean(g):
        return dt * np.real(np.mean(g, axis=-1))

    q = mean((np.exp(lr / 2) - 1) / lr)
    f1 = mean((-4 - lr + elr * (4 - 3 * lr + lr**2)) / lr**3)
    f2 = mean((2 + lr + elr * (lr - 2)) / lr**3)
    f3 = mean((-4 - 3 * lr - lr**2 + elr * (4 - lr)) / lr**3)
    return np.expm1(z), np.expm1(z / 2), q, f1, f2, f3


class ETDRK4(diffrax.AbstractSolver):
    r"""Fourth-order exponential time differencing Runge-Kutta for $y' = \Lambda y + N(t, y)$.

    Cox & Matthews (2002), "Exponential time differencing for stiff systems", J. Comput. Phys.
    176, eq. (26)-(29), with the coefficients of `etdrk4_coefficients` (Kassam & Trefethen
    2005, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci. Comput. 26). The linear part
    $\Lambda$ is a real diagonal held by the solver and integrated exactly; the term passed to
    `diffrax.diffeqsolve` (an `ODETerm`) is the nonlinear part $N$ alone:

    $a = E_2 y_n + Q N(t_n, y_n)$, $b = E_2 y_n + Q N(t_n + h/2, a)$,
    $c = E_2 a + Q (2 N(t_n + h/2, b) - N(t_n, y_n))$,
    $y_{n+1} = E y_n + f_1 N(t_n, y_n) + 2 f_2 (N(t_n + h/2, a) + N(t_n + h/2, b))
    + f_3 N(t_n + h, c)$.

    The coefficients depend on the step, so they are computed once (in float64, on the host)
    for the step `dt`: use the solver with `diffrax.ConstantStepSize()` and `dt0` such that
    every step equals `dt` (e.g. `dt0 = (t1 - t0) / num_steps`, `dt = dt0`). There is no
    embedded error estimate, hence no adaptive stepping. Dense output is linear between steps.

    **Arguments:**

    - `linear`: the diagonal of $\Lambda$, real, concrete, broadcastable against every leaf
      of the state.
    - `dt`: the step.
    - `dtype`: floating dtype the coefficients are cast to (that of the state).
    - `num_points`: contour points for the coefficients.
    """

    linear: Float[Array, "*modes"]
    dt: Float[Array, ""]
    expm1_full: Float[Array, "*modes"]
    expm1_half: Float[Array, "*modes"]
    q: Float[Array, "*modes"]
    f1: Float[Array, "*modes"]
    f2: Float[Array, "*modes"]
    f3: Float[Array, "*modes"]

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def __init__(self, linear, dt, *, dtype=None, num_points: int = NUM_CONTOUR_POINTS):
        linear = np.asarray(linear, dtype=np.float64)
        dt = float(dt)
        if not dt > 0:
            raise ArgumentError(f"`ETDRK4` needs a step `dt` > 0, got {dt!r}.", argument="dt")
        if dtype is None:
            dtype = jnp.result_type(float)
        coefficients = etdrk4_coefficients(linear, dt, num_points)
        self.linear = jnp.asarray(linear, dtype)
        self.dt = jnp.asarray(dt, jnp.result_type(float))
        self.expm1_full, self.expm1_half, self.q, self.f1, self.f2, self.f3 = (
            jnp.asarray(c, dtype) for c in coefficients
        )

    def order(self, terms):
        return 4

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del t1, solver_state, made_jump
        h = self.dt
        add = functools.partial(jtu.tree_map, lambda *xs: sum(xs[1:], xs[0]))

        def scale(c, tree):
            return jtu.tree_map(lambda x: c * x, tree)

        def propagate(em1, tree):
            # E y computed as y + (E - 1) y; see `etdrk4_coefficients`.
            return jtu.tree_map(lambda x: x + em1 * x, tree)

        def nonlinear(t, y):
            return terms.vf(t, y, args)

        n_y = nonlinear(t0, y0)
        a = add(propagate(self.expm1_half, y0), scale(self.q, n_y))
        n_a = nonlinear(t0 + h / 2, a)
        b = add(propagate(self.expm1_half, y0), scale(self.q, n_a))
        n_b = nonlinear(t0 + h / 2, b)
        c = add(
            propagate(self.expm1_half, a),
            scale(self.q, jtu.tree_map(lambda nb, ny: 2 * nb - ny, n_b, n_y)),
        )
        n_c = nonlinear(t0 + h, c)
        y1 = add(
            propagate(self.expm1_full, y0),
            scale(self.f1, n_y),
            scale(2 * self.f2, add(n_a, n_b)),
            scale(self.f3, n_c),
        )
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return jtu.tree_map(lambda y, n: self.linear * y + n, y0, terms.vf(t0, y0, args))


def _is_real_number(x) -> bool:
    return isinstance(x, numbers.Real) or (
        isinstance(x, np.ndarray | np.generic) and x.ndim == 0 and np.isrealobj(x)
    )


def _check_float(name, value, *, positive=False, nonnegative=False):
    if not _is_real_number(value):
        raise ArgumentError(
            f"`{name}` must be a concrete real number (it sets up the solver on the host; "
            f"mark it static under `jax.jit`), got {value!r}.",
            argument=name,
        )
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        allowed = "> 0" if positive else ">= 0"
        raise ArgumentError(
            f"`{name}` must be a finite number {allowed}, got {value!r}.", argument=name
        )
    return value


def _num_steps(t_final, dt, num_steps, default_dt=DEFAULT_DT):
    if dt is not None and num_steps is not None:
        raise ArgumentError(
            f"Give at most one of `dt` and `num_steps`, got dt={dt!r} and num_steps={num_steps!r}.",
            argument="dt",
        )
    if num_steps is not None:
        return _check_int("num_steps", num_steps)
    dt = default_dt if dt is None else _check_float("dt", dt, positive=True)
    # The largest step <= dt that divides t_final (up to rounding of t_final / dt).
    return max(1, math.ceil(t_final / dt * (1 - 1e-12)))


def _check_ts(ts, t_final, num_steps):
    try:
        ts = np.asarray(ts, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError):
        raise ArgumentError(
            f"`ts` must be None or a concrete 1-D sequence of times, got {ts!r}.", argument="ts"
        ) from None
    if ts.ndim != 1 or ts.size == 0:
        raise ArgumentError(
            f"`ts` must be None or a non-empty 1-D sequence, got shape {ts.shape}.", argument="ts"
        )
    if not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(ts > t_final * (1 + 1e-12)):
        raise ArgumentError(
            f"`ts` must lie in [0, t_final] = [0, {t_final}], got {ts}.", argument="ts"
        )
    if np.any(np.diff(ts) < 0):
        raise ArgumentError(f"`ts` must be non-decreasing, got {ts}.", argument="ts")
    h = t_final / num_steps if num_steps else 0.0
    index = np.rint(ts / h).astype(int) if h else np.zeros(ts.shape, int)
    if h and np.any(np.abs(ts - index * h) > 1e-9 * max(t_final, 1.0)):
        raise ArgumentError(
            f"`ts` must lie on the step grid t_final * i / num_steps = {t_final} * i / "
            f"{num_steps}; choose `num_steps` (or `dt`) so that every saved time is a step "
            f"(e.g. num_steps a multiple of the number of equal intervals), got {ts}.",
            argument="ts",
        )
    return tuple(int(i) for i in index)


def _check_u0(u0):
    if not hasattr(u0, "shape") or not hasattr(u0, "dtype"):
        u0 = jnp.asarray(u0)
    if u0.ndim != 1:
        raise ArgumentError(
            f"`u0` must be a 1-D array of grid values, got shape {u0.shape}.", argument="u0"
        )
    s = u0.shape[0]
    if s < 4 or s % 2:
        raise ArgumentError(
            f"`u0` must have an even number of points >= 4, got {s}.", argument="u0"
        )
    dtype = u0.dtype
    if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
        dtype = jnp.result_type(float)
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ArgumentError(
            f"`u0` must be real float32 or float64, got dtype {u0.dtype}.", argument="u0"
        )
    return jnp.asarray(u0, dtype)


def burgers_solve(
    u0: Float[ArrayLike, " s"],
    *,
    nu: float,
    t_final: float,
    dt: float | None = None,
    num_steps: int | None = None,
    ts: Sequence[float] | None = None,
) -> Float[Array, " s"] | Float[Array, "times s"]:
    r"""Solves the viscous Burgers equation $u_t + (u^2/2)_x = \nu u_{xx}$, periodic on $[0, 1)$.

    **Space.** Fourier pseudo-spectral on the grid $x_j = j / s$: with
    $\hat u_k = \sum_j u_j e^{-2\pi i j k / s}$ (`rfft`), the semi-discrete system is
    $\hat u_k' = \lambda_k \hat u_k + N_k(\hat u)$ with $\lambda_k = -\nu (2\pi k)^2$ and
    $N_k = -\tfrac12 (2\pi i k)\, \mathcal F[u^2]_k$. The product is dealiased by the 2/3 rule:
    only the modes $3k < s$ take part in it ($u$ is synthesised from them, and $N$ is kept on
    them), so the quadratic term is computed without aliasing (Orszag 1971). The modes
    $3k \ge s$ only decay, $\hat u_k(t) = e^{\lambda_k t} \hat u_k(0)$, which is applied
    exactly at the output times.

    **Time.** ETDRK4 ([`ETDRK4`][], Cox & Matthews 2002) in `diffrax.diffeqsolve` with a
    constant step: the stiff diagonal part $e^{\lambda_k h}$ is integrated exactly (phi
    functions by Kassam & Trefethen's contour integrals in float64, cast to the dtype of
    `u0`), so the step is set by the accuracy and the advective CFL of the slow modes, not by
    $\nu k_{\max}^2$ (an explicit Runge-Kutta needs $h < 2.8 / (\nu (2\pi k_{\max})^2)$,
    ~1e-7 for $\nu = 0.1$ at $s = 8192$; ETDRK4 is fourth order in $h$, with 1e-3 giving
    ~1e-9 relative time error for the FNO recipe). Diffrax's IMEX `KenCarp4` is also
    A-stable but needs a Newton solve with a dense Jacobian of size $s/3$ per stage.

    **Arguments:**

    - `u0`: initial values on $x_j = j / s$, `s` even and >= 4; float32 or float64 (the solve
      runs in this dtype).
    - `nu`: viscosity > 0 (a concrete number).
    - `t_final`: final time >= 0 (a concrete number).
    - `dt`: largest step allowed; the step is `t_final / num_steps` with `num_steps =
      ceil(t_final / dt)`. Default 1e-3 (suited to $|u| = O(1)$, $\nu \gtrsim 10^{-2}$;
      halve it until the result stops changing in other regimes).
    - `num_steps`: number of equal steps instead of `dt` (give at most one of the two).
    - `ts`: optional non-decreasing times in `[0, t_final]` at which to return the solution;
      each must be a step time `t_final * i / num_steps`.

    **Returns:**

    $u(t_{\text{final}})$ of shape `(s,)`, or the solution at `ts`, shape `(len(ts), s)`.

    Differentiable with respect to `u0` (reverse mode through diffrax's checkpointed loop),
    works under `jax.jit` (with `nu`, `t_final`, `dt`, `num_steps`, `ts` static) and
    `jax.vmap` over `u0`.
    """
    u0 = _check_u0(u0)
    nu = _check_float("nu", nu, positive=True)
    t_final = _check_float("t_final", t_final, nonnegative=True)
    num_steps = 0 if t_final == 0 else _num_steps(t_final, dt, num_steps)
    save_steps = None if ts is None else _check_ts(ts, t_final, num_steps)
    return _solve(u0, nu=nu, t_final=t_final, num_steps=num_steps, save_steps=save_steps)


def _spectral_operators(s: int, nu: float):
    """Wavenumbers 2 pi k and eigenvalues -nu (2 pi k)^2 of the rfft modes, float64 NumPy."""
    kappa = 2 * np.pi * np.arange(s // 2 + 1, dtype=np.float64)
    return kappa, -nu * kappa**2


def _nonlinear(half_kappa, s):
    """N(v) = -i (kappa / 2) rfft(irfft(v)^2) on the retained modes, with v = (re, im)."""

    def vector_field(t, y, args):
        re, im = y
        # irfft zero-pads the retained modes to the s // 2 + 1 of the full grid.
        u = jnp.fft.irfft(jax.lax.complex(re, im), n=s)
        w = jnp.fft.rfft(u * u)[..., : re.shape[-1]]
        # -i c (a + i b) = c b - i c a.
        return half_kappa * w.imag, -half_kappa * w.real

    return vector_field


def _max_steps(num_steps: int) -> int:
    # The loop runs exactly `num_steps` steps (checked); `max_steps` only bounds it and sets the
    # checkpoints of reverse mode. Rounding it up to a power of two lets solves with other
    # step counts (and any nu, t_final) reuse the compiled program.
    return max(16, 1 << (num_steps - 1).bit_length())


def _solve(u0, *, nu, t_final, num_steps, save_steps):
    """Host side of the solve: the coefficients (float64, then cast) for the compiled loop.

    `u0` may carry leading batch axes: every operation acts on the last axis.
    """
    s = u0.shape[-1]
    dtype = u0.dtype
    if save_steps is None:
        times = np.array([t_final])
    else:
        times = t_final * np.asarray(save_steps, dtype=np.float64) / max(num_steps, 1)
    if num_steps == 0:
        return u0 if save_steps is None else jnp.stack([u0] * len(times), axis=-2)
    kappa, linear = _spectral_operators(s, nu)
    m = (s - 1) // 3 + 1  # retained modes k = 0..m-1, i.e. 3k < s
    time_dtype = jnp.result_type(float)
    return _integrate(
        u0,
        ETDRK4(linear[:m], t_final / num_steps, dtype=dtype),
        jnp.asarray(0.5 * kappa[:m], dtype),
        # The modes 3k >= s do not meet the nonlinearity: exact decay to each output time.
        jnp.asarray(np.exp(np.outer(times, linear[m:])), dtype),
        jnp.asarray(t_final, time_dtype),
        jnp.asarray(num_steps),
        None if save_steps is None else jnp.asarray(times, time_dtype),
        _max_steps(num_steps),
    )


@functools.partial(jax.jit, static_argnums=(7,))
def _integrate(u0, solver, half_kappa, decay, t_final, num_steps, ts, max_steps):
    s = u0.shape[-1]
    m = half_kappa.shape[0]
    v0 = jnp.fft.rfft(u0)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_nonlinear(half_kappa, s)),
        solver,
        t0=jnp.zeros_like(t_final),
        t1=t_final,
        dt0=t_final / num_steps,
        y0=(v0.real[..., :m], v0.imag[..., :m]),
        saveat=diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max_steps,
    )
    re, im = (jnp.moveaxis(x, 0, -2) for x in sol.ys)
    re = eqx.error_if(
        re,
        sol.stats["num_steps"] != num_steps,
        "`burgers_solve` took another number of steps than the ETDRK4 coefficients assume.",
    )
    high = v0[..., None, m:] * decay
    u = jnp.fft.irfft(jnp.concatenate([jax.lax.complex(re, im), high], axis=-1), n=s)
    u = u.astype(u0.dtype)
    return u[..., 0, :] if ts is None else u


def burgers_resolutions(resolution: int, solve_resolution: int = BURGERS_SOLVE_RESOLUTION):
    """Checks the sample and solve resolutions of the Burgers recipe and returns the stride.

    **Arguments:**

    - `resolution`: points of the returned samples, >= 2.
    - `solve_resolution`: points of the solve grid, even, >= 4, a multiple of `resolution`.

    **Returns:**

    `(solve_resolution, r)` with `solve_resolution = r * resolution`: the sample grid
    $x_j = j / \\text{resolution}$ is every `r`-th point of the solve grid.
    """
    resolution = _check_int("resolution", resolution, minimum=2)
    solve_resolution = _check_int("solve_resolution", solve_resolution, minimum=4)
    if solve_resolution % 2:
        raise ArgumentError(
            f"`solve_resolution` must be even, got {solve_resolution}.", argument="solve_resolution"
        )
    if solve_resolution % resolution:
        raise ArgumentError(
            f"`resolution` must divide `solve_resolution` = {solve_resolution} (the samples are "
            f"every r-th point of the solve grid), got {resolution}.",
            argument="resolution",
        )
    return solve_resolution, solve_resolution // resolution


def _recipe_options(resolution, solve_resolution, nu, t_final, dt):
    solve_resolution, stride = burgers_resolutions(resolution, solve_resolution)
    nu = _check_float("nu", nu, positive=True)
    t_final = _check_float("t_final", t_final, nonnegative=True)
    num_steps = 0 if t_final == 0 else _num_steps(t_final, dt, None, BURGERS_DT)
    return solve_resolution, stride, nu, t_final, num_steps


def _recipe_sample(key, *, stride, solve_resolution, nu, t_final, num_steps, dtype):
    # Batch-agnostic: `key` may be a batch of keys; the solve then runs on the whole batch.
    field = functools.partial(
        grf,
        shape=(solve_resolution,),
        alpha=BURGERS_ALPHA,
        tau=BURGERS_TAU,
        sigma=BURGERS_SIGMA,
        boundary="periodic",
        dtype=dtype,
    )
    u0 = jax.vmap(field)(key) if key.ndim else field(key)
    u = _solve(u0, nu=nu, t_final=t_final, num_steps=num_steps, save_steps=None)
    return u0[..., ::stride], u[..., ::stride]


def burgers_recipe_sample(
    key: PRNGKeyArray,
    resolution: int,
    *,
    solve_resolution: int = BURGERS_SOLVE_RESOLUTION,
    nu: float = BURGERS_NU,
    t_final: float = BURGERS_T_FINAL,
    dt: float | None = None,
    dtype=jnp.float32,
) -> tuple[Float[Array, " resolution"], Float[Array, " resolution"]]:
    r"""Draws one `(u0, u)` pair of the FNO paper's Burgers data set.

    $u_t + (u^2/2)_x = \nu u_{xx}$ on the periodic unit interval, $\nu = 0.1$, with
    $u_0 \sim N(0, 625 (-\Delta + 25 I)^{-2})$ ([`grf`][] with `alpha=2, tau=5, sigma=25`,
    periodic, constant mode included), solved to $t = 1$ with [`burgers_solve`][] on
    `solve_resolution` points and subsampled to every `r`-th point.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `resolution`: points of the output; must divide `solve_resolution`.
    - `solve_resolution`: points of the solve (8192 in the paper).
    - `nu`, `t_final`: viscosity and final time.
    - `dt`: largest time step; default 5e-3 (200 ETDRK4 steps to $t = 1$). Over eight
      recipe samples the float32 solution differs from a float64 solution from the same
      `u0` with dt = 1e-4 by 4.4e-8 relative L2 on average (at most 8e-8), i.e. float32
      rounding: the time error of dt = 5e-3 is 5e-9 on average (at most 1.7e-8), that of
      dt = 1e-2 is 5e-8 (at most 1.3e-7).
    - `dtype`: float32 or float64, the dtype of the field and of the solve.

    **Returns:**

    `(u0, u)`, each of shape `(resolution,)`, on the grid $x_j = j / \text{resolution}$.
    """
    solve_resolution, stride, nu, t_final, num_steps = _recipe_options(
        resolution, solve_resolution, nu, t_final, dt
    )
    dtype = _check_dtype(dtype)
    return _recipe_sample(
        key,
        stride=stride,
        solve_resolution=solve_resolution,
        nu=nu,
        t_final=t_final,
        num_steps=num_steps,
        dtype=np.dtype(dtype),
    )


@functools.partial(jax.jit, static_argnames=("options",))
def _burgers_chunk(keys, options):
    return _recipe_sample(keys, **dict(options))


def generate_burgers(
    key: PRNGKeyArray,
    n: int,
    resolution: int,
    *,
    solve_resolution: int = BURGERS_SOLVE_RESOLUTION,
    chunk_size: int = 64,
    nu: float = BURGERS_NU,
    t_final: float = BURGERS_T_FINAL,
    dt: float | None = None,
    dtype=jnp.float32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generates `n` samples of the Burgers recipe ([`burgers_recipe_sample`][]) chunk by chunk.

    Sample `i` is drawn with `jax.random.split(key, n)[i]`. Each chunk is one jitted call
    that solves its samples together (one batched solve, every operation along the last
    axis: batched FFTs are ~3x faster per transform than one at a time on CPU, so this beats
    a sequential `jax.lax.map`); the last chunk is padded to `chunk_size` (so nothing
    recompiles) and trimmed. The samples do not depend on `chunk_size`.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `n`: number of samples, >= 1.
    - `chunk_size`: samples per batched solve (memory ~ 20 * chunk_size * solve_resolution
      floats).
    - `resolution`, `solve_resolution`, `nu`, `t_final`, `dt`, `dtype`: as for
      [`burgers_recipe_sample`][].

    **Returns:**

    An iterator over `(inputs, outputs)`, float32 NumPy arrays of shape
    `(c, 1, resolution)` (channels first: one channel, `u0` and `u(t_final)`) with
    `c = chunk_size` except possibly for the last chunk. Arguments are checked at once, the
    samples are computed lazily.
    """
    n = _check_int("n", n)
    chunk_size = _check_int("chunk_size", chunk_size)
    solve_resolution, stride, nu, t_final, num_steps = _recipe_options(
        resolution, solve_resolution, nu, t_final, dt
    )
    dtype = _check_dtype(dtype)
    options = (
        ("stride", stride),
        ("solve_resolution", solve_resolution),
        ("nu", nu),
        ("t_final", t_final),
        ("num_steps", num_steps),
        ("dtype", np.dtype(dtype)),
    )
    keys = jax.random.split(key, n)
    chunk_size = min(chunk_size, n)

    def chunks():
        for start in range(0, n, chunk_size):
            count = min(chunk_size, n - start)
            index = np.minimum(np.arange(start, start + chunk_size), n - 1)
            u0, u = _burgers_chunk(keys[index], options)
            yield (
                np.asarray(u0[:count, None], dtype=np.float32),
                np.asarray(u[:count, None], dtype=np.float32),
            )

    return chunks()


def burgers_recipe_info(
    resolution: int,
    *,
    solve_resolution: int = BURGERS_SOLVE_RESOLUTION,
    nu: float = BURGERS_NU,
    t_final: float = BURGERS_T_FINAL,
    dt: float | None = None,
    dtype=jnp.float32,
) -> dict[str, Any]:
    """A JSON-serialisable description of the Burgers recipe, to be stored with a data set.

    **Arguments:** as for [`burgers_recipe_sample`][].

    **Returns:**

    A dict of plain Python values (str, int, float, bool, dict).
    """
    solve_resolution, stride, nu, t_final, num_steps = _recipe_options(
        resolution, solve_resolution, nu, t_final, dt
    )
    dtype = _check_dtype(dtype)
    return {
        "recipe": "burgers",
        "reference": "Li et al., Fourier Neural Operator for Parametric PDEs, ICLR 2021, Sec. 5.1",
        "equation": "u_t + (u^2/2)_x = nu u_xx on the periodic interval [0,1), u(0) = u0",
        "nu": nu,
        "t_final": t_final,
        "initial_condition": {
            "field": "u0 ~ N(0, sigma^2 (-Laplacian + tau^2 I)^-alpha), periodic",
            "alpha": BURGERS_ALPHA,
            "tau": BURGERS_TAU,
            "sigma": BURGERS_SIGMA,
            "boundary": "periodic",
            "expansion": "Fourier modes of the solve grid (rfft), constant mode included",
        },
        "grid": "x_j = j / s, j = 0..s-1",
        "resolution": int(resolution),
        "solve_resolution": solve_resolution,
        "subsample_stride": stride,
        "discretisation": (
            "Fourier pseudo-spectral (rfft) on the solve grid; u^2 dealiased by the 2/3 rule "
            "(only modes 3k < s enter the product and are evolved by it; the others decay "
            "exactly)"
        ),
        "solver": {
            "method": (
                "ETDRK4 (Cox & Matthews 2002), phi functions by contour integrals (Kassam & "
                "Trefethen 2005, 32 points) in float64, in diffrax.diffeqsolve with a constant "
                "step"
            ),
            "num_steps": num_steps,
            "dt": t_final / num_steps if num_steps else 0.0,
            "dtype": dtype,
        },
        "keys": "sample i uses jax.random.split(key, n)[i]",
        "stored_dtype": "float32",
        "layout": "inputs u0 and outputs u(t_final), each (n, 1, resolution), channels first",
    }


def burgers_generation_cost(chunk: int, resolution: int, options: dict) -> tuple[int, int]:
    """The solve grid of the Burgers recipe and the floats held while `chunk` samples are
    generated: ~20 solve per sample (the ETDRK4 stages). Arithmetic only, for the size budget
    (`sciml._catalogue.Recipe.coster`)."""
    solve = max(options.get("solve_resolution") or BURGERS_SOLVE_RESOLUTION, resolution)
    return solve, 20 * chunk * solve
