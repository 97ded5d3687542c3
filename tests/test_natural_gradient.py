"""Energy natural gradient (Gauss-Newton) for PINNs: one step solves a linear least-squares
PINN, the dense and CG solvers agree, steps beat Adam, and `solve` records, checkpoints and
resumes its natural-gradient phase exactly."""

import functools
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml import pinn
from sciml._app.config import ConfigError, load_config, validate_config
from sciml.derivatives import laplacian
from sciml.fields import MLP
from sciml.train import NonFiniteError

REPO = Path(__file__).parent.parent
CENTRES = tuple(np.linspace(-0.1, 1.1, 10).tolist())
WIDTH = 0.15


class _Gaussians(eqx.Module):
    """`u(x) = sum_k c_k exp(-(x - m_k)^2 / (2 s^2))`: linear in its trainable `c`."""

    coefficients: jax.Array
    centres: tuple[float, ...] = eqx.field(static=True)

    def __call__(self, x):
        z = (x[0] - jnp.asarray(self.centres)) / WIDTH
        return jnp.exp(-(z**2) / 2) @ self.coefficients


def _poisson_1d():
    exact = lambda x: jnp.sin(jnp.pi * x[0]) + x[0]
    return pinn.Problem(
        residual=lambda u, x: -laplacian(u, x) - jnp.pi**2 * jnp.sin(jnp.pi * x[0]),
        domain=pinn.Box([0.0], [1.0]),
        conditions={"boundary": pinn.Dirichlet(exact)},
        exact=exact,
    )


def test_one_step_solves_a_linear_least_squares_pinn():
    """The accept test of issue 20: with a model linear in its parameters and a linear PDE the
    loss is quadratic, so one undamped step with `eta = 1` lands on the least-squares
    minimiser (compared with `numpy.linalg.lstsq` of the stacked, weighted system)."""
    problem = _poisson_1d()
    x = np.linspace(0.0, 1.0, 42)[1:-1, None]
    points = {"residual": jnp.asarray(x), "boundary": jnp.asarray([[0.0], [1.0]])}
    weights = {"residual": jnp.asarray(1.0), "boundary": jnp.asarray(10.0)}
    model = _Gaussians(jnp.ones(len(CENTRES)), CENTRES)

    m = np.asarray(CENTRES)
    z = (x - m) / WIDTH
    phi = np.exp(-(z**2) / 2)
    rows = [
        np.sqrt(1.0 / len(x)) * (-phi * (z**2 - 1) / WIDTH**2),
        np.sqrt(10.0 / 2) * np.exp(-(((np.array([[0.0], [1.0]]) - m) / WIDTH) ** 2) / 2),
    ]
    rhs = [
        np.sqrt(1.0 / len(x)) * np.pi**2 * np.sin(np.pi * x[:, 0]),
        np.sqrt(5.0) * np.array([0.0, 1.0]),
    ]
    a, b = np.concatenate(rows), np.concatenate(rhs)
    best, *_ = np.linalg.lstsq(a, b, rcond=None)
    minimum = np.sum((a @ best - b) ** 2)
    assert np.linalg.cond(a) < 1e7  # so that rounding allows the tolerances below

    step = functools.partial(
        pinn.natural_gradient_step, damping=0.0, adaptive=False, etas=(1.0,), solver="dense"
    )
    new, info = step(problem, model, points, weights)
    # Float64 rounding, amplified by cond(a) ~ 1e5 in the coefficients; the loss, quadratic
    # at its minimum, only by its square.
    np.testing.assert_allclose(new.coefficients, best, rtol=1e-8, atol=1e-8)
    loss = problem.loss(new, points, weights)
    assert abs(loss - minimum) <= 1e-10 * minimum
    assert float(info["eta"]) == 1.0 and abs(info["new_loss"] - minimum) <= 1e-10 * minimum
    # The step from the minimiser is zero.
    again, _ = step(problem, new, points, weights)
    np.testing.assert_allclose(again.coefficients, new.coefficients, rtol=0, atol=1e-9)
    # The Gramian solver squares the condition number (~1e10 here): the loss still to 1e-8.
    gram, _ = step(problem, model, points, weights, solver="gram")
    assert abs(problem.loss(gram, points, weights) - minimum) <= 1e-8 * minimum


