"""Boundary and initial conditions, each a soft loss term on its own set of points."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._domain import AbstractDomain, Box, SpaceTime

Field = Callable[[Float[Array, " dim"]], Array]


def _value_at(value, x: Array, like: Array) -> Array:
    out = value(x) if callable(value) else value
    return jnp.broadcast_to(jnp.asarray(out, like.dtype), like.shape)


def _grad(u: Field, x: Array) -> Array:
    return jax.grad(lambda y: jnp.squeeze(u(y)))(x)


def _box_of(domain: AbstractDomain, name: str) -> Box:
    box = domain._box() if isinstance(domain, SpaceTime) else domain
    if isinstance(domain, SpaceTime) and not isinstance(domain.space, Box):
        box = None
    if not isinstance(box, Box):
        raise ValueError(f"`{name}` needs a `Box` domain (or a `SpaceTime` over one).")
    return box


class AbstractCondition(eqx.Module):
    """A condition imposed softly: residuals at a set of points (drawn by `sample`) whose mean
    square is one named term of the loss."""

    @abc.abstractmethod
    def sample(
        self, domain: AbstractDomain, key: PRNGKeyArray, n: int, method: str, dtype=None
    ) -> Float[Array, "n dim"]:
        """`n` points where the condition is imposed."""

    @abc.abstractmethod
    def residuals(self, u: Field, x: Float[Array, "n dim"], domain: AbstractDomain) -> Array:
        """The residuals at the rows of `x`, shape `(n, ...)` (zero where the condition
        holds)."""


class AbstractPointwiseCondition(AbstractCondition):
    """A condition stated point by point: `residual(u, x, domain)` at one point, which
    `residuals` maps over the points with `jax.vmap`."""

    @abc.abstractmethod
    def residual(self, u: Field, x: Float[Array, " dim"], domain: AbstractDomain) -> Array:
        """The residual at one point (zero when the condition holds)."""

    def residuals(self, u: Field, x: Float[Array, "n dim"], domain: AbstractDomain) -> Array:
        return jax.vmap(lambda p: self.residual(u, p, domain))(x)


class Dirichlet(AbstractPointwiseCondition):
    """`u = value` on the boundary (or on some faces of a box).

    **Arguments:**

    - `value`: a number, or `value(x)` of one point returning the model's output shape.
    - `faces`: for box domains, `(axis, side)` pairs to restrict to (default: the whole
        boundary; for space-time boxes, the spatial faces).
    """

    value: ArrayLike | Callable = 0.0
    faces: tuple | None = eqx.field(static=True, default=None)

    def sample(self, domain, key, n, method, dtype=None):
        if self.faces is None:
            return domain.sample_boundary(key, n, method, dtype=dtype)
        box = _box_of(domain, "Dirichlet(faces=...)")
        return box.sample_boundary(key, n, method, dtype=dtype, faces=self.faces)

    def residual(self, u, x, domain):
        out = u(x)
        return out - _value_at(self.value, x, out)


class Neumann(AbstractPointwiseCondition):
    """`grad u . n = value` on the boundary, `n` the outward normal (scalar fields).

    **Arguments:** as for `Dirichlet`.
    """

    value: ArrayLike | Callable = 0.0
    faces: tuple | None = eqx.field(static=True, default=None)

    def sample(self, domain, key, n, method, dtype=None):
        return Dirichlet(faces=self.faces).sample(domain, key, n, method, dtype)

    def residual(self, u, x, domain):
        flux = jnp.dot(_grad(u, x), domain.normal(x))
        return flux - _value_at(self.value, x, flux)


class Periodic(AbstractPointwiseCondition):
    """Periodicity along one axis of a box: `d^k u / dx_axis^k` equal on the two opposite faces
    for every `k` in `derivatives`.

    **Arguments:**

    - `axis`: the periodic axis.
    - `derivatives`: the derivative orders matched (default `(0, 1)`: values and slopes).
    """

    axis: int = eqx.field(static=True)
    derivatives: tuple[int, ...] = eqx.field(static=True, default=(0, 1))

    def __check_init__(self):
        if not self.derivatives or any(int(k) < 0 for k in self.derivatives):
            raise ValueError(
                f"`Periodic` needs non-negative derivative orders, got {self.derivatives!r}."
            )

    def sample(self, domain, key, n, method, dtype=None):
        box = _box_of(domain, "Periodic")
        if not 0 <= self.axis < box.dim:
            raise ValueError(f"`Periodic.axis` must be in 0..{box.dim - 1}, got {self.axis}.")
        return box.sample_boundary(key, n, method, dtype=dtype, faces=[(self.axis, 0)])

    def residual(self, u, x, domain):
        box = _box_of(domain, "Periodic")
        period = box.upper[self.axis] - box.lower[self.axis]
        shifted = x.at[self.axis].add(period)
        e = jax.nn.one_hot(self.axis, x.shape[0], dtype=x.dtype)

        def along(y, k):
            if k == 0:
                return u(y)
            return jax.jvp(
                lambda t: along(y + t * e, k - 1),
                (jnp.zeros((), x.dtype),),
                (jnp.ones((), x.dtype),),
            )[1]

        return jnp.stack([along(x, k) - along(shifted, k) for k in self.derivatives])


class Initial(AbstractPointwiseCondition):
    """`u(x, t0) = value(x)` on the initial slice of a `SpaceTime` domain, and optionally
    `du/dt(x, t0) = velocity(x)` (second order in time).

    **Arguments:**

    - `value`: a number or `value(point)` (the point includes `t = t0` as its last entry).
    - `velocity`: `None`, a number or a function of the point.
    """

    value: ArrayLike | Callable = 0.0
    velocity: ArrayLike | Callable | None = None

    def sample(self, domain, key, n, method, dtype=None):
        if not isinstance(domain, SpaceTime):
            raise ValueError(f"`Initial` needs a `SpaceTime` domain, got {type(domain).__name__}.")
        return domain.sample_initial(key, n, method, dtype=dtype)

    def residual(self, u, x, domain):
        out = u(x)
        terms = [jnp.ravel(out - _value_at(self.value, x, out))]
        if self.velocity is not None:
            e = jax.nn.one_hot(x.shape[0] - 1, x.shape[0], dtype=x.dtype)
            rate = jax.jvp(u, (x,), (e,))[1]
            terms.append(jnp.ravel(rate - _value_at(self.velocity, x, rate)))
        return jnp.concatenate(terms)


class Robin(AbstractPointwiseCondition):
    """`alpha u + beta grad u . n = value` on the boundary, `n` the outward normal of the
    domain (scalar fields). `alpha = 1, beta = 0` is `Dirichlet`, `alpha = 0, beta = 1` is
    `Neumann`.

    **Arguments:**

    - `alpha`, `beta`: numbers, or functions of one boundary point.
    - `value`: a number, or `value(x)` of one point.
    - `faces`: as for `Dirichlet`.
    """

    alpha: ArrayLike | Callable
    beta: ArrayLike | Callable
    value: ArrayLike | Callable = 0.0
    faces: tuple | None = eqx.field(static=True, default=None)

    def sample(self, domain, key, n, method, dtype=None):
        return Dirichlet(faces=self.faces).sample(domain, key, n, method, dtype)

    def residual(self, u, x, domain):
        out = jnp.reshape(u(x), ())
        flux = jnp.dot(_grad(u, x), domain.normal(x))
        lhs = _value_at(self.alpha, x, out) * out + _value_at(self.beta, x, out) * flux
        return lhs - _value_at(self.value, x, lhs)


class BoundaryOperator(AbstractPointwiseCondition):
    """A general boundary condition `operator(u, x, n) = value`, `n` the domain's outward
    normal at the boundary point `x`: e.g. a nonlinear flux `lambda u, x, n: u(x) ** 2 +
    jnp.dot(jax.grad(u)(x), n)`, or a traction for a system, written with `sciml.derivatives`.

    **Arguments:**

    - `operator`: `operator(u, x, n) -> Array` at one boundary point (`u` the model).
    - `value`: a number, or `value(x)` of one point, of the operator's shape.
    - `faces`: as for `Dirichlet`.
    """

    operator: Callable
    value: ArrayLike | Callable = 0.0
    faces: tuple | None = eqx.field(static=True, default=None)

    def sample(self, domain, key, n, method, dtype=None):
        return Dirichlet(faces=self.faces).sample(domain, key, n, method, dtype)

    def residual(self, u, x, domain):
        out = jnp.asarray(self.operator(u, x, domain.normal(x)))
        return out - _value_at(self.value, x, out)


__all__ = [
    "AbstractCondition",
    "AbstractPointwiseCondition",
    "Dirichlet",
    "Neumann",
    "Robin",
    "BoundaryOperator",
    "Periodic",
    "Initial",
]
