"""The FNO paper's Darcy flow data set (Li et al., ICLR 2021, Section 5.2)."""

from __future__ import annotations

import functools
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
from .._solvers.darcy import darcy_solve, default_rtol

# The recipe's constants (FNO paper, Section 5.2 and its data-generation code).
DARCY_ALPHA = 2.0
DARCY_TAU = 3.0
DARCY_HIGH = 12.0
DARCY_LOW = 3.0
DARCY_FORCING = 1.0
DARCY_MIN_SOLVE_RESOLUTION = 421


def darcy_resolutions(resolution: int, solve_resolution: int | None = None) -> tuple[int, int]:
    """Checks the sample and solve resolutions of the Darcy recipe and returns them with the stride.

    **Arguments:**

    - `resolution`: nodes per axis of the returned samples, >= 3.
    - `solve_resolution`: nodes per axis of the solve; `None` picks the smallest
      `(resolution - 1) * r + 1 >= 421` (421 for `resolution = 85`, as in the paper; 442 for 64).

    **Returns:**

    `(solve_resolution, r)` with `solve_resolution - 1 = r * (resolution - 1)`, so that every
    `r`-th node of the solve grid is a node of the sample grid.
    """
    resolution = check_int("resolution", resolution, 3)
    if solve_resolution is None:
        stride = max(1, math.ceil((DARCY_MIN_SOLVE_RESOLUTION - 1) / (resolution - 1)))
        return (resolution - 1) * stride + 1, stride
    if (
        isinstance(solve_resolution, bool)
        or not isinstance(solve_resolution, int | np.integer)
        or solve_resolution < resolution
        or (solve_resolution - 1) % (resolution - 1) != 0
    ):
        raise ArgumentError(
            f"`solve_resolution` must be None or an int with solve_resolution - 1 a multiple of "
            f"resolution - 1 = {resolution - 1} (e.g. {(resolution - 1) * 5 + 1}), "
            f"got {solve_resolution!r}.",
            argument="solve_resolution",
        )
    solve_resolution = int(solve_resolution)
    return solve_resolution, (solve_resolution - 1) // (resolution - 1)


def _trapezoid_mean(g: Float[Array, "s s"]) -> Float[Array, ""]:
    # The 2-D trapezoid rule on the node grid integrates every cosine mode cos(pi k x), 1 <= k <=
    # s - 1, exactly to zero, so subtracting this mean zeroes exactly the k = 0 coefficient.
    w = jnp.ones(g.shape[0], g.dtype).at[jnp.array([0, -1])].set(0.5)
    return jnp.einsum("i,j,ij->", w, w, g) / jnp.sum(w) ** 2


def darcy_recipe_sample(
    key: PRNGKeyArray,
    resolution: int,
    *,
    solve_resolution: int | None = None,
    zero_mean: bool = False,
    dtype=jnp.float32,
) -> tuple[Float[Array, "s s"], Float[Array, "s s"]]:
    r"""Draws one `(a, u)` pair of the FNO paper's Darcy flow data set.

    $-\nabla \cdot (a \nabla u) = 1$ on $(0, 1)^2$, $u = 0$ on the boundary, with
    $a = \psi(g)$, $g \sim N(0, (-\Delta + 9 I)^{-2})$ with zero Neumann boundary conditions
    ([`grf`][] with `alpha=2, tau=3, boundary="neumann"` and the FNO-code amplitude
    `sigma = 3`, which does not matter for the threshold), $\psi = 12$ where $g \ge 0$ and $3$
    where $g < 0$. The field is drawn and the equation solved ([`darcy_solve`][]) on the node
    grid with `solve_resolution` points per axis; both are then subsampled to every `r`-th node.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `resolution`: nodes per axis of the output (boundary included), >= 3.
    - `solve_resolution`: nodes per axis of the solve; see `darcy_resolutions`.
    - `zero_mean`: remove the constant mode of $g$. The paper's covariance includes it (the
      default, `False`); the FNO MATLAB generator zeroed it, which makes both phases appear in
      almost every sample (the constant mode carries about 57% of the pointwise variance).
    - `dtype`: floating dtype of the field and the solve. The default float32 solve (CG to
      `rtol=1e-5`) is accurate to a few 1e-7 relative to the float64 solution, far below the
      O(h) discretisation error of the discontinuous coefficient.

    **Returns:**

    `(a, u)`, each of shape `(resolution, resolution)`, on the node grid
    $x_i = i / (\text{resolution} - 1)$.
    """
    solve_resolution, stride = darcy_resolutions(resolution, solve_resolution)
    shape = (solve_resolution, solve_resolution)
    g = grf(key, shape, alpha=DARCY_ALPHA, tau=DARCY_TAU, boundary="neumann", dtype=dtype)
    if zero_mean:
        g = g - _trapezoid_mean(g)
    a = jnp.where(g >= 0, jnp.asarray(DARCY_HIGH, dtype), jnp.asarray(DARCY_LOW, dtype))
    u = darcy_solve(a, DARCY_FORCING)
    return a[::stride, ::stride], u[::stride, ::stride]


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _darcy_chunk(keys, resolution, solve_resolution, zero_mean, dtype, batched):
    sample = functools.partial(
        darcy_recipe_sample,
        resolution=resolution,
        solve_resolution=solve_resolution,
        zero_mean=zero_mean,
        dtype=dtype,
    )
    if batched:
        return jax.vmap(sample)(keys)
    # On CPU a vmapped batch of 400^2 fields falls out of cache and is ~1.8x slower per sample
    # than solving the samples one after the other inside the same compiled call.
    return jax.lax.map(sample, keys)


