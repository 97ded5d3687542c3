"""Coordinate models for physics-informed learning: fields `u(x)` of one point `x`.

- [`MLP`][]: a fully connected network with optional input rescaling, exact periodic embedding
    and random Fourier features.
- [`PIG`][]: Physics-Informed Gaussians, a trainable Gaussian-mixture feature embedding
    followed by a small MLP.

Both act on one unbatched point (batch with `jax.vmap`), and with `out_dim="scalar"` are scalar
fields for the operators of [`sciml.derivatives`][].
"""

from ._mlp import MLP as MLP
from ._pig import PIG as PIG
