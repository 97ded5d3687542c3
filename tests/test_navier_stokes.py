import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.data import (
    generate_navier_stokes,
    navier_stokes_recipe_info,
    navier_stokes_recipe_sample,
    navier_stokes_solve,
)
from sciml.data._recipes.navier_stokes import NS_SIGMA, _initial_vorticity, _recipe_forcing
from sciml.data._solvers.navier_stokes import _advection, _Operators, _velocity_hat

SCHEMES = ("cn_ab2", "euler_cn")


def _grid(s):
    x = np.arange(s) / s
    return np.meshgrid(x, x, indexing="ij")


def _random_modes(s, kmax, seed, count=6, amplitude=10.0):
    """A few random Fourier modes with |k_x|, |k_y| <= kmax, scaled to max |w| = amplitude."""
    rng = np.random.default_rng(seed)
    x, y = _grid(s)
    w = np.zeros((s, s))
    while np.all(w == 0) or count > 0:
        kx, ky = rng.integers(-kmax, kmax + 1, size=2)
        if kx == 0 and ky == 0:
            continue
        w += rng.normal() * np.cos(2 * np.pi * (kx * x + ky * y) + rng.uniform(0, 2 * np.pi))
        count -= 1
    return amplitude * w / np.abs(w).max()


def _spectral_derivative(field, axis):
    """Independent NumPy spectral derivative (full complex FFT) of a band-limited field."""
    s = field.shape[0]
    k = np.fft.fftfreq(s, 1.0 / s)
    k = k[:, None] if axis == 0 else k[None, :]
    return np.real(np.fft.ifft2(2j * np.pi * k * np.fft.fft2(field)))


def _taylor_green(s, shell):
    x, y = _grid(s)
    if shell == 2:  # psi = sin(2 pi x) sin(2 pi y), -Lap psi = 8 pi^2 psi
        return 8 * np.pi**2 * np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)
    # Three modes with |k|^2 = 5: w is an eigenfunction of -Lap, so u . grad w = 0.
    return (
        np.sin(2 * np.pi * (2 * x + y))
        + 0.7 * np.cos(2 * np.pi * (x - 2 * y))
        + 0.4 * np.sin(2 * np.pi * (2 * x - y) + 0.3)
    )


# Crank-Nicolson's relative error on one mode is n (dt nu lam)^3 / 12 after n steps, lam =
# 4 pi^2 |k|^2: 4e-11 at nu = 1e-3, dt = 1e-3 (|k|^2 = 2); 2.6e-9 at nu = 1e-2, dt = 2.5e-4;
# 6e-10 at nu = 1e-3, dt = 1e-3 (|k|^2 = 5). Explicit Euler advection (euler_cn) amplifies
# rounding noise at dt = 1e-3 on this grid (|u| dt k_max ~ 0.4 and little viscosity), so it
# is checked at dt = 2.5e-4.
@pytest.mark.parametrize(
    "shell,nu,dt,scheme",
    [
        (2, 1e-3, 1e-3, "cn_ab2"),
        (2, 1e-2, 2.5e-4, "cn_ab2"),
        (5, 1e-3, 1e-3, "cn_ab2"),
        (2, 1e-3, 2.5e-4, "euler_cn"),
        (2, 1e-2, 2.5e-4, "euler_cn"),
        (5, 1e-3, 2.5e-4, "euler_cn"),
    ],
)
def test_taylor_green_decay(shell, nu, dt, scheme):
    s = 32
    w0 = _taylor_green(s, shell)
    out = navier_stokes_solve(
        w0, nu=nu, forcing=None, t_final=1.0, dt=dt, record_steps=4, scheme=scheme
    )
    times = np.arange(1, 5) / 4
    exact = w0[None] * np.exp(-4 * np.pi**2 * shell * nu * times)[:, None, None]
    error = np.max(np.abs(np.asarray(out) - exact)) / np.max(np.abs(w0))
    assert error < 1e-8, error


@pytest.mark.parametrize("scheme", SCHEMES)
def test_forced_steady_state(scheme):
    # f = nu (-Lap) w_s with u . grad w_s = 0 makes w_s steady for the continuous equation and,
    # exactly, for both schemes.
    s, nu = 32, 1e-2
    for shell in (2, 5):
        w_s = _taylor_green(s, shell)
        forcing = nu * 4 * np.pi**2 * shell * w_s
        out = navier_stokes_solve(
            w_s, nu=nu, forcing=forcing, t_final=1.0, dt=1e-3, record_steps=2, scheme=scheme
        )
        assert np.max(np.abs(np.asarray(out) - w_s)) / np.max(np.abs(w_s)) < 1e-11


