"""GP-HM against the PINN and the PIG on GP-HM's high-frequency cases, at equal wall time.

    .venv/bin/python experiments/gp_hm_table.py --seconds 60 --out gp_hm.jsonl

All three run through `sciml run` with `train.time_limit` set to the same number of seconds:
GP-HM from `experiments/gp_<case>.toml` (`sciml.gp.solve_gp`, float64, 30 mixture components
per axis, the paper's Adam at 1e-2 and boundary weight, Gauss-Newton node solves where the
grid allows them), the MLP-PINN and the PIG from `experiments/pinn_<case>.toml`. The error is
each run's `test_relative_l2`: the same fine evaluation grid for all (4001 points in 1-D,
401^2 in 2-D, 101 x 401 for advection). One line per run: error, steps, training seconds.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    "poisson_1d_x_sin_200x",
    "poisson_1d_multiscale",
    "allen_cahn_1d_sin_100x",
    "advection_sin",
    "poisson_2d_sin_100x",
]


def run(case: str, method: str, seconds: float, runs_dir: Path) -> dict:
    config = ROOT / "experiments" / f"{'gp' if method == 'gp' else 'pinn'}_{case}.toml"
    sets = [
        f"name=gphm-{case}-{method}",
        "train.progress=false",
        f"train.time_limit={seconds}",
        "train.steps=1000000",
        "train.lbfgs_steps=0",
    ]
    if method != "gp":
        sets += [f"model.name={method}", "train.eval_every=100"]
    args = [sys.executable, "-m", "sciml", "run", str(config), "--runs-dir", str(runs_dir)]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    if out.returncode != 0:
        return {"case": case, "method": method, "error": out.stderr[-400:]}
    run_dir = Path(out.stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
    results = json.loads((run_dir / "results.json").read_text())
    row = {
        "case": case,
        "method": method,
        "relative_l2": results["test_relative_l2"],
        "steps": results["steps_done"],
        "seconds": results["train_time_s"],
    }
    if method == "gp":
        row["active_components"] = results["active_components"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--methods", nargs="+", default=["gp", "mlp", "pig"])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per run")
    parser.add_argument("--runs-dir", default="runs/gp_hm_table")
    parser.add_argument("--out", default=None, help="append one JSON line per run")
    args = parser.parse_args()
    for case in args.cases:
        for method in args.methods:
            row = run(case, method, args.seconds, Path(args.runs_dir))
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
