"""sciml.pinn: domains and samplers, conditions, hard constraints, weighting, resampling and
`solve` against manufactured solutions."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

import sciml.pinn as pinn
from sciml.derivatives import laplacian
from sciml.fields import MLP, PIG

# --------------------------------------------------------------------------- samplers


def _unit(box: pinn.Box, x) -> np.ndarray:
    lower, upper = map(np.asarray, box.bounds)
    return (np.asarray(x) - lower) / (upper - lower)


@pytest.mark.parametrize("dim", [2, 3])
def test_box_interior_discrepancy(dim):
    # L2-star discrepancy of n i.i.d. uniform points: E[D^2] = (2^-d - 3^-d) / n (Warnock).
    # Uniform points must sit near that value; Latin hypercubes below it; scrambled Sobol at
    # least 4x below it (its discrepancy decays like log(n)^d / n); all points in the box.
    box = pinn.Box([-1.0, 0.0, 2.0][:dim], [1.0, 3.0, 2.5][:dim])
    n = 256
    expected = math.sqrt((2.0**-dim - 3.0**-dim) / n)
    mean = {}
    for method in ("uniform", "sobol", "lhs"):
        values = []
        for seed in range(6):
            x = box.sample_interior(jax.random.key(seed), n, method)
            assert x.shape == (n, dim)
            u = _unit(box, x)
            assert np.all((u >= 0) & (u <= 1))
            values.append(qmc.discrepancy(u, method="L2-star"))
        mean[method] = np.mean(values)
    assert 0.5 * expected < mean["uniform"] < 1.5 * expected
    assert mean["lhs"] < expected
    assert mean["sobol"] < expected / 4


def test_lhs_strata_and_grid():
    box = pinn.Box([0.0, -2.0], [1.0, 2.0])
    u = _unit(box, box.sample_interior(jax.random.key(3), 50, "lhs"))
    for axis in range(2):  # exactly one point per stratum on every axis
        assert sorted(np.floor(u[:, axis] * 50).astype(int)) == list(range(50))
    g = box.sample_interior(jax.random.key(0), 16, "grid")
    np.testing.assert_allclose(np.unique(_unit(box, g)[:, 0]), (np.arange(4) + 0.5) / 4)
    with pytest.raises(ValueError, match=r"`n` = 15 must be a perfect power m\^2"):
        box.sample_interior(jax.random.key(0), 15, "grid")
    with pytest.raises(ValueError, match="`method` must be one of"):
        box.sample_interior(jax.random.key(0), 16, "halton")


@pytest.mark.parametrize("method", ["uniform", "sobol", "lhs"])
def test_box_boundary_faces_by_area(method):
    # Faces of [0,1] x [0,3]: lengths 3, 3, 1, 1 -> shares 3/8, 3/8, 1/8, 1/8. Each point lies
    # exactly on a face and is uniform along it (Kolmogorov-Smirnov, p > 1e-3).
    box = pinn.Box([0.0, 0.0], [1.0, 3.0])
    n = 4096
    x = np.asarray(box.sample_boundary(jax.random.key(1), n, method))
    on = {
        (0, 0): x[:, 0] == 0.0,
        (0, 1): x[:, 0] == 1.0,
        (1, 0): x[:, 1] == 0.0,
        (1, 1): x[:, 1] == 3.0,
    }
    assert np.all(np.any(np.stack(list(on.values())), axis=0))
    shares = {f: m.mean() for f, m in on.items()}
    for face, share in zip(on, [3 / 8, 3 / 8, 1 / 8, 1 / 8], strict=True):
        assert abs(shares[face] - share) < 4 * math.sqrt(share * (1 - share) / n) + 1e-3
    assert stats.kstest(x[on[(0, 0)], 1] / 3.0, "uniform").pvalue > 1e-3
    assert stats.kstest(x[on[(1, 1)], 0], "uniform").pvalue > 1e-3
    # Outward normals.
    np.testing.assert_array_equal(box.normal(jnp.array([0.0, 1.0])), [-1.0, 0.0])
    np.testing.assert_array_equal(box.normal(jnp.array([0.5, 3.0])), [0.0, 1.0])


@pytest.mark.parametrize("method", ["uniform", "sobol", "lhs"])
@pytest.mark.parametrize("dim", [2, 5])
def test_ball_samplers(method, dim):
    # Uniform in volume: |x - c| / R has CDF r^d; on the sphere, directions have mean zero.
    ball = pinn.Ball([0.5] * dim, 2.0)
    x = np.asarray(ball.sample_interior(jax.random.key(2), 2048, method)) - 0.5
    r = np.linalg.norm(x, axis=1) / 2.0
    assert r.max() <= 1.0
    assert stats.kstest(r**dim, "uniform").pvalue > 1e-3
    y = np.asarray(ball.sample_boundary(jax.random.key(4), 2048, method)) - 0.5
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 2.0, rtol=1e-6)
    assert np.all(np.abs(y.mean(axis=0)) < 4 * 2.0 / math.sqrt(2048))


def test_space_time_samplers():
    st = pinn.SpaceTime(pinn.Box([-1.0], [1.0]), 0.0, 2.0)
    x = np.asarray(st.sample_interior(jax.random.key(0), 512, "sobol"))
    assert x.shape == (512, 2) and x[:, 1].min() >= 0 and x[:, 1].max() <= 2
    b = np.asarray(st.sample_boundary(jax.random.key(0), 256))
    assert np.all(np.abs(b[:, 0]) == 1.0)  # lateral boundary only, never t = 0 or 2
    i = np.asarray(st.sample_initial(jax.random.key(0), 64, "lhs"))
    assert np.all(i[:, 1] == 0.0) and np.all(np.abs(i[:, 0]) <= 1)
    ball_t = pinn.SpaceTime(pinn.Ball(dim=3), 0.0, 1.0)
    y = np.asarray(ball_t.sample_boundary(jax.random.key(1), 100, "sobol"))
    np.testing.assert_allclose(np.linalg.norm(y[:, :3], axis=1), 1.0, rtol=1e-6)


def test_domain_errors():
    with pytest.raises(ValueError, match="lower < upper"):
        pinn.Box([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="`upper` must be a sequence of finite numbers, 2"):
        pinn.Box([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="`radius` must be a positive number"):
        pinn.Ball([0.0], -1.0)
    with pytest.raises(ValueError, match="`method` must be one of 'uniform', 'sobol', 'lhs'"):
        pinn.Ball(dim=2).sample_interior(jax.random.key(0), 9, "grid")
    with pytest.raises(ValueError, match="t0 < t1"):
        pinn.SpaceTime(pinn.Box([0.0], [1.0]), 1.0, 0.0)
    with pytest.raises(ValueError, match="`n` must be a positive integer"):
        pinn.Box([0.0], [1.0]).sample_boundary(jax.random.key(0), 0)


# --------------------------------------------------------------------------- conditions


def test_condition_residuals_vanish_on_exact_data():
    box = pinn.Box([0.0, 0.0], [1.0, 2.0])
    key = jax.random.key(0)
    u = lambda x: x[0] ** 2 + 3 * x[1] ** 2
    # Dirichlet with the trace of u, Neumann with the normal derivative of u.
    flux = lambda x: jnp.dot(jnp.array([2 * x[0], 6 * x[1]]), box.normal(x))
    for cond in (pinn.Dirichlet(u), pinn.Neumann(flux)):
        x = cond.sample(box, key, 64, "uniform")
        r = jax.vmap(lambda p, c=cond: c.residual(u, p, box))(x)
        np.testing.assert_allclose(r, 0.0, atol=1e-12)
    # Periodic in x (period 1) to first order; not periodic in y.
    v = lambda x: jnp.sin(2 * jnp.pi * x[0]) * x[1] ** 2
    per = pinn.Periodic(axis=0, derivatives=(0, 1, 2))
    x = per.sample(box, key, 32, "uniform")
    np.testing.assert_allclose(jax.vmap(lambda p: per.residual(v, p, box))(x), 0.0, atol=1e-12)
    per_y = pinn.Periodic(axis=1)
    x = per_y.sample(box, key, 8, "uniform")
    assert np.all(np.abs(jax.vmap(lambda p: per_y.residual(v, p, box))(x)[:, 0]) > 0)
    # Initial value and velocity of w = cos(x) cos(t) + t sin(x).
    st = pinn.SpaceTime(pinn.Box([0.0], [1.0]), 0.0, 1.0)
    w = lambda p: jnp.cos(p[0]) * jnp.cos(p[1]) + p[1] * jnp.sin(p[0])
    init = pinn.Initial(lambda p: jnp.cos(p[0]), velocity=lambda p: jnp.sin(p[0]))
    x = init.sample(st, key, 16, "sobol")
    np.testing.assert_allclose(jax.vmap(lambda p: init.residual(w, p, st))(x), 0.0, atol=1e-12)


def test_hard_constraint_is_exact_on_the_boundary(getkey):
    box = pinn.Box([-1.0, 0.0], [2.0, 1.0])
    g = lambda x: jnp.sin(x[0]) + x[1] ** 3
    model = pinn.HardConstraint(MLP(2, "scalar", width=16, depth=2, key=getkey()), box, g)
    x = box.sample_boundary(getkey(), 500, "sobol")
    # Exactly: the box distance is a product containing an exact zero factor.
    np.testing.assert_array_equal(jax.vmap(model)(x), jax.vmap(g)(x))
    inside = box.sample_interior(getkey(), 100)
    assert np.all(np.abs(jax.vmap(model)(inside) - jax.vmap(g)(inside)) > 0)


# --------------------------------------------------------------------------- weighting, RAD


def test_causal_loss():
    times = jnp.array([0.05, 0.15, 0.25, 0.35])
    sq = jnp.array([1.0, 2.0, 3.0, 4.0])
    plain, w0 = pinn.causal_loss(sq, times, 0.0, 0.4, 4, 0.0)
    np.testing.assert_allclose(plain, 2.5)  # tolerance 0: the plain mean
    np.testing.assert_allclose(w0, 1.0)
    loss, w = pinn.causal_loss(sq, times, 0.0, 0.4, 4, 0.5)
    np.testing.assert_allclose(w, np.exp(-0.5 * np.array([0.0, 1.0, 3.0, 6.0])), rtol=1e-12)
    np.testing.assert_allclose(loss, np.mean(np.asarray(w) * np.asarray(sq)), rtol=1e-12)
    # No gradient through the weights: d loss / d sq_i = w_i / 4.
    grad = jax.grad(lambda s: pinn.causal_loss(s, times, 0.0, 0.4, 4, 0.5)[0])(sq)
    np.testing.assert_allclose(grad, np.asarray(w) / 4, rtol=1e-12)


def test_grad_norm_weights():
    # L_a = |p|^2 has gradient norm 2|p|, L_b = 10 p_0 has gradient norm 10.
    p = jnp.array([3.0, 4.0])
    losses = lambda q: {"a": jnp.sum(q**2), "b": 10 * q[0]}
    w = pinn.grad_norm_weights(losses, p, {"a": 1.0, "b": 1.0}, momentum=0.0)
    np.testing.assert_allclose(w["a"], 20 / 10)
    np.testing.assert_allclose(w["b"], 20 / 10)
    w = pinn.grad_norm_weights(losses, p, {"a": 1.0, "b": 1.0}, momentum=0.5)
    np.testing.assert_allclose(w["a"], 0.5 + 0.5 * 2.0)


def test_rad_resample_concentrates_on_residuals():
    # Residual 10 on the right half, 0.1 on the left: with k=1, c=0 the right half holds
    # 10/(10.1) of the probability mass.
    pool = jnp.linspace(0.0, 1.0, 4000)[:, None]
    residual = lambda x: jnp.where(x[:, 0] > 0.5, 10.0, 0.1)
    x = pinn.rad_resample(jax.random.key(0), residual, pool, 400, k=1.0, c=0.0)
    assert len(np.unique(np.asarray(x))) == 400  # without replacement
    assert np.mean(np.asarray(x) > 0.5) > 0.9
    u = pinn.rad_resample(jax.random.key(0), residual, pool, 400, k=0.0, c=1.0)
    assert abs(np.mean(np.asarray(u) > 0.5) - 0.5) < 0.1
    with pytest.raises(ValueError, match="`n` must be in 1..4000"):
        pinn.rad_resample(jax.random.key(0), residual, pool, 5000)


# --------------------------------------------------------------------------- solve


def _poisson(hard: bool) -> pinn.Problem:
    # -Lap u = 2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2, u = 0 on the boundary.
    exact = lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])
    return pinn.Problem(
        residual=lambda u, x: -laplacian(u, x) - 2 * jnp.pi**2 * exact(x),
        domain=pinn.Box([-1.0, -1.0], [1.0, 1.0]),
        conditions={} if hard else {"boundary": pinn.Dirichlet(0.0)},
        exact=exact,
    )


def test_pinn_solves_poisson():
    # MLP with the hard-constraint ansatz, float64, 300 Adam steps and 300 L-BFGS iterations
    # on 256 Sobol points: measured relative L2 2.9e-4 (goal 1e-3).
    problem = _poisson(hard=True)
    net = MLP(2, "scalar", width=20, depth=3, key=jax.random.key(0), dtype=jnp.float64)
    model, history = pinn.solve(
        problem,
        pinn.HardConstraint(net, problem.domain),
        key=jax.random.key(1),
        steps=300,
        lbfgs_steps=300,
        learning_rate=1e-2,
        num_points={"residual": 256},
        method="sobol",
        eval_every=300,
        progress=False,
    )
    assert history[-1]["phase"] == "lbfgs"
    # The L-BFGS phase lowers the loss and the error below the end of Adam.
    assert history[-1]["loss_residual"] < 0.1 * history[0]["loss_residual"]
    assert history[-1]["eval_relative_l2"] < history[0]["eval_relative_l2"]
    assert pinn.relative_error(model, problem) <= 1e-3


def test_pig_solves_poisson():
    # 64 Gaussians (diagonal covariances) and the hard-constraint ansatz, float64, 500 Adam
    # steps and 300 L-BFGS iterations on 1024 Sobol points: measured relative L2 7.4e-5.
    problem = _poisson(hard=True)
    pig = PIG(
        2,
        "scalar",
        num_gaussians=64,
        key=jax.random.key(0),
        lower=(-1, -1),
        upper=(1, 1),
        dtype=jnp.float64,
    )
    model, _ = pinn.solve(
        problem,
        pinn.HardConstraint(pig, problem.domain),
        key=jax.random.key(1),
        steps=500,
        lbfgs_steps=300,
        learning_rate=1e-2,
        num_points={"residual": 1024},
        method="sobol",
        eval_every=400,
        progress=False,
    )
    assert pinn.relative_error(model, problem) <= 1e-3


def test_solve_resume_is_exact_and_writes_plots(tmp_path):
    problem = _poisson(hard=False)
    net = eqx.nn.MLP(2, "scalar", 8, 2, jnp.tanh, key=jax.random.key(0), dtype=jnp.float64)
    kwargs = dict(
        key=jax.random.key(3),
        num_points={"residual": 64, "boundary": 32},
        eval_every=10,
        resample_every=20,
        adaptive={"pool": 4},
        balancing="grad_norm",
        balance_every=10,
        lbfgs_steps=10,
        progress=False,
    )
    full, full_history = pinn.solve(problem, net, steps=40, **kwargs)
    run = tmp_path / "run"
    pinn.solve(problem, net, steps=20, run_dir=run, **{**kwargs, "lbfgs_steps": 0})
    resumed, history = pinn.solve(problem, net, steps=40, run_dir=run, resume=True, **kwargs)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in history] == [r["step"] for r in full_history]
    assert history[2]["weight_boundary"] != 1.0  # gradient-norm balancing acted
    assert (run / "plots" / "loss.png").is_file() and (run / "plots" / "solution.png").is_file()
    with pytest.raises(ValueError, match="already holds a run"):
        pinn.solve(problem, net, steps=40, run_dir=run, **kwargs)


def test_solve_errors():
    problem = _poisson(hard=False)
    net = eqx.nn.MLP(2, "scalar", 4, 1, jnp.tanh, key=jax.random.key(0))
    base = dict(key=jax.random.key(0), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"`num_points` must have exactly the keys"):
        pinn.solve(problem, net, num_points={"residual": 8}, **base)
    pts = {"residual": 8, "boundary": 4}
    with pytest.raises(ValueError, match="`weights` has unknown terms"):
        pinn.solve(problem, net, num_points=pts, weights={"bc": 1.0}, **base)
    with pytest.raises(ValueError, match="`balancing` must be one of"):
        pinn.solve(problem, net, num_points=pts, balancing="ntk", **base)
    with pytest.raises(ValueError, match="`adaptive` resampling needs `resample_every`"):
        pinn.solve(problem, net, num_points=pts, adaptive={}, **base)
    with pytest.raises(ValueError, match=r"`conditions\['residual'\]` must be a condition"):
        pinn.Problem(lambda u, x: u(x), problem.domain, {"residual": pinn.Dirichlet()})


# --------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("name", ["poisson_2d", "helmholtz_2d", "klein_gordon", "flow_mixing"])
def test_benchmark_exact_solutions_satisfy_their_problems(name):
    # Residual and every condition vanish on the exact solution (float64 rounding: the
    # residuals are differences of terms of size up to ~(4 pi)^2 ~ 160).
    problem = pinn.benchmarks.BENCHMARKS[name]()
    sizes = {term: 64 for term in problem.terms}
    points = problem.sample(jax.random.key(0), sizes, "sobol")
    losses = problem.losses(problem.exact, points)
    for term, value in losses.items():
        assert float(value) < 1e-20, (term, float(value))
    # A wrong solution does not.
    wrong = lambda x: problem.exact(x) + 0.01 * x[0] ** 2
    assert float(problem.losses(wrong, points)["residual"]) > 1e-8


def test_benchmarks_with_references_start_from_their_initial_condition():
    # The references' t = 0 slice equals the problem's initial condition; the Allen-Cahn one
    # is periodic. Small grids keep the test fast.
    ac = pinn.benchmarks.allen_cahn(resolution=64, num_times=5)
    pts, values = ac.evaluation_set()
    at0 = pts[:, 1] == 0.0
    init = ac.conditions["initial"]
    residual = jax.vmap(lambda p: init.residual(lambda q: 0.0 * q[0], p, ac.domain))(pts[at0])
    np.testing.assert_allclose(values[at0], -residual[:, 0], atol=1e-12)
    nd = pinn.benchmarks.nonlinear_diffusion(resolution=16, num_times=3)
    pts, values = nd.evaluation_set()
    at0 = pts[:, 2] == 0.0
    expected = jax.vmap(pinn.benchmarks.nonlinear_diffusion_initial)(pts[at0])
    np.testing.assert_allclose(values[at0], expected, atol=1e-12)


def test_solve_with_given_points():
    # Points passed in are the points trained on: identical to the ones solve would sample.
    problem = _poisson(hard=False)
    net = eqx.nn.MLP(2, "scalar", 8, 1, jnp.tanh, key=jax.random.key(0), dtype=jnp.float64)
    sizes = {"residual": 32, "boundary": 16}
    kwargs = dict(key=jax.random.key(5), steps=20, eval_every=20, progress=False)
    sampled, _ = pinn.solve(problem, net, num_points=sizes, **kwargs)
    points = problem.sample(jax.random.fold_in(jax.random.key(5), 0), sizes)
    given, _ = pinn.solve(problem, net, points=points, **kwargs)
    for a, b in zip(jax.tree.leaves(sampled), jax.tree.leaves(given), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"`points\['boundary'\]` must have shape \(n, 2\)"):
        pinn.solve(problem, net, points={**points, "boundary": points["boundary"][:, :1]}, **kwargs)
    with pytest.raises(ValueError, match="`solve` needs `num_points` or `points`"):
        pinn.solve(problem, net, **kwargs)
