"""Gradient alignment between loss terms: why a physics-informed run stalls."""

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from ..train import trainable_filter
from ._problem import Problem


def gradient_alignment(
    problem: Problem,
    model: Callable,
    points: Mapping[str, Array],
    weights: Mapping[str, Float[ArrayLike, ""]] | None = None,
    *,
    filter_spec: PyTree[bool] | None = None,
) -> dict[str, Array | dict]:
    """How well the gradients of a problem's loss terms agree (Wang et al., "Gradient
    alignment in physics-informed neural networks: a second-order optimization perspective",
    NeurIPS 2025).

    With `g_i = w_i grad_params L_i` the weighted gradient of term `i` (all trainable leaves
    together, one reverse pass for all terms as in `grad_norm_weights`) and `u_i = g_i / |g_i|`,
    the alignment score of the `n` terms is

    `A = 2 |(u_1 + ... + u_n) / n|^2 - 1 = (2 / n^2) sum_ij cos(g_i, g_j) - 1`,

    in `[-1, 1]`: `1` when all gradients point the same way, `-1` when their unit vectors
    cancel. For two terms `|(u_1 + u_2) / 2|^2 = (1 + cos) / 2`, so `A = cos(g_1, g_2)`.
    A score near `-1` means a step that lowers one term raises another: first-order methods
    stall there. Cosines and the score do not change when a weight is scaled by a positive
    factor; the norms do. A term whose gradient is zero (e.g. weight 0) counts with `u_i = 0`:
    its cosines are 0 and it lowers `A` by the formula above, never to NaN.

    Pure and cheap (one gradient per term): call it every few hundred steps from a training
    loop, under `eqx.filter_jit` if the loop is compiled, and `alignment_record` turns the
    result into metric entries.

    **Arguments:**

    - `problem`: the `Problem`; its `losses` are the terms.
    - `model`: the model `u` (any coordinate model or `HardConstraint`, `Parameterized`).
    - `points`: points by term name, as `Problem.sample` returns them.
    - `weights`: positive weights by term name (every term of `problem.terms`); default 1.
    - `filter_spec`: the trainable leaves (default `sciml.train.trainable_filter(model)`).

    **Returns:** a dict of JAX scalars: `"alignment"` (the score `A`), `"grad_norm"` (the norm
    `|g_i|` by term) and `"cosine"` (`cos(g_i, g_j)` keyed by name pairs `(a, b)`, `a` before
    `b` in `problem.terms`).
    """
    terms = problem.terms
    if weights is None:
        weights = {name: 1.0 for name in terms}
    elif set(weights) != set(terms):
        raise ValueError(
            f"`weights` must have exactly the keys {list(terms)}, got {list(weights)}."
        )
    spec = trainable_filter(model) if filter_spec is None else filter_spec
    params, static = eqx.partition(model, spec)

    def weighted(p):
        losses = problem.losses(eqx.combine(p, static), points)
        return jnp.stack([weights[name] * losses[name] for name in terms])

    # Every leaf gets a leading axis of length n (one row per term); the Gram matrix of the
    # gradients is the sum over leaves of the rows' inner products.
    grads = jax.jacrev(weighted)(params)
    n = len(terms)
    rows = [jnp.reshape(g, (n, -1)) for g in jax.tree.leaves(grads)]
    gram = sum(r @ r.T for r in rows)
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0))
    tiny = jnp.finfo(gram.dtype).tiny
    # Dividing by the norms' product, not normalising first: a zero gradient gives 0, not NaN;
    # the clip removes rounding past +-1 of nearly (anti)parallel gradients.
    cos = jnp.clip(gram / jnp.maximum(norms[:, None] * norms[None, :], tiny), -1, 1)
    # 2 |mean_i u_i|^2 - 1 with |mean_i u_i|^2 = mean_ij u_i . u_j.
    score = 2 * jnp.mean(cos) - 1
    return {
        "alignment": score,
        "grad_norm": {name: norms[i] for i, name in enumerate(terms)},
        "cosine": {
            (a, b): cos[i, j] for i, a in enumerate(terms) for j, b in enumerate(terms) if i < j
        },
    }


def alignment_record(alignment: Mapping[str, Array | dict]) -> dict[str, float]:
    """The result of `gradient_alignment` as flat metric entries (e.g. for `metrics.jsonl`):
    `alignment`, `grad_norm_<term>` and `cos_<a>_<b>`, as Python floats."""
    record = {"alignment": float(alignment["alignment"])}
    record.update({f"grad_norm_{k}": float(v) for k, v in alignment["grad_norm"].items()})
    record.update({f"cos_{a}_{b}": float(v) for (a, b), v in alignment["cosine"].items()})
    return record
