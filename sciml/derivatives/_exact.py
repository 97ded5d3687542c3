"""Exact differential operators of scalar fields from Taylor-mode jets: Laplacian, Hessian
diagonal, biharmonic operator, divergence of a vector field, and arbitrary linear combinations of
partial derivatives."""

import functools
import math
import numbers
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._forward_laplacian import forward_laplacian
from ._taylor import (
    check_chunk_size,
    check_output,
    check_point,
    map_over_chunks,
    sum_over_chunks,
    taylor_derivative,
)


def _basis(i: Array, d: int, dtype) -> Array:
    return jax.nn.one_hot(i, d, dtype=dtype)


def _second(f, x: Array, i: Array) -> Array:
    """d^2 f / dx_i^2: one second-order jet along e_i."""
    return taylor_derivative(f, x, (_basis(i, x.shape[0], x.dtype),), 2)


def _check_scalar_field(name: str, f, x: Array) -> None:
    check_output(name, f, x, (), "a scalar")


def laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    method: str = "auto",
    chunk_size: int | None = None,
) -> Float[Array, ""]:
    r"""The exact Laplacian $\Delta f(x) = \sum_i \partial^2 f / \partial x_i^2$, without forming
    the Hessian.

    - `method="taylor"`: one second-order Taylor-mode jet along each coordinate direction `e_i`
        (`sum_i taylor_derivative(f, x, (e_i,), 2)`), vmapped over the directions; the primal
        computation is not batched by the vmap, so it is shared by all `d` jets.
    - `method="forward"`: the forward Laplacian (see `forward_laplacian`), which sums the
        directions as it goes and skips everything that does not depend on `x`; it supports the
        primitives a PINN network is made of and raises `NotImplementedError` on others.
    - `method="auto"`: the forward Laplacian, or Taylor mode when `f` uses a primitive the
        forward Laplacian has no rule for (decided while tracing, at no run-time cost).

    The choice of `"auto"` is measured: `jax.jit` of `jax.grad` (over the parameters) of the mean
    squared Laplacian of a tanh MLP (4 hidden layers of width 128, float32) at 100 points under
    `jax.vmap`, on a shared 2-core CPU; iterations per second, Taylor / forward:

    | d      | Taylor | forward | forward / Taylor |
    |--------|--------|---------|------------------|
    | 1      | 407    | 550     | 1.4x             |
    | 2      | 280    | 507     | 1.8x             |
    | 10     | 35     | 93      | 2.7x             |
    | 100    | 2.3    | 5.4     | 2.3x             |
    | 1000   | 0.14   | 0.34    | 2.5x             |
    | 10000* | 0.22   | 0.69    | 3.2x             |

    (*4 points instead of 100; with `chunk_size=1000`, 0.24 / 1.27.) The forward Laplacian is
    faster at every dimension tried, so there is no crossover: `"auto"` uses it whenever it can.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `method`: `"auto"`, `"taylor"` or `"forward"`.
    - `chunk_size`: if given, the `d` directions are processed `chunk_size` at a time (under
        `jax.lax.map`, each chunk rematerialised in reverse mode), which bounds memory at large
        `d` for a modest cost in speed.

    **Returns:** a scalar.

    **References:** Shi, Z., Hu, Z., Lin, M., Kawaguchi, K., "Stochastic Taylor Derivative
    Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    Li, R. et al., "A computational framework for neural network-based variational Monte Carlo
    with Forward Laplacian", Nature Machine Intelligence 6 (2024), arXiv:2307.08214.
    """
    x = check_point("laplacian", x)
    check_chunk_size("laplacian", chunk_size)
    if method not in ("auto", "taylor", "forward"):
        raise ValueError(
            f'`laplacian`: `method` must be "auto", "taylor" or "forward", got {method!r}.'
        )
    _check_scalar_field("laplacian", f, x)
    (d,) = x.shape
    if method in ("forward", "auto"):
        try:
            return forward_laplacian(f, x, chunk_size=chunk_size)
        except NotImplementedError:
            if method == "forward":
                raise
    return sum_over_chunks(
        lambda idx: jnp.sum(jax.vmap(lambda i: _second(f, x, i))(idx)), d, chunk_size
    )


def hessian_diagonal(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, " d"]:
    r"""The diagonal of the Hessian, $\partial^2 f / \partial x_i^2$ for every `i`, from one
    second-order jet per coordinate direction (vmapped), without forming the Hessian.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `chunk_size`: if given, the directions are processed `chunk_size` at a time.

    **Returns:** an array of shape `(d,)`.

    **References:** Shi, Z., Hu, Z., Lin, M., Kawaguchi, K., "Stochastic Taylor Derivative
    Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """
    x = check_point("hessian_diagonal", x)
    check_chunk_size("hessian_diagonal", chunk_size)
    _check_scalar_field("hessian_diagonal", f, x)
    return map_over_chunks(lambda i: _second(f, x, i), x.shape[0], chunk_size)


