"""Point sets in the unit cube: uniform, Sobol, Latin hypercube and cell-centred grids.

Domains map these to their interiors and boundaries (`_domain.py`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

METHODS = ("uniform", "sobol", "lhs", "grid")


def check_method(method: str, allowed: tuple[str, ...] = METHODS) -> str:
    if method not in allowed:
        raise ValueError(
            f"`method` must be one of {', '.join(map(repr, allowed))}, got {method!r}."
        )
    return method


def grid_side(n: int, dim: int, name: str = "n") -> int:
    """The number of points per axis of a grid of `n = m^dim` points (`ValueError` otherwise)."""
    m = max(1, round(n ** (1.0 / dim)))
    for side in (m - 1, m, m + 1):
        if side >= 1 and side**dim == n:
            return side
    below, above = max(1, math.floor(n ** (1.0 / dim))), math.floor(n ** (1.0 / dim)) + 1
    raise ValueError(
        f"`{name}` = {n} must be a perfect power m^{dim} for method 'grid' in {dim} "
        f"dimension(s), e.g. {below**dim} or {above**dim}."
    )


def seed_of(key: PRNGKeyArray) -> int:
    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def sobol(key: PRNGKeyArray, n: int, dim: int) -> np.ndarray:
    """`n` points of a scrambled Sobol sequence in [0, 1)^dim (SciPy's `qmc.Sobol`, Owen
    scrambling seeded from `key`). Balance properties hold when `n` is a power of two; other
    `n` take the first `n` points of the next power of two."""
    from scipy.stats import qmc

    engine = qmc.Sobol(dim, scramble=True, seed=seed_of(key))
    m = max(0, math.ceil(math.log2(n)))
    return engine.random_base2(m)[:n]


def latin_hypercube(key: PRNGKeyArray, n: int, dim: int, dtype=None) -> Array:
    """`n` Latin-hypercube points in [0, 1)^dim: each axis has exactly one point in each of its
    `n` equal strata, at a uniform position inside it, strata permuted independently per axis."""
    perm_key, jitter_key = jax.random.split(key)
    keys = jax.random.split(perm_key, dim)
    strata = jax.vmap(lambda k: jax.random.permutation(k, n))(keys).T  # (n, dim)
    jitter = jax.random.uniform(jitter_key, (n, dim), dtype=dtype)
    return (strata.astype(jitter.dtype) + jitter) / n


def cell_centres(m: int, dim: int, dtype=None) -> Array:
    """The `m^dim` centres of a uniform grid of cells of [0, 1]^dim, first axis slowest."""
    line = (jnp.arange(m, dtype=dtype) + 0.5) / m
    mesh = jnp.meshgrid(*([line] * dim), indexing="ij")
    return jnp.stack([g.reshape(-1) for g in mesh], axis=-1)


def unit_cube(key: PRNGKeyArray, n: int, dim: int, method: str, dtype=None) -> Array:
    """`n` points in [0, 1)^dim by `method` ('uniform', 'sobol', 'lhs' or 'grid')."""
    dtype = jnp.zeros((), dtype).dtype
    if dim == 0:
        return jnp.zeros((n, 0), dtype)
    if method == "uniform":
        return jax.random.uniform(key, (n, dim), dtype=dtype)
    if method == "sobol":
        return jnp.asarray(sobol(key, n, dim), dtype)
    if method == "lhs":
        return latin_hypercube(key, n, dim, dtype)
    if method == "grid":
        return cell_centres(grid_side(n, dim), dim, dtype)
    check_method(method)
    raise AssertionError  # unreachable
