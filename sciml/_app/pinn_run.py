"""`sciml run` for configs with `kind = "pinn"`: one PDE of `sciml.pinn.benchmarks`, solved
with an MLP or a PIG by `sciml.pinn.solve`."""

import dataclasses
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .. import pinn
from .._atomic import atomic_write_bytes
from .._catalogue import FIELD_ACTIVATIONS, PINN_BENCHMARKS, resolve
from ..fields import MLP, PIG
from .config import nonfinite_options


def build_problem(config: dict) -> pinn.Problem:
    name = config["problem"]["name"]
    factory = pinn.benchmarks.BENCHMARKS[name]
    resolution = config["problem"]["reference_resolution"]
    if resolution and PINN_BENCHMARKS[name].reference is not None:
        return factory(resolution=resolution)
    return factory()


def build_model(config: dict, problem: pinn.Problem, *, key, dtype):
    cfg = config["model"][config["model"]["name"]]
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
            "scalar",
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
            "scalar",
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


def num_points(config: dict, problem: pinn.Problem) -> dict[str, int]:
    train = config["train"]
    counts = {
        "residual": train["num_residual"],
        "boundary": train["num_boundary"],
        "initial": train["num_initial"],
        "periodic": train["num_periodic"],
    }
    return {term: counts[term] for term in problem.terms}


def run_pinn(
    config: dict, run_dir: Path, *, resume: bool = False, mesh: jax.sharding.Mesh | None = None
) -> dict:
    train = config["train"]
    nonfinite = nonfinite_options(train)
    if train["float64"]:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if train["float64"] else jnp.float32
    run_dir = Path(run_dir)

    problem = build_problem(config)
    if config["model"]["hard_constraint"]:  # the ansatz enforces u = 0: no boundary term
        conditions = {k: v for k, v in problem.conditions.items() if k != "boundary"}
        problem = dataclasses.replace(problem, conditions=conditions)
    if train["causal_chunks"]:
        problem = dataclasses.replace(
            problem,
            causal_chunks=train["causal_chunks"],
            causal_tolerance=train["causal_tolerance"],
        )
    model_key, point_key = jax.random.split(jax.random.key(config["seed"]))
    model = build_model(config, problem, key=model_key, dtype=dtype)
    terms = PINN_BENCHMARKS[config["problem"]["name"]].terms
    weights = dict(zip(terms, train["weights"], strict=True)) if train["weights"] else {}
    weights = {k: v for k, v in weights.items() if k in problem.terms}
    schedule = optax.exponential_decay(
        train["learning_rate"], train["decay_steps"], train["decay_rate"]
    )
    start = time.perf_counter()
    model, history = pinn.solve(
        problem,
        model,
        key=point_key,
        steps=train["steps"],
        lbfgs_steps=train["lbfgs_steps"],
        learning_rate=schedule,
        num_points=num_points(config, problem),
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
        **nonfinite,
    )
    elapsed = time.perf_counter() - start
    params = eqx.filter(model, eqx.is_inexact_array)
    results = {
        "test_relative_l2": pinn.relative_error(model, problem),
        "steps": train["steps"],
        "lbfgs_steps": train["lbfgs_steps"],
        "train_time_s": round(elapsed, 2),
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "final_loss": history[-1]["train_loss"] if history else None,
    }
    atomic_write_bytes(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    return results
