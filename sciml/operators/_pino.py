r"""Physics-informed neural operators (PINO): grid residuals of PDEs for operator outputs.

An operator's prediction on a grid is put into a discretised PDE; the mean squared residual
is a loss that needs no solution data. Combined with a data loss ([`pino_loss`][]) an operator
is trained from data, from physics alone, or both, and [`fine_tune`][] optimises a trained
operator on one test instance with the physics loss only.

Every residual acts on ONE sample, channels first, with the model's input beside it (the
coefficient, or the known frame before the predicted ones); batch with `jax.vmap`.

??? cite "Reference"

    Li, Zheng, Kovachki, Jin, Chen, Liu, Azizzadenesheli, Anandkumar, "Physics-Informed Neural
    Operator for Learning Partial Differential Equations", ACM/IMS J. Data Sci. 2024
    (arXiv:2111.03794).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._validate import ArgumentError
from ..train import init_optimizer, relative_l2, train_step

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _time_derivative(frames: Array, dt: float) -> Array:
    """Second-order finite differences along axis 0 of equally spaced frames at frames
    `1, ..., n - 1`: central inside, second-order one-sided at the last frame."""
    inner = (frames[2:] - frames[:-2]) / (2 * dt)
    last = (3 * frames[-1] - 4 * frames[-2] + frames[-3]) / (2 * dt)
    return jnp.concatenate([inner, last[None]], axis=0)


def _wavenumbers(s: int, dtype, *, half: bool) -> tuple[Array, Array]:
    """`(2 pi k, 2 pi k with the Nyquist wavenumber zeroed)` of the (r)fft of `s` points on
    the unit period. First derivatives drop the Nyquist mode: d/dx of cos(pi s x) vanishes on
    the grid, and zeroing keeps the differentiated spectrum that of a real field (as in
    `sciml.data.navier_stokes_solve`)."""
    k = jnp.fft.rfftfreq(s, 1.0 / s) if half else jnp.fft.fftfreq(s, 1.0 / s)
    k = k.astype(dtype)
    kd = jnp.where(jnp.abs(k) == s // 2, 0, k) if s % 2 == 0 else k
    return 2 * math.pi * k, 2 * math.pi * kd


def _rms(x: Array) -> Array:
    return jnp.sqrt(jnp.mean(x**2))


def _nonzero(scale: Array) -> Array:
    return jnp.where(scale > 0, scale, 1)


def _check_float(name: str, value: Any, *, positive: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"`{name}` must be a concrete number, got {value!r}.", argument=name
        ) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        allowed = "> 0" if positive else ">= 0"
        raise ArgumentError(
            f"`{name}` must be a finite number {allowed}, got {value!r}.", argument=name
        )
    return value


def _check_frames(name: str, u: Array, spatial_dims: int, known: Array, known_name: str):
    if u.ndim != spatial_dims + 1:
        raise ArgumentError(
            f"`{name}` must have shape (frames, {', '.join(['s'] * spatial_dims)}) (time "
            f"first), got shape {u.shape}.",
            argument=name,
        )
    if known.ndim != spatial_dims + 1 or known.shape[1:] != u.shape[1:]:
        raise ArgumentError(
            f"`{known_name}` must have shape (channels, {', '.join(map(str, u.shape[1:]))}) "
            f"like the frames of `{name}`, got shape {known.shape}.",
            argument=known_name,
        )


def _with_known_frame(u: Array, known: Array, includes_initial: bool) -> Array:
    # The known frame (the last input channel) is one step before u[0], unless u[0] is itself
    # the initial time.
    frames = u if includes_initial else jnp.concatenate([known[-1:].astype(u.dtype), u])
    if frames.shape[0] < 3:
        raise ArgumentError(
            f"The time derivative needs at least 3 frames (known frame included), got "
            f"{frames.shape[0]}; predict at least {3 - frames.shape[0] + u.shape[0]} frames.",
            argument="u",
        )
    return frames


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


def _check_darcy(u, a, f):
    u, a = jnp.asarray(u), jnp.asarray(a)
    if u.ndim != 3 or u.shape[0] != 1 or u.shape[1] != u.shape[2] or u.shape[1] < 3:
        raise ArgumentError(
            f"`u` must have shape (1, s, s) with s >= 3 (one channel, node grid), got shape "
            f"{u.shape}.",
            argument="u",
        )
    if a.shape != u.shape:
        raise ArgumentError(
            f"`a` must have the shape of `u` {u.shape}, got shape {a.shape}.", argument="a"
        )
    f = jnp.asarray(f, u.dtype)
    if f.ndim != 0 and f.shape != u.shape[1:]:
        raise ArgumentError(
            f"`f` must be a scalar or have shape {u.shape[1:]}, got shape {f.shape}.",
            argument="f",
        )
    return u[0], a[0].astype(u.dtype), jnp.broadcast_to(f, u.shape[1:])


def darcy_residual(
    u: Float[ArrayLike, "1 s s"],
    a: Float[ArrayLike, "1 s s"],
    f: float | Float[ArrayLike, ""] | Float[ArrayLike, "s s"] = 1.0,
) -> Float[Array, "1 s-2 s-2"]:
    r"""The residual $-\nabla \cdot (a \nabla u) - f$ at the interior nodes, with exactly the
    stencil of [`sciml.data.darcy_solve`][].

    On the node grid $x_i = i h$, $h = 1 / (s - 1)$ of $[0, 1]^2$ (boundary included): the
    conservative 5-point stencil with face coefficients $a_{i+1/2,j} = (a_{ij} + a_{i+1,j}) / 2$,

    $$r_{ij} = -[a_{i+1/2,j} (u_{i+1,j} - u_{ij}) - a_{i-1/2,j} (u_{ij} - u_{i-1,j})
    + (\text{same in } j)] / h^2 - f_{ij}.$$

    The stencil reads the boundary values of `u` as they are (the solver sets them to zero);
    the Dirichlet condition is the separate term [`darcy_boundary`][]. The output of
    `darcy_solve(a, f)` has a residual at the level of its CG tolerance (about 1e-10 relative
    to `f` in float64). A prediction from data solved on a finer grid and subsampled (as in
    the FNO recipe) does not: its residual is the discretisation error of the coarse grid.

    **Arguments:**

    - `u`: the prediction, shape `(1, s, s)`.
    - `a`: the coefficient on the same nodes (the operator's input), shape `(1, s, s)`.
    - `f`: the right-hand side, a scalar or an `(s, s)` array (boundary values unused).

    **Returns:**

    The residual at the interior nodes, shape `(1, s - 2, s - 2)`, in the dtype of `u`.
    """
    u, a, f = _check_darcy(u, a, f)
    h = 1.0 / (u.shape[0] - 1)
    ax = 0.5 * (a[1:, 1:-1] + a[:-1, 1:-1])  # faces between (i, j) and (i + 1, j), j interior
    ay = 0.5 * (a[1:-1, 1:] + a[1:-1, :-1])  # faces between (i, j) and (i, j + 1), i interior
    fx = ax * (u[1:, 1:-1] - u[:-1, 1:-1])
    fy = ay * (u[1:-1, 1:] - u[1:-1, :-1])
    div = (fx[1:] - fx[:-1]) + (fy[:, 1:] - fy[:, :-1])
    return (-div / h**2 - f[1:-1, 1:-1])[None]


def darcy_boundary(u: Float[ArrayLike, "1 s s"]) -> Float[Array, "1 boundary"]:
    """The values of `u` at the `4 (s - 1)` boundary nodes of the node grid (zero for the
    Dirichlet condition of [`darcy_residual`][]), going round the square once.

    **Arguments:**

    - `u`: shape `(1, s, s)`.

    **Returns:**

    Shape `(1, 4 (s - 1))`.
    """
    u, _, _ = _check_darcy(u, u, 0.0)
    ring = [u[0, :-1], u[:-1, -1], u[-1, :0:-1], u[:0:-1, 0]]
    return jnp.concatenate(ring)[None]


def darcy_loss(
    u: Float[ArrayLike, "1 s s"],
    a: Float[ArrayLike, "1 s s"],
    *,
    f: float | Float[ArrayLike, ""] | Float[ArrayLike, "s s"] = 1.0,
    boundary_weight: float = 1.0,
    normalise: bool = True,
) -> Float[Array, ""]:
    r"""The Darcy physics loss of ONE sample: mean squared residual plus boundary term.

    `mean(r^2) + boundary_weight * mean(u_b^2)` with `r` from [`darcy_residual`][] and `u_b`
    from [`darcy_boundary`][]. With `normalise=True` both terms are relative: the residual to
    `mean(f^2)` over the interior, the boundary values to $U^2$ with
    $U = \mathrm{rms}(f) / (2 \pi^2 \bar a)$, the size of the solution that the smallest
    eigenvalue $2 \pi^2$ of $-\Delta$ on the unit square gives for the mean coefficient
    $\bar a$. Both scales come from the known input only, so a prediction cannot lower them.

    **Arguments:**

    - `u`, `a`, `f`: as for [`darcy_residual`][].
    - `boundary_weight`: weight of the boundary term, >= 0.
    - `normalise`: divide the terms by the scales above (default) or not.

    **Returns:**

    A scalar.
    """
    boundary_weight = _check_float("boundary_weight", boundary_weight, positive=False)
    r = darcy_residual(u, a, f)
    ub = darcy_boundary(u)
    interior, boundary = jnp.mean(r**2), jnp.mean(ub**2)
    if normalise:
        _, a2, f2 = _check_darcy(u, a, f)
        f_rms = _nonzero(_rms(f2[1:-1, 1:-1]))
        scale_u = f_rms / (2 * math.pi**2 * jnp.mean(a2))
        interior, boundary = interior / f_rms**2, boundary / _nonzero(scale_u) ** 2
    return interior + boundary_weight * boundary


# --------------------------------------------------------------------------------------------
# Burgers
# --------------------------------------------------------------------------------------------


def _burgers_terms(frames: Array, nu: float) -> tuple[Array, Array]:
    """`(u u_x, nu u_xx)` with exact Fourier derivatives along the last axis."""
    s = frames.shape[-1]
    k, kd = _wavenumbers(s, frames.dtype, half=True)
    u_hat = jnp.fft.rfft(frames, axis=-1)
    u_x = jnp.fft.irfft(1j * kd * u_hat, n=s, axis=-1)
    u_xx = jnp.fft.irfft(-(k**2) * u_hat, n=s, axis=-1)
    return frames * u_x, nu * u_xx


def burgers_residual(
    u: Float[ArrayLike, "frames s"],
    u0: Float[ArrayLike, "channels s"],
    *,
    nu: float,
    dt: float,
    includes_initial: bool = False,
) -> Float[Array, "times s"]:
    r"""The space-time residual $u_t + u u_x - \nu u_{xx}$ of a Burgers trajectory, periodic in
    $x$ on $[0, 1)$.

    The equation of [`sciml.data.burgers_solve`][] ($u_t + (u^2/2)_x = \nu u_{xx}$), in the
    form $u u_x$: on a grid that resolves $u$, $u$ and $u_x$ are exact at the nodes, and so is
    their product, while the spectral derivative of $u^2$ would need twice the modes.
    Space: exact Fourier derivatives on $x_j = j / s$ (`rfft`). Time: second-order finite
    differences along the frames, central inside and one-sided at the last frame, so the
    residual of a smooth exact solution is $O(\Delta t^2)$ (the time-discretisation floor).

    The residual is evaluated after the initial time only: there the initial condition takes
    the PDE's place. A one-sided difference at $t_0$ would also be wrong for the true
    solution of rough data: the viscous initial layer (modes with $\nu (2 \pi k)^2 \Delta t
    \gg 1$) is not resolved in time, and for the FNO recipe's initial conditions at 32
    frames to $t = 1$ its residual there is ~100x that of the later frames (measured).

    **Layout.** A space-time operator (e.g. [`sciml.operators.SpaceTimeOperator`][]) maps the
    known frame `u0` (its last input channel) to the frames `u` at times
    $t_0 + k \Delta t$, $k = 1, \dots$, `frames`; the known frame is prepended, so the
    initial condition holds by construction; the residual is evaluated at every predicted
    frame. With `includes_initial=True` frame 0 of `u` is itself at $t_0$ and the
    initial condition is a separate term (`u[0] - u0[-1]`, see [`burgers_loss`][]). The map
    $u_0 \mapsto u(T)$ of the FNO Burgers recipe defines no residual (a single time has no
    time derivative): a physics loss needs the trajectory, i.e. a space-time operator.

    **Arguments:**

    - `u`: the predicted frames, shape `(frames, s)`, time first.
    - `u0`: the model's input, shape `(channels, s)`; its last channel is the known frame.
    - `nu`: viscosity, > 0.
    - `dt`: time between frames, > 0.
    - `includes_initial`: whether `u[0]` is at the time of the known frame (see above).

    **Returns:**

    The residual at the frames after the initial time, shape `(frames, s)`, or
    `(frames - 1, s)` with `includes_initial=True`.
    """
    u, u0 = jnp.asarray(u), jnp.asarray(u0)
    _check_frames("u", u, 1, u0, "u0")
    nu = _check_float("nu", nu, positive=True)
    dt = _check_float("dt", dt, positive=True)
    frames = _with_known_frame(u, u0, includes_initial)
    advection, diffusion = _burgers_terms(frames[1:], nu)
    return _time_derivative(frames, dt) + advection - diffusion


def burgers_loss(
    u: Float[ArrayLike, "frames s"],
    u0: Float[ArrayLike, "channels s"],
    *,
    nu: float,
    dt: float,
    includes_initial: bool = False,
    initial_weight: float = 1.0,
    normalise: bool = True,
) -> Float[Array, ""]:
    r"""The Burgers physics loss of ONE sample: mean squared residual plus initial term.

    `mean(r^2) + initial_weight * mean((u[0] - u0[-1])^2)` with `r` from
    [`burgers_residual`][]; the initial term only with `includes_initial=True` (otherwise the
    known frame is prepended and the condition holds exactly). With `normalise=True` the
    residual is divided by $S^2$, $S = \mathrm{rms}(u_0 \partial_x u_0) + \nu\,
    \mathrm{rms}(\partial_{xx} u_0)$ (the size of the equation's terms at the known frame),
    and the initial term by `mean(u0[-1]^2)`: scales of the known input only.

    **Arguments:**

    - `u`, `u0`, `nu`, `dt`, `includes_initial`: as for [`burgers_residual`][].
    - `initial_weight`: weight of the initial-condition term, >= 0.
    - `normalise`: divide by the scales above (default) or not.

    **Returns:**

    A scalar.
    """
    initial_weight = _check_float("initial_weight", initial_weight, positive=False)
    r = burgers_residual(u, u0, nu=nu, dt=dt, includes_initial=includes_initial)
    u, known = jnp.asarray(u), jnp.asarray(u0)[-1].astype(r.dtype)
    loss = jnp.mean(r**2)
    if normalise:
        advection, diffusion = _burgers_terms(known, float(nu))
        loss = loss / _nonzero(_rms(advection) + _rms(diffusion)) ** 2
    if includes_initial:
        initial = jnp.mean((u[0] - known) ** 2)
        if normalise:
            initial = initial / _nonzero(jnp.mean(known**2))
        loss = loss + initial_weight * initial
    return loss


# --------------------------------------------------------------------------------------------
# Navier-Stokes
# --------------------------------------------------------------------------------------------


def _navier_stokes_terms(frames: Array, nu: float) -> tuple[Array, Array]:
    """`(u . grad w, nu Lap w)` with exact Fourier derivatives on the last two axes:
    `u = (psi_y, -psi_x)`, `-Lap psi = w` (zero-mean psi), as in `navier_stokes_solve`."""
    s = frames.shape[-1]
    kx, kxd = _wavenumbers(s, frames.dtype, half=False)
    ky, kyd = _wavenumbers(s, frames.dtype, half=True)
    lap = kx[:, None] ** 2 + ky[None, :] ** 2  # -Laplacian: 4 pi^2 |k|^2
    inv_lap = jnp.where(lap > 0, 1 / jnp.where(lap > 0, lap, 1), 0)
    ikx, iky = 1j * kxd[:, None], 1j * kyd[None, :]
    w_hat = jnp.fft.rfft2(frames, axes=(-2, -1))
    psi_hat = w_hat * inv_lap
    stacked = jnp.stack([iky * psi_hat, -ikx * psi_hat, ikx * w_hat, iky * w_hat, -lap * w_hat])
    vx, vy, w_x, w_y, lap_w = jnp.fft.irfft2(stacked, s=(s, s), axes=(-2, -1))
    return vx * w_x + vy * w_y, nu * lap_w


def _check_forcing(forcing, w: Array) -> Array:
    if forcing is None:
        return jnp.zeros(w.shape[1:], w.dtype)
    forcing = jnp.asarray(forcing, w.dtype)
    if forcing.ndim != 0 and forcing.shape != w.shape[1:]:
        raise ArgumentError(
            f"`forcing` must be None, a scalar or have shape {w.shape[1:]}, got shape "
            f"{forcing.shape}.",
            argument="forcing",
        )
    return jnp.broadcast_to(forcing, w.shape[1:])


def navier_stokes_residual(
    w: Float[ArrayLike, "frames s s"],
    x: Float[ArrayLike, "channels s s"],
    *,
    nu: float,
    forcing: None | float | Float[ArrayLike, "s s"],
    dt: float,
    includes_initial: bool = False,
) -> Float[Array, "times s s"]:
    r"""The space-time residual of 2-D Navier-Stokes in vorticity form on the unit torus.

    $$r = \partial_t w + u \cdot \nabla w - \nu \Delta w - f, \qquad
    u = (\partial_y \psi, -\partial_x \psi), \qquad -\Delta \psi = w,$$

    the equation, forcing and conventions of [`sciml.data.navier_stokes_solve`][] (axis 0 is
    $x$, axis 1 is $y$, grid $i / s$). Space: exact Fourier derivatives, the stream function
    by dividing by $4 \pi^2 |k|^2$ (zero mean), first derivatives without the Nyquist mode;
    the product $u \cdot \nabla w$ is formed at the nodes, not dealiased (it is exact there
    for a resolved $w$). Time: second-order finite differences along the frames (central
    inside, one-sided at the last frame), so the residual of a smooth exact solution is
    $O(\Delta t^2)$. As for [`burgers_residual`][], the residual is evaluated after the
    initial time only.

    **Layout.** As for [`burgers_residual`][]: the last input channel of `x` is the known
    frame one step `dt` before `w[0]` (the initial vorticity of the `navier_stokes` recipe,
    or the last input frame of a trajectory task) and is prepended; with
    `includes_initial=True` frame 0 of `w` is at the known frame's time instead.

    **Arguments:**

    - `w`: the predicted vorticity frames, shape `(frames, s, s)`, time first.
    - `x`: the model's input, shape `(channels, s, s)`; its last channel is the known frame.
    - `nu`: viscosity, >= 0.
    - `forcing`: the time-independent forcing $f$, `None`, a scalar or an `(s, s)` array.
    - `dt`: time between frames, > 0 (`t_final / record_steps` for the recipe).
    - `includes_initial`: whether `w[0]` is at the time of the known frame.

    **Returns:**

    The residual at the frames after the initial time, shape `(frames, s, s)`, or
    `(frames - 1, s, s)` with `includes_initial=True`.
    """
    w, x = jnp.asarray(w), jnp.asarray(x)
    _check_frames("w", w, 2, x, "x")
    if w.shape[1] != w.shape[2]:
        raise ArgumentError(f"`w` must have square frames, got shape {w.shape}.", argument="w")
    nu = _check_float("nu", nu, positive=False)
    dt = _check_float("dt", dt, positive=True)
    f = _check_forcing(forcing, w)
    frames = _with_known_frame(w, x, includes_initial)
    advection, diffusion = _navier_stokes_terms(frames[1:], nu)
    return _time_derivative(frames, dt) + advection - diffusion - f


def navier_stokes_loss(
    w: Float[ArrayLike, "frames s s"],
    x: Float[ArrayLike, "channels s s"],
    *,
    nu: float,
    forcing: None | float | Float[ArrayLike, "s s"],
    dt: float,
    includes_initial: bool = False,
    initial_weight: float = 1.0,
    normalise: bool = True,
) -> Float[Array, ""]:
    r"""The Navier-Stokes physics loss of ONE sample: mean squared residual plus initial term.

    As [`burgers_loss`][], for [`navier_stokes_residual`][]. With `normalise=True` the
    residual is divided by $S^2$, $S = \mathrm{rms}(u_0 \cdot \nabla w_0) + \nu\,
    \mathrm{rms}(\Delta w_0) + \mathrm{rms}(f)$ at the known frame $w_0$, and the initial term
    by `mean(w0^2)`.

    **Arguments:**

    - `w`, `x`, `nu`, `forcing`, `dt`, `includes_initial`: as for
        [`navier_stokes_residual`][].
    - `initial_weight`: weight of the initial-condition term (with `includes_initial`), >= 0.
    - `normalise`: divide by the scales above (default) or not.

    **Returns:**

    A scalar.
    """
    initial_weight = _check_float("initial_weight", initial_weight, positive=False)
    r = navier_stokes_residual(
        w, x, nu=nu, forcing=forcing, dt=dt, includes_initial=includes_initial
    )
    w, known = jnp.asarray(w), jnp.asarray(x)[-1].astype(r.dtype)
    loss = jnp.mean(r**2)
    if normalise:
        advection, diffusion = _navier_stokes_terms(known, float(nu))
        f = _check_forcing(forcing, w)
        loss = loss / _nonzero(_rms(advection) + _rms(diffusion) + _rms(f)) ** 2
    if includes_initial:
        initial = jnp.mean((w[0] - known) ** 2)
        if normalise:
            initial = initial / _nonzero(jnp.mean(known**2))
        loss = loss + initial_weight * initial
    return loss


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def pino_loss(
    physics: Callable[[Array, Array], Float[Array, ""]],
    *,
    data_weight: float = 1.0,
    physics_weight: float = 1.0,
    data_metric: Callable[[Array, Array], Float[Array, ""]] = relative_l2,
) -> Callable[[PyTree, ArrayLike, ArrayLike], Float[Array, ""]]:
    """The PINO training loss `loss_fn(model, x, y)` for [`sciml.train.train_step`][] and
    [`sciml.train.fit`][].

    `data_weight * mean_i data_metric(model(x_i), y_i) + physics_weight * mean_i
    physics(model(x_i), x_i)` over the batch, with the model applied once per sample through
    `jax.vmap`. With `data_weight=0` the targets `y` are not read (physics only: pass any
    array with the batch axis, e.g. `x`); with `physics_weight=0` this is
    `batch_loss(data_metric)`.

    **Arguments:**

    - `physics`: `physics(pred, x) -> scalar` for ONE sample, e.g.
        `functools.partial(darcy_loss, f=1.0)` or
        `functools.partial(burgers_loss, nu=0.1, dt=1 / 32)`.
    - `data_weight`, `physics_weight`: weights of the two terms, >= 0, not both zero.
    - `data_metric`: per-sample data loss `metric(pred, target)`; default relative L2.

    **Returns:**

    `loss_fn(model, x, y) -> scalar`.
    """
    data_weight = _check_float("data_weight", data_weight, positive=False)
    physics_weight = _check_float("physics_weight", physics_weight, positive=False)
    if data_weight == 0 and physics_weight == 0:
        raise ArgumentError(
            "`data_weight` and `physics_weight` must not both be 0, got 0 and 0.",
            argument="physics_weight",
        )

    return _PINOLoss(physics, data_weight, physics_weight, data_metric)


class _PINOLoss(eqx.Module):
    # A module of static fields rather than a closure: two losses built from the same pieces
    # compare equal, so `train_step` (which takes the loss as a static argument) compiles
    # once for them, e.g. once for all instances of `fine_tune`.
    physics: Callable = eqx.field(static=True)
    data_weight: float = eqx.field(static=True)
    physics_weight: float = eqx.field(static=True)
    data_metric: Callable = eqx.field(static=True)

    def __call__(self, model: PyTree, x: ArrayLike, y: ArrayLike) -> Float[Array, ""]:
        pred = jax.vmap(model)(x)
        loss = jnp.zeros((), pred.dtype)
        if self.data_weight:
            loss = loss + self.data_weight * jnp.mean(jax.vmap(self.data_metric)(pred, y))
        if self.physics_weight:
            loss = loss + self.physics_weight * jnp.mean(jax.vmap(self.physics)(pred, x))
        return loss


@eqx.filter_jit
def _evaluate(loss_fn, model, x, y):
    return loss_fn(model, x, y)


def fine_tune(
    model: PyTree,
    inputs: Float[ArrayLike, " channels *spatial"],
    physics: Callable[[Array, Array], Float[Array, ""]],
    *,
    steps: int,
    learning_rate: float = 1e-4,
    optimizer: optax.GradientTransformation | None = None,
    filter_spec: PyTree[bool] | None = None,
) -> tuple[PyTree, Float[Array, " history"]]:
    """Test-time optimisation of a trained operator on ONE instance, physics loss only.

    The PINO paper's instance-wise fine-tuning: starting from `model`, `steps` optimiser
    steps ([`sciml.train.train_step`][]) on `physics(model(inputs), inputs)`. The result
    fits this one instance (it is a PDE solve warm-started by the operator), not the
    operator's distribution.

    **Arguments:**

    - `model`: the trained operator, acting on ONE sample.
    - `inputs`: the instance's input, shape `(channels, *spatial)` (no batch axis).
    - `physics`: `physics(pred, x) -> scalar`, as for [`pino_loss`][].
    - `steps`: number of optimiser steps, >= 1.
    - `learning_rate`: for the default optimiser, `optax.adam(learning_rate)`.
    - `optimizer`: an Optax gradient transformation instead of Adam.
    - `filter_spec`: trainable leaves; default `sciml.train.trainable_filter(model)`
        (normalisers stay fixed).

    **Returns:**

    `(tuned_model, history)`: the model after the last step and the physics loss before
    each step and after the last, shape `(steps + 1,)`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"`steps` must be an int >= 1, got {steps!r}.", argument="steps")
    inputs = jnp.asarray(inputs)
    if optimizer is None:
        optimizer = optax.adam(_check_float("learning_rate", learning_rate, positive=True))
    loss_fn = pino_loss(physics, data_weight=0.0)
    batch = (inputs[None], inputs[None])
    opt_state = init_optimizer(optimizer, model, filter_spec)
    losses = []
    for _ in range(steps):
        model, opt_state, loss = train_step(
            model, opt_state, batch, loss_fn=loss_fn, optimizer=optimizer, filter_spec=filter_spec
        )
        losses.append(loss)
    losses.append(_evaluate(loss_fn, model, *batch))
    return model, jnp.stack(losses)
