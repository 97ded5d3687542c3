import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.data._grf import dct1, dst1, grf

# With M samples, the mean of |c_k|^2 / lambda_k over the samples has standard deviation
# sqrt(2 / M) for a real Gaussian coefficient (chi-square with M degrees of freedom, divided by
# M) and 1 / sqrt(M) for a complex one; an off-diagonal empirical covariance entry divided by
# sqrt(lambda_i lambda_j) has standard deviation <= 1 / sqrt(M). We test a few hundred such
# quantities per case, so we allow 5 standard deviations (a false alarm has probability < 1e-4
# per case; the keys are fixed anyway).
NUM_SAMPLES = 4000
TOL = 5 * math.sqrt(2 / NUM_SAMPLES)


def _basis(boundary, n):
    """Independent dense 1-D eigenbasis on the grid: (grid-values x modes) matrix, wavenumbers,
    the slice of grid nodes it lives on, and the factor c in mu_k = c k^2."""
    if boundary == "periodic":
        k = np.fft.fftfreq(n, 1 / n)
        x = np.arange(n) / n
        return np.exp(2j * np.pi * np.outer(x, k)), k, slice(None), 4 * np.pi**2
    x = np.arange(n) / (n - 1)
    if boundary == "dirichlet":
        k = np.arange(1, n - 1)
        return np.sqrt(2) * np.sin(np.pi * np.outer(x[1:-1], k)), k, slice(1, -1), np.pi**2
    k = np.arange(n)
    c = np.where(k == 0, 1.0, np.sqrt(2))
    return c * np.cos(np.pi * np.outer(x, k)), k, slice(None), np.pi**2


def _samples(getkey, shape, num, **kwargs):
    keys = jax.random.split(getkey(), num)
    return np.asarray(jax.jit(jax.vmap(lambda k: grf(k, shape, **kwargs)))(keys))


def _coefficients(u, shape, boundary):
    """Karhunen-Loeve coefficients of the samples u (num, *shape), by inverting the dense basis
    along each axis, and the expected variances sigma^2 (mu_k + tau^2)^-alpha's |k|^2."""
    d = len(shape)
    ksq = np.zeros(())
    c = u.astype(complex)
    for axis, n in enumerate(shape):
        phi, k, nodes, scale = _basis(boundary, n)
        c = np.take(c, np.arange(n)[nodes], axis=axis + 1)
        c = np.moveaxis(np.tensordot(np.linalg.inv(phi), c, axes=([1], [axis + 1])), 0, axis + 1)
        ksq = ksq + (k**2).reshape((-1,) + (1,) * (d - 1 - axis))
    return c, ksq, scale


CASES = [
    (boundary, shape)
    for boundary in ("periodic", "dirichlet", "neumann")
    for shape in ((16,), (12, 9), (6, 5, 4))
]


@pytest.mark.parametrize("boundary,shape", CASES)
def test_spectrum(getkey, boundary, shape):
    alpha, tau = 2.5, 4.0
    d = len(shape)
    sigma = tau ** (alpha - d / 2)
    u = _samples(getkey, shape, NUM_SAMPLES, alpha=alpha, tau=tau, boundary=boundary)
    assert u.shape == (NUM_SAMPLES, *shape)
    assert np.isrealobj(u)
    c, ksq, scale = _coefficients(u, shape, boundary)
    lam = sigma**2 * (scale * ksq + tau**2) ** (-alpha)
    ratio = np.mean(np.abs(c) ** 2, axis=0) / lam
    assert np.max(np.abs(ratio - 1)) < TOL
    # Distinct modes are uncorrelated: the whole empirical covariance is diag(lambda).
    flat = c.reshape(NUM_SAMPLES, -1) / np.sqrt(lam.reshape(-1))
    cov = flat.T @ flat.conj() / NUM_SAMPLES
    assert np.max(np.abs(cov - np.eye(cov.shape[0]))) < TOL


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
def test_pointwise_moments(getkey, boundary):
    shape = (16, 12)
    alpha, tau, sigma = 2.0, 3.0, 1.5
    u = _samples(getkey, shape, NUM_SAMPLES, alpha=alpha, tau=tau, sigma=sigma, boundary=boundary)
    # Var u(x) = sum_k lambda_k |phi_k(x)|^2, which is sum_k lambda_k for the periodic basis.
    var = np.zeros(shape)
    phis, ksq = [], np.zeros(())
    for axis, n in enumerate(shape):
        phi, k, nodes, scale = _basis(boundary, n)
        full = np.zeros((n, phi.shape[1]), phi.dtype)
        full[nodes] = phi
        phis.append(np.abs(full) ** 2)
        ksq = ksq + (k**2).reshape((-1,) + (1,) * (len(shape) - 1 - axis))
    lam = sigma**2 * (scale * ksq + tau**2) ** (-alpha)
    var = np.einsum("ik,jl,kl->ij", *phis, lam)
    if boundary == "periodic":
        np.testing.assert_allclose(var, lam.sum(), rtol=1e-12)
    interior = var > 0
    # Sample variance: relative standard deviation sqrt(2 / M); sample mean: sqrt(var / M).
    assert np.max(np.abs(u.var(0)[interior] / var[interior] - 1)) < TOL
    assert np.max(np.abs(u.mean(0)[interior]) / np.sqrt(var[interior])) < 5 / math.sqrt(NUM_SAMPLES)


