"""General 2-D and composite domains: polygons, disks, boolean combinations and point clouds.

Every domain here has the interface of `AbstractDomain` (`_domain.py`). Interior samplers are
uniform in area (volume), boundary samplers uniform in arc length (surface measure). Distances
are *signed*: positive inside, zero on the boundary, negative outside, so that they compose by
R-functions (Rvachev 1982; Shapiro 1999) into the distances of `Union`, `Intersection` and
`Difference`, and `HardConstraint` works on every domain.

Samplers that reject points (polygons by quasi-random methods, boolean combinations) run on
the host with data-dependent sizes: call them outside `jax.jit`, as `Problem.sample` does.
"""

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._validate import positive_int
from ._domain import AbstractDomain, Ball, Box, float_tuple, sphere_distance, sphere_normal
from ._sampling import check_method, seed_of, unit_cube

_METHODS = ("uniform", "sobol", "lhs", "halton")


def _cube(key: PRNGKeyArray, n: int, dim: int, method: str, dtype=None) -> Array:
    """`n` points of [0, 1)^dim: the methods of `unit_cube` plus scrambled Halton (SciPy)."""
    if method == "halton":
        from scipy.stats import qmc

        engine = qmc.Halton(dim, scramble=True, seed=seed_of(key))
        return jnp.asarray(engine.random(n), jnp.zeros((), dtype).dtype)
    return unit_cube(key, n, dim, method, dtype)


def _safe_sqrt(s: Array) -> Array:
    """`sqrt(s)` for `s >= 0` with a finite derivative (zero) at `s = 0`."""
    positive = s > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)


def _r_and(a: Array, b: Array) -> Array:
    """R0-conjunction `a + b - sqrt(a^2 + b^2)`: positive iff both are, zero where one is zero
    and the other positive, and `a` to first order where `b >> |a|` (Rvachev 1982)."""
    return a + b - _safe_sqrt(a**2 + b**2)


def _r_or(a: Array, b: Array) -> Array:
    """R0-disjunction `a + b + sqrt(a^2 + b^2)`: positive iff either is."""
    return a + b + _safe_sqrt(a**2 + b**2)


def _signed_distance(domain: AbstractDomain, x: Array) -> Array:
    """A function of the sign of `domain` (positive inside, negative outside), zero exactly on
    its boundary. `Box.distance` is a product that is also positive beyond two faces at once,
    so boxes get the R-conjunction of their slabs instead."""
    if isinstance(domain, Box):
        lower, upper = jnp.asarray(domain.lower, x.dtype), jnp.asarray(domain.upper, x.dtype)
        half = (upper - lower) / 2
        slabs = (x - lower) * (upper - x) / half**2
        out = slabs[0]
        for i in range(1, domain.dim):
            out = _r_and(out, slabs[i])
        return out
    return domain.distance(x)


def _boundary_measure(domain: AbstractDomain) -> float:
    if isinstance(domain, Box):
        extent = np.subtract(domain.upper, domain.lower)
        if domain.dim == 1:
            return 2.0
        return float(2 * sum(np.prod(np.delete(extent, a)) for a in range(domain.dim)))
    if isinstance(domain, Ball):
        d = domain.dim
        return 2 * math.pi ** (d / 2) / math.gamma(d / 2) * domain.radius ** (d - 1)
    return domain.boundary_measure  # Polygon, Disk, CSG


@eqx.filter_jit
def _contains_all(domain: AbstractDomain, x: Array) -> Array:
    return jax.vmap(domain.contains)(x)


@eqx.filter_jit
def _signed_all(domain: AbstractDomain, x: Array) -> Array:
    return jax.vmap(lambda p: _signed_distance(domain, p))(x)


@eqx.filter_jit
def _normals_all(domain: AbstractDomain, x: Array) -> Array:
    return jax.vmap(domain.normal)(x)


def _rejection(domain: AbstractDomain, key, n: int, method: str, dtype, rate: float) -> Array:
    """The first `n` points of a `method` sequence in the bounding box that `domain` contains:
    uniform in volume for 'uniform'; for 'sobol'/'halton' the accepted points keep the low
    discrepancy of the sequence relative to the domain (Owen 2013, "Monte Carlo theory, methods
    and examples", ch. 15 on acceptance-rejection with QMC). `rate` is a guess of the accepted
    fraction; rounds repeat with fresh keys until `n` points are accepted."""
    lower, upper = (np.asarray(b, float) for b in domain.bounds)
    kept, have, rnd = [], 0, 0
    while have < n:
        m = int(math.ceil((n - have) / max(rate, 1e-3) * 1.2)) + 64
        if method == "sobol":
            m = 1 << max(0, math.ceil(math.log2(m)))
        u = _cube(jax.random.fold_in(key, rnd), m, domain.dim, method, dtype)
        x = jnp.asarray(lower, u.dtype) + jnp.asarray(upper - lower, u.dtype) * u
        inside = np.asarray(_contains_all(domain, x))
        rate = max(inside.mean(), 1e-3) if rnd > 0 or inside.any() else rate / 4
        kept.append(x[np.flatnonzero(inside)[: n - have]])
        have += int(min(inside.sum(), n - have))
        rnd += 1
        if rnd > 50:
            raise ValueError(f"`{type(domain).__name__}` accepted no sampled points: is it empty?")
    return jnp.concatenate(kept, axis=0)


