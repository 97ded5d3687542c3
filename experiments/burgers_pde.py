"""Burgers' equation as a problem module for `sciml run` (`experiments/pinn_burgers.toml`):

    u_t + u u_x = nu u_xx on [-1, 1] x [0, 1],  u(x, 0) = -sin(pi x),  u(+-1, t) = 0,
    nu = 0.01 / pi.

The reference comes from sciml's own solver: `sciml.data.burgers_solve` solves Burgers
periodic on [0, 1). Odd initial data on the periodic interval [-1, 1) stays odd, so
u(+-1, t) = 0 and the periodic solution is the Dirichlet one. With y = (x + 1) / 2 and
s = t / 2, v(y, s) = u(x, t) solves v_s + v v_y = (nu / 2) v_yy with v(y, 0) = sin(2 pi y):
one solve with viscosity nu / 2 to s = 1 / 2 gives u on a grid (2,048 points, 2,500 steps,
about 4 s on a 2-core CPU; 512 points and 1,000 steps are 4e-4 relative from it).

`burgers_inverse_pde.py` (the inverse problem) and `burgers_inverse.py` import from here.
"""

import functools
import math

import jax.numpy as jnp
import numpy as np

import sciml.pinn as pinn
from sciml.data import burgers_solve
from sciml.derivatives import partial

NU = 0.01 / math.pi
DOMAIN = pinn.SpaceTime(pinn.Box((-1.0,), (1.0,)), 0.0, 1.0)


@functools.cache
def reference(grid: int = 2048, num_times: int = 101, steps: int = 2500):
    """u on x_j = -1 + 2 j / grid (j < grid, and x = 1 by periodicity) at t_i = i / (num_times
    - 1): arrays `x`, `t` and `u` of shape `(times, grid + 1)` (computed once per process)."""
    y = np.arange(grid) / grid
    v0 = jnp.asarray(np.sin(2 * np.pi * y))
    ts = np.linspace(0.0, 0.5, num_times)
    v = np.asarray(burgers_solve(v0, nu=NU / 2, t_final=0.5, num_steps=steps, ts=ts))
    x = np.append(2 * y - 1, 1.0)
    u = np.concatenate([v, v[:, :1]], axis=1)  # (times, grid + 1)
    return x, 2 * ts, u


def burgers_residual(u, x, nu):
    """`u_t + u u_x - nu u_xx` at one point `x = (x, t)`."""
    u_x = lambda p: partial(u, p, 0)
    return partial(u, x, 1) + u(x) * u_x(x) - nu * partial(u_x, x, 0)


def conditions() -> dict:
    return {
        "initial": pinn.Initial(lambda p: -jnp.sin(jnp.pi * p[0])),
        "boundary": pinn.Dirichlet(0.0),
    }


def reference_points(every: int = 7, t_final: float = 1.0):
    """The reference as `(points (n, 2), values (n,))`: every `every`-th grid node with
    t <= t_final."""
    x, t, u = reference()
    xx, tt = np.meshgrid(x, t)
    points = np.stack([xx.ravel(), tt.ravel()], 1)[::every]
    keep = points[:, 1] <= t_final + 1e-12
    return points[keep], u.ravel()[::every][keep]


def problem(t_final: float = 1.0) -> pinn.Problem:
    """The forward problem on [-1, 1] x [0, t_final] (the shock forms near t = 0.3)."""
    domain = DOMAIN if t_final == 1.0 else pinn.SpaceTime(pinn.Box((-1.0,), (1.0,)), 0.0, t_final)
    return pinn.Problem(
        lambda u, x: burgers_residual(u, x, NU),
        domain,
        conditions(),
        reference=reference_points(t_final=t_final),
    )
