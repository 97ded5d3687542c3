"""Tests for `sciml.train`: losses, normalisers, batching, steps, checkpoints, plots and `fit`.

All models are tiny `eqx.nn.MLP`s on flat samples; float64 is enabled by conftest.
"""

import functools
import json
import math

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest

import sciml.train as st

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _leaves_equal(a, b):
    la, lb = (
        jtu.tree_leaves(eqx.filter(a, eqx.is_array)),
        jtu.tree_leaves(eqx.filter(b, eqx.is_array)),
    )
    assert len(la) == len(lb)
    return all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(la, lb, strict=True)
    )


def _regression_data(n, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    w = rng.normal(size=(dim, dim))
    return x, x @ w + 0.1 * np.sin(x)


# ----------------------------------------------------------------------------------------
# Losses


@pytest.mark.untyped
def test_relative_l2_known_values():
    target = jnp.ones((2, 3))
    assert st.relative_l2(1.1 * target, target) == pytest.approx(0.1, rel=1e-12)
    # ||(3, -1)|| / ||(0, 5)|| = sqrt(10) / 5
    value = st.relative_l2(jnp.array([3.0, 4.0]), jnp.array([0.0, 5.0]))
    assert value == pytest.approx(math.sqrt(10) / 5, rel=1e-12)
    assert st.relative_l2(target, target) == 0
    # Finite (zero) gradient at a perfect prediction.
    grad = jax.grad(st.relative_l2)(target, target)
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)
    # A NaN prediction gives a NaN loss (not 0), in relative L2 and H1 alike.
    bad = target.at[0, 0].set(jnp.nan)
    assert np.isnan(st.relative_l2(bad, target)) and np.isnan(st.h1_loss(bad, target))
    with pytest.raises(ValueError, match="same shape"):
        st.relative_l2(jnp.ones(3), jnp.ones(4))


def test_batch_loss_is_mean_of_per_sample_metric(getkey):
    model = eqx.nn.MLP(4, 4, 8, 1, key=getkey())
    x, y = _regression_data(6)
    loss = st.batch_loss(st.relative_l2)(model, x, y)
    pred = np.asarray(jax.jit(jax.vmap(model))(x))
    expected = np.mean(np.linalg.norm(pred - y, axis=1) / np.linalg.norm(y, axis=1))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def _grid(n, d):
    axes = [np.linspace(0, 1, n)] * d
    return np.meshgrid(*axes, indexing="ij")


def _field(d, n):
    """u = prod_i sin/cos and its exact squared L2 and H1-seminorm on [0, 1]^d.

    d = 1: u = sin(pi x): ||u||^2 = 1/2, ||u'||^2 = pi^2 / 2.
    d = 2: u = sin(pi x) cos(2 pi y): ||u||^2 = 1/4, ||grad u||^2 = pi^2/4 + pi^2 = 5 pi^2 / 4.
    """
    if d == 1:
        (x,) = _grid(n, 1)
        return np.sin(np.pi * x), 0.5 + np.pi**2 / 2
    x, y = _grid(n, 2)
    return np.sin(np.pi * x) * np.cos(2 * np.pi * y), 0.25 + 5 * np.pi**2 / 4


@pytest.mark.parametrize("d", [1, 2])
def test_h1_converges_at_second_order_to_analytic_norm(d):
    absolute_h1 = jax.jit(functools.partial(st.h1_loss, relative=False))
    errors = []
    for n in (33, 65, 129):
        u, h1_squared = _field(d, n)
        zero = np.zeros((1,) + u.shape)
        value = absolute_h1(u[None], zero)
        errors.append(abs(float(value) - math.sqrt(h1_squared)))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    # Second-order differences and trapezoid rule: the error must drop ~4x per refinement.
    # (The one-sided end differences have a larger error constant; in 1-D, where |u'| is
    # largest at the ends, the observed order approaches 2 from below: 1.84, 1.93.)
    assert min(orders) > 1.8, (errors, orders)
    assert errors[-1] < 1e-3 * math.sqrt(h1_squared)


