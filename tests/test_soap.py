"""`sciml.train.soap` against Adam (its identity-preconditioner case) and a dense NumPy
reference of the paper's algorithm; exact resumption; jit, schedules, complex leaves; that it
trains; `train.optimizer` in configs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_pinn_config import REPO
from test_pinn_config import TINY as PINN_TINY

from sciml import train
from sciml._app.config import ConfigError, load_config, validate_config
from sciml.train._soap import SoapState


def _run(optimizer, params, grads):
    """The updates of `optimizer` (jitted) for the gradient sequence `grads`, applied in
    turn."""
    state, update = optimizer.init(params), jax.jit(optimizer.update)
    updates = []
    for g in grads:
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
        updates.append(u)
    return updates, state


def _gradients(getkey, like, n, dtype=jnp.float64):
    def draw(x):
        shape = x.shape
        if jnp.issubdtype(dtype, jnp.complexfloating):
            return jax.random.normal(getkey(), shape) + 1j * jax.random.normal(getkey(), shape)
        return jax.random.normal(getkey(), shape, dtype)

    return [jax.tree.map(draw, like) for _ in range(n)]


def _assert_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=0)


# --- the identity preconditioner is Adam ----------------------------------------------------


def test_identity_preconditioner_is_adamw(getkey):
    """With every axis beyond `max_precond_dim` (here 0) no factor rotates anything, and SOAP
    is Adam with decoupled weight decay: equal to `optax.adamw` (weight decay 0.1) over 6
    steps to 1e-12
    relative (measured: ~1e-16, the same arithmetic in another order) on a matrix, a 3-D
    tensor, a vector and a scalar; 1-D and scalar leaves are Adam at any `max_precond_dim`."""
    params = {
        "w": jax.random.normal(getkey(), (5, 3)),
        "t": jax.random.normal(getkey(), (2, 3, 4)),
        "b": jax.random.normal(getkey(), (3,)),
        "s": jnp.array(0.5),
    }
    grads = _gradients(getkey, params, 6)
    args = dict(b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1)
    adam, _ = _run(optax.adamw(1e-2, **args), params, grads)
    soap = train.soap(1e-2, **args, max_precond_dim=0)
    ours, _ = _run(soap, params, grads)
    _assert_close(ours, adam, rtol=1e-12)
    small = lambda tree: {"b": tree["b"], "s": tree["s"]}
    ours, _ = _run(train.soap(1e-2, **args), small(params), [small(g) for g in grads])
    _assert_close(ours, [small(u) for u in adam], rtol=1e-12)


# --- a dense NumPy reference of the paper's algorithm ---------------------------------------


def _descending_eigenvectors(f):
    return np.linalg.eigh(f)[1][:, ::-1]


def _reference(state, grads, *, lr, b1, b2, eps, beta, frequency):
    """The paper's SOAP (Vyas et al. 2024, Algorithm 3, as their code runs it) for one matrix
    `W` (m x n), with the paper's factors `L = G G^H`, `R = G^H G` and `G' = Q_L^H G Q_R`
    (complex: Hermitian). The first step only sets the factors and their `eigh` bases
    (`state["QL"] is None`); then each step takes Adam's step in the rotated space (its count
    `t` from 1), updates the factors and every `frequency` steps refreshes the bases by
    Algorithm 4 (order the columns by `diag(Q^H F Q)`, permute `V` alike, one QR power
    step), `M` carried over to the new basis. Returns the updates."""
    L, R, QL, QR, M, V, t = (state[k] for k in ("L", "R", "QL", "QR", "M", "V", "t"))
    updates = []
    for G in grads:
        L = beta * L + (1 - beta) * G @ G.conj().T
        R = beta * R + (1 - beta) * G.conj().T @ G
        if QL is None:
            QL, QR = _descending_eigenvectors(L), _descending_eigenvectors(R)
            updates.append(np.zeros_like(G))
            continue
        t += 1
        Gr = QL.conj().T @ G @ QR
        M = b1 * M + (1 - b1) * Gr
        V = b2 * V + (1 - b2) * np.abs(Gr) ** 2
        N = (M / (1 - b1**t)) / (np.sqrt(V / (1 - b2**t)) + eps)
        updates.append(-lr * QL @ N @ QR.conj().T)
        if t % frequency == 0:
            M = QL @ M @ QR.conj().T
            new = []
            for axis, (F, Q) in enumerate(((L, QL), (R, QR))):
                order = np.argsort(-np.real(np.diag(Q.conj().T @ F @ Q)))
                V = np.take(V, order, axis=axis)
                new.append(np.linalg.qr(F @ Q[:, order])[0])
            QL, QR = new
            M = QL.conj().T @ M @ QR
    return updates


_HYPER = dict(lr=0.1, b1=0.9, b2=0.95, eps=1e-8, beta=0.8, frequency=2)


def _soap(**hyper):
    return train.soap(
        hyper["lr"],
        b1=hyper["b1"],
        b2=hyper["b2"],
        eps=hyper["eps"],
        precondition_frequency=hyper["frequency"],
        shampoo_beta=hyper["beta"],
    )


def _fresh(shape):
    m, n = shape
    state = dict(L=np.zeros((m, m)), R=np.zeros((n, n)), QL=None, QR=None, t=0)
    return state | dict(M=np.zeros(shape), V=np.zeros(shape))


@pytest.mark.parametrize("shape", [(5, 3), (4, 6)])
def test_first_step_only_estimates_the_bases(getkey, shape):
    """As in the paper's code, the first step of a matrix leaf is zero and sets the bases:
    eigenvectors of `(1 - beta) G G^H` and of `(1 - beta) G^T conj(G)`, by decreasing
    eigenvalue (checked: `Q^H F Q` diagonal and descending to 1e-12, `Q` orthogonal); a
    vector leaf beside it takes Adam's first step, `-lr sign(g)`."""
    params = {"w": jnp.zeros(shape), "b": jnp.zeros(3)}
    grads = _gradients(getkey, params, 1)
    (update,), state = _run(_soap(**_HYPER), params, grads)
    assert np.array_equal(update["w"], np.zeros(shape))
    np.testing.assert_allclose(update["b"], -_HYPER["lr"] * np.sign(grads[0]["b"]), rtol=1e-6)
    g = np.asarray(grads[0]["w"])
    factors = ((1 - _HYPER["beta"]) * g @ g.T, (1 - _HYPER["beta"]) * g.T @ g)
    for f, q, stored in zip(factors, state[0].bases["w"], state[0].factors["w"], strict=True):
        np.testing.assert_allclose(stored, f, rtol=1e-12)
        rotated = q.T @ f @ q
        np.testing.assert_allclose(rotated, np.diag(np.diag(rotated)), atol=1e-12)
        assert np.all(np.diff(np.diag(rotated)) <= 1e-12)
        np.testing.assert_allclose(q.T @ q, np.eye(len(q)), atol=1e-12)


def test_steps_match_numpy_reference_from_scratch(getkey):
    """Eight steps from the initial state on a square 4 x 4 float64 matrix (full-rank
    factors after the first step, so its `eigh` bases are unique up to signs, which the
    updates do not see), with refreshes after Adam steps 2, 4 and 6: equal to the dense
    reference to 1e-9 relative (measured: 2e-15 of the largest entry)."""
    grads = [np.asarray(jax.random.normal(getkey(), (4, 4))) for _ in range(8)]
    expected = _reference(_fresh((4, 4)), grads, **_HYPER)
    ours, _ = _run(_soap(**_HYPER), jnp.zeros((4, 4)), [jnp.asarray(g) for g in grads])
    for u, e in zip(ours, expected, strict=True):
        np.testing.assert_allclose(u, e, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("shape, dtype", [((5, 3), np.float64), ((4, 6), np.complex128)])
def test_steps_with_refreshes_match_numpy_reference(getkey, shape, dtype):
    """One step, then four more through refreshes (after Adam steps 2 and 4), from a mid-run
    state (random positive definite factors, bases of nearby matrices, random moments) on
    a real 5 x 3 and a complex 4 x 6 matrix, each equal to the dense reference to 1e-9
    relative (measured: 1e-15 of the largest entry). A mid-run state, since from scratch the
    first bases of a non-square matrix hold an arbitrary basis of a factor's null space
    (`G G^T` of a 5 x 3 `G` has rank 3), which LAPACK may choose differently in each
    implementation. The complex
    case checks the conjugations: the second axis's factor is stored as `conj(R)`, its
    basis as `conj(Q_R)`."""
    m, n = shape

    def draw(*s):
        x = np.asarray(jax.random.normal(getkey(), s))
        if dtype == np.complex128:
            x = x + 1j * np.asarray(jax.random.normal(getkey(), s))
        return x

    A, B = draw(m, m + 2), draw(n, n + 2)
    L, R = A @ A.conj().T, B @ B.conj().T
    QL = _descending_eigenvectors(L + 0.3 * np.diag(np.arange(m)))
    QR = _descending_eigenvectors(R + 0.3 * np.diag(np.arange(n)))
    M, V = draw(m, n), np.abs(draw(m, n)) ** 2
    grads = [draw(m, n) for _ in range(5)]
    expected = _reference(dict(L=L, R=R, QL=QL, QR=QR, M=M, V=V, t=0), grads, **_HYPER)

    optimizer = _soap(**_HYPER)
    params = jnp.zeros(shape, dtype)
    state = optimizer.init(params)
    ours = SoapState(
        count=jnp.array(1, jnp.int32),  # past the first (basis-only) step
        mu=jnp.asarray(M),
        nu=jnp.asarray(V),
        factors=(jnp.asarray(L), jnp.asarray(R.conj())),
        bases=(jnp.asarray(QL), jnp.asarray(QR.conj())),
    )
    assert jax.tree.structure(ours) == jax.tree.structure(state[0])
    state = (ours, *state[1:])
    update = jax.jit(optimizer.update)
    for g, e in zip(grads, expected, strict=True):
        u, state = update(jnp.asarray(g), state, params)
        np.testing.assert_allclose(u, e, rtol=1e-9, atol=1e-15)


# --- state, jit, schedules, complex leaves ----------------------------------------------------


def _mlp_problem(getkey):
    model = eqx.nn.MLP(1, 1, 16, 2, activation=jnp.tanh, key=getkey())
    x = jnp.linspace(-1, 1, 64)[:, None]
    y = jnp.sin(3 * x)

    def loss(model):
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    return model, loss


def _step_fn(optimizer, loss):
    @eqx.filter_jit
    def step(model, state):
        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, value

    return step


def test_checkpoint_resumes_bit_for_bit(getkey, tmp_path):
    """12 jitted steps (refreshes every 4) of a small MLP, the model and optimiser state
    saved with `sciml.train.save_checkpoint` (`eqx.tree_serialise_leaves`) after 6 and
    restored into a fresh `init`: the resumed run's parameters and state equal the
    uninterrupted run's bit for bit."""
    model, loss = _mlp_problem(getkey)
    optimizer = train.soap(
        optax.cosine_decay_schedule(1e-2, 12), precondition_frequency=4, weight_decay=1e-3
    )
    step = _step_fn(optimizer, loss)
    fresh = optimizer.init(eqx.filter(model, eqx.is_array))
    state, uninterrupted = fresh, model
    for i in range(12):
        uninterrupted, state, _ = step(uninterrupted, state)
        if i == 5:
            train.save_checkpoint(tmp_path, 6, (uninterrupted, state))
    (resumed, resumed_state), _ = train.restore_checkpoint(tmp_path, (model, fresh))
    for _ in range(6):
        resumed, resumed_state, _ = step(resumed, resumed_state)
    arrays = lambda tree: jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    for a, b in zip(arrays((uninterrupted, state)), arrays((resumed, resumed_state)), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_jit_schedule_and_inject_hyperparams(getkey):
    """A schedule is read at the step count (as `optax.scale_by_learning_rate`): with every
    axis unrotated, SOAP with an exponential decay equals Adam with it to 1e-12 over 5 steps
    under `jit`; `optax.inject_hyperparams(soap)` (every numeric argument an array, traced
    in `update`) gives the same updates as plain `soap` with rotations (to 1e-12) and
    records the learning rate."""
    params = {"w": jax.random.normal(getkey(), (4, 3)), "b": jnp.zeros(3)}
    grads = _gradients(getkey, params, 5)
    schedule = optax.exponential_decay(1e-2, 1, 0.5)
    jitted = lambda opt: optax.GradientTransformation(opt.init, jax.jit(opt.update))
    adam, _ = _run(optax.adam(schedule, b1=0.95, b2=0.95), params, grads)
    ours, _ = _run(jitted(train.soap(schedule, max_precond_dim=0)), params, grads)
    _assert_close(ours, adam, rtol=1e-12)
    plain, _ = _run(jitted(train.soap(schedule, precondition_frequency=2)), params, grads)
    injected = optax.inject_hyperparams(train.soap)(schedule, precondition_frequency=2)
    ours, state = _run(jitted(injected), params, grads)
    _assert_close(ours, plain, rtol=1e-12)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(1e-2 * 0.5**4)


def test_complex_leaf_decreases_a_quadratic(getkey):
    """A complex 4-D leaf (an FNO spectral weight's layout) and a complex matrix minimise
    `sum |W - T|^2` (JAX's gradient of a real function of complex inputs is the conjugate of
    the steepest-ascent direction, conjugated back here): 200 steps at lr 0.05 bring the
    loss from 53 to below 1e-2 of it (measured: 5e-5 of it; Adam with the same betas: 8e-5),
    all finite; the factors stay Hermitian."""
    target = {
        "spectral": jax.random.normal(getkey(), (3, 4, 2, 2), jnp.complex128),
        "matrix": jax.random.normal(getkey(), (5, 3), jnp.complex128),
    }
    params = jax.tree.map(jnp.zeros_like, target)

    def loss(p):
        return sum(jnp.sum(jnp.abs(p[k] - target[k]) ** 2) for k in target)

    optimizer = train.soap(0.05, precondition_frequency=5)
    state = optimizer.init(params)

    @jax.jit
    def step(p, s):
        g = jax.tree.map(jnp.conj, jax.grad(loss)(p))
        u, s = optimizer.update(g, s, p)
        return optax.apply_updates(p, u), s

    start = loss(params)
    for _ in range(200):
        params, state = step(params, state)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    assert loss(params) < 1e-2 * start
    for f in jax.tree.leaves(state[0].factors):
        np.testing.assert_allclose(f, f.conj().T, atol=1e-12)
        assert jnp.iscomplexobj(f)


# --- it trains ----------------------------------------------------------------------------------


def _best_loss(factory, params, loss, steps, rates):
    """The lowest final loss of `steps` full-batch steps of `factory(lr)` over `rates` (one
    compilation: the learning rate is an argument)."""

    @jax.jit
    def final(lr):
        optimizer = factory(lr)

        def body(carry, _):
            p, s = carry
            u, s = optimizer.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (params, optimizer.init(params)), None, steps)
        return loss(p)

    return min(float(final(lr)) for lr in rates)


_ADAM = lambda lr: optax.adam(lr, b1=0.95, b2=0.95)  # SOAP's default betas


def test_soap_beats_adam_on_ill_conditioned_least_squares(getkey):
    """`min_W |A W - B|^2`, `A` 64 x 16 with condition number 100, `W` 16 x 8, 300 steps, each
    optimiser at its best learning rate of 1e-2, 3e-2, 1e-1 (defaults otherwise; Adam with
    SOAP's betas). Measured final loss (start 22.5; lr 1e-2, 3e-2, 1e-1): Adam 2.3e-2, 8.2e-4,
    2.3e-4; SOAP 1.1, 1.7e-4, 8.6e-5. Asserted: SOAP's best < 2x Adam's ("comparable or
    better"). At a learning rate too small to cover the distance in 300 steps SOAP is the
    slower (lr 1e-2 above): each rotated
    coordinate moves at most ~lr per step, as each plain one in Adam, and the rotation
    gathers the distance to the solution into fewer coordinates."""
    U = jnp.linalg.qr(jax.random.normal(getkey(), (64, 16)))[0]
    V = jnp.linalg.qr(jax.random.normal(getkey(), (16, 16)))[0]
    A = U @ jnp.diag(jnp.logspace(0, -2, 16)) @ V.T
    B = A @ jax.random.normal(getkey(), (16, 8))
    loss = lambda W: jnp.sum((A @ W - B) ** 2)
    rates = (1e-2, 3e-2, 1e-1)
    adam = _best_loss(_ADAM, jnp.zeros((16, 8)), loss, 300, rates)
    ours = _best_loss(train.soap, jnp.zeros((16, 8)), loss, 300, rates)
    assert ours < 2 * adam, (ours, adam)


def test_soap_trains_a_small_mlp_as_well_as_adam(getkey):
    """Regression of sin(3x) on 128 points of [-1, 1] by a 1-32-32-1 tanh MLP, 500 full-batch
    steps from the same initialisation, each optimiser at its best learning rate of 1e-3,
    3e-3, 1e-2. Measured MSE (start 0.59; lr 1e-3, 3e-3, 1e-2): Adam 2.0e-5, 1.1e-5, 5.4e-5;
    SOAP 7.0e-2, 3.6e-7, 8.3e-6. Asserted: SOAP's best < 3x Adam's ("comparable")."""
    model = eqx.nn.MLP(1, 1, 32, 2, activation=jnp.tanh, key=getkey())
    x = jnp.linspace(-1, 1, 128)[:, None]
    params, static = eqx.partition(model, eqx.is_array)
    loss = lambda p: jnp.mean((jax.vmap(eqx.combine(p, static))(x) - jnp.sin(3 * x)) ** 2)
    rates = (1e-3, 3e-3, 1e-2)
    adam = _best_loss(_ADAM, params, loss, 500, rates)
    ours = _best_loss(train.soap, params, loss, 500, rates)
    assert ours < 3 * adam, (ours, adam)


# --- configs ------------------------------------------------------------------------------------


def test_config_rejects_an_unknown_optimizer():
    for raw in ({}, {"kind": "pinn"}):
        with pytest.raises(ConfigError) as info:
            validate_config({**raw, "train": {"optimizer": "sgd"}}, check_data=False)
        message = str(info.value)
        assert "\n" not in message and "'train.optimizer' = 'sgd' is invalid" in message
        assert "adam" in message and "soap" in message


def test_pinn_config_runs_with_soap(tmp_path):
    """A tiny PINN run with `train.optimizer = "soap"` finishes with a finite error and
    records the learning rate (SOAP runs under `optax.inject_hyperparams`, as Adam)."""
    from sciml._app.experiment import run_experiment

    overrides = [*PINN_TINY, "train.steps=20", "train.lbfgs_steps=0", "train.optimizer=soap"]
    overrides += ["model.name=mlp", "model.mlp.width=8", "model.mlp.depth=1"]
    config = load_config(REPO / "experiments" / "pinn_poisson.toml", overrides)
    results = run_experiment(config, tmp_path / "pinn")
    assert np.isfinite(results["test_relative_l2"])
    records = (tmp_path / "pinn" / "metrics.jsonl").read_text()
    assert '"lr"' in records


def test_operator_optimizer_from_config(getkey):
    """An operator config's Adam is the chain it always was (so that older runs resume); its
    SOAP is `soap` after the same L2 weight decay, under the same schedule: equal updates to
    1e-12 over 3 steps on a complex 4-D leaf and a matrix."""
    from sciml._app.operator_run import build_optimizer

    train_cfg = validate_config({"train": {"optimizer": "soap"}}, check_data=False)["train"]
    params = {
        "spectral": jax.random.normal(getkey(), (2, 3, 4, 4), jnp.complex128),
        "w": jax.random.normal(getkey(), (4, 3)),
    }
    grads = _gradients(getkey, params, 3, jnp.complex128)
    grads = [{**g, "w": jnp.real(g["w"])} for g in grads]
    schedule = optax.exponential_decay(1e-3, 100 * 5, 0.5, staircase=True)
    expected = optax.chain(optax.add_decayed_weights(1e-4), train.soap(schedule))
    ours, _ = _run(build_optimizer(train_cfg, 5), params, grads)
    _assert_close(ours, _run(expected, params, grads)[0], rtol=1e-12)
    adam = build_optimizer(train_cfg | {"optimizer": "adam"}, 5)
    old = optax.chain(
        optax.add_decayed_weights(1e-4),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    )
    assert jax.tree.structure(adam.init(params)) == jax.tree.structure(old.init(params))
