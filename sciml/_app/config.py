"""Experiment configs: a declarative schema, TOML loading, `--set` overrides and validation.

Every key a config may hold is declared in `SCHEMA` with its type, default and allowed values,
so that a typo or an impossible value is reported before any work starts, in one line naming the
key, the value and what is allowed. The choices that name things (recipes, benchmarks,
activations, policies) and the recipes' option keys come from `sciml._catalogue`.

A validated config stays a plain dict of dicts: it is what `config.toml` in a run directory
holds, what `--set` and sweeps edit by dotted key and what the checks here walk. Frozen
dataclasses per section would declare every key a second time (the schema is its one owner)
or, generated from the schema, give no static checking in return.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._catalogue import (
    FIELD_ACTIVATIONS,
    NONFINITE_POLICIES,
    OPERATOR_ACTIVATIONS,
    OPTIMIZERS,
    PINN_BENCHMARKS,
    PINN_OPTIMIZERS,
    RECIPE_OPTIONS,
    RECIPES,
    ROLLBACK_DEFAULTS,
    TRACKERS,
    get_recipe,
)
from .._validate import ArgumentError
from .errors import ConfigError, show_value

_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One config key: its type, default, allowed values and a short description."""

    type: type | tuple[type, ...]
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""
    help: str = ""
    item_type: type | None = None  # element type when `type` is list


def _positive(x):
    return x > 0


def _nonnegative(x):
    return x >= 0


def _probability(x):
    return 0 < x <= 1


_ACTIVATIONS = tuple(OPERATOR_ACTIVATIONS)


def _devices(value) -> bool:
    return value == "all" or (isinstance(value, int) and value >= 1)


_DEVICES = Option(
    (int, str),
    1,
    check=_devices,
    allowed="'all' or an integer >= 1",
    help="devices to train on, data-parallel ('all': every local device; 1: the plain "
    "single-device path)",
)

_POLICIES = [f"{name} ({what})" for name, what in NONFINITE_POLICIES.items()]
_ON_NONFINITE = Option(
    str,
    next(iter(NONFINITE_POLICIES)),
    choices=tuple(NONFINITE_POLICIES),
    help="what a NaN or Inf in the loss, the gradient or an update does: "
    + ", ".join(_POLICIES[:-1])
    + " or "
    + _POLICIES[-1],
)
_ROLLBACK_LR_FACTOR = Option(
    float,
    ROLLBACK_DEFAULTS["rollback_lr_factor"],
    check=lambda x: 0 < x < 1,
    allowed="0 < factor < 1",
    help="learning-rate factor per rollback (train.on_nonfinite = 'rollback')",
)
_MAX_ROLLBACKS = Option(
    int,
    ROLLBACK_DEFAULTS["max_rollbacks"],
    check=_positive,
    allowed=">= 1",
    help="rollbacks before giving up (train.on_nonfinite = 'rollback')",
)

# The hidden widths of DeepONet's branch and trunk networks.
_WIDTHS = Option(
    list,
    [128, 128],
    item_type=int,
    check=lambda w: all(k >= 1 for k in w),
    allowed="positive integers",
)

# The `[train]` keys of a run's life, the same for operator and PINN runs.
_RUN_KEYS = {
    "keep_checkpoints": Option(int, 3, check=_positive, allowed=">= 1"),
    "progress": Option(bool, True),
    "devices": _DEVICES,
    "on_nonfinite": _ON_NONFINITE,
    "rollback_lr_factor": _ROLLBACK_LR_FACTOR,
    "max_rollbacks": _MAX_ROLLBACKS,
}

# Experiment trackers (sciml.train.*Tracker), both kinds of config.
_LOG = {
    "trackers": Option(
        list,
        [],
        item_type=str,
        check=lambda names: len(set(names)) == len(names) and all(n in TRACKERS for n in names),
        allowed="distinct names of tensorboard, wandb, mlflow (none: [])",
        help="send every record to these trackers too (extras: pip install "
        "'sciml[tensorboard]' etc.); tensorboard writes RUN/tensorboard",
    ),
    "project": Option(
        str, "sciml", check=bool, allowed="a non-empty name", help="W&B project, MLflow experiment"
    ),
    "wandb_mode": Option(
        str,
        "default",
        choices=("default", "online", "offline", "disabled"),
        help="W&B mode (default: wandb's own setting, e.g. WANDB_MODE)",
    ),
    "mlflow_uri": Option(str, "", help="MLflow tracking URI (empty: MLflow's default, ./mlruns)"),
}

_OPTIMIZER = Option(
    str,
    next(iter(OPTIMIZERS)),
    choices=tuple(OPTIMIZERS),
    help="first-order optimiser: adam, or soap (Adam in the eigenbasis of Shampoo's "
    "preconditioner, sciml.train.soap)",
)
_PINN_OPTIMIZER = Option(
    str,
    next(iter(OPTIMIZERS)),
    choices=(*OPTIMIZERS, *PINN_OPTIMIZERS, "lbfgs"),
    help="adam, soap (sciml.train.soap), natural_gradient (energy natural gradient / "
    "Gauss-Newton with a line search, sciml.pinn.NaturalGradient; train.learning_rate unused) "
    "for the train.steps, or lbfgs (train.steps + train.lbfgs_steps L-BFGS iterations, no "
    "first-order phase), so that --sweep train.optimizer=adam,soap,natural_gradient,lbfgs "
    "compares them",
)

_KIND = Option(
    str,
    "operator",
    choices=("operator", "pinn"),
    help="operator: learn a solution operator from data; pinn: solve one PDE (sciml.pinn)",
)


def _recipe_options() -> dict[str, Option]:
    """The `[data]` keys of the recipes' options: a number (0: the recipe's default) or a
    flag."""
    options = {}
    for name, option in RECIPE_OPTIONS.items():
        if option.type is bool:
            options[name] = Option(bool, False, help=option.help)
        else:
            allowed = ">= 0 (0: the recipe's default)"
            options[name] = Option(
                option.type, option.type(0), check=_nonnegative, allowed=allowed, help=option.help
            )
    return options


