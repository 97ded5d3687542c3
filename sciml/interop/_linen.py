"""Flax Linen modules as sciml models (`from_linen`) and sciml models as Linen modules
(`to_linen`)."""

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import flax.linen as nn
from jaxtyping import PyTree

from ..train._normalize import NonTrainable
from ._common import Layout, as_scalar, build_model, split_model, stop_gradients

PARAMS = "params"
BUFFERS = "buffers"


def _plain(tree: Any) -> Any:
    """Nested `Mapping`s (dicts, `FrozenDict`s) as nested dicts."""
    if isinstance(tree, Mapping):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


class _Static:
    """A Linen module as a static (treedef) value. Linen modules with list attributes, such as
    `nn.Sequential`, are unhashable: they are then compared by value where possible and
    hashed by type, which is consistent with that equality."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Static):
            return NotImplemented
        if self.value is other.value:
            return True
        try:
            return bool(self.value == other.value)
        except Exception:  # e.g. array attributes, whose comparison is not a bool
            return False

    def __hash__(self) -> int:
        try:
            return hash(self.value)
        except TypeError:
            return hash(type(self.value))

    def __repr__(self) -> str:
        return repr(self.value)


class LinenModel(eqx.Module):
    """A Flax Linen module and its variables as a sciml model: an `equinox.Module` (a pytree)
    whose call is `module.apply(variables, *args, **kwargs)`.

    The `params` collection is the pytree field `params` (trained); every other collection
    (`batch_stats`, ...) is kept in the field `state`, wrapped in
    `sciml.train.NonTrainable` so that `sciml.train.trainable_filter` (hence
    `train_step`, `init_optimizer`, `fit` and `sciml.pinn.solve`) never updates it, and it
    enters the call through `jax.lax.stop_gradient`. The module is a static field.

    The call is `apply` without `mutable`, so a module that writes a collection (BatchNorm
    with `use_running_average=False`, `sow`) raises Flax's error; call it in inference mode
    or use `call_and_update`. Random streams go through `rngs=`, like `apply`.

    Build it with `sciml.interop.from_linen`.
    """

    linen: _Static = eqx.field(static=True)
    params: dict[str, Any]
    state: NonTrainable
    scalar_output: bool = eqx.field(static=True)

    def __init__(
        self, module: nn.Module, variables: Mapping[str, Any], *, scalar_output: bool = False
    ):
        """**Arguments:**

        - `module`: the Linen module.
        - `variables`: its variables, e.g. from `module.init(key, x)`: a mapping from
            collection names to nested mappings of arrays.
        - `scalar_output`: return the single output value as a 0-d array (the scalar-field
            convention of `sciml.derivatives` and `sciml.pinn`).
        """
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"`LinenModel` needs a `flax.linen.Module`, got {type(module).__name__}; for an "
                "NNX module use `sciml.interop.from_nnx(module)`."
            )
        if not isinstance(variables, Mapping):
            raise ValueError(
                "`LinenModel` needs `variables` to be a mapping from collection names to "
                f"arrays (as returned by `module.init`), got {type(variables).__name__}."
            )
        variables = _plain(variables)
        self.linen = _Static(module)
        self.params = variables.pop(PARAMS, {})
        self.state = NonTrainable(variables)
        self.scalar_output = bool(scalar_output)

    @property
    def module(self) -> nn.Module:
        """The Linen module."""
        return self.linen.value

    @property
    def variables(self) -> dict[str, Any]:
        """All collections, `{"params": ..., **other collections}`, for `module.apply`."""
        return {PARAMS: self.params, **self.state.value}

    def _output(self, out: Any) -> Any:
        return as_scalar("LinenModel", out) if self.scalar_output else out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`module.apply(variables, *args, **kwargs)`.

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to `apply` (so `rngs=` and `method=` work too).

        **Returns:**

        The module's output (a 0-d array with `scalar_output=True`).
        """
        variables = {PARAMS: self.params, **stop_gradients(self.state.value)}
        return self._output(self.module.apply(variables, *args, **kwargs))

    def call_and_update(self, *args: Any, **kwargs: Any) -> tuple[Any, "LinenModel"]:
        """`module.apply(variables, *args, mutable=True, **kwargs)`, keeping the writes.

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to `apply`.

        **Returns:**

        `(output, model)`: the output and a new `LinenModel` holding every collection as
        the module left it (e.g. updated `batch_stats`).
        """
        variables = {PARAMS: self.params, **stop_gradients(self.state.value)}
        out, updated = self.module.apply(variables, *args, mutable=True, **kwargs)
        new = LinenModel(self.module, updated, scalar_output=self.scalar_output)
        return self._output(out), new