def test_h1_relative_matches_analytic_value():
    # Two channels: target t = (x^2 + y, 0*...) (quadratic: differences exact) and perturbation
    # eps * u with u = sin(pi x) cos(2 pi y) in channel 0 and 2 u in channel 1.
    n, eps = 65, 1e-2
    u, u_h1_squared = _field(2, n)
    x, y = _grid(n, 2)
    q = x**2 + y
    # ||q||^2 = 1/5 + 1/3 + 1/3 = 13/15; ||grad q||^2 = 4/3 + 1 = 7/3; total 16/5.
    target = np.stack([q, np.zeros_like(q)])
    pred = target + eps * np.stack([u, 2 * u])
    expected = eps * math.sqrt(5 * u_h1_squared) / math.sqrt(16 / 5)
    h1 = jax.jit(st.h1_loss, static_argnames=("spacing",))
    value = h1(jnp.asarray(pred), jnp.asarray(target))
    # Discretisation error O(h^2) ~ 1e-3 relative at n = 65 (see the convergence test).
    assert float(value) == pytest.approx(expected, rel=2e-3)
    # Spacing is respected: on a domain of length 2 along each axis, gradients halve.
    value_2 = h1(jnp.asarray(pred), jnp.asarray(target), spacing=2 / (n - 1))
    assert float(value_2) != pytest.approx(float(value), rel=1e-3)
    grad = jax.jit(jax.grad(st.h1_loss))(jnp.asarray(target), jnp.asarray(target))
    assert np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="spacing"):
        st.h1_loss(jnp.asarray(pred), jnp.asarray(target), spacing=(0.1,))
    with pytest.raises(ValueError, match="at least 3 points"):
        st.h1_loss(jnp.ones((1, 2)), jnp.ones((1, 2)))


# ----------------------------------------------------------------------------------------
# Normalisers


def test_normalizer_statistics_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = 3.0 + 2.0 * rng.normal(size=(40, 2, 5)) * np.arange(1, 11).reshape(2, 5)
    norm = st.UnitGaussianNormalizer.from_data(data, chunk_size=7)
    np.testing.assert_allclose(norm.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, data.std(0, ddof=1), rtol=1e-12)
    encoded = jax.vmap(norm.encode)(jnp.asarray(data))
    np.testing.assert_allclose(np.mean(encoded, 0), 0, atol=1e-12)
    # std(encoded) = std / (std + eps) with eps = 1e-5 and std >= ~2.
    np.testing.assert_allclose(np.std(encoded, 0, ddof=1), 1, rtol=1e-5)
    decoded = jax.vmap(norm.decode)(encoded)
    np.testing.assert_allclose(decoded, data, rtol=1e-12)
    # h5py dataset input gives the same statistics; float32 data gives float32 statistics.
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["a"] = data.astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        norm32 = st.UnitGaussianNormalizer.from_data(f["a"], chunk_size=3)
    assert norm32.mean.dtype == jnp.float32
    np.testing.assert_allclose(norm32.std, data.astype(np.float32).std(0, ddof=1), rtol=1e-5)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        st.UnitGaussianNormalizer.from_data(data[:1])


def test_normalizer_frozen_under_weight_decay(getkey):
    x, y = _regression_data(16)
    model = st.Normalized(
        eqx.nn.MLP(4, 4, 8, 1, key=getkey()),
        st.UnitGaussianNormalizer.from_data(x),
        st.UnitGaussianNormalizer.from_data(y),
    )
    np.testing.assert_allclose(
        model(x[0]),
        model.y_normalizer.decode(model.model(model.x_normalizer.encode(x[0]))),
        rtol=1e-14,
    )
    spec = st.trainable_filter(model)
    assert not any(jtu.tree_leaves(spec.x_normalizer)) and not any(
        jtu.tree_leaves(spec.y_normalizer)
    )
    assert _leaves_equal(spec.model, jtu.tree_map(eqx.is_inexact_array, model.model))
    assert jtu.tree_leaves(spec.model).count(True) == 4  # two weights, two biases
    optimizer = optax.adamw(1e-2, weight_decay=0.5)
    loss_fn = st.batch_loss(st.relative_l2)

    def run(filter_spec):
        m, state = model, st.init_optimizer(optimizer, model, filter_spec)
        for _ in range(3):
            m, state, _ = st.train_step(
                m, state, (x, y), loss_fn=loss_fn, optimizer=optimizer, filter_spec=filter_spec
            )
        return m

    trained = run(None)
    assert _leaves_equal(trained.x_normalizer, model.x_normalizer)
    assert _leaves_equal(trained.y_normalizer, model.y_normalizer)
    assert not _leaves_equal(trained.model, model.model)
    # Control: with a filter that does not exclude normalisers, weight decay changes them.
    leaky = run(jtu.tree_map(eqx.is_inexact_array, model))
    assert not _leaves_equal(leaky.x_normalizer, model.x_normalizer)


