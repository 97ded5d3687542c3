"""Run by tests/test_sharding.py in a fresh process with 8 forced CPU devices:
`XLA_FLAGS=--xla_force_host_platform_device_count=8 python check_sharding.py OUT.json`.

Trains FNO (`fit`) and a PINN (`sciml.pinn.solve`) for 20 steps on one device and on meshes
of 8 devices, from the same model, data / points, global batch and seed, and writes the
largest parameter differences, the final losses and the shardings seen to OUT.json.
"""

import json
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.pinn as pinn
from sciml.train import (
    batch_loss,
    batches,
    fit,
    init_optimizer,
    make_mesh,
    relative_l2,
    shard_batch,
    shard_params,
    train_step,
)


def max_rel_diff(a, b) -> float:
    """Largest |a - b| over a leaf, relative to the leaf's largest |a|, over all leaves."""
    pairs = zip(
        jax.tree.leaves(eqx.filter(a, eqx.is_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_array)),
        strict=True,
    )
    return max(float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(x))) for x, y in pairs)


def spec(x) -> str:
    """An array's partition spec without trailing `None`s ("single" off a mesh)."""
    parts = list(getattr(x.sharding, "spec", ["single"]))
    while parts and parts[-1] is None:
        parts.pop()
    return ",".join(str(p) for p in parts) or "replicated"


def specs(tree) -> list[str]:
    return sorted({spec(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))})


def main(out: str) -> None:
    results: dict = {"devices": jax.device_count()}
    loss_fn = batch_loss(relative_l2)  # one object, so that runs of equal shardings share a compile
    mesh8, mesh4x2 = make_mesh(), make_mesh(model=2)

    # The batch really is split: 8 shards of 2 rows each.
    x = np.asarray(jax.random.normal(jax.random.key(0), (64, 1, 16, 16)), np.float32)
    y = np.sin(x) + 0.1 * x**2
    sharded = shard_batch((x[:16], y[:16]), mesh8)
    results["batch_spec"] = spec(sharded[0])
    results["batch_shards"] = [list(s.data.shape) for s in sharded[0].addressable_shards]
    results["batch_devices"] = len({s.device for s in sharded[0].addressable_shards})

    # FNO through `fit`: same data, key and global batch 16, 20 steps; plain SGD shows the
    # rounding-level agreement, Adam the effect of its normalisation on it. The last run also
    # splits the larger weights over a "model" axis of 2 (threshold lowered for a small FNO).
    model = sciml.operators.FNO(1, 1, modes=(6, 6), width=16, depth=2, key=jax.random.key(1))
    split = shard_params(model, mesh4x2, min_size=1024)
    results["model_axis_specs"] = specs(split)
    cases = (
        ("sgd", optax.sgd(1e-2), (("data8", model, mesh8),)),
        ("adam", optax.adam(1e-3), (("data8", model, mesh8), ("data4_model2", split, mesh4x2))),
    )
    for name, opt, runs in cases:
        kwargs = dict(optimizer=opt, steps=20, batch_size=16, key=jax.random.key(2), progress=False)
        plain, history = fit(model, loss_fn, (x, y), **kwargs)
        loss = history[-1]["train_loss"]
        for label, start, mesh in runs:
            m, history = fit(start, loss_fn, (x, y), mesh=mesh, **kwargs)
            results[f"fno_{name}_{label}_specs"] = specs(m)
            results[f"fno_{name}_{label}_param"] = max_rel_diff(plain, m)
            results[f"fno_{name}_{label}_loss"] = abs(history[-1]["train_loss"] / loss - 1)
        # Control: the same 20 steps on one device in a plain loop, with the samples of each
        # batch in reverse order: what float32 rounding alone does to the result.
        m, state = model, init_optimizer(opt, model)
        for step in range(20):
            epoch, index = divmod(step, 4)
            xb, yb = list(batches((x, y), 16, key=jax.random.fold_in(jax.random.key(2), epoch)))[
                index
            ]
            m, state, _ = train_step(m, state, (xb[::-1], yb[::-1]), loss_fn=loss_fn, optimizer=opt)
        results[f"fno_{name}_reordered_param"] = max_rel_diff(plain, m)

    # PINN through `solve`: Poisson, 256 residual + 64 boundary points, Adam, 20 steps.
    problem = pinn.benchmarks.poisson_2d()
    net = sciml.fields.MLP(2, "scalar", width=32, depth=3, key=jax.random.key(3))
    points = problem.sample(jax.random.key(4), {"residual": 256, "boundary": 64})
    runs = {}
    for label, mesh in (("plain", None), ("data8", mesh8)):
        seen = {}

        def callback(model, record, seen=seen):
            seen["loss"] = record["train_loss"]

        runs[label], _ = pinn.solve(
            problem,
            net,
            key=jax.random.key(5),
            steps=20,
            points=points,
            eval_every=20,
            progress=False,
            mesh=mesh,
            callback=callback,
        )
        results[f"pinn_{label}_loss"] = seen["loss"]
    results["pinn_param"] = max_rel_diff(runs["plain"], runs["data8"])
    results["pinn_loss"] = abs(results["pinn_data8_loss"] / results["pinn_plain_loss"] - 1)
    sharded_points = shard_batch(points, mesh8)
    results["pinn_points_spec"] = spec(sharded_points["residual"])
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