def test_time_convergence_order():
    # Nonlinear flow (six random modes, max |w| = 10, nu = 1e-2, forcing sin 2 pi (x + y)),
    # 32^2, float64, t = 0.5; error against a dt = T / 6400 cn_ab2 reference (whose own error
    # is < 1e-7 relative, far below the errors measured). Measured orders 2.01, 2.00 (cn_ab2)
    # and 1.04, 1.02 (euler_cn).
    s, nu, t_final = 32, 1e-2, 0.5
    w0 = _random_modes(s, 3, seed=0)
    x, y = _grid(s)
    forcing = np.sin(2 * np.pi * (x + y))

    def solve(steps, scheme):
        out = navier_stokes_solve(
            w0,
            nu=nu,
            forcing=forcing,
            t_final=t_final,
            dt=t_final / steps,
            record_steps=1,
            scheme=scheme,
        )
        return np.asarray(out[-1])

    ref = solve(6400, "cn_ab2")
    bands = {"cn_ab2": (1.9, 2.1), "euler_cn": (0.95, 1.1)}
    for scheme, (low, high) in bands.items():
        errors = [np.linalg.norm(solve(n, scheme) - ref) for n in (50, 100, 200)]
        orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert np.all((orders > low) & (orders < high)), (scheme, errors, orders)


def test_velocity_and_streamfunction():
    # For a band-limited field (no Nyquist content) the velocity is divergence-free and its
    # curl v_x - u_y = -Lap psi is w minus its mean (the zero mode of psi is zero).
    s = 32
    w = _random_modes(s, 10, seed=1, count=12) + 0.3
    ops = _Operators(s, np.float64)
    u_h, v_h = _velocity_hat(jnp.fft.rfft2(w), ops)
    u = np.asarray(jnp.fft.irfft2(u_h, s=(s, s)))
    v = np.asarray(jnp.fft.irfft2(v_h, s=(s, s)))
    scale = np.abs(w).max()
    div = _spectral_derivative(u, 0) + _spectral_derivative(v, 1)
    curl = _spectral_derivative(v, 0) - _spectral_derivative(u, 1)
    assert np.max(np.abs(div)) / scale < 1e-12
    assert np.max(np.abs(curl - (w - w.mean()))) / scale < 1e-12