class Polygon(AbstractDomain):
    """A simple (possibly non-convex) polygon in the plane.

    **Sampling methods.** Interior: 'uniform' picks triangles of an ear-clipping triangulation
    with probability proportional to their areas, then a uniform point in the triangle (a
    point of the unit square folded along its diagonal); 'sobol', 'halton' and 'lhs' keep the
    first `n` points of the sequence in the bounding box that lie in the polygon (uniform in
    area, low discrepancy kept). Boundary: arc length `s` along the perimeter from a 1-D
    sequence of the same method, so the points are uniform in arc length and lie on the
    edges up to rounding.

    **Distance.** For each edge the trimmed segment function of Sukumar & Srivastava
    (2022, "Exact imposition of boundary conditions with distance functions in physics-informed
    deep neural networks", CMAME 389, eqs. (9)-(11)), `phi_i = sqrt(f^2 + ((sqrt(t^2 + f^4) -
    t) / 2)^2)` with `f` the signed distance to the edge's line and `t = ((L/2)^2 - |x -
    x_c|^2) / L` the trimming function of the edge's disk; combined by the R-equivalence
    `phi = (sum_i phi_i^-1)^-1` (their eq. (12), m = 1). It vanishes exactly on the edges, is
    smooth elsewhere, and is normalised to first order: `phi = dist - O(dist^2)` near an edge,
    so `|grad phi| = 1` on the edges away from the corners (no further scaling).

    *Re-entrant corners.* At a vertex of interior angle `omega > pi`, `phi` is a cone,
    `r g(theta)` in polar coordinates about the vertex, whose Laplacian grows like `1/r`;
    the solution of an elliptic problem there behaves like `r^(pi/omega)` (`r^(2/3)` for an
    L), so in the hard-constraint ansatz `u = phi N` the network `N = u / phi` would have to
    blow up like `r^(pi/omega - 1)`, and a bounded `N` leaves a residual of order `N / r`
    that dominates a PINN's loss (measured: 95% of the squared residual of a hard-constrained
    PINN of `-Lap u = 1` on the L within `r < 0.1`, relative L2 error 0.18). So within a
    radius `R` of each such vertex, the distance blends into the corner's harmonic function:
    `d = chi(r) c s + (1 - chi(r)) phi` with `s = r^(pi/omega) sin(pi theta / omega)`
    (`theta` measured from an edge into the interior; `s` is harmonic, positive in the
    wedge, exactly zero on both edges), `chi(r) = 1 - S(r / R)` with `S` the septic
    smoothstep (`C^3`; `1 - chi = O(r^4)` at the vertex, so `d = c s + O(r^(4 + pi/omega))`),
    and `c` matching `c s` to `phi` on the corner's bisector at `r = R`. `R` is 0.9 times the
    smallest of the adjacent edges' lengths, the distance to the other edges, and half the
    distance to the other re-entrant vertices, so that the disks hold no other boundary and
    do not overlap. Near a re-entrant vertex `|grad d|` is not one (it grows like
    `r^(pi/omega - 1)`, as the solution's gradient does). Signed by the even-odd rule: `-phi`
    outside.

    **Arguments:**

    - `vertices`: `(m, 2)` array-like of the corners in order (either orientation; stored
        counter-clockwise), `m >= 3`, no edge crossing or touching another.
    """

    vertices: tuple[tuple[float, float], ...] = eqx.field(static=True)
    triangles: tuple[tuple[int, int, int], ...] = eqx.field(static=True)
    scale: float = eqx.field(static=True)  # the distance is divided by it: 1 (normalised)
    # Per re-entrant vertex: (x, y, outgoing and incoming edge directions (2 + 2 numbers),
    # interior angle omega, radius R, factor c).
    corners: tuple[tuple[float, ...], ...] = eqx.field(static=True)

    def __init__(self, vertices: Sequence[Sequence[int | float]] | np.ndarray | Array):
        try:
            v = np.asarray(vertices, dtype=float)
        except (TypeError, ValueError):
            v = None
        if v is None or v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
            raise ValueError(
                f"`Polygon` needs `vertices` of shape (m, 2) with m >= 3, got {vertices!r}."
            )
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`Polygon` needs finite `vertices`, got {v.tolist()}.")
        area = _signed_area(v)
        if abs(area) <= 1e-12 * float(np.ptp(v, axis=0).max()) ** 2:
            raise ValueError(f"`Polygon` needs a non-zero area, got vertices {v.tolist()}.")
        if area < 0:
            v = v[::-1]
        bad = _crossing_edges(v)
        if bad is not None:
            raise ValueError(
                f"`Polygon` needs a simple polygon, but edges {bad[0]} and {bad[1]} "
                f"(from vertex i to i + 1) cross or touch."
            )
        self.vertices = tuple((float(a), float(b)) for a, b in v)
        self.triangles = _ear_clip(v)
        self.scale = 1.0
        self.corners = ()
        self.corners = _reentrant_corners(self, v)

    def _edges(self, dtype) -> tuple[Array, Array]:
        a = jnp.asarray(self.vertices, dtype)
        return a, jnp.roll(a, -1, axis=0)

    @property
    def dim(self) -> int:
        return 2

    @property
    def bounds(self):
        v = np.asarray(self.vertices)
        return tuple(v.min(0)), tuple(v.max(0))

    @property
    def area(self) -> float:
        return float(_signed_area(np.asarray(self.vertices)))

    @property
    def boundary_measure(self) -> float:
        v = np.asarray(self.vertices)
        return float(np.linalg.norm(np.roll(v, -1, 0) - v, axis=1).sum())

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        n, method = positive_int("n", n), check_method(method, _METHODS)
        if method != "uniform":
            rate = self.area / float(np.prod(np.subtract(*self.bounds[::-1])))
            return _rejection(self, key, n, method, dtype, rate)
        v = np.asarray(self.vertices)
        tri = np.asarray(self.triangles)
        areas = np.abs([_signed_area(v[t]) for t in tri])
        pick_key, uv_key = jax.random.split(key)
        uv = jax.random.uniform(uv_key, (n, 2), dtype=dtype)
        which = jax.random.choice(pick_key, len(tri), (n,), p=jnp.asarray(areas / areas.sum()))
        fold = jnp.sum(uv, axis=1, keepdims=True) > 1
        uv = jnp.where(fold, 1 - uv, uv)
        corners = jnp.asarray(v[tri], uv.dtype)[which]  # (n, 3, 2)
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        return a + uv[:, :1] * (b - a) + uv[:, 1:] * (c - a)

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        n, method = positive_int("n", n), check_method(method, _METHODS)
        s = _cube(key, n, 1, method, dtype)[:, 0]
        v = np.asarray(self.vertices)
        lengths = np.linalg.norm(np.roll(v, -1, 0) - v, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(lengths) / lengths.sum()])
        edge = jnp.clip(jnp.searchsorted(jnp.asarray(cum, s.dtype), s, "right") - 1, 0, len(v) - 1)
        start = jnp.asarray(cum[:-1], s.dtype)[edge]
        width = jnp.asarray(np.diff(cum), s.dtype)[edge]
        t = jnp.clip((s - start) / width, 0, 1)[:, None]
        a, b = self._edges(s.dtype)
        return a[edge] + t * (b[edge] - a[edge])

    def _segment_gaps(self, x: Array) -> Array:
        a, b = self._edges(x.dtype)
        d = b - a
        t = jnp.clip(jnp.sum((x - a) * d, 1) / jnp.sum(d * d, 1), 0, 1)
        return jnp.linalg.norm(x - a - t[:, None] * d, axis=1)

    def _even_odd(self, x: Array) -> Array:
        a, b = self._edges(x.dtype)
        straddles = (a[:, 1] > x[1]) != (b[:, 1] > x[1])
        dy = jnp.where(straddles, b[:, 1] - a[:, 1], 1.0)
        crossing_x = a[:, 0] + (x[1] - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
        return jnp.sum(straddles & (x[0] < crossing_x)) % 2 == 1

    def _tolerance(self, dtype) -> float:
        v = np.asarray(self.vertices)
        return 100 * float(jnp.finfo(dtype).eps) * float(np.abs(v).max() + np.ptp(v, 0).max())

    def contains(self, x):
        x = jnp.asarray(x)
        gap = jnp.min(self._segment_gaps(x))
        return self._even_odd(x) | (gap <= self._tolerance(x.dtype))

    def normal(self, x):
        a, b = self._edges(x.dtype)
        d = b[jnp.argmin(self._segment_gaps(x))] - a[jnp.argmin(self._segment_gaps(x))]
        # Counter-clockwise vertices: the interior lies to the left of each edge.
        return jnp.stack([d[1], -d[0]]) / jnp.linalg.norm(d)

    def _edge_distance(self, x: Array) -> Array:
        """The R-equivalence of the trimmed segment functions of all edges (unsigned)."""
        a, b = self._edges(x.dtype)
        d = b - a
        length = jnp.linalg.norm(d, axis=1)
        # Sukumar & Srivastava (2022), eqs. (9)-(11): f the signed distance to the edge's line,
        # t a trimming function positive on the segment's disk, phi_i = 0 only on the segment.
        f = ((x[0] - a[:, 0]) * d[:, 1] - (x[1] - a[:, 1]) * d[:, 0]) / length
        t = ((length / 2) ** 2 - jnp.sum((x - (a + b) / 2) ** 2, axis=1)) / length
        rho = _safe_sqrt(t**2 + f**4)
        phi = _safe_sqrt(f**2 + ((rho - t) / 2) ** 2)
        # R-equivalence with m = 1, 1 / sum(1 / phi_i), written through the smallest phi_i so
        # that it is finite (zero) on an edge.
        smallest = jnp.min(phi)
        ratios = jnp.where(phi > 0, smallest / jnp.where(phi > 0, phi, 1.0), 1.0)
        return smallest / jnp.sum(ratios)

    def distance(self, x):
        phi = self._edge_distance(x)
        inside = phi
        for vx, vy, ex, ey, fx, fy, omega, radius, factor in self.corners:
            y = x - jnp.asarray([vx, vy], x.dtype)
            r2 = jnp.sum(y**2)
            r = _safe_sqrt(r2)
            q = jnp.clip(r / radius, 0.0, 1.0)
            chi = 1 - q**4 * (35 - 84 * q + 70 * q**2 - 20 * q**3)
            lam = math.pi / omega
            # The angle from the outgoing edge (direction (ex, ey)) counter-clockwise, and
            # from the incoming edge ((fx, fy), at angle omega) clockwise: each exactly zero on
            # its own edge; the nearer one is used (sin(lam * (omega - a)) = sin(lam * a)).
            safe = jnp.where(r2 > 0, y, jnp.asarray([1.0, 0.0], x.dtype))
            out = jnp.arctan2(ex * safe[1] - ey * safe[0], ex * safe[0] + ey * safe[1])
            back = jnp.arctan2(fy * safe[0] - fx * safe[1], fx * safe[0] + fy * safe[1])
            near_out = (out <= omega / 2) & (out >= omega / 2 - math.pi)
            angle = jnp.where(near_out, out, back)
            power = jnp.where(r2 > 0, jnp.where(r2 > 0, r, 1.0) ** lam, 0.0)
            s = factor * power * jnp.sin(lam * angle)
            inside = inside + jnp.where(q < 1, chi * (s - phi), 0.0)
        return jnp.where(self._even_odd(x), inside, -phi) / self.scale


def _reentrant_corners(poly: Polygon, v: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """The corner data of `Polygon.distance` for the re-entrant vertices of the
    counter-clockwise polygon `v` (see the class docstring)."""
    m = len(v)
    reflex = [k for k in range(m) if _cross(v[k - 1], v[k], v[(k + 1) % m]) < 0]
    out = []
    for k in reflex:
        prev, nxt = v[k - 1], v[(k + 1) % m]
        e_out, e_in = nxt - v[k], prev - v[k]
        limits = [np.linalg.norm(e_out), np.linalg.norm(e_in)]
        for i in range(m):
            if i in (k, (k - 1) % m):
                continue  # the two adjacent edges
            a, b = v[i], v[(i + 1) % m]
            t = np.clip(np.dot(v[k] - a, b - a) / np.dot(b - a, b - a), 0, 1)
            limits.append(np.linalg.norm(v[k] - a - t * (b - a)))
        limits += [np.linalg.norm(v[j] - v[k]) / 2 for j in reflex if j != k]
        radius = 0.9 * float(min(limits))
        u_out, u_in = e_out / np.linalg.norm(e_out), e_in / np.linalg.norm(e_in)
        # Interior angle: counter-clockwise from the outgoing edge to the incoming one.
        sine = u_out[0] * u_in[1] - u_out[1] * u_in[0]
        omega = float(np.mod(np.arctan2(sine, np.dot(u_out, u_in)), 2 * np.pi))
        half = omega / 2
        bisector = np.array(
            [
                math.cos(half) * u_out[0] - math.sin(half) * u_out[1],
                math.sin(half) * u_out[0] + math.cos(half) * u_out[1],
            ]
        )
        with jax.ensure_compile_time_eval():
            p = jnp.asarray(v[k] + radius * bisector)
            target = float(poly._edge_distance(p))
        factor = target / radius ** (math.pi / omega)
        directions = (*map(float, u_out), *map(float, u_in))
        out.append((*map(float, v[k]), *directions, omega, radius, factor))
    return tuple(out)


def _signed_area(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _cross(o, a, b) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _segments_meet(p1, p2, q1, q2) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0:
        return bool(d4 != 0)

    def on(p, q, r):  # r on segment pq, given collinear
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(
            p[1], q[1]
        )

    return bool(
        (d1 == 0 and on(q1, q2, p1))
        or (d2 == 0 and on(q1, q2, p2))
        or (d3 == 0 and on(p1, p2, q1))
        or (d4 == 0 and on(p1, p2, q2))
    )


def _crossing_edges(v: np.ndarray) -> tuple[int, int] | None:
    """The first pair of edges that meet other than at their shared vertex, if any."""
    m = len(v)
    for i in range(m):
        if np.array_equal(v[i], v[(i + 1) % m]):
            return (i, i)
    for i in range(m):
        for j in range(i + 1, m):
            p1, p2, q1, q2 = v[i], v[(i + 1) % m], v[j], v[(j + 1) % m]
            if j == i + 1 or (i == 0 and j == m - 1):
                # Adjacent edges share one vertex; they must not overlap beyond it.
                shared, p, q = (p2, p1, q2) if j == i + 1 else (p1, p2, q1)
                if _cross(shared, p, q) == 0 and np.dot(p - shared, q - shared) > 0:
                    return (i, j)
                continue
            if _segments_meet(p1, p2, q1, q2):
                return (i, j)
    return None


def _ear_clip(v: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """Triangles of a counter-clockwise simple polygon by ear clipping (Meisters 1975,
    "Polygons have ears"), O(m^3) in the worst case: fine for the few vertices of a domain."""
    idx = list(range(len(v)))
    out = []
    while len(idx) > 3:
        for k in range(len(idx)):
            i, j, m = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            if _cross(v[i], v[j], v[m]) <= 0:
                continue  # reflex or degenerate corner
            others = [p for p in idx if p not in (i, j, m)]
            if any(
                _cross(v[i], v[j], v[p]) >= 0
                and _cross(v[j], v[m], v[p]) >= 0
                and _cross(v[m], v[i], v[p]) >= 0
                for p in others
            ):
                continue
            out.append((i, j, m))
            idx.pop(k)
            break
        else:  # only collinear corners left: drop one
            idx.pop(0)
    out.append(tuple(idx))
    return tuple(t for t in out if abs(_signed_area(v[list(t)])) > 0)


class Disk(AbstractDomain):
    """The closed disk `|x - center| <= radius` in the plane.

    **Sampling methods** ('uniform', 'sobol', 'halton', 'lhs'): a point `(u, v)` of the unit
    square maps to radius `radius * sqrt(u)` and angle `2 pi v`, an area-preserving map, so the
    interior points are uniform in area and quasi-random sequences stay low-discrepancy; the
    boundary points take the angle `2 pi u` of a 1-D sequence (uniform in arc length).

    **Distance:** `(radius^2 - |x - center|^2) / radius^2`, one at the centre.

    **Arguments:**

    - `center`: two numbers.
    - `radius`: positive number.
    """

    center: tuple[float, float] = eqx.field(static=True)
    radius: float = eqx.field(static=True)

    def __init__(self, center: Sequence[int | float] = (0.0, 0.0), radius: int | float = 1.0):
        try:
            self.center = float_tuple("center", center, 2)
        except ValueError:
            raise ValueError(
                f"`Disk` needs `center` of two finite numbers, got {center!r}."
            ) from None
        if not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
            raise ValueError(f"`Disk` needs a positive `radius`, got {radius!r}.")
        self.radius = float(radius)

    @property
    def dim(self) -> int:
        return 2

    @property
    def bounds(self):
        c = np.asarray(self.center)
        return tuple(c - self.radius), tuple(c + self.radius)

    @property
    def area(self) -> float:
        return math.pi * self.radius**2

    @property
    def boundary_measure(self) -> float:
        return 2 * math.pi * self.radius

    def _at(self, r: Array, angle: Array) -> Array:
        c = jnp.asarray(self.center, r.dtype)
        return c + r[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        n, method = positive_int("n", n), check_method(method, _METHODS)
        u = _cube(key, n, 2, method, dtype)
        return self._at(self.radius * jnp.sqrt(u[:, 0]), 2 * jnp.pi * u[:, 1])

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        n, method = positive_int("n", n), check_method(method, _METHODS)
        u = _cube(key, n, 1, method, dtype)[:, 0]
        return self._at(jnp.full_like(u, self.radius), 2 * jnp.pi * u)

    def normal(self, x):
        return sphere_normal(self.center, x)

    def distance(self, x):
        return sphere_distance(self.center, self.radius, x)

    def contains(self, x):
        y = x - jnp.asarray(self.center)
        tol = 100 * jnp.finfo(y.dtype).eps * (self.radius + max(map(abs, self.center)))
        return jnp.sqrt(jnp.sum(y**2)) <= self.radius + tol


_PARTS = "a `Box`, `Ball`, `Disk`, `Polygon`, `Union`, `Intersection` or `Difference`"


def _check_parts(name: str, a, b) -> None:
    for part in (a, b):
        if not isinstance(part, Box | Ball | Disk | Polygon | AbstractBoolean):
            raise ValueError(f"`{name}` needs parts that are each {_PARTS}, got {part!r}.")
    if a.dim != b.dim:
        raise ValueError(f"`{name}` needs parts of equal dimension, got {a.dim} and {b.dim}.")


_CSG_DOC = (
    """
    **Interior sampling** ('uniform', 'sobol', 'lhs'): the first `n` points of the method's
    sequence in the bounding box that the result contains (rejection: uniform in volume).

    **Boundary sampling** (the parts' methods): each part's boundary is sampled in proportion
    to its measure (exact for boxes, balls, disks and polygons; for nested boolean parts the
    Monte-Carlo estimate computed when they are built), and the points on the result's
    boundary are kept, so that the kept points are uniform in surface measure. Where the two
    boundaries coincide, the points are kept once, from the first part, if the coincident
    piece bounds the result. Quasi-random points stay quasi-random per part; the kept subset
    of `n` is random.

    **Normals** are the part's whose boundary is nearer (by the parts' signed distances).

    **Distance:** R0-function composition of the parts' signed distances (Rvachev 1982;
    Shapiro 1999, "Semi-analytic geometry with R-functions"): `a + b -+ sqrt(a^2 + b^2)` for
    intersection and union, and the intersection with `-b` for a difference; zero exactly on
    the result's boundary, positive inside, smooth away from the parts' boundaries' crossings.
    (Boxes enter by the R-conjunction of their slabs, which has the sign of the box.)
    `boundary_measure` is a Monte-Carlo estimate from 2^14 points per part (about 1% error).

    **Arguments:**

    - `a`, `b`: domains of equal dimension, each """
    + _PARTS
    + """.
    """
)


def _csg_init(self, a, b) -> None:
    _check_parts(type(self).__name__, a, b)
    self.a, self.b = a, b
    self.boundary_measure = 1.0
    with jax.ensure_compile_time_eval():
        key = jax.random.key(0)
        total = 0.0
        for i, part in enumerate((a, b)):
            x = part.sample_boundary(jax.random.fold_in(key, i), 1 << 14, dtype=jnp.float64)
            total += _boundary_measure(part) * float(np.mean(self._keep(i, x)))
        self.boundary_measure = total


def _csg_interior(self, key, n, method, dtype):
    n, method = positive_int("n", n), check_method(method, ("uniform", "sobol", "lhs"))
    return _rejection(self, key, n, method, dtype, 0.5)


def _csg_boundary(self, key, n, method, dtype):
    n = positive_int("n", n)
    measures = np.array([_boundary_measure(self.a), _boundary_measure(self.b)])
    share = measures / measures.sum()
    rate = max(self.boundary_measure / measures.sum(), 1e-3)
    kept, have, rnd = [], 0, 0
    while have < n:
        m = int(math.ceil((n - have) / rate * 1.2)) + 64
        counts = np.round(m * share).astype(int)
        round_key = jax.random.fold_in(key, rnd)
        batch = []
        for i, part in enumerate((self.a, self.b)):
            if counts[i] == 0:
                continue
            x = part.sample_boundary(
                jax.random.fold_in(round_key, i), int(counts[i]), method, dtype=dtype
            )
            batch.append(x[np.flatnonzero(self._keep(i, x))])
        x = jnp.concatenate(batch, axis=0)
        x = jax.random.permutation(jax.random.fold_in(round_key, 2), x)[: n - have]
        kept.append(x)
        have += x.shape[0]
        rnd += 1
        if rnd > 50:
            raise ValueError(f"`{type(self).__name__}` has no boundary points: is it empty?")
    return jnp.concatenate(kept, axis=0)


def _keep_mask(x, own, other, rule) -> np.ndarray:
    """Which points `x` on one part's boundary lie on the result's boundary, given the other
    part's signed distance there. `rule`: 'outside' (keep where the other part is absent),
    'inside' (keep where present); coincident boundaries are kept when the normals agree
    (`rule[1] = 'same'`) or are opposite ('opposite'), never with `None`."""
    tol = float(jnp.finfo(x.dtype).eps) ** 0.5
    s = np.asarray(_signed_all(other, x))
    near = np.abs(s) <= tol
    clear = s < -tol if rule[0] == "outside" else s > tol
    if rule[1] is None or not near.any():
        return clear
    dots = np.sum(np.asarray(_normals_all(own, x)) * np.asarray(_normals_all(other, x)), axis=1)
    agree = dots > 0 if rule[1] == "same" else dots < 0
    return clear | (near & agree)


def _nearer(self, x) -> Array:
    return jnp.abs(_signed_distance(self.a, x)) <= jnp.abs(_signed_distance(self.b, x))


class AbstractBoolean(AbstractDomain):
    """A boolean combination of two domains `a` and `b` (see `Union`)."""

    a: eqx.AbstractVar[AbstractDomain]
    b: eqx.AbstractVar[AbstractDomain]
    boundary_measure: eqx.AbstractVar[float]

    @abc.abstractmethod
    def _rule(self, i: int) -> tuple[str, str | None]:
        """How part `i`'s boundary points are kept (see `_keep_mask`)."""

    def _keep(self, i: int, x: Array) -> np.ndarray:
        """Which points `x` of part `i`'s boundary lie on the result's boundary."""
        own, other = (self.a, self.b)[i], (self.b, self.a)[i]
        return _keep_mask(x, own, other, self._rule(i))

    @property
    def dim(self) -> int:
        return self.a.dim

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        return _csg_interior(self, key, n, method, dtype)

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        return _csg_boundary(self, key, n, method, dtype)


class Union(AbstractBoolean):
    __doc__ = "The union of two domains, `a | b`.\n" + _CSG_DOC

    a: AbstractDomain
    b: AbstractDomain
    boundary_measure: float = eqx.field(static=True)

    def __init__(self, a: AbstractDomain, b: AbstractDomain):
        _csg_init(self, a, b)

    def _rule(self, i: int) -> tuple[str, str | None]:
        return ("outside", "same" if i == 0 else None)

    @property
    def bounds(self):
        (la, ua), (lb, ub) = self.a.bounds, self.b.bounds
        return tuple(np.minimum(la, lb)), tuple(np.maximum(ua, ub))

    def normal(self, x):
        return jnp.where(_nearer(self, x), self.a.normal(x), self.b.normal(x))

    def distance(self, x):
        return _r_or(_signed_distance(self.a, x), _signed_distance(self.b, x))

    def contains(self, x):
        return self.a.contains(x) | self.b.contains(x)


class Intersection(AbstractBoolean):
    __doc__ = "The intersection of two domains, `a & b`.\n" + _CSG_DOC

    a: AbstractDomain
    b: AbstractDomain
    boundary_measure: float = eqx.field(static=True)

    def __init__(self, a: AbstractDomain, b: AbstractDomain):
        _csg_init(self, a, b)

    def _rule(self, i: int) -> tuple[str, str | None]:
        return ("inside", "same" if i == 0 else None)

    @property
    def bounds(self):
        (la, ua), (lb, ub) = self.a.bounds, self.b.bounds
        return tuple(np.maximum(la, lb)), tuple(np.minimum(ua, ub))

    def normal(self, x):
        return jnp.where(_nearer(self, x), self.a.normal(x), self.b.normal(x))

    def distance(self, x):
        return _r_and(_signed_distance(self.a, x), _signed_distance(self.b, x))

    def contains(self, x):
        return self.a.contains(x) & self.b.contains(x)


class Difference(AbstractBoolean):
    __doc__ = (
        "The difference of two domains, `a` without the interior of `b` (closed). Normals on "
        "`b`'s boundary are `b`'s reversed.\n" + _CSG_DOC
    )

    a: AbstractDomain
    b: AbstractDomain
    boundary_measure: float = eqx.field(static=True)

    def __init__(self, a: AbstractDomain, b: AbstractDomain):
        _csg_init(self, a, b)

    def _rule(self, i: int) -> tuple[str, str | None]:
        # a's boundary stays outside b (and where b touches it from outside); b's boundary
        # bounds the result where it runs strictly inside a.
        return ("outside", "opposite") if i == 0 else ("inside", None)

    @property
    def bounds(self):
        return self.a.bounds

    def normal(self, x):
        return jnp.where(_nearer(self, x), self.a.normal(x), -self.b.normal(x))

    def distance(self, x):
        return _r_and(_signed_distance(self.a, x), -_signed_distance(self.b, x))

    def contains(self, x):
        # Closed: points of b's boundary belong to the difference (up to rounding).
        tol = 100 * jnp.finfo(jnp.asarray(x).dtype).eps
        inside_b = self.b.contains(x) & (_signed_distance(self.b, x) > tol)
        return self.a.contains(x) & ~inside_b


class _Frozen:
    """A read-only NumPy array that hashes by identity, so that a domain holding it can be a
    static field (as in `HardConstraint`) and be baked into compiled code as a constant."""

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, dtype=float)
        self.array.setflags(write=False)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"<{self.array.shape[0]} points>"


class PointCloud(AbstractDomain):
    """A domain known only by points: interior points, boundary points and, optionally, the
    outward normals at the boundary points (for example exported from a mesher).

    **Sampling** ('uniform' only): a random subset of `n` of the stored points, without
    replacement (`n` at most the number stored).

    **Distance:** the Euclidean distance to the nearest boundary point, *not smooth* (it has
    kinks between boundary points and is zero only at them, positive elsewhere, unsigned):
    enough for `HardConstraint` at the stored boundary points, a poor ansatz between them.
    **Normals:** those of the nearest stored boundary point (an error without normals).
    `contains` is undefined for a point cloud and raises.

    **Arguments:**

    - `points`: `(n, dim)` interior points.
    - `boundary_points`: `(m, dim)` boundary points.
    - `normals`: optional `(m, dim)` outward normals (normalised here).
    """

    points: _Frozen = eqx.field(static=True)
    boundary_points: _Frozen = eqx.field(static=True)
    normals: _Frozen | None = eqx.field(static=True)

    def __init__(self, points, boundary_points, normals=None):
        x = _cloud("points", points)
        xb = _cloud("boundary_points", boundary_points, x.shape[1])
        if normals is not None:
            nb = _cloud("normals", normals, x.shape[1])
            lengths = np.linalg.norm(nb, axis=1, keepdims=True)
            if nb.shape[0] != xb.shape[0] or np.any(lengths == 0):
                raise ValueError(
                    f"`PointCloud` needs one non-zero normal per boundary point, got "
                    f"{nb.shape[0]} normals for {xb.shape[0]} boundary points."
                )
            normals = _Frozen(nb / lengths)
        self.points, self.boundary_points, self.normals = _Frozen(x), _Frozen(xb), normals

    @classmethod
    def from_file(
        cls, path, interior: str = "x", boundary: str = "xb", normals: str | None = None
    ) -> "PointCloud":
        """Reads a `.npz` file holding the arrays named `interior`, `boundary` and (optional)
        `normals`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                names = list(data.keys())
                wanted = [interior, boundary] + ([normals] if normals is not None else [])
                missing = [k for k in wanted if k not in names]
                if missing:
                    raise ValueError(
                        f"`PointCloud.from_file` found no array {missing[0]!r} in {path}; it "
                        f"holds {names}."
                    )
                arrays = [np.asarray(data[k]) for k in wanted]
        except (OSError, EOFError) as e:
            raise ValueError(f"`PointCloud.from_file` cannot read {path} as .npz: {e}") from None
        return cls(*arrays)

    @property
    def dim(self) -> int:
        return self.points.array.shape[1]

    @property
    def bounds(self):
        allp = np.concatenate([self.points.array, self.boundary_points.array])
        return tuple(allp.min(0)), tuple(allp.max(0))

    def _subset(self, key, n, method, dtype, stored: np.ndarray) -> Array:
        n = positive_int("n", n)
        check_method(method, ("uniform",))
        if n > stored.shape[0]:
            raise ValueError(
                f"`PointCloud` holds {stored.shape[0]} such points, fewer than `n` = {n}."
            )
        pick = jax.random.choice(key, stored.shape[0], (n,), replace=False)
        return jnp.asarray(stored, jnp.zeros((), dtype).dtype)[pick]

    def sample_interior(self, key, n, method="uniform", *, dtype=None):
        return self._subset(key, n, method, dtype, self.points.array)

    def sample_boundary(self, key, n, method="uniform", *, dtype=None):
        return self._subset(key, n, method, dtype, self.boundary_points.array)

    def _nearest(self, x: Array) -> Array:
        xb = jnp.asarray(self.boundary_points.array, x.dtype)
        return jnp.argmin(jnp.sum((xb - x) ** 2, axis=1))

    def normal(self, x):
        if self.normals is None:
            raise ValueError("`PointCloud` has no normals: give `normals` to use them.")
        return jnp.asarray(self.normals.array, x.dtype)[self._nearest(x)]

    def distance(self, x):
        xb = jnp.asarray(self.boundary_points.array, x.dtype)
        return _safe_sqrt(jnp.min(jnp.sum((xb - x) ** 2, axis=1)))

    def contains(self, x):
        raise ValueError(
            "`PointCloud` cannot tell whether a point lies inside: it knows only its points."
        )


def _cloud(name: str, values, dim: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if (
        arr is None
        or arr.ndim != 2
        or arr.shape[0] == 0
        or (dim is not None and arr.shape[1] != dim)
        or not np.all(np.isfinite(arr))
    ):
        shape = None if arr is None else arr.shape
        want = f"(n, {dim})" if dim is not None else "(n, dim)"
        raise ValueError(
            f"`PointCloud` needs `{name}` of shape {want} with finite values, got shape {shape}."
        )
    return arr


__all__ = [
    "AbstractBoolean",
    "Polygon",
    "Disk",
    "Union",
    "Intersection",
    "Difference",
    "PointCloud",
]
