from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validate import check_floating_dtype
from ._base import AbstractOperator


def check_modes(cls_name: str, modes) -> tuple[int, ...]:
    if (
        not isinstance(modes, Sequence)
        or isinstance(modes, str)
        or len(modes) == 0
        or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in modes)
    ):
        raise ValueError(
            f"`{cls_name}` got `modes={modes!r}`, but `modes` must be a non-empty tuple with one "
            "positive int per spatial dimension, e.g. `modes=(12, 12)` in 2-D."
        )
    return tuple(modes)


def check_channels(cls_name: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{cls_name}` got `{name}={value!r}`, but it must be a positive int.")
    return value


def min_grid_shape(modes: tuple[int, ...]) -> tuple[int, ...]:
    """The smallest spatial shape on which `modes` can be kept.

    Along every axis but the last, the frequencies `0..m-1` and `-m..-1` must be distinct,
    so `n >= 2 m`. Along the last (`rfft`) axis the frequencies `0..m-1` must exist among the
    `n // 2 + 1` non-negative ones, so `n >= 2 m - 2` (and `n >= 1`).
    """
    return tuple(2 * m for m in modes[:-1]) + (max(1, 2 * modes[-1] - 2),)


def check_grid(
    cls_name: str, modes: tuple[int, ...], spatial: tuple[int, ...], padded=None
) -> None:
    """Raises a `ValueError` naming `cls_name` if the (padded) grid cannot hold `modes`."""
    padded = spatial if padded is None else padded
    minimum = min_grid_shape(modes)
    if any(n < m for n, m in zip(padded, minimum, strict=True)):
        where = "" if padded == spatial else f" (padded: {padded})"
        raise ValueError(
            f"`{cls_name}` with `modes={modes}` needs a grid of at least {minimum} points"
            f"{' after padding' if where else ''}, but got spatial shape {spatial}{where}."
        )


def _phase(freqs: np.ndarray, n: int) -> np.ndarray:
    """`2 pi f j / n` for the frequencies `f` (rows) and grid points `j = 0..n-1` (columns),
    reduced modulo `n` in integers first so that the angles are exact for any `n`."""
    return 2 * np.pi * (np.outer(freqs, np.arange(n)) % n) / n


# The transforms below are pruned DFTs written as real matrix products: a complex array is
# carried as a leading axis of size 2 (real, imaginary part), and each axis is transformed by
# one `tensordot` with a constant matrix. For the few kept modes of an FNO this is cheaper than
# an FFT followed by truncation (and its transpose for the backward pass), and the contractions
# are plain GEMMs whatever the position of the axis.


def _forward(x: Array, modes: tuple[int, ...]) -> Array:
    """The kept Fourier coefficients of a channels-last `x` `(n_1, ..., n_d, channels)`, the
    numbers of `rfftn` over the spatial axes followed by truncation, as an array `(2, 2 m_1,
    ..., 2 m_{d-1}, m_d, channels)` of real and imaginary parts."""
    d = len(modes)
    spatial = x.shape[:-1]
    # Last axis, real -> complex: X_k = sum_j x_j (cos - i sin)(2 pi k j / n).
    angle = _phase(np.arange(modes[-1]), spatial[-1]).T
    matrix = np.stack([np.cos(angle), -np.sin(angle)], axis=1)  # (n, 2, m)
    z = jnp.tensordot(jnp.asarray(matrix, x.dtype), x, axes=((0,), (d - 1,)))
    z = jnp.moveaxis(z, 1, d)
    # Full axes, complex -> complex with the signed frequencies 0..m-1, -m..-1.
    for axis, m in enumerate(modes[:-1], start=1):
        angle = _phase(np.concatenate([np.arange(m), np.arange(-m, 0)]), spatial[axis - 1]).T
        cos, sin = np.cos(angle), np.sin(angle)
        # (re, im) -> (re cos + im sin, im cos - re sin), i.e. a multiplication by exp(-i angle).
        matrix = np.stack([np.stack([cos, -sin], axis=-2), np.stack([sin, cos], axis=-2)])
        z = jnp.tensordot(jnp.asarray(matrix, x.dtype), z, axes=((0, 1), (0, axis)))
        z = jnp.moveaxis(z, 1, axis)
    return z


def _inverse(z: Array, modes: tuple[int, ...], spatial: tuple[int, ...]) -> Array:
    """`irfftn` over the spatial axes of the zero spectrum holding the kept coefficients `z`
    `(2, 2 m_1, ..., m_d, channels)` (real and imaginary parts), with the self-conjugate
    columns of the last spatial axis made Hermitian; returns `(n_1, ..., n_d, channels)`."""
    d = len(modes)
    for axis, m in enumerate(modes[:-1], start=1):
        n = spatial[axis - 1]
        angle = _phase(np.concatenate([np.arange(m), np.arange(-m, 0)]), n)
        cos, sin = np.cos(angle) / n, np.sin(angle) / n
        # Multiplication by exp(+i angle) / n: (re, im) -> (re cos - im sin, im cos + re sin).
        matrix = np.stack([np.stack([cos, sin], axis=-2), np.stack([-sin, cos], axis=-2)])
        z = jnp.tensordot(jnp.asarray(matrix, z.dtype), z, axes=((0, 1), (0, axis)))
        z = jnp.moveaxis(z, 1, axis)
    # Last axis, complex half spectrum -> real: x_j = sum_k c_k Re(X_k exp(2 pi i k j / n)) / n
    # with c_k = 2 for the columns whose mirror -k is implied by Hermitian symmetry and c_k = 1
    # for the self-conjugate columns k = 0 and (even n) k = n / 2. The products on those
    # columns need not be Hermitian along the other axes; taking the real part (their
    # imaginary part meets sin(0) = sin(pi j) = 0) is NumPy's `irfftn` convention (cuFFT leaves
    # it undefined), i.e. the projection y(k') -> (y(k') + conj(y(-k'))) / 2.
    n = spatial[-1]
    k = np.arange(modes[-1])
    weight = np.where((k == 0) | (2 * k == n), 1.0, 2.0)[:, None] / n
    angle = _phase(k, n)
    matrix = np.stack([weight * np.cos(angle), -weight * np.sin(angle)])  # (2, m, n)
    x = jnp.tensordot(jnp.asarray(matrix, z.dtype), z, axes=((0, 1), (0, d)))
    return jnp.moveaxis(x, 0, d - 1)


class SpectralConv(AbstractOperator):
    """The spectral convolution of the Fourier neural operator, in any number of dimensions.

    Computes `irfftn(R · rfftn(x))`, where `R` multiplies the lowest Fourier modes of the
    `in_channels` input channels by learned complex `in_channels x out_channels` matrices (one
    per kept mode) and sets every other mode to zero. The transforms are pruned DFTs computed
    as real matrix products with the `2 m_i` (or `m_d`) kept frequencies of each axis: the
    same numbers as `rfftn` / `irfftn` followed by truncation, at `O(m_i)` per grid point and
    axis (cheaper on CPU than the FFTs for the few modes an FNO keeps).

    With `modes = (m_1, ..., m_d)`, along every spatial axis but the last the frequencies
    `0, ..., m_i - 1` and `-m_i, ..., -1` are kept (`2 m_i` of them); along the last axis, the
    one halved by the real FFT, the frequencies `0, ..., m_d - 1` (negative ones are implied
    by Hermitian symmetry). This is the FNO paper's `weights1, weights2, ...`, one per corner
    of the spectrum, stored as one tensor. The weight tensor has shape
    `(in_channels, out_channels, 2 m_1, ..., 2 m_{d-1}, m_d)`; along a full axis, index
    `j < m_i` holds frequency `j` and index `m_i + j` holds frequency `j - m_i`.

    The products on the self-conjugate columns of the last axis (frequency zero, and `n_d / 2`
    for even `n_d`) need not be Hermitian; they are symmetrised explicitly, which is the
    convention of NumPy's `irfftn` (the real part of the complex inverse transform), so that
    the output is the same on every backend.

    The layer is resolution-agnostic: it applies to any grid with `n_i >= 2 m_i` along the full
    axes and `n_d // 2 + 1 >= m_d` along the last one.

    The weights are stored as real and imaginary parts (`weight_real`, `weight_imag`), so
    that optimisers and dtype casts see real arrays.

    ??? cite "Reference"

        Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar, "Fourier Neural
        Operator for Parametric Partial Differential Equations", ICLR 2021.
    """

    weight_real: Float[Array, "in_channels out_channels *modes"]
    weight_imag: Float[Array, "in_channels out_channels *modes"]
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: number of input channels.
        - `out_channels`: number of output channels.
        - `modes`: tuple with one positive int per spatial dimension, the number of kept
            frequencies `m_i` (see above).
        - `key`: a `jax.random` key for the initialisation.
        - `dtype`: real floating dtype of the weights; defaults to JAX's default float dtype.

        The real and imaginary parts are initialised as `U[0, 1) / (in_channels *
        out_channels)`, as in the reference FNO code.
        """
        self.in_channels = check_channels("SpectralConv", "in_channels", in_channels)
        self.out_channels = check_channels("SpectralConv", "out_channels", out_channels)
        self.modes = check_modes("SpectralConv", modes)
        self.num_spatial_dims = len(self.modes)
        dtype = check_floating_dtype("SpectralConv", dtype)
        shape = (in_channels, out_channels, *(2 * m for m in self.modes[:-1]), self.modes[-1])
        scale = 1.0 / (in_channels * out_channels)
        kr, ki = jr.split(key)
        self.weight_real = scale * jr.uniform(kr, shape, dtype)
        self.weight_imag = scale * jr.uniform(ki, shape, dtype)

    def __call__(
        self, x: Float[Array, " in_channels *spatial"]
    ) -> Float[Array, " out_channels *spatial"]:
        """**Arguments:**

        - `x`: input of shape `(in_channels, n_1, ..., n_d)`.

        **Returns:**

        An array of shape `(out_channels, n_1, ..., n_d)`.
        """
        d = self.num_spatial_dims
        if x.ndim != d + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"`SpectralConv` expects an input of shape (in_channels={self.in_channels}, "
                f"*spatial) with {d} spatial dims, but got shape {x.shape}."
            )
        check_grid("SpectralConv", self.modes, tuple(x.shape[1:]))
        x = jnp.moveaxis(x, 0, -1)
        return jnp.moveaxis(self._channels_last(x), -1, 0)

    def _channels_last(
        self, x: Float[Array, "*spatial in_channels"]
    ) -> Float[Array, "*spatial out_channels"]:
        """The same map on a channels-last input, without the shape checks: what the FNO calls,
        as it works channels-last throughout."""
        spatial = tuple(x.shape[:-1])
        z = _forward(x, self.modes)
        # One complex `in x out` matrix per kept mode, stored `(in, out, *modes)`, applied as
        # the real block matrix [[re, im], [-im, re]] acting on (re, im) parts: a batched
        # matrix product over the modes, contracting `(2, in)`.
        wr = jnp.moveaxis(self.weight_real, (0, 1), (-2, -1))
        wi = jnp.moveaxis(self.weight_imag, (0, 1), (-2, -1))
        weight = jnp.stack([jnp.stack([wr, wi]), jnp.stack([-wi, wr])])
        y = jnp.einsum("p...i,pq...io->q...o", z, weight)
        return _inverse(y, self.modes, spatial)
