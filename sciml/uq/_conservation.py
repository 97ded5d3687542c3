r"""Conservation constraints on probabilistic predictions (ProbConserv).

Given a Gaussian prediction $u \sim N(\mu, \Sigma)$ of a discretised solution (flattened to
$n$ values) and a linear constraint $G u = b$ with noise $\sigma_G^2$ (the integral form of a
conservation law: the total mass at each time equals the initial mass plus the boundary
fluxes), the posterior is (Hansen et al. 2023, Eq. 8)

$$\tilde\mu = \mu - \Sigma G^\top (G \Sigma G^\top + \sigma_G^2 I)^{-1} (G \mu - b), \qquad
\tilde\Sigma = \Sigma - \Sigma G^\top (G \Sigma G^\top + \sigma_G^2 I)^{-1} G \Sigma.$$

Only $\Sigma G^\top$ ($n \times m$) and the $m \times m$ matrix $G \Sigma G^\top$ are formed,
so with a diagonal or ensemble (low-rank plus diagonal) covariance nothing of size
$n \times n$ is built: the posterior covariance is kept as a diagonal plus a low-rank update
minus a low-rank downdate ([`LowRankCovariance`][]).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

RULES = ("trapezoid", "rectangle")


class LinearConstraint(eqx.Module):
    r"""A linear constraint $G u = b$ on a flattened prediction $u$, with noise variance
    $\sigma_G^2$ (0: exact).

    **Fields:**

    - `matrix`: $G$, shape `(m, n)`.
    - `value`: $b$, shape `(m,)`.
    - `noise`: $\sigma_G \ge 0$, the standard deviation of the constraint (a scalar).
    """

    matrix: Float[Array, "m n"]
    value: Float[Array, " m"]
    noise: Float[Array, ""]

    def __init__(
        self,
        matrix: Float[ArrayLike, "m n"],
        value: Float[ArrayLike, " m"],
        noise: float | Float[ArrayLike, ""] = 0.0,
    ):
        matrix = jnp.asarray(matrix)
        value = jnp.asarray(value)
        if matrix.ndim != 2:
            raise ValueError(
                f"`LinearConstraint` needs a 2-D `matrix` (m, n), got shape {matrix.shape}."
            )
        if value.shape != matrix.shape[:1]:
            raise ValueError(
                f"`LinearConstraint` needs `value` of shape ({matrix.shape[0]},) for a matrix "
                f"of shape {matrix.shape}, got shape {value.shape}."
            )
        dtype = jnp.result_type(matrix.dtype, value.dtype, float)
        self.matrix = matrix.astype(dtype)
        self.value = value.astype(dtype)
        self.noise = jnp.asarray(noise, dtype)

    def __check_init__(self):
        if self.noise.ndim != 0:
            raise ValueError(
                f"`LinearConstraint` needs a scalar `noise`, got shape {self.noise.shape}."
            )

    def violation(self, u: Float[ArrayLike, "..."]) -> Float[Array, " m"]:
        """$G u - b$ for a prediction `u` of any shape with $n$ elements (flattened
        row-major)."""
        return self.matrix @ jnp.ravel(jnp.asarray(u)) - self.value


class LowRankCovariance(eqx.Module):
    r"""A covariance $\Sigma = \operatorname{diag}(d) + U U^\top - V V^\top$ kept in factored
    form: never an $n \times n$ matrix.

    An ensemble of $K$ samples gives $U = A / \sqrt{K - 1}$ with the anomalies $A$
    ([`ensemble_covariance`][]); [`conserve`][] appends to $V$.

    **Fields:**

    - `diagonal`: $d$, shape `(n,)`.
    - `factor`: $U$, shape `(n, r)` (`r` may be 0).
    - `downdate`: $V$, shape `(n, q)` (`q` may be 0).
    """

    diagonal: Float[Array, " n"]
    factor: Float[Array, "n r"]
    downdate: Float[Array, "n q"]

    def __check_init__(self):
        n = self.diagonal.shape
        if (
            self.diagonal.ndim != 1
            or self.factor.ndim != 2
            or self.downdate.ndim != 2
            or self.factor.shape[:1] != n
            or self.downdate.shape[:1] != n
        ):
            raise ValueError(
                "`LowRankCovariance` needs `diagonal` (n,), `factor` (n, r) and `downdate` "
                f"(n, q), got shapes {self.diagonal.shape}, {self.factor.shape}, "
                f"{self.downdate.shape}."
            )

    def matmul(self, v: Float[Array, "n ..."]) -> Float[Array, "n ..."]:
        r"""$\Sigma v$ for `v` of shape `(n,)` or `(n, k)`."""
        d = self.diagonal if v.ndim == 1 else self.diagonal[:, None]
        return d * v + self.factor @ (self.factor.T @ v) - self.downdate @ (self.downdate.T @ v)

    def variance(self) -> Float[Array, " n"]:
        r"""The diagonal of $\Sigma$ (the marginal variances)."""
        return self.diagonal + jnp.sum(self.factor**2, axis=1) - jnp.sum(self.downdate**2, axis=1)

    def as_matrix(self) -> Float[Array, "n n"]:
        r"""$\Sigma$ as a dense matrix (for small $n$ and tests)."""
        return (
            jnp.diag(self.diagonal) + self.factor @ self.factor.T - self.downdate @ self.downdate.T
        )


def ensemble_covariance(
    samples: Float[ArrayLike, "members ..."], *, diagonal: Float[ArrayLike, "..."] | float = 0.0
) -> tuple[Float[Array, "..."], LowRankCovariance]:
    r"""The mean and covariance of an ensemble, $\Sigma = A A^\top / (K - 1) +
    \operatorname{diag}(d)$ with the anomalies $A$ (members minus their mean, as columns).

    With $K$ members the sample covariance has rank at most $K - 1$; a constraint with more
    than $K - 1$ independent rows and $\sigma_G = 0$ then needs a positive `diagonal` $d$
    (a nugget, or the members' own predictive variances) for $G \Sigma G^\top$ to be
    invertible.

    **Arguments:**

    - `samples`: the members, shape `(K, *shape)`, `K >= 2`.
    - `diagonal`: $d$, a scalar or an array of `shape` (or of `n` values), >= 0.

    **Returns:**

    `(mean, covariance)`: the ensemble mean of shape `shape` and a [`LowRankCovariance`][]
    over the `n = prod(shape)` flattened values.
    """
    samples = jnp.asarray(samples)
    if samples.ndim < 2 or samples.shape[0] < 2:
        raise ValueError(
            "`samples` must have shape (members, *shape) with at least 2 members, got shape "
            f"{samples.shape}."
        )
    samples = samples.astype(jnp.result_type(samples.dtype, float))
    k = samples.shape[0]
    flat = samples.reshape(k, -1)
    mean = jnp.mean(flat, axis=0)
    anomalies = (flat - mean).T / jnp.sqrt(k - 1.0)
    d = jnp.broadcast_to(jnp.ravel(jnp.asarray(diagonal, flat.dtype)), mean.shape)
    empty = jnp.zeros((mean.shape[0], 0), flat.dtype)
    return mean.reshape(samples.shape[1:]), LowRankCovariance(d, anomalies, empty)


def _as_structured(covariance, n, dtype):
    """A dense (n, n) array, or a `LowRankCovariance` (None -> identity, (n,) -> diagonal)."""
    empty = jnp.zeros((n, 0), dtype)
    if covariance is None:
        return LowRankCovariance(jnp.ones((n,), dtype), empty, empty)
    if isinstance(covariance, LowRankCovariance):
        if covariance.diagonal.shape != (n,):
            raise ValueError(
                f"`covariance` must be over the n = {n} values of `mean`, got a "
                f"LowRankCovariance over {covariance.diagonal.shape[0]}."
            )
        return covariance
    covariance = jnp.asarray(covariance, dtype)
    if covariance.shape == (n,):
        return LowRankCovariance(covariance, empty, empty)
    if covariance.shape == (n, n):
        return covariance
    raise ValueError(
        f"`covariance` must be None, a diagonal of shape ({n},), a dense matrix of shape "
        f"({n}, {n}) or a LowRankCovariance, for `mean` with n = {n} values; got shape "
        f"{covariance.shape}."
    )


def _gain(constraint, sigma):
    """`W = Sigma G^T` (n, m), `S = G W + noise^2 I` (m, m) and its Cholesky factor."""
    g = constraint.matrix
    w = sigma @ g.T if isinstance(sigma, jax.Array) else sigma.matmul(g.T)
    s = g @ w
    s = 0.5 * (s + s.T) + constraint.noise**2 * jnp.eye(s.shape[0], dtype=s.dtype)
    return w, s, jax.scipy.linalg.cho_factor(s, lower=True)


def _solve(s, factor, r):
    """`S^{-1} r` by Cholesky, with one step of iterative refinement: `G mu~ - b` is then the
    residual of the solve, near rounding even when `S` is ill-conditioned."""
    y = jax.scipy.linalg.cho_solve(factor, r)
    return y + jax.scipy.linalg.cho_solve(factor, r - s @ y)


def conserve(
    mean: Float[ArrayLike, "..."],
    constraint: LinearConstraint,
    covariance: Float[ArrayLike, "n n"] | Float[ArrayLike, " n"] | LowRankCovariance | None = None,
) -> tuple[Float[Array, "..."], Float[Array, "n n"] | LowRankCovariance]:
    r"""The ProbConserv update: conditions $N(\mu, \Sigma)$ on $G u = b$ (Hansen et al. 2023,
    Eq. 8).

    With $\sigma_G = 0$ the new mean satisfies $G \tilde\mu = b$ to rounding; a mean that
    already satisfies it is unchanged; the variance shrinks along the constrained directions
    and only there. `covariance=None` is $\Sigma = I$, the Euclidean projection onto
    $\{G u = b\}$.

    Costs $O(n m^2 + m^3)$ for a diagonal and $O(n (r + q) m)$ more for a
    [`LowRankCovariance`][] of ranks `r` and `q`, against $O(n^2 m)$ for a dense $\Sigma$;
    works under `jax.jit`, `jax.vmap` (over predictions and constraints) and `jax.grad`.

    **Arguments:**

    - `mean`: $\mu$, any shape with $n$ elements (e.g. an operator's output `(t, x)` or
      `(1, t, x)`), flattened row-major.
    - `constraint`: a [`LinearConstraint`][] with $G$ of shape `(m, n)`, e.g. from
      [`integral_constraint`][].
    - `covariance`: $\Sigma$ over the flattened values: `None` (identity), a diagonal `(n,)`,
      a dense `(n, n)` matrix or a [`LowRankCovariance`][] (e.g. from
      [`ensemble_covariance`][]).

    **Returns:**

    `(mean, covariance)`: $\tilde\mu$ with the shape of `mean`, and $\tilde\Sigma$ dense
    `(n, n)` if $\Sigma$ was dense, else a [`LowRankCovariance`][] whose `downdate` gains the
    $m$ columns $\Sigma G^\top L^{-\top}$ ($L L^\top = G \Sigma G^\top + \sigma_G^2 I$).

    **References:** Hansen, Maddix, Alizadeh, Gupta, Mahoney, "Learning Physical Models that
    Can Respect Conservation Laws", ICML 2023.
    """
    mean = jnp.asarray(mean)
    shape = mean.shape
    dtype = jnp.result_type(mean.dtype, constraint.matrix.dtype, float)
    mu = jnp.ravel(mean).astype(dtype)
    n = mu.shape[0]
    if constraint.matrix.shape[1] != n:
        raise ValueError(
            f"`constraint` acts on {constraint.matrix.shape[1]} values but `mean` has n = {n} "
            f"(shape {shape})."
        )
    sigma = _as_structured(covariance, n, dtype)
    w, s, factor = _gain(constraint, sigma)
    mu = mu - w @ _solve(s, factor, constraint.matrix @ mu - constraint.value)
    # W S^{-1} W^T = (W L^{-T}) (W L^{-T})^T.
    half = jax.scipy.linalg.solve_triangular(factor[0], w.T, lower=True).T
    if isinstance(sigma, jax.Array):
        posterior = sigma - half @ half.T
    else:
        posterior = LowRankCovariance(
            sigma.diagonal, sigma.factor, jnp.concatenate([sigma.downdate, half], axis=1)
        )
    return mu.reshape(shape), posterior


def conserve_samples(
    samples: Float[ArrayLike, "members ..."],
    constraint: LinearConstraint,
    *,
    diagonal: Float[ArrayLike, "..."] | float = 0.0,
) -> Float[Array, "members ..."]:
    r"""Moves every ensemble member with the ProbConserv gain of the ensemble's covariance.

    $u_k \mapsto u_k - \Sigma G^\top (G \Sigma G^\top + \sigma_G^2 I)^{-1} (G u_k - b)$ with
    $\Sigma = A A^\top / (K - 1) + \operatorname{diag}(d)$ ([`ensemble_covariance`][]). The
    new members' mean is the $\tilde\mu$ of [`conserve`][]. With $\sigma_G = 0$ every member
    satisfies $G u_k = b$, and with $d = 0$ as well their sample covariance is exactly
    $\tilde\Sigma$ (the deterministic ensemble Kalman update; then $G \Sigma G^\top$ must be
    invertible, i.e. at most $K - 1$ independent constraints). Otherwise their spread
    approximates $\tilde\Sigma$ (no perturbed observations are drawn).

    **Arguments:**

    - `samples`: shape `(K, *shape)`, `K >= 2`.
    - `constraint`: a [`LinearConstraint`][] on the `n = prod(shape)` flattened values.
    - `diagonal`: $d \ge 0$, a scalar or `shape`-shaped nugget added to the covariance.

    **Returns:**

    The moved members, shape `(K, *shape)`.
    """
    _, sigma = ensemble_covariance(samples, diagonal=diagonal)
    samples = jnp.asarray(samples, sigma.diagonal.dtype)
    flat = samples.reshape(samples.shape[0], -1)
    if constraint.matrix.shape[1] != flat.shape[1]:
        raise ValueError(
            f"`constraint` acts on {constraint.matrix.shape[1]} values but each member of "
            f"`samples` has n = {flat.shape[1]} (shape {samples.shape[1:]})."
        )
    w, s, factor = _gain(constraint, sigma)
    residual = flat @ constraint.matrix.T - constraint.value  # (K, m)
    y = jax.vmap(lambda r: _solve(s, factor, r))(residual)
    return (flat - y @ w.T).reshape(samples.shape)


def quadrature_weights(
    num_points: int, *, length: float = 1.0, rule: str = "trapezoid"
) -> Float[Array, " num_points"]:
    r"""Weights $w$ with $\sum_i w_i u_i \approx \int_0^L u\,dx$ on a uniform grid.

    **Arguments:**

    - `num_points`: points of the grid, >= 2 (`"trapezoid"`) or >= 1 (`"rectangle"`).
    - `length`: $L > 0$.
    - `rule`: `"trapezoid"` for the nodes $x_i = i L / (s - 1)$ including both ends
      ($h/2$ at the ends, $h$ inside); `"rectangle"` for cell centres $x_i = (i + 1/2) L / s$
      (the finite-volume mass, exact for cell averages) or a periodic grid $x_i = i L / s$
      (where it is the trapezoid rule): $h = L / s$ everywhere.

    **Returns:**

    The weights, shape `(num_points,)`, in the default float dtype.
    """
    if rule not in RULES:
        raise ValueError(f"`rule` must be one of {RULES}, got {rule!r}.")
    minimum = 2 if rule == "trapezoid" else 1
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < minimum:
        raise ValueError(
            f"`num_points` must be an int >= {minimum} for rule {rule!r}, got {num_points!r}."
        )
    if not length > 0:
        raise ValueError(f"`length` must be > 0, got {length!r}.")
    if rule == "rectangle":
        w = np.full(num_points, length / num_points)
    else:
        w = np.full(num_points, length / (num_points - 1))
        w[[0, -1]] /= 2
    return jnp.asarray(w, jnp.result_type(float))


def integral_constraint(
    mass: Float[ArrayLike, " times"],
    num_points: int,
    *,
    length: float = 1.0,
    rule: str = "trapezoid",
    noise=0.0,
) -> LinearConstraint:
    r"""The conservation constraint of a space-time field $u(t_j, x_i)$ of shape
    `(times, num_points)`: $\int_0^L u(t_j, x)\,dx = M_j$ at every time.

    $G = I_{\text{times}} \otimes w^\top$ with the quadrature weights $w$
    ([`quadrature_weights`][]); the field is flattened row-major (time first), as
    [`conserve`][] does with a `(times, num_points)` array. $M_j$ is the initial mass plus the
    net boundary inflow up to $t_j$ ([`mass_balance`][]), or the known total (e.g. 0 for a
    periodic field of zero mean).

    **Arguments:**

    - `mass`: $M_j$, shape `(times,)`.
    - `num_points`, `length`, `rule`: the spatial grid, as for [`quadrature_weights`][].
    - `noise`: $\sigma_G \ge 0$.

    **Returns:**

    A [`LinearConstraint`][] with $G$ of shape `(times, times * num_points)`.
    """
    mass = jnp.asarray(mass)
    if mass.ndim != 1:
        raise ValueError(f"`mass` must be 1-D (one value per time), got shape {mass.shape}.")
    w = quadrature_weights(num_points, length=length, rule=rule)
    g = jnp.kron(jnp.eye(mass.shape[0], dtype=w.dtype), w[None, :])
    return LinearConstraint(g, mass, noise)


def mass_balance(
    times: Float[ArrayLike, " times"],
    initial_mass: float | Float[ArrayLike, ""],
    inflow: Callable[[Array], Array],
    *,
    order: int = 16,
) -> Float[Array, " times"]:
    r"""$M(t_j) = M_0 + \int_0^{t_j} q(s)\,ds$ for a net boundary inflow $q$ (the integral
    form of $u_t + \partial_x F = 0$: $q(t) = F(t, 0) - F(t, L)$).

    Gauss-Legendre with `order` points on each interval $[t_{j-1}, t_j]$ in the variable
    $\tau = \sqrt{s}$ ($ds = 2 \tau\, d\tau$), which makes an inflow with a $t^{-1/2}$
    singularity at 0 (the Stefan and heat fronts) smooth.

    **Arguments:**

    - `times`: non-decreasing times $t_j \ge 0$.
    - `initial_mass`: $M_0$ (the mass at $t = 0$).
    - `inflow`: $q$, a function of a scalar time traced by JAX.
    - `order`: Gauss-Legendre points per interval, >= 1.

    **Returns:**

    $M(t_j)$, shape `(times,)`.
    """
    times = jnp.asarray(times, jnp.result_type(float))
    nodes, weights = np.polynomial.legendre.leggauss(order)
    roots = jnp.sqrt(jnp.concatenate([jnp.zeros((1,), times.dtype), times]))
    a, b = roots[:-1, None], roots[1:, None]
    tau = 0.5 * (b - a) * jnp.asarray(nodes, times.dtype) + 0.5 * (b + a)
    empty = b <= a  # an interval of length 0 (e.g. t_0 = 0): no evaluation at its end
    q = jax.vmap(jax.vmap(inflow))(jnp.where(empty, 1.0, tau**2))
    q = jnp.where(empty, 0.0, q)
    pieces = 0.5 * (b - a)[:, 0] * jnp.sum(jnp.asarray(weights) * q * 2 * tau, axis=1)
    return initial_mass + jnp.cumsum(pieces)
