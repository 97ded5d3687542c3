"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024)."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from jaxtyping import Array, Int, PyTree


class SoapState(NamedTuple):
    """The state of `soap`'s preconditioned Adam (a pytree of arrays).

    - `count`: steps taken.
    - `mu`, `nu`: Adam's first and second moments, in the rotated basis (`nu` real).
    - `factors`: per leaf, one Kronecker factor per axis (`None`: that axis is not rotated);
        `()` for the leaves that run plain Adam.
    - `bases`: per leaf, the eigenbasis of each factor (columns, by decreasing eigenvalue).
    """

    count: Int[Array, ""]
    mu: optax.Updates
    nu: optax.Updates
    factors: PyTree
    bases: PyTree


def _factor_dtype(dtype) -> Any:
    # `eigh` and `qr` need at least single precision (bfloat16 leaves get float32 factors).
    return jnp.promote_types(dtype, jnp.float32)


def _rotate(x: Array, bases: tuple, *, back: bool = False) -> Array:
    """`x` with each rotated axis `i` multiplied by `Q_i^H` (into the eigenbasis) or, with
    `back`, by `Q_i` (out of it): for a matrix, `Q_L^H x conj(Q_1)` = `Q_L^H x Q_R`, see
    `_gram`. One einsum over every axis."""
    letters = string.ascii_letters
    operands, subscripts, out = [x], [letters[: x.ndim]], list(letters[: x.ndim])
    for i, q in enumerate(bases):
        if q is None:
            continue
        new = letters[x.ndim + i]
        operands.append(q if back else q.conj())
        subscripts.append(letters[i] + new if not back else new + letters[i])
        out[i] = new
    if len(operands) == 1:
        return x
    return jnp.einsum(",".join(subscripts) + "->" + "".join(out), *operands)


def _abs_sq(x: Array) -> Array:
    return x**2 if jnp.isrealobj(x) else (x.conj() * x).real


def _gram(g: Array, axis: int) -> Array:
    """`G_(i) G_(i)^H` of the mode-`axis` unfolding: `F[a, b] = sum g[..a..] conj(g[..b..])`.

    For a matrix, axis 0 gives Shampoo's `L = G G^H` and axis 1 gives `conj(R)` with
    `R = G^H G`; its eigenvectors are `conj(Q_R)`, which `_rotate` conjugates back."""
    others = [k for k in range(g.ndim) if k != axis]
    return jnp.tensordot(g, g.conj(), axes=(others, others))


def _eigenbasis(factor: Array) -> Array:
    # `eigh` orders eigenvalues ascending; the bases hold them descending (as the paper's code).
    return jnp.flip(jnp.linalg.eigh(factor)[1], axis=1)


def _power_step(factor: Array, basis: Array, nu: Array, axis: int) -> tuple[Array, Array]:
    """One step of QR power iteration `Q <- qr(F Q)` after ordering `Q`'s columns by their
    estimated eigenvalues `diag(Q^H F Q)`, descending; `nu` is permuted alike along `axis`
    (Vyas et al. 2024, Algorithm 4)."""
    estimate = jnp.real(jnp.einsum("ai,ab,bi->i", basis.conj(), factor, basis))
    order = jnp.argsort(-estimate)
    basis = basis[:, order]
    return jnp.linalg.qr(factor @ basis)[0], jnp.take(nu, order, axis=axis)


def _precondition_init(x: Array, max_precond_dim: Any) -> tuple[tuple, tuple]:
    if x.ndim < 2:
        return (), ()
    dtype = _factor_dtype(x.dtype)
    factors = tuple(jnp.zeros((d, d), dtype) if d <= max_precond_dim else None for d in x.shape)
    bases = tuple(None if f is None else jnp.eye(f.shape[0], dtype=dtype) for f in factors)
    return factors, bases


