"""PDEBench's metrics against NumPy references written from the paper's formulas and its
`metric_func`, plus analytic special cases.

References are in float64 and compared at rtol 1e-10 (the two sides differ only in the order
of floating-point sums; the FFTs are O(log N) eps apart). Exact special cases use atol 1e-12 on
O(1) values, again rounding only.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.train as train
from sciml.train import (
    PDEBENCH_METRICS,
    brmse,
    crmse,
    fourier_rmse,
    frmse_high,
    frmse_low,
    frmse_mid,
    max_error,
    nrmse,
    rmse,
)

RTOL = 1e-10
ATOL = 1e-12
# (batch, channels, *spatial), each fine enough for a non-empty high band: n >= 24 in 1-D,
# min(n) >= 26 in 2-D and 3-D. The 2-D and 3-D grids are anisotropic on purpose.
SHAPES = {1: (3, 2, 32), 2: (3, 2, 30, 32), 3: (2, 2, 28, 30, 28)}
BANDS = {"frmse_low": (0, 4), "frmse_mid": (4, 12), "frmse_high": (12, None)}


def _pair(dim, seed=0):
    rng = np.random.default_rng(seed + dim)
    shape = SHAPES[dim]
    return rng.normal(size=shape) + 0.5, rng.normal(size=shape)


# --- NumPy references, one line of the formula each -------------------------------------------


def _spatial(x):
    return tuple(range(2, x.ndim))


def ref_rmse(p, t):
    return np.mean(np.sqrt(np.mean((p - t) ** 2, axis=_spatial(p))))


def ref_nrmse(p, t):
    ax = _spatial(p)
    return np.mean(np.sqrt(np.mean((p - t) ** 2, axis=ax)) / np.sqrt(np.mean(t**2, axis=ax)))


def ref_max_error(p, t):
    return np.mean(np.max(np.abs(p - t), axis=(0, *_spatial(p))))


def ref_crmse(p, t):
    ax = _spatial(p)
    n = np.prod(p.shape[2:])
    diff = np.sum(p, axis=ax) - np.sum(t, axis=ax)
    return np.mean(np.sqrt(np.mean(diff**2, axis=0)) / n)


def ref_brmse(p, t):
    # Sum over the 2 d faces (first and last index along each axis) of the squared error,
    # divided by the total number of face points, edges and corners once per face.
    e2 = (p - t) ** 2
    total, count = 0.0, 0
    for axis in _spatial(p):
        for index in (0, -1):
            face = np.take(e2, index, axis=axis)
            total = total + np.sum(face, axis=tuple(range(2, face.ndim)))
            count += int(np.prod(face.shape[2:]))
    return np.mean(np.sqrt(total / count))


def pdebench_shell_energy(e):
    """PDEBench's shell sums of |FFT(e)|^2, shape (batch, channels, shells): every rfft mode
    in 1-D; the quadrant/octant 0 <= k_i < n_i // 2 and shells < min(n_i // 2) in 2-D/3-D."""
    spatial = e.shape[2:]
    if len(spatial) == 1:
        return np.abs(np.fft.rfft(e, axis=2)) ** 2
    f2 = np.abs(np.fft.fftn(e, axes=_spatial(e))) ** 2
    shells = min(spatial) // 2
    out = np.zeros(e.shape[:2] + (shells,))
    for k in itertools.product(*[range(n // 2) for n in spatial]):
        r = int(np.floor(np.sqrt(sum(i * i for i in k))))
        if r < shells:
            out[..., r] += f2[(..., *k)]
    return out


def _mirror(e, axes):
    # u(x) -> u(-x) on a periodic grid, for the given axes.
    for axis in axes:
        e = np.roll(np.flip(e, axis=axis), 1, axis=axis)
    return e


def ref_frmse(p, t, low, high, *, mirror_average=True):
    """PDEBench's fRMSE; with `mirror_average`, its shell energies averaged over all mirror
    images of the error in the coordinate axes (sciml's n-D definition)."""
    e = p - t
    ax = _spatial(e)
    if mirror_average:
        subsets = [s for r in range(len(ax) + 1) for s in itertools.combinations(ax, r)]
        energy = np.mean([pdebench_shell_energy(_mirror(e, s)) for s in subsets], axis=0)
    else:
        energy = pdebench_shell_energy(e)
    per_shell = np.sqrt(np.mean(energy, axis=0)) / np.prod(e.shape[2:])  # (channels, shells)
    return np.mean(np.mean(per_shell[:, low:high], axis=1))


REFERENCES = {
    "rmse": ref_rmse,
    "nrmse": ref_nrmse,
    "max_error": ref_max_error,
    "crmse": ref_crmse,
    "brmse": ref_brmse,
    **{name: (lambda p, t, b=band: ref_frmse(p, t, *b)) for name, band in BANDS.items()},
}


# --- against the references -------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", list(PDEBENCH_METRICS))
def test_matches_reference(name, dim):
    p, t = _pair(dim)
    got = PDEBENCH_METRICS[name](p, t)
    assert got.shape == () and got.dtype == jnp.float64
    np.testing.assert_allclose(got, REFERENCES[name](p, t), rtol=RTOL)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_frmse_equals_pdebench_literal_on_mirror_symmetric_fields(dim):
    # In 1-D every real field qualifies; in n-D symmetrise the error under all mirror images,
    # where sciml's weighted sum over all wavevectors equals PDEBench's quadrant sum exactly.
    p, t = _pair(dim, seed=5)
    if dim > 1:
        ax = _spatial(p)
        subsets = [s for r in range(len(ax) + 1) for s in itertools.combinations(ax, r)]
        p = t + np.mean([_mirror(p - t, s) for s in subsets], axis=0)
    for name, (low, high) in BANDS.items():
        expected = ref_frmse(p, t, low, high, mirror_average=False)
        np.testing.assert_allclose(PDEBENCH_METRICS[name](p, t), expected, rtol=RTOL)


def test_frmse_sees_modes_outside_pdebench_quadrant():
    # cos(2 pi (13 x - 5 y)) lives at k = (13, -5), (-13, 5): PDEBench's quadrant sum misses it.
    # Here each of the two wavevectors has |F| = a N / 2 and weight 1/4, so shell 13 holds
    # (a N / 2)^2 / 2, i.e. S_13 = a / (2 sqrt 2); the high band of a 32 x 32 grid is shells
    # 12..15, so frmse_high = a / (8 sqrt 2).
    n, a = 32, 0.7
    x = np.arange(n) / n
    e = a * np.cos(2 * np.pi * (13 * x[:, None] - 5 * x[None, :]))[None, None]
    t = np.zeros_like(e)
    assert ref_frmse(e, t, 12, None, mirror_average=False) < ATOL  # vs. a / (8 sqrt 2) here
    np.testing.assert_allclose(frmse_high(e, t), a / (8 * np.sqrt(2)), rtol=RTOL)
    np.testing.assert_allclose(frmse_low(e, t), 0.0, atol=ATOL)
    np.testing.assert_allclose(frmse_mid(e, t), 0.0, atol=ATOL)


# --- special cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", list(PDEBENCH_METRICS))
def test_zero_when_equal(name, dim):
    _, t = _pair(dim)
    assert PDEBENCH_METRICS[name](t, t) == 0.0


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_constant_offset(dim):
    # e = c everywhere: every point error and every spatial mean is |c|; only the k = 0 mode
    # is non-zero, S_0 = |c|, and the low band averages shells 0..3, so frmse_low = |c| / 4.
    _, t = _pair(dim)
    c = -0.37
    p = t + c
    for fn in (rmse, crmse, max_error, brmse):
        np.testing.assert_allclose(fn(p, t), abs(c), rtol=RTOL)
    rms_target = np.sqrt(np.mean(t**2, axis=_spatial(t)))
    np.testing.assert_allclose(nrmse(p, t), np.mean(abs(c) / rms_target), rtol=RTOL)
    np.testing.assert_allclose(frmse_low(p, t), abs(c) / 4, rtol=RTOL)
    np.testing.assert_allclose(frmse_mid(p, t), 0.0, atol=ATOL)
    np.testing.assert_allclose(frmse_high(p, t), 0.0, atol=ATOL)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_single_high_mode_lands_only_in_high_band(dim):
    # e = a cos(2 pi 13 x_0): |F| = a N / 2 at k = +-13 e_0, so S_13 = a / 2 (PDEBench's rfft
    # value) and the band mean divides by the number of high shells: 32 // 2 - 12 + 1 = 5 in
    # 1-D (n = 32), min(n) // 2 - 12 = 3 in 2-D (30 x 32), 2 in 3-D (28 x 30 x 28).
    a = 0.9
    shape = SHAPES[dim]
    x = np.arange(shape[2]) / shape[2]
    mode = a * np.cos(2 * np.pi * 13 * x).reshape((-1,) + (1,) * (dim - 1))
    t = _pair(dim)[1]
    p = t + np.broadcast_to(mode, shape)
    high_shells = {1: 5, 2: 3, 3: 2}[dim]
    np.testing.assert_allclose(frmse_high(p, t), a / 2 / high_shells, rtol=RTOL)
    np.testing.assert_allclose(frmse_low(p, t), 0.0, atol=ATOL)
    np.testing.assert_allclose(frmse_mid(p, t), 0.0, atol=ATOL)
    assert crmse(p, t) < ATOL  # a mode with k != 0 has zero mean


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_boundary_error_only_in_brmse(dim):
    shape = SHAPES[dim]
    rng = np.random.default_rng(7)
    t = rng.normal(size=shape)
    interior = np.zeros(shape, dtype=bool)
    interior[(slice(None), slice(None)) + (slice(1, -1),) * dim] = True
    noise = rng.normal(size=shape)
    # Error in the interior only: invisible to brmse, seen by rmse.
    p = t + np.where(interior, noise, 0.0)
    assert brmse(p, t) == 0.0 and rmse(p, t) > 0.1
    # Error on the boundary only: brmse is its RMS over the faces.
    p = t + np.where(interior, 0.0, noise)
    np.testing.assert_allclose(brmse(p, t), ref_brmse(p, t), rtol=RTOL)
    assert brmse(p, t) > rmse(p, t)


def test_brmse_1d_is_the_two_end_points():
    e = np.zeros((1, 1, 10))
    e[0, 0, 0], e[0, 0, -1] = 3.0, 4.0
    np.testing.assert_allclose(brmse(e, np.zeros_like(e)), np.sqrt(12.5), rtol=RTOL)


def test_brmse_counts_corners_once_per_face():
    # 2-D, n x m grid: 2 n + 2 m face points; a corner error of 1 is counted twice.
    e = np.zeros((1, 1, 5, 7))
    e[0, 0, 0, 0] = 1.0
    np.testing.assert_allclose(brmse(e, np.zeros_like(e)), np.sqrt(2 / 24), rtol=RTOL)


# --- batch and channel handling ----------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
def test_batch_and_channel_aggregation(dim):
    p, t = _pair(dim, seed=3)
    per = lambda fn: np.array(
        [
            [fn(p[b : b + 1, c : c + 1], t[b : b + 1, c : c + 1]) for c in range(p.shape[1])]
            for b in range(p.shape[0])
        ]
    )
    # rmse, nrmse, brmse: per sample and channel, then the mean.
    for fn in (rmse, nrmse, brmse):
        np.testing.assert_allclose(fn(p, t), per(fn).mean(), rtol=RTOL)
    # crmse pools the batch in a root mean square of the per-sample |mean error| (fRMSE does
    # the same per shell, checked against the reference above); max_error takes the batch max.
    np.testing.assert_allclose(crmse(p, t), np.sqrt((per(crmse) ** 2).mean(0)).mean(), rtol=RTOL)
    np.testing.assert_allclose(max_error(p, t), per(max_error).max(0).mean(), rtol=RTOL)
    # Every metric is the mean over channels of its single-channel value.
    for name, fn in PDEBENCH_METRICS.items():
        channels = [fn(p[:, c : c + 1], t[:, c : c + 1]) for c in range(p.shape[1])]
        np.testing.assert_allclose(fn(p, t), np.mean(channels), rtol=RTOL, err_msg=name)


def test_float32_stays_float32():
    p, t = (x.astype(np.float32) for x in _pair(2))
    for name, fn in PDEBENCH_METRICS.items():
        got = fn(p, t)
        assert got.dtype == jnp.float32, name
        np.testing.assert_allclose(got, REFERENCES[name](p, t), rtol=1e-4, err_msg=name)


def test_coarse_grid_gives_nan_for_empty_band():
    # 16 points: 1-D shells 0..8, no shell >= 12.
    p, t = np.ones((2, 1, 16)), np.zeros((2, 1, 16))
    assert np.isnan(frmse_high(p, t))
    np.testing.assert_allclose(frmse_low(p, t), 0.25, rtol=RTOL)


# --- transformations ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PDEBENCH_METRICS))
def test_jit(name):
    p, t = _pair(2)
    fn = PDEBENCH_METRICS[name]
    np.testing.assert_allclose(jax.jit(fn)(p, t), fn(p, t), rtol=RTOL)


@pytest.mark.parametrize("name", [n for n in PDEBENCH_METRICS if n != "max_error"])
def test_grad(name):
    fn = PDEBENCH_METRICS[name]
    p, t = _pair(1)
    # Finite at pred == target (the square roots are guarded), zero there.
    g = jax.grad(fn)(jnp.asarray(t), t)
    assert np.all(g == 0.0)
    # Matches central differences along a random direction (float64; step 1e-6 gives
    # O(1e-12) truncation and O(1e-10) rounding error on O(1) values).
    v = np.random.default_rng(1).normal(size=p.shape)
    h = 1e-6
    fd = (fn(p + h * v, t) - fn(p - h * v, t)) / (2 * h)
    np.testing.assert_allclose(np.sum(jax.grad(fn)(jnp.asarray(p), t) * v), fd, rtol=1e-6)


def test_max_error_grad_is_the_argmax_sign():
    p, t = np.zeros((2, 1, 8)), np.zeros((2, 1, 8))
    p[1, 0, 3] = -2.0
    g = jax.grad(max_error)(jnp.asarray(p), t)
    expected = np.zeros_like(p)
    expected[1, 0, 3] = -1.0
    np.testing.assert_array_equal(g, expected)


# --- API -----------------------------------------------------------------------------------------


def test_registry_and_exports():
    assert list(PDEBENCH_METRICS) == [
        "rmse",
        "nrmse",
        "max_error",
        "crmse",
        "brmse",
        "frmse_low",
        "frmse_mid",
        "frmse_high",
    ]
    for name, fn in PDEBENCH_METRICS.items():
        assert getattr(train, name) is fn
        assert "PDEBench" in fn.__doc__
    assert train.fourier_rmse is fourier_rmse


@pytest.mark.untyped
def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"`rmse` needs `pred` and `target` of the same shape"):
        rmse(np.zeros((2, 1, 8)), np.zeros((2, 1, 9)))
    with pytest.raises(ValueError, match=r"`brmse` needs arrays of shape \(batch, channels"):
        brmse(np.zeros((2, 8)), np.zeros((2, 8)))
    with pytest.raises(ValueError, match=r"`fourier_rmse` needs 0 <= low < high"):
        fourier_rmse(np.zeros((2, 1, 8)), np.zeros((2, 1, 8)), low=4, high=4)
