"""What a hostile or unlucky environment does to a run, and what sciml does about it.

One test (or a few) per defect of the "Reliability II" list: signals in every phase, lock files
and appended files that are symbolic links, model and config files changed on disk, runs
started in the same second, disk-full writes, corrupt newest checkpoints, inputs changed
between a run's sessions, and failed starts. Sizes and dataset files have their own tests
(tests/test_budget.py, tests/test_dataset_limits.py, the fuzz modules).
"""

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from unittest import mock

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

from sciml import _signals, train
from sciml._app.cli import main
from sciml._app.config import load_config
from sciml._app.rundir import new_run_dir
from sciml._atomic import RunLock, StorageError, append_line

REPO = Path(__file__).parent.parent
QUICKSTART = REPO / "experiments" / "quickstart.toml"
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
]


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / ".jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def _sciml(*args, cwd: Path, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sciml", *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        **kwargs,
    )


# A small `fit` problem: a linear model on 8 samples, one checkpoint per epoch.
def _fit(run_dir, *, epochs, resume=False, keep=3, model=None):
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)
    y = np.stack([x.sum(1), x[:, 0] - x[:, 3]], axis=1).astype(np.float32)
    model = model or eqx.nn.Linear(4, 2, key=jax.random.key(0))
    return train.fit(
        model,
        train.batch_loss(train.mse),
        (x, y),
        optimizer=optax.adam(1e-2),
        epochs=epochs,
        batch_size=4,
        eval_data=(x, y),
        key=jax.random.key(1),
        run_dir=run_dir,
        keep_checkpoints=keep,
        resume=resume,
        progress=False,
    )


def _flip_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- 4. signals ----------------------------------------------------------------------------


