"""Recycling across a Darcy data set (SKR, Wang et al., ICLR 2024) against our independent
preconditioned CG, side by side on the same sorted systems.

    .venv/bin/python experiments/darcy_recycling.py --samples 1000 --resolution 421

Each sample is the FNO recipe's system (`sciml.data.darcy_recipe_sample`'s coefficient,
`-div(a grad u) = 1`, 5-point stencil, float64). The samples are sorted greedily by nearest
neighbour (on the coefficient subsampled to 22 x 22), as SKR sorts its systems; then every
system is solved

- `independent`: `sciml.data.darcy_solve`'s CG, preconditioned by the fast-sine inverse of
  `min(a) (-Lap_h)`, from zero;
- `recycled`: the same CG from the Galerkin projection of the solution onto the last `k`
  solutions, `x0 = W (W^T A W)^-1 W^T b` (k operator applications and a k x k solve): the
  subspace that recycling carries from neighbour to neighbour;
- `unpreconditioned` (a few samples only): plain CG from zero, the kind of baseline SKR's
  2-14x were measured against.

Printed: CG iterations (median, mean), wall time per solve (median over samples, compiled),
and the largest difference between the `independent` and `recycled` solutions relative to
the solution's size. Tolerances are the library's float64 defaults for all three.
"""

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

jax.config.update("jax_enable_x64", True)

from sciml.data import grf  # noqa: E402
from sciml.data._recipes.darcy import (  # noqa: E402
    DARCY_ALPHA,
    DARCY_HIGH,
    DARCY_LOW,
    DARCY_TAU,
)
from sciml.data._solvers.darcy import (  # noqa: E402
    _apply_operator,
    _face_coefficients,
    _make_preconditioner,
    default_rtol,
)


def coefficient(key, s):
    g = grf(key, (s, s), alpha=DARCY_ALPHA, tau=DARCY_TAU, boundary="neumann", dtype=jnp.float64)
    return jnp.where(g >= 0, DARCY_HIGH, DARCY_LOW).astype(jnp.float64)


def _operator(a):
    s = a.shape[0]
    n, h = s - 2, 1.0 / (s - 1)
    ax, ay = _face_coefficients(a)
    structure = jax.ShapeDtypeStruct((n, n), a.dtype)
    tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
    operator = lx.FunctionLinearOperator(lambda u: _apply_operator(ax, ay, h, u), structure, tags)
    # the library's preconditioner scale (min(a) / c, c = 1 in float64 at these sizes)
    precond = lx.FunctionLinearOperator(
        _make_preconditioner(n, h, jnp.min(a), a.dtype), structure, tags
    )
    return operator, precond


@functools.partial(jax.jit, static_argnames=("preconditioned",))
def solve(a, y0, preconditioned=True):
    operator, precond = _operator(a)
    b = jnp.ones(operator.out_structure().shape, a.dtype)
    rtol = default_rtol(a.dtype)
    solver = lx.CG(rtol=rtol, atol=rtol, max_steps=100_000, stabilise_every=None)
    options = {"y0": y0}
    if preconditioned:
        options["preconditioner"] = precond
    sol = lx.linear_solve(operator, b, solver, options=options)
    return sol.value, sol.stats["num_steps"]


@jax.jit
def projected_guess(a, basis):
    """`W (W^T A W)^-1 W^T b` for the columns of `basis` (k, n, n)."""
    operator, _ = _operator(a)
    applied = jax.vmap(operator.mv)(basis)
    k = basis.shape[0]
    flat, flat_applied = basis.reshape(k, -1), applied.reshape(k, -1)
    gram = flat @ flat_applied.T
    rhs = flat.sum(axis=1)  # W^T b with b = 1
    coeffs = jnp.linalg.solve(gram + 1e-14 * jnp.trace(gram) * jnp.eye(k), rhs)
    return jnp.tensordot(coeffs, basis, axes=1)


def greedy_order(features: np.ndarray) -> list[int]:
    order, left = [0], set(range(1, len(features)))
    while left:
        last = features[order[-1]]
        rest = np.fromiter(left, int)
        nearest = rest[np.argmin(np.abs(features[rest] - last).sum(axis=1))]
        order.append(int(nearest))
        left.remove(int(nearest))
    return order


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--resolution", type=int, default=421)
    parser.add_argument("--recycle", type=int, default=8, help="k: solutions kept")
    parser.add_argument("--unpreconditioned", type=int, default=3, help="samples for plain CG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    s, n, k = args.resolution, args.resolution - 2, args.recycle
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.samples)
    make = jax.jit(coefficient, static_argnums=1)
    coefficients = [make(key, s) for key in keys]
    stride = max(1, (s - 1) // 21)
    features = np.stack([np.asarray(a[::stride, ::stride]).ravel() for a in coefficients])
    order = greedy_order(features)

    zero = jnp.zeros((n, n))
    solve(coefficients[0], zero)  # compile
    projected_guess(coefficients[0], jnp.stack([zero + 1.0] * k))
    rows = {"independent": [], "recycled": []}
    basis, worst = [], 0.0
    for index in order:
        a = coefficients[index]
        (u, steps), seconds = timed(solve, a, zero)
        rows["independent"].append((int(steps), seconds))
        start = time.perf_counter()
        guess = projected_guess(a, jnp.stack(basis)) if len(basis) == k else zero
        v, steps = jax.block_until_ready(solve(a, guess))
        rows["recycled"].append((int(steps), time.perf_counter() - start))
        worst = max(worst, float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(u))))
        basis = [*basis, v][-k:]
    plain = []
    for index in order[: args.unpreconditioned]:
        (_, steps), seconds = timed(solve, coefficients[index], zero, preconditioned=False)
        plain.append((int(steps), seconds))
    rows["unpreconditioned"] = plain
    summary = {
        "resolution": s,
        "samples": args.samples,
        "recycle": k,
        "max_relative_difference": worst,
    }
    for name, values in rows.items():
        steps = np.array([v[0] for v in values])
        seconds = np.array([v[1] for v in values])
        summary[name] = {
            "solves": len(values),
            "iterations_median": float(np.median(steps)),
            "iterations_mean": float(steps.mean()),
            "seconds_median": float(np.median(seconds)),
            "seconds_total": float(seconds.sum()),
        }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
