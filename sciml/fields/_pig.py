"""Physics-Informed Gaussians (Kang et al., ICLR 2025): a trainable Gaussian-mixture feature
embedding followed by a small MLP."""

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from .._validate import check_floating_dtype, check_int
from ._mlp import (
    MLP,
    check_box,
    check_out_dim,
    check_point,
    check_positive,
    per_coordinate,
)

COVARIANCES = ("diagonal", "full")
PARAMETRIZATIONS = ("cholesky", "rotation")


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_gaussians(key, shape, full, dtype, lower, upper, log_sigma, feature_std):
    """Means uniform in the box, log-scales `log_sigma`, zero off-diagonals (or None) and
    normal features, as one compiled computation (eagerly, each array costs a compilation)."""
    n, d, feature_dim = shape
    mkey, fkey = jr.split(key)
    lower, upper = jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)
    means = lower + (upper - lower) * jr.uniform(mkey, (n, d), dtype)
    log_scales = jnp.broadcast_to(jnp.asarray(log_sigma, dtype), (n, d))
    off_diagonal = jnp.zeros((n, d * (d - 1) // 2), dtype) if full else None
    features = feature_std * jr.normal(fkey, (n, feature_dim), dtype)
    return means, log_scales, off_diagonal, features


def _sum(terms):
    """The sum of a non-empty iterable of arrays, without a leading `0 +`."""
    return functools.reduce(operator.add, terms)


class PIG(eqx.Module):
    r"""Physics-Informed Gaussians: `x -> MLP(FE(x))` with the Gaussian feature embedding

    $$FE(x) = \sum_{i=1}^{N} f_i \exp\left(-\tfrac12 (x - \mu_i)^\top \Sigma_i^{-1} (x - \mu_i)
    \right),$$

    whose means `mu_i`, covariances `Sigma_i` and feature vectors `f_i` (length
    `feature_dim`) are all trained, followed by a small MLP ([`MLP`][], `layers` hidden layers
    of `hidden` units) from `feature_dim` to `out_dim`.

    The quadratic form is evaluated as `|W_i (x - mu_i)|^2` with a whitening matrix `W_i`,
    `Sigma_i^{-1} = W_i^T W_i`, from the difference `x - mu_i` (not by expanding the square,
    which cancels catastrophically in float32 when `sigma << |x|`). The parametrisations:

    - `covariance="diagonal"`: `W_i = diag(exp(-log_scales_i))`, i.e. standard deviations
        `sigma_ik = exp(log_scales_ik)`.
    - `covariance="full", parametrization="cholesky"`: `W_i = L_i^T`, `L_i` the lower
        triangular Cholesky factor of the *precision*, `Sigma_i^{-1} = L_i L_i^T`, with diagonal
        `exp(-log_scales_i)` (positive) and strictly lower part `off_diagonal_i` (row-major,
        `numpy.tril_indices(in_dim, -1)` order).
    - `covariance="full", parametrization="rotation"`: `W_i = diag(1 / s_i) R_i^T`, so
        `Sigma_i = R_i diag(s_i^2) R_i^T`, with `s_i = exp(log_scales_i)` and the rotation
        given by the Cayley transform `R_i = (I - A_i)^{-1} (I + A_i)` of the skew-symmetric
        `A_i` whose strictly lower part is `off_diagonal_i`. The Cayley transform is exactly
        orthogonal in any dimension, costs one small solve with a well-conditioned matrix
        (the singular values of `I - A` are >= 1), and reaches every covariance: `Sigma` is
        unchanged by `R -> R D` with `D` a diagonal matrix of signs, and every orthogonal
        matrix times a suitable such `D` has no eigenvalue -1, so is a Cayley transform.

    All three start from the same isotropic Gaussians (`off_diagonal = 0`), so for the same key
    the full-covariance models equal the diagonal one at initialisation.

    Evaluation at one point is dense and vectorised over the Gaussians (no loop over them):
    `O(N in_dim^2)` work and memory (`O(N in_dim)` for the diagonal case); batch over points
    with `jax.vmap`. The parameter-only work (building `W_i`) is not batched by `vmap`. The
    sums over coordinates are unrolled at trace time (`in_dim^2` elementwise operations on
    vectors of length `N` for a full covariance), which suits the low-dimensional domains
    (space-time in 1-4 dimensions) PIG is meant for. Reverse-mode differentiation of a
    Laplacian (`jax.grad` of a PDE loss) keeps a few `(points, in_dim, N)` intermediates:
    about 10 GB for 20,000 points and 4,000 Gaussians in 2-D in float32, so evaluate large
    batches of collocation points in chunks of a few thousand.

    `lower` and `upper` only place the initial means; the Gaussians may move anywhere during
    training. [`gaussians`][sciml.fields.PIG.gaussians] and
    [`precisions`][sciml.fields.PIG.precisions] return the current Gaussians for inspection.

    **Initialisation.**

    - Means uniform in the box `[lower, upper]`.
    - Scales `init_sigma`, by default the mean spacing `h_k = (upper_k - lower_k) N^(-1/d)` of
        `N` points in the box. With `sigma = h`, a point of the box has on average
        `sum_i exp(-|x - mu_i|^2 / (2 sigma^2)) ~ (2 pi)^(d/2)` Gaussians' worth of weight
        around it, and for uniformly scattered means the chance that none lies within
        `2 sigma` (weight `exp(-2)`) is `exp(-4 pi)`, about `3e-6`, in 2-D (`exp(-4)` in 1-D),
        so the box is covered without gaps; the reference code uses `sigma / h` of about 0.8
        (flow mixing, 3-D, 4000 Gaussians) to 1.4 (Helmholtz, 2-D, 800 Gaussians).
    - Features `f_i ~ N(0, init_feature_std^2)` with `init_feature_std = 0.01` (the reference
        code's `flax` `normal()` default): the embedding is a random field with correlation
        length `sigma`, so its second derivatives scale like `std / sigma^2`; small features
        keep the initial PDE residual moderate and start the MLP near its linear regime.
    - The MLP Glorot-normal with zero biases ([`MLP`][]).

    ??? cite "Reference"

        Kang, Oh, Hong, Park, "PIG: Physics-Informed Gaussians as Adaptive Parametric Mesh
        Representations", ICLR 2025, arXiv:2412.05994.
    """

    means: Float[Array, "num_gaussians in_dim"]
    log_scales: Float[Array, "num_gaussians in_dim"]
    off_diagonal: Float[Array, "num_gaussians pairs"] | None
    features: Float[Array, "num_gaussians feature_dim"]
    head: MLP
    in_dim: int = eqx.field(static=True)
    out_dim: int | Literal["scalar"] = eqx.field(static=True)
    num_gaussians: int = eqx.field(static=True)
    feature_dim: int = eqx.field(static=True)
    covariance: str = eqx.field(static=True)
    parametrization: str | None = eqx.field(static=True)
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_dim: int,
        out_dim: int | Literal["scalar"],
        *,
        num_gaussians: int,
        key: PRNGKeyArray,
        feature_dim: int = 4,
        hidden: int = 16,
        layers: int = 2,
        covariance: Literal["diagonal", "full"] = "diagonal",
        parametrization: Literal["cholesky", "rotation"] | None = None,
        lower: int | float | Sequence[int | float] | Real[ArrayLike, " in_dim"] = 0.0,
        upper: int | float | Sequence[int | float] | Real[ArrayLike, " in_dim"] = 1.0,
        init_sigma: int | float | Sequence[int | float] | Real[ArrayLike, " in_dim"] | None = None,
        init_feature_std: float = 0.01,
        activation: Callable[[Array], Array] = jnp.tanh,
        dtype=None,
    ):
        """**Arguments:**

        - `in_dim`: number of input coordinates `d`.
        - `out_dim`: number of outputs, or `"scalar"` for one output returned as a 0-d array.
        - `num_gaussians`: number `N` of Gaussians.
        - `key`: a `jax.random` key for the initialisation.
        - `feature_dim`: length of each feature vector `f_i` (the MLP's input size).
        - `hidden`: units per hidden layer of the MLP.
        - `layers`: number of hidden layers of the MLP (0: an affine read-out).
        - `covariance`: `"diagonal"` (axis-aligned) or `"full"`.
        - `parametrization`: for `covariance="full"`, `"cholesky"` (the default) or
            `"rotation"`; must be None for `"diagonal"`.
        - `lower`, `upper`: the domain box (a number or one per coordinate) in which the means
            are initialised.
        - `init_sigma`: initial standard deviation of every Gaussian, a number or one per
            coordinate; None for the mean spacing `(upper - lower) * N^(-1/d)`.
        - `init_feature_std`: standard deviation of the initial feature vectors.
        - `activation`: elementwise nonlinearity of the MLP's hidden layers.
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.
        """
        name = "PIG"
        self.in_dim = check_int("in_dim", in_dim, 1, owner=name)
        self.out_dim = check_out_dim(name, out_dim)
        self.num_gaussians = check_int("num_gaussians", num_gaussians, 1, owner=name)
        self.feature_dim = check_int("feature_dim", feature_dim, 1, owner=name)
        hidden = check_int("hidden", hidden, 1, owner=name)
        layers = check_int("layers", layers, 0, owner=name)
        dtype = check_floating_dtype(name, dtype)
        if covariance not in COVARIANCES:
            raise ValueError(
                f"`PIG` got `covariance={covariance!r}`, but it must be one of "
                f"{', '.join(map(repr, COVARIANCES))}."
            )
        self.covariance = covariance
        if covariance == "diagonal":
            if parametrization is not None:
                raise ValueError(
                    f"`PIG` got `parametrization={parametrization!r}` with "
                    '`covariance="diagonal"`, but a parametrization only applies to '
                    '`covariance="full"`; leave it None.'
                )
        else:
            parametrization = "cholesky" if parametrization is None else parametrization
            if parametrization not in PARAMETRIZATIONS:
                raise ValueError(
                    f"`PIG` got `parametrization={parametrization!r}`, but it must be one of "
                    f"{', '.join(map(repr, PARAMETRIZATIONS))} (or None for 'cholesky')."
                )
        self.parametrization = parametrization
        self.lower, self.upper = check_box(name, ("lower", "upper"), lower, upper, self.in_dim)
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        if init_sigma is None:
            sigma = (hi - lo) * self.num_gaussians ** (-1.0 / self.in_dim)
        else:
            sigma = np.asarray(per_coordinate(name, "init_sigma", init_sigma, self.in_dim))
            if np.any(sigma <= 0):
                raise ValueError(
                    f"`PIG` got `init_sigma={init_sigma!r}`, but it must be positive (a number "
                    f"or one per coordinate, {self.in_dim} of them)."
                )
        init_feature_std = check_positive(name, "init_feature_std", init_feature_std)

        gkey, hkey = jr.split(key)
        self.means, self.log_scales, self.off_diagonal, self.features = _init_gaussians(
            gkey,
            (self.num_gaussians, self.in_dim, self.feature_dim),
            covariance == "full",
            jnp.dtype(dtype),
            lo,
            hi,
            np.log(sigma),
            init_feature_std,
        )
        self.head = MLP(
            self.feature_dim,
            self.out_dim,
            width=hidden,
            depth=layers,
            activation=activation,
            key=hkey,
            dtype=dtype,
        )

    def _strictly_lower(self) -> Float[Array, "num_gaussians in_dim in_dim"]:
        n, d = self.num_gaussians, self.in_dim
        rows, cols = np.tril_indices(d, -1)
        return (
            jnp.zeros((n, d, d), self.off_diagonal.dtype).at[:, rows, cols].set(self.off_diagonal)
        )

    def _rotations(self) -> Float[Array, "num_gaussians in_dim in_dim"]:
        """The Cayley transforms `R_i = (I - A_i)^{-1} (I + A_i)` (rotation parametrisation)."""
        a = self._strictly_lower()
        a = a - jnp.swapaxes(a, -1, -2)
        eye = jnp.eye(self.in_dim, dtype=a.dtype)
        return jnp.linalg.solve(eye - a, eye + a)

    def whitening(self) -> Float[Array, "num_gaussians in_dim in_dim"]:
        """The whitening matrices `W_i` with `Sigma_i^{-1} = W_i^T W_i`: the quadratic form of
        Gaussian `i` is `|W_i (x - mu_i)|^2`.

        **Returns:**

        An array of shape `(num_gaussians, in_dim, in_dim)`: `diag(1 / sigma_i)` (diagonal),
        `L_i^T` (Cholesky) or `diag(1 / s_i) R_i^T` (rotation).
        """
        inv_scales = jnp.exp(-self.log_scales)
        if self.covariance == "diagonal":
            return inv_scales[:, :, None] * jnp.eye(self.in_dim, dtype=inv_scales.dtype)
        if self.parametrization == "cholesky":
            lower = self._strictly_lower() + inv_scales[:, :, None] * jnp.eye(
                self.in_dim, dtype=inv_scales.dtype
            )
            return jnp.swapaxes(lower, -1, -2)
        return inv_scales[:, :, None] * jnp.swapaxes(self._rotations(), -1, -2)

    def precisions(self) -> Float[Array, "num_gaussians in_dim in_dim"]:
        """The precision matrices `Sigma_i^{-1} = W_i^T W_i`, shape `(num_gaussians, in_dim,
        in_dim)`: symmetric positive definite by construction."""
        w = self.whitening()
        return jnp.einsum("gki,gkj->gij", w, w)

    def gaussians(
        self,
    ) -> tuple[Float[Array, "num_gaussians in_dim"], Float[Array, "num_gaussians in_dim in_dim"]]:
        """The means and covariance matrices of the Gaussians (for plotting and inspection).

        **Returns:**

        `(means, covariances)` of shapes `(num_gaussians, in_dim)` and `(num_gaussians, in_dim,
        in_dim)`; the covariances are formed without inverting a precision matrix:
        `diag(sigma_i^2)`, `L_i^{-T} L_i^{-1}` (a triangular solve) or
        `R_i diag(s_i^2) R_i^T`.
        """
        scales = jnp.exp(self.log_scales)
        d = self.in_dim
        eye = jnp.eye(d, dtype=scales.dtype)
        if self.covariance == "diagonal":
            cov = (scales**2)[:, :, None] * eye
        elif self.parametrization == "cholesky":
            lower = self._strictly_lower() + (1 / scales)[:, :, None] * eye
            inv = jsl.solve_triangular(lower, jnp.broadcast_to(eye, lower.shape), lower=True)
            cov = jnp.einsum("gki,gkj->gij", inv, inv)
        else:
            r = self._rotations()
            cov = jnp.einsum("gik,gk,gjk->gij", r, scales**2, r)
        return self.means, cov

    def embed(self, x: Float[Array, " in_dim"]) -> Float[Array, " feature_dim"]:
        """The Gaussian feature embedding `FE(x) = sum_i f_i exp(-|W_i (x - mu_i)|^2 / 2)`.

        **Arguments:**

        - `x`: one point, shape `(in_dim,)`.

        **Returns:**

        A vector of shape `(feature_dim,)`.
        """
        x = check_point("PIG", x, self.in_dim)
        d = self.in_dim
        # One (N,) vector per coordinate and Python sums over the (few) coordinates, rather
        # than (d, N) or (d, d, N) arrays reduced over an axis: on CPU, XLA's fused reductions
        # over a small middle axis run 10-100x slower under `vmap`, and the forward Laplacian
        # of `sciml.derivatives` then carries (directions, N) Jacobians only.
        diffs = [x[j] - self.means[:, j] for j in range(d)]
        if self.covariance == "diagonal":
            inv_scales = jnp.exp(-self.log_scales)
            ys = [inv_scales[:, i] * diffs[i] for i in range(d)]
        else:
            w = self.whitening()
            # `W = L^T` is upper triangular for the Cholesky parametrisation: skip its zeros.
            start = (lambda i: i) if self.parametrization == "cholesky" else (lambda i: 0)
            ys = [_sum(w[:, i, j] * diffs[j] for j in range(start(i), d)) for i in range(d)]
        q = _sum(y * y for y in ys)
        weights = jnp.exp(-0.5 * q)  # (N,)
        return weights @ self.features

    def __call__(self, x: Float[Array, " in_dim"]) -> Float[Array, " out_dim"] | Float[Array, ""]:
        """**Arguments:**

        - `x`: one point, shape `(in_dim,)`.

        **Returns:**

        The output, shape `(out_dim,)`, or `()` for `out_dim="scalar"`.
        """
        return self.head(self.embed(x))
