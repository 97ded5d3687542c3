"""sciml.pinn.gradient_alignment: cosines and the alignment score of loss terms' gradients on
models whose gradients are known by hand, against NumPy, and on a Poisson PINN."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.pinn as pinn
from sciml.derivatives import laplacian
from sciml.fields import MLP


class _Linear(eqx.Module):
    """`u(x) = p_0 + p_1 x_0 + p_2 x_1`: every loss term is a quadratic in `p` with a gradient
    known in closed form."""

    p: jax.Array

    def __call__(self, x):
        return self.p[0] + self.p[1] * x[0] + self.p[2] * x[1]


class _Sloped(eqx.Module):
    """`u(x) = p_0 + s x_0`."""

    p0: jax.Array
    s: jax.Array

    def __call__(self, x):
        return self.p0 + self.s * x[0]


def _features(x):
    x = np.asarray(x)
    return np.stack([np.ones(len(x)), x[:, 0], x[:, 1]], axis=1)


_BOX = pinn.Box([0.0, 0.0], [1.0, 1.0])
_X = jnp.array([[0.2, 0.3], [0.7, 0.1], [0.5, 0.9]])


def _constant_problem():
    # With s = 0.4: L_residual = (p_0 - 1)^2 and L_boundary = (p_0 - 2)^2, so the gradients in
    # p_0, 2 (p_0 - 1) and 2 (p_0 - 2), are parallel for p_0 outside [1, 2], opposite inside.
    return pinn.Problem(
        lambda u, x: u(x) - 1.0 - 0.4 * x[0],
        _BOX,
        {"boundary": pinn.Dirichlet(lambda x: 2.0 + 0.4 * x[0])},
    )


@pytest.mark.parametrize("p0, expected", [(0.0, 1.0), (3.0, 1.0), (1.5, -1.0)])
def test_one_parameter_parallel_and_opposite(p0, expected):
    # Slope frozen by `filter_spec`: only p_0 trains, both gradients are 1-vectors.
    model = _Sloped(jnp.asarray(p0), jnp.asarray(0.4))
    points = {"residual": _X, "boundary": _X[:, ::-1]}
    problem = _constant_problem()
    out = pinn.gradient_alignment(problem, model, points, filter_spec=_Sloped(True, False))
    np.testing.assert_allclose(out["alignment"], expected, atol=1e-12)
    np.testing.assert_allclose(out["cosine"][("residual", "boundary")], expected, atol=1e-12)
    np.testing.assert_allclose(out["grad_norm"]["residual"], 2 * abs(p0 - 1), rtol=1e-12)
    np.testing.assert_allclose(out["grad_norm"]["boundary"], 2 * abs(p0 - 2), rtol=1e-12)
    # With the slope trainable the gradients are 2 (p_0 - c) (1, mean x_0) over each term's
    # points, whose means differ (0.467 vs 0.433): no longer exactly (anti)parallel.
    free = pinn.gradient_alignment(problem, model, points)
    x_r, x_b = np.mean(_X[:, 0]), np.mean(_X[:, 1])
    cos = expected * (1 + x_r * x_b) / np.sqrt((1 + x_r**2) * (1 + x_b**2))
    np.testing.assert_allclose(free["alignment"], cos, rtol=1e-12)
    assert abs(cos) < 1 - 1e-4


def test_orthogonal_gradients():
    # Residual du/dx_0 - 1 depends on p_1 only, u = 0 at x_0 = 0 on p_0 (and p_2) only:
    # gradients (0, 2 (p_1 - 1), 0) and (2 mean(u), 0, 2 mean(u x_1)), orthogonal.
    problem = pinn.Problem(
        lambda u, x: jax.grad(u)(x)[0] - 1.0, _BOX, {"wall": pinn.Dirichlet(0.0)}
    )
    model = _Linear(jnp.array([0.5, 3.0, -0.2]))
    wall = jnp.array([[0.0, 0.25], [0.0, 0.75]])
    out = pinn.gradient_alignment(problem, model, {"residual": _X, "wall": wall})
    np.testing.assert_allclose(out["alignment"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["cosine"][("residual", "wall")], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["grad_norm"]["residual"], 2 * (3.0 - 1.0), rtol=1e-12)


def _three_terms():
    f = lambda x: jnp.sin(3 * x[0]) + x[1] ** 2
    return pinn.Problem(
        lambda u, x: u(x) - f(x),
        _BOX,
        {"left": pinn.Dirichlet(1.0), "top": pinn.Dirichlet(lambda x: x[0] - 2.0)},
    ), f


def test_three_terms_against_numpy():
    # L_t = mean((Phi_t p - y_t)^2) has gradient g_t = 2 / m Phi_t^T (Phi_t p - y_t); then
    # A = 2 |mean_t g_t / |g_t||^2 - 1 computed from those NumPy vectors directly.
    problem, f = _three_terms()
    p = np.array([0.3, -1.2, 0.8])
    points = {
        "residual": _X,
        "left": jnp.array([[0.0, 0.1], [0.0, 0.6], [0.0, 0.95]]),
        "top": jnp.array([[0.2, 1.0], [0.9, 1.0]]),
    }
    weights = {"residual": 2.0, "left": 0.5, "top": 10.0}
    targets = {
        "residual": np.asarray(jax.vmap(f)(_X)),
        "left": np.ones(3),
        "top": np.asarray(points["top"][:, 0]) - 2.0,
    }
    g = {}
    for t in problem.terms:
        phi = _features(points[t])
        g[t] = weights[t] * 2 / len(phi) * phi.T @ (phi @ p - targets[t])
    unit = [v / np.linalg.norm(v) for v in g.values()]
    score = 2 * np.sum(np.mean(unit, axis=0) ** 2) - 1

    out = pinn.gradient_alignment(problem, _Linear(jnp.asarray(p)), points, weights)
    np.testing.assert_allclose(out["alignment"], score, rtol=1e-12, atol=1e-14)
    for t in problem.terms:
        np.testing.assert_allclose(out["grad_norm"][t], np.linalg.norm(g[t]), rtol=1e-12)
    for (a, b), c in out["cosine"].items():
        np.testing.assert_allclose(c, unit[problem.terms.index(a)] @ unit[problem.terms.index(b)])
    assert list(out["cosine"]) == [("residual", "left"), ("residual", "top"), ("left", "top")]
    assert -1 <= score <= 1

    # Positive weights change the norms by their factor and nothing else.
    scaled = {t: 7.0 * w if t == "top" else 1e-3 * w for t, w in weights.items()}
    again = pinn.gradient_alignment(problem, _Linear(jnp.asarray(p)), points, scaled)
    np.testing.assert_allclose(again["alignment"], out["alignment"], rtol=1e-12)
    for pair, c in out["cosine"].items():
        np.testing.assert_allclose(again["cosine"][pair], c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(again["grad_norm"]["top"], 7 * out["grad_norm"]["top"], rtol=1e-12)

    # The same under eqx.filter_jit (weights traced), and the flat record.
    jitted = eqx.filter_jit(pinn.gradient_alignment)
    compiled = jitted(problem, _Linear(jnp.asarray(p)), points, jax.tree.map(jnp.asarray, weights))
    np.testing.assert_allclose(compiled["alignment"], out["alignment"], rtol=1e-12)
    record = pinn.alignment_record(compiled)
    assert set(record) == {
        "alignment",
        "grad_norm_residual",
        "grad_norm_left",
        "grad_norm_top",
        "cos_residual_left",
        "cos_residual_top",
        "cos_left_top",
    }
    assert all(isinstance(v, float) for v in record.values())
    np.testing.assert_allclose(record["cos_left_top"], unit[1] @ unit[2], rtol=1e-12)


def test_zero_gradient_and_bad_weights():
    # A zero weight gives a zero gradient: norm 0, cosines 0, and A = 2 (1 + 1 + 2 c) / 9 - 1
    # from the two remaining unit vectors; no NaN.
    problem, _ = _three_terms()
    points = {"residual": _X, "left": _X[:2], "top": _X[1:]}
    model = _Linear(jnp.array([0.3, -1.2, 0.8]))
    out = pinn.gradient_alignment(
        problem, model, points, {"residual": 1.0, "left": 0.0, "top": 1.0}
    )
    assert out["grad_norm"]["left"] == 0
    assert out["cosine"][("residual", "left")] == 0 == out["cosine"][("left", "top")]
    c = out["cosine"][("residual", "top")]
    np.testing.assert_allclose(out["alignment"], 2 * (2 + 2 * c) / 9 - 1, rtol=1e-12)
    with pytest.raises(ValueError, match=r"`weights` must have exactly the keys"):
        pinn.gradient_alignment(problem, model, points, {"residual": 1.0})


def test_poisson_pinn_finite_and_bounded(getkey):
    # -Lap u = 2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2 with a soft Dirichlet boundary, a small
    # MLP in float32 (the training dtype), under jit.
    exact = lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])
    problem = pinn.Problem(
        residual=lambda u, x: -laplacian(u, x) - 2 * jnp.pi**2 * exact(x),
        domain=pinn.Box([-1.0, -1.0], [1.0, 1.0]),
        conditions={"boundary": pinn.Dirichlet(0.0)},
    )
    net = MLP(2, "scalar", width=16, depth=2, key=getkey(), dtype=jnp.float32)
    points = problem.sample(getkey(), {"residual": 64, "boundary": 32}, dtype=jnp.float32)
    out = eqx.filter_jit(pinn.gradient_alignment)(problem, net, points)
    record = pinn.alignment_record(out)
    assert set(record) == {"alignment", "grad_norm_residual", "grad_norm_boundary"} | {
        "cos_residual_boundary"
    }
    assert all(np.isfinite(v) for v in record.values())
    assert -1 <= record["alignment"] <= 1
    assert record["grad_norm_residual"] > 0 and record["grad_norm_boundary"] > 0
    np.testing.assert_allclose(record["alignment"], record["cos_residual_boundary"], atol=1e-6)
