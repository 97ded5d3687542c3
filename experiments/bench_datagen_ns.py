"""Navier-Stokes data generation: JAX (`sciml.data`) against NumPy/SciPy, and cheaper settings.

Two modes:

- `speed` (default): the FNO recipe's scheme (pseudo-spectral, 2/3 dealiasing, explicit Euler
  advection + Crank-Nicolson viscosity, `dt = 1e-4`) for `--n` trajectories at
  `--resolution`^2, run by `sciml.data.generate_navier_stokes` and by a plain NumPy
  implementation of the same scheme (vectorised over the batch; `numpy.fft`, and `scipy.fft`
  with `workers=1` and `workers=2`). The full horizon (T = 50: 500,000 steps) is out of reach
  on a CPU, so `--steps` steps are timed and the time per step is extrapolated to T = 50
  (labelled as such). All implementations start from the same initial fields; the maximum
  difference of the final fields, relative to their maximum, is printed. Timings are medians
  over `--repeats` runs, each after a warm-up run (JAX: compilation excluded).

      .venv/bin/python experiments/bench_datagen_ns.py --n 10 --steps 200 --repeats 3

- `settings`: how far cheaper settings are from the paper's (solve at 256^2, `dt = 1e-4`,
  subsampled to 64^2). The initial field is drawn at 256^2; a cheaper solve starts from it
  subsampled. Prints the relative L2 difference, at 64^2, at t = 1..`--t-short`, averaged
  over `--n` samples; then, over the full horizon T, the cheap settings against a 64^2 solve
  with `dt = 1e-4` (time-step error alone) and a 128^2 solve (resolution error).

      .venv/bin/python experiments/bench_datagen_ns.py settings --n 2 --t-short 5

Set JAX_PLATFORMS=cpu to time the CPU. The machine may be shared: timings include whatever
else runs on it.
"""

import argparse
import math
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402

from sciml.data import (  # noqa: E402
    generate_navier_stokes,
    navier_stokes_recipe_sample,
    navier_stokes_solve,
)

