"""`Autoregressive` and `SpaceTimeOperator`: the two ways to predict trajectories (FNO-2D /
FNO-3D)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.operators import FNO, AbstractOperator, Autoregressive, SpaceTimeOperator


class _Extrapolate(AbstractOperator):
    """Predicts the next `k` frames by linear extrapolation of the last two (exact for frames
    that are linear in time)."""

    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)

    def __call__(self, x):
        slope = x[-1] - x[-2]
        steps = jnp.arange(1, self.out_channels + 1).reshape(-1, *([1] * (x.ndim - 1)))
        return x[-1] + steps * slope


@pytest.mark.parametrize("k", [1, 2])
def test_autoregressive_continues_a_linear_trajectory_exactly(getkey, k):
    base = jax.random.normal(getkey(), (6, 5))
    slope = jax.random.normal(getkey(), (6, 5))
    frames = base + jnp.arange(14.0)[:, None, None] * slope  # (14, 6, 5), linear in time
    model = Autoregressive(_Extrapolate(4, k, 2), steps=10)
    out = eqx.filter_jit(model)(frames[:4])
    assert out.shape == (10, 6, 5)
    np.testing.assert_allclose(out, frames[4:], rtol=1e-12, atol=1e-12)


def test_autoregressive_equals_a_python_loop_and_differentiates(getkey):
    step = FNO(3, 1, modes=(3, 3), width=6, depth=2, key=getkey())
    model = Autoregressive(step, steps=5, unroll=1)
    x = jax.random.normal(getkey(), (3, 8, 8))
    window, preds = x, []
    for _ in range(5):
        p = step(window)
        preds.append(p)
        window = jnp.concatenate([window[1:], p])
    np.testing.assert_allclose(model(x), jnp.concatenate(preds), rtol=1e-12, atol=1e-12)
    batch = jax.random.normal(getkey(), (2, 3, 8, 8))
    grads = eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(batch) ** 2))(model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_autoregressive_takes_float32_frames_into_a_float64_model(getkey):
    step = FNO(2, 1, modes=(3,), width=4, depth=1, key=getkey(), dtype=jnp.float64)
    model = Autoregressive(step, steps=3)
    x = jax.random.normal(getkey(), (2, 8), dtype=jnp.float32)
    out = model(x)
    assert out.dtype == jnp.float64 and out.shape == (3, 8)
    np.testing.assert_allclose(out, model(x.astype(jnp.float64)), rtol=1e-12, atol=1e-12)


def test_space_time_broadcasts_input_frames_along_time(getkey):
    fno3 = FNO(4, 1, modes=(3, 3, 2), width=6, depth=2, padding=(0, 0, 2), key=getkey())
    model = SpaceTimeOperator(fno3, steps=6)
    x = jax.random.normal(getkey(), (4, 8, 8))
    block = jnp.repeat(x[..., None], 6, axis=-1)
    expected = jnp.moveaxis(fno3(block)[0], -1, 0)
    out = eqx.filter_jit(model)(x)
    assert out.shape == (6, 8, 8)
    assert model.num_spatial_dims == 2 and model.out_channels == 6
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_time_operators_reject_bad_arguments(getkey):
    step = FNO(3, 2, modes=(2, 2), width=4, depth=1, key=getkey())
    with pytest.raises(ValueError, match="positive multiple"):
        Autoregressive(step, steps=5)
    with pytest.raises(ValueError, match="out_channels <= in_channels"):
        Autoregressive(FNO(1, 2, modes=(2, 2), width=4, depth=1, key=getkey()), steps=4)
    with pytest.raises(ValueError, match="shape"):
        Autoregressive(step, steps=4)(jnp.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="out_channels = 1"):
        SpaceTimeOperator(FNO(3, 2, modes=(2, 2, 2), width=4, depth=1, key=getkey()), steps=4)
    with pytest.raises(ValueError, match="shape"):
        SpaceTimeOperator(FNO(3, 1, modes=(2, 2, 2), width=4, depth=1, key=getkey()), steps=4)(
            jnp.zeros((3, 8))
        )


def test_the_earlier_name_of_the_space_time_operator_still_works():
    from sciml import operators

    assert operators.SpaceTime is SpaceTimeOperator
