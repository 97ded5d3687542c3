"""MgNO, the multigrid neural operator: every layer is one learned multichannel V-cycle."""

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validate import check_floating_dtype
from ._base import AbstractOperator
from ._spectral import check_channels

# How each boundary condition extends a grid function by one point on every side.
_PAD_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect"}


# All convolutions work channels last, `(*spatial, channels)`, with kernels stored as
# `(out, in, *kernel)`. On CPU, XLA's forward convolution of NHWC-style inputs is about 2.5x
# faster than of NCHW-style ones (its backward pass slightly); the kernel layout costs
# nothing, XLA folds its transpose.
def _dimension_numbers(num_spatial_dims: int) -> lax.ConvDimensionNumbers:
    spatial = tuple(range(1, num_spatial_dims + 1))
    lhs = (0, num_spatial_dims + 1) + spatial
    rhs = (0, 1) + tuple(range(2, num_spatial_dims + 2))
    return lax.ConvDimensionNumbers(lhs_spec=lhs, rhs_spec=rhs, out_spec=lhs)


def _pad(x: Array, padding: str) -> Array:
    """Extends `x` of shape `(*spatial, channels)` by one point on each side of every spatial
    axis, by the boundary condition `padding`."""
    widths = [(1, 1)] * (x.ndim - 1) + [(0, 0)]
    return jnp.pad(x, widths, mode=_PAD_MODES[padding])


def conv(
    x: Float[Array, "*spatial in"], weight: Float[Array, "out in *kernel"], padding: str
) -> Float[Array, "*spatial out"]:
    """A 3 x ... x 3 convolution that keeps the grid: `y[j] = sum_k weight[k] x[j + k - 1]`
    (a cross-correlation, as in PyTorch), with `x` extended by `padding` outside the grid."""
    d = x.ndim - 1
    y = lax.conv_general_dilated(
        _pad(x, padding)[None],
        weight,
        window_strides=(1,) * d,
        padding="VALID",
        dimension_numbers=_dimension_numbers(d),
    )
    return y[0]


def restrict(
    x: Float[Array, "*spatial in"], weight: Float[Array, "out in *kernel"], padding: str
) -> Float[Array, "*coarse out"]:
    """A 3 x ... x 3 convolution with stride 2: `y[c] = sum_k weight[k] x[2 c + k - 1]`, so
    that coarse point `c` sits on fine point `2 c`; `x` is extended by `padding`."""
    d = x.ndim - 1
    y = lax.conv_general_dilated(
        _pad(x, padding)[None],
        weight,
        window_strides=(2,) * d,
        padding="VALID",
        dimension_numbers=_dimension_numbers(d),
    )
    return y[0]


def _phase_selection() -> np.ndarray:
    # `select[b, s, k] = 1` where fine points of parity `b` read coarse window position `s`
    # (coarse point `m + s - 1` for fine point `2 m + b`) through tap `k` (see `prolong`).
    select = np.zeros((2, 3, 4))
    for b in range(2):
        for s in (b, b + 1):
            select[b, s, 2 * (1 - s) + b + 1] = 1.0
    return select


_PHASE_SELECTION = _phase_selection()