def _mlp_setup(width=8, residual=32, boundary=16):
    problem = pinn.benchmarks.poisson_2d()
    points = problem.sample(
        jax.random.key(0), {"residual": residual, "boundary": boundary}, dtype=jnp.float64
    )
    weights = {"residual": jnp.asarray(1.0), "boundary": jnp.asarray(10.0)}
    model = MLP(2, "scalar", width=width, depth=2, key=jax.random.key(1), dtype=jnp.float64)
    return problem, model, points, weights


def test_dense_gram_and_cg_solvers_agree():
    problem, model, points, weights = _mlp_setup()
    directions = {}
    for solver in ("dense", "gram", "cg"):
        method = pinn.NaturalGradient(
            damping=1e-2, adaptive=False, solver=solver, max_cg_steps=1000, cg_rtol=1e-13
        )
        _, info = eqx.filter_jit(method.step)(problem, model, points, weights, method.init())
        directions[solver] = info["direction"]
        assert (int(info["cg_steps"]) > 0) == (solver == "cg")
    # CG to a relative residual of 1e-13 on a system of condition number <= |J|^2 / 1e-2.
    np.testing.assert_allclose(directions["cg"], directions["dense"], rtol=1e-6, atol=1e-8)
    # The damped Gramian (condition number <= |J|^2 / 1e-2) to near rounding.
    np.testing.assert_allclose(directions["gram"], directions["dense"], rtol=1e-8, atol=1e-10)


def test_per_point_jacobian_equals_forward_mode_jacobian():
    """The dense solver's Jacobian (per-point gradients for the residual and the pointwise
    conditions, forward-mode columns for `Observations`), in batches not dividing the point
    counts, equals `jax.jacfwd` of the whole scaled residual vector, causal scales and a
    vector-valued model included."""
    from sciml.pinn._natural_gradient import _jacobian, _residual_scales, _residual_vector

    base = pinn.benchmarks.klein_gordon()
    observed = jax.random.uniform(jax.random.key(5), (6, 3), dtype=jnp.float64)
    conditions = {**base.conditions, "data": pinn.Observations(observed, jnp.ones((6, 2)))}
    problem = pinn.Problem(
        lambda u, x: base.residual(lambda p: u(p)[0], x) * u(x),  # a vector residual
        base.domain,
        conditions,
        causal_chunks=3,
    )
    counts = {"residual": 11, "initial": 5, "boundary": 7, "data": 6}
    points = problem.sample(jax.random.key(0), counts, dtype=jnp.float64)
    weights = {name: jnp.asarray(1.0 + i) for i, name in enumerate(problem.terms)}
    model = MLP(3, 2, width=4, depth=2, key=jax.random.key(1), dtype=jnp.float64)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    theta, unravel = jax.flatten_util.ravel_pytree(params)
    build = lambda t: eqx.combine(unravel(t), static)
    scales = _residual_scales(problem, model, points, weights)
    vector = lambda t: _residual_vector(problem, build(t), points, scales)
    expected = jax.jacfwd(vector)(theta)
    for chunk in (4, 256):
        jac = _jacobian(problem, build, theta, points, scales, chunk)
        np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="jacobian_chunk"):
        pinn.NaturalGradient(jacobian_chunk=0)


def test_the_residual_vector_squares_to_the_loss_also_causally_weighted():
    """The stacked residuals reproduce `Problem.loss` for a vector of weights, conditions of
    several kinds and causal weighting (whose weights the step holds constant)."""
    base = pinn.benchmarks.klein_gordon()
    problem = pinn.Problem(base.residual, base.domain, base.conditions, causal_chunks=4)
    counts = {"residual": 24, "initial": 8, "boundary": 8}
    points = problem.sample(jax.random.key(0), counts, dtype=jnp.float64)
    weights = {
        "residual": jnp.asarray(2.0),
        "initial": jnp.asarray(3.0),
        "boundary": jnp.asarray(0.5),
    }
    model = MLP(3, "scalar", width=4, depth=1, key=jax.random.key(1), dtype=jnp.float64)
    method = pinn.NaturalGradient(solver="cg", max_cg_steps=2)
    _, info = eqx.filter_jit(method.step)(problem, model, points, weights, method.init())
    loss = problem.loss(model, points, weights)
    assert info["loss"] == pytest.approx(float(loss), rel=1e-13)


