"""Allen-Cahn equation u_t = eps u_xx + gamma (u - u^3), periodic in x.

Fourier pseudo-spectral in space, ETDRK4 in time ([`ETDRK4`][]), and the reference solution of
the 1-D Allen-Cahn PINN benchmark (JAX-PI, PirateNet, PIG).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ..._validate import check_int, max_steps
from .._checks import check_dtype, check_real, check_save_at, real_float_array
from .etdrk4 import ETDRK4

# The benchmark: u_t - 1e-4 u_xx + 5 u^3 - 5 u = 0 on x in [-1, 1] (periodic), t in [0, 1],
# u(0, x) = x^2 cos(pi x) (Raissi et al. 2019; JAX-PI's examples/allen_cahn).
AC_EPS = 1e-4
AC_GAMMA = 5.0
AC_T_FINAL = 1.0
AC_LENGTH = 2.0
# Default step: for the benchmark the ETDRK4 time error at dt = 1e-3 is ~3e-11 relative L2 over
# the whole trajectory (order 4.0: 7e-9, 4e-10, 3e-11, 2e-12 for dt = 5e-3 ... 6.25e-4).
DEFAULT_DT = 1e-3
# Default solve grid of the reference. u0 = x^2 cos(pi x) has a kink at x = +-1 (u0' jumps from
# -2 to 2 across the periodic boundary), so the spatial error falls only as O(n^-2): 1.5e-5
# relative L2 over the 201 x 512 benchmark grid at n = 512, 3.0e-7 at 4096, 7e-8 at 8192.
AC_SOLVE_RESOLUTION = 8192
# Largest denominator tried when the default step count is fitted to the saved times.
_MAX_DENOMINATOR = 10**6


def _check_u0(u0):
    if not hasattr(u0, "shape") or not hasattr(u0, "dtype"):
        u0 = jnp.asarray(u0)
    if u0.ndim != 1:
        raise ValueError(f"`u0` must be a 1-D array of grid values, got shape {u0.shape}.")
    if u0.shape[0] < 4:
        raise ValueError(f"`u0` must have at least 4 points, got {u0.shape[0]}.")
    return real_float_array("u0", u0)


def _fractions(save_at, t_final):
    """`save_at / t_final` as fractions with denominators <= 1e6, or None if one is not."""
    fractions = [Fraction(float(s / t_final)).limit_denominator(_MAX_DENOMINATOR) for s in save_at]
    if any(abs(float(f) - s / t_final) > 1e-12 for f, s in zip(fractions, save_at, strict=True)):
        return None
    return fractions


def _step_count(t_final, num_steps, save_at):
    """The number of equal steps and the step index of every saved time."""
    if t_final == 0:
        if num_steps is not None:
            check_int("num_steps", num_steps)
        return 0, None if save_at is None else np.zeros(save_at.shape, int)
    if num_steps is None:
        num_steps = max(1, math.ceil(t_final / DEFAULT_DT * (1 - 1e-12)))
        if save_at is not None:
            # The smallest multiple q of steps that puts every saved time on the step grid,
            # then the smallest multiple of q with a step <= DEFAULT_DT.
            fractions = _fractions(save_at, t_final)
            if fractions is None:
                raise ValueError(
                    "`save_at` / t_final must be fractions with denominators <= 1e6 for the "
                    f"default step count; give `num_steps` explicitly, got save_at={save_at}."
                )
            q = math.lcm(*(f.denominator for f in fractions))
            if q > 10 * num_steps:
                raise ValueError(
                    f"`save_at` needs a multiple of {q} steps to lie on the step grid, over 10x "
                    f"the {num_steps} steps of the default step {DEFAULT_DT}; give `num_steps` "
                    f"explicitly, got save_at={save_at}."
                )
            num_steps = q * math.ceil(num_steps / q)
    else:
        num_steps = check_int("num_steps", num_steps)
    if save_at is None:
        return num_steps, None
    h = t_final / num_steps
    index = np.rint(save_at / h).astype(int)
    if np.any(np.abs(save_at - index * h) > 1e-9 * t_final):
        raise ValueError(
            f"`save_at` must lie on the step grid t_final * i / num_steps = {t_final} * i / "
            f"{num_steps}; choose `num_steps` so that every saved time is a step (e.g. a "
            f"multiple of the number of equal intervals), got {save_at}."
        )
    return num_steps, index


def allen_cahn_solve(
    u0: Float[ArrayLike, " n"],
    *,
    eps: float = AC_EPS,
    gamma: float = AC_GAMMA,
    t_final: float = AC_T_FINAL,
    num_steps: int | None = None,
    save_at: Sequence[int | float] | Real[ArrayLike, " times"] | None = None,
    length: float = AC_LENGTH,
) -> Float[Array, " n"] | Float[Array, "times n"]:
    r"""Solves the Allen-Cahn equation $u_t = \varepsilon u_{xx} + \gamma (u - u^3)$, periodic.

    On a periodic interval of length $L$ (`length`) sampled at $x_j = -1 + j L / n$,
    $j = 0, \dots, n - 1$; the defaults are the benchmark's $u_t - 10^{-4} u_{xx} + 5 u^3 - 5 u
    = 0$ on $[-1, 1]$ (Raissi et al. 2019; JAX-PI, Wang et al. 2023).

    **Space.** Fourier pseudo-spectral: with $\hat u_k = \sum_j u_j e^{-2\pi i j k / n}$
    (`rfft`) and $\kappa_k = 2 \pi k / L$, the semi-discrete system is $\hat u_k' = \lambda_k
    \hat u_k + N_k$ with $\lambda_k = \gamma - \varepsilon \kappa_k^2$ and $N_k = -\gamma
    \mathcal F[u^3]_k$ (the split of Kassam & Trefethen 2005 and Chebfun's `spin`). The cube is
    formed on the grid without dealiasing: the grid must resolve the solution, and then the
    aliased modes are as small as the truncated ones. For the benchmark the interfaces have
    width $\sqrt{2 \varepsilon / \gamma} \approx 0.0063$ and the initial condition a kink at
    $x = \pm 1$, see [`allen_cahn_reference`][] for the resolution this needs.

    **Time.** ETDRK4 ([`ETDRK4`][], Cox & Matthews 2002) with `num_steps` equal steps in
    `diffrax.diffeqsolve`: the linear part, stiff through $\varepsilon \kappa_k^2$, is
    integrated exactly, so the step is set by the accuracy of the reaction term alone. For
    $\gamma = 0$ the solve is the exact Fourier decay $\hat u_k(t) = e^{-\varepsilon
    \kappa_k^2 t} \hat u_k(0)$ up to rounding.

    **Arguments:**

    - `u0`: initial values on the grid, at least 4 points (even or odd); float32 or float64,
      the dtype of the result. The arithmetic runs in the dtype of the time variable, float64
      when `jax_enable_x64` is on (diffrax promotes the state to it), float32 otherwise (8.6e-6
      relative error for the benchmark at n = 2048).
    - `eps`: diffusion coefficient $\varepsilon \ge 0$.
    - `gamma`: reaction coefficient $\gamma \ge 0$.
    - `t_final`: final time $\ge 0$.
    - `num_steps`: number of equal ETDRK4 steps. Default: the smallest count with a step
      $\le 10^{-3}$ that puts every time of `save_at` on the step grid (1000 for the
      benchmark's `linspace(0, 1, 201)`; the time error is then ~3e-11).
    - `save_at`: optional non-decreasing times in `[0, t_final]` at which to return the
      solution; each must be a step time `t_final * i / num_steps`.
    - `length`: period $L > 0$ of the interval.

    `eps`, `gamma`, `t_final`, `num_steps`, `save_at` and `length` must be concrete (static
    under `jax.jit`): they set the ETDRK4 coefficients, computed in float64 on the host.

    **Returns:**

    $u(t_{\text{final}})$ of shape `(n,)`, or the solution at `save_at`, shape
    `(len(save_at), n)`.

    Differentiable with respect to `u0`, works under `jax.jit` and `jax.vmap` over `u0`.

    **References:** Cox & Matthews, "Exponential time differencing for stiff systems", J.
    Comput. Phys. 176 (2002); Kassam & Trefethen, "Fourth-order time-stepping for stiff PDEs",
    SIAM J. Sci. Comput. 26 (2005).
    """
    u0 = _check_u0(u0)
    eps = check_real("eps", eps, nonnegative=True)
    gamma = check_real("gamma", gamma, nonnegative=True)
    t_final = check_real("t_final", t_final, nonnegative=True)
    length = check_real("length", length, positive=True)
    if save_at is not None:
        save_at = check_save_at(save_at, t_final)
    num_steps, save_steps = _step_count(t_final, num_steps, save_at)
    if num_steps == 0:
        return u0 if save_at is None else jnp.stack([u0] * len(save_at))
    n = u0.shape[0]
    kappa = 2 * np.pi * np.arange(n // 2 + 1, dtype=np.float64) / length
    time_dtype = jnp.result_type(float)
    # diffrax promotes the state to the time dtype: compute in it, return in u0's dtype.
    dtype = jnp.result_type(u0.dtype, time_dtype)
    times = None
    if save_steps is not None:
        times = jnp.asarray(t_final * save_steps / num_steps, time_dtype)
    return _integrate(
        u0,
        ETDRK4(gamma - eps * kappa**2, t_final / num_steps, dtype=dtype),
        jnp.asarray(gamma, dtype),
        jnp.asarray(t_final, time_dtype),
        jnp.asarray(num_steps),
        times,
        # The loop runs exactly `num_steps` steps (checked); `max_steps` only bounds it.
        max_steps(num_steps, 1024),
    )


def _cubic(n):
    """N(v) = -gamma rfft(irfft(v)^3), with v = (re, im) and gamma passed as `args`."""

    def vector_field(t, y, gamma):
        u = jnp.fft.irfft(jax.lax.complex(*y), n=n)
        w = -gamma * jnp.fft.rfft(u * u * u)
        return w.real, w.imag

    return vector_field


@functools.partial(jax.jit, static_argnums=(6,))
def _integrate(u0, solver, gamma, t_final, num_steps, ts, max_steps):
    n = u0.shape[-1]
    v0 = jnp.fft.rfft(u0.astype(gamma.dtype))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_cubic(n)),
        solver,
        t0=jnp.zeros_like(t_final),
        t1=t_final,
        dt0=t_final / num_steps,
        y0=(v0.real, v0.imag),
        args=gamma,
        saveat=diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max_steps,
    )
    re = eqx.error_if(
        sol.ys[0],
        sol.stats["num_steps"] != num_steps,
        "`allen_cahn_solve` took another number of steps than the ETDRK4 coefficients assume.",
    )
    u = jnp.fft.irfft(jax.lax.complex(re, sol.ys[1]), n=n).astype(u0.dtype)
    return u[0] if ts is None else u


def allen_cahn_reference(
    resolution: int = 512,
    num_times: int = 201,
    *,
    solve_resolution: int | None = None,
    num_steps: int | None = None,
    endpoint: bool = False,
    dtype=jnp.float64,
) -> tuple[Float[Array, " x"], Float[Array, " t"], Float[Array, "t x"]]:
    r"""The reference solution of the 1-D Allen-Cahn PINN benchmark.

    $u_t - 10^{-4} u_{xx} + 5 u^3 - 5 u = 0$, $x \in [-1, 1]$ periodic, $t \in [0, 1]$,
    $u(0, x) = x^2 \cos(\pi x)$, solved with [`allen_cahn_solve`][] on `solve_resolution`
    points and subsampled.

    The published reference (JAX-PI's `allen_cahn.mat`, used by JAX-PI, PirateNet and PIG) is
    Chebfun's `spin` on 511 Fourier points with $\Delta t = 10^{-5}$, stored at
    `t = linspace(0, 1, 201)` on `x = linspace(-1, 1, 512)` (the periodic endpoint repeated):
    `allen_cahn_reference(511, 201, endpoint=True)` has that layout. Because $u_0' $ jumps
    from $-2$ to $2$ across $x = \pm 1$, the solution keeps a (diffusively smoothed) kink there
    for $t \lesssim 0.3$ and the Fourier series converges only as $O(n^{-2})$: over the
    201-time benchmark grid the relative $L^2$ error of an $n$-point solve is 1.5e-5 at
    $n = 512$ (the published data differ from this function's default by 1.5e-5), 4.9e-6 at
    1024, 3.0e-7 at 4096 and 7e-8 at 8192 (the default); at $t = 1$, once the kink has
    diffused, it is 2e-7 at 512 and 5e-11 at 2048.

    **Arguments:**

    - `resolution`: output points $x_j = -1 + 2 j / \text{resolution}$, $j = 0, \dots,
      \text{resolution} - 1$; >= 2.
    - `num_times`: output times `linspace(0, 1, num_times)`; >= 2.
    - `solve_resolution`: points of the solve, a multiple of `resolution`, >= 4. Default: the
      smallest multiple >= 8192.
    - `num_steps`: ETDRK4 steps, a multiple of `num_times - 1`; default as in
      [`allen_cahn_solve`][] (1000 for 201 times).
    - `endpoint`: also return $x = 1$ (a copy of $x = -1$) as the last column.
    - `dtype`: float32 or float64, the dtype of the output (and of `u0`; see
      [`allen_cahn_solve`][] for the arithmetic).

    **Returns:**

    `(x, t, u)`: `x` of shape `(resolution,)` (`resolution + 1` with `endpoint`), `t` of shape
    `(num_times,)` and `u` of shape `(num_times, len(x))`, `u[i, j]` $= u(t_i, x_j)$.
    """
    resolution = check_int("resolution", resolution, 2)
    num_times = check_int("num_times", num_times, 2)
    if solve_resolution is None:
        solve_resolution = resolution * math.ceil(AC_SOLVE_RESOLUTION / resolution)
    solve_resolution = check_int("solve_resolution", solve_resolution, 4)
    if solve_resolution % resolution:
        raise ValueError(
            f"`solve_resolution` must be a multiple of `resolution` = {resolution} (the output "
            f"is every r-th point of the solve grid), got {solve_resolution}."
        )
    if not isinstance(endpoint, bool):
        raise ValueError(f"`endpoint` must be a bool, got {endpoint!r}.")
    dtype = check_dtype(dtype)
    x = -1 + 2 * np.arange(solve_resolution, dtype=np.float64) / solve_resolution
    t = np.linspace(0.0, AC_T_FINAL, num_times)
    u = allen_cahn_solve(
        jnp.asarray(x**2 * np.cos(np.pi * x), dtype),
        t_final=AC_T_FINAL,
        num_steps=num_steps,
        save_at=t,
    )
    stride = solve_resolution // resolution
    x, u = x[::stride], u[:, ::stride]
    if endpoint:
        x = np.append(x, 1.0)
        u = jnp.concatenate([u, u[:, :1]], axis=1)
    return jnp.asarray(x, dtype), jnp.asarray(t, dtype), u
