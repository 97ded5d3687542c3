"""Atomic file writes (temporary file in the target directory, fsync, rename), run-directory
locks, and one-line errors for a failed write.

Nothing here follows a symbolic link that it did not create: lock files and appended files are
opened with `O_NOFOLLOW`, temporaries are created with `O_EXCL`.
"""

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import re
import stat
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# What a failed write means, for the errors a user can do something about.
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ELOOP: "it is a symbolic link, which is not followed",
    errno.EIO: "input/output error of the device",
}


class StorageError(OSError):
    """A file could not be written or read for a reason of the file system (disk full, no
    permission, read-only, a symbolic link where a file was expected); the message is one line
    naming the path and the cause."""

    def __str__(self) -> str:
        return str(self.strerror)


def storage_error(error: BaseException, path: str | os.PathLike) -> StorageError | None:
    """The `StorageError` that explains `error` (or an exception it was raised from, e.g. a
    `jax` tree error around an `OSError`) while writing `path`; `None` if no `OSError` of the
    file system is behind it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageError):
            return error
        if isinstance(error, OSError) and error.errno in _CAUSES:
            return StorageError(error.errno, f"cannot write '{path}': {_CAUSES[error.errno]}")
        if isinstance(error, OSError) and error.errno is None and _SHORT_WRITE.search(str(error)):
            return _short_write(path)
        error = error.__cause__ or error.__context__
    return None


# NumPy's writers report a write cut short by the device without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _short_write(path: str | os.PathLike) -> StorageError:
    """Why a write to `path` was cut short: a full device or a file-size limit."""
    try:
        st = os.statvfs(pathlib.Path(path).parent)
        full = st.f_bavail * st.f_frsize < (1 << 20)
    except OSError:
        full = False
    try:
        import resource

        limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        limited = False
    if full or not limited:
        return StorageError(errno.ENOSPC, f"cannot write '{path}': {_CAUSES[errno.ENOSPC]}")
    return StorageError(errno.EFBIG, f"cannot write '{path}': {_CAUSES[errno.EFBIG]}")


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """`os.open` that refuses a symbolic link at `path` (`StorageError`) and anything but a
    regular file (a FIFO or a device would block or misbehave)."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StorageError(
                e.errno,
                f"'{path}' is a symbolic link; refusing to follow it (remove it: sciml creates "
                "this file itself)",
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(
            errno.EINVAL, f"'{path}' is not a regular file; remove it (sciml creates it itself)"
        )
    os.set_blocking(fd, True)
    return fd


def append_line(path: str | os.PathLike, line: str) -> None:
    """Appends `line` (with its newline) to `path` and fsyncs it; a symbolic link at `path` is
    refused, not followed."""
    try:
        fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            data = line.encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise storage_error(e, path) or e from e


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with O_EXCL (never through a link), private (0600); give it
        # the permissions a plain open() would.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise storage_error(e, path) or e from e
    tmp = pathlib.Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
    finally:
        os.close(fd)
    try:
        yield tmp
        fd = open_nofollow(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception):
            translated = storage_error(e, path)
            if translated is not None:
                raise translated from e
        raise
    _fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def checksummed_path(path: str | os.PathLike, sidecar: str | os.PathLike) -> Iterator[pathlib.Path]:
    """`atomic_path` for a file that is read back later: its SHA-256 goes to the JSON file
    `sidecar` (`{"file", "sha256", "previous_sha256"}`), which `checksum_matches` checks.

    The sidecar is written before the file is renamed into place and names both the new and
    the previous checksum, so that a crash between the two renames leaves a pair that still
    verifies.
    """
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        yield tmp
        previous = file_sha256(path) if path.is_file() else None
        record = {"file": path.name, "sha256": file_sha256(tmp), "previous_sha256": previous}
        atomic_write_bytes(sidecar, (json.dumps(record, indent=2) + "\n").encode())


def checksum_matches(path: str | os.PathLike, sidecar: str | os.PathLike) -> bool | None:
    """Whether `path` holds what `checksummed_path` recorded in `sidecar` (the new or the
    previous checksum); `None` if there is no sidecar (a file written before it had one).

    **Raises:**

    `ValueError` if the sidecar is not such a record.
    """
    try:
        record = json.loads(pathlib.Path(sidecar).read_text())
        accepted = {record["sha256"], record.get("previous_sha256")} - {None}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"`{sidecar}` is damaged (not a checksum record)") from None
    return file_sha256(path) in accepted


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


# Run directories this process holds for a whole run (`RunLock(..., scope=True)`): a `RunLock`
# of the same directory taken inside the scope joins it instead of failing.
_SCOPES: dict[tuple[int, int], int] = {}


class RunLock:
    """An exclusive lock on a run directory, so that two processes never write one run.

    Takes an advisory `flock` on `directory/.lock` (created with the directory if missing)
    and writes the holder's process id into it. The operating system releases the lock when
    the process ends, however it ends (SIGKILL included), so a crashed run never leaves a
    stale lock. The lock file is opened without following a symbolic link: a link (or
    anything but a regular file) at its name is refused, never written through. Where `fcntl`
    is unavailable (Windows) the lock is a no-op.

    **Arguments:**

    - `directory`: the directory to lock.
    - `wait`: block until the lock is free instead of raising.
    - `lock_name`: the lock file's name in `directory` (several independent locks in one
        directory, e.g. one per dataset file of a cache).
    - `scope`: hold the directory for a whole run of this process: a `RunLock` of the same
        directory taken while this one is held (e.g. by `fit` inside `sciml run`) joins it
        instead of failing, and releasing that one keeps the lock.

    **Raises:**

    `RuntimeError` naming the directory and the holder's process id if another process (or
    another open `RunLock` in this one, outside a `scope`) holds it and `wait` is false;
    `StorageError` if the lock file is a symbolic link or not a regular file.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        wait: bool = False,
        lock_name: str = ".lock",
        scope: bool = False,
    ):
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._joined: tuple[int, int] | None = None
        self._scope: tuple[int, int] | None = None
        if fcntl is None:
            return
        fd = open_nofollow(directory / lock_name, os.O_RDWR | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        if identity in _SCOPES and not scope:
            os.close(fd)
            _SCOPES[identity] += 1
            self._joined = identity
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RuntimeError(
                f"run directory '{directory}' is in use by another process (pid {holder}); "
                "wait for it to finish, or use another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if scope:
            _SCOPES[identity] = 1
            self._scope = identity

    def release(self) -> None:
        """Releases the lock (idempotent); a lock that joined a scope leaves it held."""
        if self._joined is not None:
            _SCOPES[self._joined] -= 1
            self._joined = None
            return
        if self._fd is not None:
            if self._scope is not None:
                _SCOPES.pop(self._scope, None)
                self._scope = None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
