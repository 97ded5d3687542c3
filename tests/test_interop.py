"""Flax interoperability (`sciml.interop`): NNX/Linen modules as sciml models and back.

Everything runs in float64 (conftest enables x64; the Flax modules are built with float64
parameters), so "equal" means equal up to a few float64 roundings: the wrappers run the same
operations on the same arrays, and only XLA's choice of summation order (a batched or a
per-sample matrix product, one fused program or another) may differ. `RTOL` = 1e-12 is about
4500 float64 ulps. Measured: every comparison bit-identical except the Linen-net gradient
(one entry off by 2e-16 absolute, 5e-14 relative) and the Laplacians (3e-15 relative).

Comparisons are jitted on both sides: on a 2-core CPU, eager execution would compile every
primitive of an FNO's forward and backward pass one by one, which costs more than the tests.
"""

import functools
import re
from pathlib import Path

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from flax import nnx

import sciml.interop as interop
from sciml.derivatives import laplacian
from sciml.fields import MLP
from sciml.operators import FNO, DeepONet
from sciml.pinn import benchmarks, solve
from sciml.train import (
    Normalized,
    UnitGaussianNormalizer,
    batch_loss,
    fit,
    init_optimizer,
    mse,
    restore_checkpoint,
    save_checkpoint,
    train_step,
    trainable_filter,
)
from sciml.train._normalize import NonTrainable

F64 = jnp.float64
RTOL = 1e-12


def _is_key(x):
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_data(tree):
    return jtu.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def assert_trees_close(a, b, rtol=RTOL, atol=1e-14):
    assert jtu.tree_structure(a) == jtu.tree_structure(b)
    for x, y in zip(jtu.tree_leaves(_key_data(a)), jtu.tree_leaves(_key_data(b)), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def regression_data(n=64, seed=0):
    # NumPy, not jax.random: every eager JAX op on a new shape is one more XLA compilation.
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))
    return x, (np.sin(2 * x[:, 0]) + x[:, 1] ** 2)[:, None]


# ---------------------------------------------------------------- Flax models used below

WIDTH = 16


class NNXNet(nnx.Module):
    """A small NNX MLP with non-Param state: BatchNorm statistics (inference mode) and the
    RNG stream of a deterministic Dropout."""

    def __init__(self, *, rngs):
        self.hidden = nnx.Linear(2, WIDTH, param_dtype=F64, rngs=rngs)
        self.norm = nnx.BatchNorm(WIDTH, use_running_average=True, param_dtype=F64, rngs=rngs)
        self.drop = nnx.Dropout(0.2, deterministic=True, rngs=rngs)
        self.out = nnx.Linear(WIDTH, 1, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(self.norm(jnp.tanh(self.hidden(x)))))


@functools.cache
def _nnx_net():
    # Initialised in one compiled program rather than one per layer and shape.
    net = nnx.jit(lambda: NNXNet(rngs=nnx.Rngs(0)))()
    # Non-trivial statistics, so that a wrong treatment of them would show. (NNX keeps
    # BatchNorm statistics in float32 whatever `param_dtype` is.)
    net.norm.mean[...] = np.linspace(-0.3, 0.3, WIDTH, dtype=net.norm.mean.dtype)
    net.norm.var[...] = np.linspace(0.5, 2.0, WIDTH, dtype=net.norm.var.dtype)
    return net


def nnx_net():
    """A fresh copy (NNX modules are mutable) of a cached network."""
    return nnx.clone(_nnx_net())


class LinenNet(nn.Module):
    out_dim: int = 1

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(WIDTH, param_dtype=F64)(x))
        x = nn.BatchNorm(use_running_average=True, param_dtype=F64)(x)
        return nn.Dense(self.out_dim, param_dtype=F64)(x)


@functools.cache
def linen_net():
    module = LinenNet()
    variables = jax.jit(module.init)(jax.random.key(0), np.zeros(2))
    stats = variables["batch_stats"]["BatchNorm_0"]
    stats["mean"] = jnp.asarray(np.linspace(-0.3, 0.3, WIDTH))
    stats["var"] = jnp.asarray(np.linspace(0.5, 2.0, WIDTH))
    return module, variables


def wrapped_flax(kind):
    """`(sciml model, native network, native params)` for an NNX or a Linen network."""
    if kind == "nnx":
        net = nnx_net()
        return interop.from_nnx(net), net, nnx.to_pure_dict(nnx.state(net, nnx.Param))
    module, variables = linen_net()
    return interop.from_linen(module, variables), (module, variables), variables["params"]


