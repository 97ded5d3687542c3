import json
import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

from sciml.data._grf import grf, grf_eigenvalues
from sciml.data._recipes.burgers import (
    burgers_recipe_info,
    burgers_recipe_sample,
    generate_burgers,
)
from sciml.data._solvers.burgers import burgers_solve
from sciml.data._solvers.etdrk4 import ETDRK4, etdrk4_coefficients


def _relative_l2(u, ref):
    u, ref = np.asarray(u, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(u - ref) / np.linalg.norm(ref))


def _grid(s):
    return np.arange(s) / s


# Initial conditions u0(x) = sum_m a_m sin(2 pi m x) + b_m cos(2 pi m x) (zero mean), as
# {m: (a_m, b_m)}.
SINE = {1: (1.0, 0.0)}
THREE_MODES = {1: (1.0, 0.0), 2: (0.0, 0.5), 3: (-0.3, 0.2)}


def _initial(modes, x):
    return sum(
        a * np.sin(2 * np.pi * m * x) + b * np.cos(2 * np.pi * m * x) for m, (a, b) in modes.items()
    )


def _cole_hopf(modes, nu, t, x, fine=1024):
    """u(t, x) by the Cole-Hopf transform, in float64, to ~1e-14.

    u = -2 nu phi_x / phi with phi_t = nu phi_xx and phi0 = exp(-U / (2 nu)), U the antiderivative
    of u0 with U(0) = 0; U is periodic because u0 has zero mean, and phi0 is analytic, so its
    Fourier coefficients (from `fine` points) decay faster than geometrically and the heat
    equation is solved exactly mode by mode; phi and phi_x are then summed at x.
    """
    xf = _grid(fine)
    antiderivative = sum(
        (a * (1 - np.cos(2 * np.pi * m * xf)) + b * np.sin(2 * np.pi * m * xf)) / (2 * np.pi * m)
        for m, (a, b) in modes.items()
    )
    k = np.fft.fftfreq(fine, 1 / fine)
    phi_hat = np.fft.fft(np.exp(-antiderivative / (2 * nu))) / fine
    phi_hat = phi_hat * np.exp(-nu * (2 * np.pi * k) ** 2 * t)
    waves = np.exp(2j * np.pi * np.outer(x, k))
    phi = (waves @ phi_hat).real
    phi_x = (waves @ (2j * np.pi * k * phi_hat)).real
    return -2 * nu * phi_x / phi


def test_cole_hopf_reference():
    # The reference against the closed form for u0 = sin(2 pi x): phi0 = exp(-a (1 - cos 2 pi x)),
    # a = 1 / (4 pi nu), whose Fourier coefficients are e^-a I_k(a) (modified Bessel functions).
    nu, t, x = 0.02, 0.7, _grid(64)
    a = 1 / (4 * np.pi * nu)
    k = np.arange(1, 80)
    c = ive(k, a) * np.exp(-nu * (2 * np.pi * k) ** 2 * t)
    phi = ive(0, a) + 2 * np.sum(c[:, None] * np.cos(2 * np.pi * np.outer(k, x)), axis=0)
    phi_x = -2 * np.sum((2 * np.pi * k * c)[:, None] * np.sin(2 * np.pi * np.outer(k, x)), axis=0)
    exact = -2 * nu * phi_x / phi
    assert _relative_l2(_cole_hopf(SINE, nu, t, x), exact) < 1e-13


def _phi(z, j, terms=40):
    # phi_j(z) = sum_n z^n / (n + j)!, without cancellation for |z| < 1.
    return sum(z**n / math.factorial(n + j) for n in range(terms))


