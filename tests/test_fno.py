import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.operators import FNO, AbstractOperator, SpectralConv

# (spatial shape, modes): the cases include a full axis with n = 2 m (frequency -m is the
# Nyquist one), an even last axis whose Nyquist column is kept (m = n // 2 + 1) and odd sizes.
SPECTRAL_CASES = [
    ((10,), (6,)),
    ((9,), (5,)),
    ((8, 6), (4, 4)),
    ((7, 9), (3, 5)),
    ((8, 6, 6), (2, 3, 4)),
    ((5, 4, 7), (2, 2, 4)),
]


def _dft_matrix(n):
    j = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(j, j) / n)


def _dense_spectral_conv(x, weight, modes):
    """Independent NumPy reference: explicit DFT matrices, a loop over the kept modes, the
    Hermitian mirror written out, and the explicit inverse DFT."""
    spatial = x.shape[1:]
    c_out = weight.shape[1]
    # Forward DFT along every spatial axis: X[c, k] = sum_j x[c, j] exp(-2 pi i k.j / n).
    x_hat = x.astype(np.complex128)
    for axis, n in enumerate(spatial, start=1):
        x_hat = np.moveaxis(np.tensordot(x_hat, _dft_matrix(n), axes=([axis], [0])), -1, axis)
    # Kept (signed) frequencies, in the weight's index order.
    freqs = [list(range(m)) + list(range(-m, 0)) for m in modes[:-1]] + [list(range(modes[-1]))]
    g = np.zeros((c_out, *spatial), np.complex128)
    for index in itertools.product(*(range(len(f)) for f in freqs)):
        k = [f[i] for f, i in zip(freqs, index, strict=True)]
        at = tuple(kk % n for kk, n in zip(k, spatial, strict=True))
        y = weight[(slice(None), slice(None), *index)].T @ x_hat[(slice(None), *at)]
        g[(slice(None), *at)] += y
        # A real output needs g(-k) = conj(g(k)). For 0 < k_d < n_d / 2 the mirror lies in the
        # discarded half of the real FFT, so it is implied; the self-conjugate columns k_d = 0
        # and k_d = n_d / 2 carry both k and -k themselves, and taking the real part below is
        # the convention of the real inverse FFT there (the real part is the projection of
        # the result onto real fields).
        if 0 < 2 * k[-1] < spatial[-1]:
            mirror = tuple((-kk) % n for kk, n in zip(k, spatial, strict=True))
            g[(slice(None), *mirror)] += np.conj(y)
    out = g
    for axis, n in enumerate(spatial, start=1):
        inverse = np.conj(_dft_matrix(n)) / n
        out = np.moveaxis(np.tensordot(out, inverse, axes=([axis], [0])), -1, axis)
    return out.real


@pytest.mark.parametrize("spatial,modes", SPECTRAL_CASES)
def test_spectral_conv_matches_dense_dft(spatial, modes, getkey):
    conv = SpectralConv(3, 2, modes, key=getkey(), dtype=jnp.float64)
    assert isinstance(conv, AbstractOperator)
    # Random weights of both signs, so that no structure of the initialisation hides errors.
    rng = np.random.default_rng(0)
    shape = conv.weight_real.shape
    conv = eqx.tree_at(
        lambda c: (c.weight_real, c.weight_imag),
        conv,
        (jnp.asarray(rng.standard_normal(shape)), jnp.asarray(rng.standard_normal(shape))),
    )
    x = jnp.asarray(rng.standard_normal((3, *spatial)))
    out = eqx.filter_jit(conv)(x)
    weight = np.asarray(conv.weight_real) + 1j * np.asarray(conv.weight_imag)
    expected = _dense_spectral_conv(np.asarray(x), weight, modes)
    assert out.shape == (2, *spatial)
    assert out.dtype == jnp.float64
    # O(1) entries and sizes below 400: float64 round-off in FFTs and the reference is ~1e-14.
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "spatial,modes,shifts",
    [
        ((16,), (5,), [3, -7]),
        ((12, 10), (3, 4), [(5, 0), (0, 3), (-2, 7)]),
        ((8, 6, 6), (2, 3, 2), [(3, 0, 0), (0, 1, 0), (0, 0, 5), (1, 2, 3)]),
    ],
)
def test_fno_periodic_translation_equivariance_jit_vmap(spatial, modes, shifts, getkey):
    model = FNO(2, 1, modes=modes, width=4, depth=2, grid_features=False, key=getkey())
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, *spatial)))
    axes = tuple(range(1, len(spatial) + 1))
    shifts = [s if isinstance(s, tuple) else (s,) for s in shifts]
    batch = jnp.stack([x] + [jnp.roll(x, s, axis=axes) for s in shifts])
    out = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(model, batch)
    assert out.shape == (len(shifts) + 1, 1, *spatial)
    # Exact in exact arithmetic (the DFT of a rolled field is a phase times the DFT);
    # float64 round-off on O(1) outputs is ~1e-15.
    for i, shift in enumerate(shifts, start=1):
        np.testing.assert_allclose(out[i], jnp.roll(out[0], shift, axis=axes), rtol=0, atol=1e-10)


