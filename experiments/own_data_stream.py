"""A MATLAB v7.3 file larger than the training process's memory, trained one epoch streamed.

Writes `n` Darcy-like samples (random fields a, and u = a smoothed) as a v7.3 `.mat` file the
way MATLAB stores it (HDF5 behind a 512-byte header, column-major, double, in chunks), then runs
`sciml run` on it with `data.stream = true` under `/usr/bin/time -v` and reports the file size,
the process's peak resident memory and the test error.

    .venv/bin/python experiments/own_data_stream.py --n 6000 --s 128 --dir /tmp/own_stream
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 12:00:00 2026 HDF5 "
HEADER += b"schema 1.00 ."

CONFIG = """
name = "stream"
[data]
path = "big.mat"
inputs = "coeff"
outputs = "sol"
stream = true
n_test = {n_test}
[model]
modes = [6, 6]
width = 8
depth = 2
padding = 0
projection_channels = 16
[train]
epochs = 1
batch_size = 50
learning_rate = 3e-3
progress = false
[eval]
plot_samples = 0
"""


def write_mat73(path: Path, n: int, s: int, chunk: int = 64) -> None:
    """`coeff` (n, s, s) random and `sol` a smoothed copy, written `chunk` samples at a time
    (the writer never holds the file in memory)."""
    rng = np.random.default_rng(0)
    k = np.fft.fftfreq(s)
    smooth = 1.0 / (1.0 + 400.0 * (k[:, None] ** 2 + k[None, :] ** 2))
    with h5py.File(path, "w", userblock_size=512) as f:
        # MATLAB stores (n, s, s) column-major: h5py sees (s, s, n).
        for name in ("coeff", "sol"):
            f.create_dataset(name, shape=(s, s, n), dtype="f8", chunks=(s, s, 8))
            f[name].attrs["MATLAB_class"] = np.bytes_("double")
        for start in range(0, n, chunk):
            a = rng.standard_normal((min(chunk, n - start), s, s))
            u = np.real(np.fft.ifft2(np.fft.fft2(a) * smooth))
            f["coeff"][..., start : start + len(a)] = a.transpose(2, 1, 0)
            f["sol"][..., start : start + len(a)] = u.transpose(2, 1, 0)
    with open(path, "r+b") as f:
        f.write(HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--s", type=int, default=128)
    parser.add_argument("--dir", default="/tmp/own_stream")
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    mat = folder / "big.mat"
    if not mat.exists():
        write_mat73(mat, args.n, args.s)
    (folder / "c.toml").write_text(CONFIG.format(n_test=max(50, args.n // 20)))
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "sciml", "run", str(folder / "c.toml")]
    run = subprocess.run(
        [*command, "--runs-dir", str(folder / "runs")], capture_output=True, text=True
    )
    if run.returncode != 0:
        sys.exit(run.stderr[-2000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)[1])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr)[1]
    run_dir = max((folder / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    print(
        json.dumps(
            {
                "file_bytes": mat.stat().st_size,
                "samples": args.n,
                "resolution": args.s,
                "peak_rss_bytes": peak_kb * 1024,
                "file_over_peak_rss": round(mat.stat().st_size / (peak_kb * 1024), 2),
                "wall": wall,
                "test_relative_l2": results["test_relative_l2"],
                "train_time_s": results["train_time_s"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
