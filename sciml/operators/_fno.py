from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._validate import check_floating_dtype
from ._base import AbstractOperator
from ._spectral import SpectralConv, check_channels, check_grid, check_modes


class _Pointwise(eqx.Module):
    """A linear map over the (last) channel axis, applied at every grid point (a 1x1
    convolution)."""

    weight: Float[Array, "out_channels in_channels"]
    bias: Float[Array, " out_channels"]

    def __init__(self, in_channels: int, out_channels: int, *, key: PRNGKeyArray, dtype):
        # PyTorch's (and Equinox's) default for Linear / Conv1d with kernel size 1.
        lim = 1.0 / in_channels**0.5
        wkey, bkey = jr.split(key)
        self.weight = jr.uniform(wkey, (out_channels, in_channels), dtype, -lim, lim)
        self.bias = jr.uniform(bkey, (out_channels,), dtype, -lim, lim)

    def __call__(self, x: Float[Array, "*spatial in_channels"]) -> Float[Array, "*spatial out"]:
        # Channels last, so that this is one matrix product over all grid points (and, under
        # `vmap`, over all samples too), the layout XLA's CPU GEMM handles best.
        return x @ self.weight.T + self.bias


def _check_padding(padding, num_spatial_dims: int) -> tuple[int | float, ...]:
    def ok(p):
        if isinstance(p, bool):
            return False
        if isinstance(p, int):
            return p >= 0
        if isinstance(p, float):
            return 0.0 <= p <= 1.0
        return False

    if isinstance(padding, Sequence) and not isinstance(padding, str):
        pads = tuple(padding)
        valid = len(pads) == num_spatial_dims and all(ok(p) for p in pads)
    else:
        pads = (padding,) * num_spatial_dims
        valid = ok(padding)
    if not valid:
        raise ValueError(
            f"`FNO` got `padding={padding!r}`, but `padding` must be a non-negative int (grid "
            "points), a float in [0, 1] (fraction of the input size), or a tuple of those with "
            f"one entry per spatial dimension ({num_spatial_dims})."
        )
    return pads


def _grid_features(spatial: tuple[int, ...], dtype) -> Array:
    """Coordinates `linspace(0, 1, n_i)` along every spatial axis, shape `(*spatial, d)`."""
    axes = [jnp.linspace(0.0, 1.0, n, dtype=dtype) for n in spatial]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)