def _poisson_pair(seed, n, s, kmax=3):
    """`n` samples of f and of u solving -Lap u = f / (4 pi^2) on the periodic unit square,
    evaluated exactly (sums of Fourier modes |k_i| <= kmax) on the s x s grid x_j = j / s."""
    ks = [(k1, k2) for k1 in range(-kmax, kmax + 1) for k2 in range(0, kmax + 1)]
    ks = np.array([k for k in ks if k[1] > 0 or k[0] > 0], np.float64)
    coef = np.random.default_rng(seed).standard_normal((n, len(ks), 2))
    decay = 1.0 / (ks**2).sum(-1)
    x = np.arange(s) / s
    phase = 2 * np.pi * (ks[:, 0, None, None] * x[:, None] + ks[:, 1, None, None] * x[None, :])
    cos, sin = np.cos(phase), np.sin(phase)
    f = np.einsum("nk,kxy->nxy", coef[..., 0], cos) + np.einsum("nk,kxy->nxy", coef[..., 1], sin)
    u = np.einsum("nk,kxy->nxy", coef[..., 0] * decay, cos) + np.einsum(
        "nk,kxy->nxy", coef[..., 1] * decay, sin
    )
    return jnp.asarray(f[:, None], jnp.float32), jnp.asarray(u[:, None], jnp.float32)


def _rel_l2(pred, target):
    axes = tuple(range(1, pred.ndim))
    num = jnp.sqrt(jnp.sum((pred - target) ** 2, axis=axes))
    return jnp.mean(num / jnp.sqrt(jnp.sum(target**2, axis=axes)))


def test_fno_resolution_transfer_poisson(getkey):
    f_train, u_train = _poisson_pair(0, 64, 64)
    model = FNO(
        1,
        1,
        modes=(4, 4),
        width=8,
        depth=2,
        projection_channels=16,
        grid_features=False,
        key=getkey(),
        dtype=jnp.float32,
    )
    steps = 200
    optim = optax.adam(optax.cosine_decay_schedule(1e-2, steps))
    opt_state = optim.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, f, u):
        loss, grads = eqx.filter_value_and_grad(lambda m: _rel_l2(jax.vmap(m)(f), u))(model)
        updates, opt_state = optim.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state, loss

    for i in range(steps):
        batch = slice((i % 8) * 8, (i % 8 + 1) * 8)
        model, opt_state, _ = step(model, opt_state, f_train[batch], u_train[batch])

    # New samples (another seed), evaluated at the training resolution and at twice it.
    evaluate = eqx.filter_jit(lambda m, f, u: _rel_l2(jax.vmap(m)(f), u))
    errors = {
        s: float(evaluate(model, f, u))
        for s, (f, u) in ((s, _poisson_pair(1, 16, s)) for s in (64, 128))
    }
    # The spectral layers see the same Fourier coefficients at every resolution (band-limited
    # f, unnormalised forward / 1/N inverse FFT); only aliasing of the activations differs.
    # A model tied to its training grid (e.g. a wrong FFT normalisation) fails the second test.
    print(
        f"\nrelative L2 of a model trained at s=64: at s=64 {errors[64]:.4f}, "
        f"at s=128 {errors[128]:.4f}"
    )
    assert errors[64] < 0.05, errors
    assert errors[128] <= 2 * errors[64], errors


