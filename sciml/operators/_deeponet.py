"""Deep operator networks (DeepONet, Lu et al. 2021), their trunks, and a grid adapter."""

import abc
import itertools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validate import check_floating_dtype
from ._base import AbstractOperator
from ._spectral import check_channels

MULTI_OUTPUT = ("split_branch", "split_trunk")
GRIDS = ("nodes", "periodic")


def _check_widths(cls_name: str, name: str, widths) -> tuple[int, ...]:
    if (
        not isinstance(widths, Sequence)
        or isinstance(widths, str)
        or any(isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1 for w in widths)
    ):
        raise ValueError(
            f"`{cls_name}` got `{name}={widths!r}`, but it must be a sequence of positive ints "
            "(the hidden-layer widths, possibly empty), e.g. `(40,)`."
        )
    return tuple(int(w) for w in widths)


def _check_activation(cls_name: str, name: str, activation) -> Callable[[Array], Array]:
    if not callable(activation):
        raise ValueError(f"`{cls_name}` got `{name}={activation!r}`, but it must be callable.")
    return activation


def _check_bool(cls_name: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{cls_name}` got `{name}={value!r}`, but it must be True or False.")
    return value


class _MLP(eqx.Module):
    """A fully connected network acting on the last axis of its input (any leading axes).

    Weights are Glorot-normal (truncated), biases zero: the initialisation of the DeepONet
    reference code (DeepXDE's default for DeepONet).
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    # Static: a model's leaves are its arrays only, so it can go to `jax.jit`/`jax.grad` as is.
    activation: Callable[[Array], Array] = eqx.field(static=True)
    final_activation: bool = eqx.field(static=True)

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: Callable[[Array], Array],
        final_activation: bool,
        key: PRNGKeyArray,
        dtype,
    ):
        init = jax.nn.initializers.glorot_normal(in_axis=-1, out_axis=-2)
        keys = jr.split(key, len(sizes) - 1)
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = tuple(
            init(k, (n_out, n_in), dtype) for (n_in, n_out), k in zip(pairs, keys, strict=True)
        )
        self.biases = tuple(jnp.zeros((n_out,), dtype) for _, n_out in pairs)
        self.activation = activation
        self.final_activation = final_activation

    def __call__(self, x: Float[ArrayLike, "*batch in"]) -> Float[Array, "*batch out"]:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.T + b
            if i < last or self.final_activation:
                x = self.activation(x)
        return x


class AbstractTrunk(eqx.Module):
    """Abstract base class of DeepONet trunks: the basis functions of the output.

    A trunk maps query points `y` (coordinates, `coord_dim` of them) to `num_basis` basis
    function values for each of its `channels` (1 when all output channels share one basis,
    the number of output channels when each has its own), and an offset per channel that is
    added to the output (zero for a learned trunk, the mean field for a POD trunk).

    Concrete subclasses provide the fields `coord_dim`, `num_basis`, `channels` and implement
    `evaluate_grid`.
    """

    coord_dim: eqx.AbstractVar[int]
    num_basis: eqx.AbstractVar[int]
    channels: eqx.AbstractVar[int]

    @abc.abstractmethod
    def evaluate_grid(
        self, ys: Float[Array, "n coord_dim"] | None
    ) -> tuple[Float[Array, "n channels num_basis"], Float[Array, "n channels"]]:
        """**Arguments:**

        - `ys`: query points, one per row; `None` for the trunk's own grid, if it has one.

        **Returns:**

        `(basis, offset)` of shapes `(n, channels, num_basis)` and `(n, channels)`.
        """

    def __call__(
        self, y: Float[Array, " coord_dim"]
    ) -> tuple[Float[Array, "channels num_basis"], Float[Array, " channels"]]:
        """The basis values and offset at one point `y` (see `evaluate_grid`)."""
        basis, offset = self.evaluate_grid(y[None])
        return basis[0], offset[0]


class MLPTrunk(AbstractTrunk):
    """The learned trunk of DeepONet: a fully connected network `coord_dim -> ... ->
    num_basis * channels`.

    In the paper and its code (DeepXDE) the activation is applied to the last layer of the
    trunk as well (`final_activation=True`, the default): the basis functions are then
    piecewise linear with ReLU, and the output bias of the DeepONet plays the role of a
    constant basis function.
    """

    net: _MLP
    coord_dim: int = eqx.field(static=True)
    num_basis: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)

    def __init__(
        self,
        coord_dim: int,
        num_basis: int,
        *,
        widths: Sequence[int],
        key: PRNGKeyArray,
        channels: int = 1,
        activation: Callable[[Array], Array] = jax.nn.relu,
        final_activation: bool = True,
        dtype=None,
    ):
        """**Arguments:**

        - `coord_dim`: number of coordinates of a query point.
        - `num_basis`: number `p` of basis functions per channel.
        - `widths`: hidden-layer widths, e.g. `(40,)` for the paper's trunk `[1, 40, 40]`.
        - `key`: a `jax.random` key for the initialisation.
        - `channels`: 1 for one basis shared by all output channels, or the number of output
            channels for one basis each (the last layer then has `num_basis * channels` units).
        - `activation`: elementwise nonlinearity.
        - `final_activation`: whether the activation is also applied to the last layer.
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.
        """
        self.coord_dim = check_channels("MLPTrunk", "coord_dim", coord_dim)
        self.num_basis = check_channels("MLPTrunk", "num_basis", num_basis)
        self.channels = check_channels("MLPTrunk", "channels", channels)
        widths = _check_widths("MLPTrunk", "widths", widths)
        activation = _check_activation("MLPTrunk", "activation", activation)
        final_activation = _check_bool("MLPTrunk", "final_activation", final_activation)
        dtype = check_floating_dtype("MLPTrunk", dtype)
        self.net = _MLP(
            (coord_dim, *widths, num_basis * channels),
            activation=activation,
            final_activation=final_activation,
            key=key,
            dtype=dtype,
        )

    def evaluate_grid(
        self, ys: Float[Array, "n coord_dim"] | None
    ) -> tuple[Float[Array, "n channels num_basis"], Float[Array, "n channels"]]:
        """**Arguments:**

        - `ys`: query points `(n, coord_dim)`.

        **Returns:**

        `(basis, offset)` of shapes `(n, channels, num_basis)` and `(n, channels)` (zero).
        """
        if ys is None:
            raise ValueError(
                "`MLPTrunk` has no grid of its own: pass the query points `ys` of shape "
                f"(n, {self.coord_dim})."
            )
        basis = self.net(ys).reshape(ys.shape[0], self.channels, self.num_basis)
        return basis, jnp.zeros((ys.shape[0], self.channels), basis.dtype)


def pod_basis(
    outputs: Float[ArrayLike, "n n_points *channels"], num_basis: int, *, center: bool = True
) -> tuple[Float[Array, " n_points *channels"], Float[Array, " n_points *channels num_basis"]]:
    """The mean and leading POD modes of output functions sampled on a grid (via an SVD).

    The modes of a multi-channel field are computed jointly (one mode is a field with all
    channels), so a POD-DeepONet predicts all channels with one set of coefficients. They are
    orthonormal with respect to the *mean* over grid points,
    `sum_{points, channels} modes[..., j] modes[..., k] / n_points = delta_jk`, so that a mode
    has a root-mean-square value of about 1 whatever the resolution, and the branch net learns
    coefficients of the size of the fields rather than `sqrt(n_points)` times larger.

    **Arguments:**

    - `outputs`: training outputs, `(n, n_points)` or `(n, n_points, channels)`, the grid
        points flattened (in the order of the query points used later).
    - `num_basis`: number `p` of modes to keep, at most `min(n, n_points * channels)`.
    - `center`: subtract the mean over samples first (as in POD-DeepONet); if False, the
        returned mean is zero.

    **Returns:**

    `(mean, modes)` of shapes `(n_points, *channels)` and `(n_points, *channels, num_basis)`,
    the modes ordered by decreasing singular value, each with its largest-magnitude entry
    positive (a deterministic sign).

    ??? cite "Reference"

        Lu, Meng, Cai, Mao, Goswami, Zhang, Karniadakis, "A comprehensive and fair comparison
        of two neural operators (with practical extensions) based on FAIR data", Computer
        Methods in Applied Mechanics and Engineering 393 (2022), Section 2.2 (POD-DeepONet).
    """
    outputs = jnp.asarray(outputs)
    if outputs.ndim not in (2, 3) or not jnp.issubdtype(outputs.dtype, jnp.floating):
        raise ValueError(
            "`pod_basis` needs `outputs` of shape (n, n_points) or (n, n_points, channels) with "
            f"a floating dtype, but got shape {outputs.shape} and dtype {outputs.dtype}."
        )
    n, n_points = outputs.shape[:2]
    flat = outputs.reshape(n, -1)
    limit = min(n, flat.shape[1])
    if isinstance(num_basis, bool) or not isinstance(num_basis, int) or not 1 <= num_basis <= limit:
        raise ValueError(
            f"`pod_basis` got `num_basis={num_basis!r}`, but it must be an int in [1, {limit}] "
            f"for outputs of shape {outputs.shape}."
        )
    mean = jnp.mean(flat, axis=0) if center else jnp.zeros(flat.shape[1], flat.dtype)
    _, _, vt = jnp.linalg.svd(flat - mean, full_matrices=False)
    modes = vt[:num_basis].T
    peak = jnp.take_along_axis(modes, jnp.argmax(jnp.abs(modes), axis=0)[None], axis=0)
    modes = modes * jnp.where(peak < 0, -1.0, 1.0) * math.sqrt(n_points)
    return mean.reshape(outputs.shape[1:]), modes.reshape(*outputs.shape[1:], num_basis)


def _fractional_index(x: Array, y: Array) -> tuple[Array, Array, Array]:
    """Cell `i0`, neighbour `i1` and weight `t` of the linear interpolant at `y` on the sorted
    coordinates `x`; `t = 0` exactly at `y = x[i0]` and 1 at `y = x[-1]`, so grid values are
    reproduced exactly. Outside `[x[0], x[-1]]` the end value is used (no extrapolation)."""
    n = x.shape[0]
    if n == 1:
        zero = jnp.zeros(y.shape, jnp.int32)
        return zero, zero, jnp.zeros_like(y)
    i0 = jnp.clip(jnp.searchsorted(x, y, side="right") - 1, 0, n - 2)
    t = jnp.clip((y - x[i0]) / (x[i0 + 1] - x[i0]), 0.0, 1.0)
    return i0, i0 + 1, t


class PODTrunk(AbstractTrunk):
    """A fixed trunk of POD modes on a rectilinear grid (POD-DeepONet, Lu et al. 2022).

    The basis functions are the modes of [`sciml.operators.pod_basis`][], linearly (in n-D
    multilinearly) interpolated between the grid points, and the offset is the mean field.
    Neither is trained: both are wrapped in `jax.lax.stop_gradient` at use. (An optimiser with
    weight decay, e.g. `optax.adamw`, still shrinks every array leaf it is given: exclude this
    trunk from its parameters with a filter.) At the grid points themselves the interpolation
    returns the stored values exactly, and `evaluate_grid(None)` returns them without
    interpolation, in the flattened (C-order) order of the grid points.
    """

    grid: tuple[Float[Array, " n_i"], ...]
    mean: Float[Array, "*spatial channels"]
    modes: Float[Array, "*spatial channels num_basis"]
    coord_dim: int = eqx.field(static=True)
    num_basis: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)

    def __init__(
        self,
        grid: Sequence[Float[ArrayLike, " n_i"]],
        mean: Float[ArrayLike, " n_points *channels"],
        modes: Float[ArrayLike, " n_points *channels num_basis"],
        *,
        dtype=None,
    ):
        """**Arguments:**

        - `grid`: one increasing coordinate vector per axis; the grid points are their outer
            product, flattened in C order (the first axis varies slowest).
        - `mean`: the mean field, `(n_points,)` or `(n_points, channels)`.
        - `modes`: the modes, `(n_points, num_basis)` or `(n_points, channels, num_basis)`,
            e.g. from [`sciml.operators.pod_basis`][].
        - `dtype`: floating dtype to store them in; defaults to JAX's default float dtype.
        """
        dtype = check_floating_dtype("PODTrunk", dtype)
        if isinstance(grid, str) or not isinstance(grid, Sequence) or len(grid) == 0:
            raise ValueError(
                f"`PODTrunk` got `grid` of type {type(grid).__name__}, but it must be a "
                "non-empty sequence of coordinate vectors, one per axis."
            )
        axes = tuple(np.asarray(x, dtype=np.float64) for x in grid)
        for i, x in enumerate(axes):
            if x.ndim != 1 or x.size == 0 or np.any(np.diff(x) <= 0):
                raise ValueError(
                    f"`PODTrunk` needs strictly increasing 1-D coordinate vectors, but "
                    f"`grid[{i}]` has shape {x.shape} or is not increasing."
                )
        spatial = tuple(x.size for x in axes)
        n_points = math.prod(spatial)
        mean, modes = jnp.asarray(mean, dtype), jnp.asarray(modes, dtype)
        if mean.ndim == 1:
            mean, modes = mean[:, None], (modes[:, None] if modes.ndim == 2 else modes)
        if mean.ndim != 2 or mean.shape[0] != n_points or modes.shape[:2] != mean.shape:
            raise ValueError(
                f"`PODTrunk` on a grid of shape {spatial} needs `mean` of shape ({n_points},) "
                f"or ({n_points}, channels) and `modes` of shape ({n_points}, num_basis) or "
                f"({n_points}, channels, num_basis), but got {mean.shape} and {modes.shape}."
            )
        if modes.ndim != 3:
            raise ValueError(
                f"`PODTrunk` got `modes` of shape {modes.shape}, but it must be "
                f"({n_points}, num_basis) or ({n_points}, channels, num_basis)."
            )
        self.grid = tuple(jnp.asarray(x, dtype) for x in axes)
        self.mean = mean.reshape(*spatial, mean.shape[1])
        self.modes = modes.reshape(*spatial, *modes.shape[1:])
        self.coord_dim = len(axes)
        self.channels = int(modes.shape[1])
        self.num_basis = int(modes.shape[2])

    def evaluate_grid(
        self, ys: Float[Array, "n coord_dim"] | None
    ) -> tuple[Float[Array, "n channels num_basis"], Float[Array, "n channels"]]:
        """**Arguments:**

        - `ys`: query points `(n, coord_dim)`, or `None` for all grid points (no
            interpolation; `n = n_points`, C order).

        **Returns:**

        `(basis, offset)` of shapes `(n, channels, num_basis)` and `(n, channels)`.
        """
        mean = jax.lax.stop_gradient(self.mean)
        modes = jax.lax.stop_gradient(self.modes)
        # Both arrays as one, channels last: `(*spatial, channels * (num_basis + 1))`.
        values = jnp.concatenate([modes, mean[..., None]], axis=-1)
        values = values.reshape(*values.shape[: self.coord_dim], -1)
        if ys is None:
            flat = values.reshape(-1, values.shape[-1])
        else:
            flat = self._interpolate(values, ys)
        flat = flat.reshape(-1, self.channels, self.num_basis + 1)
        return flat[..., :-1], flat[..., -1]

    def _interpolate(self, values: Array, ys: Array) -> Array:
        grid = tuple(jax.lax.stop_gradient(x) for x in self.grid)
        cells = [_fractional_index(x, ys[:, i]) for i, x in enumerate(grid)]
        out = jnp.zeros((ys.shape[0], values.shape[-1]), values.dtype)
        # Multilinear interpolation: the 2^d corners of each cell, each weighted by the product
        # of its 1-D hat-function weights.
        for corner in itertools.product((0, 1), repeat=self.coord_dim):
            index = tuple(i1 if c else i0 for c, (i0, i1, _) in zip(corner, cells, strict=True))
            weight = math.prod(
                t if c else 1 - t for c, (_, _, t) in zip(corner, cells, strict=True)
            )
            out = out + weight[:, None] * values[index]
        return out


class DeepONet(eqx.Module):
    """Deep operator network (Lu et al. 2021): `G(u)(y) = sum_k b_k(u) t_k(y) + b_0`.

    The branch net sees the input function `u` at `num_sensors` fixed sensors and outputs the
    coefficients `b_k`; the trunk outputs the basis functions `t_k` at a query point `y`. The
    branch's last layer is linear; the trunk's last layer has the activation too (as in the
    paper's code, DeepXDE). `b_0` is a learned scalar per output channel.

    - *Unstacked* (default): one branch net `num_sensors -> branch_widths -> p`.
    - *Stacked* (`stacked=True`): `p` independent branch nets `num_sensors -> branch_widths
        -> 1`, one per basis function; their parameters are stacked along a leading axis and
        evaluated with `eqx.filter_vmap`.

    Several output channels `C` (`multi_output`):

    - `"split_branch"`: the branch outputs `p * C` coefficients, all channels share the `p`
        trunk functions (each stacked branch net then outputs `C` numbers);
    - `"split_trunk"`: the trunk outputs `p * C` functions, all channels share the `p` branch
        coefficients.

    The paper's antiderivative network, branch `[100, 40, 40]` and trunk `[1, 40, 40]` (layer
    sizes including input and output), is `DeepONet(100, 1, branch_widths=(40,),
    trunk_widths=(40,), basis=40, key=key)`: `*_widths` are the hidden layers only, and the
    last layer of both nets has `basis` units.

    A POD-DeepONet (Lu et al. 2022) uses a fixed trunk of POD modes instead: pass
    `trunk=PODTrunk(grid, *pod_basis(train_outputs, p))` and no `trunk_widths`; `basis` is then
    taken from the trunk.

    The model acts on one function and one query point; `evaluate_grid` evaluates the branch
    once for many query points. Batch over functions with `jax.vmap`.

    ??? cite "References"

        Lu, Jin, Pang, Zhang, Karniadakis, "Learning nonlinear operators via DeepONet based on
        the universal approximation theorem of operators", Nature Machine Intelligence 3 (2021).

        Lu, Meng, Cai, Mao, Goswami, Zhang, Karniadakis, "A comprehensive and fair comparison
        of two neural operators (with practical extensions) based on FAIR data", CMAME 393
        (2022).
    """

    branch: _MLP
    trunk: AbstractTrunk
    bias: Float[Array, " out_channels"] | None
    num_sensors: int = eqx.field(static=True)
    coord_dim: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    basis: int = eqx.field(static=True)
    stacked: bool = eqx.field(static=True)
    multi_output: str = eqx.field(static=True)

    def __init__(
        self,
        num_sensors: int,
        coord_dim: int,
        out_channels: int = 1,
        *,
        branch_widths: Sequence[int],
        trunk_widths: Sequence[int] | None = None,
        basis: int | None = None,
        stacked: bool = False,
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jax.nn.relu,
        multi_output: str | None = None,
        trunk_final_activation: bool = True,
        trunk: AbstractTrunk | None = None,
        bias: bool = True,
        dtype=None,
    ):
        """**Arguments:**

        - `num_sensors`: number `m` of values of the input function the branch sees.
        - `coord_dim`: number of coordinates of a query point.
        - `out_channels`: number of output channels.
        - `branch_widths`: hidden-layer widths of the branch net (of each branch net when
            stacked); `()` for a linear branch.
        - `trunk_widths`: hidden-layer widths of the trunk net (an [`MLPTrunk`][]); leave
            None when passing `trunk`.
        - `basis`: number `p` of basis functions per output channel; optional with `trunk`
            (taken from it).
        - `stacked`: `p` independent branch nets instead of one.
        - `key`: a `jax.random` key for the initialisation.
        - `activation`: elementwise nonlinearity of both nets (ReLU in the paper).
        - `multi_output`: `"split_branch"` or `"split_trunk"` (see above); default
            `"split_branch"`, or what `trunk` implies (`"split_trunk"` for a trunk with
            `out_channels > 1` channels).
        - `trunk_final_activation`: apply the activation to the trunk's last layer too.
        - `trunk`: a ready-made trunk ([`MLPTrunk`][], [`PODTrunk`][]) instead of
            `trunk_widths`; its `channels` must be 1 or `out_channels`.
        - `bias`: learn the output bias `b_0` (one scalar per channel, initialised to 0).
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.
        """
        name = "DeepONet"
        self.num_sensors = check_channels(name, "num_sensors", num_sensors)
        self.coord_dim = check_channels(name, "coord_dim", coord_dim)
        self.out_channels = check_channels(name, "out_channels", out_channels)
        branch_widths = _check_widths(name, "branch_widths", branch_widths)
        self.stacked = _check_bool(name, "stacked", stacked)
        activation = _check_activation(name, "activation", activation)
        trunk_final_activation = _check_bool(name, "trunk_final_activation", trunk_final_activation)
        bias = _check_bool(name, "bias", bias)
        dtype = check_floating_dtype(name, dtype)
        if multi_output is not None and multi_output not in MULTI_OUTPUT:
            raise ValueError(
                f"`DeepONet` got `multi_output={multi_output!r}`, but it must be one of "
                f"{', '.join(map(repr, MULTI_OUTPUT))} (or None)."
            )
        bkey, tkey = jr.split(key)

        if trunk is None:
            if trunk_widths is None:
                raise ValueError(
                    "`DeepONet` needs `trunk_widths` (the trunk's hidden-layer widths), or a "
                    "ready-made trunk as `trunk=`."
                )
            if basis is None:
                raise ValueError("`DeepONet` needs `basis`, the number of basis functions.")
            self.basis = check_channels(name, "basis", basis)
            self.multi_output = multi_output or "split_branch"
            split_trunk = self.multi_output == "split_trunk"
            trunk = MLPTrunk(
                coord_dim,
                basis,
                widths=_check_widths(name, "trunk_widths", trunk_widths),
                channels=out_channels if split_trunk else 1,
                activation=activation,
                final_activation=trunk_final_activation,
                key=tkey,
                dtype=dtype,
            )
        else:
            if not isinstance(trunk, AbstractTrunk):
                raise ValueError(
                    f"`DeepONet` got `trunk` of type {type(trunk).__name__}, but it must be an "
                    "`AbstractTrunk` such as `MLPTrunk` or `PODTrunk`."
                )
            if trunk_widths is not None:
                raise ValueError(
                    "`DeepONet` got both `trunk` and `trunk_widths`; the widths belong to the "
                    "trunk: give only one."
                )
            if basis is not None and basis != trunk.num_basis:
                raise ValueError(
                    f"`DeepONet` got `basis={basis!r}`, but `trunk` has {trunk.num_basis} "
                    "basis functions."
                )
            if trunk.channels not in (1, out_channels):
                raise ValueError(
                    f"`DeepONet` with `out_channels={out_channels}` needs a trunk with 1 or "
                    f"{out_channels} channels, but `trunk` has {trunk.channels}."
                )
            implied = "split_trunk" if trunk.channels > 1 else "split_branch"
            if out_channels > 1 and multi_output not in (None, implied):
                raise ValueError(
                    f"`DeepONet` got `multi_output={multi_output!r}`, but a trunk with "
                    f"{trunk.channels} channel(s) for {out_channels} outputs means {implied!r}."
                )
            self.basis = trunk.num_basis
            self.multi_output = multi_output or implied
        if trunk.coord_dim != coord_dim:
            raise ValueError(
                f"`DeepONet` got `coord_dim={coord_dim}`, but `trunk` takes {trunk.coord_dim} "
                "coordinates."
            )
        self.trunk = trunk

        # Coefficients per basis function the branch produces: `out_channels` of them when
        # the channels share the trunk's functions, else 1.
        per_basis = 1 if trunk.channels > 1 else out_channels

        def make_branch(k, outputs):
            return _MLP(
                (num_sensors, *branch_widths, outputs),
                activation=activation,
                final_activation=False,
                key=k,
                dtype=dtype,
            )

        if self.stacked:
            self.branch = eqx.filter_vmap(lambda k: make_branch(k, per_basis))(
                jr.split(bkey, self.basis)
            )
        else:
            self.branch = make_branch(bkey, per_basis * self.basis)
        self.bias = jnp.zeros((out_channels,), dtype) if bias else None

    def _check_u(self, u) -> None:
        if jnp.shape(u) != (self.num_sensors,):
            raise ValueError(
                f"`DeepONet` expects the input function `u` at its {self.num_sensors} sensors, "
                f"shape ({self.num_sensors},), but got shape {jnp.shape(u)}."
            )

    def coefficients(self, u: Float[ArrayLike, " num_sensors"]) -> Float[Array, "c num_basis"]:
        """The branch output for one input function.

        **Arguments:**

        - `u`: the input function at the sensors, shape `(num_sensors,)`.

        **Returns:**

        The coefficients `b`, shape `(out_channels, basis)` for `"split_branch"` and
        `(1, basis)` for `"split_trunk"` (shared by all channels).
        """
        self._check_u(u)
        if self.stacked:
            b = eqx.filter_vmap(lambda net: net(u))(self.branch)  # (basis, per_basis)
            return b.T
        return self.branch(u).reshape(-1, self.basis)

    def evaluate_grid(
        self, u: Float[ArrayLike, " num_sensors"], ys: Float[ArrayLike, "n coord_dim"] | None
    ) -> Float[Array, "n out_channels"]:
        """Evaluates the output function at many query points, running the branch once.

        **Arguments:**

        - `u`: the input function at the sensors, shape `(num_sensors,)`.
        - `ys`: query points `(n, coord_dim)`; `None` for the trunk's own grid (a
            [`PODTrunk`][]: the grid points without interpolation).

        **Returns:**

        The output at every query point, shape `(n, out_channels)`; row `i` equals
        `self(u, ys[i])` up to round-off.
        """
        if ys is not None and (jnp.ndim(ys) != 2 or jnp.shape(ys)[1] != self.coord_dim):
            raise ValueError(
                f"`DeepONet` expects query points `ys` of shape (n, {self.coord_dim}), but got "
                f"shape {jnp.shape(ys)}."
            )
        b = self.coefficients(u)
        basis, offset = self.trunk.evaluate_grid(ys)
        if basis.shape[1] == 1:
            out = basis[:, 0, :] @ b.T  # channels share the basis: (n, p) @ (p, C)
        else:
            out = basis @ b[0]  # channels share the coefficients: (n, C, p) @ (p,)
        out = out + offset
        if self.bias is not None:
            out = out + self.bias
        return out

    def __call__(
        self, u: Float[ArrayLike, " num_sensors"], y: Float[ArrayLike, " coord_dim"]
    ) -> Float[Array, " out_channels"]:
        """**Arguments:**

        - `u`: the input function at the sensors, shape `(num_sensors,)`.
        - `y`: one query point, shape `(coord_dim,)`.

        **Returns:**

        `G(u)(y)`, shape `(out_channels,)`.
        """
        if jnp.shape(y) != (self.coord_dim,):
            raise ValueError(
                f"`DeepONet` expects one query point `y` of shape ({self.coord_dim},), but got "
                f"shape {jnp.shape(y)}; use `evaluate_grid` for many points."
            )
        return self.evaluate_grid(u, y[None])[0]


def _check_grid(cls_name: str, grid) -> str:
    if grid not in GRIDS:
        raise ValueError(
            f"`{cls_name}` got `grid={grid!r}`, but it must be one of "
            f"{', '.join(map(repr, GRIDS))}."
        )
    return grid


def grid_coordinates(spatial: Sequence[int], grid: str, dtype=None) -> Float[Array, "n d"]:
    """The points of a uniform grid on the unit domain, flattened in C order.

    **Arguments:**

    - `spatial`: points per axis.
    - `grid`: `"nodes"` for `x_j = j / (s - 1)`, both ends included (as in the Darcy data);
        `"periodic"` for `x_j = j / s` on `[0, 1)` (as in the Burgers and Navier-Stokes data).
    - `dtype`: floating dtype; defaults to JAX's default float dtype.

    **Returns:**

    An array `(prod(spatial), len(spatial))`, the first axis varying slowest.
    """
    grid = _check_grid("grid_coordinates", grid)
    dtype = check_floating_dtype("grid_coordinates", dtype)
    if grid == "nodes":
        axes = [np.linspace(0.0, 1.0, s) for s in spatial]
    else:
        axes = [np.arange(s) / s for s in spatial]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spatial))
    return jnp.asarray(points, dtype)


def sensor_strides(
    spatial: Sequence[int], sensors_per_axis: Sequence[int], grid: str
) -> tuple[int, ...] | None:
    """The strides that pick `sensors_per_axis` uniform sensors out of a grid, or None if the
    sensors are not grid points (see [`GridDeepONet`][])."""
    strides = []
    for s, m in zip(spatial, sensors_per_axis, strict=True):
        if grid == "nodes":
            ok = s >= 2 and (s - 1) % (m - 1) == 0
            strides.append((s - 1) // (m - 1) if ok else None)
        else:
            strides.append(s // m if s % m == 0 else None)
    return None if None in strides else tuple(strides)


class GridDeepONet(AbstractOperator):
    """A [`DeepONet`][] as a grid-to-grid operator, with the calling convention of `FNO`.

    It maps `x` of shape `(in_channels, *spatial)` to `(out_channels, *spatial)`:

    1. the branch input is `x` at a fixed set of sensors, `sensors_per_axis[i]` uniformly
        spaced points along axis `i` of the unit domain (`j / (m - 1)` on `"nodes"` grids,
        `j / m` on `"periodic"` grids), taken from `x` by striding; all input channels,
        flattened channels first then C order (`num_sensors = in_channels * prod(m_i)`);
    2. the query points are all grid points of `x`, coordinates built from its shape at call
        time with the `grid` convention ([`grid_coordinates`][]);
    3. [`DeepONet.evaluate_grid`][] (branch once, trunk over all points), reshaped channels
        first.

    It therefore works at every resolution on whose grid the sensors lie: `(s - 1)` a multiple
    of `(m - 1)` for `"nodes"` and `s` a multiple of `m` for `"periodic"` (else a
    `ValueError`). This is the layout of [`sciml.data.to_deeponet`][] with the same sensors,
    so a `DeepONet` trained on such arrays can be wrapped with `GridDeepONet(...,
    deeponet=net)`.
    """

    deeponet: DeepONet
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)
    sensors_per_axis: tuple[int, ...] = eqx.field(static=True)
    grid: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_spatial_dims: int,
        sensors_per_axis: int | Sequence[int],
        grid: str = "nodes",
        branch_widths: Sequence[int] | None = None,
        trunk_widths: Sequence[int] | None = None,
        basis: int | None = None,
        key: PRNGKeyArray | None = None,
        deeponet: DeepONet | None = None,
        **options,
    ):
        """**Arguments:**

        - `in_channels`, `out_channels`: channels of the input and output functions.
        - `num_spatial_dims`: number of spatial axes (the trunk's `coord_dim`).
        - `sensors_per_axis`: sensors per spatial axis, an int or one per axis (>= 2 on a
            `"nodes"` grid).
        - `grid`: `"nodes"` (`j / (s - 1)`, both ends included) or `"periodic"` (`j / s`).
        - `branch_widths`, `trunk_widths`, `basis`, `key`, `**options`: build the DeepONet
            `DeepONet(in_channels * prod(sensors_per_axis), num_spatial_dims, out_channels,
            branch_widths=..., trunk_widths=..., basis=..., key=..., **options)`; `options`
            are its other keyword arguments (`stacked`, `activation`, `multi_output`,
            `trunk_final_activation`, `trunk`, `bias`, `dtype`).
        - `deeponet`: a ready DeepONet instead (then give none of the above).
        """
        name = "GridDeepONet"
        self.in_channels = check_channels(name, "in_channels", in_channels)
        self.out_channels = check_channels(name, "out_channels", out_channels)
        self.num_spatial_dims = check_channels(name, "num_spatial_dims", num_spatial_dims)
        self.grid = _check_grid(name, grid)
        if isinstance(sensors_per_axis, int | np.integer) and not isinstance(
            sensors_per_axis, bool
        ):
            sensors_per_axis = (int(sensors_per_axis),) * num_spatial_dims
        minimum = 2 if grid == "nodes" else 1
        if (
            not isinstance(sensors_per_axis, Sequence)
            or len(sensors_per_axis) != num_spatial_dims
            or any(
                isinstance(m, bool) or not isinstance(m, int | np.integer) or m < minimum
                for m in sensors_per_axis
            )
        ):
            raise ValueError(
                f"`GridDeepONet` got `sensors_per_axis={sensors_per_axis!r}`, but it must be an "
                f"int >= {minimum} (on a {grid!r} grid) or a tuple of {num_spatial_dims} such "
                "ints."
            )
        self.sensors_per_axis = tuple(int(m) for m in sensors_per_axis)
        if deeponet is None:
            if branch_widths is None or key is None:
                raise ValueError(
                    "`GridDeepONet` needs either `deeponet` or the arguments to build one "
                    "(`branch_widths`, `trunk_widths`, `basis`, `key`, ...)."
                )
            deeponet = DeepONet(
                in_channels * math.prod(self.sensors_per_axis),
                num_spatial_dims,
                out_channels,
                branch_widths=branch_widths,
                trunk_widths=trunk_widths,
                basis=basis,
                key=key,
                **options,
            )
        else:
            given = [
                k
                for k, v in dict(
                    branch_widths=branch_widths, trunk_widths=trunk_widths, basis=basis, key=key
                ).items()
                if v is not None
            ] + sorted(options)
            if given:
                raise ValueError(
                    f"`GridDeepONet` got `deeponet` and also `{given[0]}`, which only serves to "
                    "build a DeepONet: give one or the other."
                )
            if not isinstance(deeponet, DeepONet):
                raise ValueError(
                    f"`GridDeepONet` got `deeponet` of type {type(deeponet).__name__}, but it "
                    "must be a `DeepONet`."
                )
        self.deeponet = deeponet

    def __check_init__(self):
        expected = self.in_channels * math.prod(self.sensors_per_axis)
        net = self.deeponet
        if (net.num_sensors, net.coord_dim, net.out_channels) != (
            expected,
            self.num_spatial_dims,
            self.out_channels,
        ):
            raise ValueError(
                f"`GridDeepONet` needs a DeepONet with num_sensors = in_channels * "
                f"prod(sensors_per_axis) = {expected}, coord_dim = {self.num_spatial_dims} and "
                f"out_channels = {self.out_channels}, but got {net.num_sensors}, "
                f"{net.coord_dim} and {net.out_channels}."
            )

    def sensors(
        self, x: Float[ArrayLike, " in_channels *spatial"]
    ) -> Float[Array | np.ndarray, " num_sensors"]:
        """The branch input: `x` at the sensors, flattened (channels first, then C order).

        **Arguments:**

        - `x`: input of shape `(in_channels, *spatial)` on a grid containing the sensors.

        **Returns:**

        An array of shape `(num_sensors,)`.
        """
        d = self.num_spatial_dims
        if jnp.ndim(x) != d + 1 or jnp.shape(x)[0] != self.in_channels:
            raise ValueError(
                f"`GridDeepONet` expects an input of shape (in_channels={self.in_channels}, "
                f"*spatial) with {d} spatial dims, but got shape {jnp.shape(x)}."
            )
        spatial = tuple(x.shape[1:])
        strides = sensor_strides(spatial, self.sensors_per_axis, self.grid)
        if strides is None:
            rule = "s - 1 a multiple of m - 1" if self.grid == "nodes" else "s a multiple of m"
            raise ValueError(
                f"`GridDeepONet` with `sensors_per_axis={self.sensors_per_axis}` on a "
                f"{self.grid!r} grid needs sensors that are grid points ({rule} along every "
                f"axis), but got spatial shape {spatial}."
            )
        return x[(slice(None), *(slice(None, None, r) for r in strides))].reshape(-1)

    def evaluate(
        self, x: Float[ArrayLike, " in_channels *spatial"], ys: Float[ArrayLike, "n d"]
    ) -> Float[Array, "n out_channels"]:
        """The output function at arbitrary points of the unit domain.

        **Arguments:**

        - `x`: input of shape `(in_channels, *spatial)` on a grid containing the sensors.
        - `ys`: query points `(n, num_spatial_dims)`.

        **Returns:**

        An array of shape `(n, out_channels)`.
        """
        return self.deeponet.evaluate_grid(self.sensors(x), ys)

    def __call__(
        self, x: Float[ArrayLike, " in_channels *spatial"]
    ) -> Float[Array, " out_channels *spatial"]:
        """**Arguments:**

        - `x`: input of shape `(in_channels, *spatial)` on a grid containing the sensors.

        **Returns:**

        The output on the same grid, shape `(out_channels, *spatial)`.
        """
        u = self.sensors(x)
        spatial = tuple(x.shape[1:])
        ys = grid_coordinates(spatial, self.grid, jnp.result_type(x.dtype, float))
        out = self.deeponet.evaluate_grid(u, ys)
        return out.T.reshape(self.out_channels, *spatial)
