"""Atomic file writes: write to a temporary file in the target directory, fsync, rename."""

import contextlib
import os
import pathlib
import re
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def _fsync_directory(directory: pathlib.Path) -> None:
    # Makes the rename itself durable. Not every platform/filesystem allows opening a
    # directory; the rename is still atomic there, just not guaranteed durable.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path next to `path`; on success it is fsynced and renamed to `path`.

    Readers therefore see either the old file or the complete new one, never a partial
    write. On an exception the temporary file is removed and `path` is left untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = pathlib.Path(tmp)
    # mkstemp creates the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# `atomic_path`'s temporary files: ".<target name>.<8 random characters>.tmp".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_temporaries(
    directory: str | os.PathLike, *, target: str | None = None
) -> list[pathlib.Path]:
    """Deletes the temporary files that writes interrupted by a crash left in `directory`.

    Only files named like `atomic_path`'s temporaries (`.<name>.<8 characters>.tmp`) are
    touched, never a complete file; with `target`, only those of the file named `target`.
    Call it only while no other process writes them (e.g. holding a `RunLock`).

    **Returns:**

    The paths removed.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        # ".<target>.<8 characters>.tmp"
        mine = target is None or (
            entry.name.startswith(f".{target}.") and len(entry.name) == len(target) + 14
        )
        if _TEMPORARY.match(entry.name) and mine and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class RunLock:
    """An exclusive lock on a run directory, so that two processes never write one run.

    Takes an advisory `flock` on `directory/.lock` (created with the directory if missing)
    and writes the holder's process id into it. The operating system releases the lock when
    the process ends, however it ends (SIGKILL included), so a crashed run never leaves a
    stale lock. Where `fcntl` is unavailable (Windows) the lock is a no-op.

    **Arguments:**

    - `directory`: the directory to lock.
    - `wait`: block until the lock is free instead of raising.
    - `lock_name`: the lock file's name in `directory` (several independent locks in one
        directory, e.g. one per dataset file of a cache).

    **Raises:**

    `RuntimeError` naming the directory and the holder's process id if another process (or
    another open `RunLock` in this one) holds it and `wait` is false.
    """

    def __init__(self, directory: str | os.PathLike, *, wait: bool = False, lock_name=".lock"):
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._file = None
        if fcntl is None:
            return
        f = open(directory / lock_name, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RuntimeError(
                f"run directory '{directory}' is in use by another process (pid {holder}); "
                "wait for it to finish, or use another directory"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        """Releases the lock (idempotent)."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
