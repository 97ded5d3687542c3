"""ProbConserv's constraint update (`sciml.uq.conserve`) against its dense formula, and the
generalised porous medium solver (`sciml.data.gpme_solve`) against exact solutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.data import (
    gpme_dataset,
    gpme_setup,
    gpme_solve,
    porous_medium_solution,
    stefan_mass,
    stefan_solution,
)
from sciml.uq import (
    LinearConstraint,
    LowRankCovariance,
    conserve,
    conserve_samples,
    ensemble_covariance,
    integral_constraint,
    mass_balance,
    quadrature_weights,
)

NT, NX = 6, 10
N = NT * NX


def _dense_update(mu, sigma, g, b, noise=0.0):
    """Hansen et al. (2023), Eq. 8, with dense matrices and a plain solve."""
    s = g @ sigma @ g.T + noise**2 * np.eye(g.shape[0])
    gain = sigma @ g.T @ np.linalg.inv(s)
    return mu - gain @ (g @ mu - b), sigma - gain @ g @ sigma


def _problem(getkey):
    mu = jax.random.normal(getkey(), (NT, NX))
    factor = jax.random.normal(getkey(), (N, 4)) / 2
    diagonal = jnp.exp(jax.random.normal(getkey(), (N,)))
    mass = jax.random.normal(getkey(), (NT,))
    return mu, factor, diagonal, integral_constraint(mass, NX, rule="trapezoid")


@pytest.mark.parametrize("form", ["identity", "diagonal", "dense", "low_rank"])
def test_conserve_matches_the_dense_formula_and_is_exact(getkey, form):
    mu, factor, diagonal, constraint = _problem(getkey)
    dense = {
        "identity": np.eye(N),
        "diagonal": np.diag(diagonal),
        "dense": np.diag(diagonal) + factor @ factor.T,
        "low_rank": np.diag(diagonal) + factor @ factor.T,
    }[form]
    covariance = {
        "identity": None,
        "diagonal": diagonal,
        "dense": jnp.asarray(dense),
        "low_rank": LowRankCovariance(diagonal, factor, jnp.zeros((N, 0))),
    }[form]
    new_mean, new_cov = conserve(mu, constraint, covariance)
    g, b = np.asarray(constraint.matrix), np.asarray(constraint.value)
    ref_mean, ref_cov = _dense_update(np.ravel(mu), dense, g, b)
    assert new_mean.shape == (NT, NX)
    # float64 throughout; the masses are O(1), so 1e-12 is ~1e4 ulps.
    assert np.max(np.abs(constraint.violation(new_mean))) < 1e-12
    np.testing.assert_allclose(np.ravel(new_mean), ref_mean, atol=1e-11)
    dense_new = new_cov if form == "dense" else new_cov.as_matrix()
    np.testing.assert_allclose(dense_new, ref_cov, atol=1e-11)
    if form != "dense":
        np.testing.assert_allclose(new_cov.variance(), np.diag(ref_cov), atol=1e-11)
        assert new_cov.downdate.shape == (N, NT)  # factored: no (n, n) matrix kept


def test_conserve_leaves_a_conserving_mean_alone_and_shrinks_only_the_constraint(getkey):
    mu, factor, diagonal, constraint = _problem(getkey)
    sigma = LowRankCovariance(diagonal, factor, jnp.zeros((N, 0)))
    fixed, _ = conserve(mu, constraint)  # a mean with G mu = b
    again, posterior = conserve(fixed, constraint, sigma)
    np.testing.assert_allclose(again, fixed, atol=1e-13)
    # The constrained directions lose all their variance (sigma_G = 0) ...
    g = constraint.matrix
    np.testing.assert_allclose(g @ posterior.matmul(g.T), 0, atol=1e-11)
    # ... the variance never grows, and it shrinks somewhere.
    shrink = sigma.variance() - posterior.variance()
    assert np.all(shrink >= -1e-13) and np.max(shrink) > 1e-3
    # With constraint noise, G Sigma~ G^T = (S^-1 + noise^-2 ...) is between 0 and noise^2 I.
    noisy = LinearConstraint(g, constraint.value, noise=0.1)
    _, posterior = conserve(mu, noisy, sigma)
    eig = np.linalg.eigvalsh(g @ posterior.matmul(g.T))
    assert np.all(eig > 0) and np.all(eig < 0.1**2)


def test_ensembles_update_without_dense_matrices_and_members_follow(getkey):
    mu, _, _, constraint = _problem(getkey)
    samples = mu + jax.random.normal(getkey(), (8, NT, NX))
    mean, sigma = ensemble_covariance(samples, diagonal=0.05)
    a = np.reshape(samples - samples.mean(0), (8, N)).T
    dense = a @ a.T / 7 + 0.05 * np.eye(N)
    np.testing.assert_allclose(sigma.as_matrix(), dense, atol=1e-12)
    new_mean, new_cov = conserve(mean, constraint, sigma)
    ref_mean, ref_cov = _dense_update(np.ravel(mean), dense, constraint.matrix, constraint.value)
    np.testing.assert_allclose(np.ravel(new_mean), ref_mean, atol=1e-11)
    np.testing.assert_allclose(new_cov.as_matrix(), ref_cov, atol=1e-11)
    # Moving the members with the same gain: their mean is mu~, each one conserves.
    moved = conserve_samples(samples, constraint, diagonal=0.05)
    np.testing.assert_allclose(moved.mean(0), new_mean, atol=1e-11)
    assert np.max(np.abs(jax.vmap(constraint.violation)(moved))) < 1e-12
    # Fewer constraints than members and no nugget: the moved ensemble's covariance is the
    # posterior covariance exactly (deterministic ensemble Kalman update).
    few = integral_constraint(constraint.value[:2], NX * NT // 2)
    moved = conserve_samples(samples, few)
    _, sigma = ensemble_covariance(samples)
    _, posterior = conserve(mean, few, sigma)
    np.testing.assert_allclose(
        np.cov(np.reshape(moved, (8, N)).T), posterior.as_matrix(), atol=1e-11
    )


def test_conserve_under_jit_vmap_and_grad(getkey):
    mu, _, diagonal, constraint = _problem(getkey)
    batch = jnp.stack([mu, 2 * mu])
    project = jax.jit(jax.vmap(lambda m: conserve(m, constraint, diagonal)[0]))
    out = project(batch)
    assert out.shape == (2, NT, NX)
    assert np.max(np.abs(jax.vmap(constraint.violation)(out))) < 1e-12
    grad = jax.grad(lambda m: jnp.sum(conserve(m, constraint, diagonal)[0] ** 2))(mu)
    assert grad.shape == mu.shape and np.all(np.isfinite(grad))


def test_quadrature_and_mass_balance():
    x = np.linspace(0, 1, 11)
    w = quadrature_weights(11)
    assert float(w @ x**1) == pytest.approx(0.5, abs=1e-15)  # trapezoid: exact for linears
    centres = (np.arange(8) + 0.5) / 8
    assert float(quadrature_weights(8, rule="rectangle") @ centres) == pytest.approx(0.5)
    # Stefan-like inflow c / sqrt(pi t): the sqrt substitution integrates it exactly.
    times = jnp.array([0.0, 0.01, 0.05, 0.1])
    m = mass_balance(times, 0.5, lambda t: 0.3 / jnp.sqrt(jnp.pi * t))
    np.testing.assert_allclose(m, 0.5 + 0.6 * np.sqrt(times / np.pi), rtol=1e-13)
    with pytest.raises(ValueError, match="`rule` must be one of"):
        quadrature_weights(4, rule="simpson")
    with pytest.raises(ValueError, match="`covariance` must be None, a diagonal"):
        conserve(jnp.zeros((2, 3)), integral_constraint(jnp.zeros(2), 3), jnp.ones((5,)))


def test_heat_converges_at_second_order():
    """u_t = k u_xx, periodic on [0, 2 pi], u0 = sin x: u = exp(-k t) sin x. The finite-volume
    scheme's error is k t h^2 / 12 exp(-k t) sin x at leading order: order 2."""
    errors = []
    for n in (16, 32, 64):
        x = (np.arange(n) + 0.5) * 2 * np.pi / n
        u = gpme_solve(
            jnp.sin(x), problem="heat", parameter=2.0, t_final=0.5, length=2 * np.pi, periodic=True
        )
        errors.append(np.max(np.abs(u - np.exp(-1.0) * np.sin(x))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2) < 0.05), orders


