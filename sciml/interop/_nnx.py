"""Flax NNX modules as sciml models (`from_nnx`) and sciml models as NNX modules (`to_nnx`)."""

from typing import Any

import equinox as eqx
from flax import nnx
from jaxtyping import PyTree

from ..train._normalize import NonTrainable
from ._common import Layout, as_scalar, build_model, split_model, stop_gradients


def _check_module(cls_name: str, module: Any) -> None:
    if not isinstance(module, nnx.Module):
        raise ValueError(
            f"`{cls_name}` needs a `flax.nnx.Module`, got {type(module).__name__}; for a Linen "
            "module use `sciml.interop.from_linen(module, variables)`."
        )


class NNXModel(eqx.Module):
    """A Flax NNX module as a sciml model: an `equinox.Module` (a pytree) that calls it.

    The module is split once with `nnx.split(module, trainable, ...)`: the graph definition
    is a static field, the `trainable` variables (default: every `nnx.Param`) are the pytree
    field `params`, and all other variables (batch statistics, RNG keys and counts, ...) are
    the field `state`, wrapped in `sciml.train.NonTrainable` so that
    `sciml.train.trainable_filter` (hence `train_step`, `init_optimizer`, `fit` and
    `sciml.pinn.solve`) never updates them; they also enter the call through
    `jax.lax.stop_gradient`, so `jax.grad` gives exactly zero for them. Both fields are
    nested dicts of arrays, keyed like `nnx.State` (`model.params["linear"]["kernel"]`).

    **The call is functional.** `model(*args)` merges a fresh copy of the module
    (`nnx.merge`) and calls it; whatever the module writes to its variables during the call
    (BatchNorm statistics in training mode, the counter of an RNG stream) is dropped, so the
    same inputs always give the same outputs (a stochastic layer draws the same numbers every
    call). Put such layers in inference mode (`nnx.BatchNorm(..., use_running_average=True)`,
    `nnx.Dropout(..., deterministic=True)` or `module.eval()` before wrapping), or use
    `call_and_update` to keep the writes. Note that sciml models act on ONE sample and are
    batched with `jax.vmap`, so a batch-statistics layer in training mode would see one
    sample at a time anyway.

    Build it with `sciml.interop.from_nnx`.
    """

    graphdef: nnx.GraphDef = eqx.field(static=True, repr=False)
    params: dict[str, Any]
    state: NonTrainable
    trainable: Any = eqx.field(static=True)
    scalar_output: bool = eqx.field(static=True)

    def __init__(
        self, module: nnx.Module, *, trainable: Any = nnx.Param, scalar_output: bool = False
    ):
        """**Arguments:**

        - `module`: the NNX module; it is not modified, and later changes to it do not
            affect the model.
        - `trainable`: an NNX filter selecting the trainable variables (default
            `nnx.Param`, as `nnx.Optimizer(..., wrt=nnx.Param)`).
        - `scalar_output`: return the module's output, which must hold exactly one value,
            as a 0-d array: the convention of scalar fields in `sciml.derivatives` and
            `sciml.pinn` (like `sciml.fields.MLP(..., "scalar", ...)`), e.g. for an MLP
            whose last layer is `nnx.Linear(width, 1)`.
        """
        _check_module("NNXModel", module)
        graphdef, params, state = nnx.split(module, trainable, ...)
        self.graphdef = graphdef
        self.params = nnx.to_pure_dict(params)
        self.state = NonTrainable(nnx.to_pure_dict(state))
        self.trainable = trainable
        self.scalar_output = bool(scalar_output)

    def merge(self) -> nnx.Module:
        """The NNX module with the current (e.g. trained) values.

        **Returns:**

        A new `nnx.Module` built by `nnx.merge` from the graph definition, `params` and
        `state`.
        """
        return nnx.merge(self.graphdef, self.params, self.state.value)

    def _output(self, out: Any) -> Any:
        return as_scalar("NNXModel", out) if self.scalar_output else out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the module on `args` and `kwargs` (functionally, see the class docstring).

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to the module's `__call__`.

        **Returns:**

        The module's output (a 0-d array with `scalar_output=True`).
        """
        state = stop_gradients(self.state.value)
        module = nnx.merge(self.graphdef, self.params, state)
        return self._output(module(*args, **kwargs))

    def call_and_update(self, *args: Any, **kwargs: Any) -> tuple[Any, "NNXModel"]:
        """Calls the module and keeps what it writes to its variables.

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to the module's `__call__`.

        **Returns:**

        `(output, model)`: the output, and a new `NNXModel` holding the variables as the
        module left them (e.g. updated BatchNorm statistics, advanced RNG counters).
        """
        module = nnx.merge(self.graphdef, self.params, stop_gradients(self.state.value))
        out = self._output(module(*args, **kwargs))
        return out, NNXModel(module, trainable=self.trainable, scalar_output=self.scalar_output)


def from_nnx(
    module: nnx.Module, *, trainable: Any = nnx.Param, scalar_output: bool = False
) -> NNXModel:
    """Wraps a Flax NNX module as a sciml model (an `equinox.Module`).

    The result is a pytree that works with `jax.jit`, `jax.vmap`, `jax.grad`,
    `eqx.filter_*`, `sciml.train.train_step` / `fit`, checkpoints and `sciml.pinn.solve`;
    `nnx.Param` variables are trained, all other variables are kept constant. See
    `sciml.interop.NNXModel` for how the module is called.

    **Arguments:**

    - `module`: the NNX module. As for every sciml model, it should act on ONE sample.
    - `trainable`: NNX filter of the trainable variables (default `nnx.Param`).
    - `scalar_output`: return the single output value as a 0-d array (needed by
        `sciml.derivatives.laplacian` and the PINN residuals, which take scalar fields).

    **Returns:**

    An `NNXModel`; `model.merge()` gives the NNX module back with the current values.

    **Example:**

    ```python
    from flax import nnx
    import sciml

    net = nnx.Sequential(
        nnx.Linear(2, 32, rngs=nnx.Rngs(0)), nnx.tanh, nnx.Linear(32, 1, rngs=nnx.Rngs(1))
    )
    model = sciml.interop.from_nnx(net, scalar_output=True)
    model, history = sciml.pinn.solve(
        sciml.pinn.benchmarks.poisson_2d(), model, key=jax.random.key(0), steps=1000,
        learning_rate=1e-2, num_points={"residual": 512, "boundary": 128},
    )
    trained_net = model.merge()
    ```
    """
    return NNXModel(module, trainable=trainable, scalar_output=scalar_output)


class Buffer(nnx.Variable):
    """A non-trainable array of a sciml model wrapped by `to_nnx` (normaliser statistics,
    integer arrays, PRNG keys): an `nnx.Variable` that is not an `nnx.Param`, so optimisers
    and `nnx.grad` built for `nnx.Param` leave it alone."""


class SciMLModule(nnx.Module):
    """A sciml model as a Flax NNX module.

    Each array leaf of the model becomes a variable named by its dotted pytree path
    (`"weights.0"`, `"model.x_normalizer.mean"`): the trainable ones (by
    `sciml.train.trainable_filter`, or a given `filter_spec`) are `nnx.Param`s in the
    `nnx.Dict` attribute `params`, the others are `sciml.interop.Buffer`s in `buffers`.
    Non-array leaves (activation functions, Python numbers) stay in the static structure.
    Calling the module rebuilds the sciml model from the current variable values (buffers
    through `jax.lax.stop_gradient`) and calls it, so it works with `nnx.Optimizer`,
    `nnx.grad`, `nnx.jit` and `nnx.split` / `nnx.merge`.

    Build it with `sciml.interop.to_nnx`.
    """

    def __init__(self, model: PyTree, *, filter_spec: PyTree[bool] | None = None):
        """**Arguments:**

        - `model`: any sciml model (a callable pytree, e.g. an `equinox.Module`).
        - `filter_spec`: which leaves are trainable; default
            `sciml.train.trainable_filter(model)`.
        """
        layout, params, buffers = split_model(model, filter_spec)
        self.layout: Layout = layout
        self.params = nnx.Dict({name: nnx.Param(x) for name, x in params.items()})
        self.buffers = nnx.Dict({name: Buffer(x) for name, x in buffers.items()})

    def to_sciml(self) -> PyTree:
        """The sciml model with the current (e.g. trained) values.

        **Returns:**

        A model of the same type and structure as the one wrapped, whose arrays are the
        values of `params` and `buffers`.
        """
        params = {name: v.get_value() for name, v in self.params.items()}
        buffers = {name: v.get_value() for name, v in self.buffers.items()}
        return build_model(self.layout, params, buffers)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the sciml model.

        **Arguments:**

        - `*args`, `**kwargs`: forwarded to the model (e.g. one sample `x`; `(u, y)` for a
            `DeepONet`).

        **Returns:**

        The model's output.
        """
        return self.to_sciml()(*args, **kwargs)