# ------------------------------------------------- the NonTrainable hook of sciml.train


def test_non_trainable_marker():
    """`sciml.train.NonTrainable`: `trainable_filter` marks its leaves False, so even an
    optimiser with weight decay never touches them."""
    model = {"w": jnp.ones(2, F64), "c": NonTrainable({"mean": jnp.ones(3, F64)})}
    spec = trainable_filter(model)
    assert spec == {"w": True, "c": NonTrainable({"mean": False})}
    optimizer = optax.adamw(0.1, weight_decay=0.5)
    opt_state = init_optimizer(optimizer, model)
    assert jtu.tree_structure(opt_state[0].mu) == jtu.tree_structure(
        {"w": 0.0, "c": NonTrainable({"mean": None})}
    )
    loss_fn = lambda m, x, y: jnp.sum(m["w"] * m["c"].value["mean"][:2]) + 0 * jnp.sum(x - y)
    batch = (jnp.zeros(1, F64), jnp.zeros(1, F64))
    new, _, _ = train_step(model, opt_state, batch, loss_fn=loss_fn, optimizer=optimizer)
    assert not np.array_equal(new["w"], model["w"])
    np.testing.assert_array_equal(new["c"].value["mean"], model["c"].value["mean"])


# ------------------------------------------------------------------------ Flax -> sciml


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_from_flax_forward_and_gradient(kind):
    model, native, params = wrapped_flax(kind)
    assert isinstance(model, eqx.Module)
    assert isinstance(model.state, NonTrainable)
    # Params trainable; everything else (batch statistics, RNG key and count) not.
    spec = trainable_filter(model)
    assert all(jtu.tree_leaves(spec.params))
    assert not any(jtu.tree_leaves(spec.state))
    assert_trees_close(model.params, params, rtol=0, atol=0)

    x, y = regression_data(n=8)
    loss = batch_loss(mse)  # vmaps the model over the batch

    @eqx.filter_jit
    def ours(model):
        return jax.vmap(model)(x), eqx.filter_grad(loss)(model, x, y)

    if kind == "nnx":

        @nnx.jit
        def native_fn(net):  # NNX layers take the batch directly
            native_loss = lambda n: jnp.mean((n(x) - y) ** 2)
            return net(x), nnx.to_pure_dict(nnx.grad(native_loss)(net))

        reference, ref_grads = native_fn(native)
    else:
        module, variables = native
        rest = {k: v for k, v in variables.items() if k != "params"}
        apply = lambda params: module.apply({"params": params, **rest}, x)
        native_loss = lambda params: jnp.mean((apply(params) - y) ** 2)
        reference, ref_grads = jax.jit(lambda p: (apply(p), jax.grad(native_loss)(p)))(params)

    out, grads = ours(model)
    np.testing.assert_allclose(out, reference, rtol=RTOL)
    # Gradient equivalence, leaf for leaf under the same names (mean of 8 squares).
    assert_trees_close(grads.params, ref_grads)
    # Non-Param state enters through stop_gradient: exactly zero (or no) gradient.
    for g in jtu.tree_leaves(grads.state):
        assert not np.any(np.asarray(g))


