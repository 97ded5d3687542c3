"""`[problem] module = "my_pde.py"`: a PINN problem defined in the user's own Python file.

The file is run like a script (its folder first on `sys.path`, so it may import files beside
it), once per process and file version, after `train.float64` has taken effect. It defines:

- `problem` (required): a `sciml.pinn.Problem`, or a function returning one, called with the
    keyword arguments of the `[problem.options]` table (e.g. a noise level to sweep);
- `parameters` (optional): the unknowns, `{"nu": 0.05, ...}`: the model becomes
    `pinn.Parameterized(network, parameters, positive=positive)`, read in the residual as
    `u.parameters["nu"]`;
- `positive` (optional): names of `parameters` kept positive (log parametrisation);
- `outputs` (optional): the number of components of the field (default: a scalar field);
- `num_points` (optional): points per loss term by name, over the `train.num_*` counts
    (which go by the condition's kind: boundary conditions `train.num_boundary`, `Initial`
    `train.num_initial`, `Periodic` `train.num_periodic`; `Observations` keep their own).

A `[problem]` table may add measurements (`observations`, a term named "observations") and a
reference solution (`reference`) from `.npz` / `.mat` / HDF5 files, for any problem.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import linecache
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, show_path

MODULE_KEY = "problem.module"
OBSERVATIONS = "observations"
_OPTIONAL = ("parameters", "positive", "outputs", "num_points")


@dataclass(frozen=True, eq=False)
class UserProblem:
    """What a problem module defines (see the module docstring), with the file's sha256."""

    path: str
    sha256: str
    problem: Any  # a sciml.pinn.Problem
    parameters: dict[str, Any]
    positive: tuple[str, ...]
    outputs: int | None
    num_points: dict[str, int]


@dataclass(frozen=True)
class ProblemFacts:
    """What the config checks and the size budget need to know of a problem: its loss terms
    in order, the dimension of its points, the highest derivative order of its residual (2
    assumed for a user's own), whether the ansatz of `model.hard_constraint` can replace
    conditions (and which), whether it is time-dependent, and the point-count key of each
    sampled term."""

    terms: tuple[str, ...]
    dims: int
    order: int
    hard_constraint_drops: tuple[str, ...]
    time_dependent: bool
    count_keys: dict[str, str]


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _module_error(path: str, what: str) -> ConfigError:
    return ConfigError(f"config key '{MODULE_KEY}' = {show_path(path)}: {what}", key=MODULE_KEY)


def _where_in(path: str, error: BaseException) -> str:
    """` (line N)` of the deepest frame of the traceback inside the user's file."""
    if isinstance(error, SyntaxError) and error.filename == path and error.lineno:
        return f" (line {error.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    return f" (line {lines[-1]})" if lines else ""


def _failure(path: str, error: BaseException, doing: str) -> ConfigError:
    message = _one_line(str(error)) or "(no message)"
    if isinstance(error, SyntaxError):
        message = _one_line(error.msg)
    return _module_error(
        path, f"{doing} raised {type(error).__name__}: {message}{_where_in(path, error)}"
    )


def check_module_path(path: str) -> None:
    """The `problem.module` file exists and is a `.py` file (before anything runs)."""
    if not path.endswith(".py"):
        raise _module_error(path, "expected a Python file (.py) defining `problem`")
    if not os.path.isfile(path):
        what = "it is a directory" if os.path.isdir(path) else "no such file"
        raise _module_error(path, f"{what}; expected a Python file defining `problem`")


def load_problem_module(path: str, *, float64: bool, options: dict | None = None) -> UserProblem:
    """Runs the user's problem file once per content (its sha256), precision and `options`
    (the keyword arguments of its `problem()`), and checks what it defines; `ConfigError`
    naming `problem.module`, the file and the problem (an exception with its line in the
    file, or what is missing or wrong)."""
    check_module_path(path)
    try:
        source = Path(path).read_bytes()
    except OSError as e:
        raise _module_error(path, f"cannot be read ({_one_line(e)})") from None
    digest = hashlib.sha256(source).hexdigest()
    key = json.dumps(options or {}, sort_keys=True)
    return _load(os.path.abspath(path), digest, float64, key)


