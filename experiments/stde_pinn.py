"""High-dimensional PINNs on the unit ball with stochastic Taylor-mode Laplacians (STDE).

Reproduces the "two-body" benchmarks of Shi et al., "Stochastic Taylor Derivative Estimator"
(NeurIPS 2024), which follow Hu et al., "Tackling the curse of dimensionality with
physics-informed neural networks" (SDGD, 2023).

**Problem.** On the unit ball B in R^d with u = 0 on its boundary, the exact solution is

    u*(x) = (1 - |x|^2) * sum_{i=1}^{d-1} c_i sin(x_i + cos(x_{i+1}) + x_{i+1} cos(x_i)),

with c_i ~ N(0, 1) drawn once from `--problem-seed`. Three PDEs, each with its source g computed
from u* (the Laplacian of u* in closed form, O(d) per point, see `exact_solution`):

- `poisson`:      Delta u = g
- `allen_cahn`:   Delta u + u - u^3 = g
- `sine_gordon`:  Delta u + sin(u) = g

**Model.** u_theta(x) = (1 - |x|^2) * MLP(x): the factor enforces the boundary condition exactly,
so the loss is the interior residual only. MLP: `--layers` linear layers (default 4, i.e. three
hidden layers) of width `--width` (128) with tanh, as in the paper.

**Training.** Adam, learning rate `--lr` (1e-3) decaying linearly to 0 over `--steps`; each step
draws `--num-points` (100) fresh points uniformly in the ball and minimises the mean squared
residual, with Delta u_theta computed by `--method`:

- `stde`:       `sciml.derivatives.stde_laplacian(..., sparse=True)`: |J| = `--num-samples`
                coordinates sampled without replacement, scaled by d/|J|.
- `stde_dense`: `stde_laplacian(..., sparse=False)`: |J| Rademacher directions.
- `hte`:        `hte_laplacian`: Hutchinson trace estimate with backward-mode Hessian-vector
                products (baseline).
- `sdgd`:       `sdgd_laplacian`: |J| sampled coordinates with backward-mode second derivatives
                (baseline).
- `forward`:    `forward_laplacian`: exact forward Laplacian.
- `exact`:      `laplacian`: exact, d second-order jets (Taylor mode).
- `folx`:       the `folx` package's forward Laplacian (optional peer; `pip install folx`).

Each point gets its own random sample of directions (independent keys). Plugging an unbiased
Laplacian estimate into a squared residual biases the loss by the estimator's variance; this is
the plain recipe of both papers and is kept here.

**Reports**, printed and appended as one JSON line to `--out`: steps per second (median over the
steps after compilation), compile time, process peak RSS (`resource.getrusage`), XLA's compiled
memory analysis of the training step (argument, output and temporary bytes), device peak
memory where the backend reports it, the relative L2 error on `--eval-points` fixed points
(uniform in the ball, `--eval-seed`, evaluated in chunks so that d = 1e5-1e6 fits), and the loss
curve (mean loss over windows of `--log-every` steps).

**Memory at very large d.** The evaluation never holds more than about `--eval-chunk-floats`
input numbers at once; `--chunk-size N` is passed to the Laplacian estimator as `chunk_size=N`
when its signature accepts one (directions processed N at a time), and rejected otherwise.

Examples (CPU; set `JAX_PLATFORMS=cuda` or leave unset on a GPU machine):

    .venv/bin/python experiments/stde_pinn.py --pde allen_cahn --dim 100 --steps 200 \\
        --method stde --num-samples 16 --eval-every 100 --out runs/stde_pinn.jsonl
    .venv/bin/python experiments/stde_pinn.py --pde allen_cahn --dim 10000 --steps 10000 \\
        --method stde --num-samples 16 --eval-every 1000 --out runs/stde_pinn.jsonl
    .venv/bin/python experiments/stde_pinn.py --pde sine_gordon --dim 1000 --method hte

Aggregate with e.g. `python -c "import json; [print(json.loads(l)['rel_l2']) for l in open(p)]"`.
"""

import argparse
import inspect
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

import sciml.derivatives as sd

