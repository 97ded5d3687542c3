"""Checks of the STDE two-body PINN benchmark (`experiments/stde_pinn.py`): the closed-form
source term against automatic differentiation, the sampler, and one training step per method."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.derivatives as sd

_PATH = Path(__file__).parent.parent / "experiments" / "stde_pinn.py"
_spec = importlib.util.spec_from_file_location("stde_pinn", _PATH)
stde_pinn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stde_pinn)


def _points(key, n, dim):
    return stde_pinn.sample_ball(key, n, dim, jnp.float64)


@pytest.mark.parametrize("dim", [2, 3, 7])
def test_closed_form_laplacian_matches_dense_hessian(dim, getkey):
    coeffs = stde_pinn.two_body_coefficients(dim, 3, jnp.float64)
    u = lambda x: stde_pinn.exact_solution(coeffs, x)[0]
    for x in _points(getkey(), 5, dim):
        _, lap = stde_pinn.exact_solution(coeffs, x)
        # Dense float64 reference: both sides are exact, so agreement is to rounding (~1e-13).
        np.testing.assert_allclose(lap, jnp.trace(jax.hessian(u)(x)), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dim", [2, 5, 16])
def test_closed_form_laplacian_matches_taylor_laplacian(dim, getkey):
    if not hasattr(sd, "laplacian"):
        pytest.skip("`sciml.derivatives.laplacian` is not available yet")
    coeffs = stde_pinn.two_body_coefficients(dim, 0, jnp.float64)
    u = lambda x: stde_pinn.exact_solution(coeffs, x)[0]
    for x in _points(getkey(), 4, dim):
        np.testing.assert_allclose(
            stde_pinn.exact_solution(coeffs, x)[1], sd.laplacian(u, x), rtol=1e-11, atol=1e-11
        )


@pytest.mark.parametrize("pde", stde_pinn.PDES)
def test_exact_solution_has_zero_residual(pde, getkey):
    # The exact solution must satisfy its own PDE: Delta u* + N(u*) - g = 0.
    dim = 6
    coeffs = stde_pinn.two_body_coefficients(dim, 1, jnp.float64)
    u = lambda x: stde_pinn.exact_solution(coeffs, x)[0]
    for x in _points(getkey(), 3, dim):
        lap = jnp.trace(jax.hessian(u)(x))
        res = lap + stde_pinn.nonlinearity(pde, u(x)) - stde_pinn.source(pde, coeffs, x)
        assert abs(float(res)) < 1e-11


def test_sample_ball_is_uniform_in_ball(getkey):
    dim, n = 10, 20_000
    xs = stde_pinn.sample_ball(getkey(), n, dim, jnp.float64)
    r = jnp.linalg.norm(xs, axis=-1)
    assert xs.shape == (n, dim) and bool(jnp.all(r <= 1))
    # Radius of a uniform point in the d-ball has CDF r^d, so r^d ~ U(0, 1): mean 1/2, with
    # standard error 1/sqrt(12 n) ~ 0.002; 0.01 is five of them.
    assert abs(float(jnp.mean(r**dim)) - 0.5) < 0.01


def test_model_vanishes_on_sphere(getkey):
    model = stde_pinn.BallPINN(5, 16, 3, key=getkey(), dtype=jnp.float64)
    x = jax.random.normal(getkey(), (5,), jnp.float64)
    assert abs(float(model(x / jnp.linalg.norm(x)))) < 1e-12


_AVAILABLE = {
    "stde": "stde_laplacian",
    "stde_dense": "stde_laplacian",
    "hte": "hte_laplacian",
    "sdgd": "sdgd_laplacian",
    "forward": "forward_laplacian",
    "exact": "laplacian",
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(_AVAILABLE))
def test_training_step_runs_and_lowers_loss(method):
    if not hasattr(sd, _AVAILABLE[method]):
        pytest.skip(f"`sciml.derivatives.{_AVAILABLE[method]}` is not available yet")
    args = stde_pinn.parse_args(
        ["--dim", "8", "--method", method, "--num-samples", "4", "--steps", "30", "--width", "16"]
    )
    s = stde_pinn.setup(args)
    params, opt_state = s.params, s.opt_state
    key = jax.random.PRNGKey(0)
    losses = []
    for i in range(30):
        params, opt_state, loss = s.compiled(params, opt_state, jax.random.fold_in(key, i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    # Stochastic losses on fresh points: compare averages of the first and last ten steps.
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="--num-samples"):
        stde_pinn.check_args(stde_pinn.parse_args(["--dim", "4", "--num-samples", "8"]))
    with pytest.raises(ValueError, match="--dim"):
        stde_pinn.check_args(stde_pinn.parse_args(["--dim", "1"]))
