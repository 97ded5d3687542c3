"""Darcy permeability from pressure measurements: the PINN route beside the solver route.

The problem and the data are those of `experiments/darcy_inverse.py` (same defaults and seed, or
its `--out` file via `--data`): -div(a grad u) = 1 on (0, 1)^2, u = 0 on the boundary, the
true log a a smooth Gaussian random field of standard deviation 0.5, the pressure measured at
150 random points (from a 65 x 65 solve), noise-free and with 1% noise.

**PINN.** One `eqx.Module` of two networks, u = `pinn.HardConstraint(MLP, Box)` (u = 0 on the
boundary exactly) and m = log a = `MLP`, both `sciml.fields.MLP(2, "scalar", ...)` in float64;
its call returns (u, m). The residual, written with `sciml.derivatives`, is the vector

    (-divergence(exp(m) gradient(u)) - 1,  sqrt(beta) gradient(m)),

so its mean square is the PDE residual plus beta times a Monte-Carlo |m|_H1^2 (the solver
route's `h1_penalty`, with the same beta). The measurements are `pinn.Observations` on the u
component with weight 1 / mean(values^2), so that data term + smoothing term are exactly the
solver route's loss; the PDE residual is the one term the PINN adds. Trained by
`sciml.pinn.solve`: Adam (exponentially decaying learning rate), then L-BFGS, on fixed
residual points (Sobol).

**Solver route** (same process, same data): `darcy_inverse.darcy_fit`, L-BFGS through
`darcy_solve` on the 33 x 33 grid. Errors of both routes are relative L2 on the same nodes:
log a and a on the interior nodes of the 33 x 33 grid, u on all its nodes, against the truth
sampled from the 65 x 65 data grid. Times are wall clock of one run, compilation included
(the solver route's time without compilation is printed as `warm`).

    .venv/bin/python experiments/darcy_inverse_pinn.py

(`--data FILE` reads the .npz written by `darcy_inverse.py --out FILE`, or writes it when
absent; `--verbose` prints the PINN's loss terms every `--eval-every` steps.)

**Measured** with the defaults (the command above; CPU, 2 slow cores shared with other jobs,
so times are noisy; one run each, compilation included; the solver route reproduces the
numbers of darcy_inverse.py):

    route   data        beta   log a   a      u        misfit   steps                     time
    solver  noise-free  1e-6   0.161   0.077  4.57e-3  9.0e-4   L-BFGS 364                  4.6 s
    PINN    noise-free  1e-6   0.227   0.107  9.88e-3  7.0e-3   Adam 3000 + L-BFGS 12000  329 s
    solver  1% noise    1e-5   0.219   0.117  9.20e-3  8.2e-3   L-BFGS 149                  3.7 s
    PINN    1% noise    1e-5   0.246   0.122  1.15e-2  1.2e-2   Adam 3000 + L-BFGS 12000  250 s

(PINN mean squared PDE residual at the end 2.9e-4 and 3.0e-4.) The solver route is both more
accurate and about 70x faster (329 s / 4.6 s, 250 s / 3.7 s): the PINN after 4-5 minutes has
not reached the solver route's error of 4 seconds; noise-free it does not even reach the
solver route's error on the *noisy* data.

**PINN settings and tuning** (noise-free case, log a error; these runs went two at a time on
the two cores, so their times were about twice a lone run's): two networks 32 x 3 (tanh),
1,024 Sobol residual points fixed for the run, Adam 3,000 steps at 3e-3 decaying
exponentially to 3e-4, then L-BFGS (memory 50). Residual weight (relative to the data term)
1: 0.338, 0.1: 0.242, 0.01: 0.242 (each with 6,000 L-BFGS iterations); with weight 0.1,
6,000 L-BFGS iterations: 0.242 (about 150 s alone), 12,000: 0.227 (the default, 250-330 s);
Adam at 1e-2: 0.295; networks 48 x 4: 0.262 (2.5x slower per step). The loss was still
falling slowly at the end of every run: more iterations buy a little more accuracy at
roughly linear cost.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import sciml.pinn as pinn  # noqa: E402
from sciml.data import darcy_solve, observe  # noqa: E402
from sciml.derivatives import divergence, gradient  # noqa: E402
from sciml.fields import MLP  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from darcy_inverse import darcy_fit, darcy_problem, relative_l2  # noqa: E402


class DarcyFields(eqx.Module):
    """The pressure u (zero on the boundary by construction) and m = log a, one point each."""

    u: pinn.HardConstraint
    log_a: MLP

    def __call__(self, x):
        return jnp.stack([self.u(x), self.log_a(x)])


class PressureObservations(pinn.Observations):
    """`Observations` of the first output (the pressure) of a two-output model."""

    def residuals(self, u, x, domain):
        return super().residuals(lambda p: u(p)[0], x, domain)


def make_residual(beta):
    root = float(np.sqrt(beta))

    def residual(model, x):
        flux = lambda p: jnp.exp(model.log_a(p)) * gradient(model.u, p)
        pde = -divergence(flux, x) - 1.0
        return jnp.concatenate([pde[None], root * gradient(model.log_a, x)])

    return residual


def make_model(key, width, depth):
    k_u, k_m = jax.random.split(key)
    box = pinn.Box((0.0, 0.0), (1.0, 1.0))
    kw = dict(width=width, depth=depth, input_lower=0.0, input_upper=1.0, dtype=jnp.float64)
    return DarcyFields(
        pinn.HardConstraint(MLP(2, "scalar", key=k_u, **kw), box), MLP(2, "scalar", key=k_m, **kw)
    )


def load_data(args):
    if args.data and os.path.exists(args.data):
        d = np.load(args.data)
        return (
            jnp.asarray(d["darcy_log_a"]),
            jnp.asarray(d["darcy_u"]),
            jnp.asarray(d["darcy_points"]),
            jnp.asarray(d["darcy_values"]),
            jnp.asarray(d["darcy_values_noisy"]),
        )
    # As darcy_inverse.py: its Darcy key is the first half of the split seed key.
    k_darcy, _ = jax.random.split(jax.random.key(args.seed))
    data = darcy_problem(k_darcy, args.size, args.points, args.log_std, args.noise)
    if args.data:
        names = ("darcy_log_a", "darcy_u", "darcy_points", "darcy_values", "darcy_values_noisy")
        np.savez(args.data, **{n: np.asarray(a) for n, a in zip(names, data, strict=True)})
    return data


def errors(m, u, m_true, u_true):
    interior = (slice(1, -1), slice(1, -1))
    return dict(
        log_a=relative_l2(m[interior], m_true[interior]),
        a=relative_l2(jnp.exp(m)[interior], jnp.exp(m_true)[interior]),
        u=relative_l2(u, u_true),
    )


def misfit(pred, values):
    return float(jnp.sqrt(jnp.mean((pred - values) ** 2) / jnp.mean(values**2)))


def run_solver(points, values, m_true, u_true, beta, args):
    size = m_true.shape[0]
    start = time.perf_counter()
    m, info = darcy_fit(points, values, size, beta, args.solver_max_steps)
    m.block_until_ready()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    m, info = darcy_fit(points, values, size, beta, args.solver_max_steps)
    m.block_until_ready()
    warm = time.perf_counter() - start
    u = darcy_solve(jnp.exp(m))
    return dict(
        errors(m, u, m_true, u_true),
        misfit=misfit(observe(u, points), values),
        steps=f"L-BFGS {int(info.num_steps)}",
        seconds=seconds,
        warm=warm,
    )


def run_pinn(points, values, m_true, u_true, beta, args):
    size = m_true.shape[0]
    problem = pinn.Problem(
        make_residual(beta),
        pinn.Box((0.0, 0.0), (1.0, 1.0)),
        {"data": PressureObservations(points, values, weight=1.0 / float(jnp.mean(values**2)))},
    )
    model = make_model(jax.random.key(args.seed), args.width, args.depth)
    schedule = optax.exponential_decay(args.lr, args.steps, args.lr_decay)
    start = time.perf_counter()
    fitted, history = pinn.solve(
        problem,
        model,
        key=jax.random.key(args.seed + 1),
        steps=args.steps,
        lbfgs_steps=args.lbfgs_steps,
        learning_rate=schedule,
        num_points={"residual": args.num_residual},
        method="sobol",
        weights={"residual": args.residual_weight},
        eval_every=args.eval_every,
        dtype=jnp.float64,
        progress=False,
    )
    jax.block_until_ready(fitted)
    seconds = time.perf_counter() - start
    grid = jnp.linspace(0.0, 1.0, size)
    nodes = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    out = jax.vmap(fitted)(nodes).reshape(size, size, 2)
    u, m = out[..., 0], out[..., 1]
    last = history[-1]
    if args.verbose:
        for r in history:
            print(
                "   ",
                r["step"],
                r["phase"],
                f"loss {r['train_loss']:.3e} res {r['loss_residual']:.2e} "
                f"data {r['loss_data']:.2e} t {r['time_s']:.0f}",
                flush=True,
            )
    return dict(
        errors(m, u, m_true, u_true),
        misfit=misfit(jax.vmap(fitted)(points)[:, 0], values),
        residual=float(last["loss_residual"]),
        steps=f"Adam {args.steps} + L-BFGS {last['step'] - args.steps}",
        seconds=seconds,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help=".npz of darcy_inverse.py --out (made if absent)")
    p.add_argument("--size", type=int, default=33, help="inversion grid (when no --data)")
    p.add_argument("--points", type=int, default=150, help="measurements (when no --data)")
    p.add_argument("--log-std", type=float, default=0.5)
    p.add_argument("--noise", type=float, default=0.01, help="noise of the data (when no --data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta-clean", type=float, default=1e-6, help="H1 weight, noise-free data")
    p.add_argument("--beta-noisy", type=float, default=1e-5, help="H1 weight, noisy data")
    p.add_argument("--solver-max-steps", type=int, default=500)
    p.add_argument("--skip-solver", action="store_true")
    p.add_argument("--skip-pinn", action="store_true")
    p.add_argument("--cases", nargs="+", default=["clean", "noisy"], choices=["clean", "noisy"])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--num-residual", type=int, default=1024)
    p.add_argument("--residual-weight", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=3000, help="Adam steps")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-decay", type=float, default=0.1, help="lr factor over the Adam steps")
    p.add_argument("--lbfgs-steps", type=int, default=12000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    m_true, u_true, points, clean, noisy = load_data(args)
    cases = {
        "clean": ("noise-free", clean, args.beta_clean),
        "noisy": (f"{args.noise:.0%} noise", noisy, args.beta_noisy),
    }
    fmt = (
        "{route:>6}  {data:>10}  beta={beta:.0e}  rel L2 log a {log_a:.3f}  a {a:.3f}  "
        "u {u:.2e}  data misfit {misfit:.1e}  {steps}  time {seconds:.1f} s"
    )
    for case in args.cases:
        label, values, beta = cases[case]
        if not args.skip_solver:
            row = run_solver(points, values, m_true, u_true, beta, args)
            print(
                fmt.format(route="solver", data=label, beta=beta, **row)
                + f" (warm {row['warm']:.1f} s)",
                flush=True,
            )
        if not args.skip_pinn:
            row = run_pinn(points, values, m_true, u_true, beta, args)
            print(
                fmt.format(route="PINN", data=label, beta=beta, **row)
                + f"  PDE residual {row['residual']:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