PDES = ("poisson", "allen_cahn", "sine_gordon")
METHODS = ("stde", "stde_dense", "hte", "sdgd", "forward", "exact", "folx")
STOCHASTIC = ("stde", "stde_dense", "hte", "sdgd")
# Methods that sample coordinates without replacement, so need num_samples <= dim.
COORDINATE_SAMPLING = ("stde", "sdgd")


# ------------------------------------------------------------------------------------------------
# The two-body problem


def two_body_coefficients(dim: int, seed: int, dtype=jnp.float32) -> Float[Array, " dim-1"]:
    """The fixed coefficients c_i ~ N(0, 1), i = 1..d-1, of the two-body solution."""
    return jax.random.normal(jax.random.PRNGKey(seed), (dim - 1,), dtype=dtype)


def exact_solution(
    coeffs: Float[Array, " dim-1"], x: Float[Array, " dim"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The two-body solution u*(x) and its Laplacian, in closed form at O(d) cost.

    With q = 1 - |x|^2 and s = sum_i c_i sin(theta_i), theta_i = a + cos(b) + b cos(a) for
    a = x_i, b = x_{i+1}: Delta(q s) = s Delta q + 2 grad q . grad s + q Delta s
    = -2 d s - 4 x . grad s + q Delta s. Each term of s depends on two coordinates only, so
    x . grad s and Delta s are sums of per-term first and pure second derivatives:
    d/da sin(theta) = cos(theta) theta_a and
    d2/da2 sin(theta) = cos(theta) theta_aa - sin(theta) theta_a^2 (likewise for b), with
    theta_a = 1 - b sin(a), theta_b = cos(a) - sin(b), theta_aa = -b cos(a), theta_bb = -cos(b).
    """
    a, b = x[:-1], x[1:]
    sin_a, cos_a = jnp.sin(a), jnp.cos(a)
    sin_b, cos_b = jnp.sin(b), jnp.cos(b)
    theta = a + cos_b + b * cos_a
    sin_t, cos_t = jnp.sin(theta), jnp.cos(theta)
    theta_a = 1 - b * sin_a
    theta_b = cos_a - sin_b
    theta_aa = -b * cos_a
    theta_bb = -cos_b
    s = jnp.sum(coeffs * sin_t)
    x_dot_grad_s = jnp.sum(coeffs * cos_t * (a * theta_a + b * theta_b))
    lap_s = jnp.sum(coeffs * (cos_t * (theta_aa + theta_bb) - sin_t * (theta_a**2 + theta_b**2)))
    q = 1 - jnp.sum(x**2)
    u = q * s
    lap_u = -2 * x.shape[0] * s - 4 * x_dot_grad_s + q * lap_s
    return u, lap_u


def nonlinearity(pde: str, u: Array) -> Array:
    """The zeroth-order part N(u) of the operator `Delta u + N(u)`."""
    if pde == "poisson":
        return jnp.zeros_like(u)
    if pde == "allen_cahn":
        return u - u**3
    if pde == "sine_gordon":
        return jnp.sin(u)
    raise ValueError(f"`--pde` must be one of {PDES}, got {pde!r}.")


def source(pde: str, coeffs: Array, x: Float[Array, " dim"]) -> Float[Array, ""]:
    """g(x) = Delta u*(x) + N(u*(x)) for the two-body solution."""
    u, lap_u = exact_solution(coeffs, x)
    return lap_u + nonlinearity(pde, u)


def sample_ball(key: PRNGKeyArray, n: int, dim: int, dtype=jnp.float32) -> Float[Array, "n dim"]:
    """`n` points uniform in the unit ball: isotropic direction times radius U^(1/d)."""
    key_dir, key_rad = jax.random.split(key)
    z = jax.random.normal(key_dir, (n, dim), dtype=dtype)
    radius = jax.random.uniform(key_rad, (n, 1), dtype=dtype) ** (1.0 / dim)
    return radius * z / jnp.linalg.norm(z, axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# Model


class BallPINN(eqx.Module):
    """u(x) = (1 - |x|^2) * MLP(x): zero on the unit sphere by construction."""

    mlp: eqx.nn.MLP

    def __init__(self, dim: int, width: int, layers: int, *, key: PRNGKeyArray, dtype=None):
        self.mlp = eqx.nn.MLP(
            dim, "scalar", width, layers - 1, activation=jnp.tanh, key=key, dtype=dtype
        )

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        return (1 - jnp.sum(x**2)) * self.mlp(x)


# ------------------------------------------------------------------------------------------------
# Laplacians

LaplacianFn = Callable[[Callable[[Array], Array], Array, PRNGKeyArray], Array]


def _library_function(name: str) -> Callable:
    fn = getattr(sd, name, None)
    if fn is None:
        raise RuntimeError(
            f"`sciml.derivatives.{name}` is not available in this checkout; "
            f"choose another `--method`."
        )
    return fn


def _chunk_kwargs(fn: Callable, name: str, chunk_size: int | None) -> dict[str, int]:
    if chunk_size is None:
        return {}
    if "chunk_size" not in inspect.signature(fn).parameters:
        raise ValueError(
            f"`--chunk-size` was given ({chunk_size}) but `{name}` takes no `chunk_size`; "
            f"drop the option for this method."
        )
    return {"chunk_size": chunk_size}


def make_laplacian(method: str, num_samples: int, chunk_size: int | None = None) -> LaplacianFn:
    """`lap(f, x, key)`: the Laplacian (or its estimate) of the scalar field f at x."""
    if method in ("stde", "stde_dense"):
        fn = _library_function("stde_laplacian")
        extra = _chunk_kwargs(fn, "stde_laplacian", chunk_size)
        sparse = method == "stde"
        return lambda f, x, key: fn(f, x, key=key, num_samples=num_samples, sparse=sparse, **extra)
    if method in ("hte", "sdgd"):
        name = f"{method}_laplacian"
        fn = _library_function(name)
        extra = _chunk_kwargs(fn, name, chunk_size)
        return lambda f, x, key: fn(f, x, key=key, num_samples=num_samples, **extra)
    if method == "forward":
        fn = _library_function("forward_laplacian")
        extra = _chunk_kwargs(fn, "forward_laplacian", chunk_size)
        return lambda f, x, key: fn(f, x, **extra)
    if method == "exact":
        fn = _library_function("laplacian")
        extra = _chunk_kwargs(fn, "laplacian", chunk_size)
        if "method" in inspect.signature(fn).parameters:
            extra["method"] = "taylor"
        return lambda f, x, key: fn(f, x, **extra)
    if method == "folx":
        try:
            import folx
        except ImportError as e:
            raise RuntimeError(
                "`--method folx` needs the optional `folx` package: `pip install folx`."
            ) from e
        if chunk_size is not None:
            raise ValueError("`--chunk-size` is not supported with `--method folx`.")
        return lambda f, x, key: folx.forward_laplacian(f)(x).laplacian
    raise ValueError(f"`--method` must be one of {METHODS}, got {method!r}.")


# ------------------------------------------------------------------------------------------------
# Training step and evaluation


def make_loss(pde: str, coeffs: Array, lap: LaplacianFn, num_points: int) -> Callable:
    """`loss(params, static, key)`: mean squared residual on fresh points in the ball."""
    dim = coeffs.shape[0] + 1

    def residual(model: BallPINN, x: Array, key: PRNGKeyArray) -> Array:
        return lap(model, x, key) + nonlinearity(pde, model(x)) - source(pde, coeffs, x)

    def loss(params: Any, static: Any, key: PRNGKeyArray) -> Array:
        model = eqx.combine(params, static)
        key_x, key_lap = jax.random.split(key)
        xs = sample_ball(key_x, num_points, dim, coeffs.dtype)
        keys = jax.random.split(key_lap, num_points)
        res = jax.vmap(residual, in_axes=(None, 0, 0))(model, xs, keys)
        return jnp.mean(res**2)

    return loss


def make_step(loss: Callable, static: Any, optimizer: optax.GradientTransformation) -> Callable:
    """`step(params, opt_state, key) -> (params, opt_state, loss)`: one Adam step (pure)."""

    def step(params, opt_state, key):
        value, grads = jax.value_and_grad(loss)(params, static, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def relative_l2(
    model: BallPINN,
    coeffs: Array,
    *,
    num_points: int,
    seed: int,
    chunk_floats: int,
) -> float:
    """Relative L2 error of `model` against u* on `num_points` fixed points in the ball.

    The points are regenerated chunk by chunk from `seed` (chunk c uses `fold_in(key, c)`), so
    the set is the same at every call and never held in memory at once.
    """
    dim = coeffs.shape[0] + 1
    chunk = max(1, min(num_points, chunk_floats // dim))
    num_chunks = math.ceil(num_points / chunk)
    key = jax.random.PRNGKey(seed)
    params, static = eqx.partition(model, eqx.is_array)
    err, ref = 0.0, 0.0
    for c in range(num_chunks):
        valid = min(chunk, num_points - c * chunk)
        e, r = _eval_chunk(
            params, static, coeffs, jax.random.fold_in(key, c), chunk, jnp.asarray(valid)
        )
        err += float(e)
        ref += float(r)
    return math.sqrt(err / ref)


@eqx.filter_jit
def _eval_chunk(params, static, coeffs, key, chunk: int, valid):
    model = eqx.combine(params, static)
    xs = sample_ball(key, chunk, coeffs.shape[0] + 1, coeffs.dtype)
    pred = jax.vmap(model)(xs)
    true = jax.vmap(lambda x: exact_solution(coeffs, x)[0])(xs)
    mask = jnp.arange(chunk) < valid
    return jnp.sum(jnp.where(mask, (pred - true) ** 2, 0)), jnp.sum(jnp.where(mask, true**2, 0))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else stats.get("peak_bytes_in_use")


def memory_analysis(compiled) -> dict[str, int | None]:
    """XLA's static memory analysis of a compiled computation, or Nones if unsupported."""
    keys = ("argument", "output", "alias", "temp")
    try:
        stats = compiled.memory_analysis()
    except Exception:  # backends differ in what they support
        stats = None
    if stats is None:
        return {f"xla_{k}_bytes": None for k in keys}
    return {f"xla_{k}_bytes": int(getattr(stats, f"{k}_size_in_bytes")) for k in keys}


class Setup(NamedTuple):
    """Everything a training loop needs: compiled step, initial state, fixed problem data."""

    compiled: Any
    params: Any
    static: Any
    opt_state: Any
    coeffs: Array
    compile_s: float
    memory: dict


def check_args(args: argparse.Namespace) -> None:
    """One clear sentence per bad option, before anything is compiled."""
    if args.dim < 2:
        raise ValueError(f"`--dim` must be at least 2 (two-body terms), got {args.dim}.")
    if args.method in STOCHASTIC and args.num_samples < 1:
        raise ValueError(f"`--num-samples` must be at least 1, got {args.num_samples}.")
    if args.method in COORDINATE_SAMPLING and args.num_samples > args.dim:
        raise ValueError(
            f"`--num-samples` ({args.num_samples}) must not exceed `--dim` ({args.dim}) for "
            f"`--method {args.method}`, which samples coordinates without replacement."
        )
    for name in ("steps", "num_points", "width", "eval_points", "log_every"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"`--{name.replace('_', '-')}` must be positive, got {getattr(args, name)}."
            )
    if args.layers < 2:
        raise ValueError(f"`--layers` must be at least 2 (one hidden layer), got {args.layers}.")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"`--chunk-size` must be positive, got {args.chunk_size}.")


def setup(args: argparse.Namespace) -> Setup:
    """Builds the problem, model, optimiser and the ahead-of-time compiled training step."""
    check_args(args)
    dtype = jnp.float32
    coeffs = two_body_coefficients(args.dim, args.problem_seed, dtype)
    init_key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 0)
    model = BallPINN(args.dim, args.width, args.layers, key=init_key, dtype=dtype)
    params, static = eqx.partition(model, eqx.is_array)
    schedule = optax.linear_schedule(args.lr, 0.0, args.steps)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(params)
    lap = make_laplacian(args.method, args.num_samples, args.chunk_size)
    loss = make_loss(args.pde, coeffs, lap, args.num_points)
    step = make_step(loss, static, optimizer)
    t0 = time.perf_counter()
    compiled = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(params, opt_state, jax.random.PRNGKey(0))
        .compile()
    )
    compile_s = time.perf_counter() - t0
    return Setup(compiled, params, static, opt_state, coeffs, compile_s, memory_analysis(compiled))


