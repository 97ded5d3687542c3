"""High-order, low-dimensional PINN residuals: Taylor-mode jets against nested backward mode.

The STDE paper (Shi et al., NeurIPS 2024) reports that for high-order operators in few
dimensions, one forward Taylor-mode pass per derivative beats repeated backward-mode
differentiation by about 2x. This script measures that on an MLP PINN u(x, t) for

- `kdv`: Korteweg-de Vries, u_t + 6 u u_x + u_xxx = 0 (third order), and
- `ks`:  Kuramoto-Sivashinsky, u_t + u u_x + u_xx + u_xxxx = 0 (fourth order),

with the residual's derivatives computed three ways:

- `backward`: each derivative by nested `jax.grad` (d^k u / dx^k = k nested reverse passes), the
  usual PINN code;
- `taylor`: each derivative by one `sciml.derivatives.taylor_derivative` jet of that order along
  e_x (or e_t for u_t): d^k u / dx^k is the k-th derivative of t -> u(z + t e_x);
- `taylor_fused`: one `jax.experimental.jet` pass of the highest order along e_x, which carries
  every lower x-derivative as well, plus one first-order jet for u_t.

The unit of work is one PINN step: the mean squared residual on `--num-points` collocation
points and its gradient with respect to the MLP parameters (jitted; no optimiser). Before timing,
the three residuals are checked to agree to 1e-10 (absolute, scaled by the residual size) in
float64 at a few points; timing runs in `--dtype` (float32 by default). Steps are timed
alternately across methods, so that load on a shared machine affects them alike, and the medians
are reported.

    .venv/bin/python experiments/bench_taylor_kdv.py
    .venv/bin/python experiments/bench_taylor_kdv.py --pde ks --num-points 1000 --repeats 50
"""

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.experimental import jet  # noqa: E402

from sciml.derivatives import taylor_derivative  # noqa: E402

METHODS = ("backward", "taylor", "taylor_fused")
# For each PDE: the x-derivative orders it needs, and the residual from
# (u, u_t, {k: d^k u / dx^k}).
PDES = {
    "kdv": ((1, 3), lambda u, ut, dx: ut + 6 * u * dx[1] + dx[3]),
    "ks": ((1, 2, 4), lambda u, ut, dx: ut + u * dx[1] + dx[2] + dx[4]),
}


def derivatives(method: str, u, z, orders):
    """(u, u_t, {k: d^k u/dx^k for k in orders}) at one point z = (x, t)."""
    e_x = jnp.array([1.0, 0.0], dtype=z.dtype)
    e_t = jnp.array([0.0, 1.0], dtype=z.dtype)
    if method == "backward":

        def nested(k):
            g = u
            for _ in range(k):
                g = (lambda h: lambda y: jax.grad(h)(y)[0])(g)
            return g(z)

        u_t = jax.grad(u)(z)[1]
        return u(z), u_t, {k: nested(k) for k in orders}
    if method == "taylor":
        u_t = taylor_derivative(u, z, (e_t,), 1)
        return u(z), u_t, {k: taylor_derivative(u, z, (e_x,), k) for k in orders}
    if method == "taylor_fused":
        top = max(orders)
        zero = jnp.zeros_like(z)
        value, series = jet.jet(u, (z,), ((e_x,) + (zero,) * (top - 1),))
        u_t = taylor_derivative(u, z, (e_t,), 1)
        return value, u_t, {k: series[k - 1] for k in orders}
    raise ValueError(f"`--methods`: unknown method {method!r}; choose from {METHODS}.")


def make_loss(pde: str, method: str):
    orders, residual_of = PDES[pde]

    def residual(model, z):
        u, u_t, dx = derivatives(method, model, z, orders)
        return residual_of(u, u_t, dx)

    def loss(model, zs):
        return jnp.mean(jax.vmap(residual, (None, 0))(model, zs) ** 2)

    return residual, loss


def make_model(width: int, layers: int, dtype, key):
    return eqx.nn.MLP(2, "scalar", width, layers - 1, activation=jnp.tanh, key=key, dtype=dtype)


def points(key, n: int, dtype):
    """Collocation points on [-1, 1] x [0, 1]."""
    lo = jnp.array([-1.0, 0.0], dtype=dtype)
    hi = jnp.array([1.0, 1.0], dtype=dtype)
    return lo + (hi - lo) * jax.random.uniform(key, (n, 2), dtype=dtype)


def check_agreement(args) -> float:
    """Largest |residual_m - residual_backward| / (1 + |residual_backward|) in float64."""
    model = make_model(args.width, args.layers, jnp.float64, jax.random.PRNGKey(args.seed))
    zs = points(jax.random.PRNGKey(args.seed + 1), 8, jnp.float64)
    ref_fn = eqx.filter_jit(jax.vmap(make_loss(args.pde, "backward")[0], (None, 0)))
    ref = ref_fn(model, zs)
    worst = 0.0
    for method in args.methods:
        res = eqx.filter_jit(jax.vmap(make_loss(args.pde, method)[0], (None, 0)))(model, zs)
        err = float(jnp.max(jnp.abs(res - ref) / (1 + jnp.abs(ref))))
        print(f"float64 check {method:<13} max scaled |diff| to backward: {err:.2e}")
        if not err <= 1e-10:
            raise SystemExit(f"{method} residual disagrees with nested backward mode: {err:.2e}")
        worst = max(worst, err)
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pde", choices=sorted(PDES), default="kdv")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--num-points", type=int, default=1000)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=4, help="linear layers of the MLP")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=30, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    device = jax.devices()[0]
    print(
        f"{args.pde}: {args.num_points} points, MLP 2-{args.width}x{args.layers - 1}-1 tanh, "
        f"{args.dtype}, on {device.platform} ({device.device_kind})"
    )
    check_agreement(args)

    dtype = jnp.dtype(args.dtype)
    model = make_model(args.width, args.layers, dtype, jax.random.PRNGKey(args.seed))
    zs = points(jax.random.PRNGKey(args.seed + 2), args.num_points, dtype)
    # Two timed programs per method: the residual loss alone, and loss + parameter gradient.
    programs, compile_s = {}, {}
    for method in args.methods:
        loss = make_loss(args.pde, method)[1]
        t = time.perf_counter()
        programs[method, "step"] = (
            eqx.filter_jit(eqx.filter_value_and_grad(loss)).lower(model, zs).compile()
        )
        compile_s[method] = time.perf_counter() - t
        programs[method, "loss"] = eqx.filter_jit(loss).lower(model, zs).compile()
    for program in programs.values():
        for _ in range(args.warmup):
            jax.block_until_ready(program(model, zs))
    times = {k: [] for k in programs}
    for _ in range(args.repeats):
        for k, program in programs.items():
            t = time.perf_counter()
            jax.block_until_ready(program(model, zs))
            times[k].append(time.perf_counter() - t)

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(
        "| method | loss + grad (ms) | vs backward | loss only (ms) | vs backward | compile (s) |"
    )
    print("|---|---|---|---|---|---|")
    for m in args.methods:
        cells = []
        for kind in ("step", "loss"):
            base = med.get(("backward", kind))
            cells += [f"{med[m, kind] * 1e3:.2f}", f"{base / med[m, kind]:.2f}x" if base else "-"]
        print(f"| {m} | " + " | ".join(cells) + f" | {compile_s[m]:.1f} |")
    return {f"{m}/{kind}": v for (m, kind), v in med.items()}


if __name__ == "__main__":
    main()
