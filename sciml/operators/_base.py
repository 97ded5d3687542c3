import abc

import equinox as eqx
from jaxtyping import Array, Float


class AbstractOperator(eqx.Module):
    """Abstract base class for neural operators on uniform grids.

    A neural operator maps one input function sampled on a grid, `x` of shape
    `(in_channels, *spatial)`, to an output function on the same grid, of shape
    `(out_channels, *spatial)`. It acts on one unbatched sample; batch with `jax.vmap`.

    Concrete subclasses must provide the fields `in_channels`, `out_channels` and
    `num_spatial_dims` and implement `__call__`.
    """

    in_channels: eqx.AbstractVar[int]
    out_channels: eqx.AbstractVar[int]
    num_spatial_dims: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(
        self, x: Float[Array, " in_channels *spatial"]
    ) -> Float[Array, " out_channels *spatial"]:
        """**Arguments:**

        - `x`: the input function, channels first, `num_spatial_dims` spatial axes after.

        **Returns:**

        The output function, of shape `(out_channels, *spatial)`.
        """
