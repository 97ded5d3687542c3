"""Kronecker-product linear algebra on grids: the covariance of a product kernel on a
tensor grid is `A_1 x A_2 x ... x A_d` (one small matrix per dimension)."""

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def _check(factors: Sequence[ArrayLike], size: int, name: str) -> list[Array]:
    factors = [jnp.asarray(a) for a in factors]
    if not factors or any(a.ndim != 2 or a.shape[0] != a.shape[1] for a in factors):
        shapes = [tuple(jnp.shape(a)) for a in factors]
        raise ValueError(f"`{name}`: `factors` must be square matrices, got shapes {shapes}.")
    n = 1
    for a in factors:
        n *= a.shape[0]
    if size != n:
        sizes = " x ".join(str(a.shape[0]) for a in factors)
        raise ValueError(
            f"`{name}`: the vector has {size} entries, the factors a grid of {sizes} = {n}."
        )
    return factors


def _apply(factors: Sequence[Array], x: Array) -> Array:
    # Row-major vectorisation: (A_1 x ... x A_d) vec(X) = vec(X x_1 A_1 ... x_d A_d), each
    # factor acting along its own axis of the grid-shaped X (d small products, never the
    # N x N matrix).
    grid = x.reshape(tuple(a.shape[1] for a in factors))
    for axis, a in enumerate(factors):
        grid = jnp.moveaxis(jnp.tensordot(a, grid, axes=([1], [axis])), 0, axis)
    return grid.reshape(-1)


def kron_matvec(
    factors: Sequence[Float[ArrayLike, "_ _"]], x: Float[ArrayLike, " N"]
) -> Float[Array, " N"]:
    """`(A_1 x A_2 x ... x A_d) x` for `x` flattened row-major over the grid
    `(n_1, ..., n_d)`, in `O(N sum_i n_i)` operations.

    **Arguments:**

    - `factors`: the square matrices `A_i`, `(n_i, n_i)`.
    - `x`: a vector of `N = n_1 ... n_d` entries.

    **Returns:** the product, `(N,)`.
    """
    x = jnp.asarray(x)
    return _apply(_check(factors, x.size, "kron_matvec"), x)


def _eigh(factors: Sequence[Array]) -> tuple[Array, list[Array]]:
    """The eigenvalues of the Kronecker product on the grid (their outer sum of logs is the
    product of the factors' eigenvalues) and the factors' eigenvectors."""
    values, vectors = [], []
    for a in factors:
        w, v = jnp.linalg.eigh(a)
        values.append(w)
        vectors.append(v)
    product = values[0]
    for w in values[1:]:
        product = jnp.multiply.outer(product, w)
    return product.reshape(-1), vectors


def kron_solve(
    factors: Sequence[Float[ArrayLike, "_ _"]],
    y: Float[ArrayLike, " N"],
    *,
    noise: float | Float[ArrayLike, ""] = 0.0,
) -> Float[Array, " N"]:
    """`(A_1 x ... x A_d + noise I)^-1 y` for symmetric positive (semi)definite factors.

    From the factors' eigendecompositions `A_i = V_i diag(w_i) V_i^T`: the product's
    eigenvectors are `V_1 x ... x V_d` and its eigenvalues the products of the `w_i`, so the
    solve is two Kronecker products and a division, `O(N sum_i n_i + sum_i n_i^3)` instead of
    `O(N^3)`. Differentiable in the factors, `y` and `noise` (through `jnp.linalg.eigh`:
    factors with repeated eigenvalues have no derivative of their eigenvectors).

    **Arguments:**

    - `factors`: symmetric matrices `A_i`, `(n_i, n_i)`.
    - `y`: the right-hand side, `N = n_1 ... n_d` entries (row-major over the grid).
    - `noise`: the added multiple of the identity (a nugget or noise variance), >= 0; with 0
        the product must be nonsingular.

    **Returns:** the solution, `(N,)`.
    """
    y = jnp.asarray(y)
    factors = _check(factors, y.size, "kron_solve")
    values, vectors = _eigh(factors)
    rotated = _apply([v.T for v in vectors], y)
    return _apply(vectors, rotated / (values + noise))


def kron_logdet(
    factors: Sequence[Float[ArrayLike, "_ _"]],
    *,
    noise: float | Float[ArrayLike, ""] = 0.0,
) -> Float[Array, ""]:
    """`log det(A_1 x ... x A_d + noise I)` for symmetric positive (semi)definite factors:
    the sum of `log(prod_i w_i + noise)` over the grid of the factors' eigenvalues `w_i`.

    **Arguments:**

    - `factors`: symmetric matrices `A_i`, `(n_i, n_i)`.
    - `noise`: the added multiple of the identity, >= 0.

    **Returns:** the log-determinant, a scalar.
    """
    factors = [jnp.asarray(a) for a in factors]
    size = 1
    for a in factors:
        size *= a.shape[0] if a.ndim == 2 else 0
    factors = _check(factors, size, "kron_logdet")
    values, _ = _eigh(factors)
    return jnp.sum(jnp.log(values + noise))
