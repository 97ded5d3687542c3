"""Argument checks shared by the solvers and the recipes of `sciml.data`.

Checks used across the whole package live in `sciml._validate`; these are the ones whose
messages are particular to data generation (concrete numbers that set up a solver on the host,
the float32/float64 dtypes of a recipe, the saved times of a time-dependent solve).
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import ArgumentError


def is_real_number(x) -> bool:
    """A concrete real number: a Python real, or a real 0-d NumPy array or scalar."""
    return isinstance(x, numbers.Real) or (
        isinstance(x, np.ndarray | np.generic) and x.ndim == 0 and np.isrealobj(x)
    )


def check_real(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """`value` as a finite `float`, optionally > 0 or >= 0, or an `ArgumentError` naming `name`
    that asks for a concrete number (the value sets up a solver on the host)."""
    if not is_real_number(value):
        raise ArgumentError(
            f"`{name}` must be a concrete real number (it sets up the solver on the host; "
            f"mark it static under `jax.jit`), got {value!r}.",
            argument=name,
        )
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        allowed = "> 0" if positive else ">= 0"
        raise ArgumentError(
            f"`{name}` must be a finite number {allowed}, got {value!r}.", argument=name
        )
    return value


def check_dtype(dtype) -> str:
    """The name of `dtype` (`"float32"` or `"float64"`), or an `ArgumentError`: only those two,
    and float64 only with `jax_enable_x64` on."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ArgumentError(f"`dtype` must be float32 or float64, got {dtype!r}.", argument="dtype")
    if dt == np.float64 and not jax.config.read("jax_enable_x64"):
        raise ArgumentError(
            "`dtype` float64 needs jax_enable_x64 (e.g. `jax.config.update('jax_enable_x64', "
            "True)`), which is off.",
            argument="dtype",
        )
    return dt.name


def check_times(name: str, times, t_final: float) -> np.ndarray:
    """`times` as a non-decreasing float64 array of times in `[0, t_final]` (up to rounding), or
    an `ArgumentError` naming `name`."""
    try:
        times = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError):
        raise ArgumentError(
            f"`{name}` must be None or a concrete 1-D sequence of times, got {times!r}.",
            argument=name,
        ) from None
    if times.ndim != 1 or times.size == 0:
        raise ArgumentError(
            f"`{name}` must be None or a non-empty 1-D sequence, got shape {times.shape}.",
            argument=name,
        )
    if not np.all(np.isfinite(times)) or np.any(times < 0) or np.any(times > t_final * (1 + 1e-12)):
        raise ArgumentError(
            f"`{name}` must lie in [0, t_final] = [0, {t_final}], got {times}.", argument=name
        )
    if np.any(np.diff(times) < 0):
        raise ArgumentError(f"`{name}` must be non-decreasing, got {times}.", argument=name)
    return times


def check_save_at(save_at, t_final: float) -> np.ndarray:
    """`save_at` as a non-decreasing float64 array of times in `[0, t_final]`, or a one-line
    `ValueError`."""
    return np.minimum(check_times("save_at", save_at, t_final), t_final)


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
