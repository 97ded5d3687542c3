"""PIG vs MLP-PINN on the PIG paper's benchmarks: relative L2 over seeds, against the paper.

Runs every `experiments/pinn_<problem>.toml` config with both models (`model.name = pig` and
`mlp`) for each seed, each run a `sciml run` subprocess (so float64 settings never leak between
runs), with the same `--set` overrides for both models (the CPU budget), then prints a markdown
table: mean and best relative L2 over seeds, time per run, and the paper's PIG result.

Every run's `results.json` line and its learning curve (`metrics.jsonl`) stay in `--runs-dir`;
one JSON line per run is appended to `--out`.

Example (the CPU budget of experiments/RESULTS.md):

    .venv/bin/python experiments/pinn_table.py --problems helmholtz klein_gordon \\
        --seeds 0 1 2 --set train.steps=2000 --set train.lbfgs_steps=0 \\
        --out runs/pinn_table.jsonl
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The PIG paper's relative L2 (mean over seeds / best) and its PINN baseline where reported.
PAPER = {
    "helmholtz": (4.13e-5, 2.22e-5, 4.02e-1),
    "klein_gordon": (2.76e-3, 2.36e-3, 3.43e-2),
    "flow_mixing": (4.51e-4, 2.67e-4, None),
    "nonlinear_diffusion": (2.69e-3, 1.44e-3, 9.5e-3),
    "allen_cahn": (1.04e-4, 5.93e-5, None),
    "poisson": (None, None, None),
}


def run_one(problem: str, model: str, seed: int, overrides: list[str], runs_dir: Path) -> dict:
    config = ROOT / "experiments" / f"pinn_{problem}.toml"
    name = f"table-{problem}-{model}-s{seed}"
    args = [sys.executable, "-m", "sciml", "run", str(config), "--runs-dir", str(runs_dir)]
    sets = [f"model.name={model}", f"seed={seed}", f"name={name}", "train.progress=false"]
    for item in sets + overrides:
        args += ["--set", item]
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"run failed: {' '.join(args)}\n{out.stderr[-3000:]}")
    run_dir = Path(out.stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
    results = json.loads((run_dir / "results.json").read_text())
    curve = [
        (r["step"], r.get("eval_relative_l2"))
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    ]
    return {
        "problem": problem,
        "model": model,
        "seed": seed,
        "overrides": overrides,
        "run_dir": str(run_dir),
        "wall_s": round(time.perf_counter() - start, 1),
        "curve": curve,
        **results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PAPER), choices=list(PAPER))
    parser.add_argument("--models", nargs="+", default=["pig", "mlp"], choices=["pig", "mlp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", default="runs/pinn_table.jsonl")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for problem in args.problems:
        for model in args.models:
            for seed in args.seeds:
                record = run_one(problem, model, seed, args.overrides, Path(args.runs_dir))
                with open(out, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(
                    f"{problem} {model} seed {seed}: rel L2 {record['test_relative_l2']:.3e} "
                    f"({record['wall_s']} s)",
                    flush=True,
                )
                rows.append(record)
    print()
    print("| problem | model | mean rel L2 | best | s / run | paper PIG mean / best | paper PINN |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for problem in args.problems:
        mean_p, best_p, pinn_p = PAPER[problem]
        paper = "-" if mean_p is None else f"{mean_p:.2e} / {best_p:.2e}"
        for model in args.models:
            errs = [
                r["test_relative_l2"]
                for r in rows
                if (r["problem"], r["model"]) == (problem, model)
            ]
            times = [r["wall_s"] for r in rows if (r["problem"], r["model"]) == (problem, model)]
            print(
                f"| {problem} | {model} | {statistics.mean(errs):.2e} | {min(errs):.2e} | "
                f"{statistics.median(times):.0f} | {paper} | "
                f"{'-' if pinn_p is None else f'{pinn_p:.2e}'} |"
            )


if __name__ == "__main__":
    main()
