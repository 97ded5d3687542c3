"""A PDE problem: residual, domain, conditions, and the exact or reference solution."""

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validate import positive_int
from ._conditions import AbstractCondition
from ._domain import AbstractDomain, SpaceTime
from ._observations import Observations
from ._sampling import check_method

RESIDUAL = "residual"


def _squared(r: Array) -> Array:
    return jnp.sum(jnp.reshape(r, (r.shape[0], -1)) ** 2, axis=1)


def _arrays(pair):
    """A `(points, values)` pair as JAX arrays (NumPy ones welcome)."""
    if pair is None or not isinstance(pair, tuple | list) or len(pair) != 2:
        return pair
    return (jnp.asarray(pair[0]), jnp.asarray(pair[1]))


class Problem(eqx.Module):
    """A PDE `residual(u, x) = 0` in `domain`, with named soft `conditions`.

    `u` is the model: a function of one point `x` (time last for space-time domains). The
    residual is written with `sciml.derivatives` (or `jax.grad`, `jax.jvp`), e.g. Poisson
    `-laplacian(u, x) - f(x)`; it may return a scalar or an array (a system).

    **Arguments:**

    - `residual`: `residual(u, x) -> Array` at one interior point.
    - `domain`: a `Box`, `Ball` or `SpaceTime`.
    - `conditions`: maps names to conditions (`Dirichlet`, `Neumann`, `Robin`,
        `BoundaryOperator`, `Periodic`, `Initial`, `Observations`);
        the names become loss terms beside `"residual"`. Conditions a hard-constraint ansatz
        already enforces are simply left out.
    - `exact`: optional exact solution `exact(x)` of one point, for errors and plots.
    - `reference`: optional `(points, values)` arrays (e.g. from a numerical solver) used when
        there is no `exact` solution.
    - `causal_chunks`, `causal_tolerance`: causal weighting of the residual (Wang, Sankaran &
        Perdikaris 2022) for space-time domains: the time interval is cut into `causal_chunks`
        equal slabs, the mean squared residual `L_i` of each slab is weighted by
        `w_i = exp(-tolerance * sum_{k<i} L_k)` (no gradient through `w`), so later times are
        trained only once earlier ones are resolved. `causal_chunks=None` turns it off.
    """

    residual: Callable
    domain: AbstractDomain
    conditions: dict[str, AbstractCondition]
    exact: Callable | None = None
    reference: tuple[ArrayLike, ArrayLike] | None = eqx.field(default=None, converter=_arrays)
    causal_chunks: int | None = eqx.field(static=True, default=None)
    causal_tolerance: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not isinstance(self.domain, AbstractDomain):
            raise ValueError(f"`domain` must be a sciml.pinn domain, got {self.domain!r}.")
        for name, cond in self.conditions.items():
            if name == RESIDUAL or not isinstance(cond, AbstractCondition):
                raise ValueError(
                    f"`conditions[{name!r}]` must be a condition (Dirichlet, Neumann, Robin, "
                    f"Periodic, Initial, Observations, ...) under a name other than "
                    f"{RESIDUAL!r}, got {cond!r}."
                )
        if self.causal_chunks is not None:
            if not isinstance(self.domain, SpaceTime):
                raise ValueError("`causal_chunks` needs a `SpaceTime` domain.")
            positive_int("causal_chunks", self.causal_chunks)
        if self.reference is not None and len(self.reference) != 2:
            raise ValueError("`reference` must be a pair (points, values).")

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of the loss terms: `"residual"` and the conditions, in order."""
        return (RESIDUAL, *self.conditions)

    def sample(
        self,
        key: PRNGKeyArray,
        num_points: Mapping[str, int],
        method: str | Mapping[str, str] = "uniform",
        *,
        dtype=None,
    ) -> dict[str, Float[Array, "n dim"]]:
        """Fresh points for every loss term.

        **Arguments:**

        - `key`: PRNG key (host-side: Sobol sampling is not traceable).
        - `num_points`: number of points per term name (all of `terms`; `Observations` terms
            may be left out, see `point_counts`).
        - `method`: one sampling method for all terms, or one per sampled term name.
        - `dtype`: floating dtype of the points (default: JAX's default float).

        **Returns:** a dict of `(n, dim)` arrays keyed like `num_points`.
        """
        num_points = self.point_counts(num_points)
        if isinstance(method, Mapping):
            fixed = [t for t in method if t in self.fixed_terms]
            if fixed:
                raise ValueError(
                    f"`method[{fixed[0]!r}]`: the term is `Observations` (fixed points), no "
                    "sampling method applies to it."
                )
        points = {}
        for i, name in enumerate(self.terms):
            n = num_points[name]
            k = jax.random.fold_in(key, i)
            if name == RESIDUAL:
                m = method[name] if isinstance(method, Mapping) else method
                points[name] = self.domain.sample_interior(k, n, check_method(m), dtype=dtype)
            elif name in self.fixed_terms:
                points[name] = self.conditions[name].sample(self.domain, k, n, None, dtype)
            else:
                m = method[name] if isinstance(method, Mapping) else method
                points[name] = self.conditions[name].sample(self.domain, k, n, m, dtype)
        return points

    @property
    def fixed_terms(self) -> tuple[str, ...]:
        """The names of the terms whose points are fixed (`Observations`)."""
        return tuple(n for n, c in self.conditions.items() if isinstance(c, Observations))

    def point_counts(self, num_points: Mapping[str, int]) -> dict[str, int]:
        """`num_points` checked and completed: every term's count, the `Observations` terms
        (which may be left out) at their number of measurements."""
        fixed = {name: self.conditions[name].num_points for name in self.fixed_terms}
        missing = [t for t in self.terms if t not in num_points and t not in fixed]
        extra = [t for t in num_points if t not in self.terms]
        if missing or extra:
            sampled = [t for t in self.terms if t not in fixed]
            raise ValueError(
                f"`num_points` must have exactly the keys {sampled}"
                + (f" (and optionally {list(fixed)})" if fixed else "")
                + f", got {list(num_points)}."
            )
        counts = {}
        for name in self.terms:
            n = positive_int(f"num_points[{name!r}]", num_points.get(name, fixed.get(name)))
            if name in fixed and n != fixed[name]:
                raise ValueError(
                    f"`num_points[{name!r}]` = {n}, but the term has {fixed[name]} fixed "
                    "observation points; leave it out or give that number."
                )
            counts[name] = n
        return counts

    def residuals(self, model: Callable, x: Float[Array, "n dim"]) -> Array:
        """The PDE residual at each row of `x`, shape `(n, ...)`."""
        return jax.vmap(lambda p: self.residual(model, p))(x)

    def condition_residuals(self, name: str, model: Callable, x: Array) -> Array:
        """The residuals of condition `name` at the rows of `x`, shape `(n, ...)`."""
        return self.conditions[name].residuals(model, x, self.domain)

    def residual_loss(self, model: Callable, x: Array) -> Array:
        """Mean squared residual, causally weighted when `causal_chunks` is set."""
        sq = _squared(self.residuals(model, x))
        if self.causal_chunks is None:
            return jnp.mean(sq)
        return causal_loss(
            sq,
            x[:, -1],
            self.domain.t0,
            self.domain.t1,
            self.causal_chunks,
            self.causal_tolerance,
        )[0]

    def losses(self, model: Callable, points: Mapping[str, Array]) -> dict[str, Array]:
        """Every loss term (mean squared residual) on its points."""
        out = {RESIDUAL: self.residual_loss(model, points[RESIDUAL])}
        for name in self.conditions:
            out[name] = jnp.mean(_squared(self.condition_residuals(name, model, points[name])))
        return out

    def loss(
        self, model: Callable, points: Mapping[str, Array], weights: Mapping[str, Array]
    ) -> Array:
        """The weighted sum of `losses`."""
        terms = self.losses(model, points)
        return sum(weights[name] * value for name, value in terms.items())

    def evaluation_set(self, num: int | None = None, *, dtype=None) -> tuple[Array, Array]:
        """`(points, values)` for errors: the `reference`, or the exact solution on a grid
        (`num` nodes per axis; default 101, 41 beyond two dimensions) of the bounding box,
        keeping the points inside the domain."""
        if self.reference is not None:
            return jnp.asarray(self.reference[0], dtype), jnp.asarray(self.reference[1], dtype)
        if self.exact is None:
            raise ValueError("The problem has neither `exact` nor `reference`: nothing to compare.")
        pts = self.grid_points(num, dtype=dtype)
        return pts, jax.vmap(self.exact)(pts)

    def grid_points(self, num: int | None = None, *, dtype=None) -> Array:
        """The nodes of a grid over the domain's bounding box (`num` per axis; default 101,
        41 beyond two dimensions) that lie in the domain, shape `(m, dim)`."""
        d = self.domain.dim
        num = num or (101 if d <= 2 else 41)
        lines = [np.linspace(a, b, num) for a, b in zip(*self.domain.bounds, strict=True)]
        pts = np.stack([g.reshape(-1) for g in np.meshgrid(*lines, indexing="ij")], axis=-1)
        pts = jnp.asarray(pts, dtype)
        return pts[np.asarray(jax.vmap(self.domain.contains)(pts))]

    def error(self, model: Callable, points: Array, values: Array) -> Array:
        """Relative L2 error `|u - u*| / |u*|` over `points`."""
        pred = jax.vmap(model)(points).reshape(values.shape)
        return jnp.linalg.norm(pred - values) / jnp.linalg.norm(values)


def causal_loss(
    squared_residuals: Float[Array, " n"],
    times: Float[Array, " n"],
    t0: float,
    t1: float,
    num_chunks: int,
    tolerance: float,
) -> tuple[Float[Array, ""], Float[Array, " num_chunks"]]:
    """Causally weighted mean of squared residuals (Wang, Sankaran & Perdikaris, "Respecting
    causality is all you need for training PINNs", 2022, eq. (3.7)).

    Points are binned into `num_chunks` equal time slabs of `[t0, t1]`; with `L_i` the mean of
    the slab's squared residuals (0 for an empty slab), the loss is `mean_i w_i L_i` with
    `w_i = exp(-tolerance * sum_{k<i} L_k)` held constant (`stop_gradient`).

    **Returns:** `(loss, w)`; `min(w)` near one signals that all times are resolved.
    """
    idx = jnp.clip(((times - t0) / (t1 - t0) * num_chunks).astype(jnp.int32), 0, num_chunks - 1)
    sums = jax.ops.segment_sum(squared_residuals, idx, num_chunks)
    counts = jax.ops.segment_sum(jnp.ones_like(squared_residuals), idx, num_chunks)
    chunk = sums / jnp.maximum(counts, 1)
    before = jnp.cumsum(chunk) - chunk
    w = jax.lax.stop_gradient(jnp.exp(-tolerance * before))
    return jnp.mean(w * chunk), w