SCHEMA: dict[str, dict[str, Option] | Option] = {
    "kind": _KIND,
    "name": Option(
        str,
        "run",
        # The run directory is NAME-<timestamp>; file names end at 255 bytes.
        check=lambda s: s.replace("-", "").replace("_", "").isalnum() and len(s.encode()) <= 100,
        allowed="letters, digits, '-' and '_', at most 100 characters",
        help="run name; prefix of the run dir",
    ),
    "seed": Option(int, 0, check=_nonnegative, allowed=">= 0", help="PRNG seed for training"),
    "data": {
        "recipe": Option(str, next(iter(RECIPES)), choices=tuple(RECIPES), help="dataset recipe"),
        "resolution": Option(
            int,
            85,
            check=lambda s: s >= 8,
            allowed=">= 8",
            help="grid points per axis of the training data",
        ),
        **_recipe_options(),
        "n_train": Option(int, 1000, check=_positive, allowed=">= 1"),
        "n_test": Option(int, 100, check=_positive, allowed=">= 1"),
        "seed": Option(int, 0, check=_nonnegative, allowed=">= 0", help="data generation seed"),
        "path": Option(
            str,
            "",
            help="dataset file: one written by `sciml data`, or your own (.npz, .npy, .mat, "
            ".h5 / .hdf5, with data.inputs and data.outputs); relative to the config file; "
            "generated (and cached) from data.recipe when empty",
        ),
        "inputs": Option(str, "", help="name of the inputs array in your own data.path file"),
        "outputs": Option(str, "", help="name of the outputs array in your own data.path file"),
        "test_path": Option(
            str,
            "",
            help="your own file of test samples, same array names (default: the last "
            "data.n_test samples of data.path)",
        ),
        "channels": Option(
            str,
            "auto",
            choices=("auto", "none", "first", "last"),
            help="how the arrays of your own file hold channels: none (n, *spatial), first "
            "(n, c, *spatial), last (n, *spatial, c), or auto",
        ),
        "stride": Option(
            int,
            1,
            check=_positive,
            allowed=">= 1",
            help="take every stride-th point of each spatial axis of your own file (the FNO "
            "paper's r)",
        ),
        "cache_dir": Option(str, "data", help="where generated datasets are cached"),
        "stream": Option(
            bool,
            False,
            help="read the training and test data batch by batch from the file instead of "
            "loading them into memory, for datasets larger than memory",
        ),
    },
    "task": {
        "kind": Option(
            str,
            "direct",
            choices=("direct", "rollout", "space_time"),
            help="direct: inputs -> outputs; rollout / space_time: trajectory frames t_in -> "
            "t_out autoregressively (FNO-2D) or as one space-time block (FNO-3D)",
        ),
        "t_in": Option(int, 10, check=_positive, allowed=">= 1", help="input frames"),
        "t_out": Option(int, 40, check=_positive, allowed=">= 1", help="predicted frames"),
    },
    "model": {
        "name": Option(str, "fno", choices=("fno", "mgno", "deeponet")),
        "modes": Option(
            list,
            [12, 12],
            item_type=int,
            check=lambda m: len(m) in (1, 2, 3) and all(k >= 1 for k in m),
            allowed="1 to 3 positive integers, one per spatial axis",
        ),
        "width": Option(int, 32, check=_positive, allowed=">= 1"),
        "depth": Option(int, 4, check=_positive, allowed=">= 1"),
        "activation": Option(str, "gelu", choices=_ACTIVATIONS),
        "grid_features": Option(bool, True),
        "padding": Option(
            int,
            9,
            check=_nonnegative,
            allowed=">= 0",
            help="zero padding per spatial axis for non-periodic domains",
        ),
        "projection_channels": Option(int, 128, check=_positive, allowed=">= 1"),
        "channels": Option(
            list,
            [24],
            item_type=int,
            check=lambda c: len(c) >= 1 and all(k >= 1 for k in c),
            allowed="one positive integer, or one per level",
            help="MgNO channels (per level)",
        ),
        "levels": Option(int, 5, check=_positive, allowed=">= 1", help="MgNO grids"),
        "smoothing_steps": Option(int, 1, check=_positive, allowed=">= 1"),
        "boundary": Option(
            str,
            "",
            choices=("", "zeros", "circular", "reflect"),
            help="MgNO convolution padding; empty: the recipe's (zeros for darcy, circular for "
            "periodic data)",
        ),
        "branch_widths": _WIDTHS,
        "trunk_widths": _WIDTHS,
        "basis": Option(int, 128, check=_positive, allowed=">= 1", help="DeepONet basis size"),
        "sensors": Option(
            int,
            0,
            check=_nonnegative,
            allowed=">= 0 (0: every grid point)",
            help="DeepONet sensors per axis",
        ),
        "stacked": Option(bool, False, help="DeepONet: one branch net per basis function"),
        "ensemble": Option(
            int,
            1,
            check=_positive,
            allowed=">= 1",
            help="members of a deep ensemble, trained together as one vmapped model "
            "(sciml.uq.Ensemble), each with its own initialisation and data order; 1: one model",
        ),
    },
    "train": {
        "epochs": Option(int, 500, check=_positive, allowed=">= 1"),
        "optimizer": _OPTIMIZER,
        "batch_size": Option(int, 20, check=_positive, allowed=">= 1"),
        "learning_rate": Option(float, 1e-3, check=lambda x: 0 < x < 1, allowed="0 < lr < 1"),
        "weight_decay": Option(float, 1e-4, check=_nonnegative, allowed=">= 0"),
        "schedule": Option(str, "step", choices=("step", "cosine", "onecycle", "constant")),
        "step_size": Option(
            int,
            100,
            check=_positive,
            allowed=">= 1",
            help="epochs between learning-rate drops (schedule = 'step')",
        ),
        "gamma": Option(float, 0.5, check=_probability, allowed="0 < gamma <= 1"),
        "loss": Option(str, "relative_l2", choices=("relative_l2", "h1", "mse")),
        "normalize": Option(bool, True, help="unit-Gaussian normalisation of inputs and outputs"),
        "checkpoint_every": Option(int, 1, check=_positive, allowed=">= 1", help="epochs"),
        "eval_every": Option(int, 1, check=_positive, allowed=">= 1", help="epochs"),
        **_RUN_KEYS,
        "model_parallel": Option(
            int,
            1,
            check=_positive,
            allowed=">= 1",
            help="devices of train.devices that split large weights (FNO spectral weights)",
        ),
    },
    "eval": {
        "batch_size": Option(int, 50, check=_positive, allowed=">= 1"),
        "plot_samples": Option(int, 3, check=_nonnegative, allowed=">= 0"),
    },
    "log": _LOG,
    "physics": {
        "pde": Option(
            str,
            "none",
            choices=("none", "darcy"),
            help="a physics loss on the outputs (PINO, sciml.operators.pino_loss): darcy: "
            "-div(a grad u) = physics.forcing with u = 0 on the boundary, for 2-D node-grid "
            "data of one input channel (a) and one output channel (u)",
        ),
        "weight": Option(float, 1.0, check=_nonnegative, allowed=">= 0", help="physics term"),
        "data_weight": Option(
            float, 1.0, check=_nonnegative, allowed=">= 0 (0: physics only)", help="data term"
        ),
        "boundary_weight": Option(float, 1.0, check=_nonnegative, allowed=">= 0"),
        "forcing": Option(float, 1.0, help="the constant right-hand side f"),
    },
    "uncertainty": {
        "calibration": Option(
            int,
            0,
            check=_nonnegative,
            allowed=">= 0 (0: no bands)",
            help="the last samples of the data.n_train training samples, held out from "
            "training to calibrate split-conformal prediction bands per grid point "
            "(sciml.uq.calibrate; scores normalised by the ensemble's spread when "
            "model.ensemble > 1)",
        ),
        "levels": Option(
            list,
            [0.9],
            item_type=float,
            check=lambda levels: (
                len(levels) >= 1
                and len(set(levels)) == len(levels)
                and all(0 < v < 1 for v in levels)
            ),
            allowed="distinct numbers in (0, 1), at least one",
            help="nominal coverages of the bands; results.json gets the test coverage of each",
        ),
    },
}


