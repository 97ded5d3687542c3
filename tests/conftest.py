import fcntl
import itertools
import os
import shutil
from pathlib import Path

# XLA's CPU backend compiles the suite's programs without LLVM's optimisation passes: the tests
# run small programs a few times each, so compiling them, not running them, is most of the
# suite's time (about half of its CPU time goes away). XLA's own graph optimisations still run
# and results agree with the optimised build to rounding (measured: 2e-15 relative on an FNO
# gradient in float64), far inside every tolerance here. Set by the environment, so that the
# suite's subprocesses (CLI runs, notebooks, multi-device checks) inherit it; to test the
# optimised build, give `--xla_backend_optimization_level=N` in XLA_FLAGS yourself.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import signal  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# A shell without job control starts background commands with SIGINT ignored, and commands keep
# that (POSIX; `sciml` too). The tests that interrupt a command with SIGINT need it delivered:
# their subprocesses inherit the default disposition from here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass

# Numerical comparisons against dense references need float64; tests that exercise the float32
# path build float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """Returns a function that hands out a fresh PRNG key on every call (deterministic per test)."""
    counter = itertools.count()
    base = jax.random.key(0)
    return lambda: jax.random.fold_in(base, next(counter))


@pytest.fixture(scope="session")
def once_per_run(tmp_path_factory):
    """`once_per_run(name, build)` calls `build(path)` on a fresh directory once per test run
    and returns `path`, also when pytest-xdist spreads the tests that need it over several
    workers (for expensive session fixtures such as a subprocess with 8 devices, the docs site).

    The workers of one run share the parent of their temporary directories: the first to get
    the lock builds, the others wait for it and reuse the result. A failed build is retried by
    the next worker, which then reports the failure too.
    """

    def run(name: str, build) -> Path:
        if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: a session fixture
            path = tmp_path_factory.mktemp(name)
            build(path)
            return path
        root = tmp_path_factory.getbasetemp().parent
        path = root / name
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (path / ".complete").is_file():
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir()
                build(path)
                (path / ".complete").touch()
        return path

    return run


@pytest.fixture(autouse=True)
def _untyped(request):
    """Tests marked `untyped` run without jaxtyping's runtime type checks.

    The suite runs with `--jaxtyping-packages=sciml,beartype.beartype` (pyproject.toml), so a
    call whose arguments disagree with sciml's annotations fails in the checker. A few tests
    pass a wrongly-typed argument on purpose, to check the message sciml itself gives to a
    user who runs without the checker; only those carry the marker. jaxtyping reads
    `jaxtyping_disable` at every call, so switching it here is enough.
    """
    if request.node.get_closest_marker("untyped") is None:
        yield
        return
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)
