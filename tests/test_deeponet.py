import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from sciml.data import Dataset, to_deeponet
from sciml.operators import (
    AbstractOperator,
    DeepONet,
    GridDeepONet,
    MLPTrunk,
    PODTrunk,
    grid_coordinates,
    pod_basis,
)

# float64 throughout (conftest enables x64). "Round-off" comparisons use rtol 1e-12: the two
# sides differ only in the order of floating-point operations (a vmapped matmul vs single
# matrix-vector products) over sums of at most ~100 terms of size O(1), i.e. a few 1e-15.
RTOL = 1e-12


def _build(cls, *args, key, **kwargs):
    """`cls(*args, key=key, **kwargs)`, built inside one compiled call (much faster than op by
    op on CPU, where every new array shape of an eager operation is compiled separately)."""
    return eqx.filter_jit(lambda k: cls(*args, key=k, **kwargs))(key)


@eqx.filter_jit
def _evaluate_grid(net, u, ys):
    return net.evaluate_grid(u, ys)


def _num_params(model) -> int:
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def _mlp_params(sizes) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


# Every value of each option, and every (stacked, multi_output) pair with several channels.
@pytest.mark.parametrize(
    ("stacked", "multi_output", "coord_dim", "out_channels"),
    [
        (False, "split_branch", 1, 1),
        (True, "split_branch", 2, 3),
        (False, "split_branch", 2, 3),
        (True, "split_trunk", 1, 3),
        (False, "split_trunk", 2, 3),
    ],
)
def test_evaluate_grid_equals_pointwise_calls(
    stacked, multi_output, coord_dim, out_channels, getkey
):
    m, p = 12, 7
    net = _build(
        DeepONet,
        m,
        coord_dim,
        out_channels,
        branch_widths=(16, 8),
        trunk_widths=(10,),
        basis=p,
        stacked=stacked,
        multi_output=multi_output,
        activation=jnp.tanh,
        key=getkey(),
        dtype=jnp.float64,
    )
    # The bias starts at zero: make it nonzero so that it is tested too.
    net = eqx.tree_at(lambda n: n.bias, net, jnp.arange(1.0, out_channels + 1))
    u = jax.random.normal(getkey(), (m,))
    ys = jax.random.uniform(getkey(), (9, coord_dim))

    @eqx.filter_jit
    def evaluate(net, u, ys):
        # One call per point (vmapped), and the branch once for all points.
        pointwise = jax.vmap(net, (None, 0))(u, ys)
        return net.evaluate_grid(u, ys), pointwise, net.coefficients(u), net.trunk.evaluate_grid(ys)

    grid, pointwise, b, (t, offset) = evaluate(net, u, ys)
    assert grid.shape == pointwise.shape == (9, out_channels)
    np.testing.assert_allclose(grid, pointwise, rtol=RTOL, atol=1e-14)
    np.testing.assert_array_equal(offset, 0.0)
    # The same against an independent NumPy evaluation of sum_k b_k t_k + b_0.
    b, t = np.asarray(b), np.asarray(t)
    expected = np.einsum("ck,nck->nc", b, t) + np.arange(1.0, out_channels + 1)
    np.testing.assert_allclose(grid, expected, rtol=RTOL, atol=1e-14)


