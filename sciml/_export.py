"""A trained model as serialised StableHLO (`jax.export`), runnable with JAX alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from jax import export as jax_export

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
# How the exported file is used, written beside it (`FILE.json`) and shown by `sciml export`.
USAGE = "from jax import export; f = export.deserialize(open({path!r}, 'rb').read()); y = f.call(x)"


def _shapes(sample_shape) -> tuple[tuple[int, ...], ...]:
    """One shape `(n, ...)` or several `[(n, ...), (m, ...)]` (one per argument), as tuples."""
    items = list(sample_shape)
    several = bool(items) and all(isinstance(s, Sequence) for s in items)
    shapes = [tuple(s) for s in items] if several else [tuple(items)]
    try:
        shapes = [tuple(int(n) for n in s) for s in shapes]
    except (TypeError, ValueError):
        shapes = []
    if not shapes or any(n < 1 for s in shapes for n in s):
        raise ValueError(
            "`export_model`: `sample_shape` must be a shape of positive sizes, or one such "
            f"shape per argument of the model, got {sample_shape!r}."
        )
    return tuple(shapes)


def export_model(
    model: Callable,
    sample_shape: Sequence[int] | Sequence[Sequence[int]],
    *,
    dtype=np.float32,
    platforms: Sequence[str] | None = None,
    batch: bool = True,
) -> jax_export.Exported:
    """Export a model of ONE sample as a batched function with a symbolic batch size.

    The result is `jax.vmap(model)` lowered to StableHLO for inputs of shape
    `(b, *sample_shape)`, `b` any batch size (a symbolic dimension), with the model's
    parameters baked in as constants. A model of several arguments (`DeepONet(u, y)`) takes
    one shape per argument, each batched along its first axis. `exported.serialize()` gives
    bytes that a process with only JAX installed turns back into a callable:

        from jax import export
        f = export.deserialize(open("model.jax", "rb").read())
        y = f.call(x)          # x: (b, *sample_shape), any b

    **Arguments:**

    - `model`: a function of one sample (an operator on `(channels, *spatial)`, a field of one
        point `(dim,)`); any Equinox module.
    - `sample_shape`: the shape of one input sample, or a sequence of shapes, one per
        argument (e.g. `[(num_sensors,), (coord_dim,)]`).
    - `dtype`: the input dtype (`float64` needs `jax_enable_x64` on, here and where it is
        loaded).
    - `platforms`: where the export may run, a subset of `("cpu", "cuda", "rocm", "tpu")`;
        default: the platform of the default device. Several lower once each, into one file.
    - `batch`: `False` exports the model of one sample itself, without the batch axis.

    **Returns:** a `jax.export.Exported`.
    """
    shapes = _shapes(sample_shape)
    if platforms is not None:
        platforms = tuple(platforms)
        unknown = [p for p in platforms if p not in PLATFORMS]
        if unknown or not platforms:
            raise ValueError(
                f"`export_model`: `platforms` must be a non-empty subset of {PLATFORMS}, got "
                f"{platforms!r}."
            )
    dtype = np.dtype(dtype)
    if dtype == np.float64 and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            "`export_model`: `dtype=float64` needs jax.config.update('jax_enable_x64', True)."
        )
    if batch:
        (size,) = jax_export.symbolic_shape("b")
        specs = [jax.ShapeDtypeStruct((size, *s), dtype) for s in shapes]
        function = jax.jit(lambda *args: jax.vmap(model)(*args))
    else:
        specs = [jax.ShapeDtypeStruct(s, dtype) for s in shapes]
        function = jax.jit(lambda *args: model(*args))
    return jax_export.export(function, platforms=platforms)(*specs)


def describe(exported: jax_export.Exported, path: Path) -> dict:
    """What a user needs to call an exported file: shapes, dtypes, platforms, the snippet."""
    shapes = lambda avals: [
        {"shape": [str(d) for d in a.shape], "dtype": str(a.dtype)} for a in avals
    ]
    return {
        "inputs": shapes(exported.in_avals),
        "outputs": shapes(exported.out_avals),
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
        "usage": USAGE.format(path=str(path)),
    }
