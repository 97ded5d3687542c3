"""Inverse problems with sciml.pinn: `Observations`, `Parameterized` unknowns, `Robin` and
`BoundaryOperator` conditions, and the first-order helpers of `sciml.derivatives`."""

import json
import math

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

import sciml.pinn as pinn
from sciml.derivatives import divergence, gradient, jacobian, laplacian, partial
from sciml.fields import MLP

# --------------------------------------------------------------------------- derivatives


def _vector_field(x):
    return jnp.stack([x[0] ** 2 * x[1], jnp.sin(x[1]) + x[2], jnp.exp(x[0]) * x[2]])


def _vector_jacobian(x):
    return jnp.array(
        [
            [2 * x[0] * x[1], x[0] ** 2, 0.0],
            [0.0, jnp.cos(x[1]), 1.0],
            [jnp.exp(x[0]) * x[2], 0.0, jnp.exp(x[0])],
        ]
    )


def test_first_order_helpers_match_analytic_fields(getkey):
    # Forward-mode derivatives are exact up to rounding: float64, tolerance 1e-12.
    xs = jax.random.normal(getkey(), (16, 3), jnp.float64)
    scalar = lambda x: jnp.sin(x[0]) * x[1] + x[2] ** 3
    grad_exact = lambda x: jnp.array([jnp.cos(x[0]) * x[1], jnp.sin(x[0]), 3 * x[2] ** 2])
    np.testing.assert_allclose(
        jax.vmap(lambda x: gradient(scalar, x))(xs), jax.vmap(grad_exact)(xs), atol=1e-12
    )
    for axis in range(3):
        np.testing.assert_allclose(
            jax.jit(jax.vmap(lambda x, a=axis: partial(scalar, x, a)))(xs),
            jax.vmap(grad_exact)(xs)[:, axis],
            atol=1e-12,
        )
        # a vector field: the column of the Jacobian
        np.testing.assert_allclose(
            jax.vmap(lambda x, a=axis: partial(_vector_field, x, a))(xs),
            jax.vmap(_vector_jacobian)(xs)[:, :, axis],
            atol=1e-12,
        )
    np.testing.assert_allclose(partial(scalar, xs[0], -1), grad_exact(xs[0])[2], atol=1e-12)
    jac = jax.jit(jax.vmap(lambda x: jacobian(_vector_field, x)))(xs)
    np.testing.assert_allclose(jac, jax.vmap(_vector_jacobian)(xs), atol=1e-12)
    div = jax.vmap(lambda x: divergence(_vector_field, x))(xs)
    np.testing.assert_allclose(div, jnp.trace(jac, axis1=1, axis2=2), atol=1e-12)
    # `u * u_x` of Burgers reads like the math and differentiates through parameters.
    burgers = lambda a, x: (
        (lambda y: a * jnp.sin(y[0]))(x) * partial(lambda y: a * jnp.sin(y[0]), x, 0)
    )
    g = jax.grad(burgers)(2.0, jnp.array([0.3, 0.0]))
    np.testing.assert_allclose(g, 2 * 2.0 * math.sin(0.3) * math.cos(0.3), rtol=1e-12)


def test_first_order_helper_errors():
    with pytest.raises(ValueError, match="axis"):
        partial(lambda x: x[0], jnp.zeros(2), 2)
    with pytest.raises(ValueError, match="jacobian"):
        gradient(lambda x: x, jnp.zeros(2))


# --------------------------------------------------------------------------- Observations


