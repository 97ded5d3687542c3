"""`sciml run` for configs with `kind = "pinn"`: one PDE of `sciml.pinn.benchmarks`, or the
user's own (`problem.module`, see `user_problem`), solved with an MLP or a PIG by
`sciml.pinn.solve`."""

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import pinn
from .._atomic import atomic_write_bytes
from .._catalogue import FIELD_ACTIVATIONS, OPTIMIZERS, PINN_OPTIMIZERS, resolve
from ..fields import MLP, PIG
from ..train import chain_callbacks, load_model_file, save_model_file
from ..train import is_writer as train_is_writer
from .config import nonfinite_options
from .errors import ConfigError, show_path
from .tracking import run_trackers
from .user_problem import (
    UserProblem,
    build_user_problem,
    count_keys,
    hard_constraint_drops,
    problem_facts,
)

MODEL_FILE = "model.eqx"  # the trained model, written when a run finishes


def build_problem(config: dict) -> pinn.Problem:
    """The config's problem, with its observations and reference files."""
    return build_user_problem(config)[1]


def build_model(config: dict, problem: pinn.Problem, *, key, dtype, outputs=None):
    """The network of `[model]` for `problem` (`outputs` components, default a scalar),
    in the hard-constraint ansatz if asked."""
    cfg = config["model"][config["model"]["name"]]
    if config["model"]["name"] == "gp":
        return _grid_gp(cfg, problem, outputs, dtype)
    out = "scalar" if outputs is None else outputs
    domain = problem.domain
    lower, upper = domain.bounds
    dim = domain.dim
    if config["model"]["name"] == "mlp":
        periodic = None
        if cfg["periodic"]:
            periodic = [None] * dim
            for cond in problem.conditions.values():
                if isinstance(cond, pinn.Periodic):
                    periodic[cond.axis] = upper[cond.axis] - lower[cond.axis]
        net = MLP(
            dim,
            out,
            width=cfg["width"],
            depth=cfg["depth"],
            activation=resolve(FIELD_ACTIVATIONS[cfg["activation"]]),
            fourier_features=cfg["fourier_features"] or None,
            fourier_scale=cfg["fourier_scale"],
            periodic=periodic,
            input_lower=lower,
            input_upper=upper,
            key=key,
            dtype=dtype,
        )
    else:
        net = PIG(
            dim,
            out,
            num_gaussians=cfg["num_gaussians"],
            feature_dim=cfg["feature_dim"],
            hidden=cfg["hidden"],
            layers=cfg["layers"],
            covariance=cfg["covariance"],
            init_sigma=cfg["init_sigma"] or None,
            lower=lower,
            upper=upper,
            key=key,
            dtype=dtype,
            **({"parametrization": cfg["parametrization"]} if cfg["covariance"] == "full" else {}),
        )
    if config["model"]["hard_constraint"]:
        net = pinn.HardConstraint(net, domain)
    return net


def _grid_gp(cfg: dict, problem: pinn.Problem, outputs, dtype):
    from .. import gp

    if outputs is not None:
        raise ConfigError(
            "config key 'model.name' = 'gp' is invalid: GP-HM solves for one scalar field, the "
            f"problem module declares outputs = {outputs!r}",
            key="model.name",
        )
    frequency = cfg["max_frequency"]
    try:
        return gp.GridGP(
            problem.domain,
            cfg["nodes"],
            components=cfg["components"],
            max_frequency=frequency[0] if len(frequency) == 1 else frequency,
            scale=cfg["scale"] or None,
            jitter=cfg["jitter"],
            max_order=cfg["max_order"],
            dtype=dtype,
        )
    except ValueError as e:
        raise ConfigError(
            f"config key 'model.name' = 'gp' is invalid for this problem: {e}", key="model.name"
        ) from None


