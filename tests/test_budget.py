"""Size budgets (`sciml._app.budget`): absurd sizes are refused before anything is allocated, in one
line naming the key that contributes most; the repository's own configs are not."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from sciml._app import budget as _budget
from sciml._app.budget import (
    INDEX_LIMIT,
    check_data_budget,
    check_run_budget,
    estimate_data,
    estimate_run,
    format_bytes,
)
from sciml._app.config import ConfigError, load_config

REPO = Path(__file__).parent.parent
EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))
QUICKSTART = REPO / "experiments" / "quickstart.toml"
GB = 10**9
MACHINE = {"memory_bytes": 24 * GB, "disk_bytes": 100 * GB}  # a 24 GB machine


def refused(config, *fragments, **options) -> str:
    with pytest.raises(ConfigError) as info:
        check_run_budget(config, **{**MACHINE, **options})
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Cached datasets are looked up relative to the working directory: start from none.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCIML_MEMORY_BYTES", raising=False)
    monkeypatch.delenv("SCIML_DISK_BYTES", raising=False)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_repository_configs_fit_a_24_gb_machine(path):
    for model in ("pig", "mlp") if path.stem.startswith("pinn_") else (None,):
        config = load_config(path, [f"model.name={model}"] if model else [])
        check_run_budget(config, **MACHINE)
        assert estimate_run(config).total_memory < 24 * GB


def test_a_streamed_dataset_counts_on_disk_not_in_memory():
    config = load_config(REPO / "experiments" / "darcy_stream.toml")
    needs = estimate_run(config)
    assert "dataset" not in needs.memory and needs.disk > 4 * GB
    in_memory = estimate_run(
        load_config(REPO / "experiments" / "darcy_stream.toml", ["data.stream=false"])
    )
    assert in_memory.memory["dataset"] == needs.disk
    refused(config, "'data.n_train' = 128000", "on disk in 'data'", "1 GB are free", disk_bytes=GB)
    check_run_budget(config, allow_large=True, memory_bytes=GB, disk_bytes=GB)


# --- the reported cases (issue 16, defect 1) -----------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.resolution=1000000000", "data.resolution"),
        ("model.projection_channels=1000000000", "model.projection_channels"),
        ("model.depth=100000000", "model.depth"),
        ("data.n_train=1000000000000", "data.n_train"),
        ("model.ensemble=1000000", "model.ensemble"),  # every member is held and run at once
    ],
)
def test_reported_sizes_are_refused_naming_the_key(override, key):
    config = load_config(QUICKSTART, [override])
    start = time.perf_counter()
    message = refused(config, f"config key '{key}' = {override.split('=')[1]} is invalid: ")
    assert time.perf_counter() - start < 0.5
    assert "memory" in message or "32-bit" in message


def test_messages_say_what_is_needed_and_what_is_available():
    config = load_config(QUICKSTART, ["data.resolution=100000"])
    message = refused(config, "config key 'data.resolution' = 100000 is invalid: the run would ")
    assert message.endswith(
        "need about 688 TB of memory (one batch 660 TB, dataset 20 TB, data generation 7.68 "
        "TB, model 14.3 MB) but this machine has 24 GB available; lower it, or pass "
        "--allow-large to run anyway"
    ), message
    message = refused(config, memory_bytes=2**50)  # a 1 PiB machine: the disk is too small
    assert message.endswith(
        "the dataset would need about 20 TB on disk in 'data' but 100 GB are free there; lower "
        "it, or pass --allow-large to run anyway"
    ), message


def test_allow_large_runs_the_merely_large_but_not_the_impossible():
    large = load_config(QUICKSTART, ["data.resolution=8192", "data.n_train=2000"])
    refused(large, "'data.resolution' = 8192", "of memory")
    check_run_budget(large, allow_large=True, **MACHINE)
    # Beyond 32-bit indices: never, and never an OverflowError from inside JAX.
    huge = load_config(QUICKSTART, ["data.n_train=1000000000000"])
    message = refused(huge, allow_large=True)
    assert message == (
        "config key 'data.n_train' = 1000000000000 is invalid: data.n_train + data.n_test = "
        f"1000000000050, but JAX indexes arrays and counts steps with 32-bit integers: at most "
        f"{INDEX_LIMIT}, even with --allow-large"
    )
    # More memory than any machine has: also refused with --allow-large.
    refused(load_config(QUICKSTART, ["model.depth=100000000"]), "'model.depth'", "any single")
    with pytest.raises(ConfigError, match="more than any single machine has; lower it$"):
        check_run_budget(load_config(QUICKSTART, ["model.depth=100000000"]), allow_large=True)


def test_a_model_that_takes_hours_to_build_is_refused_even_with_memory_to_spare():
    config = load_config(REPO / "experiments" / "burgers_fno.toml", ["model.depth=200000"])
    message = refused(config, "config key 'model.depth' = 200000 is invalid: ", memory_bytes=2**49)
    assert "setting up the run would take about" in message and "model build" in message
    check_run_budget(config, allow_large=True, memory_bytes=2**49)


def test_the_key_named_is_the_one_that_contributes_most():
    # Both are large; the resolution (quadratic in a 2-D grid) dominates the dataset.
    config = load_config(QUICKSTART, ["data.resolution=50000", "data.n_train=100000"])
    refused(config, "'data.resolution' = 50000")
    config = load_config(QUICKSTART, ["data.resolution=64", "data.n_train=100000000"])
    refused(config, "'data.n_train' = 100000000")
    config = load_config(REPO / "experiments" / "darcy_mgno.toml", ["model.channels=[100000]"])
    refused(config, "'model.channels' = [100000]")


# --- `sciml data` --------------------------------------------------------------------------


def data_refused(*args, **options) -> str:
    with pytest.raises(ConfigError) as info:
        check_data_budget(*args, **{**MACHINE, **options})
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_sciml_data_names_the_flag(tmp_path):
    out = tmp_path / "d.h5"
    message = data_refused("darcy", 100, 1_000_001, {}, out)
    assert message.startswith("--resolution 1000001 is invalid: generating the data would need")
    assert "pass --allow-large" in message
    message = data_refused("navier_stokes", 100, 64, {"record_steps": 10**8}, out)
    assert message.startswith("--record-steps 100000000 is invalid: "), message
    message = data_refused("darcy", 10**9, 64, {"solve_resolution": 64}, out)
    assert message.startswith("--n 1000000000 is invalid: "), message
    message = data_refused("darcy", 10, 64, {"solve_resolution": 630001}, out)
    assert message.startswith("--solve-resolution 630001 is invalid: "), message
    message = data_refused("burgers", 10**12, 64, {}, out, allow_large=True)
    assert message == (
        "--n 1000000000000 is invalid: JAX indexes arrays and counts steps with 32-bit integers: "
        "at most 2147483647, even with --allow-large"
    )
    check_data_budget("darcy", 10**6, 64, {"solve_resolution": 64}, out, allow_large=True)
    check_data_budget("navier_stokes", 1200, 64, {"solve_resolution": 256}, out, **MACHINE)


def test_data_estimate_counts_the_file_and_the_generator(tmp_path):
    needs = estimate_data("navier_stokes", 10, 64, {"record_steps": 20}, tmp_path / "x.h5")
    assert needs.disk == 10 * (1 + 20) * 64 * 64 * 4
    assert needs.disk_path == str(tmp_path)
    assert needs.memory["data generation"] > 12 * 256**2 * 4  # one solve at 256^2


# --- the machine ---------------------------------------------------------------------------


def test_the_machine_can_be_overridden_by_the_environment(monkeypatch):
    assert _budget.available_memory() > 0 and _budget.free_disk(".") > 0
    monkeypatch.setenv("SCIML_MEMORY_BYTES", "2e9")
    monkeypatch.setenv("SCIML_DISK_BYTES", "1000")
    assert _budget.available_memory() == 2 * GB and _budget.free_disk("/nowhere/x") == 1000
    config = load_config(QUICKSTART, ["data.resolution=2000"])
    with pytest.raises(ConfigError, match="this machine has 2 GB available"):
        check_run_budget(config)
    monkeypatch.setenv("SCIML_MEMORY_BYTES", "lots")
    with pytest.raises(ConfigError, match="^environment variable SCIML_MEMORY_BYTES = 'lots' is"):
        check_run_budget(config)


def test_format_bytes():
    assert format_bytes(0) == "0 B" and format_bytes(999) == "999 B"
    assert format_bytes(21 * GB) == "21 GB" and format_bytes(7_300_000 * 10**12) == "7.3 EB"
    assert format_bytes(10**30) == "1e+30 B" and format_bytes(10**400) == "more than 1e300 B"


# --- the checks are arithmetic: fast, and allocate nothing large ----------------------------


# Timed as users run it: in a fresh interpreter, without the test-time type checker that
# wraps every function of sciml in this process.
_TIMED_CHECKS = """
import json, sys, time, tracemalloc
from sciml._app.budget import check_run_budget
from sciml._app.config import ConfigError, load_config