def test_observations_loss_by_hand(tmp_path):
    pts = jnp.array([[0.0, 0.0], [0.5, 1.0], [1.0, -1.0]])
    vals = jnp.array([1.0, 2.0, -1.0])
    obs = pinn.Observations(pts, vals, weight=0.5)
    u = lambda x: x[0] + x[1] + 1.0  # model values 1, 2.5, 1: misfits 0, 0.5, 2
    problem = pinn.Problem(
        lambda u, x: 0.0 * u(x), pinn.Box((-2.0, -2.0), (2.0, 2.0)), {"data": obs}
    )
    points = problem.sample(jax.random.key(0), {"residual": 4}, "uniform")
    np.testing.assert_array_equal(points["data"], pts)
    loss = problem.losses(u, points)["data"]
    np.testing.assert_allclose(loss, 0.5 * (0.0 + 0.25 + 4.0) / 3, rtol=1e-14)
    # vector-valued fields: squared norm over components, mean over points
    vec = pinn.Observations(pts, jnp.stack([vals, 2 * vals], axis=1))
    v = lambda x: jnp.stack([u(x), 2 * u(x) + 1.0])
    r = vec.residuals(v, pts, problem.domain)
    expected = np.mean([(0**2 + 1**2), (0.5**2 + 2**2), (2**2 + 5**2)])
    np.testing.assert_allclose(jnp.mean(jnp.sum(r**2, axis=1)), expected, rtol=1e-14)
    # from a file
    path = tmp_path / "obs.npz"
    np.savez(path, x=np.asarray(pts), u=np.asarray(vals))
    read = pinn.Observations.from_file(path, weight=0.5)
    np.testing.assert_array_equal(read.values, vals)
    assert read.weight == 0.5
    # MATLAB v5 (a column of values), MATLAB v7.3 (axes stored reversed) and HDF5 (a group)
    scipy.io.savemat(tmp_path / "obs.mat", {"x": np.asarray(pts), "u": np.asarray(vals)[:, None]})
    with h5py.File(tmp_path / "obs73.mat", "w") as f:
        f["x"] = np.asarray(pts).T
        f["x"].attrs["MATLAB_class"] = np.bytes_("double")
        f["u"] = np.asarray(vals)[None, :]
        f["u"].attrs["MATLAB_class"] = np.bytes_("double")
    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["m/points"], f["m/values"] = np.asarray(pts), np.asarray(vals)
    for name, keys in (
        ("obs.mat", {}),
        ("obs73.mat", {}),
        ("obs.h5", {"points": "m/points", "values": "m/values"}),
    ):
        read = pinn.Observations.from_file(tmp_path / name, **keys)
        np.testing.assert_array_equal(read.points, pts)
        np.testing.assert_array_equal(read.values, vals)


def test_observations_errors(tmp_path):
    pts = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"`values` must have shape \(3,\)"):
        pinn.Observations(pts, jnp.zeros(4))
    with pytest.raises(ValueError, match="weight"):
        pinn.Observations(pts, jnp.zeros(3), weight=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        pinn.Observations(pts, jnp.array([0.0, jnp.nan, 0.0]))
    np.savez(tmp_path / "o.npz", pts=np.zeros((3, 2)), u=np.zeros(3))
    with pytest.raises(ValueError, match=r"o.npz: no array 'x'; the file holds 'pts', 'u'"):
        pinn.Observations.from_file(tmp_path / "o.npz")
    (tmp_path / "o.csv").write_text("0,0,0\n")
    with pytest.raises(ValueError, match="unknown extension '.csv'"):
        pinn.Observations.from_file(tmp_path / "o.csv")
    with pytest.raises(ValueError, match="missing.npz does not exist"):
        pinn.Observations.from_file(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz: unreadable or corrupted"):
        pinn.Observations.from_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", x=np.zeros((3, 2)), u=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="nan.npz: 'u' holds non-finite"):
        pinn.Observations.from_file(tmp_path / "nan.npz")
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), u=np.zeros(4))
    with pytest.raises(ValueError, match=r"\(read from `.*short.npz`\)"):
        pinn.Observations.from_file(tmp_path / "short.npz")
    problem = pinn.Problem(
        lambda u, x: u(x),
        pinn.Box((0.0, 0.0), (1.0, 1.0)),
        {"data": pinn.Observations(pts, jnp.zeros(3))},
    )
    with pytest.raises(ValueError, match="3 fixed observation points"):
        problem.sample(jax.random.key(0), {"residual": 4, "data": 5})
    with pytest.raises(ValueError, match="no sampling method"):
        problem.sample(jax.random.key(0), {"residual": 4}, {"residual": "sobol", "data": "sobol"})
    net = eqx.nn.MLP(2, "scalar", 4, 1, jnp.tanh, key=jax.random.key(0))
    with pytest.raises(ValueError, match="differ from the term's observation points"):
        pinn.solve(
            problem,
            net,
            key=jax.random.key(0),
            steps=1,
            points={"residual": jnp.zeros((4, 2)), "data": jnp.ones((3, 2))},
            progress=False,
        )