def test_paper_parameter_counts(getkey):
    # Branch [100, 40, 40], trunk [1, 40, 40], one output bias.
    branch, trunk = [100, 40, 40], [1, 40, 40]
    net = _build(DeepONet, 100, 1, branch_widths=(40,), trunk_widths=(40,), basis=40, key=getkey())
    assert _num_params(net) == _mlp_params(branch) + _mlp_params(trunk) + 1 == 7401
    # Stacked: 40 branch nets [100, 40, 1].
    stacked = _build(
        DeepONet,
        100,
        1,
        branch_widths=(40,),
        trunk_widths=(40,),
        basis=40,
        stacked=True,
        key=getkey(),
    )
    assert _num_params(stacked) == 40 * _mlp_params([100, 40, 1]) + _mlp_params(trunk) + 1
    # Several channels: the split part has p * C outputs; no bias.
    c = 3
    split_branch = _build(
        DeepONet,
        100,
        1,
        c,
        branch_widths=(40,),
        trunk_widths=(40,),
        basis=40,
        bias=False,
        key=getkey(),
    )
    assert _num_params(split_branch) == _mlp_params([100, 40, 120]) + _mlp_params(trunk)
    split_trunk = _build(
        DeepONet,
        100,
        1,
        c,
        branch_widths=(40,),
        trunk_widths=(40,),
        basis=40,
        multi_output="split_trunk",
        key=getkey(),
    )
    assert _num_params(split_trunk) == _mlp_params(branch) + _mlp_params([1, 40, 120]) + c
    stacked_split = _build(
        DeepONet,
        100,
        1,
        c,
        branch_widths=(40,),
        trunk_widths=(40,),
        basis=40,
        stacked=True,
        key=getkey(),
    )
    assert _num_params(stacked_split) == 40 * _mlp_params([100, 40, c]) + _mlp_params(trunk) + c


def test_stacked_branch_nets_are_independent(getkey):
    net = _build(
        DeepONet, 5, 1, branch_widths=(4,), trunk_widths=(4,), basis=3, stacked=True, key=getkey()
    )
    assert all(w.shape[0] == 3 for w in net.branch.weights)
    # Changing the parameters of branch net 1 changes coefficient 1 only.
    u = jax.random.normal(getkey(), (5,))
    changed = eqx.tree_at(lambda n: n.branch.biases[-1], net, net.branch.biases[-1].at[1].add(1))
    coefficients = eqx.filter_jit(lambda n, u: n.coefficients(u))
    diff = coefficients(changed, u) - coefficients(net, u)
    np.testing.assert_allclose(diff, [[0.0, 1.0, 0.0]], atol=1e-15)