def test_from_nnx_train_step_matches_nnx_optimizer():
    """k Adam steps of `sciml.train.train_step` on `from_nnx(m)` = k steps of a plain NNX loop
    (`nnx.Optimizer(..., wrt=nnx.Param)` + `nnx.value_and_grad`) on a copy of `m`."""
    net = nnx_net()
    twin = nnx.clone(net)
    x, y = regression_data(n=32)
    k, optimizer = 5, optax.adam(1e-2)

    model = interop.from_nnx(net)
    opt_state = init_optimizer(optimizer, model)
    loss_fn = batch_loss(mse)
    for _ in range(k):
        model, opt_state, _ = train_step(
            model, opt_state, (x, y), loss_fn=loss_fn, optimizer=optimizer
        )

    nnx_opt = nnx.Optimizer(twin, optimizer, wrt=nnx.Param)

    @nnx.jit
    def nnx_step(net, nnx_opt):
        loss, grads = nnx.value_and_grad(lambda n: jnp.mean((n(x) - y) ** 2))(net)
        nnx_opt.update(net, grads)
        return loss

    for _ in range(k):
        nnx_step(twin, nnx_opt)

    # Adam divides by sqrt(v), which would amplify any rounding difference in small
    # gradient entries; measured: bit-identical after 5 steps, 1e-10 leaves room for XLA.
    assert_trees_close(model.params, nnx.to_pure_dict(nnx.state(twin, nnx.Param)), rtol=1e-10)
    # The non-trainable state came through untouched, bit for bit.
    before = nnx.to_pure_dict(nnx.state(net, nnx.Not(nnx.Param)))
    assert_trees_close(model.state.value, before, rtol=0, atol=0)
    # `merge` gives the trained NNX module back.
    assert_trees_close(nnx.state(model.merge()), nnx.state(twin), rtol=1e-10)


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_fit_trains_flax_models(kind):
    model, _, _ = wrapped_flax(kind)
    x, y = regression_data(n=64)
    trained, history = fit(
        model,
        batch_loss(mse),
        (np.asarray(x), np.asarray(y)),
        optimizer=optax.adam(1e-2),
        epochs=15,
        batch_size=16,
        key=jax.random.key(1),
        progress=False,
    )
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    # 60 Adam steps on a smooth 2-d regression: measured ~20x lower (nnx 0.17 -> 0.006,
    # linen similar); ask for 3x.
    assert last < first / 3, (first, last)
    assert type(trained) is type(model)
    assert_trees_close(trained.state.value, model.state.value, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_checkpoint_round_trip(kind, tmp_path):
    model, _, _ = wrapped_flax(kind)
    shifted = jax.jit(lambda params: jtu.tree_map(lambda p: p + 1.0, params))(model.params)
    model = eqx.tree_at(lambda m: m.params, model, shifted)
    save_checkpoint(tmp_path, 3, {"model": model})
    like, _, _ = wrapped_flax(kind)  # the values before the shift
    restored = restore_checkpoint(tmp_path, {"model": like})[0]["model"]
    # Typed PRNG keys (NNX's RNG stream) come back as keys; all values bit for bit.
    is_key = lambda m: jtu.tree_leaves(jtu.tree_map(_is_key, m))
    assert is_key(restored) == is_key(model)
    assert_trees_close(restored, model, rtol=0, atol=0)


def test_call_and_update():
    class Noisy(nnx.Module):
        def __init__(self, rngs):
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.drop(x)

    model = interop.from_nnx(Noisy(nnx.Rngs(0)))
    x = jnp.ones(8, F64)
    # The functional call drops the RNG update: the same mask every time.
    np.testing.assert_array_equal(model(x), model(x))
    out1, model1 = model.call_and_update(x)
    out2, model2 = model1.call_and_update(x)
    np.testing.assert_array_equal(out1, model(x))
    assert not np.array_equal(out1, out2)
    assert int(model2.state.value["drop"]["rngs"]["count"]) == 2

    # Linen: BatchNorm in training mode writes `batch_stats`, as `apply(..., mutable=True)`.
    module = nn.BatchNorm(use_running_average=False, momentum=0.5, param_dtype=F64)
    batch = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)))
    variables = jax.jit(module.init)(jax.random.key(1), batch)
    out, updated = interop.from_linen(module, variables).call_and_update(batch)
    ref_out, ref_vars = module.apply(variables, batch, mutable=["batch_stats"])
    np.testing.assert_array_equal(out, ref_out)
    assert_trees_close(updated.state.value, ref_vars, rtol=0, atol=0)


@pytest.mark.untyped
def test_errors():
    with pytest.raises(ValueError, match="`NNXModel` needs a `flax.nnx.Module`"):
        interop.from_nnx(LinenNet())
    with pytest.raises(ValueError, match="`LinenModel` needs a `flax.linen.Module`"):
        interop.from_linen(nnx_net(), {})
    with pytest.raises(ValueError, match="`variables` to be a mapping"):
        interop.from_linen(LinenNet(), [1, 2])
    # Raised while tracing, so abstract shapes suffice (no compilation).
    module, x = nn.Dense(2), jax.ShapeDtypeStruct((2,), F64)
    model = interop.from_linen(
        module, jax.eval_shape(module.init, jax.random.key(0), x), scalar_output=True
    )
    with pytest.raises(ValueError, match=r"exactly one value, but it returned shape \(2,\)"):
        jax.eval_shape(lambda model, x: model(x), model, x)


# ------------------------------------------------------------------ PINN with an NNX MLP