def test_the_solver_is_differentiable_in_the_parameter():
    """d u / d k of the heat solution against d/dk exp(-k t) sin x = -t exp(-k t) sin x, through
    jit and the time loop (second order in h like the solution)."""
    n, t = 32, 0.2
    x = (np.arange(n) + 0.5) * 2 * np.pi / n

    @jax.jit
    def solve(k):
        return gpme_solve(
            jnp.sin(x),
            problem="heat",
            parameter=k,
            t_final=t,
            length=2 * np.pi,
            periodic=True,
            max_conductivity=3.0,
        )

    du = jax.jacfwd(solve)(2.0)
    np.testing.assert_allclose(du, -t * np.exp(-2.0 * t) * np.sin(x), atol=2e-3)


@pytest.mark.parametrize("problem", ["heat", "porous_medium", "stefan"])
def test_mass_is_conserved_to_rounding_without_wall_fluxes(getkey, problem):
    n = 32
    u0 = jax.random.uniform(getkey(), (n,), minval=0.2, maxval=1.0)
    parameter = {"heat": 3.0, "porous_medium": 2.5, "stefan": 0.6}[problem]
    u = gpme_solve(
        u0,
        problem=problem,
        parameter=parameter,
        t_final=0.05,
        save_times=6,
        max_conductivity=1.0 if problem != "heat" else None,
    )
    mass = jnp.sum(u, axis=1) / n
    # Thousands of steps, each a rounding of O(1) numbers: ~1e-16 * sqrt(steps) relative.
    np.testing.assert_allclose(mass, mass[0], rtol=1e-13, atol=0)
    assert u.min() >= 0.2 - 1e-12 and u.max() <= 1.0 + 1e-12  # monotone scheme


