"""Statistical tests of the stochastic derivative estimators (STDE and the backward-mode baselines)
against dense references on small random tanh MLPs, in float64.

Every estimator is checked over NUM_KEYS independent keys (one jitted, vmapped call):

- unbiasedness: the mean of the estimates is within Z standard errors of the exact value, the
  standard error being sqrt(sigma^2 / NUM_KEYS) with sigma^2 the closed-form variance;
- variance: the empirical variance s^2 of the estimates is within Z standard errors of the
  closed form, Var(s^2) ~ (m4 - s^4) / NUM_KEYS estimated from the fourth central moment m4;
- `return_variance`: its mean over keys is within Z standard errors of the closed form (it is
  unbiased), the standard error from its own spread over keys.

Closed-form variances of one estimate (n = num_samples, H the Hessian):

- Rademacher probes v: Var(v^T H v) = 2 sum_{i != j} H_ij^2; Gaussian probes: 2 ||H||_F^2;
  the estimate averages n i.i.d. probes, so divide by n.
- Coordinate sampling of n of the N = d terms t_1..t_N without replacement, estimate
  N * mean_{j in J} t_j: the mean of n draws without replacement from a population a_i = N t_i
  has variance (1 - n/N) S_a^2 / n with S_a^2 = sum_i (a_i - abar)^2 / (N - 1), so
  Var = N^2 (1 - n/N) S_t^2 / n with S_t^2 the population variance of the t_i times N/(N-1).
- Biharmonic, per Gaussian probe T[v,v,v,v] / 3 with T the 4th-derivative tensor: Isserlis'
  theorem over the 105 pairings of 8 indices gives E[T[v^4]^2] = 9 (Delta^2 f)^2
  + 72 ||C||_F^2 + 24 ||T||_F^2, C_ij = sum_k T_kkij, so Var = (24 ||T||_F^2 + 72 ||C||_F^2) / 9.

Z = 4: under a correct estimator a single check fails with probability about 6e-5 (a normal
two-sided tail; the means of 4000 estimates are close to normal), and the keys are fixed, so the
outcome is deterministic. A wrong scale factor (e.g. d/n vs d/(n-1), or a missing 1/3) or a
missing finite-population correction shifts these statistics by tens of standard errors.
"""

from math import comb

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.derivatives import (
    hte_laplacian,
    sdgd_laplacian,
    stde_biharmonic,
    stde_diagonal,
    stde_laplacian,
)
from sciml.derivatives._stochastic import sample_coordinates

NUM_KEYS = 4000
Z = 4.0


# ------------------------------------------------------------------------------------------------
# Test problems and dense references.
# ------------------------------------------------------------------------------------------------


def _mlp_params(key, d, width=16):
    sizes = [d, width, width, 1]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        key, wkey, bkey = jax.random.split(key, 3)
        w = jax.random.normal(wkey, (fan_out, fan_in)) * 1.5 / np.sqrt(fan_in)
        b = 0.5 * jax.random.normal(bkey, (fan_out,))
        params.append((w, b))
    return params


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(w @ x + b)
    w, b = params[-1]
    return (w @ x + b)[0]


def _problem(key, d):
    pkey, xkey = jax.random.split(key)
    params = _mlp_params(pkey, d)
    x = 0.7 * jax.random.normal(xkey, (d,))
    return params, x


def _hessian(f, x):
    return np.asarray(jax.jit(jax.hessian(f))(x))


def _pure_derivatives(f, x, order):
    """d^order f / dx_i^order for every i, by nested reverse mode on a one-dimensional slice."""
    d = x.shape[0]

    def along(i):
        g = lambda s: f(x + s * jax.nn.one_hot(i, d, dtype=x.dtype))
        for _ in range(order):
            g = jax.grad(g)
        return g(jnp.zeros((), x.dtype))

    return jax.vmap(along)(jnp.arange(d))


def _pure_derivatives_np(f, x, order):
    return np.asarray(jax.jit(lambda y: _pure_derivatives(f, y, order))(x))


def _fourth_derivative_tensor(f, x):
    return np.asarray(jax.jit(jax.jacfwd(jax.jacfwd(jax.hessian(f))))(x))


def _coefficients(d):
    return 1.0 + 0.5 * np.sin(np.arange(d))