def test_dealiasing():
    s = 48
    ops = _Operators(s, np.float64)
    # The 2/3 rule keeps |k_x|, |k_y| <= s / 3 = 16.
    kx = np.abs(np.fft.fftfreq(s, 1.0 / s))[:, None]
    ky = np.fft.rfftfreq(s, 1.0 / s)[None, :]
    keep = (kx <= s // 3) & (ky <= s // 3)
    np.testing.assert_array_equal(np.asarray(ops.dealias) == 1, keep)
    # A field with every mode present: the advection term is exactly zero in the top third.
    w = np.asarray(jax.random.normal(jax.random.key(0), (s, s), jnp.float64))
    n_h = np.asarray(_advection(jnp.fft.rfft2(w), ops))
    assert np.all(n_h[~keep] == 0)
    assert np.all(np.abs(n_h[keep]) > 0)
    # For w with modes |k_x|, |k_y| < s / 3 the kept modes are alias-free (a product mode k
    # aliases to k - s < -s / 3): they equal those of the product computed on a 2x finer grid,
    # exact for these band-limited fields.
    w = _random_modes(s, s // 3 - 1, seed=2, count=10)
    fine = 2 * s
    rows = np.r_[0 : s // 2, fine - s // 2 : fine]
    spectrum = np.zeros((fine, fine // 2 + 1), complex)
    spectrum[rows, : s // 2 + 1] = np.fft.rfft2(w)
    w_fine = np.fft.irfft2(spectrum, s=(fine, fine)) * 4  # trigonometric interpolation
    np.testing.assert_allclose(w_fine[::2, ::2], w, atol=1e-12)
    fine_ops = _Operators(fine, np.float64)
    u_h, v_h = _velocity_hat(jnp.fft.rfft2(w_fine), fine_ops)
    product = np.asarray(
        jnp.fft.irfft2(u_h, s=(fine, fine))
        * jnp.fft.irfft2(fine_ops.ikx * jnp.fft.rfft2(w_fine), s=(fine, fine))
        + jnp.fft.irfft2(v_h, s=(fine, fine))
        * jnp.fft.irfft2(fine_ops.iky * jnp.fft.rfft2(w_fine), s=(fine, fine))
    )
    exact_h = np.fft.rfft2(product)[rows, : s // 2 + 1] / 4
    n_h = np.asarray(_advection(jnp.fft.rfft2(w), ops))
    assert np.max(np.abs(n_h[keep] - exact_h[keep])) / np.max(np.abs(exact_h)) < 1e-12


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mean_vorticity(scheme):
    # The mean is the k = 0 mode: untouched by viscosity and advection, it moves only by the
    # mean forcing, w_mean(t) = w_mean(0) + t * f_mean.
    s = 16
    w0 = _random_modes(s, 4, seed=3) + 0.5
    x, y = _grid(s)
    for f_mean in (0.0, 0.2):
        forcing = np.cos(2 * np.pi * x) + f_mean
        out = navier_stokes_solve(
            w0, nu=1e-2, forcing=forcing, t_final=0.4, dt=1e-3, record_steps=4, scheme=scheme
        )
        means = np.asarray(out).mean(axis=(1, 2))
        expected = 0.5 + f_mean * np.arange(1, 5) / 10
        assert np.max(np.abs(means - expected)) < 1e-12


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradient_matches_finite_differences(scheme):
    s = 8
    w0 = jnp.asarray(_random_modes(s, 2, seed=4, amplitude=5.0))
    weights = jnp.asarray(np.random.default_rng(5).normal(size=(2, s, s)))
    direction = jnp.asarray(np.random.default_rng(6).normal(size=(s, s)))

    @jax.jit
    def loss(w):
        out = navier_stokes_solve(
            w, nu=1e-2, forcing=None, t_final=0.1, dt=0.01, record_steps=2, scheme=scheme
        )
        return jnp.sum(weights * out)

    grad = jax.grad(loss)(w0)
    eps = 1e-4
    fd = (loss(w0 + eps * direction) - loss(w0 - eps * direction)) / (2 * eps)
    # Central differences: O(eps^2) truncation plus ~1e-16 / eps rounding; measured 1e-11.
    assert abs(float(jnp.vdot(grad, direction)) - float(fd)) < 1e-8 * abs(float(fd))


def test_jit_vmap_dtypes():
    s = 16
    w0 = np.stack([_random_modes(s, 4, seed=i) for i in range(3)])
    nus = jnp.array([1e-3, 2e-3, 5e-3])
    x, y = _grid(s)
    forcing = 0.1 * np.sin(2 * np.pi * (x + y))

    def solve(w, nu):
        return navier_stokes_solve(w, nu=nu, forcing=forcing, t_final=0.1, dt=1e-3, record_steps=5)

    batched = jax.jit(jax.vmap(solve))(w0, nus)
    assert batched.shape == (3, 5, s, s) and batched.dtype == jnp.float64
    for i in range(3):
        single = jax.jit(solve)(w0[i], nus[i])
        np.testing.assert_allclose(batched[i], single, rtol=1e-12, atol=1e-12)
    out32 = navier_stokes_solve(
        w0[0].astype(np.float32), nu=1e-3, forcing=forcing, t_final=0.1, dt=1e-3, record_steps=5
    )
    assert out32.dtype == jnp.float32
    error = np.max(np.abs(np.asarray(out32, np.float64) - batched[0])) / np.abs(batched[0]).max()
    assert error < 1e-5


@pytest.mark.untyped
def test_solve_errors():
    w0 = np.zeros((16, 16))
    ok = dict(nu=1e-3, forcing=None, t_final=1.0, dt=1e-2, record_steps=10)
    bad = [
        (dict(w0=np.zeros((15, 15))), "`w0`"),
        (dict(w0=np.zeros((16, 8))), "`w0`"),
        (dict(w0=np.zeros((2, 16, 16))), "`w0`"),
        (dict(dt=3e-2), "whole number"),
        (dict(record_steps=0), "`record_steps`"),
        (dict(record_steps=2.5), "`record_steps`"),
        (dict(t_final=-1.0), "`t_final`"),
        (dict(dt=0.0), "`dt`"),
        (dict(nu=-1.0), "`nu`"),
        (dict(nu=np.ones(2)), "`nu`"),
        (dict(forcing=np.ones((8, 8))), "`forcing`"),
        (dict(scheme="rk4"), "`scheme`"),
    ]
    for change, match in bad:
        kwargs = {"w0": w0, **ok, **change}
        with pytest.raises(ValueError, match=match):
            navier_stokes_solve(kwargs.pop("w0"), **kwargs)
    with pytest.raises(ValueError, match="`t_final` must be a concrete"):
        jax.jit(lambda t: navier_stokes_solve(w0, **{**ok, "t_final": t}))(1.0)


RECIPE = dict(solve_resolution=32, nu=1e-3, t_final=0.04, dt=1e-3, record_steps=2)


def test_recipe_sample_is_the_solve_of_the_recipe_fields(getkey):
    key = getkey()
    w0, traj = navier_stokes_recipe_sample(key, 32, **RECIPE, dtype=jnp.float64)
    assert w0.shape == (32, 32) and traj.shape == (2, 32, 32)
    assert abs(float(jnp.mean(w0))) < 1e-14
    x, y = _grid(32)
    forcing = 0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y)))
    np.testing.assert_allclose(_recipe_forcing(32, jnp.float64), forcing, atol=1e-15)
    kwargs = {k: v for k, v in RECIPE.items() if k != "solve_resolution"}
    expected = navier_stokes_solve(w0, forcing=forcing, scheme="euler_cn", **kwargs)
    np.testing.assert_allclose(traj, expected, rtol=1e-12, atol=1e-12)
    # Subsampling: the 16^2 sample is every other point of the 32^2 one.
    w0_sub, traj_sub = navier_stokes_recipe_sample(key, 16, **RECIPE, dtype=jnp.float64)
    np.testing.assert_array_equal(w0_sub, w0[::2, ::2])
    np.testing.assert_allclose(traj_sub, traj[:, ::2, ::2], rtol=1e-12, atol=1e-12)


def test_recipe_initial_field_variance():
    # Pointwise variance of the zero-mean field: sigma^2 sum_{k != 0} (4 pi^2 |k|^2 + 49)^-2.5.
    s, n = 32, 512
    k = np.fft.fftfreq(s, 1.0 / s)
    lam = NS_SIGMA**2 * (4 * np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + 49.0) ** -2.5
    expected = lam.sum() - lam[0, 0]
    keys = jax.random.split(jax.random.key(1), n)
    w = jax.vmap(lambda key: _initial_vorticity(key, s, jnp.float64))(keys)
    # n * s^2 correlated values; the spatial average of the sample variance has a standard
    # error of about 1-2% at n = 512 (measured ratios 0.97-0.996 over four seeds), so 10% is a
    # safe band.
    assert abs(float(jnp.mean(w**2)) / expected - 1) < 0.1
    assert float(jnp.max(jnp.abs(jnp.mean(w, axis=(1, 2))))) < 1e-14


def test_generator_determinism_and_chunks(getkey):
    key = getkey()
    kwargs = dict(RECIPE, dtype=jnp.float64)
    runs = {}
    for chunk_size, sizes in ((1, [1, 1, 1]), (2, [2, 1])):
        chunks = list(generate_navier_stokes(key, 3, 16, chunk_size=chunk_size, **kwargs))
        assert [c[0].shape[0] for c in chunks] == sizes
        inputs = np.concatenate([c[0] for c in chunks])
        outputs = np.concatenate([c[1] for c in chunks])
        assert inputs.shape == (3, 1, 16, 16) and outputs.shape == (3, 2, 16, 16)
        assert inputs.dtype == outputs.dtype == np.float32
        runs[chunk_size] = inputs, outputs
    for a, b in zip(runs[1], runs[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    again = list(generate_navier_stokes(key, 3, 16, chunk_size=2, **kwargs))
    np.testing.assert_array_equal(np.concatenate([c[1] for c in again]), runs[2][1])
    keys = jax.random.split(key, 3)
    w0, traj = navier_stokes_recipe_sample(keys[2], 16, **kwargs)
    np.testing.assert_allclose(runs[1][0][2, 0], w0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(runs[1][1][2], traj, rtol=1e-6, atol=1e-6)


def test_recipe_errors_and_info():
    key = jax.random.key(0)
    bad = [
        (dict(resolution=24), "`solve_resolution`"),
        (dict(solve_resolution=30), "`solve_resolution`"),
        (dict(dt=3e-3), "whole number"),
        (dict(nu=-1.0), "`nu`"),
        (dict(scheme="heun"), "`scheme`"),
        (dict(dtype=jnp.int32), "`dtype`"),
        (dict(n=0), "`n`"),
        (dict(chunk_size=0), "`chunk_size`"),
    ]
    for change, match in bad:
        kwargs = {"n": 2, "resolution": 16, **RECIPE, **change}
        with pytest.raises(ValueError, match=match):
            generate_navier_stokes(key, kwargs.pop("n"), kwargs.pop("resolution"), **kwargs)
    info = navier_stokes_recipe_info()
    assert json.loads(json.dumps(info)) == info
    assert info["initial_vorticity"]["sigma"] == pytest.approx(7**1.5)
    assert info["discretisation"]["steps"] == 500_000 and info["paper_setting"]
    assert info["subsample_stride"] == 4 and info["record_steps"] == 50
    cheap = navier_stokes_recipe_info(64, solve_resolution=64, dt=1e-3)
    assert not cheap["paper_setting"] and cheap["discretisation"]["steps"] == 50_000
    assert math.isclose(cheap["nu"], 1e-3)