def test_fno_gradients(getkey):
    model = FNO(2, 1, modes=(3, 2), width=4, depth=2, padding=1, key=getkey())
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2, 8, 6)))
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(x) ** 2)))(model)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_array))
    # lifting (W, b) + depth * (spectral re, im + pointwise W, b) + 2 projection layers * (W, b).
    assert len(leaves) == 2 + 2 * 4 + 4
    for leaf in leaves:
        assert bool(jnp.all(jnp.isfinite(leaf)))
        assert float(jnp.max(jnp.abs(leaf))) > 0


def test_fno_float32_and_padding(getkey):
    model = FNO(
        1, 2, modes=(4, 3), width=4, depth=2, padding=(3, 0.25), key=getkey(), dtype=jnp.float32
    )
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_array))
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    # Padded grid (10 + 3, 4 + 1) = (13, 5) carries modes (4, 3): 13 >= 8 and 5 // 2 + 1 >= 3.
    out = jax.eval_shape(model, jnp.ones((1, 10, 4), jnp.float32))
    assert out.shape == (2, 10, 4) and out.dtype == jnp.float32
    # Any other resolution works with the same parameters.
    assert jax.eval_shape(model, jnp.ones((1, 17, 9), jnp.float32)).shape == (2, 17, 9)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        pytest.param(dict(modes=12), "modes", marks=pytest.mark.untyped),
        (dict(modes=(12, 0)), "modes"),
        (dict(modes=()), "modes"),
        pytest.param(dict(modes=(4, 4.0)), "modes", marks=pytest.mark.untyped),
        (dict(modes=(4, 4), width=0), "width"),
        (dict(modes=(4, 4), depth=-1), "depth"),
        (dict(modes=(4, 4), padding=-1), "padding"),
        (dict(modes=(4, 4), padding=(1, 2, 3)), "padding"),
        (dict(modes=(4, 4), padding=1.5), "padding"),
        pytest.param(
            dict(modes=(4, 4), grid_features=1), "grid_features", marks=pytest.mark.untyped
        ),
        (dict(modes=(4, 4), projection_channels=0), "projection_channels"),
        (dict(modes=(4, 4), lifting_channels=-3), "lifting_channels"),
        pytest.param(
            dict(modes=(4, 4), activation="gelu"), "activation", marks=pytest.mark.untyped
        ),
        (dict(modes=(4, 4), dtype=jnp.int32), "dtype"),
    ],
)
def test_fno_invalid_arguments(kwargs, name, getkey):
    key = getkey()
    with pytest.raises(ValueError, match=f"`FNO`.*`{name}"):
        FNO(1, 1, key=key, **kwargs)


def test_invalid_inputs(getkey):
    with pytest.raises(ValueError, match="`in_channels"):
        FNO(0, 1, modes=(2,), key=getkey())
    with pytest.raises(ValueError, match="`SpectralConv`.*`modes"):
        SpectralConv(2, 2, (3, -1), key=getkey())
    model = FNO(2, 1, modes=(4, 3), width=4, depth=2, key=getkey())
    with pytest.raises(ValueError, match="input channels"):
        jax.eval_shape(model, jnp.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="2 spatial dims"):
        jax.eval_shape(model, jnp.ones((2, 8)))
    # Needs 2 * 4 = 8 points on the first axis and 2 * 3 - 2 = 4 on the last.
    jax.eval_shape(model, jnp.ones((2, 8, 4)))
    with pytest.raises(ValueError, match=r"modes=\(4, 3\).*\(8, 4\).*\(7, 4\)"):
        jax.eval_shape(model, jnp.ones((2, 7, 4)))
    with pytest.raises(ValueError, match=r"modes=\(4, 3\).*\(8, 4\).*\(8, 3\)"):
        jax.eval_shape(model, jnp.ones((2, 8, 3)))
    conv = SpectralConv(2, 2, (4, 3), key=getkey())
    with pytest.raises(ValueError, match=r"`SpectralConv`.*\(8, 4\).*\(7, 4\)"):
        jax.eval_shape(conv, jnp.ones((2, 7, 4)))