PAPER_DT = 1e-4
PAPER_HORIZON = 50.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("speed", "settings"), default="speed")
    parser.add_argument("--n", type=int, default=None, help="trajectories (10 / 2)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (speed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--nu", type=float, default=1e-3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--t-short", type=int, default=5, help="settings: short horizon")
    parser.add_argument(
        "--t-long", type=float, default=None, help="settings: full horizon (default 50 / 20)"
    )
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------
# The same scheme in plain NumPy, as a NumPy user would write it.
# ---------------------------------------------------------------------------------------------


def numpy_navier_stokes(w0, f, nu, dt, steps, fft=np.fft, **fft_kwargs):
    """Euler-CN pseudo-spectral steps for a batch `w0` of shape (b, s, s); returns w at the end."""
    s = w0.shape[-1]
    real = w0.dtype
    cplx = np.result_type(real, np.complex64)
    kx = np.fft.fftfreq(s, 1.0 / s)[:, None]
    ky = np.fft.rfftfreq(s, 1.0 / s)[None, :]
    lap = 4 * np.pi**2 * (kx**2 + ky**2)
    inv_lap = np.zeros_like(lap)
    inv_lap[lap > 0] = 1.0 / lap[lap > 0]
    ikx = (2j * np.pi * np.where(np.abs(kx) == s // 2, 0, kx)).astype(cplx)
    iky = (2j * np.pi * np.where(np.abs(ky) == s // 2, 0, ky)).astype(cplx)
    cut = (2.0 / 3.0) * (s // 2)
    dealias = ((np.abs(kx) <= cut) & (np.abs(ky) <= cut)).astype(real)
    # Crank-Nicolson as w + (dt rhs - 2h w) / (1 + h), h = dt nu |k|^2 / 2: the same arithmetic
    # as sciml (accurate in float32, where (1 - h) / (1 + h) rounds too close to 1).
    half = 0.5 * dt * nu * lap
    decay = (2 * half / (1 + half)).astype(real)
    gain = (dt / (1 + half)).astype(real)
    inv_lap = inv_lap.astype(real)

    w_h = fft.rfft2(w0, **fft_kwargs)
    f_h = fft.rfft2(f, **fft_kwargs)
    for _ in range(steps):
        psi_h = w_h * inv_lap
        u = fft.irfft2(iky * psi_h, s=(s, s), **fft_kwargs)
        v = fft.irfft2(-ikx * psi_h, s=(s, s), **fft_kwargs)
        w_x = fft.irfft2(ikx * w_h, s=(s, s), **fft_kwargs)
        w_y = fft.irfft2(iky * w_h, s=(s, s), **fft_kwargs)
        n_h = fft.rfft2(u * w_x + v * w_y, **fft_kwargs) * dealias
        w_h = w_h + (gain * (f_h - n_h) - decay * w_h)
    return fft.irfft2(w_h, s=(s, s), **fft_kwargs)


def recipe_forcing(s, dtype):
    x = np.arange(s) / s
    phase = 2 * np.pi * (x[:, None] + x[None, :])
    return (0.1 * (np.sin(phase) + np.cos(phase))).astype(dtype)


def timed(fn, repeats):
    fn()  # warm-up (and compilation for JAX)
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, result


def speed(args):
    n = args.n or 10
    s, steps, dtype = args.resolution, args.steps, args.dtype
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    key = jax.random.key(args.seed)
    kwargs = dict(
        solve_resolution=s,
        nu=args.nu,
        t_final=steps * PAPER_DT,
        dt=PAPER_DT,
        record_steps=1,
        chunk_size=n,
        scheme="euler_cn",
        dtype=dtype,
    )

    def run_jax():
        ((w0, frames),) = list(generate_navier_stokes(key, n, s, **kwargs))
        return w0[:, 0], frames[:, -1]

    w0_32, _ = run_jax()
    # The generator stores float32; for float64 runs redraw the exact initial fields.
    keys = jax.random.split(key, n)
    w0 = np.stack(
        [
            np.asarray(
                navier_stokes_recipe_sample(
                    k,
                    s,
                    solve_resolution=s,
                    t_final=PAPER_DT,
                    dt=PAPER_DT,
                    record_steps=1,
                    dtype=dtype,
                )[0]
            )
            for k in keys
        ]
    )
    assert np.allclose(w0.astype(np.float32), w0_32)
    f = recipe_forcing(s, dtype)

    print(
        f"Navier-Stokes (FNO recipe scheme: Euler-CN, dt = {PAPER_DT}, nu = {args.nu}), {n} "
        f"trajectories at {s}^2, {dtype}, {steps} steps, median of {args.repeats} "
        f"(jax {jax.__version__} on {jax.devices()[0].platform}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, {os.cpu_count()} CPU cores, possibly shared)"
    )
    runners = {
        "jax (sciml.data.generate_navier_stokes)": lambda: run_jax()[1],
        "numpy.fft": lambda: numpy_navier_stokes(w0, f, args.nu, PAPER_DT, steps),
        "scipy.fft workers=1": lambda: numpy_navier_stokes(
            w0, f, args.nu, PAPER_DT, steps, fft=scipy.fft, workers=1
        ),
        "scipy.fft workers=2": lambda: numpy_navier_stokes(
            w0, f, args.nu, PAPER_DT, steps, fft=scipy.fft, workers=2
        ),
    }
    results, medians = {}, {}
    for name, fn in runners.items():
        median, times, out = timed(fn, args.repeats)
        medians[name], results[name] = median, np.asarray(out, np.float64)
        per_step = median / steps
        full = per_step * PAPER_HORIZON / PAPER_DT
        print(
            f"  {name:42s} {median:8.3f} s  ({', '.join(f'{t:.3f}' for t in times)})  "
            f"{per_step * 1e3:8.3f} ms/step for the batch, {per_step / n * 1e3:7.3f} ms/step per "
            f"trajectory; extrapolated to T = 50 (500,000 steps): {full / 3600:6.2f} h for the "
            f"{n}, {full / n / 60:6.1f} min per trajectory"
        )
    ref = results["jax (sciml.data.generate_navier_stokes)"]
    base = medians["jax (sciml.data.generate_navier_stokes)"]
    for name in list(runners)[1:]:
        diff = np.max(np.abs(results[name] - ref)) / np.max(np.abs(ref))
        print(
            f"  {name:42s} / jax = {medians[name] / base:5.2f}x slower; max |w - w_jax| / "
            f"max |w_jax| = {diff:.2e}"
        )


# ---------------------------------------------------------------------------------------------
# Cheaper settings against the paper's.
# ---------------------------------------------------------------------------------------------


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm((a - b).reshape(a.shape[0], -1), axis=1) / np.linalg.norm(
        b.reshape(b.shape[0], -1), axis=1
    )


def settings(args):
    jax.config.update("jax_enable_x64", args.dtype == "float64")
    n, nu, dtype = args.n or 2, args.nu, args.dtype
    t_short = args.t_short
    t_long = args.t_long or (50.0 if nu >= 1e-3 else 20.0)
    keys = jax.random.split(jax.random.key(args.seed), n)
    cheap = [
        (64, 1e-4, "euler_cn"),
        (64, 1e-3, "euler_cn"),
        (64, 2e-3, "euler_cn"),
        (64, 5e-3, "euler_cn"),
        (64, 1e-3, "cn_ab2"),
        (64, 5e-3, "cn_ab2"),
        (128, 5e-4, "euler_cn"),
        (128, 1e-3, "euler_cn"),
    ]
    print(
        f"nu = {nu}, {n} samples, {dtype}; relative L2 difference at 64^2 against the paper "
        f"setting (256^2, dt = 1e-4, euler_cn, subsampled) at t = 1..{t_short}"
    )
    start = time.perf_counter()
    ref = []
    for k in keys:
        w0, traj = navier_stokes_recipe_sample(
            k,
            256,
            solve_resolution=256,
            nu=nu,
            t_final=float(t_short),
            dt=1e-4,
            record_steps=t_short,
            dtype=dtype,
        )
        ref.append((np.asarray(w0), np.asarray(traj)))
    print(f"  reference: {time.perf_counter() - start:.1f} s for {n} samples")

    solve = jax.jit(
        navier_stokes_solve, static_argnames=("t_final", "dt", "record_steps", "scheme")
    )

    def cheap_solve(w0_256, s, dt, scheme, t_final, records):
        stride = 256 // s
        out = solve(
            jnp.asarray(w0_256[::stride, ::stride]),
            nu=nu,
            forcing=jnp.asarray(recipe_forcing(s, dtype)),
            t_final=t_final,
            dt=dt,
            record_steps=records,
            scheme=scheme,
        )
        return np.asarray(out)[:, :: s // 64, :: s // 64]

    for s, dt, scheme in cheap:
        errors = []
        start = time.perf_counter()
        for w0, traj in ref:
            out = cheap_solve(w0, s, dt, scheme, float(t_short), t_short)
            errors.append(rel_l2(out, traj[:, ::4, ::4]))
        errors = np.mean(errors, axis=0)
        print(
            f"  solve {s:3d}^2 dt = {dt:.0e} {scheme:8s}: "
            + " ".join(f"t={t + 1}: {e:.2e}" for t, e in enumerate(errors))
            + f"   ({time.perf_counter() - start:.1f} s)"
        )

    records = int(t_long)
    every = max(1, records // 5)
    shown = list(range(every, records + 1, every))
    print(
        f"Full horizon T = {t_long:g}: relative L2 at 64^2 at t = {shown} against "
        "(a) 64^2 dt = 1e-4 euler_cn and (b) 128^2 dt = 2.5e-4 euler_cn, same subsampled w0"
    )
    long_ref = {}
    for name, (s, dt) in {"a": (64, 1e-4), "b": (128, 2.5e-4)}.items():
        start = time.perf_counter()
        long_ref[name] = [
            cheap_solve(w0, s, dt, "euler_cn", float(t_long), records) for w0, _ in ref
        ]
        print(f"  reference ({name}) {s}^2 dt = {dt:.1e}: {time.perf_counter() - start:.1f} s")
    for s, dt, scheme in cheap[1:]:
        start = time.perf_counter()
        outs = [cheap_solve(w0, s, dt, scheme, float(t_long), records) for w0, _ in ref]
        line = f"  solve {s:3d}^2 dt = {dt:.0e} {scheme:8s}:"
        for name in ("a", "b"):
            errors = np.mean(
                [rel_l2(o, r) for o, r in zip(outs, long_ref[name], strict=True)], axis=0
            )
            line += f"  vs ({name}) " + " ".join(
                f"{e:.1e}" if math.isfinite(e) else "nan" for e in errors[every - 1 :: every]
            )
        print(line + f"   ({time.perf_counter() - start:.1f} s)")


def main():
    args = parse_args()
    if args.mode == "speed":
        speed(args)
    else:
        settings(args)


if __name__ == "__main__":
    main()
