"""`sciml export`: a finished run's model as one serialised StableHLO file (`jax.export`)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from .._atomic import atomic_write_bytes
from .._export import describe, export_model
from .config import ConfigError
from .operator_run import MODEL_SHAPES, load_trained_model


def _sample_shape(run_dir: Path, config: dict, model) -> tuple[int, ...]:
    """One input sample's shape: `model.json` for operator runs, `(dim,)` for PINN fields."""
    if config.get("kind") == "pinn":
        # The field's input dimension: the first part of the model that declares it (MLP, PIG).
        for part in jax.tree_util.tree_leaves(model, is_leaf=lambda m: hasattr(m, "in_dim")):
            if isinstance(getattr(part, "in_dim", None), int):
                return (part.in_dim,)
        raise ConfigError(f"'{run_dir}': the model's input dimension is not recorded")
    try:
        return tuple(int(n) for n in json.loads((run_dir / MODEL_SHAPES).read_text())["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"'{run_dir}' has no readable {MODEL_SHAPES}; give the input shape with --sample-shape"
        ) from None


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    sample_shape: tuple[int, ...] | None = None,
    platforms: tuple[str, ...] | None = None,
) -> dict:
    """Export the run's model (the best one of an operator run, normalisers included; the
    trained field of a PINN run) for inputs `(b, *sample_shape)` with a symbolic batch size
    `b`; writes `out` (the serialised export) and `out.json` (shapes, platforms, usage).
    Returns that description."""
    run_dir, out = Path(run_dir), Path(out)
    model, config = load_trained_model(run_dir)
    float64 = config.get("kind") == "pinn" and config["train"]["float64"]
    shape = sample_shape or _sample_shape(run_dir, config, model)
    try:
        exported = export_model(
            model, shape, dtype=np.float64 if float64 else np.float32, platforms=platforms
        )
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except TypeError as e:  # a shape the model cannot take
        raise ConfigError(
            f"the model of '{run_dir}' does not accept samples of shape {shape}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    info = describe(exported, out)
    info["run"] = str(run_dir)
    atomic_write_bytes(out, bytes(exported.serialize()))
    atomic_write_bytes(Path(f"{out}.json"), (json.dumps(info, indent=2) + "\n").encode())
    return info