def generate_darcy(
    key: PRNGKeyArray,
    n: int,
    resolution: int,
    *,
    solve_resolution: int | None = None,
    chunk_size: int = 16,
    zero_mean: bool = False,
    dtype=jnp.float32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generates `n` samples of the Darcy recipe ([`darcy_recipe_sample`][]) chunk by chunk.

    Sample `i` is drawn with `jax.random.split(key, n)[i]`, so the samples do not depend on
    `chunk_size` (up to float rounding: a different batch size is a different compiled
    program). Each chunk is one jitted call, vmapped on accelerators and a sequential
    `jax.lax.map` on CPU (faster there); the last chunk is padded to `chunk_size` (so nothing
    recompiles) and trimmed.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `n`: number of samples, >= 1.
    - `resolution`, `solve_resolution`, `zero_mean`, `dtype`: as for [`darcy_recipe_sample`][].
    - `chunk_size`: samples per batched solve (memory ~ 10 * chunk_size * solve_resolution^2
      floats).

    **Returns:**

    An iterator over `(a_chunk, u_chunk)`, float32 NumPy arrays of shape
    `(c, resolution, resolution)` with `c = chunk_size` except possibly for the last chunk.
    Arguments are checked at once, the samples are computed lazily.
    """
    n = check_int("n", n)
    chunk_size = check_int("chunk_size", chunk_size)
    solve_resolution, _ = darcy_resolutions(resolution, solve_resolution)
    dtype = check_dtype(dtype)
    keys = jax.random.split(key, int(n))
    chunk_size = min(int(chunk_size), int(n))
    batched = jax.default_backend() != "cpu"

    def chunks():
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            index = np.minimum(np.arange(start, start + chunk_size), n - 1)
            a, u = _darcy_chunk(
                keys[index], resolution, solve_resolution, bool(zero_mean), dtype, batched
            )
            count = stop - start
            yield (
                np.asarray(a[:count], dtype=np.float32),
                np.asarray(u[:count], dtype=np.float32),
            )

    return chunks()


def darcy_dataset_chunks(
    key: PRNGKeyArray, n: int, resolution: int, **options: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`generate_darcy` with a channel axis: `(a[:, None], u[:, None])` chunks, as dataset files
    store them."""
    for a, u in generate_darcy(key, n, resolution, **options):
        yield a[:, None], u[:, None]


def darcy_recipe_info(
    resolution: int,
    *,
    solve_resolution: int | None = None,
    zero_mean: bool = False,
    dtype=jnp.float32,
) -> dict[str, Any]:
    """A JSON-serialisable description of the Darcy recipe, to be stored with a data set.

    **Arguments:** as for [`darcy_recipe_sample`][].

    **Returns:**

    A dict of plain Python values (str, int, float, bool, dict).
    """
    solve_resolution, stride = darcy_resolutions(resolution, solve_resolution)
    dtype = np.dtype(dtype).name
    return {
        "recipe": "darcy",
        "reference": "Li et al., Fourier Neural Operator for Parametric PDEs, ICLR 2021, Sec. 5.2",
        "equation": "-div(a grad u) = f on (0,1)^2, u = 0 on the boundary",
        "f": DARCY_FORCING,
        "coefficient": {
            "field": "g ~ N(0, sigma^2 (-Laplacian + tau^2 I)^-alpha), zero Neumann boundary",
            "alpha": DARCY_ALPHA,
            "tau": DARCY_TAU,
            "sigma": DARCY_TAU ** (DARCY_ALPHA - 1.0),
            "boundary": "neumann",
            "expansion": "cosine modes k = 0..N-1 per axis on the solve grid (DCT-I)",
            "zero_mean": bool(zero_mean),
            "map": f"a = {DARCY_HIGH} where g >= 0, {DARCY_LOW} where g < 0",
            "value_high": DARCY_HIGH,
            "value_low": DARCY_LOW,
            "threshold": 0.0,
        },
        "grid": "nodes x_i = i / (s - 1), i = 0..s-1, boundary included",
        "resolution": int(resolution),
        "solve_resolution": solve_resolution,
        "subsample_stride": stride,
        "discretisation": (
            "second-order conservative 5-point finite differences on the interior nodes; face "
            "coefficient = arithmetic mean of the two adjacent node values of a"
        ),
        "solver": {
            "method": "conjugate gradients (lineax.CG), stopping on the recursive residual",
            "preconditioner": "exact inverse of min(a) * (-discrete Laplacian) via DST-I",
            "rtol": default_rtol(np.dtype(dtype)),
            "dtype": dtype,
        },
        "keys": "sample i uses jax.random.split(key, n)[i]",
        "stored_dtype": "float32",
    }


def darcy_generation_cost(chunk: int, resolution: int, options: dict) -> tuple[int, int]:
    """The solve grid of the Darcy recipe and the floats held while `chunk` samples are
    generated: ~10 solve^2 per sample (coefficient, CG vectors). Arithmetic only, for the
    size budget (`sciml._catalogue.Recipe.coster`)."""
    stride = max(1, math.ceil((DARCY_MIN_SOLVE_RESOLUTION - 1) / max(resolution - 1, 1)))
    solve = options.get("solve_resolution") or (resolution - 1) * stride + 1
    return solve, 10 * chunk * solve**2