# ----------------------------------------------------------------------------------------
# Batching


def test_batches_cover_each_sample_once_with_partial_last_batch(getkey):
    n = 23
    x = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 3))
    y = 2 * np.arange(n)
    key = getkey()
    out = list(st.batches((x, y), 5, key=key))
    assert [b[0].shape for b in out] == [(5, 3)] * 4 + [(3, 3)]
    assert len(out) == st.num_batches(n, 5, False) == 5
    seen = np.concatenate([b[1] for b in out])
    assert sorted(seen.tolist()) == (2 * np.arange(n)).tolist()
    assert not np.array_equal(seen, 2 * np.arange(n))  # shuffled
    for bx, by in out:
        np.testing.assert_array_equal(bx[:, 0] * 2, by)  # pairs stay aligned
    again = np.concatenate([b[1] for b in st.batches((x, y), 5, key=key)])
    np.testing.assert_array_equal(seen, again)
    other = np.concatenate([b[1] for b in st.batches((x, y), 5, key=getkey())])
    assert not np.array_equal(seen, other)
    dropped = list(st.batches((x, y), 5, key=key, drop_last=True))
    assert len(dropped) == st.num_batches(n, 5, True) == 4
    assert all(b[0].shape == (5, 3) for b in dropped)
    ordered = np.concatenate([b[1] for b in st.batches((x, y), 5)])
    np.testing.assert_array_equal(ordered, 2 * np.arange(n))


def test_batches_from_h5py_match_numpy(tmp_path, getkey):
    x, y = _regression_data(13)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["y"] = x, y
    key = getkey()
    with h5py.File(tmp_path / "data.h5", "r") as f:
        from_h5 = list(st.batches((f["x"], f["y"]), 4, key=key))
        contiguous = list(st.batches((f["x"], f["y"]), 4))
    from_np = list(st.batches((x, y), 4, key=key))
    assert len(from_h5) == len(from_np) == 4
    for a, b in zip(from_h5, from_np, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in contiguous]), x)


def test_batches_prefetch_bound_and_validation():
    class Counting:
        def __init__(self, n):
            self.shape, self.reads = (n, 2), 0

        def __getitem__(self, idx):
            self.reads += 1
            return np.zeros((len(range(self.shape[0])[idx]), 2))

    data = Counting(10)
    it = st.batches((data,), 2, prefetch=2)
    assert data.reads == 0  # lazy
    next(it)
    assert data.reads == 2  # the yielded batch plus one look-ahead
    next(it)
    assert data.reads == 3
    with pytest.raises(ValueError, match="same number of samples"):
        st.batches((np.zeros((3, 1)), np.zeros((4, 1))), 2)
    with pytest.raises(ValueError, match="batch_size"):
        st.batches((np.zeros((3, 1)),), 0)
    with pytest.raises(ValueError, match="prefetch"):
        st.batches((np.zeros((3, 1)),), 1, prefetch=0)


# ----------------------------------------------------------------------------------------
# train_step / evaluate


