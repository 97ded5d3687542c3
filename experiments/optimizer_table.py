"""Optimisers on the same PINN problems at the same time budget: Adam, SOAP, energy natural
gradient and L-BFGS, over seeds.

Each run is one `sciml run` subprocess of `experiments/pinn_<problem>.toml` with the same model
and points for every optimiser, `train.time_limit` seconds of training (the run stops at the
first record past it), and `train.optimizer` set (`lbfgs`: L-BFGS iterations only). Prints a
markdown table: mean, best and worst relative L2 over seeds at the end of the budget, and
steps done; one JSON line per run is appended to `--out`.

The budget is the process's CPU time, all threads counted (`train.time_clock = "cpu"`), so
that every optimiser gets the same compute whatever else the machine runs. XLA's Eigen
thread pool is off here (XLA_FLAGS), yet a run still keeps ~1.5 cores busy at times: its wall
time is shorter than its budget.

    .venv/bin/python experiments/optimizer_table.py --problems poisson burgers \\
        --seeds 0 1 2 --seconds 60 --out runs/optimizer_table.jsonl
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTIMIZERS = ("adam", "soap", "natural_gradient", "lbfgs")
# One model for every optimiser of a problem (small enough for dense natural gradient).
MODEL = ["model.name=mlp", "model.mlp.width=32", "model.mlp.depth=3", "train.float64=true"]
# Points per problem: the configs' own, smaller where the configs are sized for a GPU. Records
# every 100 steps (every step for natural gradient), so that the time limit is met closely.
POINTS = {
    "poisson": ["train.num_residual=1024", "train.num_boundary=256"],
    "helmholtz": ["train.num_residual=1024", "train.num_boundary=256"],
    "klein_gordon": [
        "train.num_residual=2048",
        "train.num_initial=256",
        "train.num_boundary=512",
    ],
    "burgers": ["train.num_residual=4000", "train.num_initial=200", "train.num_boundary=200"],
    "allen_cahn": [
        "train.num_residual=2048",
        "train.num_initial=256",
        "train.num_periodic=128",
        "train.causal_chunks=0",
    ],
}


def run_one(problem, optimizer, seed, seconds, runs_dir, extra):
    config = ROOT / "experiments" / f"pinn_{problem}.toml"
    sets = [
        *MODEL,
        *POINTS[problem],
        f"seed={seed}",
        f"name=opt-{problem}-{optimizer}-s{seed}",
        "train.progress=false",
        "train.eval_every=100",
        f"train.time_limit={seconds}",
        "train.time_clock=cpu",
        "train.steps=1000000",
        "train.lbfgs_steps=0",
        "train.resample_every=0",
        "train.adaptive=false",
    ]
    if optimizer == "natural_gradient":  # 0.3-20 s a step: records (and the limit) every step
        sets += ["train.eval_every=1"]
    sets += [f"train.optimizer={optimizer}"]  # lbfgs: train.steps L-BFGS iterations
    args = [sys.executable, "-m", "sciml", "run", str(config), "--runs-dir", str(runs_dir)]
    for item in sets + list(extra):
        args += ["--set", item]
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        return {
            "problem": problem,
            "optimizer": optimizer,
            "seed": seed,
            "error": out.stderr[-400:],
        }
    run_dir = Path(out.stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
    results = json.loads((run_dir / "results.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return {
        "problem": problem,
        "optimizer": optimizer,
        "seed": seed,
        "relative_l2": results["test_relative_l2"],
        "steps": records[-1]["step"] if records else 0,
        "train_time_s": results["train_time_s"],
        "train_cpu_s": results.get("train_cpu_s"),
        "run_dir": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", default=list(POINTS), choices=list(POINTS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per run")
    parser.add_argument("--runs-dir", default="runs/optimizer_table")
    parser.add_argument("--out", default=None, help="append one JSON line per run")
    parser.add_argument("--set", action="append", default=[], help="extra overrides, all runs")
    args = parser.parse_args()
    rows = []
    for problem in args.problems:  # a seed's optimisers one after another: similar machine load
        for seed in args.seeds:
            for optimizer in args.optimizers:
                row = run_one(problem, optimizer, seed, args.seconds, args.runs_dir, args.set)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    budget = f"{args.seconds:g} s"
    print(f"\n| problem | optimizer | mean rel. L2 | best | worst | steps | seeds ({budget}) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for problem in args.problems:
        for optimizer in args.optimizers:
            done = [r for r in rows if r["problem"] == problem and r["optimizer"] == optimizer]
            errors = [r["relative_l2"] for r in done if "relative_l2" in r]
            if not errors:
                print(f"| {problem} | {optimizer} | failed | | | | {len(done)} |")
                continue
            steps = statistics.median(r["steps"] for r in done if "steps" in r)
            print(
                f"| {problem} | {optimizer} | {statistics.mean(errors):.2e} | {min(errors):.2e} "
                f"| {max(errors):.2e} | {steps:.0f} | {len(errors)} |"
            )


if __name__ == "__main__":
    main()
