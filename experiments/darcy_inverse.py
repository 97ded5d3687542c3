"""Inverse problems through sciml's solvers: Darcy permeability and Burgers viscosity.

**Darcy.** The unknown is m = log a on an s x s node grid of (0, 1)^2 (a = exp(m) > 0), with
-div(a grad u) = 1, u = 0 on the boundary. The true m is a smooth Gaussian random field
(`grf`, Neumann, alpha = 2, tau = 3, scaled to standard deviation `--log-std`); the data are the
pressure at `--points` uniform random points, interpolated bilinearly from a solve on the finer
2 s - 1 grid (so the inversion grid is not the data grid), noise-free and with Gaussian noise of
1% of the data's RMS. The loss is

    mean((observe(darcy_solve(exp(m)), points) - values)^2) / mean(values^2) + beta * |m|_H1^2,

minimised with `sciml.data.minimize_lbfgs` (Optax L-BFGS, zoom line search), gradients by
implicit differentiation of the CG solve. Reported: relative L2 errors of log a, a (both on the
interior nodes: the four corner nodes do not enter the stencil and are not identifiable) and of
the pressure on the grid, iterations, wall time (median of `--repeats` after a compiling run;
with `--repeats 1` the one run, compilation included).

**Burgers.** The unknown is the viscosity nu of u_t + (u^2 / 2)_x = nu u_xx, periodic on
[0, 1), u0 = sin(2 pi x), observed on the full grid at a few times. `burgers_solve` takes nu as
a concrete number (its ETDRK4 coefficients are computed on the host), so it is not
differentiable in nu: the one-dimensional misfit in log nu is minimised with a bounded Brent
search (`scipy.optimize.minimize_scalar`). Each evaluation is one solve.

The measurements are written to `--out` (.npz: points, values, noisy values, the true fields) so
that another method (e.g. a PINN) can be run on exactly the same data.

    .venv/bin/python experiments/darcy_inverse.py --size 33 --points 150 --repeats 3

Set JAX_PLATFORMS=cpu to time the CPU (the default here). Timings include whatever else runs on
the machine.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402

from sciml.data import (  # noqa: E402
    burgers_solve,
    darcy_solve,
    grf,
    h1_penalty,
    minimize_lbfgs,
    observe,
)


def relative_l2(x, y):
    return float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y))


def darcy_problem(key, size, num_points, log_std, noise):
    """The true log-coefficient on the inversion grid and the measurements from a finer solve."""
    fine = 2 * size - 1
    k_field, k_points, k_noise = jax.random.split(key, 3)
    m_fine = grf(k_field, (fine, fine), alpha=2.0, tau=3.0, boundary="neumann")
    m_fine = log_std * (m_fine - m_fine.mean()) / m_fine.std()
    u_fine = darcy_solve(jnp.exp(m_fine))
    points = jax.random.uniform(k_points, (num_points, 2), jnp.float64)
    values = observe(u_fine, points)
    noisy = values + noise * jnp.sqrt(jnp.mean(values**2)) * jax.random.normal(
        k_noise, values.shape
    )
    # The inversion grid's nodes are every other node of the fine grid.
    return m_fine[::2, ::2], u_fine[::2, ::2], points, values, noisy


def darcy_fit(points, values, size, beta, max_steps):
    scale = jnp.mean(values**2)

    def loss(m):
        u = darcy_solve(jnp.exp(m))
        return jnp.mean((observe(u, points) - values) ** 2) / scale + beta * h1_penalty(m)

    m, info = minimize_lbfgs(loss, jnp.zeros((size, size)), max_steps=max_steps, tol=1e-10)
    return m, info


def run_darcy(args, key):
    m_true, u_true, points, clean, noisy = darcy_problem(
        key, args.size, args.points, args.log_std, args.noise
    )
    interior = (slice(1, -1), slice(1, -1))
    rows = []
    for label, values in (("noise-free", clean), (f"{args.noise:.0%} noise", noisy)):
        for beta in args.betas:
            # With --repeats > 1 the first run (which compiles) is left out of the median.
            times = []
            for _ in range(args.repeats + (args.repeats > 1)):
                start = time.perf_counter()
                m, info = darcy_fit(points, values, args.size, beta, args.max_steps)
                m.block_until_ready()
                times.append(time.perf_counter() - start)
            u = darcy_solve(jnp.exp(m))
            rows.append(
                dict(
                    data=label,
                    beta=beta,
                    log_a=relative_l2(m[interior], m_true[interior]),
                    a=relative_l2(jnp.exp(m)[interior], jnp.exp(m_true)[interior]),
                    u=relative_l2(u, u_true),
                    misfit=float(
                        jnp.sqrt(jnp.mean((observe(u, points) - values) ** 2) / jnp.mean(values**2))
                    ),
                    steps=int(info.num_steps),
                    seconds=float(np.median(times[1:] if args.repeats > 1 else times)),
                )
            )
            print(
                "darcy  {data:>10}  beta={beta:.0e}  rel L2 log a {log_a:.3f}  a {a:.3f}  "
                "u {u:.2e}  data misfit {misfit:.1e}  L-BFGS steps {steps}  "
                "time {seconds:.2f} s".format(**rows[-1]),
                flush=True,
            )
    return dict(
        darcy_points=np.asarray(points),
        darcy_values=np.asarray(clean),
        darcy_values_noisy=np.asarray(noisy),
        darcy_log_a=np.asarray(m_true),
        darcy_u=np.asarray(u_true),
    )


def run_burgers(args, key):
    s, t_final, nu_true = 128, 0.5, args.nu
    x = np.arange(s) / s
    u0 = jnp.asarray(np.sin(2 * np.pi * x))
    ts = np.linspace(0.1, t_final, 5)
    kwargs = dict(t_final=t_final, num_steps=500, ts=ts)
    clean = burgers_solve(u0, nu=nu_true, **kwargs)
    noisy = clean + args.noise * jnp.sqrt(jnp.mean(clean**2)) * jax.random.normal(key, clean.shape)
    for label, values in (("noise-free", clean), (f"{args.noise:.0%} noise", noisy)):
        scale = float(jnp.mean(values**2))

        def misfit(log_nu, values=values, scale=scale):
            u = burgers_solve(u0, nu=float(np.exp(log_nu)), **kwargs)
            return float(jnp.mean((u - values) ** 2)) / scale

        misfit(np.log(nu_true))  # compile
        start = time.perf_counter()
        result = scipy.optimize.minimize_scalar(
            misfit, bounds=(np.log(1e-3), np.log(1.0)), method="bounded", options={"xatol": 1e-6}
        )
        seconds = time.perf_counter() - start
        nu = float(np.exp(result.x))
        print(
            f"burgers {label:>10}  nu {nu:.6f} (true {nu_true})  rel error "
            f"{abs(nu - nu_true) / nu_true:.2e}  solves {result.nfev}  time {seconds:.2f} s",
            flush=True,
        )
    return dict(
        burgers_x=x, burgers_t=ts, burgers_u=np.asarray(clean), burgers_u_noisy=np.asarray(noisy)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=33, help="inversion grid (nodes per axis)")
    parser.add_argument("--points", type=int, default=150, help="pressure measurements")
    parser.add_argument("--log-std", type=float, default=0.5, help="standard deviation of log a")
    parser.add_argument("--noise", type=float, default=0.01, help="noise, relative to data RMS")
    parser.add_argument("--betas", type=float, nargs="+", default=[1e-6, 1e-5, 1e-4])
    parser.add_argument("--max-steps", type=int, default=500, help="L-BFGS iterations at most")
    parser.add_argument("--nu", type=float, default=0.02, help="true Burgers viscosity")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="darcy_inverse_measurements.npz")
    parser.add_argument("--skip-burgers", action="store_true")
    args = parser.parse_args()
    k_darcy, k_burgers = jax.random.split(jax.random.key(args.seed))
    data = run_darcy(args, k_darcy)
    if not args.skip_burgers:
        data |= run_burgers(args, k_burgers)
    np.savez(args.out, **data)
    print(f"measurements written to {args.out}")


if __name__ == "__main__":
    main()