def test_jit_vmap_grad(getkey):
    net = _build(DeepONet, 8, 2, 2, branch_widths=(6,), trunk_widths=(6,), basis=4, key=getkey())
    us = jax.random.normal(getkey(), (5, 8))
    ys = jax.random.uniform(getkey(), (7, 2))
    batched = eqx.filter_jit(lambda n, us, ys: jax.vmap(n.evaluate_grid, (0, None))(us, ys))(
        net, us, ys
    )
    assert batched.shape == (5, 7, 2)
    np.testing.assert_allclose(_evaluate_grid(net, us[0], ys), batched[0], rtol=RTOL)
    pointwise = jax.jit(jax.vmap(jax.vmap(net, (None, 0)), (0, None)))(us, ys)
    np.testing.assert_allclose(pointwise, batched, rtol=RTOL)

    def loss(model):
        return jnp.mean(jax.vmap(model.evaluate_grid, (0, None))(us, ys) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(net)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(g**2)) for g in leaves) > 0
    # Directional derivative against a central difference.
    params, static = eqx.partition(net, eqx.is_inexact_array)
    direction = jax.tree.map(lambda x: jax.random.normal(getkey(), x.shape), params)
    eps = 1e-6
    shifted = jax.jit(
        lambda s: loss(eqx.combine(jax.tree.map(lambda x, d: x + s * d, params, direction), static))
    )
    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    analytic = sum(
        jnp.vdot(g, d)
        for g, d in zip(
            jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array)),
            jax.tree.leaves(direction),
            strict=True,
        )
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_hand_set_deeponet_is_trapezoid_antiderivative_with_linear_interpolation(getkey):
    """A DeepONet whose weights are set by hand represents a known linear operator exactly:
    the cumulative trapezoid rule on the sensor grid (the branch, one linear layer) followed by
    piecewise-linear interpolation of those nodal values (the trunk: its ReLU units
    relu(y - x_j) combined into hat functions by second differences)."""
    m = 11
    h = 1.0 / (m - 1)
    x = np.linspace(0.0, 1.0, m)
    net = _build(
        DeepONet,
        m,
        1,
        branch_widths=(),
        trunk_widths=(m + 2,),
        basis=m,
        trunk_final_activation=False,
        bias=False,
        key=getkey(),
    )
    # Branch: S_k = sum_{j<k} h (u_j + u_{j+1}) / 2.
    trapezoid = np.zeros((m, m))
    for k in range(1, m):
        trapezoid[k, :k] += h / 2
        trapezoid[k, 1 : k + 1] += h / 2
    # Trunk hidden units r_j = relu(y - x_j) at the nodes x_{-1} = -h, x_0, ..., x_m = 1 + h;
    # hat function k = (r_{k-1} - 2 r_k + r_{k+1}) / h on [0, 1].
    knots = np.arange(-1, m + 1) * h
    second_diff = np.zeros((m, m + 2))
    for k in range(m):
        second_diff[k, k : k + 3] = np.array([1.0, -2.0, 1.0]) / h
    net = eqx.tree_at(
        lambda n: (
            n.branch.weights[0],
            n.branch.biases[0],
            n.trunk.net.weights[0],
            n.trunk.net.biases[0],
            n.trunk.net.weights[1],
            n.trunk.net.biases[1],
        ),
        net,
        (
            jnp.asarray(trapezoid),
            jnp.zeros(m),
            jnp.ones((m + 2, 1)),
            jnp.asarray(-knots),
            jnp.asarray(second_diff),
            jnp.zeros(m),
        ),
    )
    u = np.asarray(jax.random.normal(getkey(), (m,)))
    ys = np.concatenate([x, np.asarray(jax.random.uniform(getkey(), (50,)))])
    cumulative = np.concatenate([[0.0], np.cumsum(h * (u[1:] + u[:-1]) / 2)])
    expected = np.interp(ys, x, cumulative)
    got = _evaluate_grid(net, jnp.asarray(u), jnp.asarray(ys)[:, None])[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # On a linear input the trapezoid rule is exact: s(y) = y + y^2 / 2 at the nodes.
    got = _evaluate_grid(net, jnp.asarray(1 + x), jnp.asarray(x)[:, None])[:, 0]
    np.testing.assert_allclose(got, x + x**2 / 2, rtol=1e-12, atol=1e-14)


# --- POD trunks --------------------------------------------------------------------------


def _low_rank_outputs(key, n, spatial, channels, rank):
    """`n` fields on a grid, `mean + sum_r a_r f_r` with `rank` random smooth fields `f_r`."""
    keys = jax.random.split(key, 3)
    n_points = math.prod(spatial)
    fields = jax.random.normal(keys[0], (rank, n_points, channels))
    amplitudes = jax.random.normal(keys[1], (n, rank))
    mean = jax.random.normal(keys[2], (n_points, channels))
    return mean + jnp.einsum("nr,rpc->npc", amplitudes, fields)


@pytest.mark.parametrize("channels", [1, 2])
def test_pod_basis_orthonormal_and_reconstructs_low_rank_data(channels, getkey):
    n, spatial, rank = 30, (9, 7), 5
    outputs = _low_rank_outputs(getkey(), n, spatial, channels, rank)
    if channels == 1:
        outputs = outputs[..., 0]
    mean, modes = pod_basis(outputs, rank)
    n_points = math.prod(spatial)
    assert mean.shape == outputs.shape[1:] and modes.shape == (*outputs.shape[1:], rank)
    flat = modes.reshape(-1, rank)
    np.testing.assert_allclose(flat.T @ flat / n_points, np.eye(rank), atol=1e-12)
    np.testing.assert_allclose(mean, outputs.mean(0), rtol=1e-12)
    # Projection onto the modes reproduces every training output (rank-5 data, 5 modes).
    centred = (outputs - mean).reshape(n, -1)
    coeffs = centred @ flat / n_points
    np.testing.assert_allclose(coeffs @ flat.T, centred, atol=1e-10)
    # Deterministic sign: the largest entry of each mode is positive.
    assert bool(jnp.all(flat[jnp.argmax(jnp.abs(flat), axis=0), jnp.arange(rank)] > 0))
    with pytest.raises(ValueError, match="num_basis"):
        pod_basis(outputs, n + 1)


@pytest.mark.parametrize(("spatial", "channels"), [((13,), 1), ((6, 5), 3)])
def test_pod_deeponet_on_grid_and_interpolation(spatial, channels, getkey):
    d = len(spatial)
    outputs = _low_rank_outputs(getkey(), 20, spatial, channels, 4)
    mean, modes = pod_basis(outputs, 4)
    # A non-uniform rectilinear grid.
    grid = [np.sort(np.asarray(jax.random.uniform(getkey(), (s,)))) for s in spatial]
    trunk = PODTrunk(grid, mean, modes)
    multi = "split_trunk" if channels > 1 else None
    net = _build(
        DeepONet, 10, d, channels, branch_widths=(8,), trunk=trunk, multi_output=multi, key=getkey()
    )
    assert net.basis == 4 and net.multi_output == (
        "split_trunk" if channels > 1 else "split_branch"
    )
    net = eqx.tree_at(lambda n: n.bias, net, jnp.linspace(-1.0, 1.0, channels))
    u = jax.random.normal(getkey(), (10,))
    points = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, d)
    low, high = np.array([x[0] for x in grid]), np.array([x[-1] for x in grid])
    queries = low + (high - low) * np.asarray(jax.random.uniform(getkey(), (17, d)))

    @eqx.filter_jit
    def evaluate(net, u):
        def loss(n):
            return jnp.sum(n.evaluate_grid(u, jnp.asarray(queries)) ** 2)

        return (
            net.coefficients(u),
            net.evaluate_grid(u, None),
            net.evaluate_grid(u, jnp.asarray(points)),
            net.evaluate_grid(u, jnp.asarray(queries)),
            eqx.filter_grad(loss)(net),
        )

    b, on_grid, at_points, between, grads = evaluate(net, u)
    assert b.shape == (1, 4)
    expected = mean + jnp.einsum("pck,k->pc", modes, b[0]) + net.bias
    np.testing.assert_allclose(on_grid, expected, rtol=RTOL, atol=1e-12)
    # Interpolation at the grid points returns the grid values.
    np.testing.assert_allclose(at_points, expected, rtol=RTOL, atol=1e-12)
    # Between grid points: (multi)linear interpolation, against SciPy.
    reference = RegularGridInterpolator(
        grid, np.asarray(expected).reshape(*spatial, channels), method="linear"
    )(queries)
    np.testing.assert_allclose(between, reference, rtol=1e-10)
    # The POD arrays receive no gradient.
    assert float(jnp.max(jnp.abs(grads.trunk.modes))) == 0.0
    assert float(jnp.max(jnp.abs(grads.trunk.mean))) == 0.0


