"""2-D incompressible Navier-Stokes in vorticity form on the unit torus: pseudo-spectral in
space, Crank-Nicolson with Adams-Bashforth 2 or explicit Euler in time."""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validate import ArgumentError, check_int

SCHEMES = ("cn_ab2", "euler_cn")


# --------------------------------------------------------------------------------------------
# Spectral operators
# --------------------------------------------------------------------------------------------


class _Operators:
    """Fourier multipliers of one grid size, on the `rfft2` half spectrum `(s, s // 2 + 1)`.

    Axis 0 is x (all `s` wavenumbers), axis 1 is y (wavenumbers `0..s/2`).
    """

    def __init__(self, s: int, dtype):
        real = np.dtype(dtype)
        cplx = np.result_type(real, np.complex64)
        kx = np.fft.fftfreq(s, 1.0 / s)[:, None]
        ky = np.fft.rfftfreq(s, 1.0 / s)[None, :]
        two_pi = 2.0 * math.pi
        # -Laplacian: 4 pi^2 |k|^2, the Nyquist wavenumber -s/2 included (it is a real mode).
        lap = two_pi**2 * (kx**2 + ky**2)
        self.lap = jnp.asarray(lap, real)
        # Inverse of -Laplacian on the zero-mean modes; the mean of psi is set to zero.
        self.inv_lap = jnp.asarray(np.where(lap > 0, 1.0 / np.where(lap > 0, lap, 1.0), 0.0), real)
        # First derivatives: i 2 pi k, with the Nyquist wavenumber set to zero. d/dx of the real
        # Nyquist mode cos(pi s x) is sin(pi s x), which vanishes on the grid; zeroing keeps the
        # differentiated spectrum Hermitian (a real field) and is what taking the real part of the
        # full complex inverse FFT does in the FNO generator.
        kx_d = np.where(np.abs(kx) == s // 2, 0.0, kx)
        ky_d = np.where(np.abs(ky) == s // 2, 0.0, ky)
        self.ikx = jnp.asarray(1j * two_pi * kx_d, cplx)
        self.iky = jnp.asarray(1j * two_pi * ky_d, cplx)
        # 2/3 rule as in the FNO generator: keep |k_x|, |k_y| <= (2/3)(s/2), i.e. <= floor(s/3).
        cut = (2.0 / 3.0) * (s // 2)
        self.dealias = jnp.asarray((np.abs(kx) <= cut) & (np.abs(ky) <= cut), real)
        self.s = s


def _rfft2(x):
    return jnp.fft.rfft2(x, axes=(-2, -1))


def _irfft2(x_h, s):
    return jnp.fft.irfft2(x_h, s=(s, s), axes=(-2, -1))


def _velocity_hat(w_h, ops: _Operators):
    """`(u_h, v_h)` with `u = psi_y`, `v = -psi_x`, `-Lap psi = w` (zero-mean psi)."""
    psi_h = w_h * ops.inv_lap
    return ops.iky * psi_h, -ops.ikx * psi_h


def _advection(w_h, ops: _Operators):
    """Dealiased `u . grad w` in Fourier space: 4 inverse and 1 forward real FFT."""
    u_h, v_h = _velocity_hat(w_h, ops)
    stacked = jnp.stack([u_h, v_h, ops.ikx * w_h, ops.iky * w_h])
    u, v, w_x, w_y = _irfft2(stacked, ops.s)
    return _rfft2(u * w_x + v * w_y) * ops.dealias


# --------------------------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------------------------


def concrete_float(name: str, value, *, positive: bool = True) -> float:
    """`value` as a finite `float` (> 0 unless `positive` is False), or an `ArgumentError`
    asking for a concrete number (it sets the number of steps)."""
    try:
        value = float(value)
    except Exception:
        raise ArgumentError(
            f"`{name}` must be a concrete Python number (it sets the number of steps), got "
            f"{value!r}.",
            argument=name,
        ) from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise ArgumentError(f"`{name}` must be a finite number > 0, got {value!r}.", argument=name)
    return value


def step_counts(t_final: float, dt: float, record_steps: int) -> int:
    """Steps between two records; `t_final / dt / record_steps` must be a whole number."""
    t_final = concrete_float("t_final", t_final)
    dt = concrete_float("dt", dt)
    record_steps = check_int("record_steps", record_steps, 1)
    ratio = t_final / dt / record_steps
    inner = round(ratio)
    if inner < 1 or abs(ratio - inner) > 1e-6 * ratio:
        raise ValueError(
            f"`t_final / dt / record_steps` must be a whole number of steps >= 1, got "
            f"{t_final!r} / {dt!r} / {record_steps!r} = {ratio!r}."
        )
    return inner


def check_scheme(scheme: str) -> None:
    """An `ArgumentError` unless `scheme` is one of `SCHEMES`."""
    if scheme not in SCHEMES:
        raise ArgumentError(
            f"`scheme` must be one of {SCHEMES}, got {scheme!r}.", argument="scheme"
        )


def _check_solve_inputs(w0, nu, forcing, scheme):
    w0 = jnp.asarray(w0)
    if w0.ndim != 2 or w0.shape[0] != w0.shape[1] or w0.shape[0] < 4 or w0.shape[0] % 2:
        raise ArgumentError(
            f"`w0` must be a square (s, s) array with s even and >= 4, got shape {w0.shape}.",
            argument="w0",
        )
    dtype = w0.dtype if jnp.issubdtype(w0.dtype, jnp.floating) else jnp.result_type(float)
    if dtype not in (jnp.float32, jnp.float64):
        raise ArgumentError(
            f"`w0` must be float32 or float64 (or integer), got dtype {dtype}.", argument="w0"
        )
    check_scheme(scheme)
    if isinstance(nu, numbers.Real) or (isinstance(nu, np.ndarray | np.generic) and nu.ndim == 0):
        if not (math.isfinite(float(nu)) and float(nu) >= 0):
            raise ArgumentError(f"`nu` must be a finite number >= 0, got {nu!r}.", argument="nu")
    elif jnp.ndim(nu) != 0:
        raise ArgumentError(f"`nu` must be a scalar, got shape {jnp.shape(nu)}.", argument="nu")
    if forcing is None or (isinstance(forcing, numbers.Real) and forcing == 0):
        forcing = None
    else:
        forcing = jnp.asarray(forcing)
        if forcing.ndim != 0 and forcing.shape != w0.shape:
            raise ArgumentError(
                f"`forcing` must be None, a scalar or an array of the shape of `w0` {w0.shape}, "
                f"got shape {forcing.shape}.",
                argument="forcing",
            )
        forcing = jnp.broadcast_to(forcing.astype(dtype), w0.shape)
    return w0.astype(dtype), jnp.asarray(nu, dtype), forcing, dtype


# Compiled once per shape/dtype/settings, so that repeated eager calls do not retrace.
@functools.partial(jax.jit, static_argnames=("dt", "inner", "record_steps", "scheme", "stride"))
def solve(w0, nu, forcing, *, dt, inner, record_steps, scheme, stride=1):
    """Nested scan: `record_steps` records of `inner` steps each; returns the recorded frames,
    each subsampled to every `stride`-th grid point."""
    s = w0.shape[-1]
    dtype = w0.dtype
    ops = _Operators(s, dtype)
    dt = jnp.asarray(dt, dtype)
    half = 0.5 * dt * nu * ops.lap
    # Crank-Nicolson in increment form: w_{n+1} = w_n + (dt rhs - 2 h w_n) / (1 + h), with
    # h = dt nu lambda_k / 2, equal to ((1 - h) w_n + dt rhs) / (1 + h). In float32 the factor
    # (1 - h) / (1 + h) of the usual form rounds to a multiple of 6e-8, a relative error of
    # ~1% in its distance 2h ~ 4e-6 from 1 for the low modes at dt = 1e-4, nu = 1e-3, which
    # biases their viscous decay (8e-4 relative error at t = 5 at 64^2); the increment form
    # keeps h to full relative precision.
    decay = 2.0 * half / (1.0 + half)
    gain = dt / (1.0 + half)
    w_h = _rfft2(w0)
    f_h = jnp.zeros_like(w_h) if forcing is None else _rfft2(forcing)

    def cn_step(w_h, rhs_h):
        # Crank-Nicolson for nu Lap w, explicit right-hand side rhs_h = f_h - N_h:
        # (1 + h) w_{n+1} = (1 - h) w_n + dt rhs_h.
        return w_h + (gain * rhs_h - decay * w_h)

    if scheme == "euler_cn":

        def step(w_h, _):
            return cn_step(w_h, f_h - _advection(w_h, ops)), None

        carry = w_h
    else:

        def step(carry, _):
            # CN-AB2: N extrapolated as 3/2 N_n - 1/2 N_{n-1}.
            w_h, n_prev = carry
            n_now = _advection(w_h, ops)
            w_next = cn_step(w_h, f_h - (1.5 * n_now - 0.5 * n_prev))
            return (w_next, n_now), None

        # The first step is Heun (CN-RK2): an Euler-CN predictor w*, then the corrector with
        # (N(w_0) + N(w*)) / 2. Setting N_{-1} = 2 N(w_0) - N(w*) makes the first AB2 step
        # exactly this corrector, so every step runs the same code.
        n0 = _advection(w_h, ops)
        n_star = _advection(cn_step(w_h, f_h - n0), ops)
        carry = (w_h, 2.0 * n0 - n_star)

    # Under reverse-mode AD only the carries at the records are stored; the steps between two
    # records are recomputed.
    @jax.checkpoint
    def record(carry, _):
        carry, _ = jax.lax.scan(step, carry, None, length=inner)
        w_h = carry if scheme == "euler_cn" else carry[0]
        return carry, _irfft2(w_h, s)[::stride, ::stride]

    _, frames = jax.lax.scan(record, carry, None, length=record_steps)
    return frames


def navier_stokes_solve(
    w0: Float[ArrayLike, "s s"],
    *,
    nu: float | Float[ArrayLike, ""],
    forcing: None | float | Float[ArrayLike, "s s"],
    t_final: float,
    dt: float,
    record_steps: int,
    scheme: str = "cn_ab2",
) -> Float[Array, "record_steps s s"]:
    r"""Solves 2-D incompressible Navier-Stokes in vorticity form on the unit torus.

    $$\partial_t w + u \cdot \nabla w = \nu \Delta w + f, \qquad u = (\partial_y \psi,
    -\partial_x \psi), \qquad -\Delta \psi = w$$

    on $[0, 1)^2$ with periodic boundaries, on the grid $x_i = i / s$, $y_j = j / s$ (axis 0
    is $x$, axis 1 is $y$).

    **Discretisation.** Pseudo-spectral in space (real FFTs; $-\Delta$ has eigenvalues
    $\lambda_k = 4 \pi^2 |k|^2$ for integer wavenumbers $k$): the streamfunction and the
    derivatives are exact Fourier multipliers (first derivatives zero the Nyquist wavenumber),
    the product $N = u \cdot \nabla w$ is formed on the grid and its spectrum is truncated by
    the 2/3 rule ($|k_x|, |k_y| \le s / 3$), as in the FNO generator. The zero mode of $\psi$
    is set to zero, so the mean vorticity is carried unchanged (plus the time integral of the
    mean forcing). Viscosity is treated by Crank-Nicolson (unconditionally stable, second
    order), advection and forcing explicitly; with $h_k = \Delta t \nu \lambda_k / 2$:

    - `"cn_ab2"` (default, second order): Adams-Bashforth 2 for advection + forcing,
      $(1 + h_k) w_{n+1} = (1 - h_k) w_n + \Delta t (f - \tfrac32 N_n + \tfrac12 N_{n-1})$,
      started by one Heun (CN-RK2) step. It costs one evaluation of $N$ (4 inverse + 1
      forward FFT) per step, the same as `"euler_cn"`, so the second order comes at no extra
      cost; a Heun predictor-corrector would need two evaluations per step. For advection
      (eigenvalues $i \omega$) AB2 amplifies by $1 + O((\omega \Delta t)^4)$ per step
      against $1 + O((\omega \Delta t)^2)$ for explicit Euler, so it also tolerates larger
      steps when the viscosity is small.
    - `"euler_cn"` (first order): explicit Euler for advection + forcing,
      $(1 + h_k) w_{n+1} = (1 - h_k) w_n + \Delta t (f - N_n)$: the scheme of the FNO data
      generator, to reproduce its data.

    Both updates are evaluated as $w_{n+1} = w_n + (\Delta t\, \mathrm{rhs} - 2 h_k w_n) /
    (1 + h_k)$, which in float32 keeps the small viscous decay per step to full relative
    precision (the factor $(1 - h_k) / (1 + h_k)$ would round to a multiple of $6 \cdot
    10^{-8}$, about 1% of $2 h_k$ for the low modes at `dt = 1e-4`, `nu = 1e-3`).

    The steps are a fixed-length `jax.lax.scan` rather than an adaptive diffrax solve: for a
    data set the scheme and the step `dt` are part of the data definition (the FNO data are
    the Euler-CN solution with `dt = 1e-4`, not the exact solution), and a fixed step count
    gives a static program that vmaps over a batch without per-sample step control. The
    scan is nested (records, then steps between records), so only the recorded frames are
    stored; under reverse-mode AD the steps between records are recomputed.

    **Arguments:**

    - `w0`: initial vorticity, shape `(s, s)` with `s` even, float32 or float64 (the
      computation runs in this dtype).
    - `nu`: viscosity, >= 0 (may be traced, e.g. vmapped).
    - `forcing`: time-independent forcing $f$ on the same grid, a scalar, or `None`/`0` for
      none.
    - `t_final`: final time, > 0 (a concrete number).
    - `dt`: time step, > 0 (a concrete number).
    - `record_steps`: number of recorded frames; `t_final / dt / record_steps` must be a
      whole number.
    - `scheme`: `"cn_ab2"` or `"euler_cn"`, see above.

    **Returns:**

    The vorticity at times `t_final * k / record_steps`, `k = 1, ..., record_steps`, shape
    `(record_steps, s, s)`, in the dtype of `w0`.

    Differentiable with respect to `w0`, `nu` and `forcing`; batch with `jax.vmap`.
    """
    inner = step_counts(t_final, dt, record_steps)
    w0, nu, forcing, _ = _check_solve_inputs(w0, nu, forcing, scheme)
    return solve(
        w0,
        nu,
        forcing,
        dt=float(dt),
        inner=inner,
        record_steps=int(record_steps),
        scheme=scheme,
    )