@pytest.mark.parametrize("z", [0.0, -1e-9, 3e-6, -1e-3, -0.5, 0.7, -1.0, -3.0, -40.0, -1e4, -1e9])
def test_etdrk4_coefficients(z):
    # References: for |z| < 1 the Taylor series of Q = (h / 2) phi_1(z / 2),
    # f1 = h (phi_1 - 3 phi_2 + 4 phi_3), f2 = h (phi_2 - 2 phi_3), f3 = h (4 phi_3 - phi_2);
    # for |z| >= 1 Cox & Matthews' closed forms, which cancel at most ~50x there.
    h = 0.25
    if abs(z) < 1:
        p1, p2, p3 = (_phi(z, j) for j in (1, 2, 3))
        q = h / 2 * _phi(z / 2, 1)
        f1, f2, f3 = h * (p1 - 3 * p2 + 4 * p3), h * (p2 - 2 * p3), h * (4 * p3 - p2)
    else:
        e = np.exp(z)
        q = h * np.expm1(z / 2) / z
        f1 = h * (-4 - z + e * (4 - 3 * z + z**2)) / z**3
        f2 = h * (2 + z + e * (z - 2)) / z**3
        f3 = h * (-4 - 3 * z - z**2 + e * (4 - z)) / z**3
    expected = [np.expm1(z), np.expm1(z / 2), q, f1, f2, f3]
    got = etdrk4_coefficients(np.array([z / h]), h)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g[0], e, rtol=1e-13, atol=1e-300)