def _sparse_variance(terms, n):
    big_n = terms.shape[0]
    return big_n**2 * (1 - n / big_n) * np.var(terms, ddof=1) / n


# Each case: the estimator as (f, x, key, **kwargs) -> output, and a function returning the exact
# value and the closed-form variance of one estimate. `n` is the num_samples used.
def _laplacian_reference(kind, n):
    def reference(f, x):
        h = _hessian(f, x)
        exact = np.trace(h)
        if kind == "sparse":
            var = _sparse_variance(np.diag(h), n)
        elif kind == "rademacher":
            var = 2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / n
        else:
            var = 2 * np.sum(h**2) / n
        return exact, var

    return reference


def _diagonal_reference(order, n):
    def reference(f, x):
        terms = _coefficients(x.shape[0]) * _pure_derivatives_np(f, x, order)
        return np.sum(terms), _sparse_variance(terms, n)

    return reference


def _biharmonic_reference(n):
    def reference(f, x):
        t = _fourth_derivative_tensor(f, x)
        c = np.einsum("kkij->ij", t)
        return np.trace(c), (24 * np.sum(t**2) + 72 * np.sum(c**2)) / 9 / n

    return reference


def _diagonal(order, n):
    return lambda f, x, key, **kw: stde_diagonal(
        f, x, _coefficients(x.shape[0]), order, key=key, num_samples=n, **kw
    )


CASES = {
    "stde_sparse": (
        lambda f, x, key, **kw: stde_laplacian(f, x, key=key, num_samples=3, **kw),
        _laplacian_reference("sparse", 3),
    ),
    "stde_rademacher": (
        lambda f, x, key, **kw: stde_laplacian(f, x, key=key, num_samples=4, sparse=False, **kw),
        _laplacian_reference("rademacher", 4),
    ),
    "stde_gaussian": (
        lambda f, x, key, **kw: stde_laplacian(
            f, x, key=key, num_samples=4, sparse=False, distribution="gaussian", **kw
        ),
        _laplacian_reference("gaussian", 4),
    ),
    "hte_rademacher": (
        lambda f, x, key, **kw: hte_laplacian(f, x, key=key, num_samples=4, **kw),
        _laplacian_reference("rademacher", 4),
    ),
    "hte_gaussian": (
        lambda f, x, key, **kw: hte_laplacian(
            f, x, key=key, num_samples=4, distribution="gaussian", **kw
        ),
        _laplacian_reference("gaussian", 4),
    ),
    "sdgd": (
        lambda f, x, key, **kw: sdgd_laplacian(f, x, key=key, num_samples=3, **kw),
        _laplacian_reference("sparse", 3),
    ),
    "diagonal_order1": (_diagonal(1, 2), _diagonal_reference(1, 2)),
    "diagonal_order3": (_diagonal(3, 3), _diagonal_reference(3, 3)),
    "diagonal_order4": (_diagonal(4, 4), _diagonal_reference(4, 4)),
    "biharmonic": (
        lambda f, x, key, **kw: stde_biharmonic(f, x, key=key, num_samples=4, **kw),
        _biharmonic_reference(4),
    ),
}


def _estimates(estimator, f, x, keys):
    """(estimate, variance estimate) for every key."""
    run = jax.jit(jax.vmap(lambda k: estimator(f, x, k, return_variance=True)))
    return map(np.asarray, run(keys))


# ------------------------------------------------------------------------------------------------
# (a), (b), (d): unbiasedness, closed-form variance, and the `return_variance` estimate.
# ------------------------------------------------------------------------------------------------


# Every case at d = 17 or d = 5 (the main Laplacian estimators at both): XLA compilation, not
# evaluation, dominates the runtime of these tests.
UNBIASED_CASES = [
    *[(case, d) for case in ("stde_sparse", "stde_rademacher", "sdgd") for d in (5, 17)],
    ("stde_gaussian", 17),
    ("hte_rademacher", 5),
    ("hte_gaussian", 17),
    ("diagonal_order1", 17),
    ("diagonal_order3", 5),
    ("diagonal_order4", 17),
    ("biharmonic", 5),
]


