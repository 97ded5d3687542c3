"""Step time of the plain single-device path against the sharded path on k devices.

For each model (an FNO-2D training step on a batch of Darcy-sized samples; a PINN step on a
2-D Poisson problem with an MLP and Taylor-mode Laplacians) the same `sciml.train.train_step`
runs

- on the plain path (`fit` without `mesh`): arrays on the default device;
- on meshes of k = 1, 2, 4, ... devices (`fit(..., mesh=make_mesh(k))`): the global batch (or
  the collocation points) split over the devices, parameters replicated.

The global batch is the same for every k (strong scaling). Runs of the variants are
interleaved (plain, k=1, k=2, ..., plain, k=1, ...) so that drift on a shared machine hits
them alike; each run times `--steps` steps after a warm-up, and the report gives the median
over `--repeats` runs of the time per step, and its ratio to the plain path.

On a CPU, `--cpu-devices N` starts JAX with N host devices
(`--xla_force_host_platform_device_count`). They share the machine's cores, so CPU "scaling"
measures the partitioning overhead and the parallelism XLA finds, not extra hardware.

Examples:

    .venv/bin/python experiments/bench_sharding.py --cpu-devices 8 --devices 1,2,4,8
    python experiments/bench_sharding.py --devices 1            # on one GPU: overhead only
"""

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="fno,pinn", help="comma-separated: fno, pinn")
    p.add_argument("--devices", default="1", help="mesh sizes, e.g. 1,2,4,8")
    p.add_argument("--cpu-devices", type=int, default=0, help="force N CPU devices (CPU only)")
    p.add_argument("--batch", type=int, default=32, help="FNO global batch")
    p.add_argument("--resolution", type=int, default=64, help="FNO grid per axis")
    p.add_argument("--width", type=int, default=32, help="FNO width")
    p.add_argument("--modes", type=int, default=12, help="FNO modes per axis")
    p.add_argument("--points", type=int, default=8192, help="PINN residual points")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=5, help="runs per variant")
    p.add_argument("--out", default=None, help="append one JSON line per variant")
    args = p.parse_args(argv)
    args.devices = [int(k) for k in args.devices.split(",")]
    args.models = args.models.split(",")
    for m in args.models:
        if m not in ("fno", "pinn"):
            p.error(f"--models: unknown model {m!r}; allowed: fno, pinn")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cpu_devices:
        os.environ["JAX_PLATFORMS"] = "cpu"
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}"
        )
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import sciml
    import sciml.pinn as pinn
    from sciml.train import (
        batch_loss,
        init_optimizer,
        make_mesh,
        relative_l2,
        shard_batch,
        shard_params,
        train_step,
    )

    if max(args.devices) > jax.device_count():
        sys.exit(f"--devices {max(args.devices)} exceeds the {jax.device_count()} devices")
    device = jax.devices()[0]
    print(f"{jax.device_count()} x {device.device_kind} ({device.platform}), jax {jax.__version__}")

    def setups():
        if "fno" in args.models:
            s, b = args.resolution, args.batch
            key = jax.random.key(0)
            x = np.asarray(jax.random.normal(key, (b, 1, s, s)), np.float32)
            y = np.tanh(x)
            model = sciml.operators.FNO(
                1, 1, modes=(args.modes, args.modes), width=args.width, depth=4, key=key
            )
            yield "fno", model, (x, y), batch_loss(relative_l2)
        if "pinn" in args.models:
            problem = pinn.benchmarks.poisson_2d()
            net = sciml.fields.MLP(2, "scalar", width=64, depth=4, key=jax.random.key(1))
            points = problem.sample(
                jax.random.key(2), {"residual": args.points, "boundary": args.points // 8}
            )
            weights = {name: jnp.ones(()) for name in problem.terms}
            yield "pinn", net, (points, weights), lambda m, p, w: problem.loss(m, p, w)

    records = []
    optimizer = optax.adam(1e-3)
    for name, model, batch, loss_fn in setups():
        variants = {"plain": None} | {f"mesh{k}": make_mesh(k) for k in args.devices}
        state = {}
        for label, mesh in variants.items():
            if mesh is None:
                m, b = model, jax.device_put(batch, device)
            else:
                m, b = shard_params(model, mesh), shard_batch(batch, mesh)
            opt_state = jax.jit(init_optimizer, static_argnums=0)(optimizer, m)
            start = time.perf_counter()
            for _ in range(2):  # compile + one more
                m, opt_state, loss = train_step(
                    m, opt_state, b, loss_fn=loss_fn, optimizer=optimizer
                )
            jax.block_until_ready(loss)
            state[label] = [m, opt_state, b, time.perf_counter() - start, []]
        for _ in range(args.repeats):
            for entry in state.values():
                m, opt_state, b = entry[:3]
                start = time.perf_counter()
                for _ in range(args.steps):
                    m, opt_state, loss = train_step(
                        m, opt_state, b, loss_fn=loss_fn, optimizer=optimizer
                    )
                jax.block_until_ready((m, loss))
                entry[4].append((time.perf_counter() - start) / args.steps)
                entry[0], entry[1] = m, opt_state
        plain = statistics.median(state["plain"][4])
        for label, entry in state.items():
            median = statistics.median(entry[4])
            record = {
                "model": name,
                "variant": label,
                "devices": 1 if label == "plain" else int(label[4:]),
                "platform": device.platform,
                "device_kind": device.device_kind,
                "step_ms": 1e3 * median,
                "step_ms_all": [1e3 * t for t in entry[4]],
                "ratio_to_plain": median / plain,
                "warmup_s": entry[3],
                "batch": args.batch if name == "fno" else args.points,
            }
            records.append(record)
            print(
                f"{name:5s} {label:7s} step {1e3 * median:9.3f} ms  "
                f"(x{median / plain:.3f} of plain; runs "
                + ", ".join(f"{1e3 * t:.2f}" for t in entry[4])
                + ")"
            )
    if args.out:
        with open(args.out, "a") as f:
            for r in records:
                f.write(json.dumps(r | {"args": vars(args)}) + "\n")


if __name__ == "__main__":
    main()