class NNXMLP(nnx.Module):
    def __init__(self, width, *, rngs):
        self.layers = nnx.List(
            [
                nnx.Linear(2, width, param_dtype=F64, rngs=rngs),
                nnx.Linear(width, width, param_dtype=F64, rngs=rngs),
                nnx.Linear(width, 1, param_dtype=F64, rngs=rngs),
            ]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


@functools.cache
def nnx_mlp():
    return nnx.jit(lambda: NNXMLP(32, rngs=nnx.Rngs(0)))()


def test_nnx_laplacian_taylor_mode():
    model = interop.from_nnx(nnx_mlp(), scalar_output=True)
    x = jnp.array([0.3, -0.7], F64)

    @jax.jit
    def laplacians(model, x):
        return (
            jnp.trace(jax.hessian(model)(x)),
            laplacian(model, x, method="taylor"),  # jets of `jax.experimental.jet`
            laplacian(model, x, method="forward"),
        )

    dense, taylor, forward = laplacians(model, x)
    # Three float64 evaluations of the same second derivatives (measured: 3e-15 apart).
    np.testing.assert_allclose(taylor, dense, rtol=1e-10)
    np.testing.assert_allclose(forward, dense, rtol=1e-10)


def test_nnx_mlp_solves_poisson_pinn():
    model = interop.from_nnx(nnx_mlp(), scalar_output=True)
    model, history = solve(
        benchmarks.poisson_2d(),
        model,
        key=jax.random.key(1),
        steps=300,
        learning_rate=1e-2,
        num_points={"residual": 256, "boundary": 64},
        method="sobol",
        weights={"boundary": 10.0},
        eval_every=300,
        progress=False,
    )
    assert isinstance(model, interop.NNXModel)
    error = history[-1]["eval_relative_l2"]
    # 300 Adam steps of a 2-32-32-1 tanh MLP on u = sin(pi x) sin(pi y): measured 5.9e-2
    # (`sciml.fields.MLP` of the same size, same budget: 6.8e-2). The bound leaves 2.5x for
    # other platforms; the error is ~1 at initialisation, where a broken derivative path or
    # frozen parameters would leave it.
    assert error < 0.15, error


# ------------------------------------------------------------------------ sciml -> Flax

MODELS = ["fno", "deeponet", "mlp", "normalized_mlp"]


def named_leaves(tree):
    return {
        jtu.keystr(path, simple=True, separator="."): leaf
        for path, leaf in jtu.tree_flatten_with_path(tree)[0]
    }


def _loss(out):
    return jnp.sum(out**2)


@functools.cache
def sciml_reference(name):
    """`(model, args, output, gradient by leaf name)`: one sample `args` of the model's
    inputs, and the output and trainable-parameter gradient of `sum(model(*args)^2)`
    computed natively with Equinox."""
    key = jax.random.key(MODELS.index(name))
    rng = np.random.default_rng(MODELS.index(name))
    if name == "fno":
        # The README's FNO: the eager initialisation compiles once for both.
        model = FNO(1, 1, modes=(6, 6), width=8, depth=2, key=jax.random.key(0))
        args = (rng.standard_normal((1, 16, 16)),)
    elif name == "deeponet":
        make = lambda key: DeepONet(6, 1, branch_widths=(8,), trunk_widths=(8,), basis=4, key=key)
        model = eqx.filter_jit(make)(key)
        args = (rng.standard_normal(6), rng.uniform(size=1))
    elif name == "mlp":
        model = MLP(2, "scalar", width=8, depth=2, key=key)
        args = (rng.uniform(size=2),)
    else:  # normaliser statistics: arrays that are not trainable
        x, y = rng.standard_normal((10, 2)), 2.0 + rng.standard_normal((10, 3))
        model = Normalized(
            MLP(2, 3, width=8, depth=1, key=key),
            UnitGaussianNormalizer.from_data(x),
            UnitGaussianNormalizer.from_data(y),
        )
        args = (x[0],)
    args = tuple(jnp.asarray(a) for a in args)

    @eqx.filter_jit
    def reference(model):
        out = model(*args)
        return out, eqx.filter_grad(lambda m: _loss(m(*args)))(model)

    out, grads = reference(model)
    grads = eqx.filter(grads, trainable_filter(model))
    return model, args, out, named_leaves(grads)


@pytest.mark.parametrize("side", ["nnx", "linen"])
@pytest.mark.parametrize("name", MODELS)
def test_to_flax(name, side):
    model, args, out, ref_grads = sciml_reference(name)
    trainable = {n for n, t in named_leaves(trainable_filter(model)).items() if t}
    assert trainable == set(ref_grads)
    leaves = named_leaves(model)

    if side == "nnx":
        module = interop.to_nnx(model)
        assert isinstance(module, nnx.Module)
        params = nnx.to_pure_dict(nnx.state(module, nnx.Param)).get("params", {})
        buffers = nnx.to_pure_dict(nnx.state(module, interop.Buffer)).get("buffers", {})

        @nnx.jit
        def value_and_grads(module):
            loss = lambda m: (_loss(m(*args)), m(*args))
            (_, y), grads = nnx.value_and_grad(loss, has_aux=True)(module)
            return y, nnx.to_pure_dict(grads)["params"]

        y, grads = value_and_grads(module)
        # nnx.split / nnx.merge keep every variable; `to_sciml` gives the model back.
        graphdef, state = nnx.split(module)
        assert_trees_close(nnx.state(nnx.merge(graphdef, state)), state, rtol=0, atol=0)
        rebuilt = module.to_sciml()
    else:
        module = interop.to_linen(model)
        assert isinstance(module, nn.Module)
        variables = jax.jit(module.init)(jax.random.key(0), *args)
        params, buffers = variables["params"], variables.get("buffers", {})
        rest = {k: v for k, v in variables.items() if k != "params"}

        @jax.jit
        def value_and_grads(params):
            loss = lambda p: (lambda y: (_loss(y), y))(module.apply({"params": p, **rest}, *args))
            (_, y), grads = jax.value_and_grad(loss, has_aux=True)(params)
            return y, grads

        y, grads = value_and_grads(params)
        rebuilt = module.to_sciml(variables)

    # Trainable arrays are the Params, everything else a buffer, with the model's values.
    assert set(params) == trainable
    assert set(buffers) == {n for n, x in leaves.items() if eqx.is_array(x)} - trainable
    if name == "normalized_mlp":
        assert {"x_normalizer.mean", "y_normalizer.std"} <= set(buffers)
    for n, v in {**params, **buffers}.items():
        np.testing.assert_array_equal(_key_data(v), _key_data(leaves[n]))
    # Forward and gradient equivalence (one compiled program each side).
    np.testing.assert_allclose(y, out, rtol=RTOL, atol=1e-14)
    assert set(grads) == set(ref_grads)
    for n, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[n], rtol=RTOL, atol=1e-14)
    assert type(rebuilt) is type(model)
    assert_trees_close(rebuilt, model, rtol=0, atol=0)


