"""Run by tests/test_sharding.py: `fit` over two processes (`jax.distributed.initialize` on
localhost, two CPU devices each, Gloo collectives) against one process with four devices.

    python check_multihost.py PROCESS_ID PORT OUT.json RUN_DIR   # PROCESS_ID 0 or 1
    python check_multihost.py ref 0 OUT.json RUN_DIR            # one process, four devices

Each writes its final parameters' checksum and history to OUT.json.
"""

import json
import os
import sys

role, port, out, run_dir = sys.argv[1:5]
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count="
    + ("4" if role == "ref" else "2")
)

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

if role != "ref":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=int(role)
    )

import sciml  # noqa: E402
from sciml.train import batch_loss, fit, make_mesh, relative_l2  # noqa: E402

x = np.asarray(jax.random.normal(jax.random.key(0), (32, 1, 16, 16)), np.float32)
y = np.tanh(x)
model = sciml.operators.FNO(1, 1, modes=(4, 4), width=8, depth=2, key=jax.random.key(1))
mesh = make_mesh()
trained, history = fit(model, batch_loss(relative_l2), (x, y), optimizer=optax.adam(1e-3),
                       steps=8, batch_size=8, key=jax.random.key(2), progress=False, mesh=mesh,
                       eval_data=(x[:8], y[:8]), run_dir=run_dir)  # fmt: skip
leaves = [np.asarray(a) for a in jax.tree.leaves(eqx.filter(trained, eqx.is_array))]
with open(out, "w") as f:
    json.dump({"processes": jax.process_count(), "devices": jax.device_count(),
               "mesh": dict(mesh.shape), "params": [a.tolist() for a in leaves],
               "history": [r["train_loss"] for r in history]}, f)  # fmt: skip