def test_pod_trunk_errors(getkey):
    mean, modes = pod_basis(jax.random.normal(getkey(), (10, 12)), 3)
    with pytest.raises(ValueError, match="PODTrunk"):
        PODTrunk((np.linspace(0, 1, 11),), mean, modes)
    with pytest.raises(ValueError, match="increasing"):
        PODTrunk((np.linspace(1, 0, 12),), mean, modes)
    trunk = PODTrunk((np.linspace(0, 1, 12),), mean, modes)
    with pytest.raises(ValueError, match="basis"):
        DeepONet(5, 1, branch_widths=(), basis=4, trunk=trunk, key=getkey())
    with pytest.raises(ValueError, match="trunk_widths"):
        DeepONet(5, 1, branch_widths=(), trunk_widths=(3,), trunk=trunk, key=getkey())
    with pytest.raises(ValueError, match="coord_dim"):
        DeepONet(5, 2, branch_widths=(), trunk=trunk, key=getkey())
    mlp = _build(DeepONet, 5, 1, branch_widths=(), trunk_widths=(3,), basis=2, key=getkey())
    with pytest.raises(ValueError, match="no grid of its own"):
        mlp.evaluate_grid(np.zeros(5), None)


@pytest.mark.untyped
def test_deeponet_argument_and_shape_errors(getkey):
    kwargs = dict(branch_widths=(4,), trunk_widths=(4,), basis=3, key=getkey())
    with pytest.raises(ValueError, match="`DeepONet`.*multi_output"):
        DeepONet(5, 1, 2, multi_output="split", **kwargs)
    with pytest.raises(ValueError, match="`DeepONet`.*branch_widths"):
        DeepONet(5, 1, **{**kwargs, "branch_widths": 4})
    with pytest.raises(ValueError, match="`DeepONet`.*num_sensors"):
        DeepONet(0, 1, **kwargs)
    with pytest.raises(ValueError, match="trunk_widths"):
        DeepONet(5, 1, branch_widths=(4,), basis=3, key=getkey())
    net = _build(DeepONet, 5, 2, **kwargs)
    with pytest.raises(ValueError, match=r"`u`.*\(5,\).*\(6,\)"):
        net(np.zeros(6), np.zeros(2))
    with pytest.raises(ValueError, match=r"`y`.*\(2,\).*\(3,\)"):
        net(np.zeros(5), np.zeros(3))
    with pytest.raises(ValueError, match=r"`ys`.*\(n, 2\).*\(4, 1\)"):
        net.evaluate_grid(np.zeros(5), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="MLPTrunk"):
        MLPTrunk(1, 3, widths=(2,), channels=0, key=getkey())