def test_steps_decrease_the_loss_and_beat_adam():
    problem, model, points, weights = _mlp_setup(width=16, residual=64, boundary=32)
    losses, damping = [], 1e-3
    natural = model
    for _ in range(15):
        natural, info = pinn.natural_gradient_step(
            problem, natural, points, weights, damping=damping
        )
        damping = info["damping"]
        losses.append(float(info["new_loss"]))
        assert info["new_loss"] <= info["loss"]
    assert np.all(np.diff(losses) <= 0)
    assert losses[-1] == pytest.approx(float(problem.loss(natural, points, weights)), rel=1e-12)

    optimizer = optax.adam(1e-2)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = optimizer.init(params)
    loss_fn = lambda p: problem.loss(eqx.combine(p, static), points, weights)

    @jax.jit
    def adam_step(params, state):
        grads = jax.grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state

    for _ in range(15):
        params, state = adam_step(params, state)
    assert losses[-1] < 1e-2 * float(loss_fn(params))


def _solve(run_dir, **kwargs):
    problem, model, points, weights = _mlp_setup()
    return pinn.solve(
        problem,
        model,
        key=jax.random.key(2),
        points=points,
        weights={"boundary": 10.0},
        optimizer=pinn.NaturalGradient(),
        steps=4,
        lbfgs_steps=2,
        eval_every=2,
        dtype=jnp.float64,
        run_dir=run_dir,
        progress=False,
        **kwargs,
    )


def test_solve_records_checkpoints_and_resumes_exactly(tmp_path):
    model, history = _solve(tmp_path / "whole")
    assert [r["step"] for r in history] == [2, 4, 6]
    assert [r["phase"] for r in history] == ["natural_gradient"] * 2 + ["lbfgs"]
    assert all("damping" in r for r in history[:2]) and "lr" not in history[0]
    assert history[1]["train_loss"] < history[0]["train_loss"]

    _, first = _solve(tmp_path / "cut", callback=lambda m, r: r["step"] == 2)
    assert [r["step"] for r in first] == [2]
    resumed, rest = _solve(tmp_path / "cut", resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]
    assert strip(rest) == strip(history)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_solve_stops_at_a_nonfinite_natural_gradient_step(tmp_path):
    problem, model, points, _ = _mlp_setup()
    with pytest.raises(NonFiniteError, match="loss"):
        pinn.solve(
            problem,
            model,
            key=jax.random.key(2),
            points=points,
            weights={"boundary": float("nan")},
            optimizer=pinn.NaturalGradient(),
            steps=2,
            eval_every=2,
            dtype=jnp.float64,
            progress=False,
        )


def test_config_runs_natural_gradient_and_operator_configs_refuse_it(tmp_path):
    from sciml._app.pinn_run import run_pinn

    config = load_config(
        REPO / "experiments" / "pinn_poisson.toml",
        [
            "train.optimizer=natural_gradient",
            "model.name=mlp",
            "model.mlp.width=8",
            "model.mlp.depth=2",
            "train.steps=4",
            "train.lbfgs_steps=0",
            "train.eval_every=2",
            "train.num_residual=32",
            "train.num_boundary=16",
            "train.progress=false",
        ],
    )
    results = run_pinn(config, tmp_path / "run")
    assert results["steps"] == 4 and 0 < results["test_relative_l2"] < 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["phase"] for r in records] == ["natural_gradient"] * 2
    with pytest.raises(ConfigError, match=r"^config key 'train.optimizer' = 'natural_gradient'"):
        validate_config({"train": {"optimizer": "natural_gradient"}}, check_data=False)