def test_observations_keep_their_points_under_resampling_rad_and_causal_weighting():
    st = pinn.SpaceTime(pinn.Box((0.0,), (1.0,)), 0.0, 1.0)
    pts = jax.random.uniform(jax.random.key(5), (7, 2), jnp.float64)
    obs = pinn.Observations(pts, jnp.sin(pts[:, 0]))
    problem = pinn.Problem(
        lambda u, x: partial(u, x, -1) - laplacian(u, x),
        st,
        {"data": obs, "initial": pinn.Initial(0.0)},
        causal_chunks=4,
    )
    net = eqx.nn.MLP(2, "scalar", 6, 1, jnp.tanh, key=jax.random.key(0), dtype=jnp.float64)
    seen = []
    _, history = pinn.solve(
        problem,
        net,
        key=jax.random.key(1),
        steps=30,
        num_points={"residual": 16, "initial": 8},  # the data term's count is its own
        resample_every=10,
        adaptive={"pool": 2},
        eval_every=10,
        progress=False,
        callback=lambda m, r: seen.append(r),
    )
    assert [r["step"] for r in history] == [10, 20, 30]
    assert all(np.isfinite(r["loss_data"]) for r in history)
    # every resampling hands back the same measurement points
    for step in (10, 20):
        again = problem.sample(jax.random.key(step), {"residual": 16, "initial": 8})
        np.testing.assert_array_equal(again["data"], pts)


# --------------------------------------------------------------------------- Parameterized


def test_parameterized_positivity_and_gradients():
    field = lambda x: jnp.sin(x[0])
    model = pinn.Parameterized(field, {"k": 2.0, "c": jnp.array([-1.0, 3.0])}, positive=("k",))
    np.testing.assert_allclose(model.parameters["k"], 2.0, rtol=1e-15)
    np.testing.assert_allclose(model.unconstrained["k"], math.log(2.0), rtol=1e-15)
    np.testing.assert_array_equal(model.parameters["c"], [-1.0, 3.0])
    assert model(jnp.array([0.5])) == jnp.sin(0.5)
    # any value of the stored leaf gives a positive parameter
    pushed = eqx.tree_at(lambda m: m.unconstrained["k"], model, jnp.asarray(-50.0))
    assert pushed.parameters["k"] > 0
    # d/d(log k) of k * c0 = k * c0; d/dc of k * c0 = (k, 0)
    loss = lambda m: m.parameters["k"] * m.parameters["c"][0]
    g = eqx.filter_grad(loss)(model)
    np.testing.assert_allclose(g.unconstrained["k"], 2.0 * -1.0, rtol=1e-14)
    np.testing.assert_allclose(g.unconstrained["c"], [2.0, 0.0], rtol=1e-14)
    with pytest.raises(ValueError, match="not > 0"):
        pinn.Parameterized(field, {"k": -1.0}, positive=("k",))
    with pytest.raises(ValueError, match="not among the parameters"):
        pinn.Parameterized(field, {"k": 1.0}, positive=("nu",))


def _poisson_inverse(k_true=2.0, num_obs=40):
    # -k u'' = f on [0, 1] with u = sin(pi x): f = k pi^2 sin(pi x), u(0) = u(1) = 0.
    f = lambda x: k_true * jnp.pi**2 * jnp.sin(jnp.pi * x[0])
    xs = jnp.linspace(0.0, 1.0, num_obs, dtype=jnp.float64)[:, None]
    obs = pinn.Observations(xs, jnp.sin(jnp.pi * xs[:, 0]))
    return pinn.Problem(
        lambda u, x: -u.parameters["k"] * laplacian(u, x) - f(x),
        pinn.Box((0.0,), (1.0,)),
        {"data": obs, "boundary": pinn.Dirichlet(0.0)},
        exact=lambda x: jnp.sin(jnp.pi * x[0]),
    )