# --- GridDeepONet ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "sensors", "resolutions"),
    [("nodes", (5,), [(9,), (17,)]), ("periodic", (4, 3), [(8, 6), (16, 12)])],
)
def test_grid_deeponet_equals_deeponet_on_sensor_and_query_arrays(
    grid, sensors, resolutions, getkey
):
    d = len(sensors)
    model = _build(
        GridDeepONet,
        2,
        3,
        num_spatial_dims=d,
        sensors_per_axis=sensors,
        grid=grid,
        branch_widths=(8,),
        trunk_widths=(8,),
        basis=5,
        key=getkey(),
    )
    assert isinstance(model, AbstractOperator)
    assert model.deeponet.num_sensors == 2 * math.prod(sensors)
    for spatial in resolutions:
        x = jax.random.normal(getkey(), (2, *spatial))
        out, sensed = eqx.filter_jit(lambda m, x: (m(x), m.sensors(x)))(model, x)
        assert out.shape == (3, *spatial)
        # Direct evaluation on explicitly built sensor values and query coordinates.
        if grid == "nodes":
            axes = [np.linspace(0, 1, s) for s in spatial]
            index = [
                np.round(np.linspace(0, s - 1, m)).astype(int)
                for s, m in zip(spatial, sensors, strict=True)
            ]
        else:
            axes = [np.arange(s) / s for s in spatial]
            index = [np.arange(m) * (s // m) for s, m in zip(spatial, sensors, strict=True)]
        u = np.asarray(x)[np.ix_(range(2), *index)].reshape(-1)
        ys = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
        direct = _evaluate_grid(model.deeponet, jnp.asarray(u), jnp.asarray(ys))
        np.testing.assert_allclose(
            out, np.moveaxis(np.asarray(direct).reshape(*spatial, 3), -1, 0), rtol=RTOL
        )
        np.testing.assert_allclose(grid_coordinates(spatial, grid), ys, rtol=0, atol=1e-15)
        # The same sensors and points as `to_deeponet` on a dataset on that grid.
        exported = to_deeponet(
            Dataset(np.asarray(x)[None], np.asarray(out)[None], tuple(axes)),
            sensors_per_axis=sensors,
        )
        np.testing.assert_allclose(exported.branch[0], sensed, rtol=0)
        np.testing.assert_allclose(exported.trunk, ys, rtol=0)
        np.testing.assert_allclose(
            _evaluate_grid(model.deeponet, jnp.asarray(exported.branch[0]), exported.trunk),
            exported.targets[0],
            rtol=RTOL,
        )
    # vmap over samples, as the training code does.
    xs = jax.random.normal(getkey(), (4, 2, *resolutions[0]))
    assert eqx.filter_jit(lambda m, xs: jax.vmap(m)(xs))(model, xs).shape == (4, 3, *resolutions[0])


def test_grid_deeponet_bad_resolution_and_arguments(getkey):
    kwargs = dict(branch_widths=(4,), trunk_widths=(4,), basis=3, key=getkey())
    nodes = _build(GridDeepONet, 1, 1, num_spatial_dims=1, sensors_per_axis=5, **kwargs)
    assert eqx.filter_eval_shape(nodes, jnp.zeros((1, 13))).shape == (1, 13)
    with pytest.raises(ValueError, match=r"`GridDeepONet`.*grid points.*\(12,\)"):
        nodes(np.zeros((1, 12)))
    with pytest.raises(ValueError, match="`GridDeepONet`.*shape"):
        nodes(np.zeros((2, 13)))
    periodic = _build(
        GridDeepONet, 1, 1, num_spatial_dims=2, sensors_per_axis=4, grid="periodic", **kwargs
    )
    assert eqx.filter_eval_shape(periodic, jnp.zeros((1, 8, 12))).shape == (1, 8, 12)
    with pytest.raises(ValueError, match=r"grid points.*\(8, 10\)"):
        periodic(np.zeros((1, 8, 10)))
    with pytest.raises(ValueError, match="sensors_per_axis"):
        GridDeepONet(1, 1, num_spatial_dims=1, sensors_per_axis=1, **kwargs)
    with pytest.raises(ValueError, match="grid"):
        GridDeepONet(1, 1, num_spatial_dims=1, sensors_per_axis=4, grid="cells", **kwargs)
    net = _build(DeepONet, 5, 1, **kwargs)
    wrapped = GridDeepONet(1, 1, num_spatial_dims=1, sensors_per_axis=5, deeponet=net)
    assert wrapped.deeponet is net
    with pytest.raises(ValueError, match="num_sensors"):
        GridDeepONet(2, 1, num_spatial_dims=1, sensors_per_axis=5, deeponet=net)
    with pytest.raises(ValueError, match="basis"):
        GridDeepONet(1, 1, num_spatial_dims=1, sensors_per_axis=5, deeponet=net, basis=3)


def test_to_deeponet_layout_and_errors():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(3, 2, 9, 5)).astype(np.float32)
    outputs = rng.normal(size=(3, 1, 9, 5)).astype(np.float32)
    grid = (np.linspace(0, 1, 9), np.linspace(0, 1, 5))
    data = to_deeponet((inputs, outputs, grid), sensor_stride=(2, 4))
    assert data.branch.shape == (3, 2 * 5 * 2) and data.trunk.shape == (45, 2)
    assert data.targets.shape == (3, 45, 1) and data.trunk.dtype == np.float32
    np.testing.assert_array_equal(data.branch[1, :10], inputs[1, 0, ::2, ::4].reshape(-1))
    np.testing.assert_array_equal(data.targets[2, 5 * 4 + 3, 0], outputs[2, 0, 4, 3])
    np.testing.assert_allclose(data.trunk[5 * 4 + 3], [0.5, 0.75])
    same = to_deeponet((inputs, outputs, grid), sensors_per_axis=(5, 2))
    np.testing.assert_array_equal(same.branch, data.branch)
    picked = to_deeponet((inputs, outputs, grid), queries=np.array([[4, 3], [0, 0]]))
    np.testing.assert_array_equal(picked.targets[:, 0], data.targets[:, 23])
    np.testing.assert_array_equal(picked.trunk, data.trunk[[23, 0]])
    flat = to_deeponet((inputs, outputs, grid), queries=np.array([23, 0]))
    np.testing.assert_array_equal(flat.targets, picked.targets)
    with pytest.raises(ValueError, match="sensor_stride"):
        to_deeponet((inputs, outputs, grid), sensor_stride=0)
    with pytest.raises(ValueError, match="stride must be between 1 and 5"):
        to_deeponet((inputs, outputs, grid), sensor_stride=(1, 6))
    with pytest.raises(ValueError, match="sensors_per_axis"):
        to_deeponet((inputs, outputs, grid), sensors_per_axis=(4, 2))
    with pytest.raises(ValueError, match="both"):
        to_deeponet((inputs, outputs, grid), sensor_stride=1, sensors_per_axis=2)
    with pytest.raises(ValueError, match="queries"):
        to_deeponet((inputs, outputs, grid), queries=np.array([45]))
    with pytest.raises(ValueError, match="inputs"):
        to_deeponet((inputs, outputs[:, :, :8], grid))
