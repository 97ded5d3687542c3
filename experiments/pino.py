"""PINO experiments: physics losses for neural operators (`sciml.operators.pino_loss`).

(a) Darcy, FNO on the FNO recipe: data only vs data + physics at equal steps and seeds.
(b) Burgers, a space-time FNO trained from the PDE alone (no solution data), tested against
    the solver.
(c) Darcy, test-time fine-tuning of the trained data-only FNO on single test instances with
    the physics loss only: relative L2 error before and after.

One command, small CPU defaults; prints a markdown table:

    .venv/bin/python experiments/pino.py
"""

from __future__ import annotations

import argparse
import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml.operators as so
from sciml.data import burgers_solve, darcy_solve, grf
from sciml.data._recipes.burgers import BURGERS_ALPHA, BURGERS_NU, BURGERS_SIGMA, BURGERS_TAU
from sciml.data._recipes.darcy import DARCY_FORCING, generate_darcy
from sciml.train import (
    Normalized,
    UnitGaussianNormalizer,
    init_optimizer,
    relative_l2,
    train_step,
)


def relative_residual(loss):
    """The square root of a normalised mean-squared physics loss: a relative residual norm,
    like the relative L2 data loss (the PINO paper's `||Du - f|| / ||f||`)."""

    def physics(pred, x):
        return jnp.sqrt(loss(pred, x))

    return physics


def train(model, loss_fn, x, y, *, steps, batch_size, lr, key):
    """Adam with a cosine-decayed learning rate, `steps` mini-batch `train_step`s."""
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    opt_state = init_optimizer(optimizer, model)
    n = x.shape[0]
    for step in range(steps):
        index = jax.random.choice(jax.random.fold_in(key, step), n, (batch_size,), replace=False)
        model, opt_state, _ = train_step(
            model, opt_state, (x[index], y[index]), loss_fn=loss_fn, optimizer=optimizer
        )
    return model


@eqx.filter_jit
def predict(model, x):
    return jax.vmap(model)(x)


@eqx.filter_jit
def mean_relative_l2(model, x, y):
    return jnp.mean(jax.vmap(relative_l2)(jax.vmap(model)(x), y))


# --------------------------------------------------------------------------------------------
# (a) and (c): Darcy
# --------------------------------------------------------------------------------------------


def darcy_data(args):
    chunks = list(
        generate_darcy(
            jax.random.key(1234),
            args.n_train + args.n_test,
            args.resolution,
            solve_resolution=args.solve_resolution,
        )
    )
    a = np.concatenate([c[0] for c in chunks])[:, None]
    u = np.concatenate([c[1] for c in chunks])[:, None]
    n = args.n_train
    return (jnp.asarray(a[:n]), jnp.asarray(u[:n])), (jnp.asarray(a[n:]), jnp.asarray(u[n:]))


def darcy_model(train_xy, args, key):
    x, y = train_xy
    fno = so.FNO(1, 1, modes=(args.modes, args.modes), width=args.width, depth=4, key=key)
    return Normalized(
        fno,
        UnitGaussianNormalizer.from_data(np.asarray(x)),
        UnitGaussianNormalizer.from_data(np.asarray(y)),
    )


