"""The FNO paper's Navier-Stokes data set (Li et al., ICLR 2021, Section 5.3), solved with
[`navier_stokes_solve`][]'s scheme."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..._validate import ArgumentError, check_int
from .._checks import check_dtype
from .._grf import grf
from .._solvers.navier_stokes import check_scheme, concrete_float, solve, step_counts

# The recipe's constants (FNO paper, Section 5.3, and its data-generation code).
NS_ALPHA = 2.5
NS_TAU = 7.0
NS_SIGMA = NS_TAU ** (0.5 * (2 * NS_ALPHA - 2))  # 7^1.5, the standard-deviation factor
NS_FORCING_AMPLITUDE = 0.1
NS_VISCOSITIES = {1e-3: 50.0, 1e-4: 30.0, 1e-5: 20.0}


def _recipe_forcing(s: int, dtype) -> Float[Array, "s s"]:
    """`f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))` on the grid `x_i = i / s`."""
    x = np.arange(s) / s
    phase = 2.0 * math.pi * (x[:, None] + x[None, :])
    return jnp.asarray(NS_FORCING_AMPLITUDE * (np.sin(phase) + np.cos(phase)), dtype)


def navier_stokes_resolutions(resolution: int, solve_resolution: int) -> tuple[int, int, int]:
    """Checks the sample and solve resolutions of the Navier-Stokes recipe.

    **Arguments:**

    - `resolution`: grid points per axis of the returned samples, >= 2.
    - `solve_resolution`: grid points per axis of the solve: even, >= 4 and a multiple of
      `resolution`.

    **Returns:**

    `(resolution, solve_resolution, stride)`: sample point `i` is solve point `stride * i`.
    """
    resolution = check_int("resolution", resolution, 2)
    if (
        isinstance(solve_resolution, bool)
        or not isinstance(solve_resolution, int | np.integer)
        or solve_resolution < 4
        or solve_resolution % 2
        or solve_resolution % resolution
    ):
        raise ArgumentError(
            f"`solve_resolution` must be an even int >= 4 and a multiple of resolution = "
            f"{resolution} (e.g. {4 * resolution if resolution % 2 else max(resolution, 4)}), "
            f"got {solve_resolution!r}.",
            argument="solve_resolution",
        )
    solve_resolution = int(solve_resolution)
    return resolution, solve_resolution, solve_resolution // resolution


def _check_recipe_args(resolution, solve_resolution, nu, t_final, dt, record_steps, scheme, dtype):
    resolution, solve_resolution, stride = navier_stokes_resolutions(resolution, solve_resolution)
    nu = concrete_float("nu", nu)
    inner = step_counts(t_final, dt, record_steps)
    check_scheme(scheme)
    dtype = check_dtype(dtype)
    return resolution, solve_resolution, stride, nu, inner, dtype


def _initial_vorticity(key, s, dtype):
    w0 = grf(key, (s, s), alpha=NS_ALPHA, tau=NS_TAU, sigma=NS_SIGMA, dtype=dtype)
    # Zero mean: the vorticity of a periodic velocity field integrates to zero (the FNO
    # generator sets the constant mode to zero too). Subtracting the grid mean removes exactly
    # the k = 0 Fourier coefficient.
    return w0 - jnp.mean(w0)


def _sample(key, *, stride, solve_resolution, nu, dt, inner, record_steps, scheme, dtype):
    w0 = _initial_vorticity(key, solve_resolution, dtype)
    forcing = _recipe_forcing(solve_resolution, dtype)
    frames = solve(
        w0,
        jnp.asarray(nu, dtype),
        forcing,
        dt=dt,
        inner=inner,
        record_steps=record_steps,
        scheme=scheme,
        stride=stride,
    )
    return w0[::stride, ::stride], frames


def navier_stokes_recipe_sample(
    key: PRNGKeyArray,
    resolution: int = 64,
    *,
    solve_resolution: int = 256,
    nu: float = 1e-3,
    t_final: float = 50.0,
    dt: float = 1e-4,
    record_steps: int = 50,
    scheme: str = "euler_cn",
    dtype=jnp.float32,
) -> tuple[Float[Array, "s s"], Float[Array, "record_steps s s"]]:
    r"""Draws one `(w0, trajectory)` pair of the FNO paper's Navier-Stokes data set.

    The vorticity equation of [`navier_stokes_solve`][] on the unit torus with forcing
    $f = 0.1 (\sin 2\pi(x + y) + \cos 2\pi(x + y))$ and
    $w_0 \sim N(0, \sigma^2 (-\Delta + 49 I)^{-2.5})$, $\sigma = 7^{3/2}$, with zero mean.
    The paper writes the covariance as $7^{3/2} (-\Delta + 49 I)^{-2.5}$; its
    data-generation code (`GaussianRF(alpha=2.5, tau=7)`) uses $7^{3/2}$ as the
    standard-deviation factor, which is followed here ([`grf`][] with `sigma=7**1.5`). The
    field is drawn and the equation solved on the `solve_resolution` grid (Euler-CN,
    `dt = 1e-4` in the paper), and both are subsampled to every `stride`-th point. The paper
    uses `nu = 1e-3` with `t_final = 50` and `nu = 1e-5` with `t_final = 20`, solved at
    `256^2` and stored at `64^2`.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `resolution`: grid points per axis of the output.
    - `solve_resolution`: grid points per axis of the field and the solve; a multiple of
      `resolution`, see [`navier_stokes_resolutions`][].
    - `nu`, `t_final`, `dt`, `record_steps`, `scheme`: as for [`navier_stokes_solve`][] (the
      recipe's scheme is `"euler_cn"`).
    - `dtype`: float32 or float64, the dtype of the field and the solve.

    **Returns:**

    `(w0, trajectory)` of shapes `(resolution, resolution)` and
    `(record_steps, resolution, resolution)`; frame `k` is the vorticity at time
    `t_final * (k + 1) / record_steps`, on the grid $x_i = i / \text{resolution}$.
    """
    _, solve_resolution, stride, nu, inner, dtype = _check_recipe_args(
        resolution, solve_resolution, nu, t_final, dt, record_steps, scheme, dtype
    )
    return _sample_jit(
        key,
        stride=stride,
        solve_resolution=solve_resolution,
        nu=nu,
        dt=float(dt),
        inner=inner,
        record_steps=int(record_steps),
        scheme=scheme,
        dtype=dtype,
    )


_STATIC = ("stride", "solve_resolution", "nu", "dt", "inner", "record_steps", "scheme", "dtype")
_sample_jit = jax.jit(_sample, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "batched"))
def _chunk(keys, *, batched, **static):
    sample = functools.partial(_sample, **static)
    w0, frames = jax.vmap(sample)(keys) if batched else jax.lax.map(sample, keys)
    return w0[:, None].astype(jnp.float32), frames.astype(jnp.float32)


def generate_navier_stokes(
    key: PRNGKeyArray,
    n: int,
    resolution: int = 64,
    *,
    solve_resolution: int = 256,
    nu: float = 1e-3,
    t_final: float = 50.0,
    dt: float = 1e-4,
    record_steps: int = 50,
    chunk_size: int = 8,
    scheme: str = "euler_cn",
    dtype=jnp.float32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generates `n` samples of the Navier-Stokes recipe ([`navier_stokes_recipe_sample`][])
    chunk by chunk.

    Sample `i` is drawn with `jax.random.split(key, n)[i]`, so the samples do not depend on
    `chunk_size` (up to float rounding: a different batch size is a different compiled
    program). Each chunk is one jitted call that returns only the recorded, subsampled
    frames: vmapped on accelerators, a sequential `jax.lax.map` on CPU (1.3-1.5x faster per
    sample there at `64^2` to `256^2`: a vmapped batch falls out of cache); the last chunk is
    padded to `chunk_size` (so nothing recompiles) and trimmed.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `n`: number of samples, >= 1.
    - `resolution`, `solve_resolution`, `nu`, `t_final`, `dt`, `record_steps`, `scheme`,
      `dtype`: as for [`navier_stokes_recipe_sample`][].
    - `chunk_size`: samples per jitted call. Working memory is about
      `12 * solve_resolution^2` floats per sample solved at once (one on CPU, `chunk_size`
      on accelerators) plus the chunk's outputs.

    **Returns:**

    An iterator over `(inputs, outputs)`, float32 NumPy arrays, channels first:
    `inputs` of shape `(c, 1, resolution, resolution)` (the initial vorticity) and `outputs`
    of shape `(c, record_steps, resolution, resolution)` (the recorded frames, time as the
    channel axis), with `c = chunk_size` except possibly for the last chunk. Arguments are
    checked at once, the samples are computed lazily.
    """
    n = check_int("n", n, 1)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    _, solve_resolution, stride, nu, inner, dtype = _check_recipe_args(
        resolution, solve_resolution, nu, t_final, dt, record_steps, scheme, dtype
    )
    keys = jax.random.split(key, n)
    chunk_size = min(chunk_size, n)
    static = dict(
        stride=stride,
        solve_resolution=solve_resolution,
        nu=nu,
        dt=float(dt),
        inner=inner,
        record_steps=int(record_steps),
        scheme=scheme,
        dtype=dtype,
        batched=jax.default_backend() != "cpu",
    )

    def chunks():
        for start in range(0, n, chunk_size):
            count = min(chunk_size, n - start)
            index = np.minimum(np.arange(start, start + chunk_size), n - 1)
            w0, frames = _chunk(keys[index], **static)
            yield np.asarray(w0[:count]), np.asarray(frames[:count])

    return chunks()


def navier_stokes_recipe_info(
    resolution: int = 64,
    *,
    solve_resolution: int = 256,
    nu: float = 1e-3,
    t_final: float = 50.0,
    dt: float = 1e-4,
    record_steps: int = 50,
    scheme: str = "euler_cn",
    dtype=jnp.float32,
) -> dict[str, Any]:
    """A JSON-serialisable description of the Navier-Stokes recipe, to be stored with a data set.

    **Arguments:** as for [`navier_stokes_recipe_sample`][].

    **Returns:**

    A dict of plain Python values (str, int, float, bool, list, dict).
    """
    resolution, solve_resolution, stride, nu, inner, dtype = _check_recipe_args(
        resolution, solve_resolution, nu, t_final, dt, record_steps, scheme, dtype
    )
    t_final, dt, record_steps = float(t_final), float(dt), int(record_steps)
    paper = NS_VISCOSITIES.get(nu) == t_final and dt == 1e-4 and solve_resolution == 256
    return {
        "recipe": "navier_stokes",
        "reference": "Li et al., Fourier Neural Operator for Parametric PDEs, ICLR 2021, Sec. 5.3",
        "equation": (
            "w_t + u . grad w = nu Lap w + f on the unit torus [0,1)^2, u = (psi_y, -psi_x), "
            "-Lap psi = w"
        ),
        "nu": nu,
        "forcing": "f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))",
        "initial_vorticity": {
            "field": "w0 ~ N(0, sigma^2 (-Laplacian + tau^2 I)^-alpha), periodic, zero mean",
            "alpha": NS_ALPHA,
            "tau": NS_TAU,
            "sigma": NS_SIGMA,
            "zero_mean": True,
            "expansion": "all Fourier modes of the solve grid (rfft2), constant mode removed",
            "note": (
                "The paper writes the covariance as 7^(3/2) (-Lap + 49 I)^-2.5; its "
                "data-generation code (GaussianRF(alpha=2.5, tau=7)) uses sigma = "
                "tau^(alpha - d/2) = 7^1.5 as the standard-deviation factor, i.e. covariance "
                "7^3 (-Lap + 49 I)^-2.5, which is followed here. The 2020 version of that code "
                "(real and imaginary parts each N(0, 1), real part of the inverse FFT) gives "
                "twice this variance (sqrt(2) sigma); its later version (unit complex normal) "
                "gives exactly sigma^2. The constant mode is set to zero as in that code."
            ),
        },
        "grid": "x_i = i / s, i = 0..s-1 (periodic, endpoint excluded); axis 0 is x, axis 1 is y",
        "resolution": resolution,
        "solve_resolution": solve_resolution,
        "subsample_stride": stride,
        "t_final": t_final,
        "record_steps": record_steps,
        "record_times": f"t_final * k / record_steps, k = 1..{record_steps}",
        "discretisation": {
            "space": (
                "pseudo-spectral (rfft2), 2/3-rule dealiasing of u . grad w "
                "(|k_x|, |k_y| <= s/3), Nyquist wavenumber of first derivatives set to zero"
            ),
            "time": {
                "euler_cn": "explicit Euler for advection + forcing, Crank-Nicolson for viscosity",
                "cn_ab2": (
                    "Adams-Bashforth 2 for advection + forcing (Heun first step), "
                    "Crank-Nicolson for viscosity"
                ),
            }[scheme],
            "crank_nicolson_form": (
                "w + (dt rhs - 2h w) / (1 + h), h = dt nu 4 pi^2 |k|^2 / 2, algebraically the "
                "usual ((1 - h) w + dt rhs) / (1 + h); in float32 it avoids rounding "
                "(1 - h) / (1 + h) to a multiple of 6e-8, which in the FNO generator's float32 "
                "arithmetic biases the low modes' viscous decay by ~1% at dt = 1e-4"
            ),
            "scheme": scheme,
            "dt": dt,
            "steps": inner * record_steps,
            "dtype": dtype,
        },
        "paper_setting": bool(paper and scheme == "euler_cn"),
        "layout": (
            "inputs (n, 1, s, s) = w0; outputs (n, record_steps, s, s) = w at the record times "
            "(channels first, time as channels)"
        ),
        "keys": "sample i uses jax.random.split(key, n)[i]",
        "stored_dtype": "float32",
    }


def navier_stokes_generation_cost(chunk: int, resolution: int, options: dict) -> tuple[int, int]:
    """The solve grid of the Navier-Stokes recipe and the floats held while `chunk` samples
    are generated: ~12 solve^2 per sample solved at once, and the chunk's recorded frames.
    Arithmetic only, for the size budget (`sciml._catalogue.Recipe.coster`)."""
    defaults = inspect.signature(generate_navier_stokes).parameters
    solve = options.get("solve_resolution") or defaults["solve_resolution"].default
    solve = max(solve, resolution)
    record = options.get("record_steps") or defaults["record_steps"].default
    return solve, chunk * (12 * solve**2 + record * resolution**2)
