"""First-order derivatives of coordinate fields by forward mode: one `jax.jvp` per direction."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._taylor import check_point


def _direction(name: str, axis: int, x: Array) -> Array:
    (d,) = x.shape
    if not isinstance(axis, int) or not -d <= axis < d:
        raise ValueError(f"`{name}`: `axis` must be an integer in [-{d}, {d}), got {axis!r}.")
    return jax.nn.one_hot(axis % d, d, dtype=x.dtype)


def partial(
    u: Callable[[Float[Array, " d"]], Array], x: Float[ArrayLike, " d"], axis: int
) -> Array:
    r"""The partial derivative $\partial u / \partial x_{axis}$ at one point, by one `jax.jvp`.

    **Arguments:**

    - `u`: a field of one point, returning any shape (a scalar, or a vector for systems).
    - `x`: the point, shape `(d,)`.
    - `axis`: the coordinate (negative counts from the end: `-1` is time in space-time).

    **Returns:** an array of the shape of `u(x)`.
    """
    x = check_point("partial", x)
    return jax.jvp(u, (x,), (_direction("partial", axis, x),))[1]


def jacobian(
    u: Callable[[Float[Array, " d"]], Array], x: Float[ArrayLike, " d"]
) -> Float[Array, "*out d"]:
    r"""The Jacobian $J_{ij} = \partial u_i / \partial x_j$ of a field at one point (`jax.jacfwd`:
    `d` forward-mode derivatives, one per input coordinate).

    **Arguments:**

    - `u`: a field of one point returning shape `out` (`()` for a scalar field).
    - `x`: the point, shape `(d,)`.

    **Returns:** shape `(*out, d)`; for a vector field `u: R^d -> R^m`, `(m, d)`.
    """
    x = check_point("jacobian", x)
    return jax.jacfwd(u)(x)


def gradient(
    u: Callable[[Float[Array, " d"]], Array], x: Float[ArrayLike, " d"]
) -> Float[Array, " d"]:
    r"""The gradient $\nabla u$ of a scalar field at one point (`d` forward-mode derivatives).

    **Arguments:**

    - `u`: a scalar field of one point (shape `()` or `(1,)`).
    - `x`: the point, shape `(d,)`.

    **Returns:** shape `(d,)`.
    """
    x = check_point("gradient", x)
    out = jax.eval_shape(u, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if getattr(out, "shape", None) not in ((), (1,)):
        raise ValueError(
            "`gradient`: `u` must return a scalar (shape () or (1,)), got "
            f"{getattr(out, 'shape', type(out).__name__)}; use `jacobian` for a vector field."
        )
    return jax.jacfwd(lambda y: jnp.reshape(u(y), ()))(x)


__all__ = ["partial", "gradient", "jacobian"]
