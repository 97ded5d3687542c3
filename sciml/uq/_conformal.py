"""Split-conformal prediction bands per grid point, their coverage and calibration curves.

**Scores and guarantee.** Scores are computed *per grid point* (and channel): for calibration
samples `i = 1..n` and every point `j`, `s_ij = |y_ij - mean_ij| / (std_ij + eps)` (an
ensemble's mean and spread) or `s_ij = |y_ij - pred_ij|` (a single model). Point `j`'s
threshold `q_j` is the `ceil((n + 1) level)`-th smallest of `s_1j, ..., s_nj`, i.e. the
empirical quantile at `ceil((n + 1) level) / n`; the band is `mean_j +- q_j (std_j + eps)`.

If the calibration pairs and a new pair are exchangeable and the model did not see the
calibration data, then for EVERY grid point `j` separately (marginal over the calibration set
and the new pair) `P(y_j in band_j) >= level`, and `< level + 1 / (n + 1)` when the scores have
no ties (Vovk et al. 2005; Lei et al. 2018, Theorem 2.2). Averaging over points, the expected
fraction of a new field inside its band obeys the same bounds. It is not a guarantee that a
whole field lies inside its band (simultaneous coverage), nor one conditional on the input.
Given one calibration set, the coverage of point `j` is random, Beta(k, n + 1 - k) with
`k = ceil((n + 1) level)`, with standard deviation about `sqrt(level (1 - level) / (n + 2))`.
"""

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

# `ceil((n + 1) level)` is taken with this slack, so that a product that should be an integer
# (10 * 0.9) but rounds up in binary (9.000000000000002) does not cost one more sample.
_SLACK = 1e-9


def _check_level(level: float, name: str = "level") -> float:
    level = float(level)
    if not 0 < level < 1:
        raise ValueError(f"`{name}` must be a nominal coverage in (0, 1), got {level!r}.")
    return level


def quantile_rank(n: int, level: float) -> int:
    """The rank `k = ceil((n + 1) level)` of the split-conformal quantile among `n` scores (the
    empirical quantile at level `k / n`); `k > n` means no finite band has the guarantee.

    **Arguments:**

    - `n`: number of calibration scores.
    - `level`: nominal coverage `1 - alpha`, in (0, 1).

    **Returns:**

    The rank `k` (1-based).
    """
    return math.ceil((n + 1) * _check_level(level) - _SLACK)


def min_calibration(level: float) -> int:
    """The fewest calibration samples for which the band at `level` is finite: the least `n`
    with `ceil((n + 1) level) <= n` (9 for 0.9, 19 for 0.95)."""
    level = _check_level(level)
    n = max(1, math.floor(level / (1 - level)) - 1)
    while quantile_rank(n, level) > n:
        n += 1
    return n


def conformity_scores(
    target: Float[ArrayLike, "*shape"],
    mean: Float[ArrayLike, "*shape"],
    std: Float[ArrayLike, "*shape"] | None = None,
    *,
    eps: float = 1e-6,
) -> Float[Array, "*shape"]:
    """Split-conformal scores, element-wise: `|target - mean| / (std + eps)`, or
    `|target - mean|` without `std` (a single model's absolute residuals).

    **Arguments:**

    - `target`: the true fields (any shape, e.g. `(n, channels, *spatial)`).
    - `mean`: the predictions, same shape.
    - `std`: the predicted spread (e.g. `Ensemble.std`), same shape, or `None`.
    - `eps`: added to `std`, so that a point where the members agree exactly keeps a finite
        score (any `eps > 0` keeps the guarantee).

    **Returns:**

    The scores, shape of `target`.
    """
    target, mean = jnp.asarray(target), jnp.asarray(mean)
    if target.shape != mean.shape or (std is not None and jnp.shape(std) != target.shape):
        raise ValueError(
            "`conformity_scores` needs `target`, `mean` (and `std`) of the same shape, got "
            f"{target.shape}, {mean.shape}" + ("" if std is None else f", {jnp.shape(std)}")
        )
    residual = jnp.abs(target - mean)
    return residual if std is None else residual / (jnp.asarray(std) + eps)


