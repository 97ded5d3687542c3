"""Stochastic Taylor derivative estimators (STDE): unbiased randomised estimates of the Laplacian,
the biharmonic operator and weighted sums of pure partial derivatives, each sample one forward
Taylor-mode pass.

Reference: Shi, Hu, Lin, Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization
for arbitrary differential operators", NeurIPS 2024.
"""

import functools
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._forward_laplacian import directional_laplacian
from ._taylor import taylor_derivative

_DISTRIBUTIONS = ("rademacher", "gaussian")

# Floyd's sampler costs O(num_samples^2) elementwise work and a sequential loop of num_samples
# steps; a full random permutation costs O(d log d). On CPU the two break even near
# num_samples^2 ~ 1000 d (measured at d = 1e4: 3000 of 1e4 Floyd 2.4 ms vs permutation 3.7 ms).
_FLOYD_MAX_RATIO = 1000


# ------------------------------------------------------------------------------------------------
# Shared helpers (also used by the backward-mode baselines in `_baselines.py`).
# ------------------------------------------------------------------------------------------------


def as_point(name: str, x: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(
            f"`{name}`: `x` must be one point of shape (d,), got shape {x.shape}; "
            "batch over points with `jax.vmap`."
        )
    if x.shape[0] < 1:
        raise ValueError(f"`{name}`: `x` must have at least one coordinate, got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _positive_int(name: str, argument: str, value, upper: int | None = None) -> int:
    """`value` as a Python int in `[1, upper]`, else a one-line `ValueError`."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        n = None
    if n is None or n < 1 or (upper is not None and n > upper):
        allowed = "a positive integer" if upper is None else f"an integer in [1, {upper}]"
        raise ValueError(f"`{name}`: `{argument}` must be {allowed}, got {value!r}.")
    return n


def check_num_samples(name: str, num_samples: int, upper: int | None = None) -> int:
    return _positive_int(name, "num_samples", num_samples, upper)


def check_chunk_size(name: str, chunk_size: int | None) -> int | None:
    return None if chunk_size is None else _positive_int(name, "chunk_size", chunk_size)


def check_variance_possible(
    name: str, num_samples: int, population: int | None, return_variance: bool
) -> None:
    if return_variance and num_samples < 2 and num_samples != population:
        raise ValueError(
            f"`{name}`: `return_variance=True` needs `num_samples` >= 2 to estimate a variance, "
            f"got {num_samples}."
        )


def sample_coordinates(key: PRNGKeyArray, d: int, num_samples: int) -> Int[Array, " n"]:
    """A uniformly random subset of `num_samples` distinct indices of `range(d)`, in no particular
    order (only symmetric functions of the subset are ever taken).

    For `num_samples` small against `d` (the regime of interest: a few dozen coordinates of a
    1e4 to 1e6-dimensional input) this is Floyd's algorithm, O(num_samples^2) work and no O(d)
    array: for j = d - n, ..., d - 1 draw t uniformly from {0, ..., j} and take t unless it was
    already taken, else take j. By induction the chosen set after the step for j is a uniform
    subset of {0, ..., j}. `jax.random.choice(..., replace=False)` permutes all of `range(d)`
    instead, which measured 0.58 s per point at d = 1e6 on CPU against 20 microseconds here.
    """
    if num_samples * num_samples > _FLOYD_MAX_RATIO * d:
        return jax.random.permutation(key, d)[:num_samples]
    top = jnp.arange(d - num_samples, d)
    draws = jax.random.randint(key, (num_samples,), 0, top + 1, dtype=top.dtype)

    def step(i, chosen):
        t = draws[i]
        taken = jnp.any(chosen == t)
        return chosen.at[i].set(jnp.where(taken, top[i], t))

    return lax.fori_loop(0, num_samples, step, jnp.full((num_samples,), -1, dtype=top.dtype))


def map_samples(fn: Callable, xs, chunk_size: int | None) -> Array:
    """`fn` over the leading axis of `xs`, all at once or `chunk_size` at a time."""
    num = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= num:
        return jax.vmap(fn)(xs)
    return lax.map(fn, xs, batch_size=chunk_size)


def mean_and_variance(
    samples: Float[Array, " n"], return_variance: bool, population: int | None = None
):
    """The sample mean of per-sample estimates, and optionally an unbiased estimate of its variance.

    With `population=None` the samples are i.i.d. and Var(mean) = sigma^2 / n, estimated by
    s^2 / n with s^2 the sample variance (denominator n - 1). With `population=N` they are n draws
    without replacement from a finite population of N values a_1, ..., a_N; then
    Var(mean) = (1 - n/N) S^2 / n with S^2 = sum_i (a_i - abar)^2 / (N - 1), and s^2 is unbiased
    for S^2 (Cochran, "Sampling Techniques", ch. 2), so (1 - n/N) s^2 / n is unbiased.
    """
    estimate = jnp.mean(samples)
    if not return_variance:
        return estimate
    n = samples.shape[0]
    if population is not None and n == population:
        return estimate, jnp.zeros_like(estimate)
    fpc = 1.0 if population is None else 1.0 - n / population
    variance = fpc * jnp.var(samples, ddof=1) / n
    return estimate, variance


def _sparse_diagonal(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[Array, " d"],
    coefficients: Float[Array, " d"] | None,
    order: int,
    key: PRNGKeyArray,
    num_samples: int,
    chunk_size: int | None,
    return_variance: bool,
):
    """sum_i c_i d^order f / dx_i^order estimated from `num_samples` coordinates drawn without
    replacement; each sample is d * c_j * (one jet of that order with e_j in slot 1)."""
    d = x.shape[0]
    indices = sample_coordinates(key, d, num_samples)

    def one(j):
        e_j = jax.nn.one_hot(j, d, dtype=x.dtype)
        term = taylor_derivative(f, x, (e_j,), order)
        if coefficients is not None:
            term = coefficients[j] * term
        return d * term

    samples = map_samples(one, indices, chunk_size)
    return mean_and_variance(samples, return_variance, population=d)


def draw_probe(key: PRNGKeyArray, d: int, dtype, distribution: str) -> Float[Array, " d"]:
    if distribution == "rademacher":
        return jax.random.rademacher(key, (d,), dtype=dtype)
    return jax.random.normal(key, (d,), dtype=dtype)


def probe_mean(
    estimate: Callable[[Float[Array, " d"]], Float[Array, ""]],
    probe: Callable[[PRNGKeyArray], Float[Array, " d"]],
    key: PRNGKeyArray,
    num_samples: int,
    chunk_size: int | None,
    return_variance: bool,
):
    """The mean of `estimate(probe(k))` over `num_samples` independent keys (probes are drawn
    inside each sample, so at most `chunk_size` of them exist at a time), and optionally the
    variance of that mean."""
    samples = map_samples(
        lambda k: estimate(probe(k)), jax.random.split(key, num_samples), chunk_size
    )
    return mean_and_variance(samples, return_variance)


def check_distribution(name: str, distribution: str) -> None:
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"`{name}`: `distribution` must be one of {_DISTRIBUTIONS}, got {distribution!r}."
        )


# ------------------------------------------------------------------------------------------------
# Public estimators.
# ------------------------------------------------------------------------------------------------


def stde_laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    key: PRNGKeyArray,
    num_samples: int,
    sparse: bool = True,
    distribution: str = "rademacher",
    chunk_size: int | None = None,
    return_variance: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], Float[Array, ""]]:
    """Unbiased stochastic Taylor-mode estimate of the Laplacian `sum_i d^2 f / dx_i^2` at `x`.

    - `sparse=True`: draw a set `J` of `num_samples` coordinates uniformly without replacement;
      for each `j` a second-order jet with tangent `e_j` gives `d^2 f / dx_j^2`; the estimate is
      `d / |J| * sum_{j in J} d^2 f / dx_j^2`. With `num_samples = d` it is the exact Laplacian.
    - `sparse=False`: draw `num_samples` i.i.d. probes `v` with `E[v v^T] = I` (Rademacher or
      standard Gaussian); a second-order jet with tangent `v` gives `v^T H v`; the estimate is
      their mean (Hutchinson's trace estimator, evaluated in forward mode). Per probe,
      `Var(v^T H v) = 2 sum_{i != j} H_ij^2` for Rademacher and `2 ||H||_F^2` for Gaussian.

    How it is evaluated: by default the sampled second-order terms are propagated together and
    summed as they are formed (the collapsed forward pass of
    [`sciml.derivatives.forward_laplacian`][] restricted to the sampled directions). With
    coordinate sampling the input's Jacobian stays a symbolic row selection, so the first
    layer of a network costs `|J|` rows of its weight instead of `|J|` products of a
    `d`-vector with it: the cost per point no longer grows with `d` beyond the primal pass.
    With `return_variance=True` (which needs each sample on its own), or when `f` uses a
    primitive that pass does not support, every sample is its own second-order jet
    (`jax.experimental.jet`). Both give the same value up to rounding.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `key`: a `jax.random` key.
    - `num_samples`: number of coordinates (`sparse=True`, at most `d`) or probes (`sparse=False`).
    - `sparse`: coordinate sampling (`True`) or dense probes (`False`).
    - `distribution`: `"rademacher"` or `"gaussian"`, the law of the dense probes; with
      `sparse=True` only the default is accepted.
    - `chunk_size`: if given, evaluate at most this many samples at a time (`jax.lax.map`) to
      bound memory at very high `d`; the result does not depend on it.
    - `return_variance`: also return an unbiased estimate of the variance of the estimate, from
      its own samples (needs `num_samples >= 2`; with sampling without replacement it carries
      the finite-population correction `1 - num_samples / d`).

    **Returns:**

    A scalar, or `(estimate, variance)` if `return_variance=True`.

    **References:**

    Shi et al., "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary
    differential operators", NeurIPS 2024. Hutchinson, "A stochastic estimator of the trace of
    the influence matrix for Laplacian smoothing splines", 1989.
    """
    name = "stde_laplacian"
    x = as_point(name, x)
    d = x.shape[0]
    check_distribution(name, distribution)
    chunk_size = check_chunk_size(name, chunk_size)
    if sparse:
        if distribution != "rademacher":
            raise ValueError(
                f"`{name}`: `distribution={distribution!r}` applies to dense probes only; "
                "pass `sparse=False` to use it."
            )
        n = check_num_samples(name, num_samples, upper=d)
        check_variance_possible(name, n, d, return_variance)
        if not return_variance:
            indices = sample_coordinates(key, d, n)
            try:
                return d / n * directional_laplacian(f, x, indices, chunk_size)
            except NotImplementedError:
                pass
        return _sparse_diagonal(f, x, None, 2, key, n, chunk_size, return_variance)

    n = check_num_samples(name, num_samples)
    check_variance_possible(name, n, None, return_variance)
    probe = functools.partial(draw_probe, d=d, dtype=x.dtype, distribution=distribution)
    if not return_variance:
        keys = jax.random.split(key, n)
        try:
            return directional_laplacian(f, x, keys, chunk_size, probe=probe) / n
        except NotImplementedError:
            pass
    return probe_mean(
        lambda v: taylor_derivative(f, x, (v,), 2), probe, key, n, chunk_size, return_variance
    )


def stde_biharmonic(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    key: PRNGKeyArray,
    num_samples: int,
    chunk_size: int | None = None,
    return_variance: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], Float[Array, ""]]:
    """Unbiased stochastic Taylor-mode estimate of the biharmonic operator
    `Delta^2 f = sum_{i,k} d^4 f / dx_i^2 dx_k^2` at `x`.

    A fourth-order jet with tangent `(v, 0, 0, 0)` gives `(v . grad)^4 f = T[v, v, v, v]`, with
    `T` the fourth-derivative tensor. For `v ~ N(0, I)`, Isserlis' theorem gives
    `E[T[v, v, v, v]] = 3 sum_{i,k} T_iikk = 3 Delta^2 f` (three pairings of four indices), so
    the estimate is `1/3` times the mean over `num_samples` Gaussian probes. Per probe,
    `Var(T[v,v,v,v] / 3) = (24 ||T||_F^2 + 72 ||C||_F^2) / 9` with `C_ij = sum_k T_kkij`.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `key`: a `jax.random` key.
    - `num_samples`: number of Gaussian probes, a positive integer.
    - `chunk_size`: if given, evaluate at most this many probes at a time (`jax.lax.map`).
    - `return_variance`: also return an unbiased estimate of the variance of the estimate
      (sample variance of the probes over `num_samples`; needs `num_samples >= 2`).

    **Returns:**

    A scalar, or `(estimate, variance)` if `return_variance=True`.

    **References:**

    Shi et al., "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary
    differential operators", NeurIPS 2024.
    """
    name = "stde_biharmonic"
    x = as_point(name, x)
    d = x.shape[0]
    n = check_num_samples(name, num_samples)
    chunk_size = check_chunk_size(name, chunk_size)
    check_variance_possible(name, n, None, return_variance)

    probe = functools.partial(draw_probe, d=d, dtype=x.dtype, distribution="gaussian")
    estimate = lambda v: taylor_derivative(f, x, (v,), 4) / 3
    return probe_mean(estimate, probe, key, n, chunk_size, return_variance)


def stde_diagonal(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    coefficients: Float[ArrayLike, " d"] | Float[ArrayLike, ""],
    order: int,
    *,
    key: PRNGKeyArray,
    num_samples: int,
    chunk_size: int | None = None,
    return_variance: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], Float[Array, ""]]:
    """Unbiased stochastic Taylor-mode estimate of the diagonal part of a general operator,
    `sum_i c_i d^order f / dx_i^order`.

    Draws a set `J` of `num_samples` coordinates uniformly without replacement; for each `j` a
    jet of order `order` with `e_j` in slot 1 (and all other slots zero) gives
    `d^order f / dx_j^order`; the estimate is `d / |J| * sum_{j in J} c_j d^order f / dx_j^order`,
    exact when `num_samples = d`. There is no dense (random-probe) unbiased estimator of such a
    sum for `order > 2`, hence the coordinate sampling.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `coefficients`: the weights `c`, shape `(d,)`, or a scalar used for every coordinate.
      May be traced (differentiable).
    - `order`: the order of the pure partial derivatives, a positive integer.
    - `key`: a `jax.random` key.
    - `num_samples`: number of coordinates, an integer in `[1, d]`.
    - `chunk_size`: if given, evaluate at most this many coordinates at a time (`jax.lax.map`).
    - `return_variance`: also return an unbiased estimate of the variance of the estimate, with
      the finite-population correction `1 - num_samples / d` (needs `num_samples >= 2` unless
      `num_samples = d`, where the variance is zero).

    **Returns:**

    A scalar, or `(estimate, variance)` if `return_variance=True`.

    **References:**

    Shi et al., "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary
    differential operators", NeurIPS 2024.
    """
    name = "stde_diagonal"
    x = as_point(name, x)
    d = x.shape[0]
    order = _positive_int(name, "order", order)
    coefficients = jnp.asarray(coefficients)
    if coefficients.shape not in ((), (d,)):
        raise ValueError(
            f"`{name}`: `coefficients` must be a scalar or have shape ({d},) to match `x`, "
            f"got shape {coefficients.shape}."
        )
    coefficients = jnp.broadcast_to(coefficients, (d,))
    n = check_num_samples(name, num_samples, upper=d)
    chunk_size = check_chunk_size(name, chunk_size)
    check_variance_possible(name, n, d, return_variance)
    return _sparse_diagonal(f, x, coefficients, order, key, n, chunk_size, return_variance)