@pytest.mark.parametrize("case, d", UNBIASED_CASES)
def test_unbiased_with_closed_form_variance(case, d, getkey):
    estimator, reference = CASES[case]
    params, x = _problem(getkey(), d)
    f = lambda y: _mlp(params, y)
    exact, variance = reference(f, x)

    keys = jax.random.split(getkey(), NUM_KEYS)
    est, var_hat = _estimates(estimator, f, x, keys)
    assert est.shape == var_hat.shape == (NUM_KEYS,)

    # (a) Unbiasedness.
    z_mean = (est.mean() - exact) / np.sqrt(variance / NUM_KEYS)
    assert abs(z_mean) < Z, f"mean {est.mean()} vs exact {exact}: z = {z_mean:.2f}"

    # (b) Empirical variance of the estimates against the closed form.
    s2 = est.var(ddof=1)
    m4 = np.mean((est - est.mean()) ** 4)
    z_var = (s2 - variance) / np.sqrt((m4 - s2**2) / NUM_KEYS)
    assert abs(z_var) < Z, f"variance {s2} vs closed form {variance}: z = {z_var:.2f}"

    # (d) The returned variance is an unbiased estimate of the same quantity.
    assert np.all(var_hat >= 0)
    z_hat = (var_hat.mean() - variance) / (var_hat.std(ddof=1) / np.sqrt(NUM_KEYS))
    assert abs(z_hat) < Z, f"mean return_variance {var_hat.mean()} vs {variance}: z = {z_hat:.2f}"


# ------------------------------------------------------------------------------------------------
# (c): coordinate sampling of all d coordinates is exact.
# ------------------------------------------------------------------------------------------------


def test_sparse_with_all_coordinates_is_exact(getkey):
    d = 17
    params, x = _problem(getkey(), d)
    f = lambda y: _mlp(params, y)
    coefficients = _coefficients(d)

    @jax.jit
    def run(key):
        return (
            stde_laplacian(f, x, key=key, num_samples=d, return_variance=True),
            sdgd_laplacian(f, x, key=key, num_samples=d, return_variance=True),
            stde_diagonal(f, x, coefficients, 3, key=key, num_samples=d, return_variance=True),
            # A scalar coefficient is broadcast.
            stde_diagonal(f, x, 2.0, 2, key=key, num_samples=d),
        )

    (lap, lap_var), (sdgd, sdgd_var), (diag, diag_var), scaled = run(getkey())
    laplacian = np.trace(_hessian(f, x))
    third = np.sum(coefficients * _pure_derivatives_np(f, x, 3))
    np.testing.assert_allclose(lap, laplacian, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sdgd, laplacian, rtol=0, atol=1e-10)
    np.testing.assert_allclose(diag, third, rtol=0, atol=1e-10)
    np.testing.assert_allclose(scaled, 2 * laplacian, rtol=0, atol=1e-10)
    assert lap_var == sdgd_var == diag_var == 0


# ------------------------------------------------------------------------------------------------
# Chunked evaluation, jit and vmap over points and keys.
# ------------------------------------------------------------------------------------------------


# One case per sampling path: coordinates (STDE), probes (STDE), probes and coordinates (backward).
@pytest.mark.parametrize("case", ["stde_sparse", "biharmonic", "hte_rademacher", "sdgd"])
def test_chunking_does_not_change_the_result(case, getkey):
    estimator, _ = CASES[case]
    params, x = _problem(getkey(), 17)
    f = lambda y: _mlp(params, y)

    # A chunk size that does not divide num_samples exercises the remainder path of lax.map. The
    # estimate does not depend on `return_variance` either.
    @jax.jit
    def run(key):
        full, _ = estimator(f, x, key, return_variance=True)
        return full, estimator(f, x, key, chunk_size=3)

    full, chunked = run(getkey())
    np.testing.assert_allclose(chunked, full, rtol=1e-12, atol=1e-12)


