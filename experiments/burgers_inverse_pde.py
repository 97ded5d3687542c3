"""The Burgers inverse problem as a problem module (`experiments/pinn_burgers_inverse.toml`):
the viscosity nu of `burgers_pde.py`'s problem is unknown (started at 0.05, kept positive)
and observations of u, drawn at random from the solver's grid, join the loss as the term
"data". `[problem.options]` sets `num` (2,000), `noise` (0: Gaussian noise of this times the
values' standard deviation) and `seed` (0).
"""

import numpy as np
from burgers_pde import DOMAIN, burgers_residual, conditions, reference, reference_points

import sciml.pinn as pinn

parameters = {"nu": 0.05}
positive = ["nu"]


def observations(num: int = 2000, noise: float = 0.0, seed: int = 0):
    """`num` nodes of the reference grid and u there, with Gaussian noise of `noise` times
    the values' standard deviation: `(points (num, 2), values (num,))`."""
    x, t, u = reference()
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(t), num), rng.integers(0, len(x), num)
    values = u[i, j]
    values = values + noise * np.std(values) * rng.standard_normal(values.shape)
    return np.stack([x[j], t[i]], axis=1), values


def problem(num: int = 2000, noise: float = 0.0, seed: int = 0) -> pinn.Problem:
    points, values = observations(num, noise, seed)
    return pinn.Problem(
        lambda u, x: burgers_residual(u, x, u.parameters["nu"]),
        DOMAIN,
        {"data": pinn.Observations(points, values), **conditions()},
        reference=reference_points(),
    )
