"""Measurements as a loss term: fixed points and values, the model's weighted misfit there."""

import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._conditions import AbstractCondition, Field
from ._domain import AbstractDomain


class Observations(AbstractCondition):
    """Measurements `u(points[i]) = values[i]`: a loss term `weight * mean_i |u(points[i]) -
    values[i]|^2` (the squared norm over the output components for vector fields).

    Its points are fixed: `sample` hands them back unchanged, whatever the key, so resampling
    in `solve` keeps them, adaptive (RAD) resampling and causal weighting act on the residual
    points only, and the term's point count is the number of measurements (`num_points` may
    leave it out; a count given must equal it). No sampling `method` applies to it.

    **Arguments:**

    - `points`: measurement points, shape `(n, dim)` (time last for space-time domains).
    - `values`: measured values, shape `(n,)` for a scalar field or `(n, out_dim)`.
    - `weight`: a non-negative factor on the misfit (beside `solve`'s term `weights`).
    """

    points: Float[Array, "n dim"]
    values: Array
    weight: float = eqx.field(static=True, default=1.0)

    def __init__(self, points: ArrayLike, values: ArrayLike, weight: float = 1.0):
        points, values = jnp.asarray(points), jnp.asarray(values)
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(
                f"`Observations`: `points` must have shape (n, dim) with n >= 1, got "
                f"{points.shape}."
            )
        if values.ndim not in (1, 2) or values.shape[0] != points.shape[0]:
            raise ValueError(
                f"`Observations`: `values` must have shape ({points.shape[0]},) or "
                f"({points.shape[0]}, out_dim) to match `points` {points.shape}, got "
                f"{values.shape}."
            )
        for name, a in (("points", points), ("values", values)):
            if not jnp.issubdtype(a.dtype, jnp.floating):
                a = a.astype(jnp.result_type(float))
            if not bool(jnp.all(jnp.isfinite(a))):
                raise ValueError(f"`Observations`: `{name}` holds non-finite entries.")
            if name == "points":
                points = a
            else:
                values = a
        weight = float(weight)
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"`Observations`: `weight` must be finite and >= 0, got {weight}.")
        self.points, self.values, self.weight = points, values, weight

    @property
    def num_points(self) -> int:
        """The number of measurements."""
        return self.points.shape[0]

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        *,
        points: str = "x",
        values: str = "u",
        weight: float = 1.0,
    ) -> "Observations":
        """Reads measurements from a `.npz`, `.mat` (v5 or v7.3) or HDF5 file holding the
        arrays named `points` and `values` (shapes as for the constructor; see
        `sciml.data.read_named`). Nothing is unpickled.

        **Raises:** `ValueError`, one line naming the file, for a missing file or array, a
        wrong shape or non-finite values.
        """
        from ..data import DatasetError, read_named

        try:
            arrays = read_named(path, [points, values])
        except DatasetError as e:
            raise ValueError(f"`Observations.from_file`: {e}") from None
        x, u = arrays[points], arrays[values]
        if u.ndim == 2 and u.shape[1] == 1 and x.ndim == 2 and u.shape[0] == x.shape[0]:
            u = u[:, 0]  # a column vector (as MATLAB writes one) is a scalar field
        try:
            return cls(x, u, weight)
        except ValueError as e:
            raise ValueError(f"{e} (read from `{pathlib.Path(path)}`)") from None

    def sample(self, domain, key, n, method, dtype=None):
        if n != self.num_points:
            raise ValueError(
                f"`Observations` has {self.num_points} fixed points, asked for {n}; leave its "
                "count out of `num_points` or give that number."
            )
        if self.points.shape[1] != domain.dim:
            raise ValueError(
                f"`Observations.points` have {self.points.shape[1]} coordinates, the domain "
                f"{domain.dim}."
            )
        return self.points if dtype is None else self.points.astype(dtype)

    def residuals(self, u: Field, x: Float[Array, "n dim"], domain: AbstractDomain) -> Array:
        """`sqrt(weight) * (u(x_i) - values_i)`, `x` the measurement points (in their order,
        possibly cast to another dtype)."""
        if x.shape[0] != self.num_points:
            raise ValueError(
                f"`Observations` has {self.num_points} measurements, got {x.shape[0]} points."
            )
        pred = jax.vmap(u)(x)
        if pred.size != self.values.size:
            raise ValueError(
                f"`Observations.values` have shape {self.values.shape}, the model gives "
                f"{pred.shape} at the {self.num_points} points."
            )
        values = self.values.astype(pred.dtype)
        return jnp.sqrt(jnp.asarray(self.weight, pred.dtype)) * (
            pred.reshape(values.shape) - values
        )


__all__ = ["Observations"]