def test_etdrk4_scalar_order_four():
    # A stiff non-autonomous scalar problem, y' = lam (y - sin t) + cos t, solution
    # y = sin t + y0 e^{lam t}: linear part lam (in the solver), N(t) = cos t - lam sin t.
    lam, y0, t1 = -50.0, 1.0, 1.0

    def solve(num_steps):
        h = t1 / num_steps
        term = diffrax.ODETerm(lambda t, y, args: -lam * jnp.sin(t) + jnp.cos(t))
        sol = diffrax.diffeqsolve(
            term,
            ETDRK4(lam, h, dtype=jnp.float64),
            t0=0.0,
            t1=t1,
            dt0=h,
            y0=jnp.asarray(y0),
            stepsize_controller=diffrax.ConstantStepSize(),
            max_steps=num_steps,
        )
        return float(sol.ys[0])

    exact = math.sin(t1) + y0 * math.exp(lam * t1)
    errors = [abs(solve(n) - exact) for n in (10, 20, 40, 80)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # |lam h| ranges over 5 ... 0.6. Cox-Matthews ETDRK4 may lose order while |lam h| is large
    # (Hochbruck & Ostermann 2005); here the observed order rises 3.58, 3.87, 3.96 towards 4.
    assert np.all(orders > 3.5), (errors, orders)
    assert np.all(np.diff(orders) > 0), (errors, orders)
    assert orders[-1] > 3.9, (errors, orders)


@pytest.mark.parametrize(
    ("modes", "nu", "s"), [(SINE, 0.1, 64), (SINE, 0.02, 128), (THREE_MODES, 0.05, 128)]
)
def test_cole_hopf_float64(modes, nu, s):
    # Acceptance criterion of the project: relative L2 error <= 1e-6 at t = 1 (float64). With the
    # default dt = 1e-3 the ETDRK4 error is ~1e-12 (it is O(dt^4), see the convergence test);
    # we allow 1e-10.
    x = _grid(s)
    u = burgers_solve(jnp.asarray(_initial(modes, x)), nu=nu, t_final=1.0)
    assert u.dtype == jnp.float64 and u.shape == (s,)
    error = _relative_l2(u, _cole_hopf(modes, nu, 1.0, x))
    assert error < 1e-10, error


def test_cole_hopf_float32():
    # float32 with the expm1 form of the exponentials: ~1.2e-7 relative (float32 rounding
    # accumulated over 1000 steps; without it, E = exp(h lambda) rounded and raised to the 1000th
    # power gave 1e-5). We allow 1e-6.
    x = _grid(128)
    u = burgers_solve(jnp.asarray(_initial(SINE, x), jnp.float32), nu=0.02, t_final=1.0)
    assert u.dtype == jnp.float32
    error = _relative_l2(u, _cole_hopf(SINE, 0.02, 1.0, x))
    assert error < 1e-6, error


def test_time_convergence_order_four():
    # nu = 0.02, s = 128 (space error ~3e-12): errors ~ 8.8e-7, 6.6e-8, 4.5e-9, 2.9e-10 for
    # 40, 80, 160, 320 steps. ETDRK4 is fourth order; the observed order approaches 4 from below
    # (3.74, 3.88, 3.95); we require the last two within [3.8, 4.2].
    x = _grid(128)
    u0 = jnp.asarray(_initial(SINE, x))
    exact = _cole_hopf(SINE, 0.02, 1.0, x)
    errors = np.array(
        [
            _relative_l2(burgers_solve(u0, nu=0.02, t_final=1.0, num_steps=n), exact)
            for n in (40, 80, 160, 320)
        ]
    )
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(orders[1:] > 3.8) and np.all(orders < 4.2), (errors, orders)


def test_spectral_convergence_in_space():
    # Fixed small step (2000 steps: time error ~2e-13); the error decays geometrically with s
    # (the solution is analytic): ~7e-5, 6e-7, 2e-9, 3e-13 for s = 32, 48, 64, 96 at nu = 0.02.
    # We require a
    # factor >= 50 per step of s and the last below 1e-10.
    sizes = (32, 48, 64, 96)
    errors = []
    for s in sizes:
        x = _grid(s)
        u = burgers_solve(jnp.asarray(_initial(SINE, x)), nu=0.02, t_final=1.0, num_steps=2000)
        errors.append(_relative_l2(u, _cole_hopf(SINE, 0.02, 1.0, x)))
    errors = np.array(errors)
    assert np.all(errors[1:] < errors[:-1] / 50) and errors[-1] < 1e-10, errors


def test_trajectory():
    x = _grid(64)
    u0 = jnp.asarray(_initial(THREE_MODES, x))
    ts = (0.0, 0.25, 0.5, 1.0)
    # 1600 steps: errors ~1.3e-10, 1.1e-11, 9e-12 at t = 0.25, 0.5, 1 (time error dominates).
    us = burgers_solve(u0, nu=0.05, t_final=1.0, num_steps=1600, ts=ts)
    assert us.shape == (4, 64)
    np.testing.assert_allclose(us[0], u0, rtol=0, atol=1e-14)
    final = burgers_solve(u0, nu=0.05, t_final=1.0, num_steps=1600)
    np.testing.assert_allclose(us[-1], final, rtol=0, atol=1e-13)
    for t, u in zip(ts[1:], us[1:], strict=True):
        assert _relative_l2(u, _cole_hopf(THREE_MODES, 0.05, t, x)) < 1e-9


def test_jit_vmap_batch():
    x = _grid(32)
    u0s = jnp.stack([jnp.asarray(_initial(m, x)) * c for m, c in ((SINE, 1.0), (THREE_MODES, 0.7))])
    solve = jax.jit(jax.vmap(lambda u: burgers_solve(u, nu=0.1, t_final=0.5, num_steps=50)))
    batched = solve(u0s)
    for u0, u in zip(u0s, batched, strict=True):
        np.testing.assert_allclose(
            u, burgers_solve(u0, nu=0.1, t_final=0.5, num_steps=50), atol=1e-14
        )


def test_gradient_matches_finite_differences(getkey):
    # d/deps L(u0 + eps d) by central differences (eps = 1e-5: truncation ~eps^2 |L'''| ~ 1e-10,
    # rounding ~1e-16 / eps ~ 1e-11) against <grad L, d> from reverse mode through diffrax.
    s = 32
    u0 = jnp.asarray(_initial(THREE_MODES, _grid(s)))
    w, d = jax.random.normal(getkey(), (2, s), jnp.float64)

    def loss(u0):
        return jnp.sum(w * burgers_solve(u0, nu=0.1, t_final=0.2, num_steps=20) ** 2)

    grad = jax.jit(jax.grad(loss))(u0)
    eps = 1e-5
    fd = (loss(u0 + eps * d) - loss(u0 - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(grad, d), fd, rtol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(u0=np.zeros((4, 4))), "1-D"),
        (dict(u0=np.zeros(7)), "even"),
        (dict(u0=np.zeros(2)), "even"),
        (dict(u0=np.zeros(8, np.complex64)), "real float32 or float64"),
        (dict(nu=0.0), "`nu`"),
        (dict(nu=-1.0), "`nu`"),
        (dict(nu=float("nan")), "`nu`"),
        (dict(t_final=-0.1), "`t_final`"),
        (dict(dt=0.0), "`dt`"),
        (dict(num_steps=0), "`num_steps`"),
        (dict(num_steps=2.5), "`num_steps`"),
        (dict(dt=0.1, num_steps=10), "at most one"),
        (dict(ts=[0.0, 2.0]), "`ts`"),
        (dict(ts=[0.5, 0.2]), "non-decreasing"),
        (dict(ts=[0.123456]), "step grid"),
    ],
)
@pytest.mark.untyped
def test_solve_errors(kwargs, match):
    args = dict(u0=np.zeros(8), nu=0.1, t_final=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        burgers_solve(args.pop("u0"), **args)


@pytest.mark.untyped
def test_traced_nu_is_an_error():
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda nu: burgers_solve(jnp.zeros(8), nu=nu, t_final=1.0))(0.1)


