"""Argument checks shared across the package: integers, real numbers and floating dtypes.

Each check raises `ArgumentError`, a `ValueError` that carries the offending argument's name
and value as data, so that a caller (the config loader, the command line) can report the
config key or flag it came from without reading the message text.

Imports no JAX at module level: the command line's start-up uses `ArgumentError`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


class ArgumentError(ValueError):
    """An invalid argument: a one-sentence message, plus `argument` (its name) and `value`."""

    def __init__(self, message: str, *, argument: str, value: Any = None):
        super().__init__(message)
        self.argument = argument
        self.value = value


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A Python or NumPy real number (int or float), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _message(name: str, value: Any, allowed: str, owner: str | None) -> str:
    """`allowed` (e.g. "a positive integer") in the sentence of a failed check: "`name` must
    be ..., got ...", or with `owner` (the class or function the argument was given to)
    "`owner` got `name=...`, but it must be ..."."""
    if owner is None:
        return f"`{name}` must be {allowed}, got {value!r}."
    return f"`{owner}` got `{name}={value!r}`, but it must be {allowed}."


def check_int(name: str, value: Any, minimum: int = 1, *, owner: str | None = None) -> int:
    """`value` as an `int`; `ArgumentError` unless it is an integer >= `minimum`. With `owner`,
    the message names the class or function that got the argument."""
    if not is_int(value) or value < minimum:
        raise ArgumentError(
            _message(name, value, f"an int >= {minimum}", owner), argument=name, value=value
        )
    return int(value)


def positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """`value` as an `int`; `ArgumentError` unless it is a positive (or, with `allow_zero`,
    non-negative) integer."""
    if not is_int(value) or value < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ArgumentError(
            _message(name, value, f"a {kind} integer", None), argument=name, value=value
        )
    return int(value)


def check_float(
    name: str, value: Any, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """`value` as a finite `float`, optionally > 0 or >= 0; `ArgumentError` otherwise."""
    ok = is_real(value) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and nonnegative:
        ok = value >= 0
    if not ok:
        what = "positive " if positive else "non-negative " if nonnegative else ""
        raise ArgumentError(
            _message(name, value, f"a finite {what}number", None), argument=name, value=value
        )
    return float(value)


def max_steps(num_steps: int, floor: int) -> int:
    """The `max_steps` given to diffrax for a fixed-step solve that runs exactly `num_steps`
    steps: it only bounds the loop (and sets the checkpoints of reverse mode), so it is
    rounded up to a power of two, at least `floor`, and solves with other step counts reuse
    the compiled program."""
    return max(floor, 1 << (num_steps - 1).bit_length())


def default_floating_dtype():
    """float64 if `jax_enable_x64` is on, else float32."""
    import jax
    import jax.numpy as jnp

    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def check_floating_dtype(cls_name: str, dtype):
    """`dtype`, or the default for `None`; `ValueError` naming `cls_name` unless it is a real
    floating dtype."""
    import jax.numpy as jnp

    if dtype is None:
        return default_floating_dtype()
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ArgumentError(
            f"`{cls_name}` got `dtype={dtype!r}`, but it must be a real floating dtype such as "
            "`jnp.float32` or `jnp.float64` (or None for JAX's default).",
            argument="dtype",
            value=dtype,
        )
    return dtype
