"""Tests of `sciml.fields`: the coordinate MLP and Physics-Informed Gaussians.

Tolerances: float64 comparisons of the same formula evaluated two ways (NumPy vs JAX, forward
Laplacian vs dense Hessian) differ only by round-off, a few ulps times the condition of the
sums involved, so 1e-12 (values) and 1e-10 (second derivatives, whose terms reach
1/sigma^2 ~ 10-100 before cancelling) hold with a wide margin. float32 checks use 1e-4.

The models share a few shapes (in_dim 3, 30 Gaussians, width 16) on purpose: JAX compiles the
random initialisers once per shape, so new shapes cost seconds of compilation each.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from sciml.derivatives import laplacian
from sciml.fields import MLP, PIG

COVS = [("diagonal", None), ("full", "cholesky"), ("full", "rotation")]
PERIOD = 0.4
LOWER, UPPER = np.array([-4.0, 0.0, 1.0]), np.array([4.0, 4.0, 3.0])


def _np(a):
    return np.asarray(a, dtype=np.float64)


def _mlp(key, out_dim=2, dtype=None, **options) -> MLP:
    return MLP(3, out_dim, width=16, depth=2, key=key, dtype=dtype, **options)


def _rich_mlp(key, out_dim=2, dtype=None) -> MLP:
    """Rescaling, a periodic coordinate with 2 harmonics and 6 Fourier features at once."""
    return _mlp(
        key,
        out_dim,
        dtype,
        fourier_features=6,
        fourier_scale=0.7,
        periodic=(None, PERIOD, None),
        periodic_harmonics=2,
        input_lower=LOWER,
        input_upper=UPPER,
    )


def _pig(key, covariance="diagonal", parametrization=None, out_dim=2, dtype=None) -> PIG:
    return PIG(
        3,
        out_dim,
        num_gaussians=30,
        covariance=covariance,
        parametrization=parametrization,
        key=key,
        dtype=dtype,
    )


def _randomise(model: PIG, key) -> PIG:
    """A PIG with generic (non-initial) scales, shapes and features, so that the checks are not
    run at the special isotropic initialisation."""
    k1, k2, k3 = jr.split(key, 3)
    model = eqx.tree_at(
        lambda m: (m.log_scales, m.features),
        model,
        (
            model.log_scales + 0.3 * jr.normal(k1, model.log_scales.shape),
            jr.normal(k3, model.features.shape),
        ),
    )
    if model.off_diagonal is not None:
        # Cholesky entries are in units of 1/sigma (about 3 here); the rotation generator is
        # dimensionless.
        scale = 1.0 if model.parametrization == "rotation" else 2.0
        off = scale * jr.normal(k2, model.off_diagonal.shape)
        model = eqx.tree_at(lambda m: m.off_diagonal, model, off)
    return model


def _np_precisions(model: PIG) -> np.ndarray:
    """Sigma^{-1} from the raw parameters, written independently of the implementation."""
    n, d = model.means.shape
    s = np.exp(_np(model.log_scales))
    rows, cols = np.tril_indices(d, -1)
    out = np.empty((n, d, d))
    for i in range(n):
        if model.covariance == "diagonal":
            out[i] = np.diag(1 / s[i] ** 2)
            continue
        low = np.zeros((d, d))
        low[rows, cols] = _np(model.off_diagonal[i])
        if model.parametrization == "cholesky":
            lower = low + np.diag(1 / s[i])
            out[i] = lower @ lower.T
        else:
            a = low - low.T
            r = np.linalg.solve(np.eye(d) - a, np.eye(d) + a)
            out[i] = r @ np.diag(1 / s[i] ** 2) @ r.T
    return out


def _np_head(model: MLP, v: np.ndarray) -> np.ndarray:
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        v = _np(w) @ v + _np(b)
        if i < len(model.weights) - 1:
            v = np.tanh(v)
    return v


XS = np.array(  # five points of the box [0, 1]^3 (shared shapes: compiled once per model kind)
    [[0.2, 0.5, 0.9], [0.1, 0.0, 0.3], [0.7, 0.4, 0.6], [0.95, 0.8, 0.05], [0.5, 0.5, 0.5]]
)


@eqx.filter_jit
def _evaluate(model, xs):
    """Everything a model computes at the points `xs`, in one compiled program (eager
    evaluation would compile every primitive separately)."""
    out = {
        "single": model(xs[0]),
        "batched": jax.vmap(model)(xs),
        "embed": jax.vmap(model.embed)(xs),
    }
    if isinstance(model, PIG):
        out["precisions"] = model.precisions()
        out["means"], out["covariances"] = model.gaussians()
        if model.parametrization == "rotation":
            out["rotations"] = model._rotations()
    return out


# ----------------------------------------------------------------------------------------------
# MLP


@pytest.mark.parametrize(("dtype", "out_dim"), [(jnp.float32, "scalar"), (jnp.float64, 2)])
@pytest.mark.parametrize("rich", [False, True])
def test_mlp_shapes_and_dtypes(getkey, dtype, out_dim, rich):
    model = (_rich_mlp if rich else _mlp)(getkey(), out_dim, dtype)
    out = _evaluate(model, jnp.asarray(XS, dtype))
    assert out["single"].shape == (() if out_dim == "scalar" else (out_dim,))
    assert out["batched"].shape == (5, *out["single"].shape)
    assert out["embed"].shape == (5, 12 if rich else 3)
    assert all(v.dtype == dtype for v in out.values())
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))
    assert all(leaf.dtype == dtype for leaf in leaves)
    tol = 1e-6 if dtype == jnp.float32 else 1e-14  # batched vs unbatched round-off only
    np.testing.assert_allclose(out["batched"][0], out["single"], rtol=tol, atol=tol)


def test_mlp_glorot_normal_and_zero_bias(getkey):
    model = MLP(3, 2, width=512, depth=2, key=getkey())
    assert all(np.all(_np(b) == 0) for b in model.biases)
    w = _np(model.weights[1])  # 512 x 512: 2.6e5 samples, relative std error of the std ~0.14%
    assert w.shape == (512, 512)
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (512 + 512)), rtol=0.02)
    assert abs(w.mean()) < 4 * np.sqrt(2 / 1024) / 512


def test_mlp_matches_numpy_reference(getkey):
    # Rescaling, periodic embedding (order: free coordinates, cosines, sines) and Fourier
    # features, all at once, against a direct NumPy evaluation of the documented formula.
    model = _rich_mlp(getkey())
    xs = XS * (UPPER - LOWER + 1) + LOWER - 0.5  # also a little outside the box
    out = _evaluate(model, jnp.asarray(xs))
    for x, y in zip(xs, out["batched"], strict=True):
        scaled = 2 * (x - LOWER) / (UPPER - LOWER) - 1
        theta = 2 * np.pi * np.arange(1, 3) * x[1] / PERIOD
        v = np.concatenate([scaled[[0, 2]], np.cos(theta), np.sin(theta)])
        z = 2 * np.pi * _np(model.fourier_matrix) @ v
        expected = _np_head(model, np.concatenate([np.cos(z), np.sin(z)]))
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_mlp_input_rescaling(getkey):
    key = getkey()
    boxed = _mlp(key, input_lower=LOWER, input_upper=UPPER)
    plain = _mlp(key)
    xs = np.concatenate([[LOWER, UPPER], LOWER + XS[:3] * (UPPER - LOWER)])
    out = _evaluate(boxed, jnp.asarray(xs))
    reference = _evaluate(plain, jnp.asarray(2 * (xs - LOWER) / (UPPER - LOWER) - 1))
    np.testing.assert_allclose(out["batched"], reference["batched"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["embed"][:2], [-np.ones(3), np.ones(3)], atol=1e-15)


def test_mlp_periodic_is_exact(getkey):
    model = _rich_mlp(getkey(), "scalar")

    @eqx.filter_jit
    def value_and_grad(model, xs):
        return jax.vmap(jax.value_and_grad(model))(xs)

    x = jnp.array([0.37, -0.21, 1.05])
    # The phases 2 pi k (x + m P) / P and 2 pi k x / P + 2 pi k m differ by round-off only.
    shifts = jnp.array([0.0, PERIOD, -PERIOD, 3 * PERIOD, 25 * PERIOD])
    values, grads = value_and_grad(model, x + shifts[:, None] * jnp.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        grads, np.broadcast_to(grads[0], grads.shape), rtol=1e-11, atol=1e-12
    )
    # ... and not periodic in the free coordinates.
    values, _ = value_and_grad(model, x + shifts[:, None] * jnp.array([1.0, 0.0, 0.0]))
    assert np.all(np.abs(_np(values[1:] - values[0])) > 1e-6)


def test_mlp_fourier_matrix_gets_zero_gradient(getkey):
    model = _rich_mlp(getkey())
    xs = jr.uniform(getkey(), (8, 3))

    @eqx.filter_jit
    @eqx.filter_grad
    def grads(model):
        return jnp.mean(jax.vmap(lambda x: model(x) ** 2)(xs))

    g = grads(model)
    assert np.all(_np(g.fourier_matrix) == 0)
    assert np.all(_np(g.weights[0]) != 0)


# ----------------------------------------------------------------------------------------------
# PIG


@pytest.mark.parametrize(("dtype", "out_dim"), [(jnp.float32, "scalar"), (jnp.float64, 2)])
@pytest.mark.parametrize(("covariance", "parametrization"), COVS)
def test_pig_shapes_and_dtypes(getkey, dtype, out_dim, covariance, parametrization):
    model = _pig(getkey(), covariance, parametrization, out_dim, dtype)
    out = _evaluate(model, jnp.asarray(XS, dtype))
    assert out["single"].shape == (() if out_dim == "scalar" else (out_dim,))
    assert out["batched"].shape == (5, *out["single"].shape)
    assert out["embed"].shape == (5, 4)
    assert out["means"].shape == (30, 3) and out["covariances"].shape == (30, 3, 3)
    assert all(v.dtype == dtype for v in out.values())
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))
    assert all(leaf.dtype == dtype for leaf in leaves)
    tol = 1e-6 if dtype == jnp.float32 else 1e-14  # batched vs unbatched round-off only
    np.testing.assert_allclose(out["batched"][0], out["single"], rtol=tol, atol=tol)


@pytest.mark.parametrize(("covariance", "parametrization"), COVS)
def test_pig_embedding_matches_numpy(getkey, covariance, parametrization):
    model = _randomise(_pig(getkey(), covariance, parametrization), getkey())
    prec, mu, f = _np_precisions(model), _np(model.means), _np(model.features)
    diff = XS[:, None, :] - mu
    weights = np.exp(-0.5 * np.einsum("ngi,gij,ngj->ng", diff, prec, diff))
    expected = weights @ f
    assert np.abs(expected).max() > 0.1  # the Gaussians are not all negligible here
    out = _evaluate(model, jnp.asarray(XS))
    np.testing.assert_allclose(out["embed"], expected, rtol=1e-12, atol=1e-12)
    outputs = np.stack([_np_head(model.head, e) for e in expected])
    np.testing.assert_allclose(out["batched"], outputs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("parametrization", ["cholesky", "rotation"])
def test_pig_full_init_equals_diagonal(getkey, parametrization):
    key = getkey()
    diag = _pig(key)
    full = _pig(key, "full", parametrization)
    for a, b in [
        (diag.means, full.means),
        (diag.log_scales, full.log_scales),
        (diag.features, full.features),
        *zip(diag.head.weights, full.head.weights, strict=True),
    ]:
        np.testing.assert_array_equal(a, b)
    assert np.all(_np(full.off_diagonal) == 0)
    out_diag, out_full = _evaluate(diag, jnp.asarray(XS)), _evaluate(full, jnp.asarray(XS))
    for name in ("precisions", "covariances", "batched"):
        np.testing.assert_allclose(out_full[name], out_diag[name], rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize(("covariance", "parametrization"), COVS)
def test_pig_precisions_are_spd_and_match_covariances(getkey, covariance, parametrization):
    model = _randomise(_pig(getkey(), covariance, parametrization), getkey())
    out = _evaluate(model, jnp.asarray(XS))
    prec = _np(out["precisions"])
    np.testing.assert_allclose(prec, _np_precisions(model), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(prec, np.swapaxes(prec, -1, -2), rtol=0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(prec) > 0)
    np.testing.assert_array_equal(out["means"], model.means)
    eye = np.broadcast_to(np.eye(3), prec.shape)
    np.testing.assert_allclose(_np(out["covariances"]) @ prec, eye, atol=1e-10)
    if parametrization == "rotation":
        r = _np(out["rotations"])
        np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), eye, atol=1e-13)
        np.testing.assert_allclose(np.linalg.det(r), 1.0, rtol=1e-13)


def test_pig_initialisation(getkey):
    lower, upper, n = np.array([-4.0, -4.0, 0.0]), np.array([4.0, 4.0, 4.0]), 4000
    model = PIG(3, 2, num_gaussians=n, lower=lower, upper=upper, key=getkey())
    means = _np(model.means)
    assert np.all(means >= lower) and np.all(means <= upper)
    # Uniform: the sample mean of each coordinate is the box centre to within 4 standard errors.
    np.testing.assert_allclose(
        means.mean(0), (lower + upper) / 2, atol=4 * (upper - lower).max() / np.sqrt(12 * n)
    )
    np.testing.assert_allclose(
        np.exp(_np(model.log_scales)), np.broadcast_to((upper - lower) * n ** (-1 / 3), (n, 3))
    )
    # 16000 samples: the sample std is within ~0.6% of 0.01 (one standard error), allow 5%.
    np.testing.assert_allclose(_np(model.features).std(), 0.01, rtol=0.05)
    custom = PIG(3, 2, num_gaussians=30, init_sigma=(0.1, 0.2, 0.3), key=getkey())
    np.testing.assert_allclose(np.exp(_np(custom.log_scales)), np.tile([0.1, 0.2, 0.3], (30, 1)))


# ----------------------------------------------------------------------------------------------
# Derivatives, transformations, scale


def _model(which: int, key) -> MLP | PIG:
    k1, k2 = jr.split(key)
    if which == 0:
        return _rich_mlp(k1)
    return _randomise(_pig(k1, *COVS[which - 1]), k2)


@eqx.filter_jit
def _laplacians(model, xs):
    def field(x):
        return model(x)[1]

    auto = jax.vmap(lambda x: laplacian(field, x))(xs)
    taylor = jax.vmap(lambda x: laplacian(field, x, method="taylor"))(xs)
    dense = jax.vmap(lambda x: jnp.trace(jax.hessian(field)(x)))(xs)
    return auto, taylor, dense


@pytest.mark.parametrize("which", range(4))
def test_laplacian_matches_dense_hessian(getkey, which):
    model = _model(which, getkey())
    auto, taylor, dense = _laplacians(model, jr.uniform(getkey(), (4, 3)))
    assert np.abs(_np(dense)).max() > 1e-3
    np.testing.assert_allclose(auto, dense, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(taylor, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("which", range(4))
def test_parameter_gradient_through_laplacian(getkey, which):
    # The gradient of a Laplacian loss with respect to all parameters (means, scales,
    # off-diagonals, features, MLP), projected on a random direction v, against a central
    # difference of the loss along v: truncation ~ eps^2 = 1e-10 and round-off ~ 1e-16 / eps =
    # 1e-11 relative, so 1e-6 is a safe tolerance that still catches any wrong term.
    model = _model(which, getkey())
    xs = jr.uniform(getkey(), (6, 3))

    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss(model):
        return jnp.mean(jax.vmap(lambda x: laplacian(lambda x: model(x)[0], x))(xs) ** 2)

    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jr.split(getkey(), len(leaves))
    v = jax.tree_util.tree_unflatten(
        treedef, [jr.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )
    _, grads = loss(model)
    if isinstance(model, MLP):  # the frozen Fourier matrix: no gradient, no step along it
        assert np.all(_np(grads.fourier_matrix) == 0)
        v = eqx.tree_at(lambda p: p.fourier_matrix, v, jnp.zeros_like(v.fourier_matrix))
    eps = 1e-5

    def shifted(sign):
        moved = jax.tree_util.tree_map(lambda p, d: p + sign * eps * d, params, v)
        return loss(eqx.combine(moved, static))[0]

    grad_leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(_np(g))) for g in grad_leaves)
    directional = sum(
        jnp.vdot(g, d) for g, d in zip(grad_leaves, jax.tree_util.tree_leaves(v), strict=True)
    )
    np.testing.assert_allclose((shifted(1.0) - shifted(-1.0)) / (2 * eps), directional, rtol=1e-6)


def test_pig_vmap_20k_points_4k_gaussians_float32(getkey):
    # About 8e7 Gaussian evaluations in one batched call; compared on a subset with float64.
    model = PIG(3, "scalar", num_gaussians=4000, key=getkey(), dtype=jnp.float32)
    model = eqx.tree_at(lambda m: m.features, model, jr.normal(getkey(), (4000, 4), jnp.float32))
    xs = jr.uniform(getkey(), (20_000, 3), jnp.float32)
    batched = eqx.filter_jit(lambda model, xs: jax.vmap(model)(xs))
    ys = batched(model, xs)
    assert ys.shape == (20_000,) and ys.dtype == jnp.float32
    assert np.all(np.isfinite(_np(ys)))
    model64 = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, model
    )
    ref = batched(model64, xs[:200].astype(jnp.float64))
    np.testing.assert_allclose(ys[:200], ref, rtol=1e-4, atol=1e-4 * np.abs(_np(ref)).max())
    # The Laplacian at a tenth of the points (8e6 Gaussian evaluations), in float32 too.
    laps = eqx.filter_jit(lambda model, xs: jax.vmap(lambda x: laplacian(model, x))(xs))(
        model, xs[:2000]
    )
    assert laps.shape == (2000,) and laps.dtype == jnp.float32
    assert np.all(np.isfinite(_np(laps)))


# ----------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "match"),
    [
        (MLP, (0, 1), {"width": 8, "depth": 2}, "`in_dim=0`"),
        (MLP, (2, 0), {"width": 8, "depth": 2}, "`out_dim=0`"),
        pytest.param(
            MLP,
            (2, "vector"),
            {"width": 8, "depth": 2},
            "`out_dim='vector'`",
            marks=pytest.mark.untyped,
        ),
        (MLP, (2, 1), {"width": 0, "depth": 2}, "`width=0`"),
        (MLP, (2, 1), {"width": 8, "depth": -1}, "`depth=-1`"),
        (MLP, (2, 1), {"width": 8, "depth": 2, "periodic": (1.0,)}, "`periodic=\\(1.0,\\)`"),
        (MLP, (2, 1), {"width": 8, "depth": 2, "periodic": (1.0, -2.0)}, "`periodic="),
        (MLP, (2, 1), {"width": 8, "depth": 2, "periodic_harmonics": 3}, "`periodic_harmonics"),
        (MLP, (2, 1), {"width": 8, "depth": 2, "fourier_features": 0}, "`fourier_features=0`"),
        (MLP, (2, 1), {"width": 8, "depth": 2, "fourier_scale": 2.0}, "`fourier_scale=2.0`"),
        (
            MLP,
            (2, 1),
            {"width": 8, "depth": 2, "fourier_features": 4, "fourier_scale": -1.0},
            "`fourier_scale=-1.0`",
        ),
        (MLP, (2, 1), {"width": 8, "depth": 2, "input_lower": 0.0}, "`input_upper=None`"),
        (
            MLP,
            (2, 1),
            {"width": 8, "depth": 2, "input_lower": (0, 1), "input_upper": (1, 1)},
            "`input_lower < input_upper`",
        ),
        (
            MLP,
            (2, 1),
            {"width": 8, "depth": 2, "input_lower": (0, 0, 0), "input_upper": 1},
            "`input_lower=\\(0, 0, 0\\)`",
        ),
        pytest.param(
            MLP,
            (2, 1),
            {"width": 8, "depth": 2, "activation": "tanh"},
            "`activation='tanh'`",
            marks=pytest.mark.untyped,
        ),
        (MLP, (2, 1), {"width": 8, "depth": 2, "dtype": jnp.int32}, "`dtype="),
        (PIG, (0, 1), {"num_gaussians": 10}, "`in_dim=0`"),
        (PIG, (2, 1), {"num_gaussians": 0}, "`num_gaussians=0`"),
        (PIG, (2, 1), {"num_gaussians": 10, "feature_dim": 0}, "`feature_dim=0`"),
        (PIG, (2, 1), {"num_gaussians": 10, "hidden": 0}, "`hidden=0`"),
        (PIG, (2, 1), {"num_gaussians": 10, "layers": -1}, "`layers=-1`"),
        pytest.param(
            PIG,
            (2, 1),
            {"num_gaussians": 10, "covariance": "spherical"},
            "`covariance='spher",
            marks=pytest.mark.untyped,
        ),
        pytest.param(
            PIG,
            (2, 1),
            {"num_gaussians": 10, "covariance": "full", "parametrization": "qr"},
            "`parametrization='qr'`",
            marks=pytest.mark.untyped,
        ),
        (PIG, (2, 1), {"num_gaussians": 10, "parametrization": "cholesky"}, "`parametrization"),
        (PIG, (2, 1), {"num_gaussians": 10, "lower": 1.0, "upper": 0.0}, "`lower < upper`"),
        (PIG, (2, 1), {"num_gaussians": 10, "upper": (1.0, 2.0, 3.0)}, "`upper=\\(1.0, 2.0"),
        (PIG, (2, 1), {"num_gaussians": 10, "init_sigma": -0.1}, "`init_sigma=-0.1`"),
        (PIG, (2, 1), {"num_gaussians": 10, "init_feature_std": 0.0}, "`init_feature_std=0.0`"),
    ],
)
def test_bad_arguments(getkey, cls, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(*args, key=getkey(), **kwargs)


@pytest.mark.untyped
@pytest.mark.parametrize("make", [_mlp, _pig])
def test_wrong_point_shape(getkey, make):
    model = make(getkey())
    name = type(model).__name__
    for bad in (jnp.zeros(2), jnp.zeros((5, 3)), jnp.zeros(())):
        with pytest.raises(ValueError, match=f"`{name}` expects one point `x` of shape \\(3,\\)"):
            model(bad)
    with pytest.raises(ValueError, match="got shape \\(5, 3\\); batch over points"):
        eqx.filter_jit(model)(jnp.zeros((5, 3)))