def _positive_list(length: int | None = None):
    def check(values):
        return (length is None or len(values) == length) and all(v > 0 for v in values)

    return check


PINN_SCHEMA: dict[str, dict[str, Option] | Option] = {
    "kind": _KIND,
    "name": SCHEMA["name"],
    "seed": Option(int, 0, check=_nonnegative, allowed=">= 0", help="PRNG seed (model, points)"),
    "problem": {
        "name": Option(
            str,
            "poisson_2d",
            choices=tuple(PINN_BENCHMARKS),
            help="a problem of sciml.pinn.benchmarks",
        ),
        "module": Option(
            str,
            "",
            help="your own problem: a Python file defining `problem` (a sciml.pinn.Problem), "
            "relative to the config file; it runs like a script (see docs/guide/own_pde.md); "
            "replaces problem.name",
        ),
        "options": Option(
            dict,
            {},
            help="keyword arguments of the module's `problem(**options)` (e.g. noise = 0.01)",
        ),
        "reference_resolution": Option(
            int, 0, check=_nonnegative, allowed=">= 0 (0: the problem's default)"
        ),
        "reference": Option(
            str,
            "",
            help="a reference solution for errors and plots: .npz, .mat or HDF5, relative to "
            "the config file",
        ),
        "reference_points": Option(str, "x", help="its array of points (n, dim)"),
        "reference_values": Option(
            str, "u", help="its array of values: (n,) or (n, c), or on the reference_axes grid"
        ),
        "reference_axes": Option(
            list,
            [],
            item_type=str,
            allowed="names of the file's coordinate vectors, one per dimension",
            help="values on the product grid of these vectors (e.g. ['x', 't']) instead of "
            "reference_points",
        ),
        "observations": Option(
            str,
            "",
            help="measurements as the loss term 'observations': .npz, .mat or HDF5, relative "
            "to the config file",
        ),
        "observation_points": Option(str, "x", help="its array of points (n, dim)"),
        "observation_values": Option(str, "u", help="its array of values (n,) or (n, c)"),
        "observation_weight": Option(float, 1.0, check=_nonnegative, allowed=">= 0"),
    },
    "model": {
        "name": Option(
            str,
            "mlp",
            choices=("mlp", "pig", "gp"),
            help="which model trains: the [model.mlp], [model.pig] or [model.gp] table (gp: "
            "GP-HM, sciml.gp.solve_gp); a config may describe several, so that one file runs "
            "the comparison",
        ),
        "hard_constraint": Option(
            bool, False, help="enforce u = 0 on the boundary by the ansatz distance x network"
        ),
        "mlp": {
            "width": Option(int, 64, check=_positive, allowed=">= 1"),
            "depth": Option(int, 4, check=_positive, allowed=">= 1", help="hidden layers"),
            "activation": Option(str, "tanh", choices=tuple(FIELD_ACTIVATIONS)),
            "fourier_features": Option(
                int, 0, check=_nonnegative, allowed=">= 0 (0: none)", help="random features"
            ),
            "fourier_scale": Option(float, 1.0, check=_positive, allowed="> 0"),
            "periodic": Option(bool, False, help="exact periodic embedding of periodic axes"),
        },
        "pig": {
            "num_gaussians": Option(int, 400, check=_positive, allowed=">= 1"),
            "feature_dim": Option(int, 4, check=_positive, allowed=">= 1"),
            "hidden": Option(int, 16, check=_positive, allowed=">= 1", help="MLP width"),
            "layers": Option(int, 2, check=_positive, allowed=">= 1", help="MLP hidden layers"),
            "covariance": Option(str, "diagonal", choices=("diagonal", "full")),
            "parametrization": Option(str, "cholesky", choices=("cholesky", "rotation")),
            "init_sigma": Option(
                float, 0.0, check=_nonnegative, allowed=">= 0 (0: from the mean spacing)"
            ),
        },
        "gp": {
            "nodes": Option(
                list,
                [],
                item_type=int,
                check=lambda n: all(k >= 3 for k in n),
                allowed="node counts >= 3, one per axis of the problem's box (time last)",
            ),
            "components": Option(int, 30, check=_positive, allowed=">= 1", help="per axis"),
            "max_frequency": Option(
                list,
                [20.0],
                item_type=float,
                check=lambda f: bool(f) and all(x > 0 for x in f),
                allowed="positive cycles per unit length: one for all axes or one per axis",
                help="the initial mixture means span 0 .. max_frequency",
            ),
            "scale": Option(
                float,
                0.0,
                check=_nonnegative,
                allowed=">= 0 (0: 1 / (pi sqrt 2))",
                help="initial spectral width of the components",
            ),
            "jitter": Option(float, 1e-6, check=_positive, allowed="> 0"),
            "max_order": Option(
                int, 2, check=_positive, allowed=">= 1", help="highest derivative per coordinate"
            ),
            "gauss_newton": Option(
                int,
                0,
                check=_nonnegative,
                allowed=">= 0",
                help="exact node solves after every train.eval_every steps (at most 6000 nodes)",
            ),
            "polish": Option(
                int, 0, check=_nonnegative, allowed=">= 0", help="exact node solve at the end"
            ),
            "boundary_weight": Option(
                float, 200.0, check=_positive, allowed="> 0", help="every condition's weight"
            ),
        },
    },
    "train": {
        "steps": Option(int, 10000, check=_nonnegative, allowed=">= 0"),
        "optimizer": _PINN_OPTIMIZER,
        "learning_rate": Option(float, 1e-3, check=lambda x: 0 < x < 1, allowed="0 < lr < 1"),
        "decay_rate": Option(
            float, 0.9, check=_probability, allowed="0 < rate <= 1", help="exponential decay"
        ),
        "decay_steps": Option(int, 2000, check=_positive, allowed=">= 1"),
        "lbfgs_steps": Option(int, 0, check=_nonnegative, allowed=">= 0"),
        "num_residual": Option(int, 4096, check=_positive, allowed=">= 1"),
        "num_boundary": Option(int, 512, check=_positive, allowed=">= 1"),
        "num_initial": Option(int, 512, check=_positive, allowed=">= 1"),
        "num_periodic": Option(int, 256, check=_positive, allowed=">= 1"),
        "sampler": Option(str, "uniform", choices=("uniform", "sobol", "lhs", "grid")),
        "resample_every": Option(
            int, 0, check=_nonnegative, allowed=">= 0 (0: fixed points)", help="steps"
        ),
        "adaptive": Option(bool, False, help="residual-based adaptive resampling (RAD)"),
        "balancing": Option(str, "fixed", choices=("fixed", "grad_norm")),
        "balance_every": Option(int, 1000, check=_positive, allowed=">= 1"),
        "weights": Option(
            list,
            [],
            item_type=float,
            check=lambda w: all(x > 0 for x in w),
            allowed="positive numbers, one per loss term in the problem's order",
            help="initial loss weights, e.g. [1.0, 100.0] for residual, boundary",
        ),
        "causal_chunks": Option(int, 0, check=_nonnegative, allowed=">= 0 (0: off)"),
        "causal_tolerance": Option(float, 1.0, check=_positive, allowed="> 0"),
        "float64": Option(bool, False, help="train in double precision"),
        "eval_every": Option(int, 1000, check=_positive, allowed=">= 1", help="steps"),
        "time_limit": Option(
            float,
            0.0,
            check=_nonnegative,
            allowed=">= 0 (0: none)",
            help="seconds of training in this session (compilation included): the run stops "
            "at the first record past it, checkpointed and scored as a finished run",
        ),
        "time_clock": Option(
            str,
            "wall",
            choices=("wall", "cpu"),
            help="the clock of train.time_limit: wall time, or this process's CPU time (the "
            "same budget for single-threaded runs on a machine that other work shares)",
        ),
        "alignment": Option(
            bool,
            False,
            help="record the gradient alignment of the loss terms at every record "
            "(alignment, grad_norm_<term>, cos_<a>_<b>; sciml.pinn.gradient_alignment)",
        ),
        "checkpoint_every": Option(int, 0, check=_nonnegative, allowed=">= 0 (0: eval_every)"),
        **_RUN_KEYS,
    },
    "log": _LOG,
}