def test_to_nnx_optimizer_matches_train_step():
    """k Adam steps of `nnx.Optimizer` on `to_nnx(model)` = k steps of `train_step`."""
    model = MLP(2, 1, width=8, depth=2, key=jax.random.key(0))
    x, y = regression_data(n=32)
    k, optimizer = 5, optax.adam(1e-2)
    loss_fn = batch_loss(mse)

    module = interop.to_nnx(model)
    nnx_opt = nnx.Optimizer(module, optimizer, wrt=nnx.Param)

    @nnx.jit
    def nnx_step(module, nnx_opt):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m, x, y))(module)
        nnx_opt.update(module, grads)
        return loss

    opt_state = init_optimizer(optimizer, model)
    losses = []
    for _ in range(k):
        losses.append(nnx_step(module, nnx_opt))
        model, opt_state, _ = train_step(
            model, opt_state, (x, y), loss_fn=loss_fn, optimizer=optimizer
        )
    assert losses[-1] < losses[0]
    assert_trees_close(module.to_sciml(), model, rtol=1e-10)


def test_fno_inside_a_linen_model():
    fno, (a,), fno_a, _ = sciml_reference("fno")

    class Corrected(nn.Module):
        fno: nn.Module

        @nn.compact
        def __call__(self, a):
            return self.fno(a) + nn.Dense(1, param_dtype=F64)(a.T).T

    model = Corrected(fno=interop.to_linen(fno))
    variables = jax.jit(model.init)(jax.random.key(0), a)
    assert set(variables["params"]) == {"fno", "Dense_0"}
    dense = variables["params"]["Dense_0"]
    expected = fno_a + (a.T @ dense["kernel"] + dense["bias"]).T
    np.testing.assert_allclose(jax.jit(model.apply)(variables, a), expected, rtol=RTOL)


# --------------------------------------------------------------------------- README


def test_readme_flax_section_runs(tmp_path, monkeypatch):
    """The "Flax interop" section's code blocks, in order, as one session (the second uses
    the imports of the first). They are fenced as ```py so that tests/test_readme.py, which
    picks ```python blocks by their content, leaves them alone."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Flax interop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # our README, not user input
    history = namespace["history"]
    # 120 Adam steps: measured 0.17 -> 0.04.
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3
    assert isinstance(namespace["net"], nnx.Module)
    losses = namespace["losses"]
    assert losses[-1] < losses[0]
