"""Inverse-problem pieces: the observation operator, the grid penalties and the L-BFGS loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml
from sciml._validate import ArgumentError
from sciml.data import h1_penalty, l2_penalty, minimize_lbfgs, observe, tv_penalty


def _nodes(*sizes):
    axes = [np.linspace(0.0, 1.0, n) for n in sizes]
    return np.meshgrid(*axes, indexing="ij")


@pytest.mark.parametrize("sizes", [(9,), (9, 7), (5, 6, 4)])
def test_observe_exact_on_multilinear_functions(sizes, getkey):
    # f = prod_k (1 + c_k x_k) + sum_k x_k is linear along each axis: interpolation is exact.
    coeffs = np.array([2.0, -0.5, 1.5])[: len(sizes)]

    def f(*x):
        return np.prod([1 + c * xk for c, xk in zip(coeffs, x, strict=True)], axis=0) + sum(x)

    field = jnp.asarray(f(*_nodes(*sizes)))
    points = jax.random.uniform(getkey(), (50, len(sizes)), jnp.float64)
    points = points.at[0].set(0.0).at[1].set(1.0)  # the corners too
    expected = f(*np.asarray(points).T)
    # float64 rounding only.
    np.testing.assert_allclose(observe(field, points), expected, rtol=1e-13, atol=1e-13)


def test_observe_gradient_is_the_adjoint(getkey):
    field = jax.random.normal(getkey(), (6, 5))
    points = jax.random.uniform(getkey(), (7, 2), jnp.float64)
    weights = jax.random.normal(getkey(), (7,))
    grad = jax.grad(lambda u: jnp.dot(weights, observe(u, points)))(field)
    # observe is linear: <w, P u> = <P^T w, u> for every u.
    other = jax.random.normal(getkey(), (6, 5))
    assert jnp.isfinite(grad).all()
    np.testing.assert_allclose(
        jnp.vdot(grad, other), jnp.dot(weights, observe(other, points)), rtol=1e-12
    )


def test_observe_rejects_bad_points():
    with pytest.raises(ArgumentError, match="points"):
        observe(jnp.zeros((4, 4)), jnp.zeros((3, 3)))
    with pytest.raises(Exception, match="unit cube"):
        observe(jnp.zeros((4, 4)), jnp.array([[0.5, 1.5]]))


def test_penalties_hand_values():
    x, y = (jnp.asarray(v) for v in _nodes(5, 9))
    # l2: trapezoid rule, exact for m^2 linear per axis: m = 3 gives 9; m^2 = x gives 1/2.
    np.testing.assert_allclose(l2_penalty(jnp.full((5, 9), 3.0)), 9.0, rtol=1e-14)
    np.testing.assert_allclose(l2_penalty(jnp.sqrt(x)), 0.5, rtol=1e-14)
    # h1: m = 1 + 2x - 3y gives |grad m|^2 = 13 everywhere; constants are free.
    np.testing.assert_allclose(h1_penalty(1 + 2 * x - 3 * y), 13.0, rtol=1e-14)
    assert h1_penalty(jnp.full((5, 9), 2.0)) == 0
    # m = x y on a 3 x 3 grid by hand: x-edges have slopes y_j in {0, 1/2, 1}, weighted
    # h = 1/2 along x (two edges) and trapezoid (1/4, 1/2, 1/4) along y; same for y-edges.
    x3, y3 = (jnp.asarray(v) for v in _nodes(3, 3))
    per_axis = 2 * 0.5 * (0.25 * 0 + 0.5 * 0.25 + 0.25 * 1)
    np.testing.assert_allclose(h1_penalty(x3 * y3), 2 * per_axis, rtol=1e-14)
    # tv: |grad m| = sqrt(13) for the linear field at eps = 0.
    np.testing.assert_allclose(tv_penalty(1 + 2 * x - 3 * y, eps=0.0), np.sqrt(13), rtol=1e-14)
    # A unit step across x = 1/2 on a 5-node axis: one cell row of slope 4, width 1/4: TV = 1.
    step = jnp.where(x > 0.5, 1.0, 0.0)
    np.testing.assert_allclose(tv_penalty(step, eps=0.0), 1.0, rtol=1e-14)
    # 1-D: h1 of m = x^2 on 3 nodes: slopes 1/2, 3/2 with weights 1/2: (1/4 + 9/4) / 2.
    np.testing.assert_allclose(h1_penalty(jnp.array([0.0, 0.25, 1.0])), 1.25, rtol=1e-14)


@pytest.mark.parametrize("penalty", [l2_penalty, h1_penalty, tv_penalty])
def test_penalty_gradients_finite(penalty, getkey):
    m = jax.random.normal(getkey(), (6, 7))
    for field in (m, jnp.zeros((6, 7))):  # tv's smoothing keeps flat fields differentiable
        grad = jax.grad(penalty)(field)
        assert jnp.isfinite(grad).all()
    # Against a central difference in a random direction.
    v = jax.random.normal(getkey(), (6, 7))
    eps = 1e-6
    fd = (penalty(m + eps * v) - penalty(m - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(jax.grad(penalty)(m), v), fd, rtol=1e-6)


def test_penalties_reject_bad_input():
    with pytest.raises(ArgumentError, match="field"):
        h1_penalty(jnp.zeros((4, 1)))
    with pytest.raises(ArgumentError, match="eps"):
        tv_penalty(jnp.zeros((4, 4)), eps=-1.0)


def test_minimize_lbfgs_quadratic():
    # A convex quadratic in a pytree: L-BFGS converges to the minimiser within tolerance.
    target = {"a": jnp.arange(3.0), "b": jnp.array(2.0)}
    scales = jnp.array([1.0, 10.0, 100.0])

    def loss(p):
        return jnp.sum(scales * (p["a"] - target["a"]) ** 2) + (p["b"] - target["b"]) ** 2

    start = {"a": jnp.zeros(3), "b": jnp.array(0.0)}
    params, info = minimize_lbfgs(loss, start, max_steps=100, tol=1e-10)
    np.testing.assert_allclose(params["a"], target["a"], atol=1e-9)
    np.testing.assert_allclose(params["b"], target["b"], atol=1e-9)
    assert info.grad_norm <= 1e-10 and 0 < info.num_steps < 100


def test_darcy_coefficient_recovered_from_dense_measurements(getkey):
    # Through darcy_solve: a smooth log-coefficient on a 9 x 9 grid from the pressure at every
    # node, with a tiny H1 weight: well posed, so the recovery is close (measured ~1e-3).
    s = 9
    x, y = (jnp.asarray(v) for v in _nodes(s, s))
    m_true = 0.5 * jnp.sin(np.pi * x) * jnp.cos(np.pi * y)
    points = jnp.stack([x.ravel(), y.ravel()], axis=1)
    values = observe(sciml.data.darcy_solve(jnp.exp(m_true)), points)
    scale = jnp.mean(values**2)

    def loss(m):
        u = sciml.data.darcy_solve(jnp.exp(m))
        return jnp.mean((observe(u, points) - values) ** 2) / scale + 1e-8 * h1_penalty(m)

    m, info = minimize_lbfgs(loss, jnp.zeros((s, s)), max_steps=300, tol=1e-12)
    interior = (slice(1, -1), slice(1, -1))
    # The corner nodes do not enter the stencil at all; compare the interior.
    error = jnp.linalg.norm((m - m_true)[interior]) / jnp.linalg.norm(m_true[interior])
    assert error < 0.05, (error, info)
