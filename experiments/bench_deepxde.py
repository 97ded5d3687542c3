"""Side-by-side PINN benchmark: `sciml.pinn` vs DeepXDE 1.15 (JAX backend) on identical points.

Problems (both on [-1, 1]^2, u = 0 on the boundary; `sciml.pinn.benchmarks` and
`experiments/_deepxde_peer.py` state the same PDEs):

- `poisson`:   -Lap u = 2 pi^2 u,  u = sin(pi x) sin(pi y)
- `helmholtz`: Lap u + u = q,      u = sin(pi x) sin(4 pi y)  (k = 1, a1 = 1, a2 = 4)

Setting, the same for both libraries: an FNN [2] + [W] * D + [1] with tanh, Glorot-normal
kernels (both use `jax.nn.initializers.glorot_normal()`, i.e. a *truncated* normal with
fan-avg variance; DeepXDE through flax's `Dense`, sciml through `sciml.fields.MLP`) and zero
biases -- the same distribution, but different random draws (DeepXDE seeds through
`dde.config.set_random_seed`, sciml uses `jax.random.key(seed)`); `optax.adam(lr)` with a
constant learning rate; full batch; float32; N steps; no L-BFGS; no resampling; loss =
mean squared PDE residual on the interior points + mean squared boundary value on the
boundary points, weights 1 and 1.

Points: per seed, numpy draws `--num-domain` uniform interior points, `--num-boundary`
points uniform on the boundary by arc length (perimeter), and the test set is the 100 x 100
grid of [-1, 1]^2 (`linspace(-1, 1, 100)` per axis). They go into one `.npz` per
(problem, seed) (`interior`, `boundary`, `test`, `test_u`; the points are the same for both
problems) in a scratch directory under /tmp, and that same file is read by both libraries.
The reported error is the relative L2 error on the test grid, `|u - u*| / |u*|`.

Runs, each in its own subprocess (so each pays its own compilation, excluded from the
timing, and none shares a JAX runtime with another):

- `sciml fused`:  `sciml.pinn._solve._adam_block` -- the private fused loop that
  `sciml.pinn.solve` runs between evaluations: N Adam steps (`sciml.train.train_step`) in
  one compiled `lax.fori_loop`.  Warm-up: one call with n = 1 (the step count is traced, so
  it is the same compilation), then the timed call with n = N from the initial state.
- `sciml loop`:   the public `sciml.train.train_step` (an `eqx.filter_jit` step) called N
  times from Python -- the same dispatch pattern as DeepXDE's `Model.train`.  Warm-up: one
  step, then N timed steps from the initial state.
- `deepxde`:      `experiments/_deepxde_peer.py` in `.venv-deepxde` (warm-up
  `model.train(iterations=1)`, reset, then `model.train(iterations=N)` timed; its timed
  region also holds DeepXDE's two loss evaluations at the start and end of `train`, and it
  evaluates the PDE residual on the boundary rows too, as DeepXDE always does).

For every (problem, seed, repeat) the three runs follow one another in an order that
rotates from one cell to the next, so that slow drifts of the machine's load do not favour
one library. Each JSONL record holds the timing (`train_time_s`, `warmup_time_s`,
`steps_per_s`), `rel_l2`, `final_loss` (and its two terms), the versions, the SHA-256 of
the points file and the load averages before and after the run. The sciml runs also count
XLA compilations inside the timed region (`compiles_in_timing`, which should be 0).

The summary table gives, per problem and run kind, the median over seeds (and repeats) of
the training time and steps/s, the speed ratio DeepXDE time / this time (ratio of the
medians), and the mean relative L2 error and final loss.

DeepXDE lives in its own venv and is never a dependency of sciml; create it as in
`experiments/_deepxde_peer.py` (from the repository root)::

    python3 -m venv .venv-deepxde
    .venv-deepxde/bin/pip install deepxde==1.15.0 jax==0.10.2 jaxlib==0.10.2 \\
        flax==0.12.8 optax==0.2.8 numpy==2.4.6

Command (from the repository root; the run reported in the results)::

    .venv/bin/python experiments/bench_deepxde.py --problems poisson helmholtz \\
        --steps 5000 --width 50 --depth 3 --num-domain 1000 --num-boundary 200 \\
        --lr 1e-3 --seeds 0 1 2 --repeats 1 --out runs/bench_deepxde.jsonl

Smoke test::

    .venv/bin/python experiments/bench_deepxde.py --steps 200 --seeds 0 \\
        --out /tmp/bench_deepxde_smoke.jsonl
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(HERE, "_deepxde_peer.py")
DEEPXDE_PYTHON = os.path.join(ROOT, ".venv-deepxde", "bin", "python")
KINDS = ("sciml_fused", "sciml_loop", "deepxde")
LABELS = {
    "sciml_fused": "sciml fused loop",
    "sciml_loop": "sciml python loop",
    "deepxde": "DeepXDE",
}
SETUP_HINT = (
    "python3 -m venv .venv-deepxde && .venv-deepxde/bin/pip install deepxde==1.15.0 "
    "jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 numpy==2.4.6"
)
HELMHOLTZ_A1, HELMHOLTZ_A2 = 1.0, 4.0


def exact_solution(problem: str, x: np.ndarray) -> np.ndarray:
    if problem == "poisson":
        return np.sin(np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])
    if problem == "helmholtz":
        return np.sin(HELMHOLTZ_A1 * np.pi * x[:, 0]) * np.sin(HELMHOLTZ_A2 * np.pi * x[:, 1])
    raise ValueError(problem)


def make_points(seed: int, num_domain: int, num_boundary: int, num_test: int = 100):
    """`(interior, boundary, test)` in float32: uniform in [-1, 1]^2, uniform by arc length on
    its boundary, and the `num_test` x `num_test` grid."""
    rng = np.random.default_rng(seed)
    interior = rng.uniform(-1.0, 1.0, (num_domain, 2))
    # Perimeter 8: four edges of length 2, walked counter-clockwise from (-1, -1).
    s = rng.uniform(0.0, 8.0, num_boundary)
    edge = np.minimum((s // 2).astype(int), 3)
    t = s - 2.0 * edge - 1.0  # position along the edge, in [-1, 1]
    one = np.ones_like(t)
    xs = np.select([edge == 0, edge == 1, edge == 2], [t, one, -t], -one)
    ys = np.select([edge == 0, edge == 1, edge == 2], [-one, t, one], -t)
    boundary = np.stack([xs, ys], axis=1)
    line = np.linspace(-1.0, 1.0, num_test)
    test = np.stack([g.reshape(-1) for g in np.meshgrid(line, line, indexing="ij")], axis=1)
    return interior.astype(np.float32), boundary.astype(np.float32), test.astype(np.float32)


def write_points(path: str, problem: str, interior, boundary, test) -> str:
    """Writes the `.npz` both libraries read; returns its SHA-256."""
    test_u = exact_solution(problem, test.astype(np.float64))
    np.savez(path, interior=interior, boundary=boundary, test=test, test_u=test_u)
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# ----------------------------------------------------------------------------- sciml worker


def run_sciml(args) -> dict:
    """One sciml run (in the worker subprocess): warm-up compile, then `--steps` timed steps
    from the initial state on the file's points."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    import sciml
    from sciml.fields import MLP
    from sciml.pinn import benchmarks
    from sciml.pinn._solve import _adam_block  # private: the fused loop of `solve`
    from sciml.train import init_optimizer, train_step, trainable_filter

    compiles = [0]

    def on_event(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)

    problem = benchmarks.poisson_2d() if args.problem == "poisson" else benchmarks.helmholtz_2d()
    pts = np.load(args.points_file)
    interior = np.asarray(pts["interior"], np.float32)
    boundary = np.asarray(pts["boundary"], np.float32)
    test_x = np.asarray(pts["test"], np.float32)
    test_u = np.asarray(pts["test_u"], np.float64).reshape(-1)
    points = {"residual": jnp.asarray(interior), "boundary": jnp.asarray(boundary)}
    assert tuple(points) == problem.terms, (tuple(points), problem.terms)
    weights = {name: jnp.asarray(1.0, jnp.float32) for name in problem.terms}

    model0 = MLP(2, "scalar", width=args.width, depth=args.depth, key=jax.random.key(args.seed))
    assert all(w.dtype == jnp.float32 for w in model0.weights)
    optimizer = optax.adam(args.lr)
    spec = trainable_filter(model0)
    opt0 = init_optimizer(optimizer, model0, spec)

    if args.mode == "fused":

        def train(model, opt_state, n):
            return _adam_block(
                model, opt_state, points, weights, problem, optimizer, spec, jnp.asarray(n)
            )

    else:

        def loss_fn(model, pts_by_term, weights_by_term):
            return problem.loss(model, pts_by_term, weights_by_term)

        def train(model, opt_state, n):
            loss = None
            for _ in range(n):
                model, opt_state, loss = train_step(
                    model,
                    opt_state,
                    (points, weights),
                    loss_fn=loss_fn,
                    optimizer=optimizer,
                    filter_spec=spec,
                )
            return model, opt_state, loss

    t0 = time.perf_counter()
    jax.block_until_ready(train(model0, opt0, 1))
    warmup = time.perf_counter() - t0
    before = compiles[0]
    t0 = time.perf_counter()
    model, _, _ = jax.block_until_ready(train(model0, opt0, args.steps))
    train_time = time.perf_counter() - t0
    compiles_in_timing = compiles[0] - before

    terms = eqx.filter_jit(problem.losses)(model, points)
    loss_terms = [float(terms[name]) for name in problem.terms]
    pred = np.asarray(eqx.filter_jit(jax.vmap(model))(jnp.asarray(test_x)), np.float64)
    rel_l2 = float(np.linalg.norm(pred.reshape(-1) - test_u) / np.linalg.norm(test_u))

    import equinox
    import jaxlib

    return {
        "library": "sciml",
        "mode": args.mode,
        "versions": {
            "sciml_commit": _git_commit(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "equinox": equinox.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "jax_device": str(jax.devices()[0]),
            "sciml_path": os.path.dirname(sciml.__file__),
        },
        "problem": args.problem,
        "steps": args.steps,
        "width": args.width,
        "depth": args.depth,
        "n_interior": int(interior.shape[0]),
        "n_boundary": int(boundary.shape[0]),
        "n_test": int(test_x.shape[0]),
        "lr": args.lr,
        "seed": args.seed,
        "train_time_s": train_time,
        "warmup_time_s": warmup,
        "steps_per_s": args.steps / train_time if train_time > 0 else float("nan"),
        "compiles_in_timing": compiles_in_timing,
        "rel_l2": rel_l2,
        "final_loss": float(sum(loss_terms)),
        "final_loss_terms": loss_terms,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ----------------------------------------------------------------------------- driver


def _run_child(cmd: list[str], out_path: str, timeout: float) -> dict:
    env = dict(os.environ, DDE_BACKEND="jax")
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    with open(out_path) as fh:
        return json.load(fh)


def run_one(kind: str, problem: str, seed: int, points_file: str, args, scratch: str) -> dict:
    out_path = os.path.join(scratch, f"{kind}_{problem}_{seed}.json")
    common = [
        "--problem",
        problem,
        "--steps",
        str(args.steps),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
        "--lr",
        repr(args.lr),
        "--seed",
        str(seed),
        "--points-file",
        points_file,
        "--out",
        out_path,
    ]
    if kind == "deepxde":
        sizes = ["--num-domain", str(args.num_domain), "--num-boundary", str(args.num_boundary)]
        cmd = [DEEPXDE_PYTHON, PEER, *common, *sizes]
    else:
        mode = "fused" if kind == "sciml_fused" else "loop"
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode, *common]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = _run_child(cmd, out_path, args.child_timeout)
    wall = time.perf_counter() - t0
    result.update(
        kind=kind,
        wall_s=wall,
        loadavg_before=list(load_before),
        loadavg_after=list(os.getloadavg()),
    )
    return result


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if x == x else "n/a"


def summary_table(records: list[dict], problems: list[str]) -> str:
    lines = [
        "| problem | run | train time [s], median (min-max) | steps/s, median "
        "| DeepXDE time / this | rel L2, mean (min-max) | final loss, mean | n |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for problem in problems:
        by_kind = {
            k: [r for r in records if r["problem"] == problem and r["kind"] == k] for k in KINDS
        }
        dde = by_kind["deepxde"]
        dde_time = statistics.median(r["train_time_s"] for r in dde) if dde else float("nan")
        for kind in KINDS:
            rs = by_kind[kind]
            if not rs:
                continue
            times = [r["train_time_s"] for r in rs]
            errs = [r["rel_l2"] for r in rs]
            med = statistics.median(times)
            lines.append(
                f"| {problem} | {LABELS[kind]} "
                f"| {med:.2f} ({min(times):.2f}-{max(times):.2f}) "
                f"| {statistics.median(r['steps_per_s'] for r in rs):.0f} "
                f"| {_fmt(dde_time / med, '.2f')} "
                f"| {statistics.mean(errs):.2e} ({min(errs):.2e}-{max(errs):.2e}) "
                f"| {statistics.mean(r['final_loss'] for r in rs):.2e} "
                f"| {len(rs)} |"
            )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", choices=["poisson", "helmholtz"], default=None)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--width", type=int, default=50)
    p.add_argument("--depth", type=int, default=3, help="number of hidden layers")
    p.add_argument("--num-domain", type=int, default=1000)
    p.add_argument("--num-boundary", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=1, help="runs of each (problem, seed)")
    p.add_argument("--out", default="runs/bench_deepxde.jsonl")
    p.add_argument("--child-timeout", type=float, default=3600.0, help="seconds per run")
    # Worker mode (internal): one sciml run, result JSON to --out.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["fused", "loop"], default="fused", help=argparse.SUPPRESS)
    p.add_argument("--problem", choices=["poisson", "helmholtz"], help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--points-file", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        result = run_sciml(args)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
        return
    if not os.path.exists(DEEPXDE_PYTHON):
        sys.exit(f"error: {DEEPXDE_PYTHON} is missing; create it from the repo root: {SETUP_HINT}")
    problems = args.problems or ["poisson", "helmholtz"]
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    argv_line = " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv])
    start_load = os.getloadavg()
    print(f"command: {argv_line}")
    print(f"load average at start (1/5/15 min): {start_load}  cpus: {os.cpu_count()}")
    records: list[dict] = []
    cell = 0
    with (
        tempfile.TemporaryDirectory(prefix="bench_deepxde_", dir="/tmp") as scratch,
        open(out, "w") as fh,
    ):
        for seed in args.seeds:
            interior, boundary, test = make_points(seed, args.num_domain, args.num_boundary)
            for problem in problems:
                points_file = os.path.join(scratch, f"points_{problem}_{seed}.npz")
                sha = write_points(points_file, problem, interior, boundary, test)
                for repeat in range(args.repeats):
                    order = KINDS[cell % 3 :] + KINDS[: cell % 3]
                    cell += 1
                    for kind in order:
                        r = run_one(kind, problem, seed, points_file, args, scratch)
                        r.update(repeat=repeat, points_sha256=sha, order=list(order))
                        r["command"] = argv_line
                        records.append(r)
                        fh.write(json.dumps(r) + "\n")
                        fh.flush()
                        print(
                            f"{problem:9s} seed {seed} rep {repeat} {LABELS[kind]:18s} "
                            f"train {r['train_time_s']:7.2f} s ({r['steps_per_s']:7.1f} steps/s)"
                            f"  warm-up {r['warmup_time_s']:5.2f} s  rel L2 {r['rel_l2']:.3e}"
                            f"  loss {r['final_loss']:.3e}  load {r['loadavg_before'][0]:.2f}",
                            flush=True,
                        )
    end_load = os.getloadavg()
    table = summary_table(records, problems)
    print()
    print(
        f"{args.steps} Adam steps, lr {args.lr}, FNN [2]+[{args.width}]*{args.depth}+[1] tanh, "
        f"{args.num_domain} interior + {args.num_boundary} boundary points, float32, "
        f"seeds {args.seeds}, repeats {args.repeats}"
    )
    print(table)
    print()
    print(f"load average at start (1/5/15 min): {start_load}")
    print(f"load average at end   (1/5/15 min): {end_load}")
    print(f"records: {out}")
    with open(os.path.splitext(out)[0] + ".md", "w") as md:
        md.write(f"`{argv_line}`\n\n{table}\n\n")
        md.write(f"load average start {start_load}, end {end_load}\n")


if __name__ == "__main__":
    main()
