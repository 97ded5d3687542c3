"""`sciml.uq`: deep ensembles as one vmapped model, split-conformal bands, the runner's keys."""

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml import operators, train, uq
from sciml._app.config import ConfigError, _min_calibration, load_config

REPO = Path(__file__).parent.parent


def _fno1d(key):
    return operators.FNO(1, 1, modes=(4,), width=8, depth=2, projection_channels=8, key=key)


_MEMBERS = {
    "fno": lambda k: operators.FNO(1, 1, modes=(4, 4), width=6, depth=1, key=k),
    "mgno": lambda k: operators.MgNO(1, 1, channels=4, levels=2, depth=1, key=k),
    "deeponet": lambda k: operators.GridDeepONet(
        1,
        1,
        num_spatial_dims=2,
        sensors_per_axis=8,
        grid="nodes",
        branch_widths=(8,),
        trunk_widths=(8,),
        basis=4,
        key=k,
    ),
}


@pytest.mark.parametrize("name", sorted(_MEMBERS))
def test_ensemble_is_its_members(name, getkey):
    """Member k of `Ensemble(make, K, key=key)` is `make(jax.random.split(key, K)[k])`; one
    call runs all of them. Same float64 arithmetic batched: agreement to rounding."""
    make, key, k = _MEMBERS[name], getkey(), 3
    ensemble = uq.Ensemble(make, k, key=key)
    x = jax.random.normal(getkey(), (1, 8, 8))
    xs = jax.random.normal(getkey(), (k, 1, 8, 8))
    singles = [make(kk) for kk in jax.random.split(key, k)]
    np.testing.assert_allclose(ensemble(x), jnp.stack([m(x) for m in singles]), atol=1e-12)
    np.testing.assert_allclose(
        ensemble.per_member(xs),
        jnp.stack([m(xi) for m, xi in zip(singles, xs, strict=True)]),
        atol=1e-12,
    )
    mean, std = ensemble.mean_and_std(x)
    np.testing.assert_allclose(mean, ensemble(x).mean(0), atol=1e-14)
    np.testing.assert_allclose(std, ensemble(x).std(0), atol=1e-14)
    for i, single in enumerate(singles):
        leaves = jax.tree.leaves(eqx.filter(ensemble.member(i), eqx.is_array))
        for a, b in zip(leaves, jax.tree.leaves(eqx.filter(single, eqx.is_array)), strict=True):
            np.testing.assert_array_equal(a, b)


def _optimizer(name):
    if name == "soap":
        return optax.chain(optax.add_decayed_weights(1e-3), train.soap(1e-2))
    return optax.chain(optax.add_decayed_weights(1e-3), optax.adam(1e-2))


@pytest.mark.parametrize("optimizer", ["adam", "soap"])
def test_training_equals_separate_members(optimizer, getkey):
    """K members trained as one model by one compiled step (summed losses, each member its
    own data order; Adam with weight decay as it is, being element-wise, SOAP through
    `ensemble_optimizer`) equal K models trained alone by `fit` with the same keys on their
    orders of the data, after 8 steps. float64, so only the summation order of batched versus
    single kernels differs: 1e-9 relative is far above that rounding (1e-14) and far below
    any training difference (the steps move parameters by ~1e-2)."""
    k, n, batch = 3, 16, 4
    x = jax.random.normal(getkey(), (n, 1, 16))
    y = jnp.cumsum(x, axis=-1) / 4
    key, fit_key, order_key = getkey(), getkey(), getkey()
    traces = []

    def metric(pred, target):
        traces.append(None)  # runs once per trace, not per step or member
        return train.relative_l2(pred, target)

    opt = _optimizer(optimizer)
    ensemble, _ = train.fit(
        uq.Ensemble(_fno1d, k, key=key),
        uq.ensemble_loss(metric, per_member=True),
        uq.per_member_data((np.asarray(x), np.asarray(y)), k, key=order_key),
        optimizer=uq.ensemble_optimizer(opt) if optimizer == "soap" else opt,
        steps=8,
        batch_size=batch,
        key=fit_key,
        progress=False,
    )
    assert len(traces) == 1  # one compiled step for all members and all 8 steps
    orders = uq.member_orders(n, k, key=order_key)
    loss = train.batch_loss(train.relative_l2)  # one function: the members share a compilation
    for i, member_key in enumerate(jax.random.split(key, k)):
        alone, _ = train.fit(
            _fno1d(member_key),
            loss,
            (np.asarray(x)[orders[i]], np.asarray(y)[orders[i]]),
            optimizer=opt,
            steps=8,
            batch_size=batch,
            key=fit_key,
            progress=False,
        )
        got = jax.tree.leaves(eqx.filter(ensemble.member(i), eqx.is_inexact_array))
        want = jax.tree.leaves(eqx.filter(alone, eqx.is_inexact_array))
        start = jax.tree.leaves(eqx.filter(_fno1d(member_key), eqx.is_inexact_array))
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(want, start, strict=True))
        assert moved > 1e-3
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_shared_order_loss_is_the_sum_of_member_losses(getkey):
    ensemble = uq.Ensemble(_fno1d, 2, key=getkey())
    x, y = jax.random.normal(getkey(), (5, 1, 16)), jax.random.normal(getkey(), (5, 1, 16))
    total = uq.ensemble_loss(train.relative_l2)(ensemble, x, y)
    alone = sum(train.batch_loss(train.relative_l2)(ensemble.member(i), x, y) for i in range(2))
    np.testing.assert_allclose(total, alone, rtol=1e-12)
    with pytest.raises(ValueError, match="per_member=True"):
        uq.ensemble_loss(train.relative_l2, per_member=True)(ensemble, x, y)