def conformal_quantile(
    scores: Float[ArrayLike, " n *shape"], level: float
) -> Float[Array, "*shape"]:
    """The split-conformal threshold of every point: along the sample axis 0, the
    `ceil((n + 1) level)`-th smallest score (`inf` when `n` is too small for `level`, see
    `min_calibration`).

    **Arguments:**

    - `scores`: calibration scores `(n, *shape)`.
    - `level`: nominal coverage `1 - alpha`, in (0, 1).

    **Returns:**

    The thresholds, shape `shape`.
    """
    scores = jnp.asarray(scores)
    if scores.ndim < 1 or scores.shape[0] < 1:
        raise ValueError(
            f"`conformal_quantile` needs scores (n, ...) with n >= 1, got shape {scores.shape}."
        )
    n = scores.shape[0]
    k = quantile_rank(n, level)
    if k > n:
        return jnp.full(scores.shape[1:], jnp.inf, scores.dtype)
    return jnp.sort(scores, axis=0)[k - 1]


class ConformalBands(eqx.Module):
    """Split-conformal thresholds per grid point at one or more nominal levels (see the module
    docstring for the guarantee). Made by `calibrate`; call it on predictions to get bands.

    **Fields:**

    - `quantiles`: `(levels, *shape)` thresholds of the scores.
    - `levels`: the nominal coverages.
    - `normalized`: whether the scores were divided by a spread `std + eps`.
    - `eps`: see `conformity_scores`.
    - `num_calibration`: the number `n` of calibration samples.
    """

    quantiles: Float[Array, " levels *shape"]
    levels: tuple[float, ...] = eqx.field(static=True)
    normalized: bool = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    num_calibration: int = eqx.field(static=True)

    def __check_init__(self):
        if jnp.shape(self.quantiles)[:1] != (len(self.levels),):
            raise ValueError(
                f"`ConformalBands` needs one row of `quantiles` per level, got shape "
                f"{jnp.shape(self.quantiles)} for {len(self.levels)} levels."
            )

    def __call__(
        self,
        mean: Float[ArrayLike, "*shape"],
        std: Float[ArrayLike, "*shape"] | None = None,
    ) -> tuple[Float[Array, " levels *shape"], Float[Array, " levels *shape"]]:
        """The bands for predictions of ONE sample (or a batch: leading axes broadcast).

        **Arguments:**

        - `mean`: the prediction, `(*shape)` or `(batch, *shape)`.
        - `std`: the spread, same shape; required iff the bands were calibrated with one.

        **Returns:**

        `(lower, upper)`, each `(levels, *mean.shape)`: `mean -+ q (std + eps)`.
        """
        if (std is None) == self.normalized:
            raise ValueError(
                "`ConformalBands` calibrated with a spread need `std`, got None."
                if self.normalized
                else "`ConformalBands` calibrated without a spread take no `std`, got one."
            )
        mean = jnp.asarray(mean)
        shape = self.quantiles.shape[1:]
        if mean.shape[mean.ndim - len(shape) :] != shape:
            raise ValueError(
                f"`ConformalBands` were calibrated on fields of shape {shape}, got predictions "
                f"of shape {mean.shape}."
            )
        q = self.quantiles.reshape((len(self.levels),) + (1,) * (mean.ndim - len(shape)) + shape)
        width = q if std is None else q * (jnp.asarray(std) + self.eps)
        return mean - width, mean + width

    def contains(
        self,
        target: Float[ArrayLike, "*shape"],
        mean: Float[ArrayLike, "*shape"],
        std: Float[ArrayLike, "*shape"] | None = None,
    ) -> Bool[Array, " levels *shape"]:
        """Whether each point of `target` lies inside its band (bounds included), per level."""
        scores = conformity_scores(target, mean, std, eps=self.eps)
        shape = self.quantiles.shape[1:]
        q = self.quantiles.reshape((len(self.levels),) + (1,) * (scores.ndim - len(shape)) + shape)
        return scores <= q


