"""A coordinate model carrying named trainable PDE parameters (the unknowns of an inverse
problem)."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


class Parameterized(eqx.Module):
    """A coordinate model `field` with named trainable parameters beside it.

    Calling it evaluates `field`; a residual reads the parameters from the model it is given,
    e.g. `u.parameters["nu"] * laplacian(u, x)`, so training the model (`sciml.pinn.solve`,
    `sciml.train.train_step`) fits the field and the parameters together, and `solve` logs,
    checkpoints and plots them.

    **Parametrisation.** A parameter named in `positive` is stored as its logarithm and
    returned as `exp` of it: always positive, and a gradient step changes it by a relative
    amount, so unknowns of very different magnitudes (a viscosity `1e-3`, a conductivity `10`)
    train at one learning rate. The others are stored as given. `parameters` always returns
    the constrained values; `unconstrained` holds the trained leaves.

    **Arguments:**

    - `field`: the model of one point (e.g. `sciml.fields.MLP`).
    - `parameters`: initial values by name: numbers or floating arrays.
    - `positive`: names of parameters kept positive (their initial values must be > 0).
    """

    field: Callable
    unconstrained: dict[str, Array]
    positive: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        field: Callable,
        parameters: dict[str, float | ArrayLike],
        *,
        positive: tuple[str, ...] | list[str] = (),
    ):
        if not callable(field):
            raise ValueError(
                f"`Parameterized`: `field` must be a model of one point, got {field!r}."
            )
        if not isinstance(parameters, dict) or not parameters:
            raise ValueError(
                f"`Parameterized`: `parameters` must be a non-empty dict of names to numbers or "
                f"arrays, got {parameters!r}."
            )
        positive = tuple(positive)
        unknown = [n for n in positive if n not in parameters]
        if unknown:
            raise ValueError(
                f"`Parameterized`: `positive` names {unknown[0]!r}, not among the parameters "
                f"{list(parameters)}."
            )
        raw = {}
        for name, value in parameters.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    f"`Parameterized`: parameter names must be identifiers, got {name!r}."
                )
            value = jnp.asarray(value)
            if not jnp.issubdtype(value.dtype, jnp.floating):
                value = value.astype(jnp.result_type(float))
            host = np.asarray(value)
            if not np.all(np.isfinite(host)):
                raise ValueError(f"`Parameterized`: parameter {name!r} is not finite: {host}.")
            if name in positive:
                if not np.all(host > 0):
                    raise ValueError(
                        f"`Parameterized`: parameter {name!r} is in `positive` but its initial "
                        f"value is {host}, not > 0."
                    )
                value = jnp.log(value)
            raw[name] = value
        self.field = field
        self.unconstrained = raw
        self.positive = positive

    @property
    def parameters(self) -> dict[str, Array]:
        """The parameters' values (positive ones through `exp`)."""
        return {
            name: jnp.exp(value) if name in self.positive else value
            for name, value in self.unconstrained.items()
        }

    def __call__(self, x: Float[Array, " dim"]) -> Array:
        return self.field(x)


def parameter_values(model) -> dict[str, float | list]:
    """The parameters of a `Parameterized` model as JSON-ready numbers (nested lists for
    arrays), keyed `param_<name>`; `{}` for any other model."""
    if not isinstance(model, Parameterized):
        return {}
    out = {}
    for name, value in model.parameters.items():
        host = np.asarray(value)
        out[f"param_{name}"] = float(host) if host.ndim == 0 else host.tolist()
    return out


__all__ = ["Parameterized", "parameter_values"]
