"""The benchmark problems of the PINN and Physics-Informed Gaussian (PIG) literature.

Each factory returns a `Problem` with its exact solution, or with a reference computed by our
own solvers (`sciml.data`). Source terms of manufactured solutions are obtained by applying the
differential operator to the exact solution with the same automatic differentiation, so they
are consistent to rounding.

| name | PDE | domain | reference |
| --- | --- | --- | --- |
| `poisson_2d` | -Lap u = f | [-1, 1]^2 | exact |
| `helmholtz_2d` | Lap u + k^2 u = q | [-1, 1]^2 | exact |
| `klein_gordon` | u_tt - Lap u + u^2 = f | [-1, 1]^2 x [0, 10] | exact |
| `flow_mixing` | u_t + a u_x + b u_y = 0 | [-4, 4]^2 x [0, 4] | exact |
| `nonlinear_diffusion` | `u_t = a (|grad u|^2 + u Lap u)` | [-1, 1]^2 x [0, 1] | finite diff. |
| `allen_cahn` | u_t - eps u_xx + 5 u^3 - 5 u = 0 | [-1, 1] x [0, 1], periodic | spectral |

High-frequency and multi-scale cases of GP-HM (Fang et al., ICLR 2024), each with its exact
solution, Dirichlet data from it, and errors measured on a fine uniform grid (4001 nodes in
1-D, 401^2 in 2-D, 101 x 401 for advection) (`sciml.gp` solves them; PINNs and PIGs
struggle):

| name | PDE | domain | solution |
| --- | --- | --- | --- |
| `poisson_1d_sin_100x` | u'' = f | [0, 2 pi] | sin(100 x) |
| `poisson_1d_sin_6x_cos_100x` | u'' = f | [0, 2 pi] | sin(6 x) cos(100 x) |
| `poisson_1d_x_sin_200x` | u'' = f | [0, 2 pi] | x sin(200 x) |
| `poisson_1d_multiscale` | u'' = f | [0, 1] | sin(x) + 0.1 sin(20 x) + 0.05 cos(100 x) |
| `poisson_1d_sin_500x` | u'' = f | [0, 1] | sin(500 x) - 2 (x - 0.5)^2 |
| `allen_cahn_1d_sin_100x` | u'' + u (u^2 - 1) = f | [0, 2 pi] | sin(100 x) |
| `allen_cahn_1d_sin_6x_cos_100x` | u'' + u (u^2 - 1) = f | [0, 2 pi] | sin(6 x) cos(100 x) |
| `poisson_2d_sin_100x` | Lap u = f | [0, 2 pi]^2 | sin(100 x) sin(100 y) |
| `advection_sin` | u_t + 200 u_x = 0 | [0, 1] x [0, 1] | sin(x - 200 t) |
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..derivatives import differential_operator, laplacian
from ._conditions import Dirichlet, Initial, Periodic
from ._domain import Box, SpaceTime
from ._problem import Problem


def _time_derivative(u: Callable, x, order: int = 1):
    e = jnp.zeros_like(x).at[-1].set(1.0)
    if order == 1:
        return jax.jvp(u, (x,), (e,))[1]
    return jax.jvp(lambda y: _time_derivative(u, y, order - 1), (x,), (e,))[1]


def poisson_2d() -> Problem:
    """`-Lap u = 2 pi^2 sin(pi x) sin(pi y)` on `[-1, 1]^2`, `u = 0` on the boundary;
    `u = sin(pi x) sin(pi y)`. Terms: `residual`, `boundary`."""
    exact = lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])
    return Problem(
        residual=lambda u, x: -laplacian(u, x) - 2 * jnp.pi**2 * exact(x),
        domain=Box([-1.0, -1.0], [1.0, 1.0]),
        conditions={"boundary": Dirichlet(0.0)},
        exact=exact,
    )


def helmholtz_2d(a1: float = 1.0, a2: float = 4.0, k: float = 1.0) -> Problem:
    """`Lap u + k^2 u = q` on `[-1, 1]^2`, `u = 0` on the boundary, with
    `u = sin(a1 pi x) sin(a2 pi y)` and `q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u` (Wang, Teng &
    Perdikaris 2021; the PIG paper's setting a1 = 1, a2 = 4, k = 1). Terms: `residual`,
    `boundary`."""
    exact = lambda x: jnp.sin(a1 * jnp.pi * x[0]) * jnp.sin(a2 * jnp.pi * x[1])
    factor = k**2 - (a1 * jnp.pi) ** 2 - (a2 * jnp.pi) ** 2
    return Problem(
        residual=lambda u, x: laplacian(u, x) + k**2 * u(x) - factor * exact(x),
        domain=Box([-1.0, -1.0], [1.0, 1.0]),
        conditions={"boundary": Dirichlet(0.0)},
        exact=exact,
    )


def klein_gordon(k: float = 2.0, t_final: float = 10.0) -> Problem:
    """The (2+1)-d Klein-Gordon equation `u_tt - (u_xx + u_yy) + u^2 = f` on `[-1, 1]^2 x
    [0, t_final]` with `u = (x + y) cos(k t) + x y sin(k t)` (Cho et al., "Separable PINNs",
    2023; the PIG paper's setting k = 2, t_final = 10): `u(x, y, 0) = x + y` and Dirichlet data
    from `u` on the lateral boundary; as in both papers, no condition on `u_t` at `t = 0`.
    Points are `(x, y, t)`. Terms: `residual`, `initial`, `boundary`."""
    exact = lambda p: (p[0] + p[1]) * jnp.cos(k * p[2]) + p[0] * p[1] * jnp.sin(k * p[2])
    wave = {(0, 0, 2): 1.0, (2, 0, 0): -1.0, (0, 2, 0): -1.0}
    source = lambda p: differential_operator(exact, p, wave) + exact(p) ** 2
    return Problem(
        residual=lambda u, p: differential_operator(u, p, wave) + u(p) ** 2 - source(p),
        domain=SpaceTime(Box([-1.0, -1.0], [1.0, 1.0]), 0.0, t_final),
        conditions={"initial": Initial(exact), "boundary": Dirichlet(exact)},
        exact=exact,
    )


_VT_MAX = 0.385


def _flow_mixing_fields(x, y):
    r = jnp.sqrt(x**2 + y**2)
    safe = jnp.maximum(r, 1e-12)
    # v_t / r = sech^2(r) tanh(r) / r -> 1 as r -> 0.
    vt_over_r = jnp.where(r > 1e-6, jnp.tanh(safe) / safe, 1.0 - r**2 / 3) / jnp.cosh(r) ** 2
    a = -vt_over_r / _VT_MAX * y
    b = vt_over_r / _VT_MAX * x
    omega = vt_over_r / _VT_MAX
    return a, b, omega


def flow_mixing() -> Problem:
    """`u_t + a u_x + b u_y = 0` on `[-4, 4]^2 x [0, 4]`: a vortex with
    `(a, b) = (v_t / v_t,max) (-y, x) / r`, `v_t = sech^2(r) tanh(r)`, `v_t,max = 0.385`, and
    exact solution `u = -tanh(y/2 cos(w t) - x/2 sin(w t))`, `w = v_t / (r v_t,max)`
    (Cho et al., "Separable PINNs", 2023; the PIG paper's flow mixing). Points are `(x, y, t)`.
    Terms: `residual`, `initial`, `boundary`."""

    def exact(p):
        x, y, t = p
        omega = _flow_mixing_fields(x, y)[2]
        return -jnp.tanh(y / 2 * jnp.cos(omega * t) - x / 2 * jnp.sin(omega * t))

    def residual(u, p):
        a, b, _ = _flow_mixing_fields(p[0], p[1])
        du = jax.grad(lambda q: jnp.squeeze(u(q)))(p)
        return du[2] + a * du[0] + b * du[1]

    return Problem(
        residual=residual,
        domain=SpaceTime(Box([-4.0, -4.0], [4.0, 4.0]), 0.0, 4.0),
        conditions={"initial": Initial(exact), "boundary": Dirichlet(exact)},
        exact=exact,
    )


def nonlinear_diffusion_initial(p):
    """The initial condition of `nonlinear_diffusion`: three Gaussian bumps (SPINN's
    `diffusion3d`)."""
    x, y = p[0], p[1]
    return (
        0.25 * jnp.exp(-((x - 0.3) ** 2 + (y - 0.2) ** 2) / 0.1)
        + 0.4 * jnp.exp(-15 * ((x + 0.5) ** 2 + (y + 0.1) ** 2))
        + 0.3 * jnp.exp(-20 * (x**2 + (y + 0.5) ** 2))
    )


def nonlinear_diffusion(*, resolution: int = 100, num_times: int = 101) -> Problem:
    """`u_t = 0.05 (|grad u|^2 + u Lap u)` on `[-1, 1]^2 x [0, 1]`, `u = 0` on the boundary,
    three Gaussian bumps at `t = 0` (the (2+1)-d diffusion problem of Cho et al. 2023, the PIG
    paper's nonlinear diffusion). Reference: `sciml.data.nonlinear_diffusion_reference` on the
    `(resolution + 1)^2` nodes at `num_times` times (default: the benchmark's 101^3 test grid;
    about 10 s to compute on a 2-core CPU). Points are `(x, y, t)`.
    Terms: `residual`, `initial`, `boundary`."""
    from ..data import nonlinear_diffusion_reference

    alpha = 0.05

    def residual(u, p):
        scalar = lambda q: jnp.squeeze(u(q))
        du = jax.grad(scalar)(p)
        lap = laplacian(lambda q: scalar(jnp.append(q, p[2])), p[:2])
        return du[2] - alpha * (du[0] ** 2 + du[1] ** 2 + scalar(p) * lap)

    with jax.enable_x64(True):  # the reference is computed in float64 whatever the run uses
        x, y, t, u = map(np.asarray, nonlinear_diffusion_reference(resolution, num_times))
    grid = np.stack(np.meshgrid(np.asarray(x), np.asarray(y), np.asarray(t), indexing="ij"), -1)
    values = np.transpose(np.asarray(u), (1, 2, 0))  # (t, x, y) -> (x, y, t)
    return Problem(
        residual=residual,
        domain=SpaceTime(Box([-1.0, -1.0], [1.0, 1.0]), 0.0, 1.0),
        conditions={"initial": Initial(nonlinear_diffusion_initial), "boundary": Dirichlet(0.0)},
        reference=(jnp.asarray(grid.reshape(-1, 3), float), jnp.asarray(values.reshape(-1), float)),
    )


def allen_cahn(
    eps: float = 1e-4, gamma: float = 5.0, *, resolution: int = 512, num_times: int = 201
) -> Problem:
    """`u_t - eps u_xx + gamma (u^3 - u) = 0` on `[-1, 1] x [0, 1]`, periodic in `x`,
    `u(x, 0) = x^2 cos(pi x)` (Raissi et al. 2019; JAX-PI and the PIG paper). Reference:
    `sciml.data.allen_cahn_reference` (Fourier pseudo-spectral, ETDRK4) on `resolution` x
    `num_times` points. Points are `(x, t)`. Terms: `residual`, `initial`, `periodic`."""
    from ..data import allen_cahn_reference

    def residual(u, p):
        scalar = lambda q: jnp.squeeze(u(q))
        u_t = _time_derivative(scalar, p)
        u_xx = differential_operator(scalar, p, {(2, 0): 1.0})
        value = scalar(p)
        return u_t - eps * u_xx + gamma * (value**3 - value)

    with jax.enable_x64(True):  # the reference is computed in float64 whatever the run uses
        x, t, u = map(np.asarray, allen_cahn_reference(resolution, num_times))
    grid = np.stack(np.meshgrid(np.asarray(x), np.asarray(t), indexing="ij"), -1)
    values = np.asarray(u).T  # (t, x) -> (x, t)
    return Problem(
        residual=residual,
        domain=SpaceTime(Box([-1.0], [1.0]), 0.0, 1.0),
        conditions={
            "initial": Initial(lambda p: p[0] ** 2 * jnp.cos(jnp.pi * p[0])),
            "periodic": Periodic(axis=0, derivatives=(0, 1)),
        },
        reference=(jnp.asarray(grid.reshape(-1, 2), float), jnp.asarray(values.reshape(-1), float)),
    )


def _manufactured(
    exact: Callable, operator: Callable, domain, evaluation: tuple[int, ...], conditions=None
) -> Problem:
    """A `Problem` whose source is `operator(exact, x)` (same autodiff as the residual), with
    Dirichlet data from `exact` on the whole boundary unless `conditions` are given. Errors are
    measured on a uniform grid of `evaluation` nodes per axis (the `reference`): the default
    101-node grid would sample `sin(100 x)` on `[0, 2 pi]` at its zeros."""
    source = lambda x: operator(exact, x)
    lower, upper = domain.bounds
    lines = [np.linspace(a, b, n) for a, b, n in zip(lower, upper, evaluation, strict=True)]
    points = np.stack([g.reshape(-1) for g in np.meshgrid(*lines, indexing="ij")], axis=-1)
    with jax.enable_x64(True):
        values = np.asarray(jax.vmap(exact)(jnp.asarray(points, jnp.float64)))
    return Problem(
        residual=lambda u, x: operator(lambda y: jnp.squeeze(u(y)), x) - source(x),
        domain=domain,
        conditions=conditions or {"boundary": Dirichlet(exact)},
        exact=exact,
        reference=(jnp.asarray(points, float), jnp.asarray(values, float)),
    )


_POISSON_1D: dict[str, tuple[Callable, float]] = {
    "sin_100x": (lambda x: jnp.sin(100 * x[0]), 2 * np.pi),
    "sin_6x_cos_100x": (lambda x: jnp.sin(6 * x[0]) * jnp.cos(100 * x[0]), 2 * np.pi),
    "x_sin_200x": (lambda x: x[0] * jnp.sin(200 * x[0]), 2 * np.pi),
    "multiscale": (
        lambda x: jnp.sin(x[0]) + 0.1 * jnp.sin(20 * x[0]) + 0.05 * jnp.cos(100 * x[0]),
        1.0,
    ),
    "sin_500x": (lambda x: jnp.sin(500 * x[0]) - 2 * (x[0] - 0.5) ** 2, 1.0),
}


def _second_derivative(u: Callable, x):
    return differential_operator(u, x, {(2,): 1.0})


def _poisson_1d(case: str) -> Callable[[], Problem]:
    exact, length = _POISSON_1D[case]

    def factory() -> Problem:
        return _manufactured(exact, _second_derivative, Box([0.0], [length]), (4001,))

    factory.__doc__ = f"`u'' = f` on `[0, {length:.4g}]`, `u = {case}` (GP-HM's 1-D Poisson)."
    return factory


def _allen_cahn_1d(case: str) -> Callable[[], Problem]:
    exact, length = _POISSON_1D[case]
    operator = lambda u, x: _second_derivative(u, x) + u(x) * (u(x) ** 2 - 1)

    def factory() -> Problem:
        return _manufactured(exact, operator, Box([0.0], [length]), (4001,))

    factory.__doc__ = (
        f"`u'' + u (u^2 - 1) = f` on `[0, {length:.4g}]`, `u = {case}` (GP-HM's steady 1-D "
        "Allen-Cahn)."
    )
    return factory


def poisson_2d_sin_100x() -> Problem:
    """`Lap u = f` on `[0, 2 pi]^2` with `u = sin(100 x) sin(100 y)` (GP-HM's 2-D Poisson)."""
    exact = lambda x: jnp.sin(100 * x[0]) * jnp.sin(100 * x[1])
    return _manufactured(exact, laplacian, Box([0.0, 0.0], [2 * np.pi, 2 * np.pi]), (401, 401))


def advection_sin(beta: float = 200.0) -> Problem:
    """`u_t + beta u_x = 0` on `[0, 1] x [0, 1]` with `u = sin(x - beta t)` (GP-HM's
    advection): `u(x, 0)` and the values at `x = 0, 1` from the solution. Points `(x, t)`."""
    exact = lambda p: jnp.sin(p[0] - beta * p[1])
    operator = lambda u, p: differential_operator(u, p, {(0, 1): 1.0, (1, 0): beta})
    return _manufactured(
        exact,
        operator,
        SpaceTime(Box([0.0], [1.0]), 0.0, 1.0),
        (101, 401),
        conditions={"initial": Initial(exact), "boundary": Dirichlet(exact)},
    )


HIGH_FREQUENCY: dict[str, Callable[[], Problem]] = {
    **{f"poisson_1d_{case}": _poisson_1d(case) for case in _POISSON_1D},
    **{f"allen_cahn_1d_{case}": _allen_cahn_1d(case) for case in ("sin_100x", "sin_6x_cos_100x")},
    "poisson_2d_sin_100x": poisson_2d_sin_100x,
    "advection_sin": advection_sin,
}


BENCHMARKS: dict[str, Callable[..., Problem]] = {
    "poisson_2d": poisson_2d,
    "helmholtz_2d": helmholtz_2d,
    "klein_gordon": klein_gordon,
    "flow_mixing": flow_mixing,
    "nonlinear_diffusion": nonlinear_diffusion,
    "allen_cahn": allen_cahn,
    # GP-HM's cases with a PINN config each (experiments/pinn_<name>.toml)
    **{
        name: HIGH_FREQUENCY[name]
        for name in (
            "poisson_1d_x_sin_200x",
            "poisson_1d_multiscale",
            "allen_cahn_1d_sin_100x",
            "poisson_2d_sin_100x",
            "advection_sin",
        )
    },
}