def _run_gp(config: dict, run_dir: Path, resume: bool, user, problem, model) -> dict:
    """GP-HM (`sciml.gp.solve_gp`) for `model.name = 'gp'`: records in metrics.jsonl, the
    results and the trained model as for the other PINN models."""
    from .. import gp

    if resume:
        raise ConfigError(
            "--resume: a GP-HM run (model.name = 'gp') keeps no checkpoints; start a new run "
            "(it is short: node solves replace most of the steps)",
            key="model.name",
        )
    if user is not None and user.parameters:
        raise ConfigError(
            "config key 'model.name' = 'gp' is invalid: the problem module has unknown "
            "parameters, which GP-HM does not estimate; use model.name = 'mlp' or 'pig'",
            key="model.name",
        )
    train, cfg = config["train"], config["model"]["gp"]
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        model, history = gp.solve_gp(
            problem,
            model,
            steps=train["steps"],
            learning_rate=train["learning_rate"],
            boundary_weight=cfg["boundary_weight"],
            lbfgs_steps=train["lbfgs_steps"],
            gauss_newton=cfg["gauss_newton"],
            polish=cfg["polish"],
            eval_every=train["eval_every"],
            time_limit=train["time_limit"] or None,
            progress=train["progress"],
        )
    except ValueError as e:  # the problem and the grid disagree (orders, conditions)
        raise ConfigError(
            f"config key 'model.name' = 'gp' is invalid: {e}", key="model.name"
        ) from None
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    lines = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write_bytes(run_dir / "metrics.jsonl", lines.encode())
    has_reference = problem.exact is not None or problem.reference is not None
    results = {
        "test_relative_l2": pinn.relative_error(model.mean(), problem) if has_reference else None,
        "steps": train["steps"],
        "lbfgs_steps": train["lbfgs_steps"],
        "steps_done": history[-1]["step"] if history else 0,
        "train_time_s": round(elapsed, 2),
        "train_cpu_s": round(cpu, 2),
        "params": int(sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_array)))),
        "final_loss": history[-1]["loss"] if history else None,
        "active_components": history[-1]["active_components"] if history else None,
    }
    if train_is_writer():
        save_model_file(run_dir / MODEL_FILE, model)
    atomic_write_bytes(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    return results


def num_points(config: dict, problem: pinn.Problem, given=None) -> dict[str, int]:
    """Points per sampled term: the `train.num_*` count of its kind, or `given[term]`."""
    train, given = config["train"], given or {}
    keys = count_keys(problem)
    return {term: given.get(term, train[key.removeprefix("train.")]) for term, key in keys.items()}


def record_module(run_dir: Path, user: UserProblem, *, resume: bool) -> None:
    """A fresh run keeps a copy of the problem module and its sha256 (`problem.json`); a
    resumed one refuses a module that changed since."""
    record = run_dir / "problem.json"
    if resume and record.is_file():
        try:
            started = json.loads(record.read_text())["sha256"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"'{record}' is damaged; the problem module cannot be verified"
            ) from None
        if started != user.sha256:
            raise ConfigError(
                f"config key 'problem.module' = {show_path(user.path)} changed since the run "
                f"started (sha256 {user.sha256[:12]}..., the run's {started[:12]}...); restore "
                f"it (the run keeps a copy: {run_dir / 'problem.py'}) or start a new run",
                key="problem.module",
            )
        return
    atomic_write_bytes(run_dir / "problem.py", Path(user.path).read_bytes())
    text = json.dumps({"module": user.path, "sha256": user.sha256}, indent=2) + "\n"
    atomic_write_bytes(record, text.encode())


def run_pinn(
    config: dict, run_dir: Path, *, resume: bool = False, mesh: jax.sharding.Mesh | None = None
) -> dict:
    train = config["train"]
    nonfinite = nonfinite_options(train)
    if train["float64"]:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if train["float64"] else jnp.float32
    run_dir = Path(run_dir)

    user, problem, model = _setup(config, dtype)
    if user is not None and train_is_writer():
        record_module(run_dir, user, resume=resume)
    if config["model"]["name"] == "gp":
        return _run_gp(config, run_dir, resume, user, problem, model)
    all_terms = problem_facts(config).terms  # with the terms the ansatz replaces
    point_key = jax.random.split(jax.random.key(config["seed"]))[1]
    weights = dict(zip(all_terms, train["weights"], strict=True)) if train["weights"] else {}
    weights = {k: v for k, v in weights.items() if k in problem.terms}
    schedule = optax.exponential_decay(
        train["learning_rate"], train["decay_steps"], train["decay_rate"]
    )
    steps, lbfgs_steps = train["steps"], train["lbfgs_steps"]
    if train["optimizer"] == "lbfgs":  # every iteration L-BFGS
        steps, lbfgs_steps, optimizer = 0, steps + lbfgs_steps, None
    elif train["optimizer"] in PINN_OPTIMIZERS:
        optimizer = resolve(PINN_OPTIMIZERS[train["optimizer"]])()
    else:
        optimizer = optax.inject_hyperparams(resolve(OPTIMIZERS[train["optimizer"]]))(
            learning_rate=schedule
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    with run_trackers(config, run_dir) as trackers:
        model, history = pinn.solve(
            problem,
            model,
            key=point_key,
            steps=steps,
            lbfgs_steps=lbfgs_steps,
            optimizer=optimizer,
            num_points=num_points(config, problem, user.num_points if user else None),
            method=train["sampler"],
            resample_every=train["resample_every"] or None,
            adaptive={} if train["adaptive"] else None,
            weights=weights,
            balancing=train["balancing"],
            balance_every=train["balance_every"],
            eval_every=train["eval_every"],
            dtype=dtype,
            run_dir=run_dir,
            checkpoint_every=train["checkpoint_every"] or None,
            keep_checkpoints=train["keep_checkpoints"],
            resume=resume,
            progress=train["progress"],
            mesh=mesh,
            alignment=train["alignment"],
            callback=chain_callbacks(
                _time_limit(train["time_limit"], train["time_clock"])
                if train["time_limit"]
                else None,
                *trackers,
            ),
            **nonfinite,
        )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    params = eqx.filter(model, eqx.is_inexact_array)
    has_reference = problem.exact is not None or problem.reference is not None
    results = {
        "test_relative_l2": pinn.relative_error(model, problem) if has_reference else None,
        "steps": steps,
        "lbfgs_steps": lbfgs_steps,
        "steps_done": history[-1]["step"] if history else 0,
        "train_time_s": round(elapsed, 2),
        "train_cpu_s": round(cpu, 2),
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "final_loss": history[-1]["train_loss"] if history else None,
    }
    if isinstance(model, pinn.Parameterized):
        for name, value in model.parameters.items():
            value = np.asarray(value)
            results[f"param_{name}"] = value.item() if value.size == 1 else value.tolist()
    if train_is_writer():
        save_model_file(run_dir / MODEL_FILE, model)
    atomic_write_bytes(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    return results


def _time_limit(seconds: float, clock: str):
    """A `solve` callback that stops the run at the first record `seconds` from now, on the
    wall clock or this process's CPU clock."""
    now = time.perf_counter if clock == "wall" else time.process_time
    start = now()
    return lambda model, record: now() - start >= seconds


def _setup(config: dict, dtype) -> tuple[UserProblem | None, pinn.Problem, Any]:
    """The config's problem (without the terms the ansatz replaces, with causal weighting if
    asked) and its untrained model."""
    train = config["train"]
    user, problem = build_user_problem(config)
    if config["model"]["hard_constraint"]:  # the ansatz enforces u = 0: no such term
        drops = hard_constraint_drops(problem) if user is not None else ("boundary",)
        conditions = {k: v for k, v in problem.conditions.items() if k not in drops}
        problem = dataclasses.replace(problem, conditions=conditions)
    if train["causal_chunks"]:
        problem = dataclasses.replace(
            problem,
            causal_chunks=train["causal_chunks"],
            causal_tolerance=train["causal_tolerance"],
        )
    model_key = jax.random.split(jax.random.key(config["seed"]))[0]
    outputs = user.outputs if user is not None else None
    model = build_model(config, problem, key=model_key, dtype=dtype, outputs=outputs)
    if user is not None and user.parameters:
        parameters = {k: jnp.asarray(v, dtype) for k, v in user.parameters.items()}
        model = pinn.Parameterized(model, parameters, positive=user.positive)
    return user, problem, model


def load_trained_pinn(run_dir: Path, config: dict):
    """The trained model of a finished PINN run (a function of one point; a `Parameterized`
    one carries its unknowns), built again from the run's config and problem module."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(
            f"'{run_dir}' holds no trained PINN model ({MODEL_FILE}): the run has not finished "
            f"(resume it: sciml run --resume {run_dir})"
        )
    if config["train"]["float64"]:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if config["train"]["float64"] else jnp.float32
    module = config["problem"]["module"]
    if not module:
        return load_model_file(run_dir / MODEL_FILE, _setup(config, dtype)[2])
    # The module as the run used it: the file itself if unchanged, else the run's copy (with
    # the file's folder on the path, for what it imports).
    try:
        started = json.loads((run_dir / "problem.json").read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        started = None  # no record: the module as it is
    copy = run_dir / "problem.py"
    if started is None or (
        Path(module).is_file() and hashlib.sha256(Path(module).read_bytes()).hexdigest() == started
    ):
        return load_model_file(run_dir / MODEL_FILE, _setup(config, dtype)[2])
    if not copy.is_file():
        raise ConfigError(
            f"config key 'problem.module' = {show_path(module)} changed since the run was "
            f"trained and the run's copy {show_path(copy)} is gone; restore the module to "
            "rebuild the model",
            key="problem.module",
        )
    from_copy = {**config, "problem": {**config["problem"], "module": str(copy)}}
    folder = os.path.dirname(module)
    sys.path.insert(0, folder)
    try:
        skeleton = _setup(from_copy, dtype)[2]
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return load_model_file(run_dir / MODEL_FILE, skeleton)
