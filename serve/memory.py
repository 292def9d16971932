"""Memory facts the engine's admission needs: the container's limit and what a process tree uses."""

from __future__ import annotations

from pathlib import Path

import psutil

# cgroup v2 and v1 files holding the memory limit, most specific first. A v1 "unlimited" limit is a
# huge number (about 2**63), which the physical-memory cap below turns into something meaningful.
_CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def cgroup_limit_bytes(files: tuple[str, ...] = _CGROUP_LIMIT_FILES) -> int | None:
    """The cgroup memory limit in bytes, or None when there is none (or it cannot be read)."""
    for name in files:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            return int(text)
        except ValueError:
            continue
    return None


def memory_limit_bytes(configured_mb: int | None) -> int:
    """What the server may use: SERVE_MEMORY_LIMIT_MB, else the cgroup limit, else physical memory."""
    if configured_mb is not None:
        return configured_mb * 1024 * 1024
    physical = psutil.virtual_memory().total
    limit = cgroup_limit_bytes()
    return physical if limit is None else min(limit, physical)


def process_memory(pid: int | None = None) -> tuple[int, int]:
    """(USS, PSS) in bytes of one process: USS is what ending it gives back, PSS its fair share."""
    info = psutil.Process(pid).memory_full_info()
    return info.uss, getattr(info, "pss", info.uss)


def tree_pss_bytes(pid: int | None = None) -> int:
    """Sum of PSS over a process and all its descendants (processes that vanish meanwhile count 0)."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += getattr(info, "pss", info.uss)
    return total