def test_poisson_inverse_identifies_k(tmp_path):
    # 1-D Poisson with unknown conductivity k = 2 from 40 noise-free observations of u,
    # k started at 0.5 (log-parametrised). Float64, 300 Adam steps then 300 L-BFGS iterations
    # on 64 residual points: measured |k - 2| / 2 = 8e-5 (goal 2%).
    problem = _poisson_inverse()
    net = MLP(1, "scalar", width=16, depth=2, key=jax.random.key(0), dtype=jnp.float64)
    model = pinn.Parameterized(net, {"k": 0.5}, positive=("k",))
    run = tmp_path / "run"
    fitted, history = pinn.solve(
        problem,
        model,
        key=jax.random.key(1),
        steps=300,
        lbfgs_steps=300,
        learning_rate=1e-2,
        num_points={"residual": 64, "boundary": 2},
        eval_every=100,
        run_dir=run,
        progress=False,
    )
    k = float(fitted.parameters["k"])
    assert abs(k - 2.0) / 2.0 < 0.02, k
    assert history[0]["param_k"] != 0.5 and history[-1]["param_k"] == k
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["param_k"] for r in records] == [r["param_k"] for r in history]
    assert (run / "plots" / "parameters.png").is_file()


def test_resume_is_exact_with_unknowns(tmp_path):
    # Stopped by a callback after 20 steps (a checkpoint is written there), then resumed: the
    # field, the unknowns and their logged trajectory equal an uninterrupted run's bit for bit,
    # through RAD resampling, gradient-norm balancing and the L-BFGS phase.
    problem = _poisson_inverse(num_obs=12)
    net = eqx.nn.MLP(1, "scalar", 8, 2, jnp.tanh, key=jax.random.key(0), dtype=jnp.float64)
    model = pinn.Parameterized(net, {"k": 0.5, "shift": jnp.zeros(2)}, positive=("k",))
    settings = dict(
        steps=40,
        lbfgs_steps=10,
        key=jax.random.key(3),
        num_points={"residual": 32, "boundary": 2},
        eval_every=10,
        resample_every=20,
        adaptive={"pool": 4},
        balancing="grad_norm",
        balance_every=10,
        progress=False,
    )
    full, full_history = pinn.solve(problem, model, **settings)
    run = tmp_path / "run"
    stop_at_20 = lambda m, record: record["step"] == 20
    _, first = pinn.solve(problem, model, run_dir=run, callback=stop_at_20, **settings)
    assert first[-1]["step"] == 20
    resumed, history = pinn.solve(problem, model, run_dir=run, resume=True, **settings)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["param_k"] for r in history] == [r["param_k"] for r in full_history]
    assert history[-1]["param_shift"] == np.asarray(resumed.parameters["shift"]).tolist()
    assert (run / "plots" / "parameters.png").is_file()


# --------------------------------------------------------------------------- Robin, operators


def test_robin_and_boundary_operator_vanish_at_manufactured_solutions(getkey):
    # u = exp(x) sin(y) on the square [0, 1]^2: alpha u + beta du/dn = g with g computed by
    # hand from the outward normals; the nonlinear operator u^2 + du/dn likewise. Float64.
    box = pinn.Box((0.0, 0.0), (1.0, 1.0))
    u = lambda x: jnp.exp(x[0]) * jnp.sin(x[1])

    def du_dn(x):
        n = box.normal(x)
        grad = jnp.array([jnp.exp(x[0]) * jnp.sin(x[1]), jnp.exp(x[0]) * jnp.cos(x[1])])
        return jnp.dot(grad, n)

    alpha, beta = 2.0, lambda x: 1.0 + x[0]
    robin = pinn.Robin(alpha, beta, lambda x: alpha * u(x) + beta(x) * du_dn(x))
    op = pinn.BoundaryOperator(
        lambda v, x, n: v(x) ** 2 + jnp.dot(gradient(v, x), n),
        lambda x: u(x) ** 2 + du_dn(x),
    )
    problem = pinn.Problem(lambda v, x: laplacian(v, x), box, {"robin": robin, "op": op})
    pts = problem.sample(getkey(), {"residual": 8, "robin": 64, "op": 64})
    losses = problem.losses(u, pts)
    for name in ("residual", "robin", "op"):
        assert losses[name] < 1e-24, (name, losses[name])
    # a wrong solution does not satisfy them
    wrong = problem.losses(lambda x: u(x) + 0.1 * x[0], pts)
    assert wrong["robin"] > 1e-4 and wrong["op"] > 1e-4
    # the faces restriction: the Robin condition on the right face only
    right = pinn.Robin(0.0, 1.0, lambda x: jnp.exp(x[0]) * jnp.sin(x[1]), faces=((0, 1),))
    x = right.sample(box, getkey(), 16, "uniform")
    np.testing.assert_allclose(x[:, 0], 1.0)
    np.testing.assert_allclose(right.residuals(u, x, box), 0.0, atol=1e-13)
