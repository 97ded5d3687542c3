r"""The DeepONet paper's antiderivative data (Lu et al., Nature Machine Intelligence 2021).

Inputs $u$ are samples of a zero-mean Gaussian process on $[0, 1]$ with the squared-exponential
(RBF) kernel $k(x, x') = \exp(-(x - x')^2 / (2 \ell^2))$, $\ell = 0.2$; outputs are
$s(y) = \int_0^y u(x)\,dx$.

Sampling: the kernel restricted to $[0, 1]$ is, to machine precision, the kernel of a
*periodic* stationary process of period $L = 1 + 10 \ell$ (Poisson summation): the periodic
images of the kernel lie at distances $\ge 10 \ell$, where it is below $e^{-50} \approx 2
\cdot 10^{-22}$. Its Fourier coefficients are known in closed form,
$c_k = \sqrt{2\pi}\,\ell / L \cdot \exp(-2\pi^2 \ell^2 k^2 / L^2)$, so

$$u(x) = \sqrt{c_0}\,\xi_0 + \sum_{k=1}^{K} \sqrt{2 c_k}\,(\xi_k \cos\omega_k x
    + \eta_k \sin\omega_k x), \qquad \omega_k = 2\pi k / L,$$

with independent standard normal $\xi_k, \eta_k$, has covariance
$\sum_{|k| \le K} c_k \cos \omega_k (x - x')$. With $K$ chosen so that
$2\pi^2\ell^2 K^2/L^2 \ge 50$ the dropped modes carry a variance below $10^{-22}$: the covariance
is that of the RBF kernel to float64 round-off (24 modes, 49 random numbers for $\ell = 0.2$).
Each sample is a continuous function, and its antiderivative is exact in closed form,
$\int_0^y \cos\omega x\,dx = \sin(\omega y)/\omega$ and
$\int_0^y \sin\omega x\,dx = 2\sin^2(\omega y/2)/\omega$ (this form avoids the cancellation in
$1 - \cos$). There is no quadrature or interpolation error: $u$ and $s$ are the values of one
function and its integral, at any set of points.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..._validate import ArgumentError, check_int
from .._checks import check_dtype

ANTIDERIVATIVE_LENGTH_SCALE = 0.2
ANTIDERIVATIVE_NUM_POINTS = 100
# Periodic images of the kernel at distances >= _MARGIN * length_scale, and dropped Fourier
# modes with exp(-2 pi^2 l^2 k^2 / L^2) <= exp(-_EXPONENT).
_MARGIN = 10.0
_EXPONENT = 50.0


def _check_length_scale(length_scale) -> float:
    if (
        isinstance(length_scale, bool)
        or not isinstance(length_scale, numbers.Real)
        or not math.isfinite(length_scale)
        or not 1e-3 <= length_scale
    ):
        raise ArgumentError(
            f"`length_scale` must be a finite number >= 1e-3 (the Gaussian process's length "
            f"scale on [0, 1]), got {length_scale!r}.",
            argument="length_scale",
        )
    return float(length_scale)


def _check_num_points(num_points) -> int:
    return check_int("num_points", num_points, 2)


def gp_spectrum(length_scale: float = ANTIDERIVATIVE_LENGTH_SCALE) -> dict[str, Any]:
    """The Fourier representation of the RBF Gaussian process on `[0, 1]` used for sampling.

    **Arguments:**

    - `length_scale`: the kernel's length scale.

    **Returns:**

    A dict with `period` $L$, `num_modes` $K$, `omega` (the $K$ angular frequencies
    $2\\pi k / L$, $k = 1..K$), `c0` and `c` (the Fourier coefficients $c_0$ and
    $c_1, \\dots, c_K$ of the kernel), NumPy float64. See the module docstring.
    """
    ell = _check_length_scale(length_scale)
    period = 1.0 + _MARGIN * ell
    num_modes = math.ceil(period * math.sqrt(_EXPONENT / 2.0) / (math.pi * ell))
    k = np.arange(1, num_modes + 1, dtype=np.float64)
    scale = math.sqrt(2 * math.pi) * ell / period
    return {
        "period": period,
        "num_modes": num_modes,
        "omega": 2 * np.pi * k / period,
        "c0": scale,
        "c": scale * np.exp(-2 * np.pi**2 * ell**2 * k**2 / period**2),
    }


def _series(
    xi0: Array, xi: Array, eta: Array, spectrum: dict[str, Any], points: Array
) -> tuple[Array, Array]:
    """`u` and its antiderivative from 0 at `points`, for the coefficients `xi0` (scalar),
    `xi`, `eta` (`(K,)`) of the Fourier representation of `spectrum`."""
    dtype = points.dtype
    omega = jnp.asarray(spectrum["omega"], dtype)
    a0 = math.sqrt(spectrum["c0"]) * xi0
    a = jnp.asarray(np.sqrt(2 * spectrum["c"]), dtype)
    phase = points[:, None] * omega
    sin, cos = jnp.sin(phase), jnp.cos(phase)
    u = a0 + (cos * (a * xi) + sin * (a * eta)).sum(-1)
    s = a0 * points + (
        sin * (a * xi / omega) + 2 * jnp.sin(phase / 2) ** 2 * (a * eta / omega)
    ).sum(-1)
    return u, s


def sample_gp_antiderivative(
    key: PRNGKeyArray,
    points: Float[ArrayLike, " k"],
    *,
    length_scale: float = ANTIDERIVATIVE_LENGTH_SCALE,
) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    r"""One Gaussian-process sample $u$ and its antiderivative $s(y) = \int_0^y u$, at any points.

    The sample is a continuous function determined by `key` (and the dtype of `points`): the
    same key gives the same function at every set of points (see the module docstring for the
    representation and its accuracy). Differentiable with respect to `points` ($ds/dy = u$ exactly).

    **Arguments:**

    - `key`: a `jax.random` key.
    - `points`: 1-D array of points, normally in `[0, 1]` (where the covariance is the RBF
        kernel's), in the floating dtype to compute in.
    - `length_scale`: the kernel's length scale $\ell$.

    **Returns:**

    `(u, s)`, each of the shape of `points`.
    """
    points = jnp.asarray(points)
    if points.ndim != 1 or not jnp.issubdtype(points.dtype, jnp.floating):
        raise ArgumentError(
            "`points` must be a 1-D floating array of points in [0, 1], got shape "
            f"{points.shape} and dtype {points.dtype}.",
            argument="points",
        )
    spectrum = gp_spectrum(length_scale)
    z = jax.random.normal(key, (2 * spectrum["num_modes"] + 1,), points.dtype)
    return _series(
        z[0], z[1 : spectrum["num_modes"] + 1], z[spectrum["num_modes"] + 1 :], spectrum, points
    )


def antiderivative_recipe_sample(
    key: PRNGKeyArray,
    num_points: int = ANTIDERIVATIVE_NUM_POINTS,
    *,
    length_scale: float = ANTIDERIVATIVE_LENGTH_SCALE,
    dtype=jnp.float32,
) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
    r"""Draws one `(u, s)` pair of the DeepONet paper's antiderivative data.

    $u$ is a Gaussian process with the RBF kernel of length scale `length_scale` (unit
    variance), $s(y) = \int_0^y u(x)\,dx$; both at the $m$ points $x_i = i / (m - 1)$, which are
    the branch net's sensors and the trunk's query points ("aligned" data: one function gives
    $m$ triplets $(u, y_i, s(y_i))$). Sampling and integration are exact up to round-off
    ([`sample_gp_antiderivative`][]).

    **Arguments:**

    - `key`: a `jax.random` key.
    - `num_points`: $m$, 100 in the paper.
    - `length_scale`: 0.2 in the paper.
    - `dtype`: floating dtype of the computation (float32: errors of a few 1e-7).

    **Returns:**

    `(u, s)`, each of shape `(num_points,)`.
    """
    num_points = _check_num_points(num_points)
    points = jnp.linspace(0.0, 1.0, num_points, dtype=check_dtype(dtype))
    return sample_gp_antiderivative(key, points, length_scale=length_scale)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _antiderivative_chunk(keys, num_points, length_scale, dtype):
    sample = functools.partial(
        antiderivative_recipe_sample,
        num_points=num_points,
        length_scale=length_scale,
        dtype=dtype,
    )
    return jax.vmap(sample)(keys)


def generate_antiderivative(
    key: PRNGKeyArray,
    n: int,
    num_points: int = ANTIDERIVATIVE_NUM_POINTS,
    *,
    chunk_size: int = 1000,
    length_scale: float = ANTIDERIVATIVE_LENGTH_SCALE,
    dtype=jnp.float32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generates `n` samples of the antiderivative recipe ([`antiderivative_recipe_sample`][]).

    Sample `i` is drawn with `jax.random.split(key, n)[i]`, so the samples do not depend on
    `chunk_size`. Each chunk is one jitted, vmapped call; the last chunk is padded to
    `chunk_size` (so nothing recompiles) and trimmed.

    The paper trains on 100 functions (10,000 triplets) and tests on 1000 (100,000 triplets).

    **Arguments:**

    - `key`: a `jax.random` key.
    - `n`: number of functions, >= 1.
    - `num_points`, `length_scale`, `dtype`: as for [`antiderivative_recipe_sample`][].
    - `chunk_size`: functions per call.

    **Returns:**

    An iterator over `(u_chunk, s_chunk)`, float32 NumPy arrays of shape `(c, 1, num_points)`
    (channels first) with `c = chunk_size` except possibly for the last chunk. Arguments are
    checked at once, the samples are computed lazily.
    """
    n = check_int("n", n)
    chunk_size = check_int("chunk_size", chunk_size)
    num_points = _check_num_points(num_points)
    length_scale = _check_length_scale(length_scale)
    dtype = check_dtype(dtype)
    keys = jax.random.split(key, n)
    chunk_size = min(int(chunk_size), n)

    def chunks():
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            index = np.minimum(np.arange(start, start + chunk_size), n - 1)
            u, s = _antiderivative_chunk(keys[index], num_points, length_scale, dtype)
            count = stop - start
            yield (
                np.asarray(u[:count, None], dtype=np.float32),
                np.asarray(s[:count, None], dtype=np.float32),
            )

    return chunks()


def antiderivative_recipe_info(
    num_points: int = ANTIDERIVATIVE_NUM_POINTS,
    *,
    length_scale: float = ANTIDERIVATIVE_LENGTH_SCALE,
    dtype=jnp.float32,
) -> dict[str, Any]:
    """A JSON-serialisable description of the antiderivative recipe, to be stored with a data set.

    **Arguments:** as for [`antiderivative_recipe_sample`][].

    **Returns:**

    A dict of plain Python values (str, int, float, dict).
    """
    num_points = _check_num_points(num_points)
    spectrum = gp_spectrum(length_scale)
    return {
        "recipe": "antiderivative",
        "reference": (
            "Lu et al., Learning nonlinear operators via DeepONet, Nature Machine Intelligence "
            "2021, Sec. 'Antiderivative'"
        ),
        "equation": "s(y) = int_0^y u(x) dx, y in [0, 1]",
        "input": {
            "field": "u ~ zero-mean Gaussian process on [0, 1]",
            "kernel": "k(x, x') = exp(-(x - x')^2 / (2 l^2))",
            "length_scale": float(length_scale),
            "variance": 1.0,
        },
        "sampling": {
            "method": (
                "Fourier series of the kernel periodised with period L (exact on [0, 1] up to "
                "exp(-50)): u = sqrt(c0) xi0 + sum_k sqrt(2 c_k) (xi_k cos w_k x + eta_k sin "
                "w_k x), c_k = sqrt(2 pi) l / L exp(-2 pi^2 l^2 k^2 / L^2), w_k = 2 pi k / L"
            ),
            "period": spectrum["period"],
            "num_modes": spectrum["num_modes"],
            "covariance_error": "< 1e-21 (absolute, relative to the unit variance)",
            "integration": "exact, term by term",
        },
        "grid": "nodes x_i = i / (m - 1), i = 0..m-1: sensors of u and query points of s",
        "num_points": num_points,
        "dtype": np.dtype(check_dtype(dtype)).name,
        "keys": "sample i uses jax.random.split(key, n)[i]",
        "stored_dtype": "float32",
    }


def antiderivative_generation_cost(chunk: int, resolution: int, options: dict) -> tuple[int, int]:
    """The floats held while `chunk` samples of the antiderivative recipe are generated: the
    phases, sines and cosines of every mode at every point (at most a few thousand modes:
    length scales are >= 1e-3). Arithmetic only, for the size budget
    (`sciml._catalogue.Recipe.coster`); there is no separate solve grid."""
    modes = gp_spectrum(options.get("length_scale") or ANTIDERIVATIVE_LENGTH_SCALE)["num_modes"]
    return resolution, 4 * chunk * resolution * (2 * modes + 1)