def calibrate(
    target: Float[ArrayLike, " n *shape"],
    mean: Float[ArrayLike, " n *shape"],
    std: Float[ArrayLike, " n *shape"] | None = None,
    *,
    levels: float | Sequence[float] = 0.9,
    eps: float = 1e-6,
) -> ConformalBands:
    """Split-conformal calibration per grid point on a held-out calibration set.

    **Arguments:**

    - `target`: the calibration set's true fields `(n, *shape)`; the model must not have
        been trained on them.
    - `mean`: the model's predictions for them (an ensemble's mean).
    - `std`: the ensemble's spread (normalised scores), or `None` (absolute residuals).
    - `levels`: one nominal coverage `1 - alpha` or several, each in (0, 1).
    - `eps`: see `conformity_scores`.

    **Returns:**

    A `ConformalBands`. A level needing more than `n` samples (`min_calibration`) gets
    infinite bands, as the finite-sample quantile prescribes.
    """
    levels = (levels,) if isinstance(levels, int | float) else tuple(levels)
    if not levels:
        raise ValueError("`levels` must hold at least one nominal coverage, got none.")
    levels = tuple(_check_level(level, "levels") for level in levels)
    scores = conformity_scores(target, mean, std, eps=eps)
    if scores.ndim < 1 or scores.shape[0] < 1:
        raise ValueError(f"`calibrate` needs at least one calibration sample, got {scores.shape}.")
    quantiles = jnp.stack([conformal_quantile(scores, level) for level in levels])
    return ConformalBands(
        quantiles=quantiles,
        levels=levels,
        normalized=std is not None,
        eps=float(eps),
        num_calibration=int(scores.shape[0]),
    )


def coverage(
    target: Float[ArrayLike, "*shape"],
    lower: Float[ArrayLike, "*shape"],
    upper: Float[ArrayLike, "*shape"],
) -> Float[Array, ""]:
    """The empirical coverage: the fraction of the entries of `target` with
    `lower <= target <= upper` (over every sample, channel and grid point given).

    **Arguments:**

    - `target`: true values.
    - `lower`, `upper`: the band, broadcastable to `target`.

    **Returns:**

    A scalar in [0, 1].
    """
    target = jnp.asarray(target)
    inside = (jnp.asarray(lower) <= target) & (target <= jnp.asarray(upper))
    return jnp.mean(inside)


def calibration_curve(
    calibration_scores: Float[ArrayLike, " n *shape"],
    test_scores: Float[ArrayLike, " m *shape"],
    levels: Sequence[float],
) -> np.ndarray:
    """Empirical coverage against nominal coverage: for each level, the fraction of the test
    scores at or below the split-conformal threshold of their point.

    **Arguments:**

    - `calibration_scores`: `conformity_scores` of the calibration set `(n, *shape)`.
    - `test_scores`: those of held-out test samples `(m, *shape)` (same `eps`, same model).
    - `levels`: nominal coverages in (0, 1).

    **Returns:**

    A NumPy array of the empirical coverages, one per level (perfectly calibrated: about
    `ceil((n + 1) level) / (n + 1)`, slightly above `level`).
    """
    cal = jnp.asarray(calibration_scores)
    test = jnp.asarray(test_scores)
    if cal.shape[1:] != test.shape[1:]:
        raise ValueError(
            f"`calibration_curve` needs scores of the same points, got shapes {cal.shape} "
            f"and {test.shape}."
        )
    return np.array(
        [float(jnp.mean(test <= conformal_quantile(cal, level)[None])) for level in levels]
    )