def test_porous_medium_against_the_travelling_wave():
    """u = (m (t - x)_+)^(1/m): a degenerate front, so the error is first order in h."""
    m = 3.0
    errors = []
    for n in (25, 50, 100):
        s = gpme_setup("porous_medium", n, jnp.float64)
        u = gpme_solve(
            s["u0"],
            problem="porous_medium",
            parameter=m,
            t_final=0.5,
            left=lambda t: (m * t) ** (1 / m),
            right=0.0,
            max_conductivity=m * 0.5,
        )
        exact = porous_medium_solution(s["x"], 0.5, m)
        errors.append(float(jnp.sqrt(jnp.mean((u - exact) ** 2) / jnp.mean(exact**2))))
    assert errors[-1] < 5e-3 and errors[0] / errors[-1] > 2.5, errors


def test_stefan_front_and_mass_follow_the_exact_solution():
    """The front of the enthalpy-type scheme, h sum min(u / u*, 1), against x* = 2 z sqrt(t),
    and the mass against 2 c sqrt(t / pi) (the integrated inflow)."""
    n = 100
    s = gpme_setup("stefan", n, jnp.float64)
    u = gpme_solve(
        s["u0"], problem="stefan", parameter=0.6, t_final=0.1, left=1.0, right=0.0, save_times=5
    )
    t = jnp.linspace(0, 0.1, 5)[1:]
    front = jnp.sum(jnp.clip(u[1:] / 0.6, 0, 1), axis=1) / n
    exact, x_star = stefan_solution(s["x"][None], t[:, None], 0.6)
    np.testing.assert_allclose(front, x_star[:, 0], atol=1.0 / n)
    assert np.all(np.diff(front) > 0)  # it moves, like sqrt(t)
    np.testing.assert_allclose(jnp.sum(u[1:], axis=1) / n, stefan_mass(t, 0.6), rtol=2e-3)
    assert float(jnp.mean(jnp.abs(u[1:] - exact))) < 5e-3


def test_gpme_dataset_shapes_and_messages(getkey):
    data = gpme_dataset(getkey(), 3, "stefan", num_points=16, num_times=5)
    assert data.u.shape == (3, 5, 16) and data.mass.shape == (3, 5)
    assert np.all((data.parameters >= 0.55) & (data.parameters <= 0.7))
    with pytest.raises(ValueError, match="`problem` must be one of"):
        gpme_dataset(getkey(), 3, "burgers")
    with pytest.raises(ValueError, match="`max_conductivity`"):
        gpme_solve(jnp.zeros(8), problem="porous_medium", parameter=2.0, t_final=1.0)
