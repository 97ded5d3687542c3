"""Exact Taylor-mode operators of `sciml.derivatives` against dense references.

Tolerance: every operator here is exact in exact arithmetic, and so are the references (traces of
`jax.hessian`, nested `jax.jacfwd` for third and fourth derivatives), so in float64 the two differ
only by round-off: a few hundred operations of size O(1) give about 1e-14, and the biharmonic
operator cancels terms about d times larger than its result. We require agreement to
`rtol = atol = 1e-10`, which leaves four orders of magnitude of margin and still catches any
wrong factor, missing term or wrong index.
"""

import functools
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.derivatives as sd
import sciml.derivatives._exact as exact
from sciml.derivatives import (
    biharmonic,
    differential_operator,
    divergence,
    forward_laplacian,
    hessian_diagonal,
    laplacian,
)

TOL = dict(rtol=1e-10, atol=1e-10)
DIMS = [1, 2, 5, 17]


def _init_mlp(key, d, width=16, depth=2, out=()):
    """Weights N(0, 2 / fan_in) and biases N(0, 0.25): tanh layers out of their linear regime,
    with derivatives of every order up to four of size O(1)."""
    sizes = [d] + [width] * depth
    params = []
    for a, b in itertools.pairwise(sizes):
        key, kw, kb = jax.random.split(key, 3)
        params.append(
            (jax.random.normal(kw, (a, b)) * jnp.sqrt(2.0 / a), 0.5 * jax.random.normal(kb, (b,)))
        )
    key, kw = jax.random.split(key)
    params.append((jax.random.normal(kw, (width, *out)) / jnp.sqrt(width), jnp.zeros(out)))
    return params


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return x @ w + b


@functools.cache
def _case(d):
    """A random scalar tanh MLP of `d` inputs and a point."""
    kp, kx = jax.random.split(jax.random.key(d))
    params = _init_mlp(kp, d)
    f = functools.partial(_mlp, params)
    x = 0.5 * jax.random.normal(kx, (d,))
    return f, x


@functools.cache
def _tensors(d):
    """f(x) and the dense derivative tensors [D f, D^2 f, D^3 f, D^4 f] at x, by `jax.jacfwd`."""
    f, x = _case(d)

    def all_orders(x):
        out, g = [f(x)], f
        for _ in range(4):
            g = jax.jacfwd(g)
            out.append(g(x))
        return out

    return jax.jit(all_orders)(x)


def _partial_reference(d, alpha):
    """d^alpha f(x) read off the dense tensors."""
    idx = tuple(i for i, a in enumerate(alpha) for _ in range(a))
    return _tensors(d)[len(idx)][idx]


def _each_term(f, x, alphas):
    """`d^alpha f(x)` for every alpha, from one `differential_operator` call: the operator is
    linear in its coefficients, so its Jacobian with respect to them is the list of partials."""

    def value(x, c):
        return differential_operator(f, x, dict(zip(alphas, c, strict=True)))

    return jax.jit(jax.jacfwd(value, argnums=1))(x, jnp.ones(len(alphas)))


# --- Laplacian, Hessian diagonal, divergence, biharmonic ----------------------------------------


@pytest.mark.parametrize("d", DIMS)
def test_second_order_operators(d):
    f, x = _case(d)
    hess = _tensors(d)[2]
    params = _init_mlp(jax.random.key(100 + d), d, out=(d,))
    field = functools.partial(_mlp, params)

    def ours(x):
        laplacians = {
            f"{method}-{chunk_size}": laplacian(f, x, method=method, chunk_size=chunk_size)
            for method in ("taylor", "forward")
            for chunk_size in (None, 3)
        }
        laplacians["auto"] = laplacian(f, x)
        laplacians["forward_laplacian"] = forward_laplacian(f, x)
        diagonals = [hessian_diagonal(f, x), hessian_diagonal(f, x, chunk_size=3)]
        divergences = [divergence(field, x), divergence(field, x, chunk_size=3)]
        return laplacians, diagonals, divergences, jnp.trace(jax.jacfwd(field)(x))

    laplacians, diagonals, divergences, div_reference = jax.jit(ours)(x)
    for name, got in laplacians.items():
        np.testing.assert_allclose(got, jnp.trace(hess), **TOL, err_msg=name)
    for got in diagonals:
        assert got.shape == (d,)
        np.testing.assert_allclose(got, jnp.diag(hess), **TOL)
    for got in divergences:
        np.testing.assert_allclose(got, div_reference, **TOL)


