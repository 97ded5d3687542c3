"""Flax interoperability, both ways.

Flax models as sciml models (`equinox.Module`s: pytrees that work with `jax.jit`,
`jax.vmap`, `jax.grad`, `eqx.filter_*`, `sciml.train.fit` / `train_step`, checkpoints and
`sciml.pinn.solve`):

- `from_nnx(module)` -> `NNXModel`: the NNX graph definition is static, the `nnx.Param`
    variables are the trainable field `params`, every other variable (batch statistics, RNG
    state) is the field `state`, wrapped in `sciml.train.NonTrainable` so training leaves it
    unchanged. The call merges a copy of the module and calls it (variable writes are dropped;
    `call_and_update` keeps them).
- `from_linen(module, variables)` -> `LinenModel`: calls `module.apply(variables, ...)`; the
    `params` collection is trainable, the other collections are `NonTrainable`.

Both take `scalar_output=True` to return a one-value output as a 0-d array, the convention
of scalar fields in `sciml.derivatives` and `sciml.pinn`.

sciml models (any callable pytree) as Flax modules, each array leaf named by its dotted
pytree path (`"weights.0"`):

- `to_nnx(model)` -> `SciMLModule` (an `nnx.Module`): trainable arrays (by
    `sciml.train.trainable_filter`) are `nnx.Param`s, the others `Buffer` variables; works
    with `nnx.Optimizer`, `nnx.grad`, `nnx.jit`, `nnx.split` / `nnx.merge`.
- `to_linen(model)` -> `SciMLLinen` (a `flax.linen.Module`): `init` creates the `params`
    collection (trainable arrays) and the `buffers` collection (the others) with the model's
    values; `apply` calls the model.

`NNXModel.merge()`, `LinenModel.variables`, `SciMLModule.to_sciml()` and
`SciMLLinen.to_sciml(variables)` give the trained model back on the other side.
"""

from ._linen import LinenModel as LinenModel
from ._linen import SciMLLinen as SciMLLinen
from ._linen import from_linen as from_linen
from ._linen import to_linen as to_linen
from ._nnx import Buffer as Buffer
from ._nnx import NNXModel as NNXModel
from ._nnx import SciMLModule as SciMLModule
from ._nnx import from_nnx as from_nnx
from ._nnx import to_nnx as to_nnx
