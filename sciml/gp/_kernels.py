"""Stationary kernels of one coordinate for product kernels on grids, with derivatives of any
order for linear differential operators."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..derivatives import taylor_derivative


class SpectralMixture(eqx.Module):
    r"""The spectral-mixture kernel of one coordinate (Wilson & Adams 2013), GP-HM's kernel
    per dimension (Fang et al., ICLR 2024):

    $$k(\tau) = \sum_q w_q \exp(-2\pi^2 s_q^2 \tau^2) \cos(2\pi \mu_q \tau),$$

    the covariance whose power spectrum is the Gaussian mixture
    $\sum_q \frac{w_q}{2} [N(\xi; \mu_q, s_q^2) + N(\xi; -\mu_q, s_q^2)]$: components at the
    solution's frequencies $\mu_q$ let a GP represent `x sin(200 x)` where a PINN's spectral
    bias fails. Weights and scales are held in the log domain (positive, and the domain in
    which GP-HM puts its Jeffreys prior on the weights).

    **Arguments:**

    - `means`: the frequencies $\mu_q \ge 0$ (cycles per unit length), `(q,)`.
    - `scales`: the spectral widths $s_q > 0$, `(q,)` (a component's length scale is
        $1 / (2 \pi s_q)$).
    - `weights`: $w_q > 0$, `(q,)` (default: all 1 / q).
    """

    log_weights: Float[Array, " q"]
    means: Float[Array, " q"]
    log_scales: Float[Array, " q"]

    def __init__(
        self,
        means: Float[ArrayLike, " q"],
        scales: Float[ArrayLike, " q"],
        weights: Float[ArrayLike, " q"] | None = None,
    ):
        means, scales = jnp.asarray(means), jnp.asarray(scales)
        if means.ndim != 1 or scales.shape != means.shape or means.size == 0:
            raise ValueError(
                "`SpectralMixture`: `means` and `scales` must be vectors of one length, got "
                f"shapes {means.shape} and {scales.shape}."
            )
        weights = jnp.full(means.shape, 1 / means.size) if weights is None else weights
        weights = jnp.asarray(weights, scales.dtype)
        if weights.shape != means.shape:
            raise ValueError(
                f"`SpectralMixture`: `weights` must have shape {means.shape}, got {weights.shape}."
            )
        self.log_weights = jnp.log(weights)
        self.means = means
        self.log_scales = jnp.log(scales)

    def __call__(self, tau: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """The covariance at lag `tau = x - x'`."""
        tau = jnp.asarray(tau)
        scales = jnp.exp(self.log_scales)
        terms = jnp.exp(-2 * jnp.pi**2 * scales**2 * tau**2) * jnp.cos(
            2 * jnp.pi * self.means * tau
        )
        return jnp.sum(jnp.exp(self.log_weights) * terms)

    def derivative(self, tau: Float[ArrayLike, ""], order: int) -> Float[Array, ""]:
        """`d^order k / d tau^order` at `tau`, in one Taylor-mode pass (`order = 0`: `k`)."""
        if order < 0:
            raise ValueError(f"`SpectralMixture.derivative`: `order` must be >= 0, got {order}.")
        tau = jnp.asarray(tau)
        if order == 0:
            return self(tau)
        line = lambda t: self(t[0])
        return taylor_derivative(line, tau[None], [jnp.ones((1,), tau.dtype)], order)

    def gram(
        self,
        x: Float[ArrayLike, " n"],
        y: Float[ArrayLike, " m"],
        *,
        dx: int = 0,
        dy: int = 0,
    ) -> Float[Array, "n m"]:
        r"""The matrix $[\partial_x^{dx} \partial_{x'}^{dy} k(x - x')]_{ij}$ at $x = x_i$,
        $x' = y_j$: since $k$ depends on $x - x'$ only, it is
        $(-1)^{dy} k^{(dx + dy)}(x_i - y_j)$. Derivative orders on both sides give the blocks
        a linear differential operator needs (e.g. `dx = dy = 2` for a 1-D Laplacian on both
        arguments).
        """
        x, y = jnp.asarray(x), jnp.asarray(y)
        lags = x[:, None] - y[None, :]
        values = jax.vmap(jax.vmap(lambda t: self.derivative(t, dx + dy)))(lags)
        return (-1) ** dy * values

    def series(self, tau: ArrayLike, order: int) -> Array:
        r"""`[k(tau), k'(tau), ..., k^(order)(tau)]` elementwise, in closed form: each
        component is $\mathrm{Re}\, w e^{g(\tau)}$ with $g(\tau) = -a \tau^2 + i b \tau$, so
        its $j$-th derivative is $\mathrm{Re}\, w e^{g} P_j(g')$ with $P_0 = 1$ and
        $P_{j+1}(y) = y P_j(y) + g'' P_j'(y)$ ($g'' = -2a$ is constant): a few complex
        products instead of a Taylor-mode pass. Shape `(order + 1, *tau.shape)`."""
        tau = jnp.asarray(tau)[..., None]
        a = 2 * jnp.pi**2 * jnp.exp(2 * self.log_scales)
        b = 2 * jnp.pi * self.means
        slope = -2 * a * tau + 1j * b
        wave = jnp.exp(self.log_weights - a * tau**2 + 1j * b * tau)
        coefficients = [jnp.ones_like(a)]  # P_j as coefficients of powers of g'
        out = []
        for _ in range(order + 1):
            poly = sum(c * slope**k for k, c in enumerate(coefficients))
            out.append(jnp.sum(jnp.real(wave * poly), axis=-1))
            shifted = [jnp.zeros_like(a), *coefficients]
            derived = [k * c for k, c in enumerate(coefficients)][1:] + [jnp.zeros_like(a)] * 2
            coefficients = [s + -2 * a * d for s, d in zip(shifted, derived, strict=True)]
        return jnp.stack(out)

    def grams(self, x: Float[ArrayLike, " n"], y: Float[ArrayLike, " m"], order: int) -> Array:
        """`[gram(x, y, dx=j) for j in 0..order]` stacked, from `series`."""
        x, y = jnp.asarray(x), jnp.asarray(y)
        return self.series(x[:, None] - y[None, :], order)

    def toeplitz(self, n: int, step: float, order: int) -> Array:
        """`grams(x, x, order)` for `n` equispaced nodes `x_i = x_0 + i step`: the lags take
        only `2n - 1` values, so the kernel is evaluated on those and gathered (Toeplitz)."""
        lags = (jnp.arange(2 * n - 1) - (n - 1)) * step
        values = self.series(lags, order)
        index = jnp.arange(n)[:, None] - jnp.arange(n)[None, :] + (n - 1)
        return values[:, index]
