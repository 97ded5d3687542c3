"""Hard constraints: an output ansatz that satisfies a Dirichlet condition by construction."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._domain import AbstractDomain


class HardConstraint(eqx.Module):
    """`u(x) = value(x) + distance(x) * network(x)`.

    Where `distance` vanishes, `u` equals `value` exactly, whatever the network's parameters,
    so the condition needs no loss term (Lagaris et al. 1998; Sukumar & Srivastava 2022). With a
    domain, `distance = domain.distance`, which is exactly zero at the points its boundary
    sampler returns on box faces. For an initial condition as well, pass e.g.
    `distance=lambda p: (p[-1] - t0) * domain.distance(p)` and a `value` that meets both.

    **Arguments:**

    - `network`: the trainable model of one point.
    - `distance`: a `sciml.pinn` domain, or a function of one point vanishing where the
        condition holds.
    - `value`: the imposed value, a number or a function of one point (default 0), which
        should extend the boundary data smoothly into the domain.
    """

    network: Callable
    # Static: a model's leaves are its arrays only, so that it can be passed to `jax.jit` and
    # `jax.grad` directly; and a number `value` as a leaf would be one more entry in every
    # checkpoint (`eqx.tree_serialise_leaves` writes numbers): earlier ones would not load.
    distance: Callable = eqx.field(static=True)
    value: float | Callable = eqx.field(static=True, default=0.0)

    def __init__(self, network, distance, value=0.0):
        if isinstance(distance, AbstractDomain):
            distance = distance.distance
        if not callable(distance):
            raise ValueError(f"`distance` must be a domain or a function, got {distance!r}.")
        self.network, self.distance, self.value = network, distance, value

    def __call__(self, x: Float[Array, " dim"]) -> Array:
        out = self.network(x)
        g = self.value(x) if callable(self.value) else self.value
        return jnp.asarray(g, out.dtype) + self.distance(x).astype(out.dtype) * out