def test_per_member_data_reads_each_members_order(getkey):
    """Row i of member k is sample `orders[k, i]`, read lazily; each member sees every sample
    once, in its own order."""
    x = np.arange(10.0)[:, None] * np.ones((1, 3))
    key = getkey()
    (view,) = uq.per_member_data((x,), 4, key=key)
    orders = uq.member_orders(10, 4, key=key)
    assert view.shape == (10, 4, 3)
    rows = np.array([1, 4, 7])
    np.testing.assert_array_equal(view[rows][:, :, 0], orders[:, rows].T)
    np.testing.assert_array_equal(view[2:5][:, :, 0], orders[:, 2:5].T)
    assert all(sorted(order) == list(range(10)) for order in orders)
    assert len({tuple(order) for order in orders}) == 4


def test_quantile_formula():
    """k = ceil((n + 1)(1 - alpha)); the k-th smallest score; inf if k > n."""
    assert uq.quantile_rank(9, 0.9) == 9  # 10 * 0.9 = 9 exactly, despite binary rounding
    assert uq.quantile_rank(19, 0.95) == 19
    assert uq.quantile_rank(100, 0.9) == 91
    assert uq.quantile_rank(8, 0.9) == 9  # > n: no finite band
    assert [uq.min_calibration(v) for v in (0.5, 0.8, 0.9, 0.95, 0.99)] == [1, 4, 9, 19, 99]
    for level in (0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.123, 0.999):
        assert _min_calibration(level) == uq.min_calibration(level)  # the config's copy
    scores = jnp.asarray(np.random.default_rng(0).permutation(100).astype(float)).reshape(100, 1)
    assert float(uq.conformal_quantile(scores, 0.9)[0]) == 90.0  # the 91st smallest of 0..99
    assert float(uq.conformal_quantile(scores[:8], 0.9)[0]) == math.inf
    with pytest.raises(ValueError, match="level"):
        uq.quantile_rank(10, 1.0)


@pytest.mark.parametrize("normalized", [True, False])
def test_conformal_coverage_on_known_noise(normalized, getkey):
    """y = f + sigma * N(0, 1), independent per point, with heteroscedastic sigma; the
    "ensemble" predicts mean f and a spread 3 sigma (any scale works). Given the calibration
    set, point j's coverage c_j is Beta(k, n + 1 - k), k = ceil((n + 1) level), with mean
    k / (n + 1); the test fraction over P independent points and m samples has variance
    Var(c) / P + E[c (1 - c)] / (m P). Asserted within 4 such standard deviations (about
    0.015 here), for several levels."""
    n, m, p = 200, 400, 64
    grid = jnp.linspace(0, 1, p)
    f = jnp.sin(2 * jnp.pi * grid)
    sigma = 0.05 + 0.3 * grid**2

    def sample(key, count):
        return f + sigma * jax.random.normal(key, (count, p))

    y_cal, y_test = sample(getkey(), n), sample(getkey(), m)
    spread = (lambda count: jnp.broadcast_to(3 * sigma, (count, p))) if normalized else None
    levels = (0.5, 0.8, 0.9, 0.95)
    bands = uq.calibrate(
        y_cal,
        jnp.broadcast_to(f, (n, p)),
        None if spread is None else spread(n),
        levels=levels,
    )
    mean_test = jnp.broadcast_to(f, (m, p))
    std_test = None if spread is None else spread(m)
    lower, upper = bands(mean_test, std_test)
    inside = bands.contains(y_test, mean_test, std_test)
    for i, level in enumerate(levels):
        got = float(uq.coverage(y_test, lower[i], upper[i]))
        assert got == pytest.approx(float(inside[i].mean()), abs=1e-12)
        k = uq.quantile_rank(n, level)
        c = k / (n + 1)
        var_c = k * (n + 1 - k) / ((n + 1) ** 2 * (n + 2))
        sd = math.sqrt(var_c / p + (c * (1 - c) - var_c) / (m * p))
        assert abs(got - c) < 4 * sd, (level, got, c, sd)
    # The calibration curve from scores gives the same coverages.
    scores = lambda y, count: uq.conformity_scores(
        y, jnp.broadcast_to(f, (count, p)), None if spread is None else spread(count)
    )
    curve = uq.calibration_curve(scores(y_cal, n), scores(y_test, m), levels)
    np.testing.assert_allclose(curve, np.asarray(inside.mean(axis=(1, 2))), atol=1e-12)