quickstart, allen_cahn, memory, disk = sys.argv[1:]
cases = [
    load_config(quickstart, [o])
    for o in ("data.resolution=1000000000", "model.depth=100000000", "data.n_train=1000000000000")
]
cases.append(load_config(allen_cahn))
machine = {"memory_bytes": int(memory), "disk_bytes": int(disk)}
refused = []
for config in cases:  # imports, first file-system lookups
    try:
        check_run_budget(config, **machine)
        refused.append(False)
    except ConfigError:
        refused.append(True)
tracemalloc.start()
start = time.perf_counter()
for config in cases * 10:
    try:
        check_run_budget(config, **machine)
    except ConfigError:
        pass
elapsed = (time.perf_counter() - start) / len(cases * 10)
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"elapsed": elapsed, "peak": peak, "refused": refused}))
"""


def test_a_check_takes_milliseconds_and_allocates_nothing():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _TIMED_CHECKS,
            str(QUICKSTART),
            str(REPO / "experiments" / "pinn_allen_cahn.toml"),
            str(MACHINE["memory_bytes"]),
            str(MACHINE["disk_bytes"]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["refused"] == [True, True, True, False]
    assert result["elapsed"] < 0.01, result
    assert result["peak"] < 1_000_000, result


# --- the estimates follow the code they describe -------------------------------------------


@pytest.mark.parametrize(
    "path",
    [p for p in EXPERIMENTS if not p.stem.startswith(("pinn_", "gp_"))],  # operator configs
    ids=lambda p: p.stem,
)
def test_operator_parameter_counts_within_a_factor_2(path):
    from sciml._app.operator_run import build_model, count_params

    config = load_config(path)
    sizes, _, channels, _ = _budget._operator_model(config)
    model = build_model(config, *channels, key=jax.random.key(0))
    assert 0.5 < sizes.params / count_params(model) < 2, (sizes.params, count_params(model))


@pytest.mark.parametrize("model", ["mlp", "pig"])
@pytest.mark.parametrize("overrides", [[], ["model.pig.covariance='full'", "model.mlp.depth=7"]])
def test_pinn_parameter_counts_within_a_factor_2(model, overrides):
    import equinox as eqx

    from sciml import pinn
    from sciml._app.pinn_run import build_model

    config = load_config(
        REPO / "experiments" / "pinn_poisson.toml", [f"model.name={model}", *overrides]
    )
    problem = pinn.benchmarks.poisson_2d()
    net = build_model(config, problem, key=jax.random.key(0), dtype=jax.numpy.float32)
    actual = sum(x.size for x in jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array)))
    estimated = _budget._pinn_model(config).params
    assert 0.5 < estimated / actual < 2, (estimated, actual)


def test_size_keys_are_config_keys():
    from sciml._app.config import PINN_SCHEMA, SCHEMA

    for keys, schema in (
        (_budget.OPERATOR_SIZE_KEYS, SCHEMA),
        (_budget.PINN_SIZE_KEYS, PINN_SCHEMA),
    ):
        for key in keys:
            node = schema
            for part in key.split("."):
                node = node[part]
            assert isinstance(node.default, int | list), key
    assert math.isclose(INDEX_LIMIT, 2**31 - 1)
