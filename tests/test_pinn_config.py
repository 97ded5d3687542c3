"""`sciml run` with `kind = "pinn"` configs: validation, a tiny run end to end, and resume."""

import json
import re
from pathlib import Path

import pytest
from cli import run_sciml

from sciml._app.config import ConfigError, load_config, validate_config

REPO = Path(__file__).parent.parent
CONFIGS = sorted((REPO / "experiments").glob("pinn_*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_benchmark_configs_are_valid_for_both_models(path):
    for model in ("pig", "mlp"):
        config = load_config(path, [f"model.name={model}"])
        assert config["kind"] == "pinn" and config["model"]["name"] == model


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"problem": {"name": "heat"}}, "'problem.name' = 'heat' is invalid: allowed: "),
        ({"model": {"pig": {"num_gaussians": 0}}}, "'model.pig.num_gaussians' = 0 is invalid"),
        ({"model": {"widht": 3}}, "unknown config key 'model.widht'"),
        ({"train": {"weights": [1.0]}}, "give 2 weights, for the terms residual, boundary"),
        (
            {"problem": {"name": "allen_cahn"}, "model": {"hard_constraint": True}},
            "'model.hard_constraint' = True is invalid: allowed only for problems with u = 0",
        ),
        ({"train": {"adaptive": True}}, "'train.adaptive' = True is invalid: needs"),
        ({"train": {"causal_chunks": 8}}, "'train.causal_chunks' = 8 is invalid"),
        ({"train": {"steps": 0}}, "train.steps or train.lbfgs_steps must be positive"),
        ({"train": {"sampler": "halton"}}, "'train.sampler' = 'halton' is invalid"),
    ],
)
def test_invalid_pinn_configs(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config({"kind": "pinn", **raw})


TINY = [
    "train.steps=40",
    "train.lbfgs_steps=10",
    "train.eval_every=20",
    "train.num_residual=64",
    "train.num_boundary=32",
    "train.progress=false",
    "model.pig.num_gaussians=16",
]


def test_pinn_run_end_to_end_and_resume(tmp_path):
    sets = [a for s in TINY for a in ("--set", s)]
    config = str(REPO / "experiments" / "pinn_poisson.toml")
    out = run_sciml("run", config, *sets, "--runs-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 < results["test_relative_l2"] < 1.5 and results["params"] > 0
    for name in ("config.toml", "metrics.jsonl", "plots/loss.png", "plots/solution.png"):
        assert (run_dir / name).is_file(), name
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == [20, 40, 50]
    # Resuming a finished run with a larger budget continues from its last checkpoint.
    resumed = run_sciml(
        "run", "--resume", str(run_dir), "--set", "train.lbfgs_steps=20", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == [20, 40, 50, 60]


def test_pinn_run_rejects_bad_override(tmp_path):
    config = str(REPO / "experiments" / "pinn_poisson.toml")
    out = run_sciml("run", config, "--set", "train.weights=[1.0, 2.0, 3.0]", cwd=tmp_path)
    assert out.returncode == 2
    assert "train.weights" in out.stderr and "give 2 weights" in out.stderr
    assert not (tmp_path / "runs").exists()


# --- sizes that no machine runs (issue 16, defect 1) ---------------------------------------


@pytest.mark.parametrize(
    "override, key, fragment",
    [
        ("train.num_residual=1000000000", "train.num_residual", "of memory"),
        ("model.pig.num_gaussians=100000000", "model.pig.num_gaussians", "of memory"),
        ("problem.reference_resolution=100000", "problem.reference_resolution", "of memory"),
        ("problem.reference_resolution=500", "problem.reference_resolution", "reference solve"),
        ("model.mlp.depth=1000000", "model.mlp.depth", "of memory"),
        # With memory to spare, building and compiling a million layers is still refused.
        ("model.mlp.depth=100000", "model.mlp.depth", "model build"),
        ("train.steps=3000000000", "train.steps", "32-bit integers"),
    ],
)
def test_absurd_pinn_sizes_are_refused_naming_the_key(override, key, fragment):
    from sciml._app.budget import check_run_budget

    model = "mlp" if key.startswith("model.mlp") else "pig"
    config = load_config(
        REPO / "experiments/pinn_nonlinear_diffusion.toml", [override, f"model.name={model}"]
    )
    with pytest.raises(ConfigError) as info:
        check_run_budget(config, memory_bytes=2**49 if fragment == "model build" else 24 * 10**9)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"config key '{key}' = {override.split('=')[1]} is invalid: ")
    assert fragment in message, message


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_benchmark_configs_fit_a_24_gb_machine(path):
    from sciml._app.budget import check_run_budget

    for model in ("pig", "mlp"):
        check_run_budget(load_config(path, [f"model.name={model}"]), memory_bytes=24 * 10**9)


def test_time_limit_stops_at_the_first_record_and_alignment_is_recorded(tmp_path):
    """`train.time_limit` ends a run at the first record past it (here the first record, on
    the CPU clock), scored as finished; `train.alignment` adds the gradient-alignment entries
    to records."""
    from sciml._app.config import load_config
    from sciml._app.experiment import run_experiment

    config = load_config(
        REPO / "experiments" / "pinn_poisson.toml",
        [
            *TINY,
            "train.time_limit=1e-9",
            "train.time_clock=cpu",
            "train.alignment=true",
            "model.name=mlp",
        ],
    )
    results = run_experiment(config, tmp_path / "run")
    assert results["steps_done"] == 20 and results["test_relative_l2"] > 0
    assert results["train_cpu_s"] > 0
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert -1.0 <= record["alignment"] <= 1.0
    assert record["alignment"] == pytest.approx(record["cos_residual_boundary"])
    assert record["grad_norm_residual"] > 0 and record["grad_norm_boundary"] > 0


def test_lbfgs_as_the_optimizer_runs_every_iteration_as_lbfgs(tmp_path):
    """`train.optimizer = "lbfgs"`: train.steps + train.lbfgs_steps L-BFGS iterations and no
    first-order phase, so that one `--sweep train.optimizer=...` compares all four."""
    from sciml._app.config import load_config
    from sciml._app.experiment import run_experiment

    config = load_config(
        REPO / "experiments" / "pinn_poisson.toml", [*TINY, "train.optimizer=lbfgs"]
    )
    results = run_experiment(config, tmp_path / "run")
    assert (results["steps"], results["lbfgs_steps"]) == (0, 50)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert {r["phase"] for r in records} == {"lbfgs"} and records[-1]["step"] == 50


GP_CONFIGS = sorted((REPO / "experiments").glob("gp_*.toml"))


@pytest.mark.parametrize("path", GP_CONFIGS, ids=lambda p: p.stem)
def test_gp_configs_are_valid_and_fit_a_24_gb_machine(path):
    from sciml._app.budget import check_run_budget

    config = load_config(path)
    assert config["model"]["name"] == "gp" and config["train"]["float64"]
    check_run_budget(config, memory_bytes=24 * 10**9)


_GP = {"name": "gp", "gp": {"nodes": [20, 20]}}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"model": {"name": "gp"}}, "'model.gp.nodes' = [] is invalid: give 2 node counts"),
        ({"model": {"name": "gp", "gp": {"nodes": [2, 20]}}}, "'model.gp.nodes' = [2, 20] is"),
        ({"model": _GP}, "'train.float64' = False is invalid: GP-HM needs float64"),
        (
            {"model": _GP, "train": {"float64": True, "weights": [1.0, 2.0]}},
            "'train.weights' = [1.0, 2.0] is invalid: not with model.name = 'gp'",
        ),
        (
            {"model": {"name": "gp", "gp": {"nodes": [100, 100], "gauss_newton": 1}}},
            "'model.gp.gauss_newton' = 1 is invalid: solves densely in the nodes: at most 6000",
        ),
        (
            {"model": {"name": "gp", "gp": {"nodes": [20, 20], "max_frequency": [1.0] * 3}}},
            "'model.gp.max_frequency' = [1.0, 1.0, 1.0] is invalid: give 1 or 2 numbers",
        ),
        (
            {"model": _GP, "train": {"float64": True, "optimizer": "soap"}},
            "'train.optimizer' = 'soap' is invalid: GP-HM trains with 'adam'",
        ),
    ],
)
def test_invalid_gp_configs(raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"kind": "pinn", **raw})


@pytest.mark.slow
def test_gp_run_end_to_end(tmp_path):
    """GP-HM from its config on the multiscale 1-D Poisson case at a small grid: the run
    writes its records, results and model like the PINNs, `sciml.load_model` returns the
    `GridGP`, and `--resume` is refused in one line (GP-HM keeps no checkpoints)."""
    import jax.numpy as jnp

    import sciml

    sets = ["model.gp.nodes=[120]", "train.steps=200", "train.progress=false"]
    config = str(REPO / "experiments" / "gp_poisson_1d_multiscale.toml")
    out = run_sciml(
        "run", config, *[a for s in sets for a in ("--set", s)], "--runs-dir", "runs", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test_relative_l2"] < 1e-3 and results["steps_done"] == 200
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [200]
    model = sciml.load_model(run_dir)
    x = jnp.array([0.3])
    exact = jnp.sin(0.3) + 0.1 * jnp.sin(6.0) + 0.05 * jnp.cos(30.0)
    assert abs(float(model.mean()(x)) - float(exact)) < 1e-2
    resumed = run_sciml("run", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode != 0
    assert (
        "keeps no checkpoints" in resumed.stderr and len(resumed.stderr.strip().splitlines()) == 1
    )
