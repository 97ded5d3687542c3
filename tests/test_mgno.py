import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.operators import AbstractOperator, MgNO, _mgno

# Everything is jitted: outside `jit` every primitive of a V-cycle is compiled on its own.
conv = jax.jit(_mgno.conv, static_argnums=2)
restrict = jax.jit(_mgno.restrict, static_argnums=2)
prolong = jax.jit(_mgno.prolong, static_argnums=2)
apply = eqx.filter_jit(lambda model, x: model(x))

PADDINGS = ["zeros", "circular", "reflect"]
NP_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect"}


def _params(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


# ---------------------------------------------------------------------------------------
# Dense NumPy references for the three convolutions (explicit loops over grid points and taps).


def _np_pad(x, padding):
    return np.pad(x, [(1, 1)] * (x.ndim - 1) + [(0, 0)], mode=NP_MODES[padding])


def _np_conv(x, w, padding, stride):
    """`y[c] = sum_k w[:, :, k] @ x[stride * c + k - 1]`, `x` extended by `padding`."""
    xp = _np_pad(x, padding)
    coarse = tuple(n // stride for n in x.shape[:-1])
    y = np.zeros((*coarse, w.shape[0]))
    for c in itertools.product(*(range(n) for n in coarse)):
        for k in itertools.product(range(3), repeat=len(coarse)):
            j = tuple(stride * ci + ki for ci, ki in zip(c, k, strict=True))
            y[c] += w[(slice(None), slice(None), *k)] @ xp[j]
    return y


def _np_prolong(x, w, padding):
    """Scatter form of the transposed convolution: coarse point `c` (`-1..n` after padding)
    adds `w[:, :, k] @ x[c]` to fine point `2 c + k - 1` when that lies on the fine grid."""
    xp = _np_pad(x, padding)
    coarse = x.shape[:-1]
    fine = tuple(2 * n for n in coarse)
    y = np.zeros((*fine, w.shape[0]))
    for c in itertools.product(*(range(-1, n + 1) for n in coarse)):
        for k in itertools.product(range(4), repeat=len(coarse)):
            j = tuple(2 * ci + ki - 1 for ci, ki in zip(c, k, strict=True))
            if all(0 <= jj < n for jj, n in zip(j, fine, strict=True)):
                y[j] += w[(slice(None), slice(None), *k)] @ xp[tuple(ci + 1 for ci in c)]
    return y


SHAPES = [(8,), (6, 4)]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", SHAPES)
def test_conv_matches_loop(shape, padding):
    rng = np.random.default_rng(0)
    d = len(shape)
    x = rng.standard_normal((*shape, 3))
    w = rng.standard_normal((2, 3, *(3,) * d))
    # float64 throughout; the only error is summation order.
    np.testing.assert_allclose(conv(x, w, padding), _np_conv(x, w, padding, 1), atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", SHAPES)
def test_restrict_matches_loop(shape, padding):
    rng = np.random.default_rng(1)
    d = len(shape)
    x = rng.standard_normal((*shape, 3))
    w = rng.standard_normal((2, 3, *(3,) * d))
    y = restrict(x, w, padding)
    assert y.shape == (*(n // 2 for n in shape), 2)
    np.testing.assert_allclose(y, _np_conv(x, w, padding, 2), atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", [(4,), (3, 2), (1, 2)])
def test_prolong_matches_scatter(shape, padding):
    rng = np.random.default_rng(2)
    d = len(shape)
    x = rng.standard_normal((*shape, 3))
    w = rng.standard_normal((2, 3, *(4,) * d))
    y = prolong(x, w, padding)
    assert y.shape == (*(2 * n for n in shape), 2)
    np.testing.assert_allclose(y, _np_prolong(x, w, padding), atol=1e-12)


def test_prolong_is_adjoint_of_stride_two_convolution():
    # With zero padding the transposed convolution is the adjoint of the stride-2 4-tap
    # convolution `(R y)[c] = sum_k w[:, :, k]^T y[2 c + k - 1]` (zero outside the grid):
    # <P x, y> = <x, R y>, checked on random vectors and as dense matrices.
    rng = np.random.default_rng(3)
    n, c_in, c_out = 5, 2, 3
    w = rng.standard_normal((c_out, c_in, 4, 4))
    x = rng.standard_normal((n, n, c_in))
    y = rng.standard_normal((2 * n, 2 * n, c_out))
    yp = np.pad(y, [(1, 2), (1, 2), (0, 0)])
    ry = np.zeros((n, n, c_in))
    for c in itertools.product(range(n), repeat=2):
        for k in itertools.product(range(4), repeat=2):
            ry[c] += w[:, :, k[0], k[1]].T @ yp[2 * c[0] + k[0], 2 * c[1] + k[1]]
    np.testing.assert_allclose(
        jnp.vdot(prolong(x, w, "zeros"), y), np.vdot(x, ry), rtol=1e-12, atol=0
    )
    dense = _dense(lambda x: prolong(x, w, "zeros"), x.shape)
    np.testing.assert_allclose(dense.T @ y.ravel(), ry.ravel(), atol=1e-12)


def _dense(linear_map, shape):
    """The matrix of `linear_map` on arrays of `shape`, column by column."""
    size = int(np.prod(shape))
    columns = [np.ravel(linear_map(np.eye(size)[i].reshape(shape))) for i in range(size)]
    return np.stack(columns, axis=1)


def test_linear_interpolation_and_full_weighting():
    # Taps (1/2, 1, 1/2, 0) interpolate linearly (coarse point c sits on fine point 2 c);
    # full weighting (1/4, 1/2, 1/4) is then half its adjoint, per dimension.
    n = 6
    coarse = np.sin(2 * np.pi * np.arange(n) / n) + np.arange(n) ** 2 / n
    p = jnp.array([0.5, 1.0, 0.5, 0.0]).reshape(1, 1, 4)
    fine = np.asarray(prolong(coarse[:, None], p, "circular"))[:, 0]
    np.testing.assert_allclose(fine[::2], coarse, atol=1e-14)
    np.testing.assert_allclose(fine[1::2], (coarse + np.roll(coarse, -1)) / 2, atol=1e-14)

    def tensor_kernel(taps, d):
        kernel = np.asarray(taps)
        for _ in range(d - 1):
            kernel = np.multiply.outer(kernel, taps)
        return kernel.reshape(1, 1, *kernel.shape)

    for d in (1, 2):
        p = tensor_kernel([0.5, 1.0, 0.5, 0.0], d)
        r = tensor_kernel([0.25, 0.5, 0.25], d)
        coarse, fine = (*(n,) * d, 1), (*(2 * n,) * d, 1)
        dense_p = _dense(lambda x, p=p: prolong(x, p, "circular"), coarse)
        dense_r = _dense(lambda y, r=r: restrict(y, r, "circular"), fine)
        np.testing.assert_allclose(dense_p.T, 2**d * dense_r, atol=1e-14)


# ---------------------------------------------------------------------------------------
# The model.


@pytest.mark.parametrize(
    "num_spatial_dims, spatial, levels, channels, depth",
    [
        (1, (24,), 4, (4, 3, 2, 5), 2),
        (2, (8, 16), 3, 3, 1),
    ],
)
def test_shapes(getkey, num_spatial_dims, spatial, levels, channels, depth):
    model = MgNO(
        2,
        3,
        channels=channels,
        levels=levels,
        depth=depth,
        key=getkey(),
        num_spatial_dims=num_spatial_dims,
    )
    assert isinstance(model, AbstractOperator)
    assert model.num_spatial_dims == num_spatial_dims
    x = jax.random.normal(getkey(), (2, *spatial))
    y = apply(model, x)
    assert y.shape == (3, *spatial)
    assert y.dtype == x.dtype
    assert jnp.all(jnp.isfinite(y))
    assert jnp.std(y) > 1e-3


def test_jit_vmap_grad_float32(getkey):
    # float32 parameters and inputs (the training setting), 1-D, two layers with post-smoothing.
    model = MgNO(
        2,
        1,
        channels=(3, 2),
        levels=2,
        depth=2,
        key=getkey(),
        num_spatial_dims=1,
        post_smoothing_steps=1,
        dtype=jnp.float32,
    )
    assert all(p.dtype == jnp.float32 for p in _params(model))
    x = jax.random.normal(getkey(), (3, 2, 8), jnp.float32)

    @eqx.filter_jit
    def loss_and_grad(model, x):
        def loss(model):
            y = jax.vmap(model)(x)
            return jnp.sum(y**2), y

        return eqx.filter_value_and_grad(loss, has_aux=True)(model)

    (_, y), grads = loss_and_grad(model, x)
    assert y.dtype == jnp.float32
    for i in range(3):
        np.testing.assert_allclose(y[i], apply(model, x[i]), rtol=1e-5, atol=1e-6)
    # Every parameter, on every level, reaches the output.
    for g in _params(grads):
        assert jnp.all(jnp.isfinite(g))
        assert jnp.max(jnp.abs(g)) > 0


def test_parameter_count(getkey):
    # One layer, 1-D, in 2 -> out 3, channels (4, 5), one pre-smoothing step: level 0 has
    # A (2x3x3) and S (3x2x3); level 1 (coarsest, one step) S (5x5x3) only; R (5x2x3),
    # P (3x5x4); pointwise W (3x2) + b (3). Note that `channels[0]` is not used by a
    # one-layer model.
    model = MgNO(2, 3, channels=(4, 5), levels=2, depth=1, key=getkey(), num_spatial_dims=1)
    assert sum(p.size for p in _params(model)) == 18 + 18 + 75 + 30 + 60 + 6 + 3


def test_initialisation_scale(getkey):
    # PyTorch's default: uniform in +-1/sqrt(fan_in), fan_in = in_channels * 3^d for the
    # 3x3 convolutions (here A of the middle layer, 6 -> 6 channels, 2-D).
    model = MgNO(1, 1, channels=6, levels=2, depth=3, key=getkey())
    a = model.vcycles[1].operators[0]
    bound = 1 / np.sqrt(6 * 9)
    assert a.shape == (6, 6, 3, 3)
    assert jnp.max(jnp.abs(a)) <= bound
    assert jnp.max(jnp.abs(a)) > 0.9 * bound
    # Different parameters are drawn independently.
    assert not jnp.allclose(a, model.vcycles[2].operators[0][:, :1])


@pytest.mark.parametrize(
    "num_spatial_dims, spatial, levels, depth, shifts",
    [(1, (32,), 4, 2, [(8,), (-16,)]), (2, (8, 12), 2, 1, [(2, 0), (0, 6), (-4, 2)])],
)
def test_circular_shift_equivariance(getkey, num_spatial_dims, spatial, levels, depth, shifts):
    model = MgNO(
        2,
        2,
        channels=3,
        levels=levels,
        depth=depth,
        padding="circular",
        key=getkey(),
        num_spatial_dims=num_spatial_dims,
        post_smoothing_steps=1,
    )
    x = jax.random.normal(getkey(), (2, *spatial))
    axes = tuple(range(1, num_spatial_dims + 1))
    batch = jnp.stack([x] + [jnp.roll(x, shift, axes) for shift in shifts])
    y = jax.vmap(lambda b: apply(model, b))(batch)
    for shift, shifted in zip(shifts, y[1:], strict=True):
        # float64: exact up to rounding.
        np.testing.assert_allclose(shifted, jnp.roll(y[0], shift, axes), atol=1e-12, rtol=0)


def test_zero_padding_is_not_shift_equivariant(getkey):
    # Sanity check of the above: with zero padding (Dirichlet boundary) the model is not.
    model = MgNO(2, 2, channels=3, levels=4, depth=1, key=getkey(), num_spatial_dims=1)
    x = jax.random.normal(getkey(), (2, 32))
    y = jax.vmap(lambda b: apply(model, b))(jnp.stack([x, jnp.roll(x, 8, 1)]))
    assert jnp.max(jnp.abs(y[1] - jnp.roll(y[0], 8, 1))) > 1e-3


def _poisson_vcycle(levels, pre, post):
    """A 1-D `MgNO` whose only layer is exactly a Galerkin multigrid V-cycle for the periodic
    Poisson problem `A u = f`, `A = [-1, 2, -1]` (h^2 times the Laplacian, on every level):
    damped Jacobi with omega = 2/3, restriction 4 x full weighting `[1, 2, 1]`, linear
    interpolation `[1/2, 1, 1/2, 0]` (then `R A P = A` on the coarse grid), and on the
    coarsest grid (2 points) Jacobi with omega = 1/2, exact on mean-free data."""
    model = MgNO(
        1,
        1,
        channels=1,
        levels=levels,
        depth=1,
        padding="circular",
        key=jax.random.key(0),
        num_spatial_dims=1,
        smoothing_steps=pre,
        post_smoothing_steps=post,
    )
    vcycle = model.vcycles[0]

    def jacobi(omega):
        return jnp.array([0.0, omega / 2, 0.0]).reshape(1, 1, 3)

    def smoothers(steps):
        return tuple(
            tuple(jacobi(2 / 3 if level < levels - 1 else 1 / 2) for _ in s)
            for level, s in enumerate(steps)
        )

    laplacian = jnp.array([-1.0, 2.0, -1.0]).reshape(1, 1, 3)
    vcycle = eqx.tree_at(
        lambda v: (v.pre_smoothers, v.post_smoothers, v.restrictions, v.prolongations),
        vcycle,
        (
            smoothers(vcycle.pre_smoothers),
            smoothers(vcycle.post_smoothers),
            tuple(jnp.array([1.0, 2.0, 1.0]).reshape(1, 1, 3) for _ in vcycle.restrictions),
            tuple(jnp.array([0.5, 1.0, 0.5, 0.0]).reshape(1, 1, 4) for _ in vcycle.prolongations),
        ),
    )
    vcycle = eqx.tree_at(
        lambda v: v.operators,
        vcycle,
        tuple(None if op is None else laplacian for op in vcycle.operators),
        is_leaf=lambda op: op is None,
    )
    # No pointwise term: the layer is the V-cycle alone (and has no activation).
    return eqx.tree_at(
        lambda m: (m.vcycles, m.weights, m.biases),
        model,
        ((vcycle,), (jnp.zeros((1, 1)),), (jnp.zeros(1),)),
    )


@eqx.filter_jit
def _residual_factors(model, f, cycles):
    # The iteration u <- u + MgNO(f - A u), A = [-1, 2, -1] periodic.
    def residual(u):
        return f - (2 * u - jnp.roll(u, 1, 1) - jnp.roll(u, -1, 1))

    def cycle(u, _):
        u = u + model(residual(u))
        return u, jnp.linalg.norm(residual(u))

    _, norms = jax.lax.scan(cycle, jnp.zeros_like(f), length=cycles)
    norms = jnp.concatenate([jnp.linalg.norm(f)[None], norms])
    return norms[:-1] / norms[1:]


def test_vcycle_solves_poisson():
    # MgConv is a V-cycle: as the preconditioner of the iteration u <- u + MgNO(f - A u) it
    # reduces the residual of the periodic Poisson problem by a large factor per cycle;
    # the same Jacobi sweeps on one level barely reduce it.
    n = 64
    s = np.arange(n) / n
    f = np.exp(np.sin(2 * np.pi * s)) + np.cos(6 * np.pi * s)
    f += np.random.default_rng(0).standard_normal(n)
    f = jnp.asarray(f - f.mean())[None]  # mean-free: solvable

    factors = np.asarray(_residual_factors(_poisson_vcycle(levels=6, pre=2, post=1), f, 5))
    # Measured: 3.9, 10.9, 8.3, 8.7, 8.5 (the V(2,1) cycle with damped Jacobi contracts the
    # error by about 0.1 per cycle; the first cycle also removes the initial transient).
    assert np.prod(factors) > 5.0**5
    assert np.all(factors[1:] > 5.0)

    smoothing_only = _poisson_vcycle(levels=1, pre=2, post=1)
    assert np.all(np.asarray(_residual_factors(smoothing_only, f, 3)) < 1.5)


def test_resolution_not_divisible(getkey):
    model = MgNO(1, 1, channels=2, levels=4, depth=1, key=getkey())
    with pytest.raises(ValueError, match=r"levels=4.*multiple of 8.*\(12, 16\).* 8 and 16\."):
        model(jnp.zeros((1, 12, 16)))
    with pytest.raises(ValueError, match=r"multiple of 8.*\(0, 8\).* are 8\."):
        model(jnp.zeros((1, 0, 8)))


def test_bad_inputs(getkey):
    model = MgNO(2, 1, channels=2, levels=2, depth=1, key=getkey())
    with pytest.raises(ValueError, match=r"`MgNO` expects 2 input channels.*\(3, 8, 8\)"):
        model(jnp.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=r"`MgNO`.*2 spatial dims.*\(2, 8\)"):
        model(jnp.zeros((2, 8)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(padding="periodic"), r"`padding='periodic'`.*'zeros', 'circular', 'reflect'"),
        (dict(channels=(2, 3)), r"`channels=\(2, 3\)`.*tuple of 3"),
        (dict(channels=0), r"`channels=0`"),
        (dict(levels=0), r"`levels=0`"),
        (dict(depth=0), r"`depth=0`"),
        (dict(num_spatial_dims=4), r"`num_spatial_dims=4`"),
        (dict(smoothing_steps=-1), r"`smoothing_steps=-1`"),
        (dict(smoothing_steps=(1, 0, 1)), r"level\(s\) \[1\] without smoothing"),
        pytest.param(dict(activation="gelu"), r"`activation='gelu'`", marks=pytest.mark.untyped),
        (dict(dtype=jnp.int32), r"`dtype="),
    ],
)
def test_bad_arguments(getkey, kwargs, match):
    args = dict(channels=2, levels=3, depth=1, key=getkey())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MgNO(1, 1, **args)


@pytest.mark.parametrize("padding", PADDINGS)
def test_twice_the_resolution(getkey, padding):
    # Random convolution weights are not a resolution-consistent operator, so this only
    # checks that the model runs at 2x, stays finite and keeps its scale.
    model = MgNO(1, 1, channels=4, levels=2, depth=2, padding=padding, key=getkey())

    def smooth(n):
        s = jnp.arange(n) / n
        return (jnp.sin(2 * jnp.pi * s)[:, None] * jnp.cos(2 * jnp.pi * s)[None, :])[None]

    rms = []
    for n in (16, 32):
        out = apply(model, smooth(n))
        assert out.shape == (1, n, n)
        assert jnp.all(jnp.isfinite(out))
        rms.append(jnp.sqrt(jnp.mean(out**2)))
    assert 0.2 < rms[1] / rms[0] < 5