def _validate_pinn(raw: dict, check_data: bool = True) -> dict:
    from .user_problem import check_module_path, problem_facts, read_observations, read_reference

    config = _validate(raw, PINN_SCHEMA)
    train, problem = config["train"], config["problem"]
    if train["steps"] + train["lbfgs_steps"] == 0:
        raise _fail("train.steps", 0, "train.steps or train.lbfgs_steps must be positive")
    module = problem["module"]
    if module:
        # A name at its default is no choice (the resolved form of a config holds every key).
        if problem["name"] != PINN_SCHEMA["problem"]["name"].default:
            raise _fail(
                "problem.name", problem["name"], "give problem.name or problem.module, not both"
            )
        if problem["reference_resolution"]:
            raise _fail(
                "problem.reference_resolution",
                problem["reference_resolution"],
                "applies to the built-in problems only (problem.name); give your own reference "
                "as problem.reference",
            )
    if problem["options"] and not module:
        raise _fail("problem.options", problem["options"], "needs problem.module")
    for key in ("reference", "observations"):
        if problem[key]:
            _check_input_file(f"problem.{key}", problem[key])
    if module and not check_data:
        return config  # a stored config: its module was checked when the run started
    if module:
        check_module_path(module)
    facts = problem_facts(config)
    terms = facts.terms
    if train["weights"] and len(train["weights"]) != len(terms):
        raise _fail(
            "train.weights",
            train["weights"],
            f"give {len(terms)} weights, for the terms {', '.join(terms)}",
        )
    if config["model"]["hard_constraint"] and not facts.hard_constraint_drops:
        zero_dirichlet = ", ".join(n for n, b in PINN_BENCHMARKS.items() if b.zero_dirichlet)
        what = (
            "the problem of problem.module needs a Dirichlet condition with value 0 on the "
            "whole boundary (no faces)"
            if module
            else f"allowed only for problems with u = 0 on the boundary: {zero_dirichlet}"
        )
        raise _fail("model.hard_constraint", True, what)
    if config["model"]["name"] == "gp":
        _check_gp(config, facts.dims)
    if train["causal_chunks"] and not facts.time_dependent:
        raise _fail("train.causal_chunks", train["causal_chunks"], "needs a time-dependent problem")
    if train["adaptive"] and not train["resample_every"]:
        raise _fail("train.adaptive", True, "needs train.resample_every > 0")
    if check_data:
        if problem["observations"]:
            observations = read_observations(problem)
            if observations.points.shape[1] != facts.dims:
                raise _fail(
                    "problem.observations",
                    problem["observations"],
                    f"its points have {observations.points.shape[1]} coordinates, the "
                    f"problem's {facts.dims}",
                )
        if problem["reference"]:
            read_reference(problem, facts.dims)
    for key in ("module", "reference", "observations"):
        if problem[key]:
            problem[key] = os.path.abspath(problem[key])
    return config


def _check_gp(config: dict, dims: int) -> None:
    """What GP-HM (`model.name = 'gp'`) needs of the rest of a PINN config."""
    gp, train = config["model"]["gp"], config["train"]
    if len(gp["nodes"]) != dims:
        raise _fail(
            "model.gp.nodes", gp["nodes"], f"give {dims} node counts, one per axis of the problem"
        )
    if len(gp["max_frequency"]) not in (1, dims):
        raise _fail("model.gp.max_frequency", gp["max_frequency"], f"give 1 or {dims} numbers")
    if (gp["gauss_newton"] or gp["polish"]) and math.prod(gp["nodes"]) > 6000:
        key = "model.gp.gauss_newton" if gp["gauss_newton"] else "model.gp.polish"
        raise _fail(
            key,
            gp[key.rsplit(".", 1)[1]],
            f"solves densely in the nodes: at most 6000, model.gp.nodes gives "
            f"{math.prod(gp['nodes'])}",
        )
    refused = {
        "train.float64": (not train["float64"], "GP-HM needs float64: set it to true"),
        "train.optimizer": (train["optimizer"] != "adam", "GP-HM trains with 'adam'"),
        "model.hard_constraint": (config["model"]["hard_constraint"], "not with model.name = 'gp'"),
        "train.causal_chunks": (bool(train["causal_chunks"]), "not with model.name = 'gp'"),
        "train.adaptive": (train["adaptive"], "not with model.name = 'gp' (the points are nodes)"),
        "train.weights": (
            bool(train["weights"]),
            "not with model.name = 'gp': use model.gp.boundary_weight",
        ),
        "train.time_clock": (
            bool(train["time_limit"]) and train["time_clock"] != "wall",
            "GP-HM runs measure wall time",
        ),
    }
    for key, (bad, what) in refused.items():
        if bad:
            section, name = key.split(".")
            value = config[section][name]
            raise _fail(key, value, what)


def _check_input_file(key: str, path: str) -> None:
    if not os.path.isfile(path):
        what = "it is a directory" if os.path.isdir(path) else "no such file"
        raise _fail(key, path, f"{what}; expected a .npz, .mat or HDF5 file")


