"""PINO residuals and losses (`sciml.operators._pino`): checked against the reference solvers,
analytic solutions (Cole-Hopf Burgers, Taylor-Green vortex, steady forced vorticity) and
manufactured Darcy solutions, in float64."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.operators as so
from sciml._validate import ArgumentError
from sciml.data import burgers_solve, darcy_solve, grf, navier_stokes_solve
from sciml.train import batch_loss, relative_l2


def _darcy_coefficient(key, s):
    g = grf(key, (s, s), alpha=2.0, tau=3.0, boundary="neumann")
    return jnp.where(g >= 0, 12.0, 3.0)


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [17])
def test_darcy_residual_of_solver_output(getkey, s):
    # The solver's CG stops at rtol = 1e-10 relative to max|f|; the residual of its output
    # under the same stencil is at that level (measured: 9e-11 to 2e-10 at s = 17, 33, 65).
    a = _darcy_coefficient(getkey(), s)
    f = 1.0 + 0.5 * jnp.sin(jnp.linspace(0, 3, s))[:, None] * jnp.ones((s,))
    u = darcy_solve(a, f)
    r = so.darcy_residual(u[None], a[None], f)
    assert r.shape == (1, s - 2, s - 2)
    assert float(jnp.max(jnp.abs(r))) < 1e-8 * float(jnp.max(jnp.abs(f)))
    assert float(jnp.max(jnp.abs(so.darcy_boundary(u[None])))) == 0.0
    assert float(so.darcy_loss(u[None], a[None], f=f)) < 1e-16
    # The residual is linear in f: the same u against f + 1 misses by exactly -1.
    r2 = so.darcy_residual(u[None], a[None], f + 1.0)
    np.testing.assert_allclose(r2, r - 1.0, atol=1e-12)


def test_darcy_manufactured_second_order():
    # a = 1 + x (smooth), u = sin(pi x) sin(pi y): f = -div(a grad u) exactly. The 5-point
    # conservative stencil is second order: the residual of the exact u falls by ~4 per
    # halving of h (measured order 2.00).
    errors = []
    for s in (17, 33, 65):
        x = jnp.linspace(0.0, 1.0, s)
        X, Y = jnp.meshgrid(x, x, indexing="ij")
        a = 1.0 + X
        u = jnp.sin(jnp.pi * X) * jnp.sin(jnp.pi * Y)
        f = -jnp.pi * jnp.cos(jnp.pi * X) * jnp.sin(jnp.pi * Y) + 2 * jnp.pi**2 * a * u
        errors.append(float(jnp.max(jnp.abs(so.darcy_residual(u[None], a[None], f)))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.9), orders


def test_darcy_boundary_term():
    s = 9
    u = jnp.zeros((1, s, s)).at[0, 0, :].set(1.0)
    ub = so.darcy_boundary(u)
    assert ub.shape == (1, 4 * (s - 1))
    assert float(jnp.sum(ub)) == s  # the top row, corners included once each
    # Ring order visits every boundary node exactly once.
    index = jnp.arange(s * s, dtype=float).reshape(1, s, s)
    ring = np.asarray(so.darcy_boundary(index))[0]
    assert len(set(ring.tolist())) == 4 * (s - 1)
    a = jnp.ones((1, s, s))
    with_b = so.darcy_loss(u, a, boundary_weight=1.0)
    without = so.darcy_loss(u, a, boundary_weight=0.0)
    assert float(with_b) > float(without)


# --------------------------------------------------------------------------------------------
# Burgers
# --------------------------------------------------------------------------------------------


def _cole_hopf(s, times, nu, amplitude=0.5):
    # phi = 1 + A exp(-4 pi^2 nu t) cos(2 pi x) solves phi_t = nu phi_xx, so
    # u = -2 nu phi_x / phi solves u_t + u u_x = nu u_xx, periodic on [0, 1).
    x = jnp.arange(s) / s
    decay = amplitude * jnp.exp(-4 * jnp.pi**2 * nu * times)[:, None]
    phi = 1 + decay * jnp.cos(2 * jnp.pi * x)
    phi_x = -2 * jnp.pi * decay * jnp.sin(2 * jnp.pi * x)
    return -2 * nu * phi_x / phi


def test_burgers_residual_cole_hopf_second_order():
    # Exact solution: the spectral x-derivatives are exact to rounding at s = 64, so the
    # residual is the time difference error, O(dt^2): measured rms orders 1.87, 1.93 (the max
    # norm, set by the one-sided last frame, reaches order 2 more slowly: 1.69, 1.84).
    nu, s = 0.1, 64
    errors = []
    residual = jax.jit(so.burgers_residual, static_argnames=("nu", "dt", "includes_initial"))
    for nt in (20, 40, 80):
        dt = 0.5 / nt
        u = _cole_hopf(s, dt * jnp.arange(nt + 1), nu)
        r = residual(u[1:], u[:1], nu=nu, dt=dt)
        assert r.shape == (nt, s)
        errors.append(float(jnp.sqrt(jnp.mean(r**2))))
        # includes_initial: the same frames, u[0] given as the initial frame.
        r0 = residual(u, u[:1], nu=nu, dt=dt, includes_initial=True)
        np.testing.assert_allclose(r0, r, atol=1e-13)
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 1.8) & (orders < 2.2)), orders


def test_burgers_residual_of_solver_output():
    # The solver's trajectory (its ETDRK4 error is far below the FD error) is at
    # discretisation level: the rms residual falls as dt shrinks, toward second order
    # (measured rms 0.153, 0.0695, 0.0244 for 20, 40, 80 frames: orders 1.14, 1.51,
    # pre-asymptotic while the steep front forms; identical at s = 64 and 128).
    s, nu = 64, 0.1
    x = jnp.arange(s) / s
    u0 = jnp.sin(2 * jnp.pi * x) + 0.5 * jnp.cos(4 * jnp.pi * x)
    rms, losses = [], []
    for nt in (40, 80):
        dt = 1.0 / nt
        traj = burgers_solve(u0, nu=nu, t_final=1.0, num_steps=10 * nt, ts=dt * (1 + np.arange(nt)))
        r = so.burgers_residual(traj, u0[None], nu=nu, dt=dt)
        rms.append(float(jnp.sqrt(jnp.mean(r**2))))
        losses.append(float(so.burgers_loss(traj, u0[None], nu=nu, dt=dt)))
        # The spatial mean of the residual is the FD derivative of the conserved mean: zero.
        assert float(jnp.max(jnp.abs(jnp.mean(r, axis=1)))) < 1e-12
    assert rms[1] < rms[0] / 2.4, rms
    assert losses[0] < 1e-4, losses
    # A wrong trajectory (the viscosity doubled; measured loss 6.4e-3 against 4.3e-5): the
    # mean stays conserved, so the residual is still zero-mean in x, but large.
    wrong = burgers_solve(u0, nu=2 * nu, t_final=1.0, num_steps=400, ts=(1 + np.arange(40)) / 40)
    r = so.burgers_residual(wrong, u0[None], nu=nu, dt=1 / 40)
    assert float(jnp.max(jnp.abs(jnp.mean(r, axis=1)))) < 1e-12
    assert float(so.burgers_loss(wrong, u0[None], nu=nu, dt=1 / 40)) > 50 * losses[0]


def test_burgers_initial_term():
    nu, s, nt = 0.1, 32, 8
    u = _cole_hopf(s, 0.05 * jnp.arange(nt), nu)
    # Unnormalised, so that the known frame only enters the initial term.
    loss = functools.partial(
        so.burgers_loss, nu=nu, dt=0.05, includes_initial=True, normalise=False
    )
    exact = loss(u, u[:1])
    shifted = loss(u, u[:1] + 0.1)
    unweighted = loss(u, u[:1] + 0.1, initial_weight=0.0)
    assert float(shifted) == pytest.approx(float(exact) + 0.01, rel=1e-12)
    assert float(unweighted) == pytest.approx(float(exact), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Navier-Stokes
# --------------------------------------------------------------------------------------------


def _grid(s):
    x = jnp.arange(s) / s
    return jnp.meshgrid(x, x, indexing="ij")


def test_navier_stokes_taylor_green_second_order():
    # w = 8 pi^2 sin(2 pi x) sin(2 pi y) exp(-8 pi^2 nu t) is exact with f = 0 (psi is
    # proportional to w, so u . grad w = 0): the residual is the O(dt^2) time error
    # (measured relative max 1.5e-3, 4.0e-4, 1.0e-4).
    s, nu = 16, 1e-2
    X, Y = _grid(s)
    w = 8 * jnp.pi**2 * jnp.sin(2 * jnp.pi * X) * jnp.sin(2 * jnp.pi * Y)
    errors = []
    residual = jax.jit(
        functools.partial(so.navier_stokes_residual, nu=nu, forcing=None), static_argnames="dt"
    )
    for nt in (10, 20, 40):
        dt = 1.0 / nt
        frames = w * jnp.exp(-8 * jnp.pi**2 * nu * dt * jnp.arange(nt + 1))[:, None, None]
        r = residual(frames[1:], frames[:1], dt=dt)
        errors.append(float(jnp.max(jnp.abs(r)) / jnp.max(jnp.abs(w))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 2e-4 and np.all(orders > 1.9), (errors, orders)


def test_navier_stokes_steady_forced_state():
    # The recipe's forcing has |k|^2 = 2 only, so w = f / (8 pi^2 nu) is a steady solution
    # (psi = w / (8 pi^2), u . grad w = 0): the residual is rounding.
    s, nu = 16, 1e-3
    X, Y = _grid(s)
    f = 0.1 * (jnp.sin(2 * jnp.pi * (X + Y)) + jnp.cos(2 * jnp.pi * (X + Y)))
    w = f / (8 * jnp.pi**2 * nu)
    frames = jnp.broadcast_to(w, (4, s, s))
    r = so.navier_stokes_residual(frames, w[None], nu=nu, forcing=f, dt=0.5)
    assert float(jnp.max(jnp.abs(r))) < 1e-12 * float(jnp.max(jnp.abs(w)))


def test_navier_stokes_residual_of_solver_output(getkey):
    # The solver (CN-AB2, 2/3 dealiasing) against the undealiased spectral residual with FD in
    # time: normalised loss ~2e-4 at 32^2 with 20 frames; a trajectory with 5% too much
    # amplitude is ~600x worse. The spatial mean of the residual is d/dt mean(w) - mean(f) = 0.
    s, nu, nt = 32, 1e-3, 20
    X, Y = _grid(s)
    f = 0.1 * (jnp.sin(2 * jnp.pi * (X + Y)) + jnp.cos(2 * jnp.pi * (X + Y)))
    w0 = grf(getkey(), (s, s), alpha=2.5, tau=7.0, sigma=7.0**1.5)
    w0 = w0 - jnp.mean(w0)
    frames = navier_stokes_solve(w0, nu=nu, forcing=f, t_final=1.0, dt=1 / nt / 20, record_steps=nt)
    loss = so.navier_stokes_loss(frames, w0[None], nu=nu, forcing=f, dt=1 / nt)
    assert float(loss) < 1e-3
    r = so.navier_stokes_residual(frames, w0[None], nu=nu, forcing=f, dt=1 / nt)
    assert float(jnp.max(jnp.abs(jnp.mean(r, axis=(1, 2))))) < 1e-10
    wrong = so.navier_stokes_loss(1.05 * frames, w0[None], nu=nu, forcing=f, dt=1 / nt)
    assert float(wrong) > 100 * float(loss)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _darcy_batch(getkey, n, s):
    a = jnp.stack([_darcy_coefficient(getkey(), s) for _ in range(n)])
    u = jax.vmap(darcy_solve)(a)
    return a[:, None], u[:, None]


def test_gradient_through_physics_loss(getkey):
    # jax.grad of the PINO loss of an FNO against a central difference along a random
    # direction in parameter space (float64: agreement to ~1e-8 relative).
    s = 9
    x, y = _darcy_batch(getkey, 2, s)
    model = so.FNO(1, 1, modes=(3, 3), width=4, depth=1, key=getkey(), dtype=jnp.float64)
    loss_fn = so.pino_loss(so.darcy_loss, data_weight=0.5, physics_weight=1.0)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss_of = jax.jit(lambda p: loss_fn(eqx.combine(p, static), x, y))
    grads = jax.jit(jax.grad(loss_of))(params)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(g**2)) for g in leaves) > 0
    direction = jax.tree.map(
        lambda p: jax.random.normal(jax.random.key(3), p.shape, p.dtype), params
    )
    eps = 1e-6

    def at(t):
        return float(loss_of(jax.tree.map(lambda p, d: p + t * d, params, direction)))

    fd = (at(eps) - at(-eps)) / (2 * eps)
    exact = sum(
        float(jnp.sum(g * d)) for g, d in zip(leaves, jax.tree.leaves(direction), strict=True)
    )
    assert fd == pytest.approx(exact, rel=1e-6)


def test_pino_loss_weights(getkey):
    x, y = _darcy_batch(getkey, 3, 9)

    def model(a):  # any callable on one sample will do
        return 0.01 * a * (2 - a / 12)

    data_only = so.pino_loss(so.darcy_loss, physics_weight=0.0)(model, x, y)
    assert float(data_only) == pytest.approx(float(batch_loss(relative_l2)(model, x, y)))
    physics_only = so.pino_loss(so.darcy_loss, data_weight=0.0)
    # Targets are not read without a data term: any array with the batch axis will do.
    value = physics_only(model, x, jnp.zeros((3,)))
    expected = jnp.mean(jax.vmap(so.darcy_loss)(jax.vmap(model)(x), x))
    assert float(value) == pytest.approx(float(expected))
    both = so.pino_loss(so.darcy_loss, data_weight=2.0, physics_weight=3.0)(model, x, y)
    assert float(both) == pytest.approx(2 * float(data_only) + 3 * float(value))
    # Equal pieces give equal losses, so `train_step` compiles once for them.
    assert so.pino_loss(so.darcy_loss) == so.pino_loss(so.darcy_loss)


def test_fine_tune_lowers_physics_loss(getkey):
    x, _ = _darcy_batch(getkey, 1, 9)
    model = so.FNO(1, 1, modes=(3, 3), width=8, depth=2, key=getkey(), dtype=jnp.float64)
    physics = functools.partial(so.darcy_loss, boundary_weight=1.0)
    tuned, history = so.fine_tune(model, x[0], physics, steps=40, learning_rate=3e-3)
    assert history.shape == (41,)
    assert float(history[-1]) < 0.2 * float(history[0]), history
    # `history[-1]` is the loss of the returned model.
    assert float(history[-1]) == pytest.approx(float(physics(tuned(x[0]), x[0])), rel=1e-10)


def test_jit_and_vmap(getkey):
    x, y = _darcy_batch(getkey, 2, 9)
    losses = jax.jit(jax.vmap(so.darcy_loss))(y, x)
    assert losses.shape == (2,) and float(jnp.max(losses)) < 1e-16
    u = _cole_hopf(16, 0.1 * jnp.arange(5), 0.1)
    batch = jnp.stack([u, 2 * u])
    values = jax.vmap(functools.partial(so.burgers_loss, nu=0.1, dt=0.1))(
        batch[:, 1:], batch[:, :1]
    )
    assert values.shape == (2,) and bool(jnp.all(jnp.isfinite(values)))


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.untyped
def test_error_messages():
    u = jnp.zeros((1, 9, 9))
    with pytest.raises(ArgumentError, match="`a` must have the shape of `u`"):
        so.darcy_residual(u, jnp.ones((1, 8, 8)))
    with pytest.raises(ArgumentError, match=r"`u` must have shape \(1, s, s\)"):
        so.darcy_residual(jnp.zeros((2, 9, 9)), jnp.ones((2, 9, 9)))
    with pytest.raises(ArgumentError, match="`nu` must be a finite number > 0, got -1"):
        so.burgers_residual(jnp.zeros((4, 8)), jnp.zeros((1, 8)), nu=-1.0, dt=0.1)
    with pytest.raises(ArgumentError, match="`u0` must have shape"):
        so.burgers_residual(jnp.zeros((4, 8)), jnp.zeros((1, 6)), nu=0.1, dt=0.1)
    with pytest.raises(ArgumentError, match="at least 3 frames"):
        so.burgers_residual(jnp.zeros((1, 8)), jnp.zeros((1, 8)), nu=0.1, dt=0.1)
    with pytest.raises(ArgumentError, match="`forcing` must be None, a scalar"):
        so.navier_stokes_residual(
            jnp.zeros((3, 8, 8)), jnp.zeros((1, 8, 8)), nu=0.1, forcing=jnp.ones(3), dt=0.1
        )
    with pytest.raises(ArgumentError, match="must not both be 0"):
        so.pino_loss(so.darcy_loss, data_weight=0.0, physics_weight=0.0)
    with pytest.raises(ArgumentError, match="`steps` must be an int >= 1, got 0"):
        so.fine_tune(lambda x: x, u, so.darcy_loss, steps=0)


def test_wavenumber_conventions_match_solver():
    # The spectral first derivative drops the Nyquist mode and the Laplacian keeps it, as in
    # `navier_stokes_solve`: cos(pi s x) (the Nyquist mode) has zero advection but full
    # diffusion: the residual -nu Lap w of this steady field is nu (pi s)^2 w.
    s, nu = 8, 0.5
    X, _ = _grid(s)
    w = jnp.cos(math.pi * s * X)
    frames = jnp.broadcast_to(w, (3, s, s))
    r = so.navier_stokes_residual(frames, w[None], nu=nu, forcing=None, dt=1.0)
    np.testing.assert_allclose(r, jnp.broadcast_to(nu * (math.pi * s) ** 2 * w, r.shape), atol=1e-9)


# --------------------------------------------------------------------------------------------
# Configs: [physics]
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_config_trains_with_the_darcy_physics_loss(tmp_path):
    """`[physics] pde = "darcy"` trains a quickstart-sized FNO on data + physics, and on the
    physics alone (`data_weight = 0`); misplaced or contradictory keys are one-line errors."""
    import json
    from pathlib import Path

    from sciml._app.config import ConfigError, load_config
    from sciml._app.experiment import run_experiment

    config_path = Path(__file__).parent.parent / "experiments" / "quickstart.toml"
    tiny = [
        "data.resolution=17",
        "data.solve_resolution=33",
        "data.n_train=8",
        "data.n_test=4",
        "model.modes=[4, 4]",
        "model.width=8",
        "model.padding=2",
        "model.projection_channels=16",
        "train.batch_size=8",
        "train.epochs=3",
        "train.progress=false",
        "eval.plot_samples=0",
        f"data.cache_dir={tmp_path / 'data'}",
    ]
    both = load_config(config_path, [*tiny, "physics.pde=darcy"])
    results = run_experiment(both, tmp_path / "both")
    assert 0 < results["test_relative_l2"] < 2
    physics_only = load_config(config_path, [*tiny, "physics.pde=darcy", "physics.data_weight=0"])
    run_experiment(physics_only, tmp_path / "physics")
    records = [json.loads(line) for line in (tmp_path / "physics" / "metrics.jsonl").open()]
    assert all(np.isfinite(r["train_loss"]) for r in records)

    for sets, key in [
        (["physics.weight=2"], "physics.weight"),
        (["physics.pde=darcy", "physics.weight=0", "physics.data_weight=0"], "physics.weight"),
        (["physics.pde=darcy", "model.ensemble=2"], "physics.pde"),
        (["physics.pde=heat"], "physics.pde"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(config_path, [*tiny, *sets])
