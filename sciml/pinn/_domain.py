"""Domains of PDE problems: boxes, balls and their products with a time interval.

Every domain samples interior and boundary points from the unit cube by one of the methods of
`_sampling.py` ('uniform', 'sobol', 'lhs' and, on boxes, 'grid'), gives the outward normal at a
boundary point and a smooth function vanishing on its boundary (for hard constraints).
Points are rows `(n, dim)`; for space-time domains time is the LAST coordinate.
"""

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validate import positive_int
from ._sampling import METHODS, cell_centres, check_method, grid_side, unit_cube

Face = tuple[int, int]  # (axis, side): side 0 is the lower face x[axis] = lower[axis], 1 the upper


def float_tuple(name: str, values, dim: int | None = None) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1 or (dim is not None and arr.shape[0] != dim) or not np.all(np.isfinite(arr)):
        allowed = "finite numbers" + (f", {dim} of them" if dim is not None else "")
        raise ValueError(f"`{name}` must be a sequence of {allowed}, got {values!r}.")
    return tuple(float(v) for v in arr)


def sphere_normal(center: Sequence[float], x: Float[Array, " dim"]) -> Float[Array, " dim"]:
    """The outward unit normal of the sphere about `center` through `x`."""
    y = x - jnp.asarray(center, x.dtype)
    return y / jnp.linalg.norm(y)


def sphere_distance(
    center: Sequence[float], radius: float, x: Float[Array, " dim"]
) -> Float[Array, ""]:
    """`(r^2 - |x - c|^2) / r^2`: smooth, 0 on the sphere, positive inside, at most 1."""
    y = x - jnp.asarray(center, x.dtype)
    return (radius**2 - jnp.sum(y**2)) / radius**2


