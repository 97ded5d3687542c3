"""Experiment configs: a declarative schema, TOML loading, `--set` overrides and validation.

Every key a config may hold is declared in `SCHEMA` with its type, default and allowed values,
so that a typo or an impossible value is reported before any work starts, in one line naming the
key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_REQUIRED = object()


class ConfigError(ValueError):
    """An invalid config: the message is one line naming the key, the value and what is allowed."""


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


_ACTIVATIONS = ("gelu", "relu", "tanh", "silu", "elu")

SCHEMA: dict[str, dict[str, Option] | Option] = {
    "name": Option(
        str,
        "run",
        check=lambda s: s.replace("-", "").replace("_", "").isalnum(),
        allowed="letters, digits, '-' and '_'",
        help="run name; prefix of the run dir",
    ),
    "seed": Option(int, 0, check=_nonnegative, allowed=">= 0", help="PRNG seed for training"),
    "data": {
        "recipe": Option(str, "darcy", choices=("darcy",), help="dataset recipe"),
        "resolution": Option(
            int,
            85,
            check=lambda s: s >= 8,
            allowed=">= 8",
            help="grid points per axis of the training data",
        ),
        "solve_resolution": Option(
            int,
            0,
            check=_nonnegative,
            allowed=">= 0 (0: the recipe's default)",
            help="grid of the reference solve, subsampled to resolution",
        ),
        "n_train": Option(int, 1000, check=_positive, allowed=">= 1"),
        "n_test": Option(int, 100, check=_positive, allowed=">= 1"),
        "seed": Option(int, 0, check=_nonnegative, allowed=">= 0", help="data generation seed"),
        "zero_mean": Option(
            bool, False, help="drop the constant mode of the coefficient field (FNO code)"
        ),
        "path": Option(str, "", help="dataset file; generated (and cached) when empty"),
        "cache_dir": Option(str, "data", help="where generated datasets are cached"),
    },
    "model": {
        "name": Option(str, "fno", choices=("fno",)),
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
    },
    "train": {
        "epochs": Option(int, 500, check=_positive, allowed=">= 1"),
        "batch_size": Option(int, 20, check=_positive, allowed=">= 1"),
        "learning_rate": Option(float, 1e-3, check=lambda x: 0 < x < 1, allowed="0 < lr < 1"),
        "weight_decay": Option(float, 1e-4, check=_nonnegative, allowed=">= 0"),
        "schedule": Option(str, "step", choices=("step", "cosine", "constant")),
        "step_size": Option(
            int,
            100,
            check=_positive,
            allowed=">= 1",
            help="epochs between learning-rate drops (schedule = 'step')",
        ),
        "gamma": Option(float, 0.5, check=_probability, allowed="0 < gamma <= 1"),
        "loss": Option(str, "relative_l2", choices=("relative_l2", "h1")),
        "normalize": Option(bool, True, help="unit-Gaussian normalisation of inputs and outputs"),
        "checkpoint_every": Option(int, 1, check=_positive, allowed=">= 1", help="epochs"),
        "keep_checkpoints": Option(int, 3, check=_positive, allowed=">= 1"),
        "progress": Option(bool, True),
    },
    "eval": {
        "batch_size": Option(int, 50, check=_positive, allowed=">= 1"),
        "plot_samples": Option(int, 3, check=_nonnegative, allowed=">= 0"),
    },
}


def _describe_type(option: Option) -> str:
    if option.type is list:
        return f"a list of {option.item_type.__name__}"
    if option.type is float:
        return "a number"
    return {int: "an integer", bool: "true or false", str: "a string"}[option.type]


def _check_value(key: str, value: Any, option: Option) -> Any:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"config key '{key}' = {value!r} is invalid: {what}")

    expected = option.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) and expected is not bool:
        raise fail(f"expected {_describe_type(option)}")
    if not isinstance(value, expected):
        raise fail(f"expected {_describe_type(option)}")
    if expected is float and not math.isfinite(value):
        raise fail("expected a finite number")
    if expected is list:
        if not all(isinstance(v, option.item_type) and not isinstance(v, bool) for v in value):
            raise fail(f"expected {_describe_type(option)}")
        value = list(value)
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
            raise ConfigError(f"unknown config key '{full}'; allowed here: {allowed}")
    for key, spec in schema.items():
        full = prefix + key
        if isinstance(spec, dict):
            sub = raw.get(key, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"config key '{full}' = {sub!r} is invalid: expected a table")
            out[key] = _validate(sub, spec, full + ".")
        elif key in raw:
            out[key] = _check_value(full, raw[key], spec)
        elif spec.default is _REQUIRED:
            raise ConfigError(f"config key '{full}' is missing; expected {_describe_type(spec)}")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _cross_checks(config: dict) -> None:
    data, model = config["data"], config["model"]
    if len(model["modes"]) != 2 and data["recipe"] == "darcy":
        raise ConfigError(
            f"config key 'model.modes' = {model['modes']!r} is invalid: the darcy recipe is 2-D, "
            "so give 2 modes"
        )
    resolution = data["resolution"]
    if model["padding"] > resolution:
        raise ConfigError(
            f"config key 'model.padding' = {model['padding']} is invalid: allowed at most "
            f"data.resolution = {resolution} points"
        )
    for k in model["modes"]:
        if resolution + model["padding"] < 2 * k:
            raise ConfigError(
                f"config key 'model.modes' = {model['modes']!r} is invalid: a grid of "
                f"{resolution} points (+{model['padding']} padding) resolves at most "
                f"{(resolution + model['padding']) // 2} modes per axis"
            )
    solve = data["solve_resolution"]
    if solve and (solve < resolution or (solve - 1) % (resolution - 1)):
        raise ConfigError(
            f"config key 'data.solve_resolution' = {solve} is invalid: allowed 0 or a value "
            f"with (solve_resolution - 1) a multiple of (resolution - 1) = {resolution - 1}"
        )
    if config["train"]["batch_size"] > data["n_train"]:
        raise ConfigError(
            f"config key 'train.batch_size' = {config['train']['batch_size']} is invalid: "
            f"allowed at most data.n_train = {data['n_train']}"
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parses one `--set key.sub=value` override; the value is read as a TOML value.

    A value that is not valid TOML (e.g. `name=my-run`) is taken as a string.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is invalid: expected KEY=VALUE, e.g. train.epochs=10")
    key, value = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or not all(parts):
        raise ConfigError(f"--set {text!r} is invalid: expected KEY=VALUE with a dotted key")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Returns a copy of `raw` with each `key.sub=value` override applied."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r} is invalid: '{part}' is not a table")
        node[parts[-1]] = value
    return raw


def validate_config(raw: dict) -> dict:
    """Fills in defaults and checks every key; raises `ConfigError` on the first problem."""
    config = _validate(raw, SCHEMA)
    _cross_checks(config)
    return config


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Reads a TOML config, applies `--set` overrides and validates it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    return validate_config(apply_overrides(raw, list(overrides)))