def _pair(k: Array, d: int) -> tuple[Array, Array]:
    """The `k`-th of the `d (d - 1) / 2` unordered pairs `{i, j}`, `i != j`, of `range(d)`.

    Pairs at cyclic distance `s = 1, ..., (d - 1) // 2` come first, `d` of each, as
    `(i, (i + s) mod d)`; for even `d` the `d / 2` pairs at distance `d / 2` follow. Integer
    arithmetic only, so no index table of size `d^2` is stored.
    """
    m = (d - 1) // 2
    i_near = k % d
    j_near = (i_near + k // d + 1) % d
    i_far = k - d * m
    j_far = i_far + d // 2
    near = k < d * m
    return jnp.where(near, i_near, i_far), jnp.where(near, j_near, j_far)


def biharmonic(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, ""]:
    r"""The exact biharmonic operator $\Delta^2 f(x) = \sum_{i,j} \partial_i^2 \partial_j^2 f$
    from fourth-order jets, without forming any fourth-order tensor.

    With `T = D^4 f(x)`, `P_ij = T[(e_i + e_j)^4]` (one fourth-order jet along `e_i + e_j`)
    expands to `f_iiii + f_jjjj + 4 (f_iiij + f_ijjj) + 6 f_iijj`, so

    `6 sum_{i<j} f_iijj = sum_{i<j} P_ij - (d - 1) S - 4 Q`,

    with `S = sum_i f_iiii` (fourth-order jets along `e_i`) and
    `Q = sum_{i != j} f_iiij = sum_i T[e_i, e_i, e_i, 1 - e_i]` (for each `i`, a forward-mode
    derivative along `1 - e_i` of the third-order jet along `e_i`). Hence

    `Delta^2 f = ((4 - d) S + sum_{i<j} P_ij - 4 Q) / 3`.

    Cost: `d (d - 1) / 2` fourth-order jets for the pairs plus `d` fourth-order jets and `d`
    differentiated third-order jets for `S` and `Q`, about `d^2 / 2 + 2 d` fourth-order jets.
    For comparison, writing the biharmonic operator as a combination of fourth powers
    `sum_m c_m T[v_m^4]` alone takes at least `d (d + 1) / 2` jets (the rank of its symmetric
    `d^2 x d^2` flattening), and full polarization (`P_ij` and `T[(e_i - e_j)^4]` for all pairs)
    takes `d^2`. Subtracting `S` and `Q` cancels terms of the size of the individual fourth
    derivatives; on tanh MLPs the float32 result stayed within a relative 1e-6 of the float64
    one for `d` up to 200.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `chunk_size`: if given, the pairs and the coordinates are processed `chunk_size` at a time
        (rematerialised in reverse mode), to bound memory at large `d`.

    **Returns:** a scalar.

    **References:** Shi, Z., Hu, Z., Lin, M., Kawaguchi, K., "Stochastic Taylor Derivative
    Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """
    x = check_point("biharmonic", x)
    check_chunk_size("biharmonic", chunk_size)
    _check_scalar_field("biharmonic", f, x)
    (d,) = x.shape
    ones = jnp.ones_like(x)

    def diagonal(i):
        e = _basis(i, d, x.dtype)
        s = taylor_derivative(f, x, (e,), 4)
        if d == 1:
            return 3.0 * s
        _, q = jax.jvp(lambda y: taylor_derivative(f, y, (e,), 3), (x,), (ones - e,))
        return (4 - d) * s - 4.0 * q

    def pair(k):
        i, j = _pair(k, d)
        return taylor_derivative(f, x, (_basis(i, d, x.dtype) + _basis(j, d, x.dtype),), 4)

    total = sum_over_chunks(lambda idx: jnp.sum(jax.vmap(diagonal)(idx)), d, chunk_size)
    if d > 1:
        num_pairs = d * (d - 1) // 2
        total = total + sum_over_chunks(
            lambda ks: jnp.sum(jax.vmap(pair)(ks)), num_pairs, chunk_size
        )
    return total / 3.0


def divergence(
    F: Callable[[Float[Array, " d"]], Float[Array, " d"]],
    x: Float[ArrayLike, " d"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, ""]:
    r"""The divergence $\nabla \cdot F(x) = \sum_i \partial F_i / \partial x_i$ of a vector field
    `F: R^d -> R^d`, from one forward-mode derivative (`jax.jvp`) per coordinate direction,
    keeping entry `i` of the `i`-th. No Jacobian is stored beyond the `(chunk, d)` block of
    tangents that the vmap of the jvps produces.

    **Arguments:**

    - `F`: vector field of one point, returning shape `(d,)`.
    - `x`: the point, shape `(d,)`.
    - `chunk_size`: if given, the directions are processed `chunk_size` at a time, bounding the
        tangent block to `(chunk_size, d)`.

    **Returns:** a scalar.
    """
    x = check_point("divergence", x)
    check_chunk_size("divergence", chunk_size)
    (d,) = x.shape
    check_output("divergence", F, x, (d,), f"an array of shape ({d},) (one entry per input)")

    def entry(i):
        _, tangent = jax.jvp(F, (x,), (_basis(i, d, x.dtype),))
        return tangent[i]

    return sum_over_chunks(lambda idx: jnp.sum(jax.vmap(entry)(idx)), d, chunk_size)


# --- general linear differential operators -------------------------------------------------------

# Longest single jet `differential_operator` uses for a mixed partial derivative; beyond it, nested
# jets. A jet of order n costs O(n^2) per primitive (Cauchy products of n-term series), while
# nested pure-power jets cost about the product of their individual costs, which grows much more
# slowly with the total order. Measured (float32, tanh MLP 5 -> 64 -> 64 -> 64 -> 1, 256 points,
# ms per call, nested vs one jet of order n; d_01 is d^2 f / dx_0 dx_1 and so on):
# d_01: 1.9 vs 1.7 (n=5); d_001: 2.2 vs 2.8 (n=7); d_0001: 3.5 vs 6.8 (n=11);
# d_0011: 5.8 vs 14.8 (n=14); d_012: 3.0 vs 23 (n=17). Only the order-5 jet for d_ij pays off.
_MAX_JET_ORDER = 5


def _num_solutions(slots: tuple[int, ...], n: int) -> int:
    """Number of non-negative integer vectors `b` with `sum_j b_j slots_j = n`."""
    ways = [1] + [0] * n
    for s in slots:
        for v in range(s, n + 1):
            ways[v] += ways[v - s]
    return ways[n]


@functools.cache
def _jet_plan(pattern: tuple[int, ...], max_order: int) -> tuple[tuple[int, ...], int, int] | None:
    """Slots for a single jet computing a partial derivative with multiplicities `pattern`.

    Coordinate `j` (multiplicity `a_j`) goes in slot `s_j`, distinct slots; the jet of order
    `n = sum_j a_j s_j` is, by Faa di Bruno's formula, the sum over the set partitions of
    `{1..n}` whose blocks have sizes among the slots, each block of size `s_j` contributing
    `e_{i_j}`. If `b = a` is the only non-negative solution of `sum_j b_j s_j = n`, only the
    partitions with `a_j` blocks of size `s_j` survive, and there are
    `n! / prod_j (s_j!^{a_j} a_j!)` of them, each giving the wanted derivative.

    Returns `(slots, n, multiplicity)` with the smallest `n <= max_order`, or None. Slot 1 only
    works for a single coordinate (with it, `b = (n, 0, ...)` always solves the equation).
    """
    m = len(pattern)
    if m == 1:
        return (1,), pattern[0], 1
    best: list = [None]

    def search(j: int, used: tuple[int, ...], n: int) -> None:
        if best[0] is not None and n >= best[0][1]:
            return
        if j == m:
            if _num_solutions(used, n) == 1:
                best[0] = (used, n)
            return
        remaining = sum(pattern[j + 1 :]) * 2
        s = 2
        while n + pattern[j] * s + remaining <= max_order:
            if s not in used:
                search(j + 1, (*used, s), n + pattern[j] * s)
            s += 1

    search(0, (), 0)
    if best[0] is None:
        return None
    slots, n = best[0]
    count = math.factorial(n)
    for a, s in zip(pattern, slots, strict=True):
        count //= math.factorial(s) ** a * math.factorial(a)
    return slots, n, count


def _partial_by_jet(f, x: Array, coords: Array, slots: tuple[int, ...], n: int, count: int):
    d = x.shape[0]
    tangents: list = [None] * max(slots)
    for c, s in zip(coords, slots, strict=True):
        tangents[s - 1] = _basis(c, d, x.dtype)
    return taylor_derivative(f, x, tangents, n) / float(count)


def _partial_by_nested_jets(f, x: Array, coords: Array, pattern: tuple[int, ...]):
    """`d^a_1 / dx_{c_1}^a_1 ... d^a_m / dx_{c_m}^a_m f`: a pure-power jet in `c_m` of a pure-power
    jet in `c_{m-1}` ... of `f` (each level is exact; jets of jets compose)."""
    d = x.shape[0]
    g = f
    for c, a in zip(coords, pattern, strict=True):
        g = functools.partial(_jet_of, g, _basis(c, d, x.dtype), a)
    return g(x)


def _jet_of(g, direction, order, y):
    return taylor_derivative(g, y, (direction,), order)


def _check_terms(terms, d: int) -> tuple[list, list]:
    """Validated `terms` as a list of (multi-index, coefficient), and any order-0 coefficients."""
    if not isinstance(terms, Mapping) or not terms:
        raise ValueError(
            "`differential_operator`: `terms` must be a non-empty dict mapping multi-index tuples "
            f"to coefficients, got {terms!r}."
        )
    parsed, order0 = [], []
    for alpha, c in terms.items():
        ok = (
            isinstance(alpha, tuple)
            and len(alpha) == d
            and all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) and a >= 0
                for a in alpha
            )
        )
        if not ok:
            raise ValueError(
                f"`differential_operator`: every key of `terms` must be a tuple of {d} "
                f"non-negative ints (one per coordinate of `x`), got {alpha!r}."
            )
        is_number = isinstance(c, numbers.Real) and not isinstance(c, bool)
        is_scalar_array = isinstance(c, jax.Array | np.ndarray | np.generic) and np.ndim(c) == 0
        if not (is_number or is_scalar_array):
            raise ValueError(
                f"`differential_operator`: the coefficient of {alpha!r} in `terms` must be a real "
                f"number or a scalar array, got {c!r}."
            )
        alpha = tuple(int(a) for a in alpha)
        if sum(alpha) == 0:
            order0.append(c)
        else:
            parsed.append((alpha, c))
    return parsed, order0