def test_train_step_matches_hand_written_optax_and_decreases_loss(getkey):
    x, y = _regression_data(32)
    model = eqx.nn.MLP(4, 4, 8, 1, key=getkey())
    optimizer = optax.adam(5e-2)
    loss_fn = st.batch_loss(st.relative_l2)
    opt_state = st.init_optimizer(optimizer, model)

    new_model, new_state, loss = st.train_step(
        model, opt_state, (x, y), loss_fn=loss_fn, optimizer=optimizer
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    ref_loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), x, y))(params)
    updates, ref_state = optimizer.update(grads, optimizer.init(params), params)
    ref_model = eqx.combine(optax.apply_updates(params, updates), static)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-13)
    arrays = lambda tree: jtu.tree_leaves(eqx.filter(tree, eqx.is_array))
    for a, b in zip(arrays(new_model), arrays(ref_model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(jtu.tree_leaves(new_state), jtu.tree_leaves(ref_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    losses = [float(loss)]
    m, s = new_model, new_state
    for _ in range(40):
        m, s, loss = st.train_step(m, s, (x, y), loss_fn=loss_fn, optimizer=optimizer)
        losses.append(float(loss))
    assert all(b < a for a, b in zip(losses[:10], losses[1:10], strict=False)), losses
    assert losses[-1] < 0.3 * losses[0], losses


def test_evaluate_partial_batches_equal_full_mean(getkey):
    x, y = _regression_data(10)
    model = eqx.nn.MLP(4, 4, 8, 1, key=getkey())
    metrics = {"rel": st.relative_l2, "mse": lambda p, t: jnp.mean((p - t) ** 2)}
    pred = jax.vmap(model)(x)
    expected = {
        "rel": float(jnp.mean(jax.vmap(st.relative_l2)(pred, y))),
        "mse": float(jnp.mean((pred - y) ** 2)),
    }
    for batch_size in (3, 4, 10, 64):  # 3 and 4 leave partial last batches
        result = st.evaluate(model, (x, y), metrics, batch_size=batch_size)
        assert result.keys() == expected.keys()
        for name in expected:
            assert result[name] == pytest.approx(expected[name], rel=1e-12)


# ----------------------------------------------------------------------------------------
# Checkpoints


def _state(getkey):
    model = eqx.nn.MLP(3, 2, 4, 1, key=getkey())
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    grads = jtu.tree_map(jnp.ones_like, eqx.filter(model, eqx.is_inexact_array))
    _, opt_state = optimizer.update(grads, opt_state)  # non-trivial moments and count
    return {"model": model, "opt_state": opt_state, "key": jax.random.key(7), "epoch": 3}


def test_checkpoint_round_trip_is_exact(tmp_path, getkey):
    state = _state(getkey)
    path = st.save_checkpoint(tmp_path, 12, state, metadata={"note": "x", "loss": 0.25})
    assert path.name == "ckpt_00000012.eqx"
    assert json.loads(path.with_suffix(".json").read_text())["step"] == 12
    like = _state(getkey)  # different values, same structure
    restored, metadata = st.restore_checkpoint(tmp_path, like)
    assert metadata == {"note": "x", "loss": 0.25, "step": 12}
    assert _leaves_equal(restored["model"], state["model"])
    assert _leaves_equal(restored["opt_state"], state["opt_state"])
    assert restored["epoch"] == 3
    assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(restored["key"]), jax.random.key_data(state["key"])
    )


def test_checkpoint_pruning_corruption_and_incomplete(tmp_path, getkey):
    state = _state(getkey)
    for step in range(1, 6):
        st.save_checkpoint(tmp_path, step, state, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ckpt_00000004.eqx",
        "ckpt_00000004.json",
        "ckpt_00000005.eqx",
        "ckpt_00000005.json",
    ]
    # An .eqx without its sidecar (interrupted save) is not a checkpoint.
    (tmp_path / "ckpt_00000009.eqx").write_bytes(b"partial")
    assert st.latest_checkpoint(tmp_path).name == "ckpt_00000005.eqx"
    assert st.latest_checkpoint(tmp_path / "missing") is None
    # Flip one byte of the newest complete checkpoint.
    path = tmp_path / "ckpt_00000005.eqx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="ckpt_00000005.eqx.*corrupted"):
        st.restore_checkpoint(tmp_path, state)
    restored, _ = st.restore_checkpoint(tmp_path / "ckpt_00000004.eqx", state)
    assert _leaves_equal(restored["model"], state["model"])


# ----------------------------------------------------------------------------------------
# fit


@pytest.fixture(scope="module")
def fit_problem():
    x, y = _regression_data(24, dim=4, seed=3)
    model = eqx.nn.MLP(4, 4, 8, 1, key=jax.random.key(1))
    # Shared objects, so `train_step` compiles once for all fit tests.
    return model, st.batch_loss(st.relative_l2), optax.adam(1e-2), (x, y)


def test_fit_resume_is_bit_exact(tmp_path, fit_problem):
    model, loss_fn, optimizer, data = fit_problem
    kw = dict(optimizer=optimizer, batch_size=8, key=jax.random.key(5), progress=False)
    straight, history = st.fit(model, loss_fn, data, epochs=4, run_dir=tmp_path / "a", **kw)

    run = tmp_path / "b"
    st.fit(model, loss_fn, data, epochs=3, run_dir=run, checkpoint_every=2, **kw)
    # Simulate a crash after epoch 2's metrics line but before its checkpoint completed.
    (run / "checkpoints" / "ckpt_00000009.json").unlink()
    resumed, resumed_history = st.fit(
        model, loss_fn, data, epochs=4, run_dir=run, resume=True, **kw
    )
    assert _leaves_equal(resumed, straight)
    assert not _leaves_equal(straight, model)
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3]
    assert [r["train_loss"] for r in lines] == [r["train_loss"] for r in history]
    assert [r["train_loss"] for r in resumed_history] == [r["train_loss"] for r in history]

    # `steps` stops mid-epoch (3 batches per epoch); extending it resumes mid-epoch exactly.
    by_steps, h = st.fit(model, loss_fn, data, steps=11, run_dir=tmp_path / "c", **kw)
    assert [r["step"] for r in h] == [3, 6, 9, 11]
    st.fit(model, loss_fn, data, steps=5, run_dir=tmp_path / "d", **kw)
    by_steps_resumed, _ = st.fit(
        model, loss_fn, data, steps=11, run_dir=tmp_path / "d", resume=True, **kw
    )
    assert _leaves_equal(by_steps_resumed, by_steps)
    with pytest.raises(ValueError, match="key"):
        st.fit(
            model,
            loss_fn,
            data,
            steps=12,
            run_dir=tmp_path / "d",
            resume=True,
            **{**kw, "key": jax.random.key(6)},
        )


def test_fit_outputs_and_best_model(tmp_path, fit_problem):
    model, loss_fn, _, data = fit_problem
    x, y = data
    # Small learning rate first, then a huge one: the eval error rises again, so the best
    # model is not the last one.
    schedule = optax.piecewise_constant_schedule(1e-2, {9: 3e3})  # lr 1e-2, then 30
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    seen = []
    best, history = st.fit(
        model,
        loss_fn,
        data,
        optimizer=optimizer,
        epochs=5,
        batch_size=8,
        key=jax.random.key(0),
        eval_data=(x[:10], y[:10]),
        run_dir=tmp_path,
        progress=False,
        callback=lambda m, r: seen.append(r["epoch"]),
    )
    assert seen == [0, 1, 2, 3, 4]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and [r["epoch"] for r in lines] == list(range(5))
    assert {"train_loss", "eval_relative_l2", "lr", "epoch_time_s", "step"} <= lines[0].keys()
    assert lines[0]["lr"] == pytest.approx(1e-2) and lines[-1]["lr"] == pytest.approx(30)
    scores = [r["eval_relative_l2"] for r in history]
    best_epoch = int(np.nanargmin(scores))
    assert best_epoch < 4, scores
    value = st.evaluate(best, (x[:10], y[:10]), {"e": st.relative_l2}, batch_size=8)["e"]
    assert value == pytest.approx(scores[best_epoch], rel=1e-12)
    on_disk = eqx.tree_deserialise_leaves(tmp_path / "best_model.eqx", model)
    assert _leaves_equal(on_disk, best)
    assert (tmp_path / "plots" / "loss.png").read_bytes()[:8] == PNG_MAGIC
    assert len(list((tmp_path / "checkpoints").glob("*.json"))) == 3
    # A used run_dir needs resume=True.
    with pytest.raises(ValueError, match="run_dir"):
        st.fit(
            model,
            loss_fn,
            data,
            optimizer=optimizer,
            epochs=1,
            key=jax.random.key(0),
            run_dir=tmp_path,
            progress=False,
        )


def test_fit_eval_every_evaluates_every_kth_and_the_last_epoch(tmp_path, fit_problem):
    model, loss_fn, optimizer, (x, y) = fit_problem
    best, history = st.fit(
        model,
        loss_fn,
        (x, y),
        optimizer=optimizer,
        epochs=5,
        batch_size=8,
        key=jax.random.key(0),
        eval_data=(x[:10], y[:10]),
        eval_every=2,
        run_dir=tmp_path,
        progress=False,
    )
    evaluated = [r["epoch"] for r in history if "eval_relative_l2" in r]
    assert evaluated == [1, 3, 4]
    scores = {r["epoch"]: r["eval_relative_l2"] for r in history if "eval_relative_l2" in r}
    value = st.evaluate(best, (x[:10], y[:10]), {"e": st.relative_l2}, batch_size=8)["e"]
    assert value == pytest.approx(min(scores.values()), rel=1e-12)
    assert (tmp_path / "plots" / "loss.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=1, eval_every=0), "`eval_every`"),
        (dict(epochs=1, steps=1), "exactly one of `epochs` and `steps`"),
        (dict(), "exactly one of `epochs` and `steps`"),
        (dict(epochs=0), "`epochs` must be a positive integer, got 0"),
        (dict(steps=-2), "`steps` must be a positive integer, got -2"),
        (dict(epochs=1, batch_size=25), "`batch_size` = 25 exceeds the 24 samples"),
        (dict(epochs=1, resume=True), "`resume=True` needs a `run_dir`"),
        (dict(epochs=1, eval_metrics={"a": st.relative_l2}), "`eval_metrics`"),
        (dict(epochs=1, checkpoint_every=0), "`checkpoint_every`"),
    ],
)
def test_fit_validation(fit_problem, kwargs, match):
    model, loss_fn, optimizer, data = fit_problem
    with pytest.raises(ValueError, match=match):
        st.fit(model, loss_fn, data, optimizer=optimizer, key=jax.random.key(0), **kwargs)


def test_fit_mismatched_data(fit_problem):
    model, loss_fn, optimizer, (x, y) = fit_problem
    with pytest.raises(ValueError, match="train_data"):
        st.fit(model, loss_fn, (x, y[:-1]), optimizer=optimizer, epochs=1, key=jax.random.key(0))


# ----------------------------------------------------------------------------------------
# Plots


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    history = [
        {"epoch": i, "train_loss": 1 / (i + 1), "eval_relative_l2": 2 / (i + 1)} for i in range(4)
    ]
    assert st.plot_history(history, tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC
    x2, y2 = rng.normal(size=(4, 1, 8, 8)), rng.normal(size=(4, 1, 8, 8))
    path = st.plot_predictions(x2, y2, y2 + 0.1, tmp_path / "p2.png", num=2)
    assert path.read_bytes()[:8] == PNG_MAGIC
    x1, y1 = rng.normal(size=(3, 2, 16)), rng.normal(size=(3, 1, 16))
    path = st.plot_predictions(x1, y1, y1, tmp_path / "p1.png", titles=["a", "b", "c"])
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "p1.png", "p2.png"]
    with pytest.raises(ValueError, match="preds"):
        st.plot_predictions(x1, y1, y1[:, :, :4], tmp_path / "bad.png")


def test_normalizer_resamples_statistics_to_another_grid():
    # Statistics that are linear in the coordinates are reproduced exactly by linear
    # interpolation, so encoding on a 2x finer node grid must equal the analytic statistics.
    coarse = jnp.linspace(0.0, 1.0, 9)
    fine = jnp.linspace(0.0, 1.0, 17)
    mean = lambda t: (1.0 + 2.0 * t[:, None] - t[None, :])[None]
    std = lambda t: (2.0 + t[:, None] + 0.5 * t[None, :])[None]
    normalizer = st.UnitGaussianNormalizer(mean(coarse), std(coarse), eps=0.0)
    x = jnp.ones((1, 17, 17))
    expected = (x - mean(fine)) / std(fine)
    assert jnp.allclose(normalizer.encode(x), expected, atol=1e-12)
    assert jnp.allclose(normalizer.decode(normalizer.encode(x)), x, atol=1e-12)
    with pytest.raises(ValueError, match="cannot normalise shape"):
        normalizer.encode(jnp.ones((2, 17, 17)))


@pytest.mark.parametrize("d", [1, 2])
def test_h1_periodic_converges_at_second_order(d):
    # u = prod_i sin(2 pi x_i) on [0, 1)^d: ||u||^2 = 2^-d, ||grad u||^2 = d (2 pi)^2 2^-d.
    exact = math.sqrt(2.0**-d * (1 + d * (2 * math.pi) ** 2))
    errors = []
    for n in (16, 32, 64):
        x = np.arange(n) / n
        u = np.ones(())
        for _ in range(d):
            u = u[..., None] * np.sin(2 * np.pi * x)
        value = st.h1_loss(
            jnp.asarray(u)[None], jnp.zeros((1, *u.shape)), periodic=True, relative=False
        )
        errors.append(abs(float(value) - exact))
    orders = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:], strict=True)]
    assert all(1.9 < p < 2.1 for p in orders), orders
    with pytest.raises(ValueError, match="periodic"):
        st.h1_loss(jnp.ones((1, 8, 8)), jnp.ones((1, 8, 8)), periodic=(True,))


@pytest.mark.untyped
def test_mse_matches_definition_and_rejects_shape_mismatch():
    pred = jnp.arange(6.0).reshape(2, 3)
    target = jnp.ones((2, 3))
    np.testing.assert_allclose(st.mse(pred, target), np.mean((np.arange(6.0) - 1) ** 2))
    assert st.mse(target, target) == 0.0
    with pytest.raises(ValueError, match="mse"):
        st.mse(pred, jnp.ones((3, 2)))
