"""Atomic file writes: write to a temporary file in the target directory, fsync, rename."""

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator


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