def run_darcy(args, rows):
    start = time.perf_counter()
    (xt, yt), (xs, ys) = darcy_data(args)
    physics = relative_residual(functools.partial(so.darcy_loss, f=DARCY_FORCING))
    # The physics floor: the relative residual of the true solutions on this grid (solved on
    # a finer grid and subsampled, so not a solution of the coarse stencil), and the error of
    # the coarse-grid solve of the same coefficient (the best a physics-only fit can reach).
    truth_residual = float(jnp.mean(jax.vmap(physics)(ys, xs)))
    coarse = jax.vmap(lambda a: darcy_solve(a[0], DARCY_FORCING)[None])(xs)
    coarse_error = float(jnp.mean(jax.vmap(relative_l2)(coarse, ys)))
    print(
        f"Darcy s={args.resolution}: data in {time.perf_counter() - start:.0f} s; true outputs' "
        f"relative residual {truth_residual:.3f}; coarse-grid solve vs data {coarse_error:.4f}"
    )
    models = {}
    for name, weights in (
        ("data only", dict(data_weight=1.0, physics_weight=0.0)),
        ("data + physics", dict(data_weight=1.0, physics_weight=args.physics_weight)),
    ):
        errors, residuals, times = [], [], []
        for seed in args.seeds:
            t0 = time.perf_counter()
            model = darcy_model((xt, yt), args, jax.random.key(seed))
            model = train(
                model,
                so.pino_loss(physics, **weights),
                xt,
                yt,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                key=jax.random.key(100 + seed),
            )
            times.append(time.perf_counter() - t0)
            errors.append(float(mean_relative_l2(model, xs, ys)))
            pred = predict(model, xs)
            residuals.append(float(jnp.mean(jax.vmap(physics)(pred, xs))))
            models.setdefault(name, model)
            print(f"  {name}, seed {seed}: test rel L2 {errors[-1]:.4f} ({times[-1]:.0f} s)")
        rows.append(
            (
                f"(a) Darcy FNO, {name}",
                f"n_train={args.n_train}, s={args.resolution}, {args.steps} steps, "
                f"physics_weight={weights['physics_weight']}, seeds {list(args.seeds)}",
                f"{np.mean(errors):.4f} ± {np.std(errors):.4f}",
                f"{np.mean(residuals):.3f}",
                f"{np.mean(times):.0f}",
            )
        )
    rows.append(
        (
            "(a) reference: true test outputs",
            "solved on the recipe's grid (>= 421), subsampled"
            if args.solve_resolution != args.resolution
            else "solved on the training grid",
            "0",
            f"{truth_residual:.3f}",
            "",
        )
    )
    rows.append(
        (
            "(a) reference: coarse-grid solve",
            f"darcy_solve on the s={args.resolution} grid",
            f"{coarse_error:.4f}",
            "~1e-10",
            "",
        )
    )
    run_fine_tune(args, models["data only"], xs, ys, physics, rows)


def run_fine_tune(args, model, xs, ys, physics, rows):
    before, after, residual_before, residual_after = [], [], [], []
    t0 = time.perf_counter()
    for i in range(args.ft_instances):
        x, y = xs[i], ys[i]
        tuned, history = so.fine_tune(
            model, x, physics, steps=args.ft_steps, learning_rate=args.ft_lr
        )
        before.append(float(relative_l2(model(x), y)))
        after.append(float(relative_l2(tuned(x), y)))
        residual_before.append(float(history[0]))
        residual_after.append(float(history[-1]))
        print(
            f"  fine-tune instance {i}: rel L2 {before[-1]:.4f} -> {after[-1]:.4f}, relative "
            f"residual {history[0]:.3f} -> {history[-1]:.3f}"
        )
    elapsed = time.perf_counter() - t0
    setting = f"{args.ft_instances} test instances, {args.ft_steps} Adam steps, lr={args.ft_lr}"
    rows.append(
        (
            "(c) Darcy fine-tune: before",
            setting,
            f"{np.mean(before):.4f}",
            f"{np.mean(residual_before):.3f}",
            "",
        )
    )
    rows.append(
        (
            "(c) Darcy fine-tune: after",
            setting,
            f"{np.mean(after):.4f}",
            f"{np.mean(residual_after):.3f}",
            f"{elapsed / args.ft_instances:.0f} per instance",
        )
    )


# --------------------------------------------------------------------------------------------
# (b): Burgers, physics only
# --------------------------------------------------------------------------------------------


def burgers_inputs(key, n, s, fine):
    """Initial conditions of the FNO Burgers recipe, drawn on `fine` points and subsampled to
    `s` (the recipe draws on 8192 points)."""
    field = functools.partial(
        grf, shape=(fine,), alpha=BURGERS_ALPHA, tau=BURGERS_TAU, sigma=BURGERS_SIGMA
    )
    return jax.vmap(field)(jax.random.split(key, n))


