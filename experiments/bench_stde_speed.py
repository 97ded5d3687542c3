"""Speed and memory of one two-body Allen-Cahn PINN training step, per Laplacian method and d.

The unit of work is one full training step of `experiments/stde_pinn.py` (Allen-Cahn, 100 fresh
points in the unit ball, loss + gradient w.r.t. the parameters + Adam update; 4-layer tanh MLP of
width 128, float32) with the Laplacian computed by:

- `stde:J`    `sciml.derivatives.stde_laplacian(sparse=True)`, |J| = J sampled coordinates
- `stde_dense:J`  the same with J Rademacher directions
- `hte:J`     `hte_laplacian`: Hutchinson, J probes, backward-mode Hessian-vector products
- `sdgd:J`    `sdgd_laplacian`: J coordinates, backward-mode second derivatives
- `forward`   `forward_laplacian` (exact)
- `exact`     `laplacian` (exact, Taylor mode)
- `folx`      the `folx` package's `forward_laplacian` (exact; an optional peer, never a
              dependency of sciml)

Every (method, d) cell runs in its own subprocess, so its peak RSS (`resource.getrusage`) is its
own; the cell also reports XLA's compiled memory analysis of the step (argument + temporary
bytes) and, on GPU, the device's peak bytes in use. A cell is recorded as `timeout` when it runs
past `--cell-timeout` seconds (compilation included) and as `OOM` when its resident memory passes
`--max-rss-gb` (the parent polls it and stops it) or the child dies of an allocation failure.

Steps per second is the median over timed steps after `--warmup` untimed ones; timing stops after
`--steps` steps or once `--budget-s` seconds of timed steps have run (at least 3 steps).

Install the peer into the project venv (it does not change the installed jax/jaxlib; check with
`pip install --dry-run folx` first), or leave `folx` out of `--methods`:

    .venv/bin/python -m pip install folx

Examples:

    .venv/bin/python experiments/bench_stde_speed.py --dims 100 1000 --steps 10
    .venv/bin/python experiments/bench_stde_speed.py --dims 100 1000 10000 100000 \\
        --out runs/bench_stde_speed.json
    .venv/bin/python experiments/bench_stde_speed.py --methods stde:16 folx --dims 1000
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_METHODS = (
    "stde:16",
    "stde:100",
    "hte:16",
    "hte:100",
    "sdgd:16",
    "sdgd:100",
    "forward",
    "exact",
    "folx",
)
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "MemoryError", "Out of memory", "out of memory", "bad_alloc")


def parse_method(spec: str) -> tuple[str, int]:
    """`"stde:16"` -> `("stde", 16)`; `"forward"` -> `("forward", 0)`."""
    name, _, num = spec.partition(":")
    stochastic = ("stde", "stde_dense", "hte", "sdgd")
    exact = ("forward", "exact", "folx")
    if name in stochastic and num.isdigit() and int(num) > 0:
        return name, int(num)
    if name in exact and not num:
        return name, 0
    raise ValueError(
        f"`--methods`: cannot read {spec!r}; use NAME:J with NAME in {stochastic} and J a "
        f"positive integer, or one of {exact}."
    )


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dims", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--pde", choices=("poisson", "allen_cahn", "sine_gordon"), default="allen_cahn")
    p.add_argument("--num-points", type=int, default=100)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    p.add_argument("--steps", type=int, default=50, help="at most this many timed steps")
    p.add_argument("--budget-s", type=float, default=30.0, help="stop timing after this long")
    p.add_argument("--cell-timeout", type=float, default=900.0, help="seconds per cell")
    p.add_argument(
        "--max-rss-gb",
        type=float,
        default=round(0.75 * _physical_memory() / 2**30, 1),
        help="stop a cell whose resident memory passes this many GiB (0: never; default: 75%% of "
        "physical memory)",
    )
    p.add_argument("--chunk-size", type=int, default=None, help="passed to the estimators")
    p.add_argument("--out", default=None, help="write all cells as a JSON list here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parsed_methods = [parse_method(m) for m in args.methods]
    if any(d < 2 for d in args.dims):
        raise ValueError(f"`--dims` must all be at least 2, got {args.dims}.")
    return args


# ------------------------------------------------------------------------------------------------
# Worker: one (method, d) cell, in its own process.


def run_cell(spec: dict) -> dict:
    import resource

    import jax

    sys.path.insert(0, HERE)
    import stde_pinn

    # Resident memory once JAX and sciml are imported, before any model exists.
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    argv = [
        "--pde", spec["pde"],
        "--dim", str(spec["dim"]),
        "--method", spec["method"],
        "--num-samples", str(max(spec["num_samples"], 1)),
        "--num-points", str(spec["num_points"]),
        "--steps", "10000",
    ]  # fmt: skip
    if spec["chunk_size"] is not None:
        argv += ["--chunk-size", str(spec["chunk_size"])]
    s = stde_pinn.setup(stde_pinn.parse_args(argv))
    params, opt_state = s.params, s.opt_state
    key = jax.random.PRNGKey(0)
    i = 0
    for _ in range(spec["warmup"]):
        params, opt_state, loss = s.compiled(params, opt_state, jax.random.fold_in(key, i))
        loss.block_until_ready()
        i += 1
    times = []
    start = time.perf_counter()
    while len(times) < spec["steps"] and (
        len(times) < 3 or time.perf_counter() - start < spec["budget_s"]
    ):
        t = time.perf_counter()
        params, opt_state, loss = s.compiled(params, opt_state, jax.random.fold_in(key, i))
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
        i += 1
    median = statistics.median(times)
    return {
        "status": "ok",
        "it_per_s": 1.0 / median,
        "timed_steps": len(times),
        "compile_s": s.compile_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "base_rss_bytes": base_rss,
        "device_peak_bytes": stde_pinn.device_peak_bytes(),
        **s.memory,
        "final_loss": float(loss),
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
    }


# ------------------------------------------------------------------------------------------------
# Parent: spawn, watch and collect.


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(spec: dict, timeout: float, max_rss: float | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.perf_counter()
    verdict = None
    while proc.poll() is None:
        if time.perf_counter() - start > timeout:
            verdict = "timeout"
        elif max_rss is not None and _rss_bytes(proc.pid) > max_rss:
            verdict = "OOM"
        if verdict:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if verdict:
        return {"status": verdict, "wall_s": wall}
    if proc.returncode == 0:
        result = json.loads(out.strip().splitlines()[-1])
        result["wall_s"] = wall
        return result
    if proc.returncode == -signal.SIGKILL or any(m in err for m in OOM_MARKERS):
        return {"status": "OOM", "wall_s": wall, "error": err.strip().splitlines()[-1:]}
    tail = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
    return {"status": "error", "wall_s": wall, "error": tail}


def label(method: str, num_samples: int) -> str:
    return f"{method} |J|={num_samples}" if num_samples else method


def cell_text(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    return f"{r['it_per_s']:.3g} it/s, {r['peak_rss_bytes'] / 2**20:.0f} MiB"


def markdown_table(results: list[dict], dims: list[int], rows: list[tuple[str, int]]) -> str:
    by_key = {(r["method"], r["num_samples"], r["dim"]): r for r in results}
    lines = [
        "| method | " + " | ".join(f"d = {d}" for d in dims) + " |",
        "|---" * (len(dims) + 1) + "|",
    ]
    for method, num in rows:
        cells = [cell_text(by_key[(method, num, d)]) for d in dims]
        lines.append(f"| {label(method, num)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_cell(json.loads(args.worker))), flush=True)
        return
    max_rss = args.max_rss_gb * 2**30 if args.max_rss_gb > 0 else None
    results = []
    for dim in args.dims:
        for method, num in args.parsed_methods:
            if method in ("stde", "sdgd") and num > dim:
                r = {"status": "n/a (|J| > d)"}
            else:
                spec = {
                    "pde": args.pde,
                    "dim": dim,
                    "method": method,
                    "num_samples": num,
                    "num_points": args.num_points,
                    "warmup": args.warmup,
                    "steps": args.steps,
                    "budget_s": args.budget_s,
                    "chunk_size": args.chunk_size,
                }
                r = measure(spec, args.cell_timeout, max_rss)
            r.update(method=method, num_samples=num, dim=dim)
            results.append(r)
            extra = "" if r["status"] == "ok" else f" {r.get('error', '')}"
            print(f"d={dim:>7} {label(method, num):<14} {cell_text(r)}{extra}", flush=True)
            if args.out:
                _write(args.out, args, results)
    print()
    print(markdown_table(results, args.dims, args.parsed_methods))
    if args.out:
        print(f"\nwrote {args.out}")


def _write(path: str, args: argparse.Namespace, results: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = {k: v for k, v in vars(args).items() if k not in ("worker", "parsed_methods")}
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"config": meta, "results": results}, fh, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