def _scale_by_soap(
    b1: Any,
    b2: Any,
    eps: Any,
    precondition_frequency: Any,
    max_precond_dim: Any,
    shampoo_beta: Any,
) -> optax.GradientTransformation:
    """SOAP's direction (Adam's in the rotated basis), before the learning rate."""

    def init_fn(params):
        def real_zeros(x):
            return jnp.zeros(x.shape, jnp.finfo(x.dtype).dtype)

        # The structure of `factors` decides which axes rotate: `update_fn` reads it rather
        # than `max_precond_dim`, which `optax.inject_hyperparams` turns into an array.
        leaves, treedef = jax.tree.flatten(params)
        pre = [_precondition_init(x, max_precond_dim) for x in leaves]
        return SoapState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(real_zeros, params),
            factors=treedef.unflatten([f for f, _ in pre]),
            bases=treedef.unflatten([q for _, q in pre]),
        )

    def update_fn(updates, state, params=None):
        del params
        beta = b2 if shampoo_beta is None else shampoo_beta
        count = optax.safe_increment(state.count)
        grads, treedef = jax.tree.flatten(updates)
        mu, nu, bases, factors = (
            treedef.flatten_up_to(t) for t in (state.mu, state.nu, state.bases, state.factors)
        )
        factors = [
            tuple(
                None if f is None else beta * f + (1 - beta) * _gram(g.astype(f.dtype), i)
                for i, f in enumerate(fs)
            )
            for g, fs in zip(grads, factors, strict=True)
        ]
        # The first step only estimates the bases (as the paper's code): `eigh` of the first
        # gradient's factors. A basis from the very gradient it rotates would make `G'`
        # diagonal up to rounding, and Adam would blow that rounding up to full-size steps.
        first = count == 1
        bases = jax.lax.cond(
            first,
            lambda fs, qs: jax.tree.map(_eigenbasis, fs),
            lambda fs, qs: qs,
            factors,
            bases,
        )
        # Adam on the rotated gradient, in `optax.scale_by_adam`'s arithmetic; a leaf with a
        # rotated axis makes no step at the first call, and counts its steps from the second.
        directions = []
        for k, (g, qs) in enumerate(zip(grads, bases, strict=True)):
            rotates = any(q is not None for q in qs)
            t = jnp.maximum(count - 1, 1) if rotates else count
            rotated = _rotate(g, qs).astype(mu[k].dtype)
            m = (1 - b1) * rotated + b1 * mu[k]
            v = (1 - b2) * _abs_sq(rotated).astype(nu[k].dtype) + b2 * nu[k]
            m_hat = m / (1 - b1**t).astype(m.dtype)
            v_hat = v / (1 - b2**t).astype(v.dtype)
            direction = _rotate(m_hat / (jnp.sqrt(v_hat) + eps), qs, back=True)
            if rotates:
                m, v = jnp.where(first, mu[k], m), jnp.where(first, nu[k], v)
                direction = jnp.where(first, 0, direction)
            mu[k], nu[k] = m, v
            directions.append(direction)

        def refresh(mu, nu, bases):
            # One QR power step per factor (the factors already hold this step's gradient);
            # `mu` is carried into the new basis through the parameter space, `nu` is kept
            # (permuted with the basis' columns).
            out = []
            for m, v, fs, qs in zip(mu, nu, factors, bases, strict=True):
                unrotated, qs = _rotate(m, qs, back=True), list(qs)
                for i, f in enumerate(fs):
                    if f is not None:
                        qs[i], v = _power_step(f, qs[i], v, i)
                out.append((_rotate(unrotated, tuple(qs)).astype(m.dtype), v, tuple(qs)))
            return tuple(list(x) for x in zip(*out, strict=True)) if out else ([], [], [])

        mu, nu, bases = jax.lax.cond(
            ~first & ((count - 1) % precondition_frequency == 0),
            refresh,
            lambda mu, nu, bases: (mu, nu, bases),
            mu,
            nu,
            bases,
        )
        new_state = SoapState(
            count=count,
            mu=treedef.unflatten(mu),
            nu=treedef.unflatten(nu),
            factors=treedef.unflatten(factors),
            bases=treedef.unflatten(bases),
        )
        directions = [d.astype(g.dtype) for d, g in zip(directions, grads, strict=True)]
        return treedef.unflatten(directions), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _check(name: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    # Only Python numbers are checked: `optax.inject_hyperparams` passes arrays (traced ones
    # inside `update`).
    if isinstance(value, (int, float)) and not ok(value):
        raise ValueError(f"`soap`'s `{name}` must be {allowed}, got {value!r}.")


def soap(
    learning_rate: optax.ScalarOrSchedule,
    b1: ArrayLike = 0.95,
    b2: ArrayLike = 0.95,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    precondition_frequency: ArrayLike = 10,
    max_precond_dim: ArrayLike = 10000,
    shampoo_beta: ArrayLike | None = None,
) -> optax.GradientTransformation:
    """SOAP (Vyas et al. 2024): Adam run in the eigenbasis of Shampoo's preconditioner.

    For a matrix leaf with gradient `G` (`m x n`), Shampoo's Kronecker factors
    `L <- beta L + (1 - beta) G G^H` and `R <- beta R + (1 - beta) G^H G` are kept, with their
    eigenbases `Q_L`, `Q_R`. Adam's moments live in the rotated space: with
    `G' = Q_L^H G Q_R`, `m' <- b1 m' + (1 - b1) G'`, `v' <- b2 v' + (1 - b2) |G'|^2`, and the
    update is `-lr (Q_L (m'_hat / (sqrt(v'_hat) + eps)) Q_R^H + weight_decay * params)`,
    with Adam's bias corrections `m'_hat = m' / (1 - b1^t)`, `v'_hat = v' / (1 - b2^t)` and
    decoupled weight decay (as `optax.adamw`).

    **The bases.** As in the paper's code, the first step only sets the factors and computes
    the bases with `eigh` (descending eigenvalues); the leaf does not move (its Adam count
    starts at the second step). A basis taken from the very gradient it rotates would make
    `G'` diagonal up to rounding, which Adam's normalisation would blow up into full-size
    steps along meaningless directions. After every `precondition_frequency` Adam steps the
    bases are refreshed by one step of QR power iteration, `Q <- qr(F Q)`, after ordering
    `Q`'s columns by their estimated eigenvalues `diag(Q^H F Q)` (the paper's Algorithm 4 and
    code), rather than by `eigh`: far cheaper on accelerators, and the new basis stays close
    to the old one, so that keeping `v'` per coordinate (permuted with the columns) stays
    meaningful, where `eigh` may reorder, flip or mix near-degenerate eigenvectors from one
    refresh to the next. When the basis changes, `m'` is rotated into the new one (through
    the parameter space); `v'` is kept. Both run under `jax.lax.cond`: one jittable update.

    **Which leaves.** Leaves with fewer than two axes (biases, scalars) run plain Adam, as in
    the paper. Leaves with more axes are preconditioned axis by axis, as in the paper's
    code: one factor `F_i = G_(i) G_(i)^H` per axis `i` (the mode-`i` unfolding), and `G'`
    multiplies every axis by its `Q_i^H`; for a matrix this is exactly the two-sided form
    above, and factors stay small (an FNO weight `(in, out, k1, k2)` gets four small ones,
    where merging trailing axes would give one of size `out k1 k2`). An axis longer than
    `max_precond_dim` is not rotated (its factor is the identity); with every axis so
    (e.g. `max_precond_dim=0`) `soap` is exactly `optax.adamw(learning_rate, b1, b2, eps,
    weight_decay=weight_decay)`. Complex leaves (FNO spectral weights) are rotated with
    Hermitian factors (`eigh` of a Hermitian matrix, unitary `Q`, conjugate transposes);
    `v'` holds `|G'|^2` and is real.

    Differences from the paper's PyTorch code, so that the identity case equals Adam exactly:
    leaves that rotate nothing move at the first step too; `eps` is added after the bias
    correction of `v'` (as Optax's Adam).

    The state (`SoapState` inside Optax's chain) is a pytree of arrays with a step counter;
    it checkpoints with `sciml.train.save_checkpoint` and resumes bit for bit. Works with
    `optax.inject_hyperparams(soap)(learning_rate=...)`; which axes rotate is fixed by
    `init` from the shapes, so `max_precond_dim` may be injected too.

    **Arguments:**

    - `learning_rate`: a float or an Optax schedule (of the step count).
    - `b1`, `b2`: Adam's moment decay rates (the paper's defaults 0.95, 0.95).
    - `eps`: Adam's denominator offset.
    - `weight_decay`: decoupled weight decay (times the learning rate).
    - `precondition_frequency`: steps between refreshes of the bases.
    - `max_precond_dim`: axes longer than this are not rotated.
    - `shampoo_beta`: decay of the Kronecker factors (default `b2`).

    **Returns:** an `optax.GradientTransformation`; its `update` needs `params` when
    `weight_decay` is not `0`.

    **Reference:** N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson,
    S. Kakade, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321 (2024).
    """
    for name, value in (("b1", b1), ("b2", b2), ("shampoo_beta", shampoo_beta)):
        _check(name, value, lambda x: 0 <= x < 1, "in [0, 1)")
    _check("eps", eps, lambda x: x >= 0, ">= 0")
    _check("weight_decay", weight_decay, lambda x: x >= 0, ">= 0")
    _check("max_precond_dim", max_precond_dim, lambda x: x >= 0, ">= 0")
    _check(
        "precondition_frequency",
        precondition_frequency,
        lambda x: isinstance(x, int) and x >= 1,
        "an integer >= 1",
    )
    direction = _scale_by_soap(b1, b2, eps, precondition_frequency, max_precond_dim, shampoo_beta)
    no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0
    return optax.chain(
        direction,
        *([] if no_decay else [optax.add_decayed_weights(weight_decay)]),
        optax.scale_by_learning_rate(learning_rate),
    )