def test_bands_check_their_inputs(getkey):
    bands = uq.calibrate(jnp.ones((20, 3)), jnp.zeros((20, 3)), levels=[0.9])
    with pytest.raises(ValueError, match="without a spread"):
        bands(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="calibrated on fields of shape"):
        bands(jnp.zeros(4))
    with pytest.raises(ValueError, match="levels"):
        uq.calibrate(jnp.ones((20, 3)), jnp.zeros((20, 3)), levels=[1.5])


_QUICK = REPO / "experiments" / "quickstart.toml"


@pytest.mark.parametrize(
    "overrides, key, match",
    [
        (["model.ensemble=0"], "model.ensemble", "allowed: >= 1"),
        (["uncertainty.levels=[0.9]", "uncertainty.levels=[0.8]"], "uncertainty.levels", "needs"),
        (
            ["uncertainty.calibration=10", "uncertainty.levels=[1.0]"],
            "uncertainty.levels",
            "(0, 1)",
        ),
        (
            ["uncertainty.calibration=10", "uncertainty.levels=[0.8, 0.8]"],
            "uncertainty.levels",
            "distinct",
        ),
        (["uncertainty.calibration=190"], "uncertainty.calibration", "at most .* = 180"),
        (["uncertainty.calibration=8"], "uncertainty.calibration", "at least 9"),
        (
            ["uncertainty.calibration=10", "uncertainty.levels=[0.95]"],
            "uncertainty.calibration",
            "19",
        ),
        (["uncertainty.width=1"], "uncertainty.width", "allowed here: calibration, levels"),
    ],
)
def test_config_errors(overrides, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config(_QUICK, overrides)
    assert info.value.key == key
    assert "\n" not in str(info.value) and key in str(info.value)


def test_config_defaults_and_any_model():
    config = load_config(_QUICK)
    assert config["model"]["ensemble"] == 1 and config["uncertainty"]["calibration"] == 0
    for name in ("darcy_mgno", "darcy_deeponet", "burgers_fno"):
        config = load_config(REPO / "experiments" / f"{name}.toml", ["model.ensemble=4"])
        assert config["model"]["ensemble"] == 4


@pytest.mark.slow
def test_run_with_ensemble_and_bands(tmp_path, capsys, monkeypatch):
    """`sciml run` (in this process) with a 2-member ensemble and 10 calibration samples:
    results.json has the test coverage, the plots a calibration curve; `sciml eval` reports
    the coverage again and `sciml.load_model` returns the ensemble."""
    import sciml
    from sciml._app.cli import main

    (tmp_path / "c.toml").write_text(_QUICK.read_text())
    tiny = {
        "data.resolution": "17",
        "data.solve_resolution": "33",
        "data.n_train": "18",
        "data.n_test": "4",
        "model.modes": "[3, 3]",
        "model.width": "4",
        "model.depth": "1",
        "model.padding": "2",
        "model.projection_channels": "8",
        "train.batch_size": "4",
        "train.epochs": "1",
        "train.progress": "false",
        "eval.plot_samples": "1",
        "model.ensemble": "2",
        "uncertainty.calibration": "10",
        "uncertainty.levels": "[0.5, 0.9]",
    }
    sets = [arg for k, v in tiny.items() for arg in ("--set", f"{k}={v}")]
    monkeypatch.chdir(tmp_path)
    # As in a fresh `sciml run` process: float32 (conftest switches float64 on).
    jax.config.update("jax_enable_x64", False)
    try:
        assert main(["run", "c.toml", *sets]) == 0
        (run_dir,) = (tmp_path / "runs").iterdir()
        results = json.loads((run_dir / "results.json").read_text())
        assert results["ensemble"] == 2
        for name in ("test_coverage_50", "test_coverage_90"):
            assert 0 <= results[name] <= 1
        assert results["test_band_width_90"] > results["test_band_width_50"] > 0
        assert (run_dir / "plots" / "calibration.png").is_file()
        assert "test_coverage_90" in capsys.readouterr().out

        assert main(["eval", str(run_dir)]) == 0
        assert "test_coverage_90" in capsys.readouterr().out
        scored = json.loads((run_dir / "eval_test.json").read_text())
        assert scored["test_coverage_90"] == pytest.approx(results["test_coverage_90"], abs=1e-6)
        model = sciml.load_model(run_dir)
        assert isinstance(model, uq.Ensemble) and model.num_members == 2
        assert model(jnp.ones((1, 17, 17), jnp.float32)).shape == (2, 1, 17, 17)
    finally:
        jax.config.update("jax_enable_x64", True)