def test_a_signal_inside_a_gc_callback_is_deferred_not_swallowed(capfd):
    """Python prints and swallows an exception raised in a garbage-collector callback (JAX
    registers one); the signal is kept and raised at the next `check()`."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs here, inside the callback

    with _signals.handled():
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        assert _signals.pending() == signal.SIGINT
        with pytest.raises(_signals.Interrupted) as caught:
            # Either the retry timer or the next check raises it, out of the callback.
            for _ in range(100):
                _signals.check()
                time.sleep(0.01)
    assert caught.value.exit_status == 130
    assert "Exception ignored" not in capfd.readouterr().err
    # Outside a command the interpreter's own handler is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.untyped  # a stand-in for a frame inside JAX
def test_a_signal_in_a_jax_frame_is_deferred_to_a_safe_frame():
    frame = mock.Mock()
    frame.f_code.co_filename = os.path.join("site-packages", "jax", "_src", "lib", "x.py")
    frame.f_back = None
    assert _signals._unsafe(frame)
    assert not _signals._unsafe(sys._getframe())


def test_a_signal_in_a_weakref_callback_or_finalizer_is_deferred():
    """Python prints and ignores what a weakref callback or a `__del__` raises: the interrupt
    waits for a frame where it propagates."""
    import weakref

    seen = []

    class Finalized:
        def __del__(self):
            seen.append(_signals._unsafe(sys._getframe()))

    class Target:
        pass

    target = Target()
    weakref.finalize(target, lambda: seen.append(_signals._unsafe(sys._getframe(1))))
    values = weakref.WeakValueDictionary()
    values["t"] = target
    del target
    Finalized()
    assert seen and all(seen), seen


def _start_run(tmp_path: Path, runs: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sciml",
            "run",
            str(QUICKSTART),
            "--runs-dir",
            runs,
            *_sets([*TINY, "train.epochs=5000"]),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_sigterm_handler(proc: subprocess.Popen) -> None:
    """Until the command has installed its handlers (SIGTERM caught: /proc's SigCgt mask);
    before that the interpreter is still starting, and Python's defaults apply."""
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        if int(fields["SigCgt"], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError("the command did not install its signal handlers")


def _one_error_line(err: str, sig: int) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0], err[-2000:]
    return lines[0]


@pytest.mark.slow
def test_sigint_and_sigterm_stop_a_run_in_every_phase_with_one_line(tmp_path):
    """SIGINT/SIGTERM at start-up, during data generation and compilation: exit 130/143 with
    one line, never a traceback, never exit 0, no run directory left. During training: the
    same, and the run then resumes to its end."""
    phases = [("handlers", 0.0, 2), ("handlers", 0.3, 2), ("output", 1.0, 2), ("output", 2.0, 15)]
    for i, (after, delay, sig) in enumerate(phases):
        proc = _start_run(tmp_path, f"early{i}")
        if after == "handlers":  # importing JAX and checking the config
            _wait_for_sigterm_handler(proc)
        else:  # generating data, compiling
            assert proc.stdout.readline().startswith("run directory:")
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, (delay, proc.returncode, err[-2000:])
        line = _one_error_line(err, sig)
        runs = tmp_path / f"early{i}"
        if "before training started" in line:
            assert not runs.is_dir() or not any(runs.iterdir())
    proc = _start_run(tmp_path, "runs")
    deadline = time.monotonic() + 240
    metrics = []
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = list((tmp_path / "runs").glob("*/metrics.jsonl"))
        if metrics and metrics[0].read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "resume it with: sciml run --resume" in _one_error_line(err, signal.SIGINT)
    run_dir = metrics[0].parent
    done = _sciml("run", "--resume", str(run_dir), "--set", "train.epochs=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs = [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == sorted(epochs) and epochs[-1] >= 2


# -- 5. symbolic links ---------------------------------------------------------------------


@pytest.mark.parametrize("lock_name", [".lock", ".darcy_s9_n12_seed0.h5.lock"])
def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, lock_name):
    victim = tmp_path / "precious.txt"
    victim.write_text("user data\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / lock_name).symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        RunLock(run, lock_name=lock_name)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file"):
        RunLock(tmp_path, lock_name="fifo")  # would block forever if opened for reading
    assert victim.read_text() == "user data\n"


def test_fit_refuses_a_symlinked_lock_or_metrics_file(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("user data\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        _fit(run, epochs=1)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        append_line(tmp_path / "metrics.jsonl", "{}\n")
    assert victim.read_text() == "user data\n"


# -- 6. the best model is checksummed -------------------------------------------------------


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """A run directory as `sciml run` leaves it, with an untrained model (eval only needs its
    structure); evaluated once intact to fill the data cache."""
    from sciml._app.operator_run import build_normalized_model
    from sciml._app.rundir import write_config

    root = tmp_path_factory.mktemp("eval")
    config = load_config(QUICKSTART, [*TINY, f'data.cache_dir="{root / "data"}"'])
    run_dir = root / "run"
    run_dir.mkdir()
    write_config(run_dir, config)
    x = np.zeros((2, 1, 9, 9), np.float32)
    model = build_normalized_model(config, x, x, key=jax.random.key(0))
    train.save_model_file(run_dir / "best_model.eqx", model)
    return run_dir


def _eval(run_dir, capsys):
    status = main(["eval", str(run_dir), "--n", "2"])
    return status, capsys.readouterr().err


def test_eval_refuses_a_corrupted_truncated_or_foreign_best_model(eval_run, tmp_path, capsys):
    import shutil

    status, err = _eval(eval_run, capsys)
    assert status == 0, err
    cases = {
        "flipped": lambda p: _flip_byte(p),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
        "foreign": lambda p: p.write_bytes(b"not an equinox file at all"),
    }
    for name, damage in cases.items():
        run = tmp_path / name
        shutil.copytree(eval_run, run)
        damage(run / "best_model.eqx")
        status, err = _eval(run, capsys)
        assert status == 2, (name, err)
        assert err.count("\n") == 1 and "best_model.eqx" in err, (name, err)
        assert "corrupted" in err or "does not hold" in err, (name, err)
    # A model that fits its checksum but not the run's structure (e.g. another config).
    run = tmp_path / "other"
    shutil.copytree(eval_run, run)
    train.save_model_file(run / "best_model.eqx", eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    status, err = _eval(run, capsys)
    assert status == 2 and "does not hold a model of the run's structure" in err, err


def test_a_model_file_survives_a_crash_between_its_two_writes(tmp_path):
    path = tmp_path / "best_model.eqx"
    a, b = (eqx.nn.Linear(2, 2, key=jax.random.key(k)) for k in (0, 1))
    train.save_model_file(path, a)
    real_replace = os.replace

    def crash_on_the_model(src, dst):
        if str(dst).endswith(".eqx"):
            raise KeyboardInterrupt  # killed after the sidecar, before the model's rename
        real_replace(src, dst)

    with mock.patch("sciml._atomic.os.replace", crash_on_the_model):
        with pytest.raises(KeyboardInterrupt):
            train.save_model_file(path, b)
    restored = train.load_model_file(path, b)  # the old model, and it verifies
    assert np.array_equal(restored.weight, a.weight)


# -- 7. run directories ---------------------------------------------------------------------


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    made, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        made.append(new_run_dir(tmp_path, "run"))

    with mock.patch("sciml._app.rundir.time.strftime", return_value="20261207-080000"):
        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


def test_a_run_directory_is_locked_before_its_config_is_written(tmp_path):
    from sciml._app.experiment import run_experiment

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("name = 'holder'\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from sciml._atomic import RunLock; lock = RunLock({str(run)!r}); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = load_config(QUICKSTART, TINY)
        with pytest.raises(RuntimeError, match="in use by another process"):
            run_experiment(config, run, resume=False)
    finally:
        holder.kill()
        holder.wait()
    assert (run / "config.toml").read_text() == "name = 'holder'\n"


def test_a_failed_start_leaves_no_run_directory(tmp_path, capsys):
    not_a_dataset = tmp_path / "x.h5"
    not_a_dataset.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    status = main(
        [
            "run",
            str(QUICKSTART),
            "--runs-dir",
            str(tmp_path / "runs"),
            *_sets([*TINY, f'data.path="{not_a_dataset}"']),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "x.h5" in err, err
    assert not any((tmp_path / "runs").iterdir())


# -- 8. messages that name the real cause ---------------------------------------------------


def test_a_full_disk_during_a_checkpoint_write_names_the_cause(tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    model = eqx.nn.Linear(2, 2, key=jax.random.key(0))
    with mock.patch("numpy.save", full), mock.patch("jax.numpy.save", full, create=True):
        with pytest.raises(StorageError, match="no space left on the device") as caught:
            train.save_checkpoint(tmp_path / "ckpt", 3, {"model": model})
    assert "ckpt_00000003.eqx" in str(caught.value)
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_sciml_run_out_of_disk_space_says_so_in_one_line(tmp_path):
    """A real failing write (a file-size limit: EFBIG, as a full disk gives ENOSPC) during
    training: one line naming the file and the cause, exit 1, the data intact."""
    ok = _sciml("data", "darcy", "--n", "12", "--resolution", "9", "--solve-resolution", "33",
                "--out", "d.h5", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    before = (tmp_path / "d.h5").read_bytes()
    command = [sys.executable, "-m", "sciml", "run", str(QUICKSTART)]
    command += _sets([*TINY, 'data.path="d.h5"', "train.epochs=2", "model.width=24"])
    # Files of at most 60 kB (the checkpoints are larger); SIGXFSZ ignored, so that a write
    # past the limit fails (EFBIG) instead of killing the process.
    shell = "ulimit -f 60; trap '' XFSZ; exec \"$@\""
    out = subprocess.run(
        ["bash", "-c", shell, "bash", *command],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: cannot write") and "file size limit exceeded" in line, line
    assert "ckpt_" in line or "best_model" in line, line
    assert "Traceback" not in out.stderr and "TreePathError" not in out.stderr
    assert (tmp_path / "d.h5").read_bytes() == before


def test_a_truncated_config_toml_is_named_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    from sciml._app.rundir import write_config

    write_config(run, load_config(QUICKSTART, TINY))
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")
    status = main(["run", "--resume", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and "config.toml' was changed or damaged" in err, err
    assert err.count("\n") == 1


# -- 9. a corrupt newest checkpoint ---------------------------------------------------------


def test_resume_falls_back_to_the_newest_valid_checkpoint(tmp_path):
    reference, _ = _fit(tmp_path / "reference", epochs=4)
    run = tmp_path / "run"
    _fit(run, epochs=3)
    newest = train.latest_checkpoint(run / "checkpoints")
    _flip_byte(newest)
    with pytest.warns(RuntimeWarning, match=r"ckpt_00000006.eqx corrupted .* the older"):
        resumed, history = _fit(run, epochs=4, resume=True)
    assert (run / "checkpoints" / "ckpt_00000006.eqx.corrupt").is_file()  # kept, set aside
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert np.array_equal(resumed.weight, reference.weight)  # as if never interrupted
    # With every checkpoint corrupted there is nothing to fall back to: an error, nothing moved.
    for path in (run / "checkpoints").glob("ckpt_*.eqx"):
        _flip_byte(path)
    with pytest.raises(train.CorruptCheckpointError, match="every checkpoint"):
        _fit(run, epochs=5, resume=True)


# -- 10. inputs changed between sessions ----------------------------------------------------


def test_an_edited_metrics_file_is_refused_on_resume(tmp_path):
    run = tmp_path / "run"
    _fit(run, epochs=2)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["eval_relative_l2"] = 0.0  # would make epoch 0 the best
    (run / "metrics.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl` was changed since"):
        _fit(run, epochs=3, resume=True)


def test_resume_refuses_an_edited_config_and_overrides_that_change_the_run(tmp_path, capsys):
    from sciml._app.rundir import write_config

    run = tmp_path / "run"
    run.mkdir()
    write_config(run, load_config(QUICKSTART, TINY))
    status = main(["run", "--resume", str(run), "--set", "data.seed=3"])
    err = capsys.readouterr().err
    assert status == 2 and "config key 'data.seed' cannot change on --resume" in err, err
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("seed = 0", "seed = 5", 1))
    status = main(["run", "--resume", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and "was changed or damaged since the run started" in err, err


def test_a_cached_dataset_that_does_not_match_the_config_is_refused(tmp_path):
    from sciml._app.datasets import dataset_path, obtain_dataset
    from sciml.data import DatasetError, make_dataset

    config = load_config(QUICKSTART, [*TINY, f'data.cache_dir="{tmp_path}"'])
    path = dataset_path(config["data"])
    # Another seed's data under this config's cache name (e.g. a file copied over it).
    make_dataset("darcy", path, n=12, resolution=9, seed=7, solve_resolution=33, progress=False)
    with pytest.raises(DatasetError, match="it was made with seed = 7, the config asks for 0"):
        obtain_dataset(config["data"], progress=False)


# -- minor: one line per warning ------------------------------------------------------------


def test_warnings_of_a_command_are_one_line():
    from sciml._app.cli import _one_line_warnings

    message = "fit: non-finite loss at step 3;\n rolled back"
    with _one_line_warnings():
        line = warnings.formatwarning(message, RuntimeWarning, "_fit.py", 500, "warn(...)")
    assert line == "warning: fit: non-finite loss at step 3; rolled back\n"
    assert warnings.formatwarning(message, RuntimeWarning, "_fit.py", 500).count("\n") > 1


# -- 1. sizes: the command line refuses them before anything exists -------------------------


@pytest.mark.parametrize(
    "args, key",
    [
        (["run", str(QUICKSTART), "--set", "data.resolution=1000000000"], "data.resolution"),
        (["run", str(QUICKSTART), "--set", "model.depth=100000000"], "model.depth"),
        (["run", str(QUICKSTART), "--set", "data.n_train=1000000000000"], "data.n_train"),
        (["run", str(QUICKSTART), "--sweep", "model.width=8,1000000000"], "model.width"),
        (["data", "darcy", "--n", "1000000000", "--resolution", "64", "--out", "x.h5"], "--n"),
    ],
)
def test_absurd_sizes_are_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, args, key
):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    status = main(args)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert status == 2 and key in err and err.count("\n") == 1, err
    assert elapsed < 5, elapsed
    assert list(tmp_path.iterdir()) == []  # no run directory, no data file


def test_allow_large_lets_a_merely_large_run_through_the_check():
    from sciml._app.budget import check_run_budget
    from sciml._app.config import ConfigError

    config = load_config(QUICKSTART, ["model.projection_channels=1000000"])
    with pytest.raises(ConfigError, match="--allow-large"):
        check_run_budget(config, memory_bytes=8 << 30)
    check_run_budget(config, allow_large=True, memory_bytes=8 << 30)


def test_eval_refuses_an_absurd_test_set_before_generating_it(eval_run, capsys):
    status = main(["eval", str(eval_run), "--n", "2000000000", "--resolution", "4097"])
    err = capsys.readouterr().err
    assert status == 2 and "sciml eval: --" in err and err.count("\n") == 1, err
