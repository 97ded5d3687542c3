"""A 2-D inverse coefficient problem as a problem module
(`experiments/pinn_conductivity_inverse.toml`): the conductivity of a steady heat equation on
the unit disk,

    -div(k grad u) = f in |x| < 1,  u = u* on the circle,  k(x, y) = exp(c0 + c1 x + c2 y),

with the coefficients c = (c0, c1, c2) unknown (true: 0.3, -0.5, 0.4; started at 0) and u
measured at `num` random points of the disk (Gaussian noise of `noise` times the values'
standard deviation). The manufactured solution u* = sin(pi x) cos(pi y / 2) + x y gives f by
automatic differentiation; `[problem.options]` sets `num` (200), `noise` (0) and `seed` (0).
"""

import jax
import jax.numpy as jnp
import numpy as np

import sciml.pinn as pinn
from sciml.derivatives import divergence, gradient

TRUE_C = (0.3, -0.5, 0.4)
DOMAIN = pinn.Disk((0.0, 0.0), 1.0)
parameters = {"c": [0.0, 0.0, 0.0]}


def exact(p):
    return jnp.sin(jnp.pi * p[0]) * jnp.cos(jnp.pi * p[1] / 2) + p[0] * p[1]


def conductivity(c, p):
    return jnp.exp(c[0] + c[1] * p[0] + c[2] * p[1])


def operator(u, p, c):
    """`-div(k grad u)` at one point for the coefficients `c`."""
    return -divergence(lambda q: conductivity(c, q) * gradient(u, q), p)


def source(p):
    return operator(exact, p, jnp.asarray(TRUE_C, p.dtype))


def problem(num: int = 200, noise: float = 0.0, seed: int = 0) -> pinn.Problem:
    points = DOMAIN.sample_interior(jax.random.key(seed), num, "sobol")
    values = np.asarray(jax.vmap(exact)(points))
    rng = np.random.default_rng(seed)
    values = values + noise * np.std(values) * rng.standard_normal(values.shape)
    return pinn.Problem(
        lambda u, p: operator(u, p, u.parameters["c"]) - source(p),
        DOMAIN,
        {"boundary": pinn.Dirichlet(exact), "data": pinn.Observations(points, values)},
        exact=exact,
    )
