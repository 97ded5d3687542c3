"""The FNO paper's Burgers data set (Li et al., ICLR 2021, Section 5.1), solved with
[`burgers_solve`][]'s scheme."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..._validate import ArgumentError, check_int
from .._checks import check_dtype, check_real
from .._grf import grf
from .._solvers.burgers import solve, step_count

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


def burgers_resolutions(resolution: int, solve_resolution: int = BURGERS_SOLVE_RESOLUTION):
    """Checks the sample and solve resolutions of the Burgers recipe and returns the stride.

    **Arguments:**

    - `resolution`: points of the returned samples, >= 2.
    - `solve_resolution`: points of the solve grid, even, >= 4, a multiple of `resolution`.

    **Returns:**

    `(solve_resolution, r)` with `solve_resolution = r * resolution`: the sample grid
    $x_j = j / \\text{resolution}$ is every `r`-th point of the solve grid.
    """
    resolution = check_int("resolution", resolution, minimum=2)
    solve_resolution = check_int("solve_resolution", solve_resolution, minimum=4)
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
    nu = check_real("nu", nu, positive=True)
    t_final = check_real("t_final", t_final, nonnegative=True)
    num_steps = 0 if t_final == 0 else step_count(t_final, dt, None, BURGERS_DT)
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
    u = solve(u0, nu=nu, t_final=t_final, num_steps=num_steps, save_steps=None)
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
    dtype = check_dtype(dtype)
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
    n = check_int("n", n)
    chunk_size = check_int("chunk_size", chunk_size)
    solve_resolution, stride, nu, t_final, num_steps = _recipe_options(
        resolution, solve_resolution, nu, t_final, dt
    )
    dtype = check_dtype(dtype)
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
    dtype = check_dtype(dtype)
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
