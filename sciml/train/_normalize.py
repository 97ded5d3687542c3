"""Pointwise Gaussian normalisation of inputs/outputs, the `NonTrainable` marker and the
trainable-parameter filter."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.ndimage
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

_CHUNK_ELEMENTS = 1 << 24


class UnitGaussianNormalizer(eqx.Module):
    """Pointwise unit-Gaussian normaliser, as in the FNO code.

    `encode(x) = (x - mean) / (std + eps)` and `decode(x) = x * (std + eps) + mean`, where
    `mean` and `std` are per grid point (and channel): statistics over the sample axis only.

    The statistics are constants: `encode`/`decode` apply `jax.lax.stop_gradient` to them,
    and [`sciml.train.trainable_filter`][] excludes them from the trainable parameters, so
    optimisers (including weight decay) never change them.

    Resolution: a sample `(channels, *spatial)` on a grid other than the one the statistics
    were fitted on (same channels and number of axes) is normalised with the statistics
    interpolated linearly onto its grid, both grids spanning the same domain end to end (node
    grids that include the boundary). This keeps a normalised operator usable at any
    resolution, e.g. for zero-shot super-resolution.
    """

    mean: Float[Array, "*shape"]
    std: Float[Array, "*shape"]
    eps: float = eqx.field(static=True)

    def __init__(self, mean: ArrayLike, std: ArrayLike, eps: float = 1e-5):
        """**Arguments:**

        - `mean`: mean of one sample's shape.
        - `std`: standard deviation, same shape as `mean`.
        - `eps`: added to `std` before dividing.
        """
        self.mean = jnp.asarray(mean)
        self.std = jnp.asarray(std)
        self.eps = float(eps)

    def __check_init__(self):
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"`UnitGaussianNormalizer` needs `mean` and `std` of the same shape, got "
                f"{self.mean.shape} and {self.std.shape}."
            )
        if not self.eps >= 0:
            raise ValueError(f"`UnitGaussianNormalizer` needs `eps` >= 0, got {self.eps}.")

    @classmethod
    def from_data(
        cls, data: Any, *, eps: float = 1e-5, chunk_size: int | None = None
    ) -> "UnitGaussianNormalizer":
        """Fits the statistics to `data`.

        The mean and the (unbiased, `ddof=1`, as `torch.std` in the FNO code) standard
        deviation over the sample axis are accumulated in float64 with NumPy, chunk by chunk
        (Chan et al.'s pairwise update, which avoids the cancellation of `E[x^2] - E[x]^2`),
        so `data` can be an h5py dataset larger than memory. The statistics are stored in the
        floating dtype of `data` (the default JAX float for integer data).

        **Arguments:**

        - `data`: array-like of shape `(num_samples, *shape)` with `num_samples >= 2`: a
            NumPy/JAX array or an h5py dataset.
        - `eps`: see `__init__`.
        - `chunk_size`: samples read at a time (default: about 16M elements per chunk).

        **Returns:**

        A `UnitGaussianNormalizer` whose `mean`/`std` have shape `shape`.
        """
        shape = tuple(data.shape)
        if len(shape) < 1 or shape[0] < 2:
            raise ValueError(
                "`UnitGaussianNormalizer.from_data` needs `data` of shape (num_samples, ...) "
                f"with num_samples >= 2, got shape {shape}."
            )
        n_total = shape[0]
        per_sample = int(np.prod(shape[1:], dtype=np.int64))
        if chunk_size is None:
            chunk_size = max(1, _CHUNK_ELEMENTS // max(per_sample, 1))
        if chunk_size < 1:
            raise ValueError(
                f"`UnitGaussianNormalizer.from_data` needs `chunk_size` >= 1, got {chunk_size}."
            )
        count = 0
        mean = np.zeros(shape[1:], np.float64)
        m2 = np.zeros(shape[1:], np.float64)
        for start in range(0, n_total, chunk_size):
            chunk = np.array(data[start : start + chunk_size], dtype=np.float64)  # a copy
            n_b = chunk.shape[0]
            mean_b = chunk.mean(axis=0)
            # `((chunk - mean_b) ** 2).sum(axis=0)`, in place: the same values, a third of the
            # memory.
            np.square(np.subtract(chunk, mean_b, out=chunk), out=chunk)
            m2_b = chunk.sum(axis=0)
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        std = np.sqrt(m2 / (count - 1))
        dtype = np.dtype(data.dtype)
        if not np.issubdtype(dtype, np.floating):
            dtype = jnp.zeros(()).dtype
        dtype = jax.dtypes.canonicalize_dtype(dtype)
        return cls(mean.astype(dtype), std.astype(dtype), eps=eps)

    def _stats(self, shape: tuple[int, ...]) -> tuple[Array, Array]:
        mean = jax.lax.stop_gradient(self.mean)
        std = jax.lax.stop_gradient(self.std)
        if shape == mean.shape:
            return mean, std
        if len(shape) != mean.ndim or len(shape) < 2 or shape[0] != mean.shape[0]:
            raise ValueError(
                f"`UnitGaussianNormalizer` fitted on samples of shape {mean.shape} cannot "
                f"normalise shape {shape}; allowed: the same shape, or the same channels "
                "(axis 0) on another grid."
            )
        return _resample(mean, shape), _resample(std, shape)

    def encode(self, x: Float[Array | np.ndarray, "*shape"]) -> Float[Array, "*shape"]:
        """Normalises ONE sample: `(x - mean) / (std + eps)`."""
        mean, std = self._stats(x.shape)
        return (x - mean) / (std + self.eps)

    def decode(self, x: Float[Array | np.ndarray, "*shape"]) -> Float[Array, "*shape"]:
        """Inverse of `encode` for ONE sample: `x * (std + eps) + mean`."""
        mean, std = self._stats(x.shape)
        return x * (std + self.eps) + mean


def _resample(field: Array, shape: tuple[int, ...]) -> Array:
    """Linear interpolation of `(channels, *spatial)` onto another grid over the same domain,
    first and last nodes aligned."""
    coords = jnp.meshgrid(
        *(
            jnp.linspace(0.0, n_old - 1, n_new)
            for n_old, n_new in zip(field.shape[1:], shape[1:], strict=True)
        ),
        indexing="ij",
    )
    interp = lambda f: jax.scipy.ndimage.map_coordinates(f, coords, order=1, mode="nearest")
    return jax.vmap(interp)(field)


class Normalized(eqx.Module):
    """Wraps a model to act on physical (un-normalised) data.

    `Normalized(model, x_normalizer, y_normalizer)(x) =
    y_normalizer.decode(model(x_normalizer.encode(x)))`. Either normaliser may be `None`
    (identity). Losses computed on the output of this wrapper are therefore in physical
    units, as in the FNO training scripts (which decode before the relative L2 loss).
    """

    model: Any
    x_normalizer: UnitGaussianNormalizer | None
    y_normalizer: UnitGaussianNormalizer | None

    def __init__(
        self,
        model: Any,
        x_normalizer: UnitGaussianNormalizer | None,
        y_normalizer: UnitGaussianNormalizer | None,
    ):
        """**Arguments:**

        - `model`: a callable module acting on ONE normalised sample.
        - `x_normalizer`: normaliser for the inputs, or `None`.
        - `y_normalizer`: normaliser for the outputs, or `None`.
        """
        for name, value in (("x_normalizer", x_normalizer), ("y_normalizer", y_normalizer)):
            if value is not None and not isinstance(value, UnitGaussianNormalizer):
                raise ValueError(
                    f"`Normalized` needs `{name}` to be a UnitGaussianNormalizer or None, got "
                    f"{type(value).__name__}."
                )
        self.model = model
        self.x_normalizer = x_normalizer
        self.y_normalizer = y_normalizer

    def __call__(self, x: Float[ArrayLike, "..."], **kwargs: Any) -> Float[Array, "..."]:
        """**Arguments:**

        - `x`: ONE input sample in physical units.
        - `**kwargs`: forwarded to the wrapped model (e.g. `key=`).

        **Returns:**

        The model's output in physical units.
        """
        if self.x_normalizer is not None:
            x = self.x_normalizer.encode(x)
        y = self.model(x, **kwargs)
        if self.y_normalizer is not None:
            y = self.y_normalizer.decode(y)
        return y


class NonTrainable(eqx.Module):
    """Marks a pytree as constant state that training must not change.

    [`sciml.train.trainable_filter`][] gives `False` for every leaf inside, so `train_step`,
    `init_optimizer`, `fit` and `sciml.pinn.solve` never differentiate, update or decay it.
    It is an ordinary pytree otherwise: `jax.jit`, `eqx.filter_*` and checkpoints see its
    leaves. The marker says nothing about gradients: a model that reads `value` should wrap
    it in `jax.lax.stop_gradient` so that plain `jax.grad` gives zero for it too.

    **Arguments:**

    - `value`: any pytree, e.g. batch statistics or RNG state of a wrapped Flax model.

    **Example:**

    ```python
    state = NonTrainable({"mean": jnp.zeros(3)})
    trainable_filter(state)  # NonTrainable(value={"mean": False})
    ```
    """

    value: PyTree


def _is_constant(x: Any) -> bool:
    return isinstance(x, UnitGaussianNormalizer | NonTrainable)


def trainable_filter(model: PyTree) -> PyTree[bool]:
    """Filter spec of the trainable parameters of `model`.

    **Arguments:**

    - `model`: any pytree (typically an `eqx.Module`).

    **Returns:**

    A pytree of the same structure with `bool` leaves: `True` for floating-point (inexact)
    arrays, `False` for everything else and for every leaf inside a
    [`sciml.train.UnitGaussianNormalizer`][] or a `NonTrainable`. Use it with `eqx.partition` /
    `eqx.filter`; `train_step` and `init_optimizer` use it by default.
    """

    def mark(x: Any) -> Any:
        if _is_constant(x):
            return jtu.tree_map(lambda _: False, x)
        return eqx.is_inexact_array(x)

    return jtu.tree_map(mark, model, is_leaf=_is_constant)