def test_forward_and_backward_estimators_agree_sample_by_sample(getkey):
    # For the same key STDE and its backward-mode baseline draw the same coordinates or probes,
    # so they must agree to rounding: a strong check that the jets compute what the two reverse
    # passes compute.
    params, x = _problem(getkey(), 17)
    f = lambda y: _mlp(params, y)

    @jax.jit
    def run(key):
        kw = dict(key=key, num_samples=5, return_variance=True)
        return (
            (stde_laplacian(f, x, **kw), sdgd_laplacian(f, x, **kw)),
            (stde_laplacian(f, x, sparse=False, **kw), hte_laplacian(f, x, **kw)),
            (
                stde_laplacian(f, x, sparse=False, distribution="gaussian", **kw),
                hte_laplacian(f, x, distribution="gaussian", **kw),
            ),
        )

    for forward, backward in run(getkey()):
        np.testing.assert_allclose(forward, backward, rtol=1e-10, atol=1e-12)


def test_dtype_is_preserved(getkey):
    f = lambda y: jnp.sum(jnp.tanh(y) ** 3)
    key = getkey()
    for dtype in (jnp.float32, jnp.float64):
        x = jnp.ones(4, dtype)
        for estimator in (stde_laplacian, stde_biharmonic, hte_laplacian, sdgd_laplacian):
            out = jax.eval_shape(lambda y, k, e=estimator: e(f, y, key=k, num_samples=2), x, key)
            assert out.dtype == dtype and out.shape == ()


@pytest.mark.parametrize("case", ["stde_sparse", "stde_rademacher"])
def test_vmap_over_points_and_keys(case, getkey):
    estimator, _ = CASES[case]
    d, batch = 5, 3
    params, _ = _problem(getkey(), d)
    f = lambda y: _mlp(params, y)
    xs = jax.random.normal(getkey(), (batch, d))
    keys = jax.random.split(getkey(), batch)
    single = jax.jit(lambda x, k: estimator(f, x, k))

    @jax.jit
    def batched(xs, keys):
        # Per-point keys, and one legacy uint32 key shared by all points.
        shared = jax.vmap(lambda x: estimator(f, x, jax.random.PRNGKey(0)))(xs)
        return jax.vmap(single)(xs, keys), shared

    per_point, shared = batched(xs, keys)
    assert per_point.shape == shared.shape == (batch,)
    looped = np.array([single(xs[i], keys[i]) for i in range(batch)])
    np.testing.assert_allclose(per_point, looped, rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(shared))


# ------------------------------------------------------------------------------------------------
# (e): gradients with respect to parameters closed over by f are unbiased for the exact gradient.
# ------------------------------------------------------------------------------------------------

GRAD_KEYS = 1000


def _assert_unbiased_gradient(grads, exact_grad, label):
    """z-tests on three fixed random projections of the gradient: scalar statistics, so the
    threshold Z keeps its meaning however many parameters there are."""
    directions = np.asarray(jax.random.normal(jax.random.key(1), (3, exact_grad.shape[0])))
    for u in directions:
        proj = grads @ u
        z = (proj.mean() - exact_grad @ u) / (proj.std(ddof=1) / np.sqrt(grads.shape[0]))
        assert abs(z) < Z, f"{label}: projected gradient z = {z:.2f}"


LAPLACIAN_ESTIMATORS = {
    "stde_sparse": lambda f, x, k: stde_laplacian(f, x, key=k, num_samples=2),
    "stde_rademacher": lambda f, x, k: stde_laplacian(f, x, key=k, num_samples=2, sparse=False),
    "hte_rademacher": lambda f, x, k: hte_laplacian(f, x, key=k, num_samples=2),
    "sdgd": lambda f, x, k: sdgd_laplacian(f, x, key=k, num_samples=2),
}


def test_gradient_of_expectation_laplacian(getkey):
    params, x = _problem(getkey(), 5)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f_of = lambda p: lambda y: _mlp(unravel(p), y)

    def exact(p):
        return jnp.trace(jax.hessian(f_of(p))(x))

    def per_key(fn, arg, keys):
        return jax.vmap(jax.grad(fn), in_axes=(None, 0))(arg, keys)

    @jax.jit
    def run(keys):
        grads = {
            name: per_key(lambda p, k, est=est: est(f_of(p), x, k), flat, keys)
            for name, est in LAPLACIAN_ESTIMATORS.items()
        }
        # stde_diagonal through traced coefficients: d/dc_i sum_i c_i d^2 f/dx_i^2 = d^2 f/dx_i^2.
        coefficient_grads = per_key(
            lambda c, k: stde_diagonal(f_of(flat), x, c, 2, key=k, num_samples=2),
            jnp.ones_like(x),
            keys,
        )
        return jax.grad(exact)(flat), grads, coefficient_grads

    exact_grad, grads, coefficient_grads = run(jax.random.split(getkey(), GRAD_KEYS))
    for name, g in grads.items():
        assert g.shape == (GRAD_KEYS, flat.shape[0])
        _assert_unbiased_gradient(np.asarray(g), np.asarray(exact_grad), name)
    diagonal = np.diag(_hessian(f_of(flat), x))
    _assert_unbiased_gradient(np.asarray(coefficient_grads), diagonal, "coefficients")