def differential_operator(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    terms: Mapping[tuple[int, ...], float | Float[ArrayLike, ""]],
) -> Float[Array, ""]:
    r"""The exact value of a linear differential operator with constant coefficients,
    $\sum_k c_k \partial^{\alpha_k} f(x)$.

    `terms` maps multi-indices `alpha` (tuples of `d` non-negative ints: how many times to
    differentiate along each coordinate) to coefficients `c`, e.g. `{(2, 0): 1.0, (0, 2): 1.0}`
    for the 2-D Laplacian or `{(1, 1, 0): 2.0}` for `2 d^2 f / dx_0 dx_1`. The all-zero
    multi-index means `c f(x)`.

    Each partial derivative is one jet. A pure power `d^a f / dx_i^a` is the order-`a` jet along
    `e_i`. A mixed one, coordinates `i_1, ..., i_m` with multiplicities `a_1, ..., a_m`, uses the
    construction of Shi et al.: `e_{i_j}` goes in a distinct jet slot `s_j`, the jet order is
    `n = sum_j a_j s_j`, and when `a` is the only solution `b >= 0` of `sum_j b_j s_j = n` the
    order-`n` jet equals `n! / prod_j (s_j!^{a_j} a_j!)` times the derivative (e.g.
    `d^2 f / dx_i dx_j` is the order-5 jet with `e_i` in slot 2 and `e_j` in slot 3, divided by
    10). The slots minimising `n` are searched once per multiplicity pattern; because a jet of
    order `n` costs `O(n^2)` per primitive, only jets up to order 5 are used, and other mixed
    derivatives are nested jets (a pure-power jet in one coordinate of a pure-power jet in
    another, and so on), which are exact too. Terms with the same multiplicity pattern are
    evaluated together under one `jax.vmap`.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `terms`: dict from multi-index tuples of length `d` to real coefficients (Python numbers
        or scalar arrays, which may be traced, e.g. learned PDE coefficients).

    **Returns:** a scalar.

    **References:** Shi, Z., Hu, Z., Lin, M., Kawaguchi, K., "Stochastic Taylor Derivative
    Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """
    x = check_point("differential_operator", x)
    (d,) = x.shape
    parsed, order0 = _check_terms(terms, d)
    _check_scalar_field("differential_operator", f, x)

    groups: dict[tuple[int, ...], tuple[list, list]] = {}
    for alpha, c in parsed:
        # Coordinates by decreasing multiplicity (ties by index): the pattern is then canonical.
        support = sorted((i for i in range(d) if alpha[i]), key=lambda i: (-alpha[i], i))
        pattern = tuple(alpha[i] for i in support)
        coords, coeffs = groups.setdefault(pattern, ([], []))
        coords.append(support)
        coeffs.append(c)

    total = jnp.zeros((), x.dtype)
    if order0:
        total = total + sum(jnp.asarray(c, x.dtype) for c in order0) * f(x)
    for pattern, (coords, coeffs) in groups.items():
        plan = _jet_plan(pattern, _MAX_JET_ORDER)
        if plan is None:
            evaluate = functools.partial(_partial_by_nested_jets, f, x, pattern=pattern)
        else:
            evaluate = functools.partial(
                _partial_by_jet, f, x, slots=plan[0], n=plan[1], count=plan[2]
            )
        coefficients = jnp.stack([jnp.asarray(c, x.dtype) for c in coeffs])
        values = jax.vmap(evaluate)(jnp.asarray(np.array(coords, dtype=np.int32)))
        total = total + jnp.sum(coefficients * values)
    return total
