import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sciml.data._grf import grf
from sciml.data._recipes.darcy import (
    darcy_recipe_info,
    darcy_recipe_sample,
    darcy_resolutions,
    generate_darcy,
)
from sciml.data._solvers.darcy import darcy_solve, darcy_solve_with_stats


def _scipy_solve(a, f):
    """Independent sparse direct solve of the same 5-point stencil, assembled node by node."""
    s = a.shape[0]
    n = s - 2
    h = 1.0 / (s - 1)
    index = -np.ones((s, s), dtype=int)
    index[1:-1, 1:-1] = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    for i in range(1, s - 1):
        for j in range(1, s - 1):
            diag = 0.0
            for ii, jj in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                c = 0.5 * (a[i, j] + a[ii, jj]) / h**2
                diag += c
                if index[ii, jj] >= 0:
                    rows.append(index[i, j])
                    cols.append(index[ii, jj])
                    vals.append(-c)
            rows.append(index[i, j])
            cols.append(index[i, j])
            vals.append(diag)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n * n, n * n))
    u = np.zeros((s, s))
    rhs = np.broadcast_to(f, (s, s))[1:-1, 1:-1].reshape(-1)
    u[1:-1, 1:-1] = spla.spsolve(matrix, rhs).reshape(n, n)
    return u


def _two_phase_field(key, s):
    # Thresholded GRF as in the FNO recipe, at the median so that both phases are present.
    g = grf(key, (s, s), alpha=2.0, tau=3.0, boundary="neumann")
    return jnp.where(g >= jnp.median(g), 12.0, 3.0)


def _coefficient(x):
    return 1.0 + 0.5 * jnp.sin(2 * jnp.pi * x[0]) * jnp.cos(jnp.pi * x[1])


def _exact(x):
    return jnp.sin(jnp.pi * x[0]) * jnp.sin(2 * jnp.pi * x[1]) * jnp.exp(x[0])


def _forcing(x):
    def flux(x):
        return _coefficient(x) * jax.grad(_exact)(x)

    return -jnp.trace(jax.jacfwd(flux)(x))


