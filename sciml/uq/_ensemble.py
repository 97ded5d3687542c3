"""Deep ensembles held as one model with stacked parameters, trained by one compiled step."""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._validate import check_int


def _check_members(num_members: Any) -> int:
    return check_int("num_members", num_members, 1)


class Ensemble(eqx.Module):
    """`num_members` models of one architecture, held as ONE model whose array leaves carry
    a leading member axis (a deep ensemble, Lakshminarayanan et al. 2017).

    Member `k` is `make_member(jax.random.split(key, num_members)[k])`: the members are built
    by `eqx.filter_vmap` over the keys, so they are exactly the models built one by one with
    those keys, and every call runs all of them in one vectorised program.

    Any model acting on one sample works as a member: `sciml.operators.FNO`, `MgNO`,
    `GridDeepONet`, or a model wrapped in `sciml.train.Normalized` (each member then holds
    a copy of the normalisers' statistics, which `trainable_filter` keeps frozen).

    Calling the ensemble on one sample `(channels, *spatial)` returns the `num_members`
    predictions `(num_members, out_channels, *spatial)`; `mean`, `std` and `mean_and_std`
    reduce them. Train it with `sciml.train.fit` (or `train_step`) and `ensemble_loss`,
    `per_member_data` and `ensemble_optimizer`: one compiled step updates every member, each
    with its own gradient, optimiser state and (with `per_member_data`) order of the data.
    """

    members: PyTree
    num_members: int = eqx.field(static=True)

    def __init__(
        self,
        make_member: Callable[[PRNGKeyArray], PyTree],
        num_members: int,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `make_member`: builds one member from a key, e.g.
            `lambda k: FNO(1, 1, modes=(12, 12), key=k)`. Its non-array leaves
            (hyperparameters) must not depend on the key.
        - `num_members`: the ensemble size K >= 1.
        - `key`: split into the K members' keys (`jax.random.split(key, K)`).
        """
        num_members = _check_members(num_members)
        keys = jax.random.split(key, num_members)
        self.members = eqx.filter_vmap(make_member)(keys)
        self.num_members = num_members

    def __call__(
        self, x: Float[ArrayLike, " in_channels *spatial"], **kwargs: Any
    ) -> Float[Array, " members out_channels *spatial"]:
        """**Arguments:**

        - `x`: ONE input sample, given to every member.
        - `**kwargs`: forwarded to every member.

        **Returns:**

        The members' predictions, stacked along a new leading axis.
        """
        return eqx.filter_vmap(lambda member: member(x, **kwargs))(self.members)

    def per_member(
        self, xs: Float[ArrayLike, " members in_channels *spatial"], **kwargs: Any
    ) -> Float[Array, " members out_channels *spatial"]:
        """Member `k` applied to `xs[k]` (each member its own sample): what `ensemble_loss`
        trains with.

        **Arguments:**

        - `xs`: one input sample per member, stacked.

        **Returns:**

        `stack([member_k(xs[k]) for k])`.
        """
        xs = jnp.asarray(xs)
        if xs.shape[:1] != (self.num_members,):
            raise ValueError(
                f"`Ensemble.per_member` needs `xs` with a leading axis of the "
                f"{self.num_members} members, got shape {xs.shape}."
            )
        return eqx.filter_vmap(lambda member, x: member(x, **kwargs))(self.members, xs)

    def mean(self, x: Float[ArrayLike, " in_channels *spatial"]) -> Float[Array, "..."]:
        """The ensemble's prediction for ONE sample: the mean over the members."""
        return jnp.mean(self(x), axis=0)

    def std(self, x: Float[ArrayLike, " in_channels *spatial"]) -> Float[Array, "..."]:
        """The spread of the members for ONE sample: their standard deviation (ddof=0; 0 for
        one member)."""
        return jnp.std(self(x), axis=0)

    def mean_and_std(
        self, x: Float[ArrayLike, " in_channels *spatial"]
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        """`(mean(x), std(x))` from one evaluation of the members."""
        preds = self(x)
        return jnp.mean(preds, axis=0), jnp.std(preds, axis=0)

    def member(self, k: int) -> PyTree:
        """Member `k` as a model of its own (its slice of every array leaf)."""
        if not -self.num_members <= k < self.num_members:
            raise ValueError(f"`Ensemble.member` needs 0 <= k < {self.num_members}, got k={k!r}.")
        return jtu.tree_map(lambda a: a[k] if eqx.is_array(a) else a, self.members)


def ensemble_loss(
    metric: Callable[[Array, Array], Float[Array, ""]], *, per_member: bool = False
) -> Callable[[Ensemble, Array, Array], Float[Array, ""]]:
    """The training loss of an `Ensemble`: the SUM over members of each member's mean batch
    loss.

    With a sum, the gradient with respect to member `k`'s parameters is exactly the gradient
    of its own loss, so (with an element-wise optimiser, or any optimiser through
    `ensemble_optimizer`) every member trains as it would alone; a mean would scale each
    member's gradient by 1/K, which changes e.g. weight decay added to the gradient.

    **Arguments:**

    - `metric`: a per-sample loss `metric(pred, target) -> scalar`, e.g.
        `sciml.train.relative_l2`.
    - `per_member`: `False`: every member sees the same batch `x`, `y` of shape
        `(batch, channels, *spatial)`. `True`: member `k` sees `x[:, k]`, `y[:, k]`, batches
        of shape `(batch, members, channels, *spatial)` as `per_member_data` gives them.

    **Returns:**

    `loss_fn(ensemble, x, y) -> scalar` for `fit` / `train_step`.
    """

    def loss_fn(model: Ensemble, x: ArrayLike, y: ArrayLike) -> Float[Array, ""]:
        x, y = jnp.asarray(x), jnp.asarray(y)
        if per_member:
            k = model.num_members
            if x.ndim < 2 or x.shape[1] != k or y.ndim < 2 or y.shape[1] != k:
                raise ValueError(
                    f"`ensemble_loss(per_member=True)` needs batches of shape (batch, {k}, "
                    f"...), one sample per member, got {x.shape} and {y.shape}."
                )
            per_sample = jax.vmap(jax.vmap(metric))(jax.vmap(model.per_member)(x), y)
        else:
            preds = jax.vmap(model)(x)  # (batch, members, *output)
            per_sample = jax.vmap(lambda p, t: jax.vmap(lambda q: metric(q, t))(p))(preds, y)
        return jnp.sum(jnp.mean(per_sample, axis=0))

    return loss_fn


def ensemble_metric(
    metric: Callable[[Array, Array], Float[Array, ""]],
) -> Callable[[Array, Array], Float[Array, ""]]:
    """A per-sample metric of an ensemble's mean prediction.

    **Arguments:**

    - `metric`: `metric(pred, target) -> scalar` for one sample.

    **Returns:**

    `metric(preds.mean(axis=0), target)` for the member predictions `preds`
    `(members, *output)` of one sample: use it in `fit(..., eval_metrics=...)` and
    `evaluate`, where the model is an `Ensemble`.
    """

    def of_mean(preds: Array, target: Array) -> Float[Array, ""]:
        return metric(jnp.mean(preds, axis=0), target)

    return of_mean


def ensemble_optimizer(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer` applied to each member separately (its `init` and `update` `jax.vmap`-ed
    over the leading member axis of every trainable leaf).

    Element-wise optimisers (SGD, Adam, weight decay) need no wrapping: they act on stacked
    parameters as on each member alone. Optimisers that mix entries of a leaf or of the whole
    tree (SOAP's preconditioners, clipping by global norm, L-BFGS) would couple the members;
    wrapped, each member gets its own state and update, as if trained alone.

    **Arguments:**

    - `optimizer`: an Optax gradient transformation for ONE member.

    **Returns:**

    The transformation for an `Ensemble`'s stacked parameters.
    """

    def init(params: PyTree) -> optax.OptState:
        return jax.vmap(optimizer.init)(params)

    def update(updates: PyTree, state: optax.OptState, params: PyTree | None = None):
        if params is None:
            return jax.vmap(lambda u, s: optimizer.update(u, s))(updates, state)
        return jax.vmap(optimizer.update)(updates, state, params)

    return optax.GradientTransformation(init, update)


class _PerMember:
    """A lazy host array `(n, members, *sample)` whose row `i` holds, for member `k`, row
    `orders[k, i]` of `array` (read in one sorted gather per batch, as h5py needs)."""

    def __init__(self, array: Any, orders: np.ndarray):
        self._array = array
        self._orders = orders
        self.shape = (orders.shape[1], orders.shape[0], *array.shape[1:])
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            if len(index) > 1:
                raise IndexError("per-member data are indexed by rows only")
            (index,) = index
        rows = self._orders[:, index]  # (members, batch) or (members,)
        wanted, inverse = np.unique(rows, return_inverse=True)
        read = np.asarray(self._array[wanted])
        return np.moveaxis(read[inverse.reshape(rows.shape)], 0, 1 if rows.ndim == 2 else 0)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)


def per_member_data(data: Sequence[Any], num_members: int, *, key: PRNGKeyArray) -> tuple[Any, ...]:
    """Gives each member of an `Ensemble` its own order of the training data.

    Member `k` sees the samples in the order of a permutation `p_k` (drawn from `key`), so
    when `fit` shuffles the rows by its own per-epoch permutation `s_e`, member `k` trains
    on the rows `p_k[s_e]`: every epoch still visits every sample once per member, and the
    members' batches differ. Nothing is copied: the returned arrays read their batches from
    `data` when indexed (NumPy, JAX or h5py arrays, or `sciml.data` on-disk arrays).

    **Arguments:**

    - `data`: host arrays with a leading sample axis of equal length, e.g. `(inputs,
        targets)`.
    - `num_members`: the ensemble size K.
    - `key`: draws the K permutations (`jax.random.permutation(jax.random.split(key, K)[k],
        n)`).

    **Returns:**

    Array-likes of shapes `(n, K, *sample)`, one per array of `data`, for `fit` with
    `ensemble_loss`. Member `k`'s order is also what `data[j][p_k]` gives.
    """
    num_members = _check_members(num_members)
    data = tuple(data)
    if not data or len({int(a.shape[0]) for a in data}) != 1:
        raise ValueError(
            "`per_member_data` needs arrays with a leading sample axis of equal length, got "
            f"shapes {[getattr(a, 'shape', None) for a in data]}."
        )
    n = int(data[0].shape[0])
    orders = member_orders(n, num_members, key=key)
    return tuple(_PerMember(a, orders) for a in data)


def member_orders(n: int, num_members: int, *, key: PRNGKeyArray) -> np.ndarray:
    """The permutations `per_member_data` uses: an integer array `(num_members, n)` whose row
    `k` is `jax.random.permutation(jax.random.split(key, num_members)[k], n)`."""
    keys = jax.random.split(key, _check_members(num_members))
    return np.stack([np.asarray(jax.random.permutation(k, n)) for k in keys])


def num_members_of(model: Any) -> int:
    """K for an `Ensemble`, 1 for any other model."""
    return model.num_members if isinstance(model, Ensemble) else 1
