"""SIGINT / SIGTERM at random moments of `sciml run`: how often does the command stop cleanly?

Launches a tiny `sciml run` (quickstart, 9x9 Darcy, a few thousand epochs) again and again and
sends SIGINT or SIGTERM at a random moment of its first seconds (interpreter start, JAX import,
config checks, data generation, compilation, training). A clean stop is exit status 128 +
signal, exactly one `error:` line on stderr and no traceback; anything else (exit 0 after a
swallowed interrupt, a traceback, a crash) is counted and printed.

    .venv/bin/python experiments/reliability_signals.py --tries 20
    # another checkout side by side (its package first on the path):
    .venv/bin/python experiments/reliability_signals.py --tries 20 --source /path/to/checkout
"""

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "data.resolution=9",
    "data.solve_resolution=33",
    "data.n_train=8",
    "data.n_test=4",
    "model.modes=[3, 3]",
    "model.width=4",
    "model.depth=1",
    "model.padding=1",
    "model.projection_channels=8",
    "train.batch_size=4",
    "train.progress=false",
    "eval.plot_samples=0",
    "train.epochs=5000",
]


def one_try(workdir: Path, source: Path, sig: int, delay: float) -> tuple[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(source)}
    command = [sys.executable, "-m", "sciml", "run", str(REPO / "experiments/quickstart.toml")]
    for override in TINY:
        command += ["--set", override]
    proc = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return "hung", err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if proc.returncode == 128 + sig and len(errors) == 1 and "Traceback" not in err:
        return "clean", err
    if proc.returncode == 0:
        return "exit 0 (interrupt swallowed)", err
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}", err
    if "Traceback" in err or "Exception ignored" in err:
        return f"exit {proc.returncode} with a traceback", err
    return f"exit {proc.returncode}, {len(errors)} error lines", err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--max-delay", type=float, default=6.0, help="seconds after the start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose sciml runs")
    args = parser.parse_args()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background: the launched commands would keep ignoring SIGINT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    outcomes = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.tries):
            sig = signal.SIGINT if i % 3 else signal.SIGTERM
            delay = rng.uniform(0.0, args.max_delay)
            outcome, err = one_try(Path(tmp), args.source, sig, delay)
            outcomes[outcome] += 1
            print(f"{i:3d} {sig.name:7s} at {delay:4.1f} s: {outcome}", flush=True)
            if outcome != "clean":
                print("    " + "\n    ".join(err.strip().splitlines()[-3:]), flush=True)
    print(f"source {args.source}: " + ", ".join(f"{k}: {v}" for k, v in outcomes.most_common()))


if __name__ == "__main__":
    main()