def test_gradient_of_expectation_biharmonic(getkey):
    # An analytic field, so that the exact gradient is cheap: for f(x) = sum_m a_m sin(w_m . x +
    # phi_m), Delta^2 f = sum_m a_m |w_m|^4 sin(w_m . x + phi_m).
    d, m = 5, 4
    akey, wkey, pkey, xkey = jax.random.split(getkey(), 4)
    params = (
        jax.random.normal(akey, (m,)),
        jax.random.normal(wkey, (m, d)) / np.sqrt(d),
        jax.random.uniform(pkey, (m,), maxval=2 * np.pi),
    )
    x = jax.random.normal(xkey, (d,))
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def field(p, y):
        a, w, phi = unravel(p)
        return jnp.sum(a * jnp.sin(w @ y + phi))

    def exact(p):
        a, w, phi = unravel(p)
        return jnp.sum(a * jnp.sum(w**2, axis=1) ** 2 * jnp.sin(w @ x + phi))

    def estimate(p, key):
        return stde_biharmonic(lambda y: field(p, y), x, key=key, num_samples=2)

    @jax.jit
    def run(keys):
        return jax.grad(exact)(flat), jax.vmap(jax.grad(estimate), in_axes=(None, 0))(flat, keys)

    exact_grad, grads = map(np.asarray, run(jax.random.split(getkey(), GRAD_KEYS)))
    _assert_unbiased_gradient(grads, exact_grad, "biharmonic")


# ------------------------------------------------------------------------------------------------
# The without-replacement sampler.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("population, n", [(6, 3), (5, 5)])
def test_sampler_is_uniform_over_subsets(population, n, getkey):
    # Floyd's algorithm (the path for n^2 <= 1000 * population): every subset equally likely, by a
    # chi-square test over all C(N, n) subsets with 20000 draws; df = 19 for (6, 3), threshold 60
    # (p ~ 4e-6). (5, 5) has one subset but checks the order-free output is a permutation.
    draws = 20000
    keys = jax.random.split(getkey(), draws)
    samples = np.asarray(jax.jit(jax.vmap(lambda k: sample_coordinates(k, population, n)))(keys))
    assert samples.shape == (draws, n)
    ordered = np.sort(samples, axis=1)
    assert np.all(np.diff(ordered, axis=1) > 0) and ordered.min() >= 0
    assert ordered.max() < population
    _, counts = np.unique(ordered, axis=0, return_counts=True)
    num_subsets = comb(population, n)
    assert counts.shape[0] == num_subsets
    expected = draws / num_subsets
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 60, chi2


def test_sampler_edge_cases(getkey):
    # d = 1e6 with 16 coordinates (Floyd's path, no O(d) array), 1 of 1, and 1500 of 2000 (the
    # permutation path, taken when n^2 > 1000 d).
    idx = np.asarray(jax.jit(lambda k: sample_coordinates(k, 1_000_000, 16))(getkey()))
    assert np.unique(idx).shape == (16,) and idx.min() >= 0 and idx.max() < 1_000_000
    idx = np.asarray(sample_coordinates(getkey(), 1, 1))
    assert idx.tolist() == [0]
    idx = np.asarray(sample_coordinates(getkey(), 2000, 1500))
    assert np.unique(idx).shape == (1500,) and idx.min() >= 0 and idx.max() < 2000


