"""Poisson on the L-shaped domain as a problem module (`experiments/pinn_poisson_l_shape.toml`):

    -Lap u = 1 in [-1, 1]^2 \\ [0, 1]^2,  u = 0 on the boundary,

on a `sciml.pinn.Polygon`, against the 5-point finite-difference solution of
`poisson_l_shape.py` (`[problem.options] n`: grid intervals per axis, default 128) at its
interior nodes. `u = 0` on the whole boundary, so `model.hard_constraint = true` applies (the
polygon's distance function times the network).
"""

from poisson_l_shape import L_SHAPE, finite_difference

import sciml.pinn as pinn
from sciml.derivatives import laplacian


def problem(n: int = 128) -> pinn.Problem:
    return pinn.Problem(
        lambda u, x: -laplacian(u, x) - 1.0,
        pinn.Polygon(L_SHAPE),
        {"boundary": pinn.Dirichlet(0.0)},
        reference=finite_difference(n),
    )