def test_zero_time_returns_u0():
    u0 = jnp.asarray(_initial(SINE, _grid(16)))
    np.testing.assert_array_equal(burgers_solve(u0, nu=0.1, t_final=0.0), u0)


# The recipe at a small solve grid, so that the tests stay fast.
RECIPE = dict(solve_resolution=256)


def test_recipe_sample_is_grf_and_deterministic(getkey):
    key = getkey()
    u0, u = burgers_recipe_sample(key, 64, **RECIPE)
    assert u0.shape == u.shape == (64,) and u0.dtype == u.dtype == jnp.float32
    field = grf(key, (256,), alpha=2.0, tau=5.0, sigma=25.0, dtype=jnp.float32)
    np.testing.assert_array_equal(u0, field[::4])
    again = burgers_recipe_sample(key, 64, **RECIPE)
    np.testing.assert_array_equal(u, again[1])
    other = burgers_recipe_sample(getkey(), 64, **RECIPE)
    assert not np.allclose(u, other[1])


def test_generate_chunks_do_not_change_samples(getkey):
    key = getkey()
    n = 7
    chunks = {c: list(generate_burgers(key, n, 32, chunk_size=c, **RECIPE)) for c in (3, 5)}
    assert [a.shape for a, _ in chunks[3]] == [(3, 1, 32), (3, 1, 32), (1, 1, 32)]
    inputs = {c: np.concatenate([a for a, _ in v]) for c, v in chunks.items()}
    outputs = {c: np.concatenate([b for _, b in v]) for c, v in chunks.items()}
    assert all(a.dtype == np.float32 for a in (*inputs.values(), *outputs.values()))
    np.testing.assert_array_equal(inputs[3], inputs[5])
    # Batched FFTs may round differently per batch size; the solve itself is identical.
    np.testing.assert_allclose(outputs[3], outputs[5], rtol=0, atol=1e-6)
    keys = jax.random.split(key, n)
    for i in (0, 6):
        u0, u = burgers_recipe_sample(keys[i], 32, **RECIPE)
        np.testing.assert_array_equal(inputs[3][i, 0], u0)
        np.testing.assert_allclose(outputs[3][i, 0], u, rtol=0, atol=1e-6)


def test_recipe_initial_spectrum(getkey):
    # E |u0_hat_k|^2 / s^2 = 625 (4 pi^2 k^2 + 25)^-2; the mean over M samples of a complex
    # (real for k = 0) Gaussian coefficient has relative std 1 / sqrt(M) (sqrt(2 / M)); 5 std.
    num = 400
    keys = jax.random.split(getkey(), num)
    u0 = jax.vmap(lambda k: burgers_recipe_sample(k, 64, t_final=0.0, dtype=jnp.float64)[0])(keys)
    power = np.mean(np.abs(np.fft.rfft(np.asarray(u0), axis=-1)) ** 2, axis=0) / 64**2
    expected = np.asarray(grf_eigenvalues((64,), alpha=2.0, tau=5.0, sigma=25.0))[:33]
    np.testing.assert_allclose(power[:6], expected[:6], rtol=5 * math.sqrt(2 / num))


def test_recipe_info_and_errors():
    info = burgers_recipe_info(1024)
    assert json.loads(json.dumps(info)) == info
    assert info["nu"] == 0.1 and info["solve_resolution"] == 8192 and info["subsample_stride"] == 8
    assert info["solver"]["num_steps"] == 200 and info["grid"] == "x_j = j / s, j = 0..s-1"
    with pytest.raises(ValueError, match="divide"):
        burgers_recipe_info(1000)
    with pytest.raises(ValueError, match="`resolution`"):
        burgers_recipe_sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="`chunk_size`"):
        generate_burgers(jax.random.key(0), 4, 64, chunk_size=0)
    with pytest.raises(ValueError, match="`dtype`"):
        generate_burgers(jax.random.key(0), 4, 64, dtype=jnp.int32)
