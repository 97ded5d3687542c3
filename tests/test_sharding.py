"""Multi-device training on `jax.sharding` meshes.

The equivalence checks need several devices, which JAX fixes when it starts: they run in a
fresh process with `XLA_FLAGS=--xla_force_host_platform_device_count=8` (eight CPU devices),
see `multidevice/check_sharding.py`. The rest runs here on the suite's single device.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

import sciml
from sciml.train import batch_loss, fit, make_mesh, relative_l2, replicate, shard_batch

CHECK = Path(__file__).parent / "multidevice" / "check_sharding.py"


# Once per run: the xdist_group marks below keep both tests on one worker where pytest-xdist
# honours them (with pytest 9.2 and xdist 3.8 it does not), `once_per_run` in any case.
@pytest.fixture(scope="session")
def eight_devices(once_per_run):
    def build(path):
        flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
        env = dict(os.environ, XLA_FLAGS=flags)
        env["JAX_PLATFORMS"] = "cpu"
        done = subprocess.run(
            [sys.executable, str(CHECK), str(path / "out.json")],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    return json.loads((once_per_run("sharding", build) / "out.json").read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("eight_devices")  # one worker runs the 8-device process for both
def test_batches_and_points_are_sharded(eight_devices):
    r = eight_devices
    assert r["devices"] == 8
    # A global batch of 16 is split into 8 shards of 2 samples, one per device.
    assert r["batch_spec"] == "data"
    assert r["batch_shards"] == [[2, 1, 16, 16]] * 8 and r["batch_devices"] == 8
    assert r["pinn_points_spec"] == "data"
    # Parameters stay replicated after training; with a "model" axis the large weights stay
    # split over it.
    assert r["fno_adam_data8_specs"] == ["replicated"]
    assert r["model_axis_specs"] == ["None,model", "model", "replicated"]
    assert r["fno_adam_data4_model2_specs"] == r["model_axis_specs"]


@pytest.mark.slow
@pytest.mark.xdist_group("eight_devices")
def test_eight_devices_match_one(eight_devices):
    r = eight_devices
    # 20 steps, same model, data, global batch and seed. Plain SGD: parameters agree to a few
    # float32 ulps (1.2e-7 relative), exactly as far as they do on one device when only the
    # order of the samples in each batch changes (the all-reduce sums in another order).
    assert r["fno_sgd_data8_param"] < 1e-6
    assert r["fno_sgd_data8_param"] < 3 * r["fno_sgd_reordered_param"] + 1e-7
    # Adam divides by sqrt(v) + eps, which magnifies rounding in near-zero gradient components;
    # the same magnification shows on one device under a reordering (the control run), so the
    # bound is relative to it.
    for label in ("data8", "data4_model2"):
        assert r[f"fno_adam_{label}_param"] < 1e-4
        assert r[f"fno_adam_{label}_param"] < 10 * r["fno_adam_reordered_param"]
    for key in ("fno_sgd_data8_loss", "fno_adam_data8_loss", "fno_adam_data4_model2_loss"):
        assert r[key] < 1e-6
    # PINN (Poisson, MLP, Adam, 256 sharded residual points).
    assert r["pinn_loss"] < 1e-6 and r["pinn_param"] < 1e-5


def test_devices_config_key(tmp_path):
    from sciml._app.cli import main
    from sciml._app.config import ConfigError, validate_config

    for value, message in [
        (0, "'train.devices' = 0 is invalid: allowed: 'all' or an integer"),
        ("some", "'train.devices' = 'some' is invalid"),
        (True, "'train.devices' = True is invalid: expected an integer or"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate_config({"train": {"devices": value}})
    config = Path(__file__).parents[1] / "experiments" / "pinn_poisson.toml"
    n = len(jax.devices())
    code = main(["run", str(config), "--runs-dir", str(tmp_path), "--set",
                 f"train.devices={n + 1}"])  # fmt: skip
    assert code == 2 and not any(tmp_path.iterdir())
    # The key reaches `fit` / `solve` as a mesh; 1 (the default) keeps the plain path.
    from sciml._app.experiment import build_mesh

    assert build_mesh(validate_config({"train": {"devices": 1}})) is None
    mesh = build_mesh(validate_config({"train": {"devices": "all", "batch_size": n}}))
    assert dict(mesh.shape) == {"data": n, "model": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    # Multi-host through `jax.distributed.initialize`: two processes on localhost with two
    # CPU devices each (Gloo collectives) train like one process with four devices, and only
    # process 0 writes the run directory.
    script = Path(__file__).parent / "multidevice" / "check_multihost.py"
    port = str(_free_port())
    runs = {
        "0": [port, tmp_path / "p0.json", tmp_path / "run"],
        "1": [port, tmp_path / "p1.json", tmp_path / "run"],
        "ref": ["0", tmp_path / "ref.json", tmp_path / "ref_run"],
    }
    env = dict(os.environ)  # the script adds its device count to XLA_FLAGS
    procs = {
        role: subprocess.Popen(
            [sys.executable, str(script), role, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for role, args in runs.items()
    }
    for role, proc in procs.items():
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, f"process {role}: {output[-3000:]}"
    p0, p1, ref = (json.loads(runs[r][1].read_text()) for r in ("0", "1", "ref"))
    assert (p0["processes"], p0["devices"], p0["mesh"]) == (2, 4, {"data": 4, "model": 1})
    assert ref["devices"] == 4
    assert p0["params"] == p1["params"]  # replicated: both processes hold the same model
    for a, b in zip(p0["params"], ref["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p0["history"], ref["history"], rtol=1e-6)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(p0["history"])  # one writer: no duplicated records
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.eqx"))


def _fno_data(n=8):
    x = np.asarray(jax.random.normal(jax.random.key(0), (n, 1, 8, 8)), np.float32)
    return x, np.tanh(x)


def test_one_device_mesh_equals_plain_path():
    x, y = _fno_data()
    model = sciml.operators.FNO(1, 1, modes=(3, 3), width=4, depth=1, key=jax.random.key(1))
    kwargs = dict(optimizer=optax.adam(1e-2), steps=3, batch_size=4, progress=False)
    plain, _ = fit(model, batch_loss(relative_l2), (x, y), key=jax.random.key(2), **kwargs)
    meshed, _ = fit(
        model, batch_loss(relative_l2), (x, y), key=jax.random.key(2), mesh=make_mesh(), **kwargs
    )
    for a, b in zip(
        jax.tree.leaves(eqx.filter(plain, eqx.is_array)),
        jax.tree.leaves(eqx.filter(meshed, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_shard_batch_replicates_what_does_not_divide():
    mesh = make_mesh()
    batch = shard_batch({"a": np.ones((3, 2)), "b": np.ones((4,))}, mesh)
    assert batch["a"].sharding.is_fully_replicated
    assert replicate(np.ones(3), mesh).sharding.is_fully_replicated


@pytest.mark.untyped
def test_bad_mesh_arguments():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"`num_devices` = {n + 1} exceeds the {n} available"):
        make_mesh(n + 1)
    with pytest.raises(ValueError, match="`model` must be a positive integer, got 0"):
        make_mesh(model=0)
    with pytest.raises(ValueError, match=r"`mesh` must be a `jax.sharding.Mesh` with a 'data'"):
        shard_batch(np.ones(2), "data")
    x, y = _fno_data()
    model = sciml.operators.FNO(1, 1, modes=(3, 3), width=4, depth=1, key=jax.random.key(1))
    mesh = jax.sharding.Mesh(np.array(jax.devices() * 3).reshape(3, 1), ("data", "model"))
    with pytest.raises(ValueError, match="`batch_size` = 4 must be a multiple of the 3 devices"):
        fit(
            model,
            batch_loss(relative_l2),
            (x, y),
            optimizer=optax.sgd(1e-2),
            steps=1,
            batch_size=4,
            key=jax.random.key(0),
            mesh=mesh,
            progress=False,
        )