# ------------------------------------------------------------------------------------------------
# (f): bad arguments raise one clear ValueError.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        pytest.param(2.5, marks=pytest.mark.untyped),
        True,
        pytest.param(None, marks=pytest.mark.untyped),
    ],
)
def test_bad_num_samples(bad, getkey):
    x = jnp.zeros(5)
    f = lambda y: jnp.sum(y**2)
    key = getkey()
    for call in (
        lambda: stde_laplacian(f, x, key=key, num_samples=bad),
        lambda: stde_laplacian(f, x, key=key, num_samples=bad, sparse=False),
        lambda: stde_biharmonic(f, x, key=key, num_samples=bad),
        lambda: stde_diagonal(f, x, 1.0, 2, key=key, num_samples=bad),
        lambda: hte_laplacian(f, x, key=key, num_samples=bad),
        lambda: sdgd_laplacian(f, x, key=key, num_samples=bad),
    ):
        with pytest.raises(ValueError, match="`num_samples` must be"):
            call()


@pytest.mark.untyped
def test_bad_arguments(getkey):
    x = jnp.zeros(5)
    f = lambda y: jnp.sum(y**2)
    key = getkey()
    with pytest.raises(ValueError, match=r"`num_samples` must be an integer in \[1, 5\], got 6"):
        stde_laplacian(f, x, key=key, num_samples=6)
    with pytest.raises(ValueError, match=r"in \[1, 5\]"):
        sdgd_laplacian(f, x, key=key, num_samples=6)
    with pytest.raises(ValueError, match=r"in \[1, 5\]"):
        stde_diagonal(f, x, 1.0, 2, key=key, num_samples=6)
    # Dense probes are not limited by d.
    jax.eval_shape(lambda k: stde_laplacian(f, x, key=k, num_samples=6, sparse=False), key)
    with pytest.raises(ValueError, match="`distribution`"):
        stde_laplacian(f, x, key=key, num_samples=2, sparse=False, distribution="normal")
    with pytest.raises(ValueError, match="`distribution`"):
        hte_laplacian(f, x, key=key, num_samples=2, distribution="normal")
    with pytest.raises(ValueError, match="sparse=False"):
        stde_laplacian(f, x, key=key, num_samples=2, distribution="gaussian")
    with pytest.raises(ValueError, match="`chunk_size`"):
        stde_laplacian(f, x, key=key, num_samples=2, chunk_size=0)
    with pytest.raises(ValueError, match="`order`"):
        stde_diagonal(f, x, 1.0, 0, key=key, num_samples=2)
    with pytest.raises(ValueError, match="`coefficients`"):
        stde_diagonal(f, x, jnp.ones(4), 2, key=key, num_samples=2)
    with pytest.raises(ValueError, match="`x` must be one point"):
        stde_laplacian(f, jnp.zeros((2, 5)), key=key, num_samples=2)
    with pytest.raises(ValueError, match="`return_variance=True` needs"):
        stde_biharmonic(f, x, key=key, num_samples=1, return_variance=True)
    # One coordinate out of one is exact, so its variance (zero) is known.
    _, var = jax.jit(
        lambda k: stde_laplacian(f, jnp.zeros(1), key=k, num_samples=1, return_variance=True)
    )(key)
    assert var == 0


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_collapsed_pass_equals_one_jet_per_sample(sparse, chunk_size, getkey):
    # The default path sums the sampled second-order terms in one forward pass; with
    # `return_variance=True` every sample is its own jet. Same key, same samples: the two
    # estimates agree to rounding (1e-12 relative in float64).
    params, x = _problem(getkey(), 17)
    f = lambda y: _mlp(params, y)
    key = getkey()
    kwargs = dict(key=key, num_samples=7, sparse=sparse, chunk_size=chunk_size)
    collapsed = stde_laplacian(f, x, **kwargs)
    per_sample, _ = stde_laplacian(f, x, **kwargs, return_variance=True)
    np.testing.assert_allclose(collapsed, per_sample, rtol=1e-12, atol=1e-12)


def test_unsupported_primitive_falls_back_to_jets(getkey):
    # `cumprod` has no forward-Laplacian rule: the estimator takes the jet path instead.
    x = jax.random.normal(getkey(), (6,))
    f = lambda y: jnp.sum(jnp.cumprod(jnp.tanh(y)))
    key = getkey()
    estimate = stde_laplacian(f, x, key=key, num_samples=6)
    exact = jnp.trace(jax.hessian(f)(x))
    np.testing.assert_allclose(estimate, exact, rtol=1e-10)
