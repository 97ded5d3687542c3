"""Burgers data generation: JAX (`sciml.data.generate_burgers`) against NumPy/SciPy.

The FNO recipe (nu = 0.1, t = 1, u0 ~ N(0, 625 (-Lap + 25 I)^-2), solved at 8192 points) with
the scheme of `sciml.data.burgers_solve`: Fourier pseudo-spectral, 2/3 dealiasing, ETDRK4 with
the recipe's step (dt = 5e-3, 200 steps). The same scheme is written in plain NumPy, vectorised
over the batch (`numpy.fft`, and `scipy.fft` with `workers=1` and `workers=2`), with the same
float64 ETDRK4 coefficients (`sciml.data.ETDRK4`'s, computed on the host) and the same initial
fields, in float32 like the generator. Each implementation generates `--n` samples; timings
are medians over `--repeats` runs after a warm-up run (JAX: compilation excluded). The relative
L2 difference between the outputs is printed to show that the implementations agree.

    .venv/bin/python experiments/bench_datagen_burgers.py --n 100 --repeats 3

Set JAX_PLATFORMS=cpu to time the CPU (the default here). The machine may be shared: timings
include whatever else runs on it.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402

from sciml.data import generate_burgers  # noqa: E402
from sciml.data._grf import grf  # noqa: E402
from sciml.data._recipes.burgers import (  # noqa: E402
    BURGERS_ALPHA,
    BURGERS_DT,
    BURGERS_NU,
    BURGERS_SIGMA,
    BURGERS_TAU,
)
from sciml.data._solvers.etdrk4 import etdrk4_coefficients  # noqa: E402


def numpy_burgers(u0, nu, t_final, num_steps, fft=np.fft, **fft_kwargs):
    """The ETDRK4 pseudo-spectral solve of `burgers_solve` for a batch `u0` of shape (b, s)."""
    s = u0.shape[-1]
    real = u0.dtype
    kappa = 2 * np.pi * np.arange(s // 2 + 1, dtype=np.float64)
    linear = -nu * kappa**2
    m = (s - 1) // 3 + 1  # retained modes, 3k < s
    dt = t_final / num_steps
    em1, em1_half, q, f1, f2, f3 = (c.astype(real) for c in etdrk4_coefficients(linear[:m], dt))
    half_kappa = (0.5 * kappa[:m]).astype(real)

    def nonlinear(v):
        u = fft.irfft(v, n=s, **fft_kwargs)
        w = fft.rfft(u * u, **fft_kwargs)[..., :m]
        return -1j * half_kappa * w

    v0 = fft.rfft(u0, **fft_kwargs)
    v = v0[..., :m]
    for _ in range(num_steps):
        n_v = nonlinear(v)
        a = v + em1_half * v + q * n_v
        n_a = nonlinear(a)
        b = v + em1_half * v + q * n_a
        n_b = nonlinear(b)
        c = a + em1_half * a + q * (2 * n_b - n_v)
        n_c = nonlinear(c)
        v = v + em1 * v + f1 * n_v + 2 * f2 * (n_a + n_b) + f3 * n_c
    high = v0[..., m:] * np.exp(linear[m:] * t_final).astype(real)
    return fft.irfft(np.concatenate([v, high], axis=-1), n=s, **fft_kwargs)


def timed(fn, repeats):
    fn()  # warm-up (and compilation for JAX)
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="samples")
    parser.add_argument("--solve-resolution", type=int, default=8192)
    parser.add_argument("--resolution", type=int, default=1024, help="stored resolution")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n, s = args.n, args.solve_resolution
    t_final = 1.0
    num_steps = round(t_final / BURGERS_DT)
    stride = s // args.resolution
    key = jax.random.key(args.seed)

    def run_jax():
        chunks = generate_burgers(key, n, args.resolution, solve_resolution=s, chunk_size=n)
        return np.concatenate([u for _, u in chunks])[:, 0]

    # The generator's initial fields (sample i from jax.random.split(key, n)[i]), float32.
    keys = jax.random.split(key, n)
    u0 = np.asarray(
        jax.vmap(lambda k: grf(k, (s,), alpha=BURGERS_ALPHA, tau=BURGERS_TAU, sigma=BURGERS_SIGMA))(
            keys
        ),
        np.float32,
    )
    runs = {
        "sciml (JAX, jit)": run_jax,
        "NumPy (numpy.fft)": lambda: numpy_burgers(u0, BURGERS_NU, t_final, num_steps),
        "SciPy (scipy.fft, workers=1)": lambda: numpy_burgers(
            u0, BURGERS_NU, t_final, num_steps, fft=scipy.fft, workers=1
        ),
        "SciPy (scipy.fft, workers=2)": lambda: numpy_burgers(
            u0, BURGERS_NU, t_final, num_steps, fft=scipy.fft, workers=2
        ),
    }
    print(
        f"Burgers recipe: {n} samples, solve at {s} points, {num_steps} ETDRK4 steps "
        f"(dt = {BURGERS_DT}), float32; devices: {jax.devices()}"
    )
    results = {}
    for name, fn in runs.items():
        median, times, out = timed(fn, args.repeats)
        out = np.asarray(out)
        if out.shape[-1] != args.resolution:
            out = out[..., ::stride]
        results[name] = (median, out)
        print(f"{name:32s} median {median:8.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times)})")
    base, reference = results["sciml (JAX, jit)"]
    print()
    print("| implementation | median time (s) | time / sciml | rel. L2 difference to sciml |")
    print("|---|---|---|---|")
    for name, (median, out) in results.items():
        diff = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        print(f"| {name} | {median:.3f} | {median / base:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