def prolong(
    x: Float[Array, "*coarse in"], weight: Float[Array, "out in *kernel"], padding: str
) -> Float[Array, "*fine out"]:
    """A 4 x ... x 4 transposed convolution with stride 2, doubling every spatial size:
    coarse point `c` adds `weight[k] x[c]` to fine point `2 c + k - 1`, `k = 0..3`.

    This is PyTorch's `ConvTranspose(kernel_size=4, stride=2, padding=1)`, except that the
    coarse input is first extended by one point on each side by `padding` (the coarse points
    `-1` and `n` reach the fine points `0` and `2 n - 1`), and the operator is then applied
    without padding: with `padding="circular"` it is exactly periodic and commutes with
    circular shifts. With `padding="zeros"` it is PyTorch's operator exactly. The taps
    `(1/2, 1, 1/2, 0)` give linear interpolation, the adjoint of full weighting
    `(1/4, 1/2, 1/4)` by `restrict` up to a factor 2 per dimension.
    """
    d = x.ndim - 1
    coarse = x.shape[:-1]
    c_out, c_in = weight.shape[:2]
    # Evaluated phase by phase ("sub-pixel convolution"), which on CPU is several times
    # faster than the equivalent convolution of the 2x-dilated input, above all in the
    # backward pass. Along each axis, fine point `2 m + b` gets tap `k` from coarse point
    # `c = m + s - 1` with `2 c + k - 1 = 2 m + b`, i.e. `k = 2 (1 - s) + b + 1`, for the
    # window positions `s = b, b + 1` of a 3-point window centred on `m`: so one
    # 3 x ... x 3 convolution of the padded coarse input with `2^d c_out` output channels
    # (one block per parity pattern `b`, built from `weight` by `_PHASE_SELECTION`), followed
    # by interleaving the blocks, is the transposed convolution.
    kernel = weight
    select = jnp.asarray(_PHASE_SELECTION, weight.dtype)
    for _ in range(d):
        # Replaces the leading tap axis `k` by the trailing pair `(b, s)`.
        kernel = jnp.tensordot(kernel, select, axes=([2], [2]))
    # (out, in, b_1, s_1, ..., b_d, s_d) -> (b_1, ..., b_d, out, in, s_1, ..., s_d).
    perm = [2 + 2 * a for a in range(d)] + [0, 1] + [3 + 2 * a for a in range(d)]
    kernel = jnp.transpose(kernel, perm).reshape(2**d * c_out, c_in, *(3,) * d)
    y = lax.conv_general_dilated(
        _pad(x, padding)[None],
        kernel,
        window_strides=(1,) * d,
        padding="VALID",
        dimension_numbers=_dimension_numbers(d),
    )[0]
    # (m_1, ..., m_d, b_1, ..., b_d, out) -> (m_1, b_1, ..., m_d, b_d, out) -> (2 m + b, out).
    y = y.reshape(*coarse, *(2,) * d, c_out)
    perm = [i for a in range(d) for i in (a, d + a)] + [2 * d]
    return jnp.transpose(y, perm).reshape(*(2 * n for n in coarse), c_out)


class _Init(NamedTuple):
    """Placeholder for a parameter of shape `shape`, drawn uniform in `±1/sqrt(fan_in)`."""

    shape: tuple[int, ...]
    fan_in: int


def _is_init(x) -> bool:
    return isinstance(x, _Init)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key: PRNGKeyArray, inits: tuple[_Init, ...], dtype) -> tuple[Array, ...]:
    # One draw for all parameters, under `jit`: a model has dozens of small arrays of many
    # shapes, and drawing them one by one outside `jit` compiles one program per shape.
    sizes = [math.prod(init.shape) for init in inits]
    flat = jr.uniform(key, (sum(sizes),), dtype, -1.0, 1.0)
    params, start = [], 0
    for init, size in zip(inits, sizes, strict=True):
        params.append(flat[start : start + size].reshape(init.shape) / math.sqrt(init.fan_in))
        start += size
    return tuple(params)


