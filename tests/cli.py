"""Running the `sciml` command line from tests, in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path


def run_sciml(*args: str, cwd) -> subprocess.CompletedProcess:
    """`python -m sciml ARGS` in `cwd` on the CPU, output captured as text.

    A test's processes (a run, its resume, an eval) share their XLA compilations through a
    persistent cache in `cwd/.jax_cache`: the later ones load rather than recompile.
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["JAX_COMPILATION_CACHE_DIR"] = str(Path(cwd) / ".jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "sciml", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
