"""Viscous Burgers' equation u_t + (u^2 / 2)_x = nu u_xx, periodic on [0, 1).

Fourier pseudo-spectral in space, exponential time differencing ([`ETDRK4`][]) in time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ..._validate import ArgumentError, check_int, max_steps
from .._checks import check_real, check_times, real_float_array
from .etdrk4 import ETDRK4

# Default step of `burgers_solve`, for |u| = O(1) and nu >= ~0.01: for u0 = sin(2 pi x) the
# ETDRK4 time error at t = 1 is ~1e-12 relative (nu = 0.1 and 0.02).
DEFAULT_DT = 1e-3


def step_count(t_final: float, dt, num_steps, default_dt: float = DEFAULT_DT) -> int:
    """The number of equal steps to `t_final` (> 0) from at most one of `dt` (the largest step
    allowed, `default_dt` if neither is given) and `num_steps`."""
    if dt is not None and num_steps is not None:
        raise ArgumentError(
            f"Give at most one of `dt` and `num_steps`, got dt={dt!r} and num_steps={num_steps!r}.",
            argument="dt",
        )
    if num_steps is not None:
        return check_int("num_steps", num_steps)
    dt = default_dt if dt is None else check_real("dt", dt, positive=True)
    # The largest step <= dt that divides t_final (up to rounding of t_final / dt).
    return max(1, math.ceil(t_final / dt * (1 - 1e-12)))


def _check_ts(ts, t_final, num_steps):
    ts = check_times("ts", ts, t_final)
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
    return real_float_array("u0", u0)


def burgers_solve(
    u0: Float[ArrayLike, " s"],
    *,
    nu: float,
    t_final: float,
    dt: float | None = None,
    num_steps: int | None = None,
    ts: Sequence[int | float] | Real[ArrayLike, " times"] | None = None,
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
    nu = check_real("nu", nu, positive=True)
    t_final = check_real("t_final", t_final, nonnegative=True)
    num_steps = 0 if t_final == 0 else step_count(t_final, dt, num_steps)
    save_steps = None if ts is None else _check_ts(ts, t_final, num_steps)
    return solve(u0, nu=nu, t_final=t_final, num_steps=num_steps, save_steps=save_steps)


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


def solve(u0, *, nu: float, t_final: float, num_steps: int, save_steps):
    """Host side of the solve, for checked arguments: the coefficients (float64, then cast)
    for the compiled loop.

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
        # The loop runs exactly `num_steps` steps (checked); `max_steps` only bounds it.
        max_steps(num_steps, 16),
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
