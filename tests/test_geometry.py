"""Polygon, Disk, boolean combinations and point clouds: samplers, normals, distances.

Uniformity tests use fixed keys and reject at significance 1e-3 (a chi-square over cells or
edges, or a Kolmogorov-Smirnov test against an exact marginal): with fixed keys they are
deterministic, and a sampler biased by a few percent of the mass fails them at these sizes.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import scipy.stats

from sciml.derivatives import laplacian
from sciml.fields import MLP
from sciml.pinn import (
    Box,
    Difference,
    Disk,
    HardConstraint,
    Intersection,
    PointCloud,
    Polygon,
    Problem,
    Union,
    relative_error,
    solve,
)

ALPHA = 1e-3
L_VERTICES = [(-1, -1), (1, -1), (1, 0), (0, 0), (0, 1), (-1, 1)]
L_EDGES = [((-1, -1), (1, -1)), ((1, -1), (1, 0)), ((1, 0), (0, 0)), ((0, 0), (0, 1))]
L_EDGES += [((0, 1), (-1, 1)), ((-1, 1), (-1, -1))]


def l_polygon():
    return Polygon(L_VERTICES)


def l_difference():
    return Difference(Box([-1.0, -1.0], [1.0, 1.0]), Box([0.0, 0.0], [1.0, 1.0]))


def _key(i):
    return jax.random.key(i)


def _inside_cells(x, m=8):
    """Counts of points in the 8x8 cells of [-1, 1]^2 that lie in the L (48 of 64)."""
    ij = np.clip(np.floor((np.asarray(x) + 1) / 2 * m).astype(int), 0, m - 1)
    counts = np.zeros((m, m))
    np.add.at(counts, (ij[:, 0], ij[:, 1]), 1)
    in_l = np.ones((m, m), bool)
    in_l[m // 2 :, m // 2 :] = False
    assert counts[~in_l].sum() == 0
    return counts[in_l]


@pytest.mark.parametrize("make", [l_polygon, l_difference], ids=["polygon", "difference"])
@pytest.mark.parametrize("method", ["uniform", "sobol"])
def test_l_interior_uniform_in_area(make, method):
    domain = make()
    x = domain.sample_interior(_key(1), 4800, method)
    assert x.shape == (4800, 2)
    counts = _inside_cells(x)
    assert scipy.stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize("make", [l_polygon, l_difference], ids=["polygon", "difference"])
def test_l_boundary_uniform_in_arc_length(make):
    domain = make()
    xb = np.asarray(domain.sample_boundary(_key(2), 4000))
    gaps = []
    for a, b in L_EDGES:
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip((xb - a) @ (b - a) / np.sum((b - a) ** 2), 0, 1)
        gaps.append(np.linalg.norm(xb - a - t[:, None] * (b - a), axis=1))
    gaps = np.stack(gaps, 1)
    assert gaps.min(1).max() < 1e-12  # every point on an edge
    counts = np.bincount(gaps.argmin(1), minlength=6)
    lengths = np.array([2, 1, 1, 1, 1, 2.0])
    assert scipy.stats.chisquare(counts, 4000 * lengths / 8).pvalue > ALPHA
    # Along each edge too: the position on the long bottom edge is uniform.
    bottom = xb[gaps.argmin(1) == 0, 0]
    assert scipy.stats.kstest(bottom, "uniform", args=(-1, 2)).pvalue > ALPHA


@pytest.mark.parametrize("method", ["uniform", "sobol", "halton", "lhs"])
def test_disk_samples_exact_marginal(method):
    disk = Disk((0.5, -1.0), 2.0)
    x = np.asarray(disk.sample_interior(_key(3), 2000, method))
    # Marginal of one coordinate of the unit disk: F(s) = 1/2 + (asin s + s sqrt(1 - s^2)) / pi.
    cdf = lambda s: 0.5 + (np.arcsin(s) + s * np.sqrt(1 - s**2)) / np.pi
    for axis in (0, 1):
        s = np.clip((x[:, axis] - disk.center[axis]) / disk.radius, -1, 1)
        assert scipy.stats.kstest(s, cdf).pvalue > ALPHA
    xb = np.asarray(disk.sample_boundary(_key(4), 2000, method))
    y = xb - np.asarray(disk.center)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), disk.radius, rtol=1e-14)
    angle = np.mod(np.arctan2(y[:, 1], y[:, 0]), 2 * np.pi)
    assert scipy.stats.kstest(angle, "uniform", args=(0, 2 * np.pi)).pvalue > ALPHA


def test_nonconvex_polygon_triangulation_and_samples():
    # A comb with three teeth, clockwise (stored counter-clockwise).
    comb = [(0, 0), (0, 2), (1, 2), (1, 1), (2, 1), (2, 2), (3, 2), (3, 1), (4, 1), (4, 2)]
    comb += [(5, 2), (5, 0)]
    poly = Polygon(comb)
    v = np.asarray(poly.vertices)

    def area(p, q, r):  # half the cross product of two edges
        (x1, y1), (x2, y2) = q - p, r - p
        return abs(x1 * y2 - x2 * y1) / 2

    tri_area = sum(area(v[a], v[b], v[c]) for a, b, c in poly.triangles)
    assert math.isclose(tri_area, poly.area, rel_tol=1e-12) and math.isclose(poly.area, 8.0)
    for method in ("uniform", "halton"):
        x = poly.sample_interior(_key(5), 1000, method)
        assert bool(jax.vmap(poly.contains)(x).all())
        # Notches (1 < x < 2 and 3 < x < 4, above y = 1) hold no points.
        notch = ((x[:, 0] > 1) & (x[:, 0] < 2) | (x[:, 0] > 3) & (x[:, 0] < 4)) & (x[:, 1] > 1)
        assert not bool(notch.any())
    assert not bool(poly.contains(jnp.array([1.5, 1.5])))
    assert bool(poly.contains(jnp.array([0.5, 1.5])))


DOMAINS = {
    "polygon": l_polygon,
    "disk": lambda: Disk((0.2, 0.1), 0.7),
    "difference": l_difference,
    "union": lambda: Union(Disk((-0.5, 0.0), 1.0), Disk((0.5, 0.0), 1.0)),
    "intersection": lambda: Intersection(Disk((-0.5, 0.0), 1.0), Disk((0.5, 0.0), 1.0)),
    "nested": lambda: Difference(
        Union(Box([-1.0, -1.0], [1.0, 1.0]), Disk((1.0, 0.0), 0.5)), Disk((0.0, 0.0), 0.3)
    ),
}


@pytest.mark.parametrize("name", list(DOMAINS))
def test_normals_distance_and_containment(name):
    domain = DOMAINS[name]()
    xb = domain.sample_boundary(_key(6), 400)
    x = domain.sample_interior(_key(7), 400)
    assert bool(jax.vmap(domain.contains)(xb).all()) and bool(jax.vmap(domain.contains)(x).all())
    d_b = jax.vmap(domain.distance)(xb)
    assert float(jnp.max(jnp.abs(d_b))) < 1e-12
    d = jax.vmap(domain.distance)(x)
    assert bool(jnp.all(d > 0))
    grads = jax.vmap(jax.grad(domain.distance))(x)
    assert bool(jnp.all(jnp.isfinite(grads)))
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.grad(domain.distance))(xb))))
    n = jax.vmap(domain.normal)(xb)
    np.testing.assert_allclose(jnp.linalg.norm(n, axis=1), 1.0, rtol=1e-12)
    # Away from corners (where the normal is undefined), a step along the normal leaves.
    corners = _corners(name)
    far = np.min(np.linalg.norm(np.asarray(xb)[:, None] - corners[None], axis=2), 1) > 0.02
    eps = 1e-3
    out = jax.vmap(domain.contains)(xb + eps * n)
    inside = jax.vmap(domain.contains)(xb - eps * n)
    assert bool(jnp.all(~out[far])) and bool(jnp.all(inside[far]))
    assert bool(jnp.all(jax.vmap(domain.distance)((xb + eps * n)[far]) < 0))


def _corners(name):
    if name in ("polygon", "difference"):
        return np.asarray(L_VERTICES, float)
    if name in ("union", "intersection"):
        return np.array([[0.0, math.sqrt(0.75)], [0.0, -math.sqrt(0.75)]])
    if name == "nested":
        h = math.sqrt(0.25)  # the disk of radius 0.5 at (1, 0) meets x = 1 at y = +-0.5
        return np.array([[-1, -1], [1, -1], [-1, 1], [1, 1], [1, h], [1, -h]], float)
    return np.zeros((1, 2)) + 1e9


def test_csg_identities():
    poly, diff = l_polygon(), l_difference()
    g = np.linspace(-1.23, 1.23, 41)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    np.testing.assert_array_equal(jax.vmap(poly.contains)(grid), jax.vmap(diff.contains)(grid))
    a, b = Disk((-0.5, 0.0), 1.0), Disk((0.5, 0.0), 1.0)
    in_a, in_b = jax.vmap(a.contains)(grid), jax.vmap(b.contains)(grid)
    union, inter = Union(a, b), Intersection(a, b)
    np.testing.assert_array_equal(jax.vmap(union.contains)(grid), in_a | in_b)
    np.testing.assert_array_equal(jax.vmap(inter.contains)(grid), in_a & in_b)
    # Signs of the R-function distances agree with containment off the boundaries.
    for dom in (union, inter, diff):
        d = jax.vmap(dom.distance)(grid)
        off = jnp.abs(d) > 1e-12  # the grid holds points of the L's edges
        np.testing.assert_array_equal((d > 0)[off], jax.vmap(dom.contains)(grid)[off])
    # Boundary measures (Monte Carlo, 2^14 points per part): arcs of 2 pi / 3 and 4 pi / 3.
    assert math.isclose(inter.boundary_measure, 4 * math.pi / 3, rel_tol=0.03)
    assert math.isclose(union.boundary_measure, 8 * math.pi / 3, rel_tol=0.03)
    assert math.isclose(diff.boundary_measure, 8.0, rel_tol=0.03)
    assert math.isclose(poly.boundary_measure, 8.0) and math.isclose(poly.area, 3.0)


def test_union_interior_uniform():
    # The lens of two unit disks is covered twice by the parts; rejection must not double it.
    union = Union(Disk((-0.5, 0.0), 1.0), Disk((0.5, 0.0), 1.0))
    x = np.asarray(union.sample_interior(_key(8), 4000))
    lens = (np.linalg.norm(x - [-0.5, 0], axis=1) <= 1) & (
        np.linalg.norm(x - [0.5, 0], axis=1) <= 1
    )
    lens_area = 2 * math.pi / 3 - math.sqrt(3) / 2
    total = 2 * math.pi - lens_area
    assert scipy.stats.binomtest(int(lens.sum()), 4000, lens_area / total).pvalue > ALPHA


def test_hard_constraint_on_l_shape():
    poly = l_polygon()
    mlp = eqx.nn.MLP(2, "scalar", 16, 2, jnp.tanh, key=_key(9))
    u = HardConstraint(mlp, poly)
    xb = poly.sample_boundary(_key(10), 200)
    assert float(jnp.max(jnp.abs(jax.vmap(u)(xb)))) < 1e-12
    x = poly.sample_interior(_key(11), 200)
    assert float(jnp.max(jnp.abs(jax.vmap(u)(x)))) > 1e-3
    assert bool(jnp.all(jnp.isfinite(jax.jit(jax.vmap(jax.hessian(u)))(x))))
    # Normalised like the Euclidean distance, which is at most 1/2 in the L.
    assert float(jnp.max(jax.vmap(poly.distance)(x))) <= 0.5


COMB = [(0, 0), (0, 2), (1, 2), (1, 1), (2, 1), (2, 2), (3, 2), (3, 1), (4, 1), (4, 2), (5, 2)]
COMB += [(5, 0)]


@pytest.mark.parametrize(
    "vertices",
    [L_VERTICES, COMB, [(0, 0), (2, 0.5), (2.5, 2), (1, 3), (-0.5, 1.5)]],
    ids=["l", "comb", "pentagon"],
)
def test_polygon_distance_normalised_on_edges(vertices):
    # Away from the vertices (and outside the disks where re-entrant corners blend into their
    # harmonic function), the distance is the Euclidean one to first order: |grad d| = 1 just
    # inside an edge (on the edge itself the edge functions have a kink and autodiff gives 0).
    poly = Polygon(vertices)
    xb = np.asarray(poly.sample_boundary(_key(20), 2000))
    v = np.asarray(poly.vertices)
    far = np.min(np.linalg.norm(xb[:, None] - v[None], axis=2), 1) > 0.05
    for vx, vy, *_, radius, _factor in poly.corners:
        far &= np.linalg.norm(xb - [vx, vy], axis=1) > radius + 0.02
    assert far.sum() > 200
    x = jnp.asarray(xb[far]) - 1e-6 * jax.vmap(poly.normal)(jnp.asarray(xb[far]))
    grad = jax.jit(jax.vmap(jax.grad(poly.distance)))(x)
    np.testing.assert_allclose(jnp.linalg.norm(grad, axis=1), 1.0, rtol=1e-3)
    np.testing.assert_allclose(jax.jit(jax.vmap(poly.distance))(x), 1e-6, rtol=1e-3)


def test_polygon_distance_harmonic_at_reentrant_corner():
    # At the L's re-entrant corner the distance is c r^(2/3) sin(2 theta / 3) + O(r^(14/3)):
    # bounded Laplacian, where a cone-like distance has |Lap d| ~ 1/r (about 140 at r = 0.02).
    poly = l_polygon()
    assert len(poly.corners) == 1 and poly.corners[0][:2] == (0.0, 0.0)
    r = np.geomspace(1e-3, 0.1, 12)
    angle = np.linspace(0.05, 1.45, 9) * np.pi  # theta from the edge x = 0, y > 0, into the L
    rr, aa = np.meshgrid(r, angle)
    x = jnp.asarray(np.stack([-rr * np.sin(aa), rr * np.cos(aa)], -1).reshape(-1, 2))
    assert bool(jax.vmap(poly.contains)(x).all())
    lap = jax.jit(jax.vmap(lambda p: jnp.trace(jax.hessian(poly.distance)(p))))(x)
    assert float(jnp.max(jnp.abs(lap))) < 1.0
    near = (rr < 0.03).reshape(-1)  # where 1 - chi = O((r / R)^4) is below 1e-4
    d = jax.jit(jax.vmap(poly.distance))(x) / (rr ** (2 / 3) * np.sin(2 * aa / 3)).reshape(-1)
    np.testing.assert_allclose(d[near], poly.corners[0][-1], rtol=1e-3)


def _poisson_l_fd(n):
    """5-point solution of -Lap u = 1, u = 0 on the boundary of the L, grid spacing 2 / n."""
    line = np.linspace(-1.0, 1.0, n + 1)
    x, y = np.meshgrid(line, line, indexing="ij")
    inside = np.zeros(x.shape, bool)
    inside[1:-1, 1:-1] = True
    inside &= ~((x > -1e-12) & (y > -1e-12))
    index = -np.ones(x.shape, int)
    index[inside] = np.arange(inside.sum())
    rows, cols, vals = [], [], []
    for i, j in zip(*np.nonzero(inside), strict=True):
        rows.append(index[i, j]), cols.append(index[i, j]), vals.append(4.0)
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if index[i + di, j + dj] >= 0:
                rows.append(index[i, j]), cols.append(index[i + di, j + dj]), vals.append(-1.0)
    a = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(inside.sum(),) * 2)
    u = scipy.sparse.linalg.spsolve(a, np.full(inside.sum(), (2.0 / n) ** 2))
    return np.stack([x[inside], y[inside]], axis=1), u


@pytest.mark.slow
def test_hard_constraint_pinn_poisson_l_shape():
    """-Lap u = 1 on the L, u = 0 on its boundary, by a PINN in the ansatz u = d N with the
    polygon's distance, against the 5-point solution on the grid of spacing 1/16 (n = 32;
    itself 0.8% from the n = 256 one). float64, an MLP of width 16 and depth 2, 512 Sobol
    points, 300 Adam steps (lr 3e-3) and 500 L-BFGS iterations: measured relative L2 error
    0.016 (about 15 s alone, 40 s under `-n 2` on 2 busy cores); over network keys 2, 3, 4:
    0.050, 0.026, 0.014. Tolerance 0.06. With the earlier distance (a cone at the re-entrant
    corner, its Laplacian ~ 1/r there, and scaled to a maximum of one) the same run gave 0.37,
    and a soft Dirichlet loss needs far more steps (0.16 after 2000 Adam + 500 L-BFGS steps,
    `experiments/poisson_l_shape.py`)."""
    points, values = _poisson_l_fd(32)
    domain = l_polygon()
    problem = Problem(
        residual=lambda u, x: -laplacian(u, x) - 1.0,
        domain=domain,
        conditions={},
        reference=(jnp.asarray(points), jnp.asarray(values)),
    )
    net = MLP(2, "scalar", width=16, depth=2, key=_key(0), dtype=jnp.float64)
    model, _ = solve(
        problem,
        HardConstraint(net, domain),
        key=_key(1),
        steps=300,
        lbfgs_steps=500,
        learning_rate=3e-3,
        num_points={"residual": 512},
        method="sobol",
        eval_every=1000,
        progress=False,
    )
    assert relative_error(model, problem) < 0.06


def test_point_cloud(tmp_path):
    rng = np.random.default_rng(0)
    angle = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    xb = np.stack([np.cos(angle), np.sin(angle)], 1)
    x = rng.uniform(-0.5, 0.5, (100, 2))
    np.savez(tmp_path / "cloud.npz", x=x, xb=xb, n=2 * xb)
    cloud = PointCloud.from_file(tmp_path / "cloud.npz", normals="n")
    assert cloud.dim == 2
    s = np.asarray(cloud.sample_interior(_key(12), 100))
    assert len({tuple(p) for p in s}) == 100  # a permutation: without replacement
    sb = cloud.sample_boundary(_key(13), 10)
    assert float(jnp.max(jnp.abs(jax.vmap(cloud.distance)(sb)))) == 0.0
    np.testing.assert_allclose(jax.vmap(cloud.normal)(sb), sb, atol=1e-12)
    assert math.isclose(float(cloud.distance(jnp.array([0.0, 0.0]))), 1.0, rel_tol=1e-12)
    with pytest.raises(ValueError, match="`PointCloud` cannot tell"):
        cloud.contains(jnp.zeros(2))
    with pytest.raises(ValueError, match="fewer than `n`"):
        cloud.sample_boundary(_key(0), 65)
    with pytest.raises(ValueError, match="no array 'normals'"):
        PointCloud.from_file(tmp_path / "cloud.npz", normals="normals")
    with pytest.raises(ValueError, match="no normals"):
        PointCloud(x, xb).normal(jnp.zeros(2))
    u = HardConstraint(eqx.nn.MLP(2, "scalar", 8, 1, key=_key(14)), cloud)
    assert float(jnp.max(jnp.abs(jax.jit(jax.vmap(u))(sb)))) == 0.0


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Polygon([(0, 0), (1, 0)]), "`Polygon` needs `vertices` of shape"),
        (lambda: Polygon([(0, 0), (1, 0), (np.nan, 1)]), "`Polygon` needs finite"),
        (lambda: Polygon([(0, 0), (2, 2), (2, 0), (0, 1)]), "`Polygon` needs a simple"),
        (lambda: Polygon([(0, 0), (1, 0), (2, 0)]), "`Polygon` needs a non-zero area"),
        (lambda: Disk((0, 0), -1.0), "`Disk` needs a positive `radius`"),
        (lambda: Disk((0, 0, 0), 1.0), "`Disk` needs `center`"),
        (lambda: Union(Disk(), Box([0.0], [1.0])), "`Union` needs parts of equal dimension"),
        pytest.param(
            lambda: Intersection(Disk(), "box"),
            "`Intersection` needs parts that are each",
            marks=pytest.mark.untyped,
        ),
        (lambda: PointCloud(np.zeros((3, 2)), np.zeros((3, 3))), "`PointCloud` needs"),
        (lambda: l_polygon().sample_interior(_key(0), 10, "grid"), "`method` must be one of"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match) as info:
        build()
    assert "\n" not in str(info.value)