@functools.lru_cache(maxsize=8)
def _load(path: str, digest: str, float64: bool, options: str) -> UserProblem:
    import jax

    from .. import pinn

    options = json.loads(options)
    if float64:
        jax.config.update("jax_enable_x64", True)
    name = f"sciml_problem_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up
    folder = os.path.dirname(path)
    sys.path.insert(0, folder)
    linecache.checkcache(path)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise _failure(path, e, "running the file") from None
    finally:
        if sys.path and sys.path[0] == folder:
            del sys.path[0]
    if not hasattr(module, "problem"):
        raise _module_error(
            path,
            "the file defines no `problem`; expected problem = sciml.pinn.Problem(...) or a "
            "function `problem()` returning one",
        )
    problem = module.problem
    if options and (isinstance(problem, pinn.Problem) or not callable(problem)):
        raise ConfigError(
            f"config key 'problem.options' = {_one_line(repr(options), 80)} is invalid: "
            f"{show_path(path)} defines `problem` as a value; options need a function "
            "`def problem(**options)`",
            key="problem.options",
        )
    if callable(problem) and not isinstance(problem, pinn.Problem):
        try:
            problem = problem(**options)
        except Exception as e:
            raise _failure(
                path, e, f"`problem({', '.join(f'{k}=...' for k in options)})`"
            ) from None
    if not isinstance(problem, pinn.Problem):
        raise _module_error(
            path, f"`problem` is a {type(problem).__name__}, expected a sciml.pinn.Problem"
        )
    parameters = getattr(module, "parameters", None) or {}
    positive = getattr(module, "positive", ())
    outputs = getattr(module, "outputs", None)
    num_points = getattr(module, "num_points", None) or {}
    if not isinstance(parameters, dict) or not all(
        isinstance(k, str) and k.isidentifier() for k in parameters
    ):
        raise _module_error(
            path, f"`parameters` = {_one_line(repr(parameters), 80)} must map names to numbers"
        )
    if isinstance(positive, str) or not all(p in parameters for p in positive):
        raise _module_error(
            path,
            f"`positive` = {_one_line(repr(positive), 80)} must list names of `parameters` "
            f"({', '.join(parameters) or 'none defined'})",
        )
    if outputs is not None and (
        isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1
    ):
        raise _module_error(path, f"`outputs` = {outputs!r} must be an integer >= 1")
    if not isinstance(num_points, dict) or not all(
        k in problem.terms and isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for k, v in num_points.items()
    ):
        raise _module_error(
            path,
            f"`num_points` = {_one_line(repr(num_points), 80)} must map loss terms "
            f"({', '.join(problem.terms)}) to counts >= 1",
        )
    try:  # lists of numbers (vector unknowns) as arrays
        parameters = {
            k: np.asarray(v, dtype=float) if isinstance(v, list | tuple) else v
            for k, v in parameters.items()
        }
    except (TypeError, ValueError):
        raise _module_error(
            path, f"`parameters` = {_one_line(repr(parameters), 80)} must map names to numbers"
        ) from None
    if parameters:
        try:  # the same checks as the model will make, reported now
            pinn.Parameterized(lambda x: x, dict(parameters), positive=tuple(positive))
        except ValueError as e:
            raise _module_error(path, _one_line(str(e))) from None
    return UserProblem(
        path=path,
        sha256=digest,
        problem=problem,
        parameters=dict(parameters),
        positive=tuple(positive),
        outputs=outputs,
        num_points=dict(num_points),
    )


def load_module_of(config: dict) -> UserProblem:
    """`load_problem_module` for a validated config with `problem.module`."""
    cfg = config["problem"]
    return load_problem_module(
        cfg["module"], float64=config["train"]["float64"], options=cfg["options"]
    )


