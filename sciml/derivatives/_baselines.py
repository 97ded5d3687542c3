"""Backward-mode baselines for the stochastic Laplacian estimators: Hutchinson's trace estimator
with reverse-over-reverse Hessian-vector products, and stochastic dimension sampling (SDGD).

Both are what the STDE paper (Shi et al., NeurIPS 2024) compares against: the same estimators
as `stde_laplacian(..., sparse=False)` and `stde_laplacian(..., sparse=True)`, with every second
derivative computed by two reverse-mode passes instead of one second-order jet.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._stochastic import (
    as_point,
    check_chunk_size,
    check_distribution,
    check_num_samples,
    check_variance_possible,
    draw_probe,
    map_samples,
    mean_and_variance,
    probe_mean,
    sample_coordinates,
)


def hte_laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    key: PRNGKeyArray,
    num_samples: int,
    distribution: str = "rademacher",
    chunk_size: int | None = None,
    return_variance: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], Float[Array, ""]]:
    """Hutchinson trace estimate of the Laplacian, with backward-mode Hessian-vector products.

    For `num_samples` i.i.d. probes `v` (Rademacher or standard Gaussian, `E[v v^T] = I`),
    `H v = grad_x <grad f(x), v>` by reverse-over-reverse differentiation, and the estimate is
    the mean of `v^T H v`. Unbiased, with per-probe variance `2 sum_{i != j} H_ij^2`
    (Rademacher) or `2 ||H||_F^2` (Gaussian).

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `key`: a `jax.random` key.
    - `num_samples`: number of probes, a positive integer.
    - `distribution`: `"rademacher"` or `"gaussian"`.
    - `chunk_size`: if given, evaluate at most this many probes at a time (`jax.lax.map`).
    - `return_variance`: also return an unbiased estimate of the variance of the estimate
      (sample variance of the probes over `num_samples`; needs `num_samples >= 2`).

    **Returns:**

    A scalar, or `(estimate, variance)` if `return_variance=True`.

    **References:**

    Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics - Simulation and Computation, 1989.
    Shi et al., "Stochastic Taylor Derivative Estimator", NeurIPS 2024 (as its baseline).
    """
    name = "hte_laplacian"
    x = as_point(name, x)
    d = x.shape[0]
    check_distribution(name, distribution)
    n = check_num_samples(name, num_samples)
    chunk_size = check_chunk_size(name, chunk_size)
    check_variance_possible(name, n, None, return_variance)
    grad_f = jax.grad(f)

    def quadratic_form(v):
        return jnp.vdot(v, jax.grad(lambda y: jnp.vdot(grad_f(y), v))(x))

    probe = functools.partial(draw_probe, d=d, dtype=x.dtype, distribution=distribution)
    return probe_mean(quadratic_form, probe, key, n, chunk_size, return_variance)


def sdgd_laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    key: PRNGKeyArray,
    num_samples: int,
    chunk_size: int | None = None,
    return_variance: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], Float[Array, ""]]:
    """Stochastic dimension sampling estimate of the Laplacian, with backward mode.

    Draws a set `J` of `num_samples` coordinates uniformly without replacement; for each `j`,
    `d^2 f / dx_j^2` is the `j`-th entry of the gradient of the `j`-th entry of `grad f`
    (two reverse-mode passes); the estimate is `d / |J| * sum_{j in J} d^2 f / dx_j^2`. The
    coordinates are processed in parallel (`jax.vmap`, or chunks of `chunk_size`), the efficient
    JAX form of the method. Unbiased, exact when `num_samples = d`.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `key`: a `jax.random` key.
    - `num_samples`: number of coordinates, an integer in `[1, d]`.
    - `chunk_size`: if given, evaluate at most this many coordinates at a time (`jax.lax.map`).
    - `return_variance`: also return an unbiased estimate of the variance of the estimate, with
      the finite-population correction `1 - num_samples / d` (needs `num_samples >= 2` unless
      `num_samples = d`, where the variance is zero).

    **Returns:**

    A scalar, or `(estimate, variance)` if `return_variance=True`.

    **References:**

    Hu, Shukla, Karniadakis, Kawaguchi, "Tackling the curse of dimensionality with
    physics-informed neural networks", 2023 (SDGD). Shi et al., "Stochastic Taylor Derivative
    Estimator", NeurIPS 2024 (as its baseline).
    """
    name = "sdgd_laplacian"
    x = as_point(name, x)
    d = x.shape[0]
    n = check_num_samples(name, num_samples, upper=d)
    chunk_size = check_chunk_size(name, chunk_size)
    check_variance_possible(name, n, d, return_variance)
    grad_f = jax.grad(f)
    indices = sample_coordinates(key, d, n)

    def one(j):
        return d * jax.grad(lambda y: grad_f(y)[j])(x)[j]

    samples = map_samples(one, indices, chunk_size)
    return mean_and_variance(samples, return_variance, population=d)
