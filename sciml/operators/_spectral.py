from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractOperator


def _default_floating_dtype():
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def _check_modes(cls_name: str, modes) -> tuple[int, ...]:
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


def _check_channels(cls_name: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{cls_name}` got `{name}={value!r}`, but it must be a positive int.")
    return value


def _check_dtype(cls_name: str, dtype):
    if dtype is None:
        return _default_floating_dtype()
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"`{cls_name}` got `dtype={dtype!r}`, but it must be a real floating dtype such as "
            "`jnp.float32` or `jnp.float64` (or None for JAX's default)."
        )
    return dtype


def min_grid_shape(modes: tuple[int, ...]) -> tuple[int, ...]:
    """The smallest spatial shape on which `modes` can be kept.

    Along every axis but the last, the frequencies `0..m-1` and `-m..-1` must be distinct,
    so `n >= 2 m`. Along the last (`rfft`) axis the frequencies `0..m-1` must exist among the
    `n // 2 + 1` non-negative ones, so `n >= 2 m - 2` (and `n >= 1`).
    """
    return tuple(2 * m for m in modes[:-1]) + (max(1, 2 * modes[-1] - 2),)


def _forward(x: Array, modes: tuple[int, ...]) -> Array:
    """The kept Fourier coefficients of `x` `(channels, n_1, ..., n_d)`: the same numbers as
    `rfftn` followed by truncation, computed as a pruned transform (the full axes are only
    transformed for the `m_d` kept columns of the last axis)."""
    *full, last = modes
    x_ft = jnp.fft.rfft(x, axis=-1)[..., :last]
    for axis, m in enumerate(full, start=1):
        x_ft = jnp.fft.fft(x_ft, axis=axis)
        n = x_ft.shape[axis]
        low = jax.lax.slice_in_dim(x_ft, 0, m, axis=axis)
        high = jax.lax.slice_in_dim(x_ft, n - m, n, axis=axis)
        x_ft = jnp.concatenate([low, high], axis=axis)
    return x_ft


def _inverse(y: Array, modes: tuple[int, ...], spatial: tuple[int, ...]) -> Array:
    """`irfftn` of the zero spectrum holding the kept coefficients `y`, computed as a pruned
    transform, with the self-conjugate columns of the last axis made Hermitian."""
    *full, last = modes
    for axis, (m, n) in enumerate(zip(full, spatial[:-1], strict=True), start=1):
        low = jax.lax.slice_in_dim(y, 0, m, axis=axis)
        high = jax.lax.slice_in_dim(y, m, 2 * m, axis=axis)
        zeros_shape = list(y.shape)
        zeros_shape[axis] = n - 2 * m
        y = jnp.concatenate([low, jnp.zeros(zeros_shape, y.dtype), high], axis=axis)
        y = jnp.fft.ifft(y, axis=axis)
    # The columns k_d = 0 and (even n_d) k_d = n_d / 2 of a real field's half spectrum are
    # Hermitian along the other axes, i.e. real once those axes are transformed back. The
    # learned products need not be; keeping the real part is NumPy's `irfftn` convention (cuFFT
    # leaves it undefined), i.e. the projection y(k') -> (y(k') + conj(y(-k'))) / 2.
    n_last = spatial[-1]
    k = np.arange(last)
    self_conjugate = (k == 0) | (2 * k == n_last)
    y = jax.lax.complex(y.real, jnp.where(self_conjugate, 0, y.imag).astype(y.real.dtype))
    pad = [(0, 0)] * y.ndim
    pad[-1] = (0, n_last // 2 + 1 - last)
    return jnp.fft.irfft(jnp.pad(y, pad), n=n_last, axis=-1)


class SpectralConv(AbstractOperator):
    """The spectral convolution of the Fourier neural operator, in any number of dimensions.

    Computes `irfftn(R · rfftn(x))`, where `R` multiplies the lowest Fourier modes of the
    `in_channels` input channels by learned complex `in_channels x out_channels` matrices (one
    per kept mode) and sets every other mode to zero. The transforms are pruned: the full axes
    are only transformed for the `m_d` kept columns of the last axis, which gives the same
    numbers as `rfftn` / `irfftn` at a fraction of the cost.

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
        self.in_channels = _check_channels("SpectralConv", "in_channels", in_channels)
        self.out_channels = _check_channels("SpectralConv", "out_channels", out_channels)
        self.modes = _check_modes("SpectralConv", modes)
        self.num_spatial_dims = len(self.modes)
        dtype = _check_dtype("SpectralConv", dtype)
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
        spatial = tuple(x.shape[1:])
        minimum = min_grid_shape(self.modes)
        if any(n < m for n, m in zip(spatial, minimum, strict=True)):
            raise ValueError(
                f"`SpectralConv` with `modes={self.modes}` needs a grid of at least {minimum} "
                f"points, but got spatial shape {spatial}."
            )
        x_ft = _forward(x, self.modes)
        weight = jax.lax.complex(self.weight_real, self.weight_imag)
        y = jnp.einsum("i...,io...->o...", x_ft, weight)
        return _inverse(y, self.modes, spatial)