@pytest.mark.parametrize("d,chunk_size", [(1, None), (2, None), (5, 4), (17, None)])
def test_biharmonic_matches_fourth_derivative_tensor(d, chunk_size):
    f, x = _case(d)
    reference = jnp.einsum("iijj->", _tensors(d)[4])
    got = jax.jit(lambda x: biharmonic(f, x, chunk_size=chunk_size))(x)
    np.testing.assert_allclose(got, reference, **TOL)


def test_pair_enumeration():
    # The biharmonic operator's pair index k -> {i, j} covers every unordered pair exactly once.
    for d in range(2, 10):
        i, j = exact._pair(jnp.arange(d * (d - 1) // 2), d)
        pairs = sorted((min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist(), strict=True))
        assert pairs == list(itertools.combinations(range(d), 2))


# --- general differential operators --------------------------------------------------------------


def _multi_indices(d, max_order):
    return [a for a in itertools.product(range(max_order + 1), repeat=d) if sum(a) <= max_order]


def test_differential_operator_all_multi_indices():
    d = 2
    f, x = _case(d)
    alphas = _multi_indices(d, 4)
    references = jnp.stack([_partial_reference(d, a) for a in alphas])
    np.testing.assert_allclose(_each_term(f, x, alphas), references, **TOL)
    coefficients = np.random.default_rng(0).normal(size=len(alphas))
    terms = dict(zip(alphas, coefficients.tolist(), strict=True))
    got = jax.jit(lambda x: differential_operator(f, x, terms))(x)
    np.testing.assert_allclose(got, coefficients @ references, **TOL)


@pytest.mark.parametrize(
    "max_jet_order,alphas",
    [
        # Nested jets for every mixed partial.
        (1, [(1, 1, 0), (0, 2, 1), (2, 2, 0), (1, 1, 1)]),
        # Single jets up to order 11: d_ij (order 5), d_iij (7), d_iiij (11).
        (11, [(1, 1, 0), (0, 2, 1), (3, 0, 1)]),
    ],
)
def test_differential_operator_jet_and_nested_paths(max_jet_order, alphas, monkeypatch):
    monkeypatch.setattr(exact, "_MAX_JET_ORDER", max_jet_order)
    d = 3
    f, x = _case(d)
    references = jnp.stack([_partial_reference(d, a) for a in alphas])
    np.testing.assert_allclose(_each_term(f, x, alphas), references, **TOL)


@pytest.mark.parametrize(
    "d,patterns",
    [
        (5, [(1,), (4,), (1, 1), (2, 1), (1, 1, 1, 1)]),
        (17, [(2,), (3,), (1, 1), (3, 1), (2, 2), (1, 1, 1), (2, 1, 1)]),
    ],
)
def test_differential_operator_random_terms(d, patterns):
    # Multiplicity patterns of total order <= 4 at random coordinates, through the single-jet
    # construction (d_i^a, d_ij) and the nested-jet fallback (the others), grouped and vmapped.
    f, x = _case(d)
    rng = np.random.default_rng(d)
    alphas = []
    for pattern in patterns + patterns[-2:]:
        alpha = [0] * d
        for c, a in zip(rng.choice(d, size=len(pattern), replace=False), pattern, strict=True):
            alpha[c] = a
        alphas.append(tuple(alpha))
    references = jnp.stack([_partial_reference(d, a) for a in alphas])
    np.testing.assert_allclose(_each_term(f, x, alphas), references, **TOL)


def test_jet_plan():
    # d_ij: e_i in slot 2, e_j in slot 3, order 5 = 2 + 3 only; 5! / (2! 3!) = 10 partitions.
    assert exact._jet_plan((1, 1), 20) == ((2, 3), 5, 10)
    # d_iij: order 7 = 2 + 2 + 3 only; 7! / (2!^2 2! 3!) = 105.
    assert exact._jet_plan((2, 1), 20) == ((2, 3), 7, 105)
    assert exact._jet_plan((3,), 1) == ((1,), 3, 1)
    assert exact._jet_plan((2, 1), 6) is None
    for pattern in [(1, 1), (2, 1), (3, 1), (2, 2), (1, 1, 1), (2, 1, 1)]:
        slots, n, _ = exact._jet_plan(pattern, 30)
        assert n == sum(a * s for a, s in zip(pattern, slots, strict=True))
        assert exact._num_solutions(slots, n) == 1


# --- analytic checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 17])
def test_analytic(d):
    x = jnp.linspace(-1.0, 1.0, d) + 0.1
    a = jnp.linspace(0.5, -0.3, d)
    g = lambda y: jnp.exp(a @ y)
    h = lambda y: y[0] ** 2 * y[-1] ** 3
    harmonic = lambda y: y[0] ** 2 - y[-1] ** 2 + y[0] * y[-1]

    def ours(x):
        return {
            # |x|^2: Laplacian 2d; |x|^4: biharmonic 8d(d + 2).
            "sq_taylor": (laplacian(lambda y: y @ y, x, method="taylor"), 2.0 * d),
            "sq_forward": (laplacian(lambda y: y @ y, x, method="forward"), 2.0 * d),
            "quartic": (biharmonic(lambda y: (y @ y) ** 2, x), 8.0 * d * (d + 2)),
            # exp(a.x): Laplacian |a|^2 f, biharmonic |a|^4 f.
            "exp_laplacian": (laplacian(g, x), (a @ a) * g(x)),
            "exp_biharmonic": (biharmonic(g, x), (a @ a) ** 2 * g(x)),
            # div(x |x|^2) = (d + 2) |x|^2.
            "divergence": (divergence(lambda y: y * (y @ y), x), (d + 2) * (x @ x)),
        }

    cases = jax.jit(ours)(x)
    if d >= 2:
        # d_0^2 d_e (x_0^2 x_e^3) = 6 x_e^2 (e = d - 1); x_0^2 - x_e^2 + x_0 x_e is harmonic.
        alpha = (2,) + (0,) * (d - 2) + (1,)
        cases["mixed"] = (differential_operator(h, x, {alpha: 1.0}), 6 * x[-1] ** 2)
        cases["harmonic"] = (laplacian(harmonic, x), 0.0)
    for name, (got, expected) in cases.items():
        np.testing.assert_allclose(got, expected, **TOL, err_msg=name)


# --- composition with jit, vmap and grad --------------------------------------------------------


def _grad_check(op, dense, d, *, width=16, depth=2, num_points=6, seed=0):
    """`jax.jit(jax.grad)` over MLP parameters of the mean of `op` over points (vmapped) equals
    the gradient of the same loss with the dense reference operator."""
    params = _init_mlp(jax.random.key(seed), d, width=width, depth=depth)
    xs = 0.5 * jax.random.normal(jax.random.key(seed + 1), (num_points, d))

    def loss(params, op):
        return jnp.mean(jax.vmap(lambda x: op(functools.partial(_mlp, params), x))(xs) ** 2)

    value, grads = jax.jit(jax.value_and_grad(lambda p: loss(p, op)))(params)
    ref_value, ref_grads = jax.jit(jax.value_and_grad(lambda p: loss(p, dense)))(params)
    np.testing.assert_allclose(value, ref_value, **TOL)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(g, r, **TOL)


@pytest.mark.parametrize("method,chunk_size", [("taylor", None), ("forward", None), ("forward", 2)])
def test_laplacian_jit_vmap_grad(method, chunk_size):
    _grad_check(
        lambda f, x: laplacian(f, x, method=method, chunk_size=chunk_size),
        lambda f, x: jnp.trace(jax.hessian(f)(x)),
        d=5,
    )


def test_biharmonic_jit_vmap_grad():
    _grad_check(
        biharmonic,
        lambda f, x: jnp.einsum("iijj->", jax.jacfwd(jax.jacfwd(jax.hessian(f)))(x)),
        d=2,
        width=8,
        depth=1,
        num_points=3,
    )


def test_differential_operator_jit_vmap_grad():
    terms = {(1, 1): 0.7, (0, 3): -1.3, (2, 0): 0.4}

    def dense(f, x):
        hess, third = jax.hessian(f)(x), jax.jacfwd(jax.hessian(f))(x)
        return 0.7 * hess[0, 1] - 1.3 * third[1, 1, 1] + 0.4 * hess[0, 0]

    _grad_check(
        lambda f, x: differential_operator(f, x, terms), dense, d=2, width=8, depth=1, num_points=3
    )


def test_differential_operator_traced_coefficient():
    # d/dc of (c d_01 f + 2 f) is d_01 f: coefficients may be traced (learned PDE coefficients).
    f, x = _case(2)
    grad = jax.jit(jax.grad(lambda c: differential_operator(f, x, {(1, 1): c, (0, 0): 2.0})))(0.3)
    np.testing.assert_allclose(grad, _tensors(2)[2][0, 1], **TOL)


def test_equinox_mlp():
    d = 4
    model = eqx.nn.MLP(d, "scalar", 16, 2, activation=jnp.tanh, key=jax.random.key(7))
    x = jnp.linspace(-0.5, 0.5, d)

    def ours(x):
        return [laplacian(model, x, method=m) for m in ("taylor", "forward")], jnp.trace(
            jax.hessian(model)(x)
        )

    got, reference = jax.jit(ours)(x)
    for g in got:
        np.testing.assert_allclose(g, reference, **TOL)


# --- the forward Laplacian's primitive rules -----------------------------------------------------

_W = jax.random.normal(jax.random.key(3), (4, 3))

FORWARD_CASES = {
    "mul_sin": lambda x: jnp.sum(x * jnp.sin(x)),
    "dot": lambda x: x @ x + jnp.dot(jnp.cos(x), x) + jnp.sum(jnp.tanh(x @ _W) @ _W.T),
    "matrix": lambda x: jnp.sum(jnp.tanh(jnp.stack([x, x**2]) @ _W) ** 2),
    "outer": lambda x: jnp.sum(jnp.tanh(jnp.outer(x, x) + 1.0)),
    "divide": lambda x: jnp.sum(jnp.exp(x[0]) / (1.0 + x**2)),
    "power": lambda x: jnp.sum(x**2.5) + jnp.sum(x**3) + jnp.sum(x ** x[::-1]) + 2.0 ** x[0],
    "sqrt_log": lambda x: (
        jnp.sqrt(x @ x) + jax.lax.rsqrt(x @ x) + jnp.sum(jnp.log(x) + jnp.log1p(x))
    ),
    "reduce_sum": lambda x: jnp.sum(x) ** 2 + jnp.sum(jnp.cumsum(x) ** 2),
    "prod_max": lambda x: jnp.prod(x) + jnp.max(x**2) + jnp.min(jnp.sin(x)),
    "concatenate": lambda x: jnp.sum(jnp.concatenate([x, x**2, jnp.ones(2)]) ** 2),
    "where": lambda x: jnp.sum(jnp.where(x > 1.0, x**2, jnp.sin(x))),
    "max_min": lambda x: jnp.sum(jax.nn.relu(x - 1.0) ** 3) + jnp.sum(jnp.clip(x, 0.9, 1.1) ** 2),
    "indexing": lambda x: x[0] * x[-1] ** 2 + jnp.sum(x[1:3] ** 3) + x[jnp.array([2, 0])] @ x[:2],
    "split": lambda x: sum(jnp.sum(p**2 * jnp.cos(p)) for p in jnp.split(x, 2)),
    "structural": lambda x: jnp.sum(jnp.pad(x, 1) * jnp.arange(6.0)) ** 2 + x[::-1] @ jnp.sin(x),
    "activations": lambda x: (
        jnp.sum(jax.nn.gelu(x) + jax.nn.softplus(x) + jax.nn.sigmoid(x))
        + jnp.sum(jax.nn.silu(x) * jax.scipy.special.erf(x))
    ),
    "trig": lambda x: jnp.sum(
        jnp.arctan(x) + jnp.arctan2(x, 2.0 - x) + jnp.cosh(x) * jnp.tan(x / 3)
    ),
    "jit_checkpoint": lambda x: (
        jax.jit(lambda z: jnp.sin(z) @ jnp.cos(z))(x)
        + jax.checkpoint(lambda z: jnp.sum(jnp.exp(z)))(x)
        + jax.lax.stop_gradient(x[1]) * x[0] ** 2
    ),
    "constant": lambda x: jnp.sum(jax.lax.stop_gradient(x) ** 2),
}


@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_forward_laplacian_primitives(name):
    f = FORWARD_CASES[name]
    x = jnp.array([0.6, 1.3, 0.8, 1.7])

    def ours(x):
        reference = jnp.trace(jax.hessian(f)(x))
        return forward_laplacian(f, x), forward_laplacian(f, x, chunk_size=3), reference

    full, chunked, reference = jax.jit(ours)(x)
    if name == "constant":
        reference = 0.0
    np.testing.assert_allclose(full, reference, **TOL)
    np.testing.assert_allclose(chunked, reference, **TOL)


def test_forward_laplacian_unsupported_primitive():
    f = lambda x: jnp.sum(jnp.cumprod(jnp.tanh(x)))
    x = jnp.array([0.3, -0.2, 0.5])
    with pytest.raises(NotImplementedError, match=r'`cumprod`.*method="taylor"'):
        forward_laplacian(f, x)
    with pytest.raises(NotImplementedError, match="cumprod"):
        laplacian(f, x, method="forward")
    # "auto" falls back to Taylor mode, which has a jet rule for it.
    np.testing.assert_allclose(laplacian(f, x), jnp.trace(jax.hessian(f)(x)), **TOL)


# --- input validation ---------------------------------------------------------------------------


@pytest.mark.untyped
def test_bad_inputs():
    f = lambda x: jnp.sum(jnp.sin(x))
    x = jnp.ones(3)
    for name, call in [
        ("laplacian", lambda: laplacian(f, jnp.ones((2, 3)))),
        ("forward_laplacian", lambda: forward_laplacian(f, jnp.ones(()))),
        ("hessian_diagonal", lambda: hessian_diagonal(f, jnp.ones((0,)))),
        ("biharmonic", lambda: biharmonic(f, jnp.arange(3))),
        ("laplacian", lambda: laplacian(jnp.sin, x, method="taylor")),
        ("laplacian", lambda: laplacian(jnp.sin, x)),
        ("forward_laplacian", lambda: forward_laplacian(jnp.sin, x)),
        ("biharmonic", lambda: biharmonic(jnp.sin, x)),
        ("divergence", lambda: divergence(f, x)),
        ("divergence", lambda: divergence(lambda y: y[:2], x)),
        ("laplacian", lambda: laplacian(f, x, method="dense")),
        ("laplacian", lambda: laplacian(f, x, chunk_size=0)),
        ("hessian_diagonal", lambda: hessian_diagonal(f, x, chunk_size=2.0)),
        ("differential_operator", lambda: differential_operator(f, x, {})),
        ("differential_operator", lambda: differential_operator(f, x, {(1, 1): 1.0})),
        ("differential_operator", lambda: differential_operator(f, x, {(1, -1, 0): 1.0})),
        ("differential_operator", lambda: differential_operator(f, x, {(1.0, 1, 0): 1.0})),
        ("differential_operator", lambda: differential_operator(f, x, {(1, 1, 0): "one"})),
        ("differential_operator", lambda: differential_operator(f, x, {(1, 1, 0): jnp.ones(2)})),
    ]:
        with pytest.raises(ValueError, match=f"^`{name}`"):
            call()


def test_order_zero_term():
    f, x = _case(2)
    got = differential_operator(f, x, {(0, 0): 2.0, (2, 0): 1.0})
    np.testing.assert_allclose(got, 2.0 * f(x) + _tensors(2)[2][0, 0], **TOL)


def _input_elementwise_field(key, d):
    """Elementwise functions of the input before and around a network: the input's Jacobian
    stays a scaled selection through them (no dense `(k, d)` arrays)."""
    k1, k2 = jax.random.split(key)
    w = jax.random.normal(k1, (d, 8)) / np.sqrt(d)
    v = jax.random.normal(k2, (8,))

    def f(x):
        features = jnp.sin(x) * x + jnp.exp(0.3 * x) - x / (2.0 + x * x)
        boundary = 1.0 - jnp.sum(x * x)
        return boundary * (jnp.tanh(features @ w) @ v) + jnp.sum(jnp.cos(x) * x)

    return f


@pytest.mark.parametrize("d", [1, 5, 17])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_forward_laplacian_through_elementwise_functions_of_the_input(d, chunk_size, getkey):
    # With `chunk_size` the directions are subsets of coordinates (the sparse path); the
    # reference is the dense Hessian trace, agreement to 1e-10 in float64.
    f = _input_elementwise_field(getkey(), d)
    x = 0.5 * jax.random.normal(getkey(), (d,))
    expected = jnp.trace(jax.hessian(f)(x))
    got = jax.jit(lambda y: sd.forward_laplacian(f, y, chunk_size=chunk_size))(x)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    estimate = sd.stde_laplacian(f, x, key=getkey(), num_samples=d)  # all coordinates: exact
    np.testing.assert_allclose(estimate, expected, rtol=1e-10, atol=1e-10)
