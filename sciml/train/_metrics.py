"""PDEBench's evaluation metrics on a batch `(batch, channels, *spatial)`.

Reference: M. Takamoto, T. Praditia, R. Leiteritz, D. MacKinlay, F. Alesiani, D. Pflüger and
M. Niepert, "PDEBench: An Extensive Benchmark for Scientific Machine Learning", NeurIPS 2022
Datasets and Benchmarks (arXiv:2210.07182), Section 4 and Appendix D, and `metric_func` in
`pdebench/models/metrics.py` of its code.

Conventions, shared by every function here and matching PDEBench's `metric_func`:

- `pred` and `target` hold ONE batch of shape `(batch, channels, *spatial)` with any number
    of spatial axes. Write `e = pred - target`; `mean_x` and `sum_x` run over the `N` points of
    the spatial grid.
- Each metric is computed separately for every channel and then averaged over the channels.
    PDEBench averages over channels and time steps alike, so its numbers for data with a time
    axis are reproduced by folding time into the channel axis, `(batch, channels * time,
    *spatial)`.
- Unlike [`sciml.train.relative_l2`][] (one sample, batched by `batch_loss`), these take the
    whole batch: cRMSE, the max error and fRMSE pool the batch before taking a root or a max, so
    they are not means of per-sample values. Computed on the whole test set in one call they
    are exact; PDEBench itself averages the values of its evaluation batches.
- Every function returns a scalar, is jittable, and has finite gradients also where
    `pred == target` (except `max_error`, whose gradient is the usual subgradient of a max).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._losses import safe_sqrt, same_shape


def _batch(fn_name: str, pred, target) -> tuple[Array, Array]:
    pred, target = same_shape(fn_name, pred, target)
    if pred.ndim < 3:
        raise ValueError(
            f"`{fn_name}` needs arrays of shape (batch, channels, *spatial) with at least one "
            f"spatial axis, got shape {pred.shape}."
        )
    return pred, target


def _spatial_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def rmse(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """Root mean squared error, PDEBench's RMSE.

    `RMSE = mean_{b, c} sqrt(mean_x e[b, c, x]^2)`: the RMS error over the grid of each sample
    and channel, averaged over the batch and the channels (Takamoto et al., PDEBench, NeurIPS
    2022, Section 4; `err_RMSE` of its `metric_func`).

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("rmse", pred, target)
    return jnp.mean(safe_sqrt(jnp.mean((pred - target) ** 2, axis=_spatial_axes(pred))))