class FNO(AbstractOperator):
    """Fourier neural operator (Li et al. 2021) in any number of spatial dimensions.

    The architecture is that of the paper and its reference code:

    1. optionally append the grid coordinates (one channel per spatial axis, values in
        `[0, 1]`, computed from the input size so that any resolution works);
    2. lift pointwise to `width` channels (a linear map, or a two-layer MLP if
        `lifting_channels` is given);
    3. optionally zero-pad the end of each spatial axis by `padding` points (for
        non-periodic problems);
    4. `depth` Fourier layers `x <- act(SpectralConv(x) + W x + b)`, without the activation
        after the last one;
    5. crop the padding, then project pointwise `width -> projection_channels ->
        out_channels` with the activation in between (or directly to `out_channels` if
        `projection_channels=None`).

    Without grid features and padding the model commutes with periodic translations of the
    grid. It accepts any resolution on which the kept modes exist (see
    [`sciml.operators.SpectralConv`][]); `modes` sets the number of spatial dimensions.

    ??? cite "Reference"

        Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar, "Fourier Neural
        Operator for Parametric Partial Differential Equations", ICLR 2021.
    """

    lifting: tuple[_Pointwise, ...]
    spectral: tuple[SpectralConv, ...]
    pointwise: tuple[_Pointwise, ...]
    projection: tuple[_Pointwise, ...]
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    # Static: a model's leaves are its arrays only, so it can go to `jax.jit`/`jax.grad` as is.
    activation: Callable[[Array], Array] = eqx.field(static=True)
    grid_features: bool = eqx.field(static=True)
    padding: tuple[int | float, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        modes: Sequence[int],
        width: int = 32,
        depth: int = 4,
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        grid_features: bool = True,
        padding: int | float | Sequence[int | float] = 0,
        lifting_channels: int | None = None,
        projection_channels: int | None = 128,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: number of input channels (not counting the grid features).
        - `out_channels`: number of output channels.
        - `modes`: tuple with one positive int per spatial dimension: the number of kept
            Fourier modes per axis (`2 m` frequencies along full axes, `m` along the last).
        - `width`: number of channels of the Fourier layers.
        - `depth`: number of Fourier layers.
        - `key`: a `jax.random` key for the initialisation.
        - `activation`: elementwise nonlinearity. Default `jax.nn.gelu` (its tanh
            approximation); the paper's code uses the exact GELU,
            `functools.partial(jax.nn.gelu, approximate=False)`.
        - `grid_features`: whether to append the grid coordinates to the input channels,
            `linspace(0, 1, n_i)` along axis `i` as in the paper's code.
        - `padding`: zero padding at the end of each spatial axis before the Fourier layers,
            removed afterwards: an int (points), a float in `[0, 1]` (fraction of the input
            size, rounded), or a tuple with one of those per axis. The paper pads Darcy at
            `s = 85` by 9 points. For a model used at several resolutions give a fraction:
            a fixed number of points changes the physical size of the padded domain with the
            grid, and with it the wavenumber of every kept mode (measured on Darcy, trained at
            s = 64 with 8 points: relative L2 0.090 at s = 127, against 0.011 with the
            padding scaled to 16 points).
        - `lifting_channels`: if given, lift with a two-layer MLP `in -> lifting_channels ->
            width`; if None (default, as in the paper) with one linear map.
        - `projection_channels`: hidden size of the two-layer projection MLP (128 in the
            paper); None for one linear map `width -> out_channels`.
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.
        """
        self.in_channels = check_channels("FNO", "in_channels", in_channels)
        self.out_channels = check_channels("FNO", "out_channels", out_channels)
        self.modes = check_modes("FNO", modes)
        self.num_spatial_dims = len(self.modes)
        self.width = check_channels("FNO", "width", width)
        self.depth = check_channels("FNO", "depth", depth)
        if not callable(activation):
            raise ValueError(f"`FNO` got `activation={activation!r}`, but it must be callable.")
        self.activation = activation
        if not isinstance(grid_features, bool):
            raise ValueError(
                f"`FNO` got `grid_features={grid_features!r}`, but it must be True or False."
            )
        self.grid_features = grid_features
        self.padding = _check_padding(padding, self.num_spatial_dims)
        if lifting_channels is not None:
            check_channels("FNO", "lifting_channels", lifting_channels)
        if projection_channels is not None:
            check_channels("FNO", "projection_channels", projection_channels)
        dtype = check_floating_dtype("FNO", dtype)

        lkey, skey, wkey, pkey = jr.split(key, 4)
        lifted_in = in_channels + (self.num_spatial_dims if grid_features else 0)
        sizes = [lifted_in] + ([lifting_channels] if lifting_channels else []) + [width]
        self.lifting = _mlp(sizes, key=lkey, dtype=dtype)
        self.spectral = tuple(
            SpectralConv(width, width, self.modes, key=k, dtype=dtype)
            for k in jr.split(skey, depth)
        )
        self.pointwise = tuple(
            _Pointwise(width, width, key=k, dtype=dtype) for k in jr.split(wkey, depth)
        )
        sizes = [width] + ([projection_channels] if projection_channels else []) + [out_channels]
        self.projection = _mlp(sizes, key=pkey, dtype=dtype)

    def _pad_widths(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            p if isinstance(p, int) else int(round(p * n))
            for p, n in zip(self.padding, spatial, strict=True)
        )

    def __call__(
        self, x: Float[Array, " in_channels *spatial"]
    ) -> Float[Array, " out_channels *spatial"]:
        """**Arguments:**

        - `x`: input of shape `(in_channels, n_1, ..., n_d)`, at any resolution on which the
            kept modes exist (after padding).

        **Returns:**

        An array of shape `(out_channels, n_1, ..., n_d)`.
        """
        d = self.num_spatial_dims
        if x.ndim != d + 1:
            raise ValueError(
                f"`FNO` with `modes={self.modes}` expects an input of shape (in_channels, *spatial)"
                f" with {d} spatial dims, but got shape {x.shape}."
            )
        if x.shape[0] != self.in_channels:
            raise ValueError(
                f"`FNO` expects {self.in_channels} input channels (`in_channels`), but got "
                f"{x.shape[0]} in an input of shape {x.shape}."
            )
        spatial = tuple(x.shape[1:])
        pads = self._pad_widths(spatial)
        padded = tuple(n + p for n, p in zip(spatial, pads, strict=True))
        check_grid("FNO", self.modes, spatial, padded)

        # Everything below works channels-last, `(*spatial, channels)`: every pointwise layer
        # is then one matrix product over all grid points (see `_Pointwise`).
        x = jnp.moveaxis(x, 0, -1)
        if self.grid_features:
            x = jnp.concatenate([x, _grid_features(spatial, x.dtype)], axis=-1)
        x = _apply_mlp(self.lifting, x, self.activation)
        if any(pads):
            x = jnp.pad(x, [(0, p) for p in pads] + [(0, 0)])
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            x = spectral._channels_last(x) + pointwise(x)
            if i < self.depth - 1:
                x = self.activation(x)
        if any(pads):
            x = x[tuple(slice(0, n) for n in spatial)]
        x = _apply_mlp(self.projection, x, self.activation)
        return jnp.moveaxis(x, -1, 0)


def _mlp(sizes: list[int], *, key: PRNGKeyArray, dtype) -> tuple[_Pointwise, ...]:
    keys = jr.split(key, len(sizes) - 1)
    return tuple(
        _Pointwise(n_in, n_out, key=k, dtype=dtype)
        for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
    )


def _apply_mlp(layers: tuple[_Pointwise, ...], x: Array, activation) -> Array:
    for layer in layers[:-1]:
        x = activation(layer(x))
    return layers[-1](x)
