"""Fourth-order exponential time differencing Runge-Kutta (ETDRK4) as a diffrax solver, for
semilinear problems with a real diagonal linear part (the pseudo-spectral Burgers and
Allen-Cahn solvers)."""

from __future__ import annotations

import functools
from typing import ClassVar

import diffrax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validate import ArgumentError

NUM_CONTOUR_POINTS = 32


def etdrk4_coefficients(
    linear: Float[ArrayLike, "*modes"], dt: float, num_points: int = NUM_CONTOUR_POINTS
) -> tuple[Float[np.ndarray | np.floating, "*modes"], ...]:
    r"""The ETDRK4 coefficients for a real diagonal linear part, in float64.

    For $z = h \lambda$ ($h$ = `dt`, $\lambda$ = `linear`) returns
    $E = e^{z}$, $E_2 = e^{z/2}$ and (Kassam & Trefethen 2005, eq. (2.5) and (2.6))

    - $Q = h\, (e^{z/2} - 1) / z$,
    - $f_1 = h\, (-4 - z + e^{z} (4 - 3z + z^2)) / z^3$,
    - $f_2 = h\, (2 + z + e^{z} (z - 2)) / z^3$,
    - $f_3 = h\, (-4 - 3z - z^2 + e^{z} (4 - z)) / z^3$.

    These formulas cancel catastrophically for small $|z|$ (and are 0/0 at $z = 0$). As
    proposed by Kassam & Trefethen, each function $g$ is evaluated instead as the mean of
    $g(z + e^{i\theta_j})$ over `num_points` points of the upper half of the unit circle around
    $z$ (Cauchy's integral formula by the trapezoid rule; $g$ is entire, so the rule converges
    geometrically; taking the real part accounts for the lower half when $z$ is real). With 32
    points the coefficients are accurate to about 1e-15 relative for every real $z \le 0$.

    **Arguments:**

    - `linear`: the real diagonal $\lambda$ of the linear operator (concrete values).
    - `dt`: the step $h$.
    - `num_points`: points on the half circle.

    **Returns:**

    `(E - 1, E2 - 1, Q, f1, f2, f3)`, float64 NumPy arrays of the shape of `linear` (NumPy
    scalars if `linear` is a scalar). The exponentials are returned minus one (`expm1`) so
    that a step can apply them as `y + (E - 1) y`: a rounded `E` close to 1 would otherwise be
    raised to the power of the number of steps, a systematic error of (number of steps) x
    (rounding of E), e.g. 1e-5 after 1000 float32 steps.
    """
    z = dt * np.asarray(linear, dtype=np.float64)
    r = np.exp(1j * np.pi * (np.arange(1, num_points + 1) - 0.5) / num_points)
    lr = z[..., None] + r
    elr = np.exp(lr)

    def mean(g):
        return dt * np.real(np.mean(g, axis=-1))

    q = mean((np.exp(lr / 2) - 1) / lr)
    f1 = mean((-4 - lr + elr * (4 - 3 * lr + lr**2)) / lr**3)
    f2 = mean((2 + lr + elr * (lr - 2)) / lr**3)
    f3 = mean((-4 - 3 * lr - lr**2 + elr * (4 - lr)) / lr**3)
    return np.expm1(z), np.expm1(z / 2), q, f1, f2, f3


class ETDRK4(diffrax.AbstractSolver):
    r"""Fourth-order exponential time differencing Runge-Kutta for $y' = \Lambda y + N(t, y)$.

    Cox & Matthews (2002), "Exponential time differencing for stiff systems", J. Comput. Phys.
    176, eq. (26)-(29), with the coefficients of `etdrk4_coefficients` (Kassam & Trefethen
    2005, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci. Comput. 26). The linear part
    $\Lambda$ is a real diagonal held by the solver and integrated exactly; the term passed to
    `diffrax.diffeqsolve` (an `ODETerm`) is the nonlinear part $N$ alone:

    $a = E_2 y_n + Q N(t_n, y_n)$, $b = E_2 y_n + Q N(t_n + h/2, a)$,
    $c = E_2 a + Q (2 N(t_n + h/2, b) - N(t_n, y_n))$,
    $y_{n+1} = E y_n + f_1 N(t_n, y_n) + 2 f_2 (N(t_n + h/2, a) + N(t_n + h/2, b))
    + f_3 N(t_n + h, c)$.

    The coefficients depend on the step, so they are computed once (in float64, on the host)
    for the step `dt`: use the solver with `diffrax.ConstantStepSize()` and `dt0` such that
    every step equals `dt` (e.g. `dt0 = (t1 - t0) / num_steps`, `dt = dt0`). There is no
    embedded error estimate, hence no adaptive stepping. Dense output is linear between steps.

    **Arguments:**

    - `linear`: the diagonal of $\Lambda$, real, concrete, broadcastable against every leaf
      of the state.
    - `dt`: the step.
    - `dtype`: floating dtype the coefficients are cast to (that of the state).
    - `num_points`: contour points for the coefficients.
    """

    linear: Float[Array, "*modes"]
    dt: Float[Array, ""]
    expm1_full: Float[Array, "*modes"]
    expm1_half: Float[Array, "*modes"]
    q: Float[Array, "*modes"]
    f1: Float[Array, "*modes"]
    f2: Float[Array, "*modes"]
    f3: Float[Array, "*modes"]

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def __init__(self, linear, dt, *, dtype=None, num_points: int = NUM_CONTOUR_POINTS):
        linear = np.asarray(linear, dtype=np.float64)
        dt = float(dt)
        if not dt > 0:
            raise ArgumentError(f"`ETDRK4` needs a step `dt` > 0, got {dt!r}.", argument="dt")
        if dtype is None:
            dtype = jnp.result_type(float)
        coefficients = etdrk4_coefficients(linear, dt, num_points)
        self.linear = jnp.asarray(linear, dtype)
        self.dt = jnp.asarray(dt, jnp.result_type(float))
        self.expm1_full, self.expm1_half, self.q, self.f1, self.f2, self.f3 = (
            jnp.asarray(c, dtype) for c in coefficients
        )

    def order(self, terms):
        return 4

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del t1, solver_state, made_jump
        h = self.dt
        add = functools.partial(jtu.tree_map, lambda *xs: sum(xs[1:], xs[0]))

        def scale(c, tree):
            return jtu.tree_map(lambda x: c * x, tree)

        def propagate(em1, tree):
            # E y computed as y + (E - 1) y; see `etdrk4_coefficients`.
            return jtu.tree_map(lambda x: x + em1 * x, tree)

        def nonlinear(t, y):
            return terms.vf(t, y, args)

        n_y = nonlinear(t0, y0)
        a = add(propagate(self.expm1_half, y0), scale(self.q, n_y))
        n_a = nonlinear(t0 + h / 2, a)
        b = add(propagate(self.expm1_half, y0), scale(self.q, n_a))
        n_b = nonlinear(t0 + h / 2, b)
        c = add(
            propagate(self.expm1_half, a),
            scale(self.q, jtu.tree_map(lambda nb, ny: 2 * nb - ny, n_b, n_y)),
        )
        n_c = nonlinear(t0 + h, c)
        y1 = add(
            propagate(self.expm1_full, y0),
            scale(self.f1, n_y),
            scale(2 * self.f2, add(n_a, n_b)),
            scale(self.f3, n_c),
        )
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return jtu.tree_map(lambda y, n: self.linear * y + n, y0, terms.vf(t0, y0, args))