def nrmse(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """Normalised root mean squared error, PDEBench's nRMSE.

    `nRMSE = mean_{b, c} sqrt(mean_x e[b, c, x]^2) / sqrt(mean_x target[b, c, x]^2)`: the RMS
    error of each sample and channel divided by the RMS of that sample's target channel, then
    averaged (Takamoto et al., PDEBench, NeurIPS 2022, Section 4; `err_nRMSE` of its
    `metric_func`). For one channel this is the per-sample relative L2 error averaged over the
    batch.

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape; no channel of a sample may be identically zero.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("nrmse", pred, target)
    axes = _spatial_axes(pred)
    error = safe_sqrt(jnp.mean((pred - target) ** 2, axis=axes))
    return jnp.mean(error / jnp.sqrt(jnp.mean(target**2, axis=axes)))


def max_error(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """Maximum absolute error, PDEBench's max error.

    `max error = mean_c max_{b, x} |e[b, c, x]|`: the worst point of the batch in each channel,
    averaged over the channels (Takamoto et al., PDEBench, NeurIPS 2022, Section 4; `err_Max`
    of its `metric_func`). With one channel it is the largest error of the batch.

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("max_error", pred, target)
    return jnp.mean(jnp.max(jnp.abs(pred - target), axis=(0, *_spatial_axes(pred))))


def crmse(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """RMSE of the conserved quantity, PDEBench's cRMSE.

    `cRMSE = mean_c sqrt(mean_b (sum_x pred[b, c, x] - sum_x target[b, c, x])^2) / N`, i.e. the
    RMS over the batch of the error in the spatial mean `(1/N) sum_x` of each channel, averaged
    over the channels (Takamoto et al., PDEBench, NeurIPS 2022, Section 4; `err_CSV` of its
    `metric_func`). For a conserved field this is the error in the total mass per unit volume.

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("crmse", pred, target)
    mean_error = jnp.mean(pred - target, axis=_spatial_axes(pred))
    return jnp.mean(safe_sqrt(jnp.mean(mean_error**2, axis=0)))


def _boundary_weights(spatial: tuple[int, ...]) -> np.ndarray:
    """How many times PDEBench counts each grid point as a boundary point: the number of faces
    (index 0 or -1 along an axis) it lies on. Edges and corners lie on several faces."""
    weights = np.zeros(spatial)
    for axis, n in enumerate(spatial):
        face = np.zeros(n)
        face[0] += 1
        face[-1] += 1
        weights = weights + face.reshape((n,) + (1,) * (len(spatial) - axis - 1))
    return weights


def brmse(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """RMSE on the boundary of the grid, PDEBench's bRMSE.

    `bRMSE = mean_{b, c} sqrt(sum_F sum_{x in F} e[b, c, x]^2 / sum_F |F|)`, where `F` runs over
    the `2 d` faces of the `d`-dimensional grid (the first and the last index along each axis)
    and `|F|` is the number of points of a face (Takamoto et al., PDEBench, NeurIPS 2022,
    Section 4; `err_BD` of its `metric_func`). A point on several faces (the edges and corners
    of a 2-D or 3-D grid) is counted once per face, as PDEBench does: in 1-D this is
    `sqrt((e[0]^2 + e[-1]^2) / 2)`, in 2-D the mean over `2 nx + 2 ny` face points.

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("brmse", pred, target)
    weights = _boundary_weights(pred.shape[2:])
    weights = jnp.asarray(weights / weights.sum(), dtype=pred.dtype)
    squared = jnp.sum(weights * (pred - target) ** 2, axis=_spatial_axes(pred))
    return jnp.mean(safe_sqrt(squared))


def _fourier_shells(spatial: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """Shell index `floor(|k|)` and weight of every wavevector of `numpy.fft.fftn` on a grid of
    shape `spatial`, and the largest shell PDEBench keeps (-1 when it keeps none).

    PDEBench sums `|FFT(e)|^2` over one representative of each set of wavevectors related by
    sign flips of their components (the non-negative frequencies: `rfft` in 1-D, the quadrant
    or octant `0 <= k_i < n_i / 2` in 2-D and 3-D). Here every wavevector is used and weighted
    by `1 / 2^m`, with `m` the number of its components that have a distinct negative partner
    (non-zero and not the Nyquist frequency `-n_i / 2`): each set then adds up to the mean of
    its members' energies. For a real field in 1-D, `|F(k)| = |F(-k)|` and this is exactly
    PDEBench's sum; in 2-D and 3-D it is PDEBench's sum averaged over the mirror images of the
    field in the coordinate axes, so that a mode such as `cos(2 pi (x - y))`, which lies
    outside PDEBench's quadrant, is not dropped.
    """
    grids = np.meshgrid(
        *[np.rint(np.fft.fftfreq(n) * n).astype(np.int64) for n in spatial], indexing="ij"
    )
    k_squared = sum(k.astype(np.float64) ** 2 for k in grids)
    # sqrt is correctly rounded, so perfect squares give exact integers here.
    shells = np.floor(np.sqrt(k_squared)).astype(np.int64)
    paired = sum(
        ((k != 0) & (2 * k != -n)).astype(np.int64) for k, n in zip(grids, spatial, strict=True)
    )
    weights = 0.5**paired
    # PDEBench keeps every rfft mode in 1-D (shells 0 to n // 2, Nyquist included) and, in 2-D
    # and 3-D, the complete shells inside its quadrant: r <= min_i(n_i // 2) - 1.
    if len(spatial) == 1:
        last = spatial[0] // 2
    else:
        last = min(spatial) // 2 - 1
    return shells, weights, last


def fourier_rmse(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
    *,
    low: int,
    high: int | None,
) -> Float[Array, ""]:
    """RMSE in a band of Fourier shells, PDEBench's fRMSE.

    With `E_hat[b, c, k]` the discrete Fourier transform (`numpy.fft.fftn`, unnormalised) of
    `e[b, c]` over the spatial axes, `k` the integer wavevector and `N` the number of grid points,

    `S[c, r] = sqrt(mean_b sum_{k : floor(|k|) = r} w(k) |E_hat[b, c, k]|^2) / N`,

    `fRMSE = mean_c mean_{low <= r < high} S[c, r]`,

    the per-shell RMS amplitude of the error averaged over the shells of the band (Takamoto et
    al., PDEBench, NeurIPS 2022, Appendix D; `err_F` of its `metric_func`, with the domain
    lengths `Lx = Ly = Lz = 1`). PDEBench's bands (`iLow=4`, `iHigh=12` there) are `low=0,
    high=4`, `low=4, high=12` and `low=12, high=None`: [`sciml.train.frmse_low`][],
    [`sciml.train.frmse_mid`][] and [`sciml.train.frmse_high`][]. These are the edges of
    PDEBench's released code, which produced its published tables; the paper's appendix writes
    them as shells 0-4, 5-12 and 13 on.

    **n-D definition.** `|k| = sqrt(sum_i k_i^2)` over the spatial axes. The shells kept are
    PDEBench's: `r = 0 .. n // 2` in 1-D (all `rfft` modes), `r = 0 .. min_i(n_i // 2) - 1` in
    2-D and more (the shells that fit inside the grid's wavenumbers). The weight `w(k) = 1/2^m`
    (`m` = number of components of `k` that are neither 0 nor the Nyquist frequency) counts
    each group of sign-flipped wavevectors once, as PDEBench's sum over non-negative
    frequencies does. In 1-D this equals PDEBench exactly. In 2-D and 3-D PDEBench sums only
    the quadrant (octant) of non-negative frequencies and so ignores modes such as
    `cos(2 pi (x - y))`; the weighted sum used here is PDEBench's averaged over the mirror
    images of the field in the coordinate axes, equal to it for mirror-symmetric fields.

    A band with no kept shell (a grid too coarse for it, e.g. `high` on fewer than 24 or 26
    points per axis) gives NaN, as in PDEBench.

    **Arguments:**

    - `pred`: predictions, shape `(batch, channels, *spatial)`.
    - `target`: references of the same shape.
    - `low`: the first shell of the band.
    - `high`: one past the last shell of the band, or `None` for all shells from `low` on.

    **Returns:**

    A scalar.
    """
    pred, target = _batch("fourier_rmse", pred, target)
    if low < 0 or (high is not None and high <= low):
        raise ValueError(f"`fourier_rmse` needs 0 <= low < high, got low={low} and high={high}.")
    spatial = pred.shape[2:]
    shells, weights, last = _fourier_shells(spatial)
    stop = last + 1 if high is None else min(high, last + 1)
    if stop <= low:
        return jnp.full((), jnp.nan, dtype=pred.dtype)
    axes = _spatial_axes(pred)
    spectrum = jnp.fft.fftn(pred - target, axes=axes)
    energy = jnp.asarray(weights, dtype=pred.dtype) * (spectrum.real**2 + spectrum.imag**2)
    # Shells outside [low, stop) go to one discarded segment.
    segments = np.where((shells >= low) & (shells < stop), shells - low, stop - low).ravel()
    energy = jnp.moveaxis(energy, (0, 1), (-2, -1)).reshape(-1, *pred.shape[:2])
    per_shell = jax.ops.segment_sum(energy, jnp.asarray(segments), num_segments=stop - low + 1)
    amplitude = safe_sqrt(jnp.mean(per_shell[:-1], axis=1)) / np.prod(spatial)
    return jnp.mean(amplitude)


def frmse_low(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """PDEBench's fRMSE in the low band, shells `0 <= floor(|k|) < 4`.

    See [`sciml.train.fourier_rmse`][] for the definition (Takamoto et al., PDEBench, NeurIPS
    2022, Appendix D; `iLow=4` of its `metric_func`).
    """
    return fourier_rmse(pred, target, low=0, high=4)


def frmse_mid(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """PDEBench's fRMSE in the middle band, shells `4 <= floor(|k|) < 12`.

    See [`sciml.train.fourier_rmse`][] for the definition (Takamoto et al., PDEBench, NeurIPS
    2022, Appendix D; `iLow=4, iHigh=12` of its `metric_func`).
    """
    return fourier_rmse(pred, target, low=4, high=12)


def frmse_high(
    pred: Float[ArrayLike, "batch channels *spatial"],
    target: Float[ArrayLike, "batch channels *spatial"],
) -> Float[Array, ""]:
    """PDEBench's fRMSE in the high band, shells `floor(|k|) >= 12` up to the last kept shell.

    See [`sciml.train.fourier_rmse`][] for the definition (Takamoto et al., PDEBench, NeurIPS
    2022, Appendix D; `iHigh=12` of its `metric_func`). NaN on grids too coarse to have such a
    shell (fewer than 24 points in 1-D, 26 per axis in 2-D and 3-D).
    """
    return fourier_rmse(pred, target, low=12, high=None)


PDEBENCH_METRICS: dict[str, Callable[[Array, Array], Array]] = {
    "rmse": rmse,
    "nrmse": nrmse,
    "max_error": max_error,
    "crmse": crmse,
    "brmse": brmse,
    "frmse_low": frmse_low,
    "frmse_mid": frmse_mid,
    "frmse_high": frmse_high,
}
"""PDEBench's metrics by name, each `metric(pred, target) -> scalar` on a batch
`(batch, channels, *spatial)`."""
