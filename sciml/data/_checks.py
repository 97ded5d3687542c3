"""Argument checks shared by the time-dependent solvers of `sciml.data`."""

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import ArgumentError


def check_save_at(save_at, t_final: float) -> np.ndarray:
    """`save_at` as a non-decreasing float64 array of times in `[0, t_final]`, or a one-line
    `ValueError`."""
    try:
        save_at = np.asarray(save_at, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError):
        raise ArgumentError(
            f"`save_at` must be None or a concrete 1-D sequence of times, got {save_at!r}.",
            argument="save_at",
        ) from None
    if save_at.ndim != 1 or save_at.size == 0:
        raise ArgumentError(
            f"`save_at` must be None or a non-empty 1-D sequence, got shape {save_at.shape}.",
            argument="save_at",
        )
    if (
        not np.all(np.isfinite(save_at))
        or np.any(save_at < 0)
        or np.any(save_at > t_final * (1 + 1e-12))
    ):
        raise ArgumentError(
            f"`save_at` must lie in [0, t_final] = [0, {t_final}], got {save_at}.",
            argument="save_at",
        )
    if np.any(np.diff(save_at) < 0):
        raise ArgumentError(f"`save_at` must be non-decreasing, got {save_at}.", argument="save_at")
    return np.minimum(save_at, t_final)


def real_float_array(name: str, x):
    """`x` as a float32 or float64 JAX array (integers and booleans become the default float),
    or a one-line `ValueError` naming `name`."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
        dtype = jnp.result_type(float)
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ArgumentError(
            f"`{name}` must be real float32 or float64, got dtype {x.dtype}.", argument=name
        )
    return jnp.asarray(x, dtype)