def to_nnx(model: PyTree, *, filter_spec: PyTree[bool] | None = None) -> SciMLModule:
    """Wraps a sciml model (any callable pytree) as a Flax NNX module.

    Trainable arrays become `nnx.Param`s, non-trainable ones (e.g. the statistics of
    `sciml.train.Normalized`) become `sciml.interop.Buffer` variables. See
    `sciml.interop.SciMLModule`.

    **Arguments:**

    - `model`: the sciml model, e.g. `sciml.operators.FNO(...)`.
    - `filter_spec`: trainable leaves; default `sciml.train.trainable_filter(model)`.

    **Returns:**

    A `SciMLModule`; `module.to_sciml()` gives the sciml model back with the current values.

    **Example:**

    ```python
    import optax
    from flax import nnx
    import sciml

    fno = sciml.operators.FNO(1, 1, modes=(8, 8), width=16, key=jax.random.key(0))
    module = sciml.interop.to_nnx(fno)
    optimizer = nnx.Optimizer(module, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(module, optimizer, x, y):  # x, y: (batch, 1, s, s)
        loss_fn = lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2)
        loss, grads = nnx.value_and_grad(loss_fn)(module)
        optimizer.update(module, grads)
        return loss
    ```
    """
    return SciMLModule(model, filter_spec=filter_spec)