# ------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pde", choices=PDES, default="allen_cahn")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--method", choices=METHODS, default="stde")
    p.add_argument("--num-samples", type=int, default=16, help="|J| for stochastic methods")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--lr", type=float, default=1e-3, help="initial Adam lr, linear decay to 0")
    p.add_argument("--num-points", type=int, default=100, help="residual points per step")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4, help="linear layers of the MLP")
    p.add_argument("--seed", type=int, default=0, help="model init and training randomness")
    p.add_argument("--problem-seed", type=int, default=0, help="the coefficients c_i")
    p.add_argument("--eval-points", type=int, default=20_000)
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N steps (0: only at the end)"
    )
    p.add_argument(
        "--eval-chunk-floats",
        type=int,
        default=1 << 22,
        help="evaluation chunk size, in input numbers (points x dim)",
    )
    p.add_argument("--log-every", type=int, default=100, help="loss-curve window, in steps")
    p.add_argument("--chunk-size", type=int, default=None, help="passed to the estimator")
    p.add_argument("--out", default=None, help="append one JSON line per run to this file")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    device = jax.devices()[0]
    say(
        f"{args.pde} d={args.dim} method={args.method} |J|={args.num_samples} "
        f"steps={args.steps} on {device.platform} ({device.device_kind})"
    )
    s = setup(args)
    say(f"compiled in {s.compile_s:.1f}s; XLA memory analysis: {s.memory}")
    params, opt_state = s.params, s.opt_state
    key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 1)
    losses = np.empty(args.steps, dtype=np.float64)
    times = np.empty(args.steps, dtype=np.float64)
    history = []
    eval_s = 0.0

    def evaluate(step: int) -> float:
        nonlocal eval_s
        t = time.perf_counter()
        err = relative_l2(
            eqx.combine(params, s.static),
            s.coeffs,
            num_points=args.eval_points,
            seed=args.eval_seed,
            chunk_floats=args.eval_chunk_floats,
        )
        eval_s += time.perf_counter() - t
        history.append((step, err))
        return err

    t_train = time.perf_counter()
    if args.eval_every:
        say(f"step 0: rel L2 {evaluate(0):.4e}")
    for i in range(args.steps):
        t = time.perf_counter()
        params, opt_state, loss = s.compiled(params, opt_state, jax.random.fold_in(key, i))
        losses[i] = float(loss)
        times[i] = time.perf_counter() - t
        if not math.isfinite(losses[i]):
            say(f"step {i + 1}: loss is {losses[i]}; stopping.")
            losses, times = losses[: i + 1], times[: i + 1]
            break
        if args.eval_every and (i + 1) % args.eval_every == 0 and i + 1 < args.steps:
            err = evaluate(i + 1)
            say(f"step {i + 1}: loss {losses[i]:.4e}  rel L2 {err:.4e}  {1 / times[i]:.1f} it/s")
    train_s = time.perf_counter() - t_train - eval_s
    rss_after_train = peak_rss_bytes()
    final = evaluate(len(losses))
    timed = times[1:] if len(times) > 1 else times
    it_per_s = 1.0 / float(np.median(timed))
    windows = range(0, len(losses), args.log_every)
    curve = [
        (min(w + args.log_every, len(losses)), float(np.mean(losses[w : w + args.log_every])))
        for w in windows
    ]
    record = {
        "pde": args.pde,
        "dim": args.dim,
        "method": args.method,
        "num_samples": args.num_samples if args.method in STOCHASTIC else None,
        "steps": int(len(losses)),
        "num_points": args.num_points,
        "width": args.width,
        "layers": args.layers,
        "lr": args.lr,
        "seed": args.seed,
        "problem_seed": args.problem_seed,
        "chunk_size": args.chunk_size,
        "it_per_s": it_per_s,
        "compile_s": s.compile_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "peak_rss_bytes_train": rss_after_train,
        "peak_rss_bytes": peak_rss_bytes(),
        "device_peak_bytes": device_peak_bytes(),
        **s.memory,
        "rel_l2": final,
        "rel_l2_history": history,
        "loss_curve": curve,
        "final_loss": float(losses[-1]),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "jax": jax.__version__,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    say(
        f"done: rel L2 {final:.4e}, {it_per_s:.1f} it/s (median), compile {s.compile_s:.1f}s, "
        f"peak RSS {rss_after_train / 2**20:.0f} MiB, train {train_s:.1f}s"
    )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()
