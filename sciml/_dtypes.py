"""Floating dtypes of models: the default (JAX's, float64 under `jax_enable_x64`) and the check
of a `dtype=` argument, shared by `sciml.operators` and `sciml.fields`."""

import jax
import jax.numpy as jnp


def default_floating_dtype():
    """float64 if `jax_enable_x64` is on, else float32."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def check_floating_dtype(cls_name: str, dtype):
    """`dtype`, or the default for `None`; `ValueError` naming `cls_name` unless it is a real
    floating dtype."""
    if dtype is None:
        return default_floating_dtype()
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"`{cls_name}` got `dtype={dtype!r}`, but it must be a real floating dtype such as "
            "`jnp.float32` or `jnp.float64` (or None for JAX's default)."
        )
    return dtype
