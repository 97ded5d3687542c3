"""Burgers inverse problem with a PINN: identify the viscosity from observations of u.

    u_t + u u_x = nu u_xx on [-1, 1] x [0, 1],  u(x, 0) = -sin(pi x),  u(+-1, t) = 0,
    nu = 0.01 / pi (the unknown).

**Data.** `sciml.data.burgers_solve` solves Burgers periodic on [0, 1). Odd initial data on the
periodic interval [-1, 1) stays odd, so u(+-1, t) = 0 and the periodic solution is the
Dirichlet one. With y = (x + 1) / 2 and s = t / 2, v(y, s) = u(x, t) solves
v_s + v v_y = (nu / 2) v_yy with v(y, 0) = -sin(pi (2 y - 1)) = sin(2 pi y): one solve with
viscosity nu / 2 to s = 1 / 2 gives u on a grid. `--num-obs` of its (x, t) grid nodes are drawn
at random (noise: Gaussian, `--noise` times the standard deviation of the observed values).

**PINN.** `pinn.Parameterized(MLP, {"nu": nu0}, positive=("nu",))` (nu stored as log nu),
residual `u_t + u u_x - nu u_xx` written with `sciml.derivatives.partial`, terms: residual,
`Observations`, the initial condition and the boundary values; Adam then L-BFGS, float64.

    .venv/bin/python experiments/burgers_inverse.py  # see --help

Measured with the defaults (MLP 32 x 4, 2,000 residual points, 4,000 Adam steps at 5e-3 then
8,000 L-BFGS iterations, nu started at 0.05; 2-core CPU, about 1.5-2.5 minutes per case):
2,000 noise-free observations: nu = 3.1944e-3, relative error 0.36%; at 1% noise:
nu = 3.1698e-3, relative error 0.42%; u's relative L2 error 1.6e-3 and 1.5e-3.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from burgers_pde import NU, burgers_residual, reference  # noqa: E402

import sciml.pinn as pinn  # noqa: E402
from sciml.fields import MLP  # noqa: E402


def residual(u, x):
    return burgers_residual(u, x, u.parameters["nu"])


def run(args, noise: float):
    x, t, u = reference()
    rng = np.random.default_rng(args.seed)
    i = rng.integers(0, len(t), args.num_obs)
    j = rng.integers(0, len(x), args.num_obs)
    pts = np.stack([x[j], t[i]], axis=1)
    vals = u[i, j]
    vals = vals + noise * np.std(vals) * rng.standard_normal(vals.shape)
    domain = pinn.SpaceTime(pinn.Box((-1.0,), (1.0,)), 0.0, 1.0)
    xx, tt = np.meshgrid(x, t)
    problem = pinn.Problem(
        residual,
        domain,
        {
            "data": pinn.Observations(pts, vals),
            "initial": pinn.Initial(lambda p: -jnp.sin(jnp.pi * p[0])),
            "boundary": pinn.Dirichlet(0.0),
        },
        reference=(np.stack([xx.ravel(), tt.ravel()], 1)[::7], u.ravel()[::7]),
    )
    net = MLP(
        2, "scalar", width=args.width, depth=args.depth, key=jax.random.key(0), dtype=jnp.float64
    )
    model = pinn.Parameterized(net, {"nu": args.nu0}, positive=("nu",))
    start = time.perf_counter()
    fitted, history = pinn.solve(
        problem,
        model,
        key=jax.random.key(args.seed),
        steps=args.steps,
        lbfgs_steps=args.lbfgs_steps,
        learning_rate=args.lr,
        num_points={"residual": args.num_residual, "initial": 200, "boundary": 200},
        resample_every=args.resample_every,
        eval_every=args.eval_every,
        progress=False,
    )
    seconds = time.perf_counter() - start
    nu = float(fitted.parameters["nu"])
    return {
        "noise": noise,
        "num_obs": args.num_obs,
        "nu": nu,
        "nu_relative_error": abs(nu - NU) / NU,
        "u_relative_l2": history[-1].get("eval_relative_l2"),
        "seconds": round(seconds, 1),
        "nu_trajectory": [round(r["param_nu"], 6) for r in history],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-obs", type=int, default=2000)
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lbfgs-steps", type=int, default=8000)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--num-residual", type=int, default=2000)
    p.add_argument("--resample-every", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--nu0", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for noise in args.noise:
        print(json.dumps(run(args, noise)), flush=True)


if __name__ == "__main__":
    main()