def describe_schema(schema: dict, config: dict | None = None) -> str:
    """Every key of a schema, one line each, as TOML under its table: the default (with a
    config: the value it resolves to), the allowed values and the key's help."""

    lines: list[str] = []

    def walk(node: dict, values: dict | None, table: str) -> None:
        leaves = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if leaves:
            if table:
                lines.append(f"\n[{table}]")
            for key, option in leaves.items():
                value = option.default if values is None else values[key]
                text = f"{key} = {_inline(value)}" if value is not _REQUIRED else key
                notes = [_describe_type(option)]
                if option.choices is not None:
                    notes.append("one of " + ", ".join(repr(c) for c in option.choices))
                elif option.allowed:
                    notes.append(option.allowed)
                if values is not None and value != option.default:
                    notes.append(f"default {_inline(option.default)}")
                if option.help:
                    notes.append(option.help)
                lines.append(f"{text}  # {'; '.join(notes)}")
        for key, sub in node.items():
            if isinstance(sub, dict):
                name = f"{table}.{key}" if table else key
                walk(sub, None if values is None else values[key], name)

    walk(schema, config, "")
    return "\n".join(lines).strip("\n")


def _inline(value: Any) -> str:
    """A value as inline TOML (a table as `{ key = value, ... }`)."""
    import tomli_w

    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _describe_type(option: Option) -> str:
    if option.type == (int, str):
        return "an integer or a string"
    if option.type is list:
        return f"a list of {option.item_type.__name__}"
    if option.type is float:
        return "a number"
    return {int: "an integer", bool: "true or false", str: "a string", dict: "a table"}[option.type]


def _copy_tree(tree: Any) -> Any:
    """A copy of nested dicts and lists (TOML tables and arrays), made without recursion, so
    that a table thousands of levels deep (`[a.a.a...]`) is reported as an unknown key rather
    than raising `RecursionError`. Leaves (str, numbers, dates) are immutable and shared."""

    def shell(node):
        return {} if isinstance(node, dict) else [None] * len(node)

    if not isinstance(tree, dict | list):
        return tree
    root = shell(tree)
    stack = [(tree, root)]
    while stack:
        source, target = stack.pop()
        for key, value in source.items() if isinstance(source, dict) else enumerate(source):
            if isinstance(value, dict | list):
                target[key] = shell(value)
                stack.append((value, target[key]))
            else:
                target[key] = value
    return root


