"""Loss balancing by gradient norms and residual-based adaptive resampling."""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree


def grad_norm_weights(
    losses_fn: Callable[[PyTree], Mapping[str, Array]],
    params: PyTree,
    weights: Mapping[str, Float[ArrayLike, ""]],
    *,
    momentum: Float[ArrayLike, ""] = 0.9,
) -> dict[str, Array]:
    """One update of gradient-norm loss balancing (Wang, Teng & Perdikaris 2021; the form of
    Wang et al., "An expert's guide to training PINNs", 2023, eq. (4.2)).

    With `g_i = |grad_params L_i|`, the new weights are
    `w_i <- momentum * w_i + (1 - momentum) * (sum_j g_j) / g_i`, which equalises the
    gradient norms of the weighted terms. Call it every few hundred or thousand steps.

    **Arguments:**

    - `losses_fn`: `losses_fn(params) -> {name: scalar}`.
    - `params`: the trainable parameters.
    - `weights`: current weights by name.
    - `momentum`: exponential moving average factor in [0, 1).

    **Returns:** the new weights (no gradient flows through them).
    """
    grads = jax.jacrev(losses_fn)(params)
    norms = {name: optax.tree.norm(g) for name, g in grads.items()}
    total = sum(norms.values())
    tiny = jnp.finfo(total.dtype).tiny
    return {
        name: jax.lax.stop_gradient(
            momentum * weights[name] + (1 - momentum) * total / jnp.maximum(norms[name], tiny)
        )
        for name in weights
    }


def rad_resample(
    key: PRNGKeyArray,
    residual_fn: Callable[[Float[Array, "m dim"]], Array],
    candidates: Float[Array, "m dim"],
    n: int,
    *,
    k: float = 1.0,
    c: float = 1.0,
) -> Float[Array, "n dim"]:
    """Residual-based adaptive distribution (RAD; Wu et al., "A comprehensive study of
    non-adaptive and residual-based adaptive sampling for PINNs", 2023, eq. (2)).

    Draws `n` of the `candidates` without replacement with probability proportional to
    `|r|^k / mean(|r|^k) + c`: `k` sharpens the focus on large residuals, `c` keeps a uniform
    share (`c -> inf` is uniform sampling, `k = 1, c = 1` the paper's robust default).

    **Arguments:**

    - `key`: PRNG key.
    - `residual_fn`: residuals at a batch of points, shape `(m, ...)` (summed in square per
        point).
    - `candidates`: a dense pool, typically 10x `n` uniform points of the domain.
    - `n`: number of points to keep, at most `len(candidates)`.
    - `k`, `c`: the RAD exponents (`k >= 0`, `c >= 0`, not both zero).
    """
    m = candidates.shape[0]
    if not 0 < n <= m:
        raise ValueError(f"`n` must be in 1..{m} (the number of candidates), got {n}.")
    if k < 0 or c < 0 or (k == 0 and c == 0):
        raise ValueError(f"RAD needs k >= 0 and c >= 0, not both zero; got k={k}, c={c}.")
    r = residual_fn(candidates)
    size = jnp.sqrt(jnp.sum(jnp.reshape(r, (m, -1)) ** 2, axis=1))
    density = size**k
    p = density / jnp.maximum(jnp.mean(density), jnp.finfo(density.dtype).tiny) + c
    idx = jax.random.choice(key, m, (n,), replace=False, p=p / jnp.sum(p))
    return candidates[idx]
