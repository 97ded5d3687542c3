"""Gaussian random fields N(0, sigma^2 (-Lap + tau^2 I)^-alpha) on uniform grids."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from .._validate import ArgumentError

BOUNDARIES = ("periodic", "dirichlet", "neumann")


def dst1(x: Float[Array, "*dims"], axis: int = -1) -> Float[Array, "*dims"]:
    """Unnormalised type-I discrete sine transform along one axis.

    `y_k = sum_{j=1}^{n} x_j sin(pi j k / (n + 1))` for `k = 1, ..., n`, where `n = x.shape[axis]`
    (indices of `x` and `y` start at 1 in this formula). Applying it twice gives `(n + 1) / 2`
    times the identity.

    Computed with one real FFT of the odd extension `(0, x, 0, -reversed(x))` of length
    `2 (n + 1)`, whose transform is `-2i` times the sine sums.
    """
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    zero = jnp.zeros_like(x[..., :1])
    ext = jnp.concatenate([zero, x, zero, -x[..., ::-1]], axis=-1)
    y = -0.5 * jnp.fft.rfft(ext, axis=-1)[..., 1 : n + 1].imag
    return jnp.moveaxis(y, -1, axis)


def dct1(x: Float[Array, "*dims"], axis: int = -1) -> Float[Array, "*dims"]:
    """Unnormalised type-I discrete cosine transform along one axis, without endpoint halving.

    `y_k = sum_{j=0}^{N-1} x_j cos(pi j k / (N - 1))` for `k = 0, ..., N - 1`, where
    `N = x.shape[axis] >= 2`; i.e. the plain cosine sum, evaluated on the node grid
    `x_j = j / (N - 1)`.

    Computed with one real FFT of the even extension `(x_0, ..., x_{N-1}, x_{N-2}, ..., x_1)` of
    length `2 (N - 1)`, which counts the interior nodes twice and the two end nodes once; the end
    nodes are added once more by hand.
    """
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    ext = jnp.concatenate([x, x[..., -2:0:-1]], axis=-1)
    y = jnp.fft.rfft(ext, axis=-1)[..., :n].real
    sign = jnp.asarray((-1.0) ** np.arange(n), dtype=x.dtype)
    y = 0.5 * (y + x[..., :1] + sign * x[..., -1:])
    return jnp.moveaxis(y, -1, axis)


def _squared_wavenumbers(wavenumbers: Sequence[np.ndarray], dtype) -> Float[Array, "*modes"]:
    """`|k|^2` on the outer product of 1-D integer wavenumber grids (one broadcast sum per axis)."""
    ksq = jnp.zeros((), dtype)
    d = len(wavenumbers)
    for axis, k in enumerate(wavenumbers):
        k = jnp.asarray(k, dtype)
        ksq = ksq + jnp.reshape(k**2, (-1,) + (1,) * (d - 1 - axis))
    return ksq


def _is_concrete_number(x) -> bool:
    return isinstance(x, numbers.Real) or (isinstance(x, np.ndarray | np.generic) and x.ndim == 0)


def grf_eigenvalues(
    shape: Sequence[int],
    *,
    alpha: float | Real[ArrayLike, ""],
    tau: float | Real[ArrayLike, ""],
    sigma: float | Real[ArrayLike, ""] | None = None,
    boundary: str = "periodic",
    dtype=None,
) -> Float[Array, "*modes"]:
    """Covariance eigenvalues `sigma^2 (mu_k + tau^2)^-alpha` of the modes that [`grf`][] samples.

    **Arguments:** as for [`grf`][].

    **Returns:**

    An array of per-mode variances. For `"periodic"` its shape is `shape`, indexed like
    `jnp.fft.fftn` (mode `k` with `mu_k = 4 pi^2 |k|^2`, `k` from `jnp.fft.fftfreq(N, 1 / N)`);
    for `"dirichlet"` it is `(N - 2, ...)` for the sine modes `k = 1, ..., N - 2`; for
    `"neumann"` it is `shape` for the cosine modes `k = 0, ..., N - 1`; in the last two
    `mu_k = pi^2 |k|^2`. A mode with `mu_k + tau^2 = 0` (the constant when `tau = 0`) gets
    variance zero.
    """
    shape, alpha, tau, sigma, dtype = _check_args(shape, alpha, tau, sigma, boundary, dtype)
    return _eigenvalues(shape, alpha, tau, sigma, boundary, dtype)


def _eigenvalues(shape, alpha, tau, sigma, boundary, dtype):
    if boundary == "periodic":
        ks = [np.fft.fftfreq(n, 1.0 / n) for n in shape]
        scale = 4 * math.pi**2
    elif boundary == "dirichlet":
        ks = [np.arange(1, n - 1) for n in shape]
        scale = math.pi**2
    else:
        ks = [np.arange(n) for n in shape]
        scale = math.pi**2
    base = scale * _squared_wavenumbers(ks, dtype) + jnp.asarray(tau, dtype) ** 2
    safe = jnp.where(base > 0, base, 1)
    return jnp.where(base > 0, sigma**2 * safe ** (-jnp.asarray(alpha, dtype)), 0)


def _check_args(shape, alpha, tau, sigma, boundary, dtype):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        raise ArgumentError(
            f"`shape` must be a tuple of ints, got {shape!r}.", argument="shape"
        ) from None
    if len(shape) == 0 or any(n < 2 for n in shape):
        raise ArgumentError(
            f"`shape` must have at least one axis and every size >= 2, got {shape!r}.",
            argument="shape",
        )
    if boundary not in BOUNDARIES:
        raise ArgumentError(
            f"`boundary` must be one of {BOUNDARIES}, got {boundary!r}.", argument="boundary"
        )
    if boundary == "dirichlet" and any(n < 3 for n in shape):
        raise ArgumentError(
            f"`shape` must have every size >= 3 for boundary='dirichlet' (two boundary nodes "
            f"plus at least one interior node), got {shape!r}.",
            argument="shape",
        )
    if _is_concrete_number(alpha) and not alpha > 0:
        raise ArgumentError(f"`alpha` must be > 0, got {alpha!r}.", argument="alpha")
    if _is_concrete_number(tau) and not tau >= 0:
        raise ArgumentError(f"`tau` must be >= 0, got {tau!r}.", argument="tau")
    if sigma is None:
        if _is_concrete_number(tau) and tau == 0:
            raise ArgumentError(
                "`sigma` must be given when `tau` = 0 (the default sigma = "
                "tau**(alpha - d/2) would be 0).",
                argument="sigma",
            )
        sigma = tau ** (0.5 * (2 * alpha - len(shape)))
    elif _is_concrete_number(sigma) and not sigma >= 0:
        raise ArgumentError(f"`sigma` must be >= 0 or None, got {sigma!r}.", argument="sigma")
    if dtype is None:
        dtype = jnp.result_type(float)
    elif not jnp.issubdtype(dtype, jnp.floating):
        raise ArgumentError(
            f"`dtype` must be a real floating dtype or None, got {dtype!r}.", argument="dtype"
        )
    return shape, alpha, tau, sigma, dtype


def grf(
    key: PRNGKeyArray,
    shape: int | Sequence[int],
    *,
    alpha: float | Real[ArrayLike, ""],
    tau: float | Real[ArrayLike, ""],
    sigma: float | Real[ArrayLike, ""] | None = None,
    boundary: str = "periodic",
    dtype=None,
) -> Float[Array, "*shape"]:
    r"""Draws one sample of the Gaussian random field $N(0, \sigma^2 (-\Delta + \tau^2)^{-\alpha})$.

    The field is sampled exactly (up to floating point) from the covariance restricted to the
    modes the grid resolves, by its Karhunen-Loeve expansion
    $u = \sum_k \sqrt{\lambda_k}\, \xi_k \phi_k$, $\xi_k \sim N(0, 1)$ i.i.d.,
    $\lambda_k = \sigma^2 (\mu_k + \tau^2)^{-\alpha}$, where $(\mu_k, \phi_k)$ are the
    eigenpairs of $-\Delta$ on $[0, 1]^d$ with $L^2$-normalised eigenfunctions:

    - `"periodic"`: grid $x_j = j / N$ ($N$ points of $[0, 1)$ per axis),
      $\phi_k = e^{2\pi i k \cdot x}$, $\mu_k = 4\pi^2 |k|^2$ for the $N$ FFT wavenumbers per
      axis. Sampled as `irfftn(sqrt(lambda) * rfftn(w)) * sqrt(prod(shape))` for real white
      noise `w`, which is real and has $E|\hat u_k|^2 / (\prod N)^2 = \lambda_k$.
    - `"dirichlet"` (zero boundary values): node grid $x_j = j / (N - 1)$ including both ends,
      $\phi_k = \prod_i \sqrt 2 \sin(\pi k_i x_i)$, $k_i = 1, \dots, N - 2$,
      $\mu_k = \pi^2 |k|^2$. The boundary values are exactly zero.
    - `"neumann"` (zero normal derivative): node grid as for `"dirichlet"`,
      $\phi_k = \prod_i c_{k_i} \cos(\pi k_i x_i)$ with $c_0 = 1$, $c_{k} = \sqrt 2$,
      $k_i = 0, \dots, N - 1$, $\mu_k = \pi^2 |k|^2$. The constant mode ($k = 0$, variance
      $\sigma^2 \tau^{-2\alpha}$) is included, as the covariance operator prescribes (the FNO
      MATLAB generator instead set it to zero; subtracting the trapezoid-rule mean of the
      sample removes exactly this mode).

    When $\tau = 0$ the constant mode of `"periodic"` / `"neumann"` has infinite variance under
    the formula and is left out (zero mean).

    **Arguments:**

    - `key`: a `jax.random` key.
    - `shape`: grid points per axis (any number of axes, each >= 2; >= 3 for `"dirichlet"`).
    - `alpha`: smoothness exponent, > 0.
    - `tau`: inverse length scale, >= 0.
    - `sigma`: amplitude; `None` means `tau ** (alpha - d / 2)` (the convention of the FNO
      data-generation code, e.g. `sigma = 3` for `alpha = 2, tau = 3, d = 2`).
    - `boundary`: `"periodic"`, `"dirichlet"` or `"neumann"`.
    - `dtype`: floating dtype of the result; defaults to JAX's default float.

    **Returns:**

    A real array of shape `shape`.

    `shape`, `boundary` and `dtype` must be static under `jax.jit`; `alpha`, `tau` and `sigma`
    may be traced (they are then not validated). Batch with `jax.vmap` over keys.
    """
    shape, alpha, tau, sigma, dtype = _check_args(shape, alpha, tau, sigma, boundary, dtype)
    return _grf(key, alpha, tau, sigma, shape=shape, boundary=boundary, dtype=np.dtype(dtype))


# Compiled once per shape/boundary/dtype, so that eager calls do not dispatch op by op.
@functools.partial(jax.jit, static_argnames=("shape", "boundary", "dtype"))
def _grf(key, alpha, tau, sigma, *, shape, boundary, dtype):
    lam = _eigenvalues(shape, alpha, tau, sigma, boundary, dtype)
    d = len(shape)
    if boundary == "periodic":
        axes = tuple(range(d))
        w = jax.random.normal(key, shape, dtype)
        # Keep the half spectrum of the rfft axis: lambda is even in k, so the filtered
        # spectrum stays Hermitian and irfftn returns the exact real field.
        half = lam[..., : shape[-1] // 2 + 1]
        w_hat = jnp.fft.rfftn(w, axes=axes)
        u = jnp.fft.irfftn(jnp.sqrt(half) * w_hat, s=shape, axes=axes)
        return (u * math.sqrt(math.prod(shape))).astype(dtype)
    xi = jax.random.normal(key, lam.shape, dtype)
    coeffs = jnp.sqrt(lam) * xi
    if boundary == "dirichlet":
        coeffs = coeffs * math.sqrt(2.0) ** d
        for axis in range(d):
            coeffs = dst1(coeffs, axis)
        return jnp.pad(coeffs, 1)
    norms = [np.where(np.arange(n) == 0, 1.0, math.sqrt(2.0)) for n in shape]
    for axis, c in enumerate(norms):
        coeffs = coeffs * jnp.asarray(c, dtype).reshape((-1,) + (1,) * (d - 1 - axis))
    for axis in range(d):
        coeffs = dct1(coeffs, axis)
    return coeffs