def _coerce(value: Any, expected: Any) -> Any:
    """An int where a float is expected becomes a float (inf if too large), an integral float
    where an int is expected an int; anything else is returned as it is."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fits_int64(value: Any) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def _check_value(key: str, value: Any, option: Option) -> Any:
    shown = show_value(value)

    def fail(what: str) -> ConfigError:
        return ConfigError(f"config key '{key}' = {shown} is invalid: {what}", key=key)

    expected = option.type
    value = _coerce(value, expected)
    if isinstance(value, bool) and expected is not bool:
        raise fail(f"expected {_describe_type(option)}")
    if not isinstance(value, expected):
        raise fail(f"expected {_describe_type(option)}")
    if not _fits_int64(value):
        raise fail("expected an integer below 2**63 in magnitude")
    if expected is float and not math.isfinite(value):
        raise fail("expected a finite number")
    if expected is list:
        value = [_coerce(v, option.item_type) for v in value]
        if not all(isinstance(v, option.item_type) and not isinstance(v, bool) for v in value):
            raise fail(f"expected {_describe_type(option)}")
        if not all(_fits_int64(v) for v in value):
            raise fail("expected integers below 2**63 in magnitude")
        if option.item_type is float and not all(math.isfinite(v) for v in value):
            raise fail("expected finite numbers")
    if option.choices is not None and value not in option.choices:
        allowed = ", ".join(repr(c) for c in option.choices)
        raise fail(f"allowed: {allowed}")
    if option.check is not None and not option.check(value):
        raise fail(f"allowed: {option.allowed}")
    return value


def _validate(raw: dict, schema: dict, prefix: str = "") -> dict:
    out = {}
    for key in raw:
        if key not in schema:
            full = prefix + key
            allowed = ", ".join(sorted(schema))
            raise ConfigError(
                f"unknown config key {show_value(full)}; allowed here: {allowed}", key=full
            )
    for key, spec in schema.items():
        full = prefix + key
        if isinstance(spec, dict):
            sub = raw.get(key, {})
            if not isinstance(sub, dict):
                raise ConfigError(
                    f"config key '{full}' = {show_value(sub)} is invalid: expected a table",
                    key=full,
                )
            out[key] = _validate(sub, spec, full + ".")
        elif key in raw:
            out[key] = _check_value(full, raw[key], spec)
        elif spec.default is _REQUIRED:
            raise ConfigError(
                f"config key '{full}' is missing; expected {_describe_type(spec)}", key=full
            )
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


# Keys that only mean something for some recipes / models / tasks; setting one elsewhere is an
# error rather than silently ignored.
_MODEL_KEYS = {
    "fno": (
        "modes",
        "width",
        "depth",
        "activation",
        "grid_features",
        "padding",
        "projection_channels",
    ),
    "mgno": ("channels", "levels", "depth", "activation", "smoothing_steps", "boundary"),
    "deeponet": ("branch_widths", "trunk_widths", "basis", "activation", "sensors", "stacked"),
}
# `[model]` keys of every model.
_EVERY_MODEL = ("name", "ensemble")
_TRAJECTORY_RECIPES = " or ".join(
    f"data.recipe = {name!r}" for name, recipe in RECIPES.items() if recipe.trajectory
)


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}' = {show_value(value)} is invalid: {allowed}", key=key)


@dataclass(frozen=True)
class DataShape:
    """What the checks of the task and the model need to know of the data: its spatial
    dimensions, grid points per axis (the smallest axis), the output frames a trajectory task
    may use (`None`: not trajectory data) and the grid (`"nodes"` or `"periodic"`)."""

    dims: int
    resolution: int
    frames: int | None
    grid: str


_OWN_SUFFIXES = (".npz", ".npy", ".mat")
_OWN_KEYS = ("inputs", "outputs", "test_path", "channels", "stride")


def reads_own_file(data: dict) -> bool:
    """Whether a `[data]` table reads the user's own arrays from `data.path` (named by
    `data.inputs` / `data.outputs`, a .npz / .npy / .mat file, or one made by `sciml data
    import`) rather than data of a recipe."""
    if not data["path"]:
        return False
    suffix = Path(data["path"]).suffix.lower()
    if data["inputs"] or data["outputs"] or suffix in _OWN_SUFFIXES:
        return True
    return _imported_recipe(data["path"])


def _imported_recipe(path: str) -> bool:
    """Whether `path` is a sciml dataset file made by `sciml data import` (its `recipe`
    attribute says "imported"); False for anything else, readable or not. The file is read
    once per version (the checks and the size budget ask many times)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return _imported_file(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _imported_file(path: str, mtime_ns: int, size: int) -> bool:
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            recipe = json.loads(f.attrs.get("recipe", "{}"))
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(recipe, dict) and recipe.get("recipe") == "imported"


def _changed(config: dict, section: str, key: str) -> bool:
    # A key left at its default is harmless (a resolved config, as stored in a run directory,
    # holds every key); one set to anything else where it does not apply is an error.
    return config[section][key] != SCHEMA[section][key].default


def _check_recipe_keys(raw: dict, config: dict) -> None:
    recipe = config["data"]["recipe"]
    options = get_recipe(recipe).options
    for key in raw.get("data", {}):
        if key in RECIPE_OPTIONS and key not in options and _changed(config, "data", key):
            raise ConfigError(
                f"config key 'data.{key}' does not apply to data.recipe = {recipe!r}; its "
                f"options are: {', '.join(options)}",
                key=f"data.{key}",
            )
        if key in _OWN_KEYS and _changed(config, "data", key):
            raise ConfigError(
                f"config key 'data.{key}' applies to your own data file only: set data.path "
                "with data.inputs and data.outputs",
                key=f"data.{key}",
            )


def _check_applicable(raw: dict, config: dict, shape: DataShape) -> None:
    def changed(section: str, key: str) -> bool:
        return _changed(config, section, key)

    recipe, model = config["data"]["recipe"], config["model"]["name"]
    for key in raw.get("model", {}):
        if key not in _EVERY_MODEL and key not in _MODEL_KEYS[model] and changed("model", key):
            raise ConfigError(
                f"config key 'model.{key}' does not apply to model.name = {model!r}; its "
                f"options are: {', '.join(_MODEL_KEYS[model])}",
                key=f"model.{key}",
            )
    if shape.frames is None:
        for key in raw.get("task", {}):
            if key != "kind" and changed("task", key):
                raise ConfigError(
                    f"config key 'task.{key}' only applies to trajectory data "
                    f"({_TRAJECTORY_RECIPES}), not to {recipe!r}",
                    key=f"task.{key}",
                )


def recipe_arguments(data: dict) -> dict[str, Any]:
    """The keyword options of the recipe's functions from a `[data]` table: the flags, and the
    numbers that are set (0 means the recipe's default)."""
    options = get_recipe(data["recipe"]).options
    return {k: data[k] for k in options if RECIPE_OPTIONS[k].type is bool or data[k]}


def _check_recipe(config: dict) -> None:
    data = config["data"]
    options = recipe_arguments(data)
    try:
        get_recipe(data["recipe"]).info(data["resolution"], **options)
    except (ValueError, ArithmeticError) as e:
        # The recipe names the offending argument; report it as the config key.
        message = str(e)
        argument = e.argument if isinstance(e, ArgumentError) else None
        named = [k for k in ("resolution", *options) if k == argument]
        if not named and isinstance(e, ArithmeticError):
            # E.g. a tiny dt: the number of time steps overflows.
            named = [k for k in ("dt", "t_final", "nu", "length_scale") if k in options]
            message = f"the recipe cannot be set up with this value ({message})"
        key = named[0] if named else "resolution"
        raise ConfigError(
            f"config key 'data.{key}' = {show_value(data[key])} is invalid for data.recipe = "
            f"{data['recipe']!r}: {message}",
            key=f"data.{key}",
        ) from None


def _check_task(config: dict, shape: DataShape) -> int:
    """Checks the task against the data; returns the spatial dims the model works in."""
    task, model = config["task"], config["model"]
    dims = shape.dims
    kind = task["kind"]
    if kind != "direct" and shape.frames is None:
        raise _fail(
            "task.kind",
            kind,
            "allowed for this recipe: 'direct' (rollout and "
            f"space_time need trajectory data, {_TRAJECTORY_RECIPES})",
        )
    # A recipe's trajectories are always cut into frames; your own file's only for the
    # rollout and space_time tasks (`direct` maps data.inputs to data.outputs).
    if shape.frames is not None and (kind != "direct" or not reads_own_file(config["data"])):
        frames = shape.frames
        if task["t_in"] + task["t_out"] > frames:
            where = "data.outputs" if reads_own_file(config["data"]) else "data.record_steps"
            raise _fail(
                "task.t_out",
                task["t_out"],
                f"task.t_in + task.t_out must be at most the {frames} recorded frames ({where})",
            )
    if kind == "space_time":
        if model["name"] != "fno":
            raise _fail("task.kind", kind, "space_time needs model.name = 'fno' (FNO-3D)")
        dims += 1
    if kind == "rollout" and config["train"]["normalize"]:
        raise _fail(
            "train.normalize",
            True,
            "task.kind = 'rollout' feeds predictions back as inputs, so set train.normalize = "
            "false (pointwise statistics of inputs and outputs differ)",
        )
    return dims


def _check_model(config: dict, dims: int, shape: DataShape) -> None:
    data, model = config["data"], config["model"]
    resolution = shape.resolution
    if model["name"] == "fno":
        if len(model["modes"]) != dims:
            raise _fail(
                "model.modes",
                model["modes"],
                f"give {dims} modes, one per axis of the model's input (data.recipe = "
                f"{data['recipe']!r}, task.kind = {config['task']['kind']!r})",
            )
        if model["padding"] > resolution:
            raise _fail(
                "model.padding", model["padding"], f"allowed at most data.resolution = {resolution}"
            )
        for k in model["modes"][: shape.dims]:
            if resolution + model["padding"] < 2 * k:
                raise _fail(
                    "model.modes",
                    model["modes"],
                    f"a grid of {resolution} points (+{model['padding']} padding) resolves at "
                    f"most {(resolution + model['padding']) // 2} modes per axis",
                )
    elif model["name"] == "mgno":
        levels = model["levels"]
        if levels > resolution.bit_length():
            # More levels than halvings of the grid (and 2 ** (levels - 1) may be huge).
            raise _fail(
                "model.levels",
                levels,
                f"allowed at most {resolution.bit_length()} for data.resolution = {resolution} "
                "(each level halves the grid)",
            )
        if len(model["channels"]) not in (1, levels):
            raise _fail(
                "model.channels",
                model["channels"],
                f"give one entry, or one per level (model.levels = {levels})",
            )
        divisor = 2 ** (levels - 1)
        if resolution % divisor:
            raise _fail(
                "data.resolution",
                resolution,
                f"MgNO with model.levels = {levels} needs a resolution divisible by {divisor}",
            )
    elif model["sensors"]:
        from ..operators._deeponet import sensor_strides

        grid, m = shape.grid, model["sensors"]
        if (
            m > resolution
            or (grid == "nodes" and m < 2)
            or not sensor_strides((resolution,), (m,), grid)
        ):
            raise _fail(
                "model.sensors",
                m,
                f"the sensors must be grid points of data.resolution = {resolution}: use 0 "
                "(all) or a count that evenly subsamples the grid ((s - 1) / (m - 1) whole "
                "on grids with both ends, s / m on periodic grids)",
            )


def _check_file(key: str, path: str) -> None:
    if path and not os.path.isfile(path):
        what = "it is a directory" if os.path.isdir(path) else "no such file"
        raise _fail(
            key,
            path,
            f"{what}; give a dataset file (written by `sciml data`, or your own with "
            "data.inputs and data.outputs), or leave it empty to generate the data",
        )


def _recipe_shape(config: dict) -> DataShape:
    data = config["data"]
    recipe = get_recipe(data["recipe"])
    frames = recipe.channels(**recipe_arguments(data))[1] if recipe.trajectory else None
    return DataShape(recipe.num_spatial_dims, data["resolution"], frames, recipe.grid)


def inspect_own_files(data: dict) -> tuple[Any, Any]:
    """The `ArraysInfo` of data.path and of data.test_path (or `None`), as
    `sciml.data.inspect_arrays` reads them from the files' headers; `ConfigError` naming the
    key otherwise."""
    from ..data import DatasetError, inspect_arrays

    keys = {k: data[k] for k in ("inputs", "outputs", "channels", "stride")}
    for name in ("inputs", "outputs"):
        if not data[name] and not _imported_recipe(data["path"]):
            raise ConfigError(
                f"config key 'data.{name}' is missing: give the name of the {name} array in "
                f"data.path = {show_value(data['path'])}",
                key=f"data.{name}",
            )
    infos = []
    for name in ("path", "test_path"):
        if not data[name]:
            infos.append(None)
            continue
        try:
            infos.append(inspect_arrays(data[name], **keys))
        except DatasetError as e:
            raise ConfigError(
                f"config key 'data.{name}' = {show_value(data[name])} is invalid: {e}",
                key=f"data.{name}",
            ) from None
    train, test = infos
    if test is not None:
        for what in ("in_channels", "out_channels", "spatial"):
            if getattr(test, what) != getattr(train, what):
                raise _fail(
                    "data.test_path",
                    data["test_path"],
                    f"its {what.replace('_', ' ')} {getattr(test, what)} differ from "
                    f"data.path's {getattr(train, what)}",
                )
    return train, test


def _check_own_file(raw: dict, config: dict) -> DataShape:
    """Checks a `[data]` table that reads the user's own file and fills in what the file
    decides: the resolution and, where not given, the sample counts."""
    data, given = config["data"], raw.get("data", {})
    for key in given:
        if (key in RECIPE_OPTIONS or key in ("recipe", "zero_mean")) and _changed(
            config, "data", key
        ):
            raise ConfigError(
                f"config key 'data.{key}' does not apply to data from your own file "
                f"(data.path = {show_value(data['path'])}); it describes a recipe's data",
                key=f"data.{key}",
            )
    train, test = inspect_own_files(data)
    resolution = min(train.spatial)
    if "resolution" in given and data["resolution"] != resolution:
        raise _fail(
            "data.resolution",
            data["resolution"],
            f"data.path holds {resolution} points per axis"
            + (f" after data.stride = {data['stride']}" if data["stride"] > 1 else "")
            + "; leave data.resolution out (subsample with data.stride)",
        )
    data["resolution"] = resolution
    _split_counts(data, given, train.n, None if test is None else test.n)
    return DataShape(len(train.spatial), resolution, train.out_channels, "nodes")


def _split_counts(data: dict, given: dict, n_path: int, n_test_path: int | None) -> None:
    """Fills in data.n_train and data.n_test of the user's own files where not given: every
    sample of data.path and of data.test_path; without a data.test_path, the last fifth of
    data.path (at least one sample) is the test set."""
    if n_test_path is not None:
        for key, available, where in (
            ("n_train", n_path, "data.path"),
            ("n_test", n_test_path, "data.test_path"),
        ):
            if key not in given:
                data[key] = available
            elif data[key] > available:
                raise _fail(
                    f"data.{key}", data[key], f"allowed at most the {available} samples of {where}"
                )
        return
    if n_path < 2:
        raise _fail(
            "data.path",
            data["path"],
            f"it holds {n_path} sample(s); give at least 2 (training and test), or a "
            "data.test_path",
        )
    if "n_train" not in given and "n_test" not in given:
        data["n_test"] = max(1, n_path // 5)
    if "n_train" not in given:
        data["n_train"] = n_path - data["n_test"]
    elif "n_test" not in given:
        data["n_test"] = n_path - data["n_train"]
    if data["n_train"] < 1 or data["n_test"] < 1 or data["n_train"] + data["n_test"] > n_path:
        key = "n_test" if "n_test" in given else "n_train"
        raise _fail(
            f"data.{key}",
            data[key],
            f"data.n_train + data.n_test must be at most the {n_path} samples of data.path, "
            "each at least 1",
        )


def _cross_checks(raw: dict, config: dict) -> None:
    data = config["data"]
    _check_file("data.path", data["path"])
    _check_file("data.test_path", data["test_path"])
    if reads_own_file(data):
        shape = _check_own_file(raw, config)
    else:
        _check_recipe_keys(raw, config)
        _check_recipe(config)
        shape = _recipe_shape(config)
    _check_applicable(raw, config, shape)
    _check_model(config, _check_task(config, shape), shape)
    if config["train"]["batch_size"] > config["data"]["n_train"]:
        raise _fail(
            "train.batch_size",
            config["train"]["batch_size"],
            f"allowed at most data.n_train = {config['data']['n_train']}",
        )
    _check_uncertainty(config)
    _check_physics(config, shape)
    for key in _PATH_KEYS:  # the resolved config (run.json, --resume) works from anywhere
        if data[key]:
            data[key] = os.path.abspath(data[key])


def _check_physics(config: dict, shape: DataShape) -> None:
    physics = config["physics"]
    if physics["pde"] == "none":
        changed = [
            k
            for k in ("weight", "data_weight", "boundary_weight", "forcing")
            if _changed(config, "physics", k)
        ]
        if changed:
            raise _fail(f"physics.{changed[0]}", physics[changed[0]], "needs physics.pde")
        return
    if shape.dims != 2 or shape.grid != "nodes" or config["task"]["kind"] != "direct":
        raise _fail(
            "physics.pde",
            physics["pde"],
            "darcy needs 2-D data on a grid of nodes with its boundary and task.kind = "
            f"'direct' (this config: {shape.dims}-D, {shape.grid} grid, task.kind = "
            f"{config['task']['kind']!r})",
        )
    if physics["weight"] == 0 and physics["data_weight"] == 0:
        raise _fail("physics.weight", 0.0, "physics.weight and physics.data_weight are both 0")
    if config["model"]["ensemble"] > 1:
        raise _fail(
            "physics.pde", physics["pde"], "a physics loss trains one model (model.ensemble = 1)"
        )


def _min_calibration(level: float) -> int:
    """`sciml.uq.min_calibration` (the least n with ceil((n + 1) level) <= n), without
    importing JAX for a config check."""
    n = max(1, math.floor(level / (1 - level)) - 1)
    while math.ceil((n + 1) * level - 1e-9) > n:
        n += 1
    return n


def _check_uncertainty(config: dict) -> None:
    """The calibration split must leave a training batch and hold enough samples for the
    finite-sample quantile of every level; levels need a calibration split."""
    uq, n_train = config["uncertainty"], config["data"]["n_train"]
    batch, n_cal = config["train"]["batch_size"], uq["calibration"]
    if not n_cal:
        if _changed(config, "uncertainty", "levels"):
            raise _fail(
                "uncertainty.levels", uq["levels"], "needs uncertainty.calibration > 0 samples"
            )
        return
    if n_train - n_cal < batch:
        raise _fail(
            "uncertainty.calibration",
            n_cal,
            f"allowed at most data.n_train - train.batch_size = {n_train - batch} (the rest "
            "trains)",
        )
    for level in uq["levels"]:
        if n_cal < _min_calibration(level):
            raise _fail(
                "uncertainty.calibration",
                n_cal,
                f"a band at level {level:g} needs at least {_min_calibration(level)} calibration "
                "samples (ceil((n + 1) level) <= n)",
            )


def applicable(config: dict) -> dict:
    """A copy of a validated operator config without the keys that do not apply to its data,
    model and task (at their defaults, they change nothing): what a run directory stores.
    PINN configs keep both model tables (one file may describe both of its models); their
    problem table loses what its source (a built-in problem or a module) and its files leave
    unused."""
    if config.get("kind") == "pinn":
        out = dict(config)
        problem = out["problem"] = dict(config["problem"])
        unused = ["reference_resolution", "name"] if problem["module"] else ["module", "options"]
        if not problem["reference"]:
            unused += ["reference", "reference_points", "reference_values", "reference_axes"]
        if not problem["observations"]:
            unused += ["observations", "observation_points", "observation_values"]
            unused.append("observation_weight")
        for key in unused:
            del problem[key]
        return out
    out = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in config.items()
    }
    data, model = out["data"], out["model"]
    own = reads_own_file(config["data"])
    for key in list(data):
        if own and (key in RECIPE_OPTIONS or key in ("recipe", "cache_dir")):
            del data[key]
        elif not own and key in _OWN_KEYS:
            del data[key]
        elif not own and key in RECIPE_OPTIONS and key not in get_recipe(data["recipe"]).options:
            del data[key]
    for key in list(model):
        if key not in _EVERY_MODEL and key not in _MODEL_KEYS[model["name"]]:
            del model[key]
    if not out["uncertainty"]["calibration"]:
        del out["uncertainty"]["levels"]  # no bands
    shape_has_frames = own or get_recipe(config["data"]["recipe"]).trajectory
    if not shape_has_frames or (own and out["task"]["kind"] == "direct"):
        out["task"] = {"kind": out["task"]["kind"]}
    return out


def nonfinite_options(train_cfg: dict) -> dict[str, Any]:
    """The `on_nonfinite` keyword arguments of `fit` / `solve` from a `[train]` table; the
    rollback keys set to anything but their defaults under another policy are a
    `ConfigError` rather than silently ignored."""
    policy = train_cfg["on_nonfinite"]
    if policy == "rollback":
        return {
            "on_nonfinite": policy,
            "rollback_lr_factor": train_cfg["rollback_lr_factor"],
            "max_rollbacks": train_cfg["max_rollbacks"],
        }
    for key in ("rollback_lr_factor", "max_rollbacks"):
        if train_cfg[key] != SCHEMA["train"][key].default:
            raise ConfigError(
                f"config key 'train.{key}' = {train_cfg[key]!r} does not apply to "
                f"train.on_nonfinite = {policy!r}; it needs 'rollback'",
                key=f"train.{key}",
            )
    return {"on_nonfinite": policy}


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parses one `--set key.sub=value` override; the value is read as a TOML value.

    A value that is not valid TOML (e.g. `name=my-run`) is taken as a string.
    """
    if "=" not in text:
        raise ConfigError(
            f"--set {show_value(text)} is invalid: expected KEY=VALUE, e.g. train.epochs=10"
        )
    key, value = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or not all(parts):
        raise ConfigError(
            f"--set {show_value(text)} is invalid: expected KEY=VALUE with a dotted key"
        )
    try:
        table = tomllib.loads(f"v = {value}")
    except (ValueError, RecursionError):  # TOMLDecodeError, or an integer too long to read
        table = {}
    # More than `v` (e.g. `3\n[x]`) is not one TOML value either.
    parsed = table["v"] if list(table) == ["v"] else value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Returns a copy of `raw` with each `key.sub=value` override applied."""
    raw = _copy_tree(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {show_value(text)} is invalid: {part!r} is not a table")
        node[parts[-1]] = value
    return raw


def validate_config(raw: dict, *, check_data: bool = True) -> dict:
    """Fills in defaults and checks every key; raises `ConfigError` on the first problem.

    `check_data=False` checks each key alone but not the config against its data files (for
    the stored config of a run, checked when the run started, whose files may be gone)."""
    kind = raw.get("kind", "operator")
    if kind == "pinn":
        config = _validate_pinn(raw, check_data)
    else:
        config = _validate(raw, SCHEMA)
        if check_data:
            _cross_checks(raw, config)
    if check_data:
        _check_trackers(config["log"]["trackers"])
    return config


def _check_trackers(names: list[str]) -> None:
    """Each tracker's package must be importable before a run starts."""
    import importlib.util

    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise _fail(
                "log.trackers",
                names,
                f"the {name} tracker needs the {module} package: pip install 'sciml[{extra}]'",
            )


def load_config(path: str | Path, overrides: list[str] = (), *, check_data: bool = True) -> dict:
    """Reads a TOML config, applies `--set` overrides and validates it (see
    `validate_config` for `check_data`)."""
    path = Path(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"config file {show_value(str(path))} {what}; expected a TOML file")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8-sig"))  # a BOM is harmless
    except OSError as e:
        raise ConfigError(f"config file {show_value(str(path))} cannot be read: {e}") from None
    except (ValueError, RecursionError) as e:
        # TOMLDecodeError, UnicodeDecodeError, an integer too long to read, or deep nesting.
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise ConfigError(
            f"config file {show_value(str(path))} is not valid TOML: {reason}"
        ) from None
    if not raw:
        raise ConfigError(
            f"config file {show_value(str(path))} is empty (no keys); expected TOML keys and "
            'tables, e.g. name = "my-run" and [train]'
        )
    _resolve_paths(raw, path.parent)
    return validate_config(apply_overrides(raw, list(overrides)), check_data=check_data)


_PATH_KEYS = ("path", "test_path")


_PROBLEM_PATH_KEYS = ("module", "reference", "observations")


def _resolve_paths(raw: dict, base: Path) -> None:
    """Files named in a config file (data, a problem module, references, observations) are
    relative to the config file's folder (a `--set` value is relative to the working
    directory, as a shell argument is)."""
    for section, keys in (("data", _PATH_KEYS), ("problem", _PROBLEM_PATH_KEYS)):
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value):
                table[key] = os.path.normpath(os.path.join(os.path.abspath(base), value))
