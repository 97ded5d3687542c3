"""`sciml.gp.GridGP` / `solve_gp`: GP-HM on tensor grids of nodes, against dense linear
algebra, autodiff of the conditional mean, and manufactured solutions."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import gp, pinn
from sciml.derivatives import differential_operator, laplacian
from sciml.gp._solver import _mean_at, condition_points, gauss_newton_values


def _random_model(shape, key, lower=None, upper=None):
    lower = lower or [0.0] * len(shape)
    upper = upper or [1.0] * len(shape)
    model = gp.GridGP(pinn.Box(lower, upper), shape, components=4, max_frequency=3.0)
    values = jax.random.normal(key, shape)
    return eqx.tree_at(lambda m: m.values, model, values)


def test_node_derivatives_are_those_of_the_conditional_mean():
    """`taylor_coefficients()[m1, m2]` at the nodes equals autodiff of `model(x)`, the
    conditional mean `k(x, X) K^-1 U`, for every order up to 2 per axis (mixed ones too)."""
    model = _random_model((7, 6), jax.random.PRNGKey(0), [0.0, -1.0], [1.0, 0.5])
    coeffs = model.taylor_coefficients()
    points = model.points()
    alpha = model._alpha(model._factors())
    mean = lambda x: _mean_at(alpha, model, x)  # == model(x), without refactorising
    for m1 in range(3):
        for m2 in range(3):
            terms = {(m1, m2): 1.0}
            want = jax.vmap(lambda p, t=terms: differential_operator(mean, p, t))(points)
            got = coeffs[m1, m2].reshape(-1)
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * jnp.abs(want).max())


def test_grid_evaluation_and_prior_match_dense_algebra():
    """`on_grid` is `model(x)` at every point of a grid; `log_prior` is
    `-(log det K + U^T K^-1 U) / 2` with the dense Kronecker product K (float64, 1e-10)."""
    model = _random_model((5, 4), jax.random.PRNGKey(1))
    axes = [jnp.linspace(0.1, 0.9, 3), jnp.linspace(0.0, 1.0, 4)]
    mesh = jnp.stack([m.reshape(-1) for m in jnp.meshgrid(*axes, indexing="ij")], -1)
    np.testing.assert_allclose(model.on_grid(axes).reshape(-1), jax.vmap(model)(mesh), rtol=1e-10)
    factors = [
        k.gram(model.nodes(i), model.nodes(i)) + model.jitter * jnp.eye(n)
        for i, (k, n) in enumerate(zip(model.kernels, model.shape, strict=True))
    ]
    dense = jnp.kron(*factors)
    u = model.values.reshape(-1)
    want = -0.5 * (jnp.linalg.slogdet(dense)[1] + u @ jnp.linalg.solve(dense, u))
    np.testing.assert_allclose(model.log_prior(), want, rtol=1e-10)


def test_closed_form_kernel_series_matches_autodiff():
    kernel = gp.SpectralMixture(jnp.array([0.0, 2.5, 7.0]), jnp.array([0.3, 0.2, 0.05]))
    x, y = jnp.linspace(-1, 1, 6), jnp.linspace(-0.3, 0.8, 5)
    for j, block in enumerate(kernel.grams(x, y, 4)):
        want = kernel.gram(x, y, dx=j)
        np.testing.assert_allclose(block, want, rtol=1e-9, atol=1e-9 * jnp.abs(want).max())
    np.testing.assert_allclose(
        kernel.toeplitz(6, 0.4, 2), kernel.grams(0.4 * jnp.arange(6), 0.4 * jnp.arange(6), 2)
    )


def _dirichlet(exact, operator=laplacian, domain=None):
    """`operator(u) = operator(exact)` with `u = exact` on the boundary (default: [0, 1])."""
    return pinn.Problem(
        residual=lambda u, x: operator(u, x) - operator(exact, x),
        domain=domain or pinn.Box([0.0], [1.0]),
        conditions={"boundary": pinn.Dirichlet(exact)},
        exact=exact,
    )


def _poisson_1d(freq=2.0):
    return _dirichlet(lambda x: jnp.sin(2 * jnp.pi * freq * x[0]) + x[0])


def test_gauss_newton_is_the_exact_minimiser_for_a_linear_pde():
    """For a linear PDE, one Gauss-Newton iteration equals the dense minimiser of
    `U^T K^-1 U / 2 + sum_t w_t tau_t |r_t(U)|^2 / 2` (moderate precisions, so the dense
    normal equations are well conditioned)."""
    problem = _poisson_1d()
    model = gp.GridGP(problem.domain, (12,), components=3, max_frequency=4.0)
    points = {
        "boundary": condition_points(
            model, "boundary", problem.conditions["boundary"], problem.domain
        )
    }
    log_tau = {"residual": jnp.asarray(1.0), "boundary": jnp.asarray(2.0)}
    weights = {"boundary": 5.0}
    got, _ = gauss_newton_values(model, log_tau, problem, points, weights, 1, log_precision=-50.0)

    factors = [
        k.gram(model.nodes(0), model.nodes(0)) + model.jitter * jnp.eye(12) for k in model.kernels
    ]
    precision_matrix = jnp.linalg.inv(factors[0])

    def loss(u):
        changed = eqx.tree_at(lambda m: m.values, model, u)
        _, squares = gp.gp_loss(changed, log_tau, problem, points, weights)
        return 0.5 * u @ precision_matrix @ u + 0.5 * (
            jnp.exp(1.0) * 12 * squares["residual"] + 5 * jnp.exp(2.0) * 2 * squares["boundary"]
        )

    u0 = jnp.zeros(12)
    hessian = jax.hessian(loss)(u0)
    want = u0 - jnp.linalg.solve(hessian, jax.grad(loss)(u0))
    np.testing.assert_allclose(got.values, want, rtol=1e-7, atol=1e-9)


def test_solve_reaches_a_manufactured_solution_in_1d_and_2d():
    """Two frequencies in 1-D and a 2-D Poisson problem, with Gauss-Newton node solves:
    relative L2 below 1e-3 after a few hundred steps on small grids."""
    problem = _poisson_1d()
    model = gp.GridGP(problem.domain, (40,), components=10, max_frequency=6.0)
    model, records = gp.solve_gp(
        problem, model, steps=200, eval_every=100, gauss_newton=1, progress=False
    )
    assert records[-1]["rel_l2"] < 1e-4
    assert records[-1]["step"] == 200 and set(records[-1]) >= {"loss_residual", "loss_boundary"}

    exact = lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(2 * jnp.pi * x[1])
    square = _dirichlet(exact, domain=pinn.Box([0.0, 0.0], [1.0, 1.0]))
    model = gp.GridGP(square.domain, (14, 14), components=6, max_frequency=3.0)
    model, records = gp.solve_gp(
        square, model, steps=100, eval_every=100, gauss_newton=1, progress=False
    )
    assert records[-1]["rel_l2"] < 1e-3


def test_nonlinear_allen_cahn_through_the_same_loss():
    """Steady Allen-Cahn `u'' + u (u^2 - 1) = f`: Gauss-Newton iterations on the nonlinear
    residual reach the manufactured solution."""
    operator = lambda u, x: laplacian(u, x) + u(x) * (u(x) ** 2 - 1)
    problem = _dirichlet(lambda x: jnp.sin(3 * jnp.pi * x[0]), operator)
    model = gp.GridGP(problem.domain, (40,), components=8, max_frequency=4.0)
    model, records = gp.solve_gp(
        problem, model, steps=100, eval_every=100, gauss_newton=4, progress=False
    )
    assert records[-1]["rel_l2"] < 1e-4


def test_jeffreys_pruning_keeps_the_two_true_frequencies():
    """GP-HM's log-domain weights (the Jeffreys prior) prune: on `sin(4 pi x) + sin(10 pi x)
    / 2` (frequencies 2 and 5) twelve components start evenly spread over 0..10 with equal
    weights; after the paper's Adam schedule nearly all weight sits within 0.5 of 2 and 5 and
    every component farther than 1 from both keeps under 1e-3 of it. The polish (exact node
    solve under the learned kernel) then gives a relative L2 error below 1e-5."""
    problem = _dirichlet(lambda x: jnp.sin(4 * jnp.pi * x[0]) + 0.5 * jnp.sin(10 * jnp.pi * x[0]))
    model = gp.GridGP(problem.domain, (64,), components=12, max_frequency=10.0)
    model, records = gp.solve_gp(
        problem, model, steps=15000, eval_every=15000, polish=2, progress=False
    )
    kernel = model.kernels[0]
    weights = np.asarray(jax.nn.softmax(kernel.log_weights))
    distance = np.minimum(np.abs(kernel.means - 2.0), np.abs(kernel.means - 5.0))
    assert weights[distance < 0.5].sum() > 0.99
    assert np.all(weights[distance > 1.0] < 1e-3)
    assert records[-1]["polished"] and records[-1]["rel_l2"] < 1e-5


def test_conditions_sit_on_their_faces():
    domain = pinn.SpaceTime(pinn.Box([0.0], [1.0]), 0.0, 2.0)
    model = gp.GridGP(domain, (5, 4))
    initial = condition_points(model, "initial", pinn.Initial(0.0), domain)
    assert initial.shape == (5, 2) and np.all(initial[:, 1] == 0.0)
    lateral = condition_points(model, "boundary", pinn.Dirichlet(0.0), domain)
    assert lateral.shape == (8, 2) and set(np.asarray(lateral[:, 0])) == {0.0, 1.0}
    periodic = condition_points(model, "periodic", pinn.Periodic(axis=0), domain)
    assert np.all(periodic[:, 0] == 0.0)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: gp.GridGP(pinn.Box([0.0], [1.0]), (2,)), "at least 3 nodes"),
        (lambda: gp.GridGP(pinn.Box([0.0, 0.0], [1.0, 1.0]), (8,)), "at least 3 nodes"),
        (lambda: gp.GridGP(pinn.Ball([0.0, 0.0], 1.0), (8, 8)), "needs a `Box`"),
        (lambda: gp.GridGP(pinn.Box([0.0], [1.0]), (8,), max_frequency=0.0), "max_frequency"),
        (lambda: gp.GridGP(pinn.Box([0.0], [1.0]), (8,), jitter=0.0), "jitter"),
    ],
)
def test_model_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_solver_refuses_what_it_cannot_do():
    problem = _poisson_1d()
    model = gp.GridGP(problem.domain, (10,), components=2)
    other = gp.GridGP(pinn.Box([0.0], [2.0]), (10,), components=2)
    with pytest.raises(ValueError, match="spans"):
        gp.solve_gp(problem, other, steps=1, progress=False)
    with pytest.raises(ValueError, match="weights"):
        gp.solve_gp(problem, model, steps=1, weights={"boundry": 1.0}, progress=False)
    third = pinn.Problem(
        residual=lambda u, x: differential_operator(u, x, {(3,): 1.0}),
        domain=problem.domain,
        conditions={},
    )
    with pytest.raises(ValueError, match="max_order = 2"):
        gp.solve_gp(third, model, steps=1, progress=False)
    big = gp.GridGP(pinn.Box([0.0, 0.0], [1.0, 1.0]), (80, 80), components=2)
    square = pinn.Problem(
        residual=lambda u, x: laplacian(u, x),
        domain=pinn.Box([0.0, 0.0], [1.0, 1.0]),
        conditions={},
    )
    assert math.prod(big.shape) > 6000
    with pytest.raises(ValueError, match="6000"):
        gp.solve_gp(square, big, steps=1, gauss_newton=1, progress=False)


def test_the_nugget_floor_bounds_the_node_solve():
    """`sin(100 x)` on [0, 2 pi], 400 nodes, the initial kernel, one node solve: lowering the
    nugget floor from 1e-11 to 1e-13 of each term's scale lowers the error (measured 2.5e-4
    and 4.0e-5); a floor outside (0, 1) is refused."""
    from sciml.pinn import benchmarks

    problem = benchmarks.HIGH_FREQUENCY["poisson_1d_sin_100x"]()
    model = gp.GridGP(problem.domain, (400,), components=30, max_frequency=20.0)
    errors = [
        gp.solve_gp(problem, model, steps=0, polish=1, nugget_floor=f, progress=False)[1][-1][
            "rel_l2"
        ]
        for f in (1e-11, 1e-13)
    ]
    assert errors[1] < errors[0] / 3 and errors[1] < 1e-4, errors
    with pytest.raises(ValueError, match="nugget_floor"):
        gp.solve_gp(problem, model, steps=0, polish=1, nugget_floor=0.0, progress=False)
