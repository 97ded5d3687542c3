"""Shared pieces of the Flax adapters: splitting a sciml model into named trainable and
non-trainable arrays and rebuilding it, and the scalar-output convention."""

import dataclasses
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from ..train import trainable_filter

PARAM, BUFFER, STATIC = "param", "buffer", "static"


class _Dropped:
    """Stands in for the leaves a filter drops, so that the filtered tree keeps the model's
    structure leaf for leaf (`None` would be an empty subtree)."""


_DROPPED = _Dropped()


@dataclasses.dataclass(frozen=True)
class Layout:
    """How to rebuild a sciml model from named arrays: its treedef and, per leaf, its name,
    its kind (`PARAM`, `BUFFER` or `STATIC`) and, for `STATIC` leaves, the leaf itself."""

    treedef: Any
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    statics: tuple[Any, ...]


def leaf_name(path: tuple) -> str:
    """The name of a leaf: its pytree path joined with dots, e.g. `model.weights.0`."""
    return jtu.keystr(path, simple=True, separator=".") or "leaf"


def split_model(
    model: PyTree, filter_spec: PyTree[bool] | None = None
) -> tuple[Layout, dict[str, Array], dict[str, Array]]:
    """Splits `model` into its layout, its trainable arrays and its other arrays, by name.

    Trainable: the arrays selected by `filter_spec` (default `trainable_filter(model)`:
    floating-point arrays outside normalisers and `NonTrainable`). Other arrays (normaliser
    statistics, integer arrays, PRNG keys) are buffers; non-array leaves stay in the layout.
    """
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    marked = jtu.tree_leaves(eqx.filter(model, spec, replace=_DROPPED))
    with_paths, treedef = jtu.tree_flatten_with_path(model)
    names, kinds, statics = [], [], []
    params, buffers = {}, {}
    seen = set()
    for (path, leaf), mark in zip(with_paths, marked, strict=True):
        name = leaf_name(path)
        if name in seen:
            raise ValueError(
                f"Two leaves of the model have the same name {name!r}; rename a field or a "
                "dict key so that the dotted pytree paths differ."
            )
        seen.add(name)
        names.append(name)
        if eqx.is_array(leaf):
            kind = BUFFER if mark is _DROPPED else PARAM
            (params if kind == PARAM else buffers)[name] = jnp.asarray(leaf)
            kinds.append(kind)
            statics.append(None)
        else:
            kinds.append(STATIC)
            statics.append(leaf)
    layout = Layout(treedef, tuple(names), tuple(kinds), tuple(statics))
    return layout, params, buffers


def _constant(x: Any) -> Any:
    return jax.lax.stop_gradient(x) if eqx.is_inexact_array(x) else x


def build_model(layout: Layout, params: Mapping[str, Any], buffers: Mapping[str, Any]) -> PyTree:
    """The inverse of `split_model`; buffers are wrapped in `jax.lax.stop_gradient`."""
    leaves = []
    for name, kind, static in zip(layout.names, layout.kinds, layout.statics, strict=True):
        if kind == PARAM:
            leaves.append(params[name])
        elif kind == BUFFER:
            leaves.append(_constant(buffers[name]))
        else:
            leaves.append(static)
    return jtu.tree_unflatten(layout.treedef, leaves)


def stop_gradients(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every floating-point array of `tree`."""
    return jtu.tree_map(_constant, tree)


def as_scalar(cls_name: str, out: Any) -> Array:
    """The one value of `out` as a 0-d array (the scalar-field convention of
    `sciml.derivatives` and `sciml.pinn`)."""
    if jnp.size(out) != 1:
        raise ValueError(
            f"`{cls_name}` was built with `scalar_output=True`, so the wrapped module must "
            f"return exactly one value, but it returned shape {jnp.shape(out)}."
        )
    return jnp.reshape(out, ())