def run_burgers(args, rows):
    s, nt, fine = args.burgers_s, args.burgers_nt, 4 * args.burgers_s
    dt = 1.0 / nt
    train_u0 = burgers_inputs(jax.random.key(7), args.burgers_n_train, s, fine)[
        :, None, :: fine // s
    ]
    test_fine = burgers_inputs(jax.random.key(8), args.n_test, s, fine)
    test_u0 = test_fine[:, None, :: fine // s]
    ts = dt * (1 + np.arange(nt))
    solve = jax.vmap(
        lambda u0: burgers_solve(u0, nu=BURGERS_NU, t_final=1.0, num_steps=10 * nt, ts=ts)
    )
    test_u = solve(test_fine)[:, :, :: fine // s]
    loss = functools.partial(so.burgers_loss, nu=BURGERS_NU, dt=dt)
    physics = relative_residual(loss)
    truth_residual = float(jnp.mean(jax.vmap(physics)(test_u, test_u0)))
    key = jax.random.key(args.seeds[0])
    fno = so.FNO(
        1,
        1,
        modes=(args.burgers_modes, args.burgers_modes),
        width=args.width,
        depth=4,
        padding=(0, 0.25),  # pad time (not periodic), not space
        key=key,
    )
    model = so.SpaceTimeOperator(fno, nt)
    t0 = time.perf_counter()
    # Physics only: the targets are not read (data_weight=0), the inputs stand in for them.
    model = train(
        model,
        so.pino_loss(physics, data_weight=0.0),
        train_u0,
        train_u0,
        steps=args.burgers_steps,
        batch_size=args.burgers_batch_size,
        lr=args.lr,
        key=jax.random.key(200),
    )
    elapsed = time.perf_counter() - t0
    error = float(mean_relative_l2(model, test_u0, test_u))
    pred = predict(model, test_u0)
    residual = float(jnp.mean(jax.vmap(physics)(pred, test_u0)))
    final_error = float(jnp.mean(jax.vmap(relative_l2)(pred[:, -1], test_u[:, -1])))
    print(
        f"Burgers physics only: test rel L2 {error:.4f} (at t=1: {final_error:.4f}), relative "
        f"residual {residual:.3f} (solver's own: {truth_residual:.3f}), {elapsed:.0f} s"
    )
    rows.append(
        (
            "(b) Burgers space-time FNO, physics only",
            f"{args.burgers_n_train} initial conditions, no solutions, s={s}, {nt} frames to "
            f"t=1, {args.burgers_steps} steps",
            f"{error:.4f} (t=1: {final_error:.4f})",
            f"{residual:.3f}",
            f"{elapsed:.0f}",
        )
    )
    rows.append(
        (
            "(b) reference: solver trajectory",
            f"burgers_solve, s={fine} subsampled to {s}",
            "0",
            f"{truth_residual:.3f}",
            "",
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=29)
    parser.add_argument(
        "--solve-resolution",
        type=int,
        default=None,
        help="Darcy solve grid (default: the recipe's >= 421; = resolution solves on the "
        "training grid, where data and physics agree)",
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--physics-weight", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ft-instances", type=int, default=4)
    parser.add_argument("--ft-steps", type=int, default=300)
    parser.add_argument("--ft-lr", type=float, default=5e-4)
    parser.add_argument("--burgers-s", type=int, default=64)
    parser.add_argument("--burgers-nt", type=int, default=32)
    parser.add_argument("--burgers-modes", type=int, default=12)
    parser.add_argument("--burgers-n-train", type=int, default=200)
    parser.add_argument("--burgers-steps", type=int, default=800)
    parser.add_argument("--burgers-batch-size", type=int, default=10)
    parser.add_argument("--skip", choices=("darcy", "burgers"), nargs="*", default=[])
    args = parser.parse_args()

    rows = []
    if "darcy" not in args.skip:
        run_darcy(args, rows)
    if "burgers" not in args.skip:
        run_burgers(args, rows)
    print()
    print("| experiment | setting | test relative L2 | relative PDE residual | time (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
