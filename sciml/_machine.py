"""What this machine can still give a run: memory and disk, one reading for every check.

The size budget of configs (`sciml._budget`) and the memory check of `load_dataset` both ask
here, so that they agree. `SCIML_MEMORY_BYTES` and `SCIML_DISK_BYTES` override the readings
(tests, or a user who knows better).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path


class MachineSettingError(ValueError):
    """An override variable holds something other than a number of bytes."""


def _env_bytes(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise MachineSettingError(
            f"environment variable {name} = {shown!r} is invalid: expected a number of "
            "bytes >= 0, e.g. 24e9"
        )
    return int(value)


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup limit (v2 or v1), if it has one. The page cache
    that the kernel can reclaim (inactive file pages) counts as available, as for
    `MemAvailable`: a cgroup's usage includes the cache of every file read."""
    for limit, usage, stat in (
        (
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory.current",
            "/sys/fs/cgroup/memory.stat",
        ),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "/sys/fs/cgroup/memory/memory.stat",
        ),
    ):
        try:
            total = int(Path(limit).read_text().strip())
            used = int(Path(usage).read_text().strip())
        except (OSError, ValueError):  # no such file, or "max"
            continue
        if total >= 2**60:  # v1 writes "no limit" as a huge number
            return None
        reclaimable = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(stat).read_text().splitlines():
                if line.startswith(("inactive_file ", "total_inactive_file ")):
                    reclaimable = int(line.split()[1])
                    break
        return max(total - used + reclaimable, 0)
    return None


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate without swapping: `SCIML_MEMORY_BYTES`
    if set, else `MemAvailable` of `/proc/meminfo` (or the free physical pages), capped by a
    cgroup limit; `None` where it cannot be known.

    **Raises:**

    `MachineSettingError` if `SCIML_MEMORY_BYTES` is not a number of bytes.
    """
    override = _env_bytes("SCIML_MEMORY_BYTES")
    if override is not None:
        return override
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    if available is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_available()
    if available is None:
        return limit
    return available if limit is None else min(available, limit)


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent):
    `SCIML_DISK_BYTES` if set; `None` where it cannot be known.

    **Raises:**

    `MachineSettingError` if `SCIML_DISK_BYTES` is not a number of bytes.
    """
    override = _env_bytes("SCIML_DISK_BYTES")
    if override is not None:
        return override
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
