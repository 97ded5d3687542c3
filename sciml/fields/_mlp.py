"""A coordinate MLP for PINNs, with optional input rescaling, exact periodic embedding and
random Fourier features."""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from .._validate import check_floating_dtype, check_int, default_floating_dtype

# The standard deviation of a standard normal truncated to [-2, 2] (as in `jax.nn.initializers`).
_TRUNCATED_STD = 0.87962566103423978


def check_out_dim(cls_name: str, out_dim) -> "int | Literal['scalar']":
    if isinstance(out_dim, str) and out_dim == "scalar":
        return "scalar"
    if isinstance(out_dim, bool) or not isinstance(out_dim, int | np.integer) or out_dim < 1:
        raise ValueError(
            f"`{cls_name}` got `out_dim={out_dim!r}`, but it must be a positive int or the "
            'string "scalar" (one output, returned as a 0-d array).'
        )
    return int(out_dim)


def check_positive(cls_name: str, name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{cls_name}` got `{name}={value!r}`, but it must be a positive finite number."
        )
    return float(value)


def _check_activation(cls_name: str, activation) -> Callable[[Array], Array]:
    if not callable(activation):
        raise ValueError(
            f"`{cls_name}` got `activation={activation!r}`, but it must be callable (an "
            "elementwise function such as `jnp.tanh`)."
        )
    return activation


def per_coordinate(cls_name: str, name: str, value, in_dim: int) -> tuple[float, ...]:
    """A number or a sequence of `in_dim` numbers, as a tuple of `in_dim` finite floats."""
    if isinstance(value, str):
        values = None
    else:
        try:
            values = np.broadcast_to(np.asarray(value, dtype=np.float64), (in_dim,))
        except (TypeError, ValueError):
            values = None
    if values is None or np.ndim(value) > 1 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"`{cls_name}` got `{name}={value!r}`, but it must be a finite number or a sequence "
            f"of {in_dim} finite numbers (one per input coordinate)."
        )
    return tuple(float(v) for v in values)


def check_box(
    cls_name: str, names: tuple[str, str], lower, upper, in_dim: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lo = per_coordinate(cls_name, names[0], lower, in_dim)
    hi = per_coordinate(cls_name, names[1], upper, in_dim)
    if any(a >= b for a, b in zip(lo, hi, strict=True)):
        raise ValueError(
            f"`{cls_name}` got `{names[0]}={lower!r}` and `{names[1]}={upper!r}`, but "
            f"`{names[0]} < {names[1]}` must hold in every coordinate."
        )
    return lo, hi


def check_point(cls_name: str, x, in_dim: int) -> Array:
    if jnp.shape(x) != (in_dim,):
        raise ValueError(
            f"`{cls_name}` expects one point `x` of shape ({in_dim},), but got shape "
            f"{jnp.shape(x)}; batch over points with `jax.vmap`."
        )
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(default_floating_dtype())
    return x


def _check_periodic(cls_name: str, periodic, in_dim: int) -> tuple[float | None, ...] | None:
    if periodic is None:
        return None

    def ok(p):
        return p is None or (
            not isinstance(p, bool)
            and isinstance(p, int | float | np.integer | np.floating)
            and math.isfinite(p)
            and p > 0
        )

    if (
        isinstance(periodic, str)
        or not isinstance(periodic, Sequence)
        or len(periodic) != in_dim
        or not all(ok(p) for p in periodic)
    ):
        raise ValueError(
            f"`{cls_name}` got `periodic={periodic!r}`, but it must be None or a sequence of "
            f"in_dim={in_dim} entries, each a positive period or None (not periodic), e.g. "
            f"`{(2.0,) + (None,) * (in_dim - 1)!r}`."
        )
    return tuple(None if p is None else float(p) for p in periodic)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_mlp(key, sizes, fourier_shape, dtype, fourier_scale):
    """The initial Fourier matrix (or None), Glorot-normal weights and zero biases.

    Compiled as one program, and all weights come from one draw: XLA compiles each random
    draw (and, run eagerly, each array) separately, which made a three-layer initialisation
    take ~1.5 s on CPU instead of ~0.4 s. The distribution is that of
    `jax.nn.initializers.glorot_normal()`: a normal truncated to [-2, 2], divided by its
    standard deviation 0.8796..., times `sqrt(2 / (fan_in + fan_out))`.
    """
    fkey, wkey = jr.split(key)
    if fourier_shape is None:
        fourier = None
    else:
        fourier = fourier_scale * jr.normal(fkey, fourier_shape, dtype)
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    flat = jr.truncated_normal(wkey, -2.0, 2.0, (sum(a * b for a, b in pairs),), dtype)
    weights, start = [], 0
    for n_in, n_out in pairs:
        std = math.sqrt(2.0 / (n_in + n_out)) / _TRUNCATED_STD
        weights.append(flat[start : start + n_in * n_out].reshape(n_out, n_in) * std)
        start += n_in * n_out
    biases = tuple(jnp.zeros((n_out,), dtype) for _, n_out in pairs)
    return fourier, tuple(weights), biases


class MLP(eqx.Module):
    r"""A fully connected network of one point, `R^in_dim -> R^out_dim`, for PINNs.

    The input `x` goes through, in order:

    1. **rescaling** (if `input_lower`/`input_upper` are given): `2 (x - lower) / (upper -
        lower) - 1`, which maps the box to `[-1, 1]^in_dim`;
    2. **periodic embedding** (if `periodic` is given): each periodic coordinate `x_j` with
        period `P_j` is replaced by `cos(2 pi k x_j / P_j)` and `sin(2 pi k x_j / P_j)` for
        `k = 1..periodic_harmonics`, computed from the *raw* coordinate (its rescaling is
        irrelevant: the embedding is already in `[-1, 1]`). The network is then exactly
        `P_j`-periodic in `x_j`, with all derivatives, as a hard constraint (Dong & Ni 2021;
        used by JAX-PI for Allen-Cahn). The embedded vector is the non-periodic coordinates
        in their order, then all cosines, then all sines (coordinate-major, harmonic-minor);
    3. **random Fourier features** (if `fourier_features=m`): `v -> [cos(2 pi B v),
        sin(2 pi B v)]`, `B` an `(m, len(v))` matrix drawn from `N(0, fourier_scale^2)` at
        initialisation (Tancik et al. 2020). `B` is *not* trained: it is wrapped in
        `jax.lax.stop_gradient` in `embed`, so gradients with respect to it are exactly
        zero. (An optimiser with weight decay, e.g. `optax.adamw`, still shrinks every array
        leaf it is given: exclude `fourier_matrix` from its parameters with a filter.)
    4. `depth` hidden layers of `width` units with `activation`, then a linear output layer.

    Weights are Glorot-normal (truncated normal with variance `2 / (fan_in + fan_out)`) and
    biases zero, the usual PINN initialisation (Raissi et al. 2019; JAX-PI).

    It acts on one point; batch with `jax.vmap`. It composes with `jax.jit`, `jax.grad` and
    the Taylor-mode operators of [`sciml.derivatives`][] (with `out_dim="scalar"` it is a scalar
    field as they expect).

    ??? cite "References"

        Tancik et al., "Fourier features let networks learn high frequency functions in low
        dimensional domains", NeurIPS 2020.

        Dong & Ni, "A method for representing periodic functions and enforcing exactly
        periodic boundary conditions with deep neural networks", J. Comput. Phys. 435 (2021).

        Wang, Sankaran, Wang, Perdikaris, "An expert's guide to training physics-informed
        neural networks", arXiv:2308.08468 (2023) (JAX-PI).
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    fourier_matrix: Float[Array, "fourier_features embedded"] | None
    in_dim: int = eqx.field(static=True)
    out_dim: int | Literal["scalar"] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    # Static: a model's leaves are its arrays only, so it can go to `jax.jit`/`jax.grad` as is.
    activation: Callable[[Array], Array] = eqx.field(static=True)
    periodic: tuple[float | None, ...] | None = eqx.field(static=True)
    periodic_harmonics: int = eqx.field(static=True)
    input_lower: tuple[float, ...] | None = eqx.field(static=True)
    input_upper: tuple[float, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        in_dim: int,
        out_dim: int | Literal["scalar"],
        *,
        width: int,
        depth: int,
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jnp.tanh,
        fourier_features: int | None = None,
        fourier_scale: float = 1.0,
        periodic: Sequence[float | None] | None = None,
        periodic_harmonics: int = 1,
        input_lower: int | float | Sequence[int | float] | Real[ArrayLike, " in_dim"] | None = None,
        input_upper: int | float | Sequence[int | float] | Real[ArrayLike, " in_dim"] | None = None,
        dtype=None,
    ):
        """**Arguments:**

        - `in_dim`: number of input coordinates.
        - `out_dim`: number of outputs, or `"scalar"` for one output returned as a 0-d array.
        - `width`: units per hidden layer.
        - `depth`: number of hidden layers (0 gives an affine map of the embedded input).
        - `key`: a `jax.random` key for the initialisation.
        - `activation`: elementwise nonlinearity of the hidden layers.
        - `fourier_features`: None, or the number `m` of random Fourier frequencies (the first
            layer then sees `2 m` features).
        - `fourier_scale`: standard deviation of the entries of `B`; only with
            `fourier_features`.
        - `periodic`: None, or one entry per input coordinate: its period, or None if that
            coordinate is not periodic.
        - `periodic_harmonics`: number `K` of harmonics per periodic coordinate; only with
            `periodic`.
        - `input_lower`, `input_upper`: the input box (a number or one per coordinate), both or
            neither; inputs are mapped affinely from it to `[-1, 1]`.
        - `dtype`: real floating dtype of the parameters; defaults to JAX's default float dtype.
        """
        name = "MLP"
        self.in_dim = check_int("in_dim", in_dim, 1, owner=name)
        self.out_dim = check_out_dim(name, out_dim)
        self.width = check_int("width", width, 1, owner=name)
        self.depth = check_int("depth", depth, 0, owner=name)
        self.activation = _check_activation(name, activation)
        dtype = check_floating_dtype(name, dtype)
        self.periodic = _check_periodic(name, periodic, self.in_dim)
        self.periodic_harmonics = check_int("periodic_harmonics", periodic_harmonics, 1, owner=name)
        if self.periodic is None and self.periodic_harmonics != 1:
            raise ValueError(
                f"`MLP` got `periodic_harmonics={periodic_harmonics!r}` but `periodic=None`: "
                "harmonics only apply to periodic coordinates; give `periodic` as well."
            )
        if (input_lower is None) != (input_upper is None):
            raise ValueError(
                f"`MLP` got `input_lower={input_lower!r}` and `input_upper={input_upper!r}`, "
                "but they must be given both (the input box) or neither."
            )
        if input_lower is None:
            self.input_lower = self.input_upper = None
        else:
            self.input_lower, self.input_upper = check_box(
                name, ("input_lower", "input_upper"), input_lower, input_upper, self.in_dim
            )
        if fourier_features is not None:
            fourier_features = check_int("fourier_features", fourier_features, 1, owner=name)
        fourier_scale = check_positive(name, "fourier_scale", fourier_scale)
        if fourier_features is None and fourier_scale != 1.0:
            raise ValueError(
                f"`MLP` got `fourier_scale={fourier_scale!r}` but `fourier_features=None`: "
                "the scale only applies to Fourier features; give `fourier_features` as well."
            )

        if self.periodic is None:
            embedded = self.in_dim
        else:
            n_periodic = sum(p is not None for p in self.periodic)
            embedded = self.in_dim - n_periodic + 2 * self.periodic_harmonics * n_periodic
        first = embedded if fourier_features is None else 2 * fourier_features
        n_out = 1 if self.out_dim == "scalar" else self.out_dim
        sizes = (first, *(self.width,) * self.depth, n_out)
        fourier_shape = None if fourier_features is None else (fourier_features, embedded)
        self.fourier_matrix, self.weights, self.biases = _init_mlp(
            key, sizes, fourier_shape, jnp.dtype(dtype), fourier_scale
        )

    def embed(self, x: Float[Array, " in_dim"]) -> Float[Array, " features"]:
        """The input of the first layer: `x` rescaled, periodically embedded and mapped to
        Fourier features, as configured (steps 1-3 above).

        **Arguments:**

        - `x`: one point, shape `(in_dim,)`.

        **Returns:**

        A vector of shape `(features,)`: `2 * fourier_features` if those are used, else the
        embedded dimension.
        """
        x = check_point("MLP", x, self.in_dim)
        v = x
        if self.input_lower is not None:
            lo = np.asarray(self.input_lower)
            hi = np.asarray(self.input_upper)
            # `2 (x - lo) / (hi - lo) - 1` with the constants folded in NumPy (float64).
            v = x * (2.0 / (hi - lo)).astype(x.dtype) - ((hi + lo) / (hi - lo)).astype(x.dtype)
        if self.periodic is not None:
            free = [j for j, p in enumerate(self.periodic) if p is None]
            per = [j for j, p in enumerate(self.periodic) if p is not None]
            # Angular frequencies 2 pi k / P_j (float64 NumPy), shape (periodic coords, K).
            harmonics = np.arange(1, self.periodic_harmonics + 1)
            periods = np.asarray([self.periodic[j] for j in per])
            omega = 2 * np.pi * harmonics[None, :] / periods[:, None]
            theta = (x[np.asarray(per)][:, None] * omega.astype(x.dtype)).reshape(-1)
            v = jnp.concatenate([v[np.asarray(free, dtype=int)], jnp.cos(theta), jnp.sin(theta)])
        if self.fourier_matrix is not None:
            b = jax.lax.stop_gradient(self.fourier_matrix)
            z = (2 * np.pi) * (b @ v)
            v = jnp.concatenate([jnp.cos(z), jnp.sin(z)])
        return v

    def __call__(self, x: Float[Array, " in_dim"]) -> Float[Array, " out_dim"] | Float[Array, ""]:
        """**Arguments:**

        - `x`: one point, shape `(in_dim,)`.

        **Returns:**

        The output, shape `(out_dim,)`, or `()` for `out_dim="scalar"`.
        """
        h = self.embed(x)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = w @ h + b
            if i < last:
                h = self.activation(h)
        return h[0] if self.out_dim == "scalar" else h
