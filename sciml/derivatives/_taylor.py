"""The one primitive every operator in this package is built from: a Taylor-mode derivative of a
scalar field along a curve, computed with `jax.experimental.jet`."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import jet
from jaxtyping import Array, ArrayLike, Float


def taylor_derivative(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    tangents: Sequence[Float[ArrayLike, " d"] | None],
    order: int,
) -> Float[Array, ""]:
    """The `order`-th derivative of `t -> f(x(t))` at `t = 0`, in one forward Taylor-mode pass.

    The curve is `x(t) = x + sum_k tangents[k-1] t^k / k!`: `tangents[k-1]` is its k-th derivative
    (the `jax.experimental.jet` convention: series hold derivatives, not Taylor coefficients).
    Missing or `None` slots are zero. By Faa di Bruno's formula the result is a sum over the
    integer partitions of `order` of derivative tensors of `f` contracted with the tangents in the
    partition's slots; e.g. `order=2, tangents=(v,)` gives `v^T H v`.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `tangents`: at most `order` direction vectors; entry `k-1` fills slot `k`.
    - `order`: which derivative of the output series to return, at least 1.

    **Returns:** a scalar.
    """
    if order < 1:
        raise ValueError(f"`taylor_derivative`: order must be at least 1, got {order}.")
    if len(tangents) > order:
        raise ValueError(
            f"`taylor_derivative`: got {len(tangents)} tangent slots for a jet of order {order}; "
            f"at most {order} are allowed."
        )
    x = jnp.asarray(x)
    zero = jnp.zeros_like(x)
    series = [zero if t is None else jnp.asarray(t, dtype=x.dtype) for t in tangents]
    series += [zero] * (order - len(series))
    _, out = jet.jet(f, (x,), (series,))
    return out[order - 1]


def check_point(name: str, x) -> Array:
    """`x` as an array of shape `(d,)`, `d >= 1`, of a floating dtype, or a one-line error."""
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(
            f"`{name}`: `x` must be one point of shape (d,) with d >= 1, got shape {x.shape}; "
            "batch over points with `jax.vmap`."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}`: `x` must have a floating dtype, got {x.dtype}.")
    return x


def check_output(name: str, f: Callable, x: Array, shape: tuple[int, ...], what: str) -> None:
    """Raises a one-line error unless `f(x)` is a single array of shape `shape`."""
    out = jax.eval_shape(f, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != shape:
        seen = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(
            f"`{name}`: `f` must return {what}, got {seen} for `x` of shape {x.shape}."
        )


def check_chunk_size(name: str, chunk_size) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"`{name}`: `chunk_size` must be None or a positive int, got {chunk_size!r}."
        )


def sum_over_chunks(fn: Callable[[Array], Array], n: int, chunk_size: int | None) -> Array:
    """`sum_k fn(idx_k)` over consecutive chunks `idx_k` of `arange(n)` of length `chunk_size`.

    `fn` takes an integer index vector and returns the sum of its contribution over those
    indices. `None` (or a chunk at least `n`) means one call on all of `arange(n)`. Full chunks
    run under `jax.lax.map` with the body under `jax.checkpoint`, so that only one chunk's
    intermediates are alive at a time, in the forward pass and in a reverse-mode pass alike; a
    shorter last chunk is one more call.
    """
    if chunk_size is None or chunk_size >= n:
        return fn(jnp.arange(n))
    full, rest = divmod(n, chunk_size)
    idx = jnp.arange(full * chunk_size).reshape(full, chunk_size)
    total = jnp.sum(jax.lax.map(jax.checkpoint(fn), idx), axis=0)
    if rest:
        total = total + fn(jnp.arange(full * chunk_size, n))
    return total


def map_over_chunks(fn: Callable[[Array], Array], n: int, chunk_size: int | None) -> Array:
    """`fn(i)` for `i in range(n)`, stacked; vmapped, or `chunk_size` at a time (rematerialised
    in reverse mode, as in `sum_over_chunks`)."""
    if chunk_size is None or chunk_size >= n:
        return jax.vmap(fn)(jnp.arange(n))
    return jax.lax.map(jax.checkpoint(fn), jnp.arange(n), batch_size=chunk_size)
