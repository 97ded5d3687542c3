"""DeepONet on the antiderivative operator, as in Lu et al., Nature Machine Intelligence 2021.

Data: u ~ Gaussian process with an RBF kernel of length scale 0.2 on [0, 1], s(y) = int_0^y u,
u at m = 100 sensors x_i = i / 99 (`sciml.data.sample_gp_antiderivative`: exact sampling and
integration). Model: the paper's unstacked DeepONet, branch [100, 40, 40], trunk [1, 40, 40],
ReLU, Glorot-normal initialisation, output bias (7,401 parameters). Training: Adam, learning
rate 1e-3, on the mean squared error over all 10,000 training triplets (u, y, s(y)) at every
iteration (full batch), for up to 50,000 iterations.

Two layouts of the 10,000 training triplets (`--train-layout`):

- `aligned` (default): 100 functions x the 100 sensor points (`generate_antiderivative` +
  `to_deeponet`);
- `paper`: 10,000 functions with one query point y ~ U[0, 1] each, as the paper's code draws
  them (`ODESystem.gen_operator_data` in github.com/lululxvi/deeponet).

The test set is always 1000 functions x the 100 sensor points (100,000 triplets, the paper's
test size); printed every `--eval-every` iterations: the test MSE and the test relative L2 error
(mean over test functions of ||pred - s|| / ||s||, and its median).

    python experiments/antiderivative_deeponet.py --iterations 50000 --seed 0
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sciml.data import generate_antiderivative, sample_gp_antiderivative, to_deeponet
from sciml.operators import DeepONet

NUM_SENSORS = 100


def aligned(key, n):
    """`n` functions, each with its values at the sensors as the query points."""
    inputs, outputs = (
        np.concatenate(a) for a in zip(*generate_antiderivative(key, n), strict=True)
    )
    data = to_deeponet((inputs, outputs, (np.linspace(0.0, 1.0, NUM_SENSORS),)))
    return data.branch, data.trunk, data.targets


@jax.jit
def _scattered(key, y):
    sensors = jnp.linspace(0.0, 1.0, NUM_SENSORS, dtype=jnp.float32)
    u, s = sample_gp_antiderivative(key, jnp.concatenate([sensors, y]))
    return u[:NUM_SENSORS], s[NUM_SENSORS:]


def scattered(key, n):
    """`n` functions, each with one query point y ~ U[0, 1] (the paper's training data)."""
    function_key, point_key = jax.random.split(key)
    ys = jax.random.uniform(point_key, (n, 1), jnp.float32)
    u, s = jax.vmap(_scattered)(jax.random.split(function_key, n), ys)
    return np.asarray(u), np.asarray(ys)[:, None], np.asarray(s)[:, :, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--train-layout", choices=("aligned", "paper"), default="aligned")
    parser.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="constant learning rate (the paper) or cosine decay to 1%% of it",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data_key, model_key = jax.random.split(jax.random.key(args.seed))
    train_key, test_key = jax.random.split(data_key)
    if args.train_layout == "aligned":
        train, train_axes = aligned(train_key, 100), (0, None)
    else:
        train, train_axes = scattered(train_key, 10_000), (0, 0)
    test = aligned(test_key, 1000)
    model = DeepONet(
        NUM_SENSORS, 1, branch_widths=(40,), trunk_widths=(40,), basis=40, key=model_key
    )
    if args.schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(args.learning_rate, args.iterations, 0.01)
    else:
        learning_rate = args.learning_rate
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    def predict(model, branch, ys, axes):
        return jax.vmap(model.evaluate_grid, axes)(branch, ys)

    @eqx.filter_jit
    def train_steps(model, opt_state, branch, ys, targets, steps):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def mse(params):
            pred = predict(eqx.combine(params, static), branch, ys, train_axes)
            return jnp.mean((pred - targets) ** 2)

        def step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(mse)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), length=steps)
        return eqx.combine(params, static), opt_state, losses[-1]

    @eqx.filter_jit
    def test_metrics(model, branch, ys, targets):
        pred = predict(model, branch, ys, (0, None))
        err = jnp.linalg.norm((pred - targets).reshape(len(pred), -1), axis=1)
        rel = err / jnp.linalg.norm(targets.reshape(len(pred), -1), axis=1)
        return jnp.mean((pred - targets) ** 2), jnp.mean(rel), jnp.median(rel)

    train = [jnp.asarray(a) for a in train]
    test = [jnp.asarray(a) for a in test]
    print(
        f"train ({args.train_layout}): {train[0].shape[0]} functions x {train[2].shape[1]} "
        f"point(s); test: {test[0].shape[0]} x {test[2].shape[1]}; parameters: "
        f"{sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_array)))}"
    )
    done = 0
    while done < args.iterations:
        steps = min(args.eval_every, args.iterations - done)
        model, opt_state, loss = train_steps(model, opt_state, *train, steps)
        done += steps
        test_mse, rel, median = map(float, test_metrics(model, *test))
        print(
            f"iteration {done:6d}  train MSE {float(loss):.2e}  test MSE {test_mse:.2e}  "
            f"test rel L2 {rel:.3e} (median {median:.3e})  {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    print(f"final test relative L2 {rel:.4e}; wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
