"""Crash safety: SIGKILL a training run again and again, resume it, and get the same result.

tests/faults/train_driver.py trains a small FNO with `fit(..., resume=True)`, one checkpoint
per epoch (the newest two kept). It is killed 24 times: 14 times at chosen points of its file
writes (half-written checkpoint and best-model files, before an fsync, before and after each
rename, between the two files of a pruned checkpoint, a half-written or just-appended
metrics record; some of these fall into the restore phase of a resumed run) and 10 times at
random moments of its training. After every kill:

- every complete checkpoint left (a `.json` sidecar next to its `.eqx`) matches its sha256,
- the newest complete checkpoint is never older than before the kill,
- the next launch resumes from exactly that checkpoint.

Resumed to the end, the run's final checkpoint (model, optimiser state, key and best model)
and its best model are byte-identical to those of an uninterrupted run, and its metrics
records are equal (but for the timing field). The launches share a persistent compilation
cache, which changes how fast they start, not what they compute.
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sciml._atomic import RunLock

DRIVER = Path(__file__).parent / "faults" / "train_driver.py"
EPOCHS = 80
KEEP = 2
TARGETED = [
    "serialise:1:torn",
    "append:1:torn",
    "replace:2:after",
    "fsync:1:before",
    "prune:1:after",
    "serialise:3:torn",
    "replace:1:before",
    "append:2:after",
    "fsync:4:before",
    "replace:3:after",
    "prune:2:after",
    "serialise:2:torn",
    "replace:5:before",
    "append:3:torn",
]
RANDOM_KILLS = 10


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _launch(run_dir: Path, cache: Path, kill: str | None = None) -> subprocess.Popen:
    args = [sys.executable, str(DRIVER), str(run_dir), "--epochs", str(EPOCHS)]
    if kill is not None:
        args += ["--kill", kill]
    return subprocess.Popen(
        args, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _complete_checkpoints(run_dir: Path) -> dict[int, Path]:
    """The complete checkpoints by step, each checked against its recorded sha256."""
    found = {}
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return found
    for sidecar in ckpt_dir.glob("ckpt_*.json"):
        data = sidecar.with_suffix(".eqx")
        if not data.is_file():
            continue
        record = json.loads(sidecar.read_text())
        digest = hashlib.sha256(data.read_bytes()).hexdigest()
        assert digest == record["sha256"], f"corrupted complete checkpoint {data.name}"
        found[record["step"]] = data
    return found


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _resumed_from(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("resume-from: "):
            return int(line.split(": ")[1])
    raise AssertionError(f"the driver did not start: {out!r}")


def _records(run_dir: Path) -> list[dict]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("epoch_time_s")
    return records


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    cache = tmp_path / "jax-cache"
    reference = tmp_path / "reference"
    done = _launch(reference, cache)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0 and "finished" in out, err

    run = tmp_path / "killed"
    rng = random.Random(0)
    plan = TARGETED + ["random"] * RANDOM_KILLS
    rng.shuffle(plan)
    kills, newest, kinds, resumed = 0, -1, [], []
    for kill in plan:
        before = _complete_checkpoints(run)
        newest = max(before, default=-1)
        if kill == "random":
            proc = _launch(run, cache)
            lines = _lines(run / "metrics.jsonl")
            # Wait for the run to make progress, then kill it a random moment later: in a
            # step, an evaluation, or a file write.
            while proc.poll() is None and _lines(run / "metrics.jsonl") <= lines:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.06))
            proc.send_signal(signal.SIGKILL)
        else:
            proc = _launch(run, cache, kill)
        out, err = proc.communicate(timeout=600)
        assert "Traceback" not in err, err
        assert _resumed_from(out) == newest, (kill, out)
        resumed.append(newest)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            kinds.append(kill)
        else:
            assert proc.returncode == 0 and "finished" in out, (kill, proc.returncode, err)
        after = _complete_checkpoints(run)
        assert max(after, default=-1) >= newest, (kill, sorted(before), sorted(after))

    # Every targeted point was reached, and enough random kills landed before the run ended.
    assert kills >= 20, kinds
    assert set(TARGETED) <= set(kinds), set(TARGETED) - set(kinds)

    newest = max(_complete_checkpoints(run), default=-1)
    final = _launch(run, cache)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0 and "finished" in out, err
    assert _resumed_from(out) == newest

    ours, theirs = _complete_checkpoints(run), _complete_checkpoints(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == KEEP
    last = max(theirs)
    assert ours[last].read_bytes() == theirs[last].read_bytes()
    assert (run / "best_model.eqx").read_bytes() == (reference / "best_model.eqx").read_bytes()
    assert _records(run) == _records(reference)
    # No temporary file of an interrupted write is left, and the run directory is unlocked.
    leftovers = [p.name for p in run.rglob("*.tmp")]
    assert not leftovers, leftovers
    RunLock(run).release()
    random_kills = sum(k == "random" for k in kinds)
    print(
        f"\n{kills} SIGKILLs ({kills - random_kills} at chosen write points, {random_kills} at "
        f"random moments); resumed from steps {resumed}, then from {newest} to the end; final "
        f"step {last}: checkpoint, best model and {len(_records(run))} metrics records equal "
        "the uninterrupted run's"
    )


def test_a_run_directory_is_written_by_one_process_at_a_time(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from sciml._atomic import RunLock; "
            f"lock = RunLock({str(run)!r}); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"in use by another process \(pid {holder.pid}\)"):
            RunLock(run)
    finally:
        holder.send_signal(signal.SIGKILL)  # the system releases a dead process's lock
        holder.wait()
    with RunLock(run):
        with pytest.raises(RuntimeError, match="in use"):
            RunLock(run)
    RunLock(run).release()


def test_a_torn_last_metrics_line_is_dropped_and_an_earlier_one_is_an_error(tmp_path):
    from sciml.train._lifecycle import read_history

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "step": 4}\n{"epoch": 1, "st')
    assert read_history(path) == [{"epoch": 0, "step": 4}]
    path.write_text('{"epoch": 0, "st\n{"epoch": 1, "step": 8}\n')
    with pytest.raises(ValueError, match="line 1 is not a metrics record"):
        read_history(path)


def test_a_cached_dataset_is_generated_once_and_a_killed_generation_leaves_nothing(tmp_path):
    import threading

    from sciml._app.config import validate_config
    from sciml._app.datasets import dataset_path, obtain_dataset

    config = validate_config(
        {
            "data": {
                "recipe": "darcy",
                "resolution": 9,
                "solve_resolution": 17,
                "n_train": 2,
                "n_test": 1,
                "cache_dir": str(tmp_path),
            },
            "model": {"modes": [4, 4]},
            "train": {"batch_size": 2},
        }
    )
    path = dataset_path(config["data"])
    stale = tmp_path / f".{path.name}.abcd1234.tmp"  # what a SIGKILL during generation leaves
    other = tmp_path / ".other.h5.abcd1234.tmp"  # another file's write, maybe in progress
    stale.write_bytes(b"partial")
    other.write_bytes(b"partial")

    # While another process generates this file, a second run waits for it.
    holder = RunLock(tmp_path, lock_name=f".{path.name}.lock")
    finished = threading.Event()
    thread = threading.Thread(target=lambda: (obtain_dataset(config["data"]), finished.set()))
    thread.start()
    time.sleep(0.5)
    assert not finished.is_set() and not path.exists()
    holder.release()
    thread.join(timeout=300)
    assert finished.is_set() and path.is_file()
    assert not stale.exists() and other.exists()
    before = path.stat().st_mtime_ns
    assert len(obtain_dataset(config["data"])) == 3
    assert path.stat().st_mtime_ns == before  # generated once