def read_reference(problem_cfg: dict, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The `problem.reference` file's `(points (n, dims), values (n,) or (n, c))`: scattered
    (`reference_points`, `reference_values`) or on the product grid of `reference_axes`."""
    from ..data import DatasetError, read_named

    path, axes = problem_cfg["reference"], problem_cfg["reference_axes"]
    values_key = problem_cfg["reference_values"]
    names = [*axes, values_key] if axes else [problem_cfg["reference_points"], values_key]
    try:
        arrays = read_named(path, names)
    except DatasetError as e:
        raise ConfigError(f"config key 'problem.reference': {e}", key="problem.reference") from None
    values = arrays[values_key]

    def fail(what: str) -> ConfigError:
        return ConfigError(
            f"config key 'problem.reference' = {show_path(path)} is invalid: {what}",
            key="problem.reference",
        )

    if axes:
        if len(axes) != dims:
            raise ConfigError(
                f"config key 'problem.reference_axes' = {axes!r} is invalid: the problem's "
                f"points have {dims} coordinates; name {dims} arrays",
                key="problem.reference_axes",
            )
        lines = [arrays[a].reshape(-1) for a in axes]
        shape = tuple(len(line) for line in lines)
        if values.shape[: len(shape)] != shape or values.ndim > len(shape) + 1:
            raise fail(
                f"{values_key!r} has shape {values.shape}; on the grid of "
                f"{', '.join(axes)} expected {shape} (or {shape} + (components,))"
            )
        grids = np.meshgrid(*lines, indexing="ij")
        points = np.stack([g.reshape(-1) for g in grids], axis=-1)
        values = values.reshape(len(points), *values.shape[len(shape) :])
    else:
        points = arrays[problem_cfg["reference_points"]]
        if points.ndim == 1 and dims == 1:
            points = points[:, None]
        if points.ndim != 2 or points.shape[1] != dims:
            raise fail(
                f"{problem_cfg['reference_points']!r} has shape {points.shape}; expected "
                f"(n, {dims}) points (or set problem.reference_axes for values on a grid)"
            )
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape[:1] != points.shape[:1] or values.ndim > 2:
            raise fail(
                f"{values_key!r} has shape {values.shape}; expected ({len(points)},) or "
                f"({len(points)}, components) values for the {len(points)} points"
            )
    return points, values


def read_observations(problem_cfg: dict):
    """The `problem.observations` file as a `pinn.Observations` condition."""
    from .. import pinn

    try:
        return pinn.Observations.from_file(
            problem_cfg["observations"],
            points=problem_cfg["observation_points"],
            values=problem_cfg["observation_values"],
            weight=problem_cfg["observation_weight"],
        )
    except ValueError as e:
        message = _one_line(str(e), 300).removeprefix("`Observations.from_file`: ")
        raise ConfigError(
            f"config key 'problem.observations': {message}", key="problem.observations"
        ) from None


def hard_constraint_drops(problem) -> tuple[str, ...]:
    """The conditions the ansatz `u = distance x network` (u = 0 on the whole boundary)
    replaces: `Dirichlet` conditions on every face with value 0; empty if there is none."""
    from .. import pinn

    drops = []
    for name, cond in problem.conditions.items():
        if type(cond) is pinn.Dirichlet and cond.faces is None and not callable(cond.value):
            if np.all(np.asarray(cond.value) == 0):
                drops.append(name)
    return tuple(drops)


def count_keys(problem) -> dict[str, str]:
    """The `train.num_*` key that counts each sampled term's points."""
    from .. import pinn

    keys = {"residual": "train.num_residual"}
    for name, cond in problem.conditions.items():
        if isinstance(cond, pinn.Observations):
            continue
        if isinstance(cond, pinn.Initial):
            keys[name] = "train.num_initial"
        elif isinstance(cond, pinn.Periodic):
            keys[name] = "train.num_periodic"
        else:
            keys[name] = "train.num_boundary"
    return keys


def build_user_problem(config: dict):
    """`(UserProblem or None, Problem)`: the config's problem with its observations and
    reference file applied (not the hard-constraint or causal options)."""
    import jax.numpy as jnp

    from .. import pinn
    from .._catalogue import PINN_BENCHMARKS

    cfg = config["problem"]
    user = None
    if cfg["module"]:
        user = load_module_of(config)
        problem = user.problem
    else:
        factory = pinn.benchmarks.BENCHMARKS[cfg["name"]]
        resolution = cfg["reference_resolution"]
        if resolution and PINN_BENCHMARKS[cfg["name"]].reference is not None:
            problem = factory(resolution=resolution)
        else:
            problem = factory()
    if cfg["observations"]:
        if OBSERVATIONS in problem.conditions:
            raise ConfigError(
                f"config key 'problem.observations' = {show_path(cfg['observations'])} is "
                f"invalid: the problem already has a condition named {OBSERVATIONS!r}",
                key="problem.observations",
            )
        obs = read_observations(cfg)
        if obs.points.shape[1] != problem.domain.dim:
            raise ConfigError(
                f"config key 'problem.observations' = {show_path(cfg['observations'])} is "
                f"invalid: its points have {obs.points.shape[1]} coordinates, the problem's domain "
                f"{problem.domain.dim}",
                key="problem.observations",
            )
        problem = dataclasses.replace(problem, conditions={**problem.conditions, OBSERVATIONS: obs})
    if cfg["reference"]:
        points, values = read_reference(cfg, problem.domain.dim)
        reference = (jnp.asarray(points), jnp.asarray(values))
        problem = dataclasses.replace(problem, reference=reference)
    return user, problem


def problem_facts(config: dict) -> ProblemFacts:
    """`ProblemFacts` of a config's problem (runs a problem module; reads no reference)."""
    from .. import pinn
    from .._catalogue import PINN_BENCHMARKS

    cfg = config["problem"]
    extra = (OBSERVATIONS,) if cfg["observations"] else ()
    if not cfg["module"]:
        bench = PINN_BENCHMARKS[cfg["name"]]
        keys = {t: f"train.num_{t}" for t in bench.terms}
        return ProblemFacts(
            terms=bench.terms + extra,
            dims=bench.dims,
            order=bench.order,
            hard_constraint_drops=("boundary",) if bench.zero_dirichlet else (),
            time_dependent=bench.time_dependent,
            count_keys=keys,
        )
    problem = load_module_of(config).problem
    return ProblemFacts(
        terms=problem.terms + extra,
        dims=problem.domain.dim,
        order=2,
        hard_constraint_drops=hard_constraint_drops(problem),
        time_dependent=isinstance(problem.domain, pinn.SpaceTime),
        count_keys=count_keys(problem),
    )