def from_linen(
    module: nn.Module, variables: Mapping[str, Any], *, scalar_output: bool = False
) -> LinenModel:
    """Wraps a Flax Linen module and its variables as a sciml model (an `equinox.Module`).

    The result is a pytree that works with `jax.jit`, `jax.vmap`, `jax.grad`,
    `eqx.filter_*`, `sciml.train.train_step` / `fit`, checkpoints and `sciml.pinn.solve`;
    the `params` collection is trained, other collections are kept constant. See
    `sciml.interop.LinenModel`.

    **Arguments:**

    - `module`: the Linen module. As for every sciml model, it should act on ONE sample.
    - `variables`: its variables, e.g. `module.init(key, x)`.
    - `scalar_output`: return the single output value as a 0-d array.

    **Returns:**

    A `LinenModel`; `model.variables` gives the (trained) variables for `module.apply`.

    **Example:**

    ```python
    import flax.linen as nn
    import sciml

    net = nn.Sequential([nn.Dense(32), nn.tanh, nn.Dense(1)])
    model = sciml.interop.from_linen(net, net.init(jax.random.key(0), jnp.zeros(3)))
    model, history = sciml.train.fit(
        model, sciml.train.batch_loss(sciml.train.mse), (x, y),  # x: (n, 3), y: (n, 1)
        optimizer=optax.adam(1e-3), epochs=10, key=jax.random.key(1),
    )
    ```
    """
    return LinenModel(module, variables, scalar_output=scalar_output)


class _Held:
    """Holds the split sciml model for `SciMLLinen`, compared and hashed by identity so that
    the Linen module stays hashable although the model holds arrays."""

    __slots__ = ("layout", "params", "buffers")

    def __init__(self, layout: Layout, params: dict[str, Any], buffers: dict[str, Any]):
        self.layout = layout
        self.params = params
        self.buffers = buffers


class SciMLLinen(nn.Module):
    """A sciml model as a Flax Linen module.

    Each array leaf of the model is a variable named by its dotted pytree path
    (`"weights.0"`, `"model.x_normalizer.mean"`): the trainable ones (by
    `sciml.train.trainable_filter`, or a given `filter_spec`) in the `params` collection,
    the others in the `buffers` collection. `init(key, *args)` creates both with the
    model's current values (the key is not used); `apply(variables, *args, **kwargs)`
    rebuilds the model from `variables` (buffers through `jax.lax.stop_gradient`) and
    calls it.

    Build it with `sciml.interop.to_linen`.
    """

    held: _Held

    @nn.compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the sciml model with the module's variables.

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to the model.

        **Returns:**

        The model's output.
        """
        params = {name: self.param(name, lambda _, x=x: x) for name, x in self.held.params.items()}
        buffers = {
            name: self.variable(BUFFERS, name, lambda x=x: x).value
            for name, x in self.held.buffers.items()
        }
        return build_model(self.held.layout, params, buffers)(*args, **kwargs)

    def to_sciml(self, variables: Mapping[str, Any]) -> PyTree:
        """The sciml model with the values of `variables` (e.g. after training).

        **Arguments:**

        - `variables`: `{"params": ..., "buffers": ...}` as created by `init`.

        **Returns:**

        A model of the same type and structure as the one wrapped.
        """
        variables = _plain(variables)
        return build_model(self.held.layout, variables.get(PARAMS, {}), variables.get(BUFFERS, {}))


def to_linen(model: PyTree, *, filter_spec: PyTree[bool] | None = None) -> SciMLLinen:
    """Wraps a sciml model (any callable pytree) as a Flax Linen module.

    `init(key, *args)` returns `{"params": ..., "buffers": ...}` holding the model's
    trainable arrays and its other arrays (e.g. normaliser statistics), with the model's
    values; `apply(variables, *args)` calls the model. See `sciml.interop.SciMLLinen`.

    **Arguments:**

    - `model`: the sciml model, e.g. `sciml.operators.FNO(...)`.
    - `filter_spec`: trainable leaves; default `sciml.train.trainable_filter(model)`.

    **Returns:**

    A `SciMLLinen` module; it can be a submodule of a larger Linen model.

    **Example:**

    ```python
    import flax.linen as nn
    import sciml

    class Corrected(nn.Module):  # an FNO plus a learned pointwise correction
        fno: nn.Module

        @nn.compact
        def __call__(self, a):  # a: (1, s, s), one sample
            return self.fno(a) + nn.Dense(1)(a.T).T

    fno = sciml.operators.FNO(1, 1, modes=(8, 8), width=16, key=jax.random.key(0))
    model = Corrected(fno=sciml.interop.to_linen(fno))
    variables = model.init(jax.random.key(1), jnp.zeros((1, 32, 32)))  # params: fno, Dense_0
    ```
    """
    layout, params, buffers = split_model(model, filter_spec)
    return SciMLLinen(held=_Held(layout, params, buffers))