def test_manufactured_second_order():
    # Smooth a and u*: the truncation error of the conservative stencil with arithmetic-mean face
    # coefficients is O(h^2), so the max-norm error drops by 4 when h halves (up to O(h^4)
    # terms, ~10% at the coarsest pair; we check the finer pairs within 10%).
    def error(x):
        points = jnp.stack(jnp.meshgrid(x, x, indexing="ij"), axis=-1)
        a, f, exact = (jax.vmap(jax.vmap(fn))(points) for fn in (_coefficient, _forcing, _exact))
        return jnp.max(jnp.abs(darcy_solve(a, f) - exact))

    error = jax.jit(error)
    errors = [float(error(jnp.linspace(0.0, 1.0, m + 1))) for m in (16, 32, 64, 128)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    print("\nmanufactured solution, max-norm error at s-1 = 16, 32, 64, 128:", errors)
    print("error ratios when h halves:", ratios)
    assert errors[-1] < 1e-3
    assert np.all(ratios[1:] > 3.6) and np.all(ratios[1:] < 4.4), ratios


@pytest.mark.parametrize("forcing", ["constant", "field"])
def test_matches_sparse_direct_solve(getkey, forcing):
    s = 65
    a = _two_phase_field(getkey(), s)
    f = 1.0 if forcing == "constant" else jax.random.normal(getkey(), (s, s))
    u = darcy_solve(a, f)
    reference = _scipy_solve(np.asarray(a), np.asarray(f))
    print(
        f"\nmax |u - u_scipy| / max |u_scipy| ({forcing} f):",
        np.max(np.abs(u - reference)) / np.max(np.abs(reference)),
    )
    # CG stops at rtol = 1e-10 on the residual; the error is ~1e-13 relative (measured).
    assert np.max(np.abs(u - reference)) < 1e-8 * np.max(np.abs(reference))


def test_float32_solve(getkey):
    s = 65
    a = _two_phase_field(getkey(), s)
    u64 = darcy_solve(a)
    u32 = darcy_solve(a.astype(jnp.float32))
    assert u32.dtype == jnp.float32
    # float32 with the default rtol = 1e-5 reaches a few 1e-7 relative (rounding-limited).
    assert jnp.max(jnp.abs(u32 - u64)) < 1e-5 * jnp.max(jnp.abs(u64))


def test_iterations_independent_of_resolution(getkey):
    key = getkey()
    steps = [int(darcy_solve_with_stats(_two_phase_field(key, s))[1]) for s in (33, 129)]
    # Without the fast-Poisson preconditioner CG would need O(s) = hundreds of iterations here;
    # with it the count is bounded in terms of max(a) / min(a) = 4 alone.
    assert max(steps) <= 40 and steps[1] <= steps[0] + 6, steps


def test_gradient_matches_finite_differences(getkey):
    s = 17
    a = 1.0 + jax.random.uniform(getkey(), (s, s))
    f = 1.0 + jax.random.uniform(getkey(), (s, s))
    w = jax.random.normal(getkey(), (s, s))

    def functional(a, f):
        return jnp.sum(darcy_solve(a, f, rtol=1e-13) * w)

    grad_a, grad_f = jax.jit(jax.grad(functional, argnums=(0, 1)))(a, f)
    # Central differences: truncation O(eps^2) ~ 1e-10, rounding ~ 1e-16 / eps ~ 1e-11.
    eps = 1e-5
    for _ in range(3):
        v = jax.random.normal(getkey(), (s, s))
        fd_a = (functional(a + eps * v, f) - functional(a - eps * v, f)) / (2 * eps)
        print(
            "\ndirectional derivative in a: autodiff vs central FD, rel. diff",
            abs(float(jnp.sum(grad_a * v)) - float(fd_a)) / abs(float(fd_a)),
        )
        np.testing.assert_allclose(jnp.sum(grad_a * v), fd_a, rtol=1e-6)
        fd_f = (functional(a, f + eps * v) - functional(a, f - eps * v)) / (2 * eps)
        np.testing.assert_allclose(jnp.sum(grad_f * v), fd_f, rtol=1e-6)


def test_vmap_matches_single_solves(getkey):
    s = 33
    keys = jax.random.split(getkey(), 3)
    a = jax.vmap(lambda k: _two_phase_field(k, s))(keys)
    batched = jax.jit(jax.vmap(darcy_solve))(a)
    for i in range(3):
        np.testing.assert_allclose(batched[i], darcy_solve(a[i]), rtol=1e-12, atol=1e-16)


def test_boundary_is_zero(getkey):
    s = 12
    a = 1.0 + jax.random.uniform(getkey(), (s, s))
    f = 1.0 + jax.random.uniform(getkey(), (s, s))
    u = darcy_solve(a, f)
    assert u.shape == (s, s)
    for edge in (u[0], u[-1], u[:, 0], u[:, -1]):
        assert np.all(edge == 0)
    assert np.all(u[1:-1, 1:-1] > 0)


@pytest.mark.parametrize(
    "a_shape,f_shape,match",
    [((8,), (), "`a`"), ((8, 9), (), "`a`"), ((2, 2), (), "`a`"), ((8, 8), (7, 7), "`f`")],
)
@pytest.mark.untyped
def test_bad_shapes(a_shape, f_shape, match):
    with pytest.raises(ValueError, match=match):
        darcy_solve(jnp.ones(a_shape), jnp.ones(f_shape))


def test_nonpositive_coefficient_raises():
    a = jnp.ones((8, 8)).at[3, 4].set(-1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match="positive"):
        darcy_solve(a)


def test_recipe_resolutions():
    assert darcy_resolutions(85) == (421, 5)
    assert darcy_resolutions(64) == (442, 7)
    assert darcy_resolutions(16) == (421, 28)
    assert darcy_resolutions(421) == (421, 1)
    assert darcy_resolutions(600) == (600, 1)
    assert darcy_resolutions(9, 33) == (33, 4)
    with pytest.raises(ValueError, match="`solve_resolution`"):
        darcy_resolutions(9, 34)
    with pytest.raises(ValueError, match="`resolution`"):
        darcy_resolutions(2)


def test_generate_darcy(getkey):
    key = getkey()
    kwargs = dict(resolution=9, solve_resolution=33)
    chunks = list(generate_darcy(key, 5, chunk_size=2, **kwargs))
    assert [c[0].shape for c in chunks] == [(2, 9, 9), (2, 9, 9), (1, 9, 9)]
    a = np.concatenate([c[0] for c in chunks])
    u = np.concatenate([c[1] for c in chunks])
    assert a.dtype == np.float32 and u.dtype == np.float32
    assert set(np.unique(a)) <= {3.0, 12.0}
    # Per-sample keys: the samples do not depend on how they are chunked.
    ((a_one, u_one),) = generate_darcy(key, 5, chunk_size=5, **kwargs)
    np.testing.assert_array_equal(a_one, a)
    np.testing.assert_allclose(u_one, u, rtol=1e-6, atol=1e-9)
    # Sample i is the recipe sample of split(key, n)[i]; its u is the subsampled fine solve.
    k3 = jax.random.split(key, 5)[3]
    a3, u3 = darcy_recipe_sample(k3, **kwargs)
    np.testing.assert_array_equal(a3, a[3])
    np.testing.assert_allclose(u3, u[3], rtol=1e-5, atol=1e-8)
    g = grf(k3, (33, 33), alpha=2.0, tau=3.0, boundary="neumann", dtype=jnp.float32)
    fine = darcy_solve(jnp.where(g >= 0, 12.0, 3.0).astype(jnp.float32))
    np.testing.assert_allclose(u3, fine[::4, ::4], rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="`chunk_size`"):
        generate_darcy(key, 5, chunk_size=0, **kwargs)


def test_recipe_info_is_json():
    info = darcy_recipe_info(64)
    assert json.loads(json.dumps(info)) == info
    assert info["solve_resolution"] == 442 and info["subsample_stride"] == 7
    assert info["coefficient"]["alpha"] == 2.0 and info["coefficient"]["tau"] == 3.0