def test_dirichlet_boundary_is_zero(getkey):
    u = grf(getkey(), (9, 7, 5), alpha=2.0, tau=3.0, boundary="dirichlet")
    for axis in range(3):
        assert np.all(np.take(u, [0, -1], axis=axis) == 0)
    assert np.all(u[1:-1, 1:-1, 1:-1] != 0)


def test_default_sigma_jit_dtype(getkey):
    key = getkey()
    u = grf(key, (10, 8), alpha=2.0, tau=3.0, boundary="neumann")
    v = grf(key, (10, 8), alpha=2.0, tau=3.0, sigma=3.0, boundary="neumann")
    np.testing.assert_allclose(u, v, rtol=1e-14)
    jitted = jax.jit(grf, static_argnames=("shape", "boundary", "dtype"))
    w = jitted(key, shape=(10, 8), alpha=2.0, tau=3.0, boundary="neumann")
    np.testing.assert_allclose(w, u, rtol=1e-12, atol=1e-14)
    w = jitted(key, shape=(10, 8), alpha=2.0, tau=3.0, boundary="neumann", dtype=jnp.float32)
    assert w.dtype == jnp.float32 and w.shape == (10, 8)


def test_tau_zero_drops_constant_mode(getkey):
    u = np.asarray(grf(getkey(), (33,), alpha=1.0, tau=0.0, sigma=1.0, boundary="neumann"))
    trapezoid = np.full(33, 1.0)
    trapezoid[[0, -1]] = 0.5
    assert abs(trapezoid @ u) < 1e-12 * np.abs(u).max()
    v = np.asarray(grf(getkey(), (32,), alpha=1.0, tau=0.0, sigma=1.0))
    assert abs(v.mean()) < 1e-12 * np.abs(v).max()


def test_transforms_match_dense():
    x = np.random.default_rng(0).normal(size=(3, 7, 6))
    j = np.arange(1, 8)
    sine = np.sin(np.pi * np.outer(j, j) / 8)
    np.testing.assert_allclose(dst1(jnp.asarray(x), axis=1), np.einsum("kj,ajb->akb", sine, x))
    j = np.arange(6)
    cosine = np.cos(np.pi * np.outer(j, j) / 5)
    np.testing.assert_allclose(dct1(jnp.asarray(x)), x @ cosine.T, atol=1e-13)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(shape=(8, 8), alpha=2.0, tau=3.0, boundary="robin"), "`boundary`"),
        (dict(shape=(8, 8), alpha=0.0, tau=3.0), "`alpha`"),
        (dict(shape=(8, 8), alpha=2.0, tau=-1.0), "`tau`"),
        (dict(shape=(8, 1), alpha=2.0, tau=3.0), "`shape`"),
        (dict(shape=(), alpha=2.0, tau=3.0), "`shape`"),
        (dict(shape=(8, 2), alpha=2.0, tau=3.0, boundary="dirichlet"), "`shape`"),
        (dict(shape=(8, 8), alpha=2.0, tau=0.0), "`sigma`"),
        (dict(shape=(8, 8), alpha=2.0, tau=3.0, sigma=-1.0), "`sigma`"),
    ],
)
def test_bad_arguments(getkey, kwargs, match):
    with pytest.raises(ValueError, match=match):
        grf(getkey(), **kwargs)
