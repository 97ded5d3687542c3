"""Kronecker algebra of product kernels on grids (`sciml.gp`): products, solves and
log-determinants from the factors equal the dense N x N computation (float64, 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import gp


def _spd(key, n, scale=1.0):
    """A squared-exponential kernel matrix on n points (positive definite, condition number
    ~1e3-1e6 for these sizes) plus a small nugget."""
    x = jnp.sort(jax.random.uniform(key, (n,)))
    return jnp.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.3**2 * scale)) + 1e-3 * jnp.eye(n)


def _dense(factors):
    out = factors[0]
    for a in factors[1:]:
        out = jnp.kron(out, a)
    return out


@pytest.mark.parametrize("sizes", [(5, 7), (4, 3, 6)])
def test_kronecker_product_solve_and_logdet_equal_dense(getkey, sizes):
    factors = [_spd(getkey(), n) for n in sizes]
    dense = _dense(factors)
    n = dense.shape[0]
    x = jax.random.normal(getkey(), (n,))
    np.testing.assert_allclose(gp.kron_matvec(factors, x), dense @ x, rtol=1e-12, atol=1e-12)
    for noise in (0.0, 1e-2):
        system = dense + noise * jnp.eye(n)
        # Condition numbers up to ~1e8 here: the solve agrees to ~1e-8 relative of the largest
        # entry at worst; 1e-10 where the noise bounds it.
        expected = jnp.linalg.solve(system, x)
        got = gp.kron_solve(factors, x, noise=noise)
        scale = float(jnp.max(jnp.abs(expected)))
        tol = 1e-10 if noise else 1e-8
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(system @ got, x, rtol=0, atol=1e-9 * float(jnp.max(abs(x))))
        sign, logdet = jnp.linalg.slogdet(system)
        assert sign > 0
        np.testing.assert_allclose(gp.kron_logdet(factors, noise=noise), logdet, rtol=1e-10)


def test_solve_is_differentiable_like_the_dense_solve(getkey):
    factors = [_spd(getkey(), 4), _spd(getkey(), 5)]
    y = jax.random.normal(getkey(), (20,))

    def via_kron(scale, noise):
        return jnp.sum(gp.kron_solve([factors[0] * scale, factors[1]], y, noise=noise) ** 2)

    def via_dense(scale, noise):
        system = _dense([factors[0] * scale, factors[1]]) + noise * jnp.eye(20)
        return jnp.sum(jnp.linalg.solve(system, y) ** 2)

    got = jax.jit(jax.grad(via_kron, argnums=(0, 1)))(1.3, 0.05)
    expected = jax.grad(via_dense, argnums=(0, 1))(1.3, 0.05)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.untyped
def test_mismatched_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match=r"`kron_matvec`: the vector has 5 entries"):
        gp.kron_matvec([jnp.eye(2), jnp.eye(3)], jnp.ones(5))
    with pytest.raises(ValueError, match="must be square"):
        gp.kron_solve([jnp.ones((2, 3))], jnp.ones(3))
    with pytest.raises(ValueError, match="must be square"):
        gp.kron_logdet([])


# --------------------------------------------------------------------------------------------
# The spectral-mixture kernel
# --------------------------------------------------------------------------------------------


def _nested_grad(f, order):
    for _ in range(order):
        f = jax.grad(f)
    return f


def test_spectral_mixture_derivatives_match_autodiff():
    """Taylor-mode derivatives of orders 0-4 equal nested `jax.grad` (1e-10 relative); the
    Gram blocks with derivatives on either argument equal autodiff of k(x - y) in x and y;
    the closed form at tau = 0 is the sum of the weights."""
    kernel = gp.SpectralMixture(
        means=jnp.array([0.0, 3.0, 31.8]),
        scales=jnp.array([0.5, 0.2, 1.0]),
        weights=jnp.array([0.5, 0.3, 0.2]),
    )
    assert float(kernel(0.0)) == pytest.approx(1.0, rel=1e-14)
    for tau in (0.0, 0.013, -0.27):
        for order in range(5):
            expected = _nested_grad(kernel, order)(jnp.asarray(tau))
            got = kernel.derivative(tau, order)
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * 40**order)
    x, y = jnp.linspace(0, 1, 4), jnp.linspace(-0.2, 0.9, 3)
    for dx, dy in [(0, 0), (1, 0), (0, 2), (2, 2)]:

        def k_xy(a, b):
            return kernel(a - b)

        block = _nested_grad(lambda a, b: k_xy(a, b), dx)
        both = block
        for _ in range(dy):
            both = jax.grad(both, argnums=1)
        expected = jax.vmap(jax.vmap(both, (None, 0)), (0, None))(x, y)
        np.testing.assert_allclose(
            kernel.gram(x, y, dx=dx, dy=dy), expected, rtol=1e-9, atol=1e-9 * 40 ** (dx + dy)
        )
    gram = kernel.gram(x, x)
    assert jnp.all(jnp.linalg.eigvalsh(gram) > -1e-12)


@pytest.mark.untyped
def test_spectral_mixture_refuses_mismatched_components():
    with pytest.raises(ValueError, match="`means` and `scales`"):
        gp.SpectralMixture(means=jnp.ones(2), scales=jnp.ones(3))