class AbstractDomain(eqx.Module):
    """A bounded domain in R^dim with interior and boundary samplers."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of coordinates of a point."""

    @property
    @abc.abstractmethod
    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """`(lower, upper)` of the bounding box."""

    @abc.abstractmethod
    def sample_interior(
        self, key: PRNGKeyArray, n: int, method: str = "uniform", *, dtype=None
    ) -> Float[Array, "n dim"]:
        """`n` points of the interior (see the class docstring for the methods)."""

    @abc.abstractmethod
    def sample_boundary(
        self, key: PRNGKeyArray, n: int, method: str = "uniform", *, dtype=None
    ) -> Float[Array, "n dim"]:
        """`n` points of the boundary, distributed by surface measure."""

    @abc.abstractmethod
    def normal(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """The outward unit normal at a boundary point `x`."""

    @abc.abstractmethod
    def distance(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """A smooth function, positive inside, zero exactly on the boundary, of order one in
        the middle (an approximate distance for hard-constraint ansatzes)."""

    @abc.abstractmethod
    def contains(self, x: Float[Array, " dim"]) -> Array:
        """Whether `x` lies in the closed domain."""


class Box(AbstractDomain):
    """The box `[lower_1, upper_1] x ... x [lower_d, upper_d]`.

    **Sampling methods:** 'uniform' (i.i.d.), 'sobol' (scrambled Sobol, best with `n` a power of
    two), 'lhs' (Latin hypercube), 'grid' (cell centres; the interior needs `n = m^d`, the
    boundary `n = (number of faces) * m^(d-1)`, one cell-centred grid per face).

    Boundary points are spread over the faces in proportion to their areas (for quasi-random
    methods the first coordinate of each point picks the face, the others place it on the face),
    and the coordinate normal to a face is set exactly to its bound, so functions such as
    `distance` vanish there exactly.

    **Arguments:**

    - `lower`, `upper`: the corners (sequences of `d` numbers, `lower < upper`).
    """

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, lower: Sequence[float], upper: Sequence[float]):
        lower = float_tuple("lower", lower)
        upper = float_tuple("upper", upper, len(lower))
        if not all(a < b for a, b in zip(lower, upper, strict=True)):
            raise ValueError(
                f"`Box` needs lower < upper on every axis, got lower={lower}, upper={upper}."
            )
        self.lower, self.upper = lower, upper

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def bounds(self):
        return self.lower, self.upper

    def _scale(self, u: Array) -> Array:
        lower, upper = jnp.asarray(self.lower, u.dtype), jnp.asarray(self.upper, u.dtype)
        return lower + (upper - lower) * u

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        n, method = positive_int("n", n), check_method(method)
        return self._scale(unit_cube(key, n, self.dim, method, dtype))

    def all_faces(self) -> tuple[Face, ...]:
        return tuple((axis, side) for axis in range(self.dim) for side in (0, 1))

    def sample_boundary(self, key, n, method="uniform", *, dtype=None, faces=None):
        """`n` points on the union of `faces` (default: all), a sequence of `(axis, side)`
        pairs, side 0 for `x[axis] = lower[axis]` and 1 for `upper[axis]`."""
        n, method = positive_int("n", n), check_method(method)
        faces = self._check_faces(faces)
        d = self.dim
        extent = np.subtract(self.upper, self.lower)
        if method == "grid":
            per_face = n // len(faces)
            if per_face * len(faces) != n:
                raise ValueError(
                    f"`n` = {n} must be a multiple of the {len(faces)} faces for method 'grid'."
                )
            m = grid_side(per_face, d - 1, "n per face") if d > 1 else 1
            if d == 1 and per_face != 1:
                raise ValueError(f"`n` = {n} must be {len(faces)} for method 'grid' in 1-D.")
            free = cell_centres(m, d - 1, dtype)
            blocks = [self._on_face(free, axis, side) for axis, side in faces]
            return jnp.concatenate(blocks, axis=0)
        u = unit_cube(key, n, d, method, dtype)
        areas = np.array([np.prod(np.delete(extent, axis)) for axis, _ in faces])
        edges = jnp.asarray(np.concatenate([[0.0], np.cumsum(areas) / areas.sum()]), u.dtype)
        which = jnp.clip(jnp.searchsorted(edges, u[:, 0], side="right") - 1, 0, len(faces) - 1)
        out = jnp.zeros_like(u)
        for f, (axis, side) in enumerate(faces):
            on_face = self._on_face(u[:, 1:], axis, side)
            out = jnp.where((which == f)[:, None], on_face, out)
        return out

    def _on_face(self, free: Array, axis: int, side: int) -> Array:
        """Points of face `(axis, side)` from unit-cube coordinates `free` of the other axes."""
        n = free.shape[0]
        bound = jnp.full((n, 1), (self.lower, self.upper)[side][axis], free.dtype)
        u = jnp.concatenate([free[:, :axis], jnp.zeros((n, 1), free.dtype), free[:, axis:]], 1)
        x = self._scale(u)
        return jnp.concatenate([x[:, :axis], bound, x[:, axis + 1 :]], axis=1)

    def _check_faces(self, faces) -> tuple[Face, ...]:
        if faces is None:
            return self.all_faces()
        faces = tuple(tuple(f) for f in faces)
        if not faces or any(f not in self.all_faces() for f in faces):
            raise ValueError(
                f"`faces` must be a non-empty sequence of (axis, side) pairs with axis in "
                f"0..{self.dim - 1} and side 0 or 1, got {faces!r}."
            )
        return faces

    def grid(self, shape: Sequence[int], *, dtype=None) -> Float[Array, "n dim"]:
        """The nodes of a uniform grid including the boundary, `shape[i]` nodes on axis `i`,
        first axis slowest (reshape the values to `shape` for plots)."""
        if len(shape) != self.dim or any(int(s) < 2 for s in shape):
            raise ValueError(
                f"`shape` must have {self.dim} entries, each at least 2, got {tuple(shape)!r}."
            )
        lower, upper = self.bounds
        lines = [
            jnp.linspace(a, b, int(s), dtype=dtype)
            for a, b, s in zip(lower, upper, shape, strict=True)
        ]
        mesh = jnp.meshgrid(*lines, indexing="ij")
        return jnp.stack([g.reshape(-1) for g in mesh], axis=-1)

    def normal(self, x):
        lower, upper = jnp.asarray(self.lower, x.dtype), jnp.asarray(self.upper, x.dtype)
        gaps = jnp.concatenate([x - lower, upper - x])
        k = jnp.argmin(gaps)
        sign = jnp.where(k < self.dim, -1.0, 1.0).astype(x.dtype)
        return sign * jax.nn.one_hot(k % self.dim, self.dim, dtype=x.dtype)

    def distance(self, x):
        # prod_i (x_i - a_i)(b_i - x_i) / ((b_i - a_i) / 2)^2: 1 at the centre, 0 on every face.
        lower, upper = jnp.asarray(self.lower, x.dtype), jnp.asarray(self.upper, x.dtype)
        half = (upper - lower) / 2
        return jnp.prod((x - lower) * (upper - x) / half**2)

    def contains(self, x):
        return jnp.all((x >= jnp.asarray(self.lower)) & (x <= jnp.asarray(self.upper)))


class Ball(AbstractDomain):
    """The closed ball `|x - center| <= radius` in R^d.

    **Sampling methods:** 'uniform', 'sobol', 'lhs' (the quasi-random ones map a point of the
    unit cube to the ball: d coordinates through the Gaussian quantile give the direction, one
    more gives the radius `radius * u^(1/d)`, which is uniform in volume). 'grid' is not offered.

    **Arguments:**

    - `center`: sequence of `d` numbers (or `dim=` with the origin).
    - `radius`: positive number.
    """

    center: tuple[float, ...] = eqx.field(static=True)
    radius: float = eqx.field(static=True)

    def __init__(self, center: Sequence[float] | None = None, radius: float = 1.0, *, dim=None):
        if center is None:
            if dim is None:
                raise ValueError("`Ball` needs `center` or `dim`, got neither.")
            center = (0.0,) * positive_int("dim", dim)
        self.center = float_tuple("center", center)
        if not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
            raise ValueError(f"`radius` must be a positive number, got {radius!r}.")
        self.radius = float(radius)

    @property
    def dim(self) -> int:
        return len(self.center)

    @property
    def bounds(self):
        c = np.asarray(self.center)
        return tuple(c - self.radius), tuple(c + self.radius)

    def _directions(self, key, n, method, dtype) -> Array:
        if method == "uniform":
            g = jax.random.normal(key, (n, self.dim), dtype=dtype)
        else:
            u = unit_cube(key, n, self.dim, method, dtype)
            tiny = jnp.finfo(u.dtype).eps
            g = jss.ndtri(jnp.clip(u, tiny, 1 - tiny))
        return g / jnp.linalg.norm(g, axis=-1, keepdims=True)

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        n = positive_int("n", n)
        method = check_method(method, ("uniform", "sobol", "lhs"))
        dir_key, r_key = jax.random.split(key)
        if method == "uniform":
            directions = self._directions(dir_key, n, method, dtype)
            u = jax.random.uniform(r_key, (n, 1), dtype=directions.dtype)
        else:
            cube = unit_cube(key, n, self.dim + 1, method, dtype)
            tiny = jnp.finfo(cube.dtype).eps
            g = jss.ndtri(jnp.clip(cube[:, :-1], tiny, 1 - tiny))
            directions = g / jnp.linalg.norm(g, axis=-1, keepdims=True)
            u = cube[:, -1:]
        r = self.radius * u ** (1.0 / self.dim)
        return jnp.asarray(self.center, directions.dtype) + r * directions

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        n = positive_int("n", n)
        method = check_method(method, ("uniform", "sobol", "lhs"))
        directions = self._directions(key, n, method, dtype)
        return jnp.asarray(self.center, directions.dtype) + self.radius * directions

    def normal(self, x):
        return sphere_normal(self.center, x)

    def distance(self, x):
        return sphere_distance(self.center, self.radius, x)

    def contains(self, x):
        y = x - jnp.asarray(self.center)
        return jnp.sum(y**2) <= self.radius**2


class SpaceTime(AbstractDomain):
    """The product `space x [t0, t1]`; a point is `(x_1, ..., x_d, t)`, time last.

    The boundary is the lateral one, `boundary(space) x [t0, t1]`; the initial slice
    `space x {t0}` has its own sampler. With a `Box` space every method of `Box` applies (the
    product is a box), 'grid' included; with a `Ball` space the quasi-random methods draw the
    time from one more coordinate of the same low-discrepancy point.

    **Arguments:**

    - `space`: a `Box` or a `Ball`.
    - `t0`, `t1`: the time interval, `t0 < t1`.
    """

    space: AbstractDomain
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, space: AbstractDomain, t0: float, t1: float):
        if not isinstance(space, Box | Ball):
            raise ValueError(f"`space` must be a `Box` or a `Ball`, got {type(space).__name__}.")
        t0, t1 = float_tuple("t0", t0, 1)[0], float_tuple("t1", t1, 1)[0]
        if not t0 < t1:
            raise ValueError(f"`SpaceTime` needs t0 < t1, got t0={t0}, t1={t1}.")
        self.space, self.t0, self.t1 = space, t0, t1

    @property
    def dim(self) -> int:
        return self.space.dim + 1

    @property
    def time_axis(self) -> int:
        return self.space.dim

    @property
    def bounds(self):
        lower, upper = self.space.bounds
        return (*lower, self.t0), (*upper, self.t1)

    def _box(self) -> Box:
        return Box(*self.bounds)

    def _with_time(self, x: Array, u: Array) -> Array:
        return jnp.concatenate([x, self.t0 + (self.t1 - self.t0) * u], axis=1)

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        if isinstance(self.space, Box):
            return self._box().sample_interior(key, n, method, dtype=dtype)
        n = positive_int("n", n)
        method = check_method(method, ("uniform", "sobol", "lhs"))
        space_key, time_key = jax.random.split(key)
        x = self.space.sample_interior(space_key, n, method, dtype=dtype)
        return self._with_time(x, self._time_coordinate(time_key, n, method, x.dtype))

    def _time_coordinate(self, key, n, method, dtype) -> Array:
        # For a ball space the time is drawn separately (uniform or its own 1-D stratification).
        return unit_cube(key, n, 1, method, dtype)

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        if isinstance(self.space, Box):
            spatial = [(a, s) for a in range(self.space.dim) for s in (0, 1)]
            return self._box().sample_boundary(key, n, method, dtype=dtype, faces=spatial)
        n = positive_int("n", n)
        method = check_method(method, ("uniform", "sobol", "lhs"))
        space_key, time_key = jax.random.split(key)
        x = self.space.sample_boundary(space_key, n, method, dtype=dtype)
        return self._with_time(x, self._time_coordinate(time_key, n, method, x.dtype))

    def sample_initial(
        self, key: PRNGKeyArray, n: int, method: str = "uniform", *, dtype=None
    ) -> Float[Array, "n dim"]:
        """`n` points of the initial slice `space x {t0}`."""
        x = self.space.sample_interior(key, n, method, dtype=dtype)
        return jnp.concatenate([x, jnp.full((x.shape[0], 1), self.t0, x.dtype)], axis=1)

    def normal(self, x):
        return jnp.append(self.space.normal(x[:-1]), jnp.zeros((), x.dtype))

    def distance(self, x):
        """Vanishes on the lateral boundary only (not at t0: initial conditions are a separate
        factor, see `HardConstraint`)."""
        return self.space.distance(x[:-1])

    def contains(self, x):
        return self.space.contains(x[:-1]) & (x[-1] >= self.t0) & (x[-1] <= self.t1)


__all__ = ["AbstractDomain", "Box", "Ball", "SpaceTime", "METHODS"]
