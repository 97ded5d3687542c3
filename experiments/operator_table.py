"""Collects finished `sciml run` directories into one Markdown table (operators side by side).

    python experiments/operator_table.py runs/darcy_*-2026* runs/burgers_*-2026* ...

For every run directory: dataset, operator, task, test relative L2 and H1 (of the best model
on the test set), trainable parameters, median step time (one compiled optimiser step on one
batch, measured after training), training time, epochs and training-set size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path


def describe(run_dir: Path) -> dict:
    config = tomllib.loads((run_dir / "config.toml").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    data, model, task = config["data"], config["model"], config.get("task", {})
    name = model["name"]
    if name == "fno":
        name = f"FNO-{len(model['modes'])}D"
    return {
        "data": f"{data['recipe']} s={data['resolution']}",
        "operator": {"mgno": "MgNO", "deeponet": "DeepONet"}.get(name, name),
        "task": task.get("kind", "direct"),
        "rel L2": f"{results['test_relative_l2']:.4f}",
        "rel H1": f"{results['test_h1']:.4f}",
        "params": f"{results['params']:,}",
        "step ms": f"{results['step_time_ms']:.1f}",
        "train s": f"{results['train_time_s']:.0f}",
        "epochs": str(results["epochs"]),
        "n_train": str(data["n_train"]),
        "run": run_dir.name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        if not (run / "results.json").is_file():
            print(f"error: {run} has no results.json (not a finished run)", file=sys.stderr)
            return 2
        rows.append(describe(run))
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row[k] for k in header) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