def _initialise(template, key: PRNGKeyArray, dtype):
    """Replaces every `_Init` in the pytree `template` by a parameter array.

    PyTorch's default initialisation of convolutions and their biases:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    inits, treedef = jax.tree.flatten(template, is_leaf=_is_init)
    return jax.tree.unflatten(treedef, _draw(key, tuple(inits), dtype))


def _vcycle_template(
    in_channels: int,
    out_channels: int,
    channels: tuple[int, ...],
    pre_steps: tuple[int, ...],
    post_steps: tuple[int, ...],
    num_spatial_dims: int,
) -> dict:
    """The parameters of a `_VCycle` from `in_channels` to `out_channels`, as `_Init`s."""
    levels = len(channels)
    # Channels of the solution `u` and of the right-hand side `f` on every level: the
    # cycle maps `f_0` (in_channels) to `u_0` (out_channels); coarse levels use `channels`.
    u_ch = (out_channels,) + channels[1:]
    f_ch = (in_channels,) + channels[1:]
    k3 = (3,) * num_spatial_dims
    k4 = (4,) * num_spatial_dims
    n3 = 3**num_spatial_dims
    # Every fine point of the transposed convolution receives 2^d of its 4^d taps.
    n4 = 2**num_spatial_dims
    operators, pre, post = [], [], []
    for level in range(levels):
        fc, uc = f_ch[level], u_ch[level]
        # On the coarsest grid `A` only enters from the second smoothing step on.
        uses_a = level < levels - 1 or pre_steps[level] + post_steps[level] >= 2
        operators.append(_Init((fc, uc, *k3), uc * n3) if uses_a else None)
        pre.append(tuple(_Init((uc, fc, *k3), fc * n3) for _ in range(pre_steps[level])))
        post.append(tuple(_Init((uc, fc, *k3), fc * n3) for _ in range(post_steps[level])))
    return dict(
        operators=tuple(operators),
        pre_smoothers=tuple(pre),
        post_smoothers=tuple(post),
        restrictions=tuple(
            _Init((f_ch[level + 1], f_ch[level], *k3), f_ch[level] * n3)
            for level in range(levels - 1)
        ),
        prolongations=tuple(
            _Init((u_ch[level], u_ch[level + 1], *k4), u_ch[level + 1] * n4)
            for level in range(levels - 1)
        ),
    )


class _VCycle(eqx.Module):
    """One multichannel multigrid V-cycle (MgConv), acting channels last.

    With `f` the input on level 0 and `u = 0`, on each level `l`:

    1. `len(pre_smoothers[l])` smoothing steps `u <- u + S (f - A_l u)`, each with its own
        `S`, all with the level's `A_l = operators[l]`;
    2. on all but the coarsest level, restrict the residual, `f_{l+1} = R_l (f - A_l u)`,
        run the cycle on level `l + 1` from zero, and add the prolongated correction
        `u <- u + P_l u_{l+1}`;
    3. `len(post_smoothers[l])` smoothing steps.

    `operators[l]` is `None` on a level where it is never applied to a nonzero `u`. Kernels
    are stored `(out, in, *kernel)`; see `conv`, `restrict` and `prolong`.
    """

    operators: tuple[Array | None, ...]
    pre_smoothers: tuple[tuple[Array, ...], ...]
    post_smoothers: tuple[tuple[Array, ...], ...]
    restrictions: tuple[Array, ...]
    prolongations: tuple[Array, ...]
    padding: str = eqx.field(static=True)

    def _smooth(self, u, f, operator, smoother):
        if u is None:
            return conv(f, smoother, self.padding)
        return u + conv(f - conv(u, operator, self.padding), smoother, self.padding)

    def __call__(self, f: Float[Array, "*spatial in"]) -> Float[Array, "*spatial out"]:
        levels = len(self.operators)
        us, fs = [], []
        for level in range(levels):
            u = None
            for smoother in self.pre_smoothers[level]:
                u = self._smooth(u, f, self.operators[level], smoother)
            if level < levels - 1:
                us.append(u)
                fs.append(f)
                residual = f if u is None else f - conv(u, self.operators[level], self.padding)
                f = restrict(residual, self.restrictions[level], self.padding)
        for smoother in self.post_smoothers[-1]:
            u = self._smooth(u, f, self.operators[-1], smoother)
        for level in reversed(range(levels - 1)):
            correction = prolong(u, self.prolongations[level], self.padding)
            u = correction if us[level] is None else us[level] + correction
            for smoother in self.post_smoothers[level]:
                u = self._smooth(u, fs[level], self.operators[level], smoother)
        return u


def _per_level(name: str, value, levels: int, minimum: int) -> tuple[int, ...]:
    def ok(v):
        return not isinstance(v, bool) and isinstance(v, int) and v >= minimum

    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        valid = len(values) == levels and all(ok(v) for v in values)
    else:
        values = (value,) * levels
        valid = ok(value)
    if not valid:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(
            f"`MgNO` got `{name}={value!r}`, but it must be a {kind} int or a tuple of "
            f"{levels} {kind} ints, one per level (`levels={levels}`)."
        )
    return values


class MgNO(AbstractOperator):
    """Multigrid neural operator (He, Liu, Xu 2024) in one, two or three spatial dimensions.

    A stack of `depth` layers `u <- act(MgConv(u) + W u + b)`, without the activation after
    the last one and without lifting or projection: the first layer maps `in_channels` to
    `channels[0]` channels, the last maps them to `out_channels`. `W` is a pointwise linear map
    and `MgConv` is one multichannel multigrid V-cycle with learned convolutions: on each of
    the `levels` grids (every one half the size of the one before) `smoothing_steps`
    smoothing steps `u <- u + S (f - A u)` starting from `u = 0` (`A`, `S` learned 3 x ... x 3
    convolutions, one `A` per level and one `S` per step), the residual `f - A u` restricted to
    the next grid by a learned stride-2 3 x ... x 3 convolution, the cycle run there, its
    result prolongated by a learned stride-2 4 x ... x 4 transposed convolution and added,
    then `post_smoothing_steps` more smoothing steps. There is no bias inside `MgConv`.

    Boundary conditions enter through `padding`: every convolution extends its input by one
    point on each side with zeros (`"zeros"`, homogeneous Dirichlet), periodically
    (`"circular"`) or by reflection about the edge point (`"reflect"`), and then convolves
    without padding. With `"circular"` the model commutes exactly with circular shifts of
    the grid by multiples of `2^(levels - 1)`.

    Every spatial size must be a positive multiple of `2^(levels - 1)`; the model accepts any
    such resolution (the convolutions act on grid neighbours, so a model trained at one
    resolution is a different discretisation at another).

    Internally the model runs channels last, the layout XLA's CPU convolutions handle best.

    ??? cite "Reference"

        He, Liu, Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid",
        ICLR 2024.
    """

    vcycles: tuple[_VCycle, ...]
    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)
    channels: tuple[int, ...] = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    smoothing_steps: tuple[int, ...] = eqx.field(static=True)
    post_smoothing_steps: tuple[int, ...] = eqx.field(static=True)
    # Static: a model's leaves are its arrays only, so it can go to `jax.jit`/`jax.grad` as is.
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        channels: int | Sequence[int],
        levels: int,
        depth: int,
        padding: str = "zeros",
        key: PRNGKeyArray,
        num_spatial_dims: int = 2,
        smoothing_steps: int | Sequence[int] = 1,
        post_smoothing_steps: int | Sequence[int] = 0,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        dtype=None,
    ):
        """**Arguments:**

        - `in_channels`: number of input channels.
        - `out_channels`: number of output channels.
        - `channels`: number of channels of every layer's V-cycle on each grid: an int for
            all grids, or a tuple with one entry per level, finest first. `channels[0]` is
            also the number of channels passed between layers (so with `depth=1`, where the
            finest grid carries `in_channels` and `out_channels`, it is not used).
        - `levels`: number of grids (`levels - 1` coarsenings), at least 1; every spatial size
            must be a multiple of `2^(levels - 1)`.
        - `depth`: number of layers, at least 1.
        - `padding`: boundary condition of every convolution, `"zeros"`, `"circular"` or
            `"reflect"` (see above).
        - `key`: a `jax.random` key for the initialisation.
        - `num_spatial_dims`: 1, 2 (default) or 3.
        - `smoothing_steps`: pre-smoothing steps on each grid, an int or a tuple with one entry
            per level (default 1, as in the paper).
        - `post_smoothing_steps`: post-smoothing steps on each grid, same form (default 0).
            Every grid needs at least one step in all; on the coarsest grid the two are the
            same thing.
        - `activation`: elementwise nonlinearity between layers. Default `jax.nn.gelu` (its
            tanh approximation).
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.

        All convolutions are initialised like PyTorch's, uniform in `±1/sqrt(fan_in)`, where
        the fan-in of the transposed convolutions counts the `2^d` taps that reach each fine
        point.
        """
        self.in_channels = check_channels("MgNO", "in_channels", in_channels)
        self.out_channels = check_channels("MgNO", "out_channels", out_channels)
        self.levels = check_channels("MgNO", "levels", levels)
        self.depth = check_channels("MgNO", "depth", depth)
        if num_spatial_dims not in (1, 2, 3) or isinstance(num_spatial_dims, bool):
            raise ValueError(
                f"`MgNO` got `num_spatial_dims={num_spatial_dims!r}`, but it must be 1, 2 or 3."
            )
        self.num_spatial_dims = num_spatial_dims
        if not isinstance(padding, str) or padding not in _PAD_MODES:
            raise ValueError(
                f"`MgNO` got `padding={padding!r}`, but it must be one of "
                f"{', '.join(repr(p) for p in _PAD_MODES)}."
            )
        self.padding = padding
        self.channels = _per_level("channels", channels, levels, 1)
        self.smoothing_steps = _per_level("smoothing_steps", smoothing_steps, levels, 0)
        self.post_smoothing_steps = _per_level(
            "post_smoothing_steps", post_smoothing_steps, levels, 0
        )
        empty = [
            level
            for level in range(levels)
            if self.smoothing_steps[level] + self.post_smoothing_steps[level] == 0
        ]
        if empty:
            raise ValueError(
                f"`MgNO` got `smoothing_steps={smoothing_steps!r}` and `post_smoothing_steps="
                f"{post_smoothing_steps!r}`, which leave level(s) {empty} without smoothing; "
                "every level needs at least one step in all."
            )
        if not callable(activation):
            raise ValueError(f"`MgNO` got `activation={activation!r}`, but it must be callable.")
        self.activation = activation
        dtype = check_floating_dtype("MgNO", dtype)

        hidden = self.channels[0]
        layers = []
        for i in range(depth):
            c_in = in_channels if i == 0 else hidden
            c_out = out_channels if i == depth - 1 else hidden
            vcycle = _vcycle_template(
                c_in,
                c_out,
                self.channels,
                self.smoothing_steps,
                self.post_smoothing_steps,
                num_spatial_dims,
            )
            layers.append((vcycle, _Init((c_out, c_in), c_in), _Init((c_out,), c_in)))
        layers = _initialise(layers, key, dtype)
        self.vcycles = tuple(_VCycle(**vcycle, padding=padding) for vcycle, _, _ in layers)
        self.weights = tuple(weight for _, weight, _ in layers)
        self.biases = tuple(bias for _, _, bias in layers)

    def _check_input(self, x: Array) -> None:
        d = self.num_spatial_dims
        if x.ndim != d + 1:
            raise ValueError(
                f"`MgNO` with `num_spatial_dims={d}` expects an input of shape "
                f"(in_channels, *spatial) with {d} spatial dims, but got shape {x.shape}."
            )
        if x.shape[0] != self.in_channels:
            raise ValueError(
                f"`MgNO` expects {self.in_channels} input channels (`in_channels`), but got "
                f"{x.shape[0]} in an input of shape {x.shape}."
            )
        spatial = tuple(x.shape[1:])
        factor = 2 ** (self.levels - 1)
        bad = [n for n in spatial if n < 1 or n % factor]
        if bad:
            below = bad[0] // factor * factor
            nearest = [k for k in (below, below + factor) if k > 0]
            raise ValueError(
                f"`MgNO` with levels={self.levels} needs every spatial size to be a positive "
                f"multiple of {factor} (2^(levels-1)), but got spatial shape {spatial}; the "
                f"allowed sizes nearest to {bad[0]} are {' and '.join(map(str, nearest))}."
            )

    def __call__(
        self, x: Float[Array, " in_channels *spatial"]
    ) -> Float[Array, " out_channels *spatial"]:
        """**Arguments:**

        - `x`: input of shape `(in_channels, n_1, ..., n_d)`, every `n_i` a positive multiple
            of `2^(levels - 1)`.

        **Returns:**

        An array of shape `(out_channels, n_1, ..., n_d)`.
        """
        self._check_input(x)
        x = jnp.moveaxis(x, 0, -1)
        layers = zip(self.vcycles, self.weights, self.biases, strict=True)
        for i, (vcycle, weight, bias) in enumerate(layers):
            # Channels last, the pointwise map is one matrix product over all grid points
            # (and, under `vmap`, all samples).
            x = vcycle(x) + x @ weight.T + bias
            if i < self.depth - 1:
                x = self.activation(x)
        return jnp.moveaxis(x, -1, 0)
