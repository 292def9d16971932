"""Memory facts the engine's admission needs: the container's limit and what a process tree uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

# cgroup v2 and v1 files holding the memory limit, most specific first. A v1 "unlimited" limit is a
# huge number (about 2**63), which the physical-memory cap below turns into something meaningful.
_CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
#: (usage file, stat file, the stat's key for reclaimable file pages) of cgroup v2 and v1. Usage
#: less inactive file pages is the "working set" docker stats and the kubelet report: page cache
#: the kernel drops before it OOM-kills anything is not counted.
_CGROUP_USAGE_FILES = (("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
                       ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat",
                        "total_inactive_file"))


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


def cgroup_working_set_bytes(
        files: tuple[tuple[str, str, str], ...] = _CGROUP_USAGE_FILES) -> int | None:
    """The cgroup's usage less its inactive file pages, or None when it cannot be read."""
    for usage_file, stat_file, inactive_key in files:
        try:
            usage = int(Path(usage_file).read_text())
            stat = dict(line.split() for line in Path(stat_file).read_text().splitlines() if line.strip())
            return max(0, usage - int(stat.get(inactive_key, 0)))
        except (OSError, ValueError):
            continue
    return None


def memory_limit_bytes(configured_mb: int | None) -> int:
    """What the server may use: SERVE_MEMORY_LIMIT_MB, else the cgroup limit, else physical memory."""
    return memory_budget(configured_mb).limit


@dataclass(frozen=True)
class MemoryBudget:
    """A memory limit and the measure its enforcer applies to it.

    A cgroup limit is enforced by the kernel on the cgroup's charge, which counts what PSS does not
    (page tables, kernel stacks, socket buffers: about 1-2 MB per worker), so it is measured on the
    cgroup itself. Physical memory is shared with every other process on the machine (the other
    containers of a multi-container endpoint among them), so it is measured as the machine's memory
    in use. Both are one file read, cheap enough before and after every load. SERVE_MEMORY_LIMIT_MB
    bounds the server's own process tree: the sum of its PSS (every process's smaps)."""

    limit: int
    #: What ``used`` measures, for messages.
    measure: str
    used: Callable[[], int]
    measured_cheaply: bool


_TREE_PSS = "the server's PSS"


def memory_budget(configured_mb: int | None) -> MemoryBudget:
    """SERVE_MEMORY_LIMIT_MB, else the cgroup's limit when it is below physical memory, else physical
    memory; each with the measure described on MemoryBudget."""
    if configured_mb is not None:
        return MemoryBudget(configured_mb * 1024 * 1024, _TREE_PSS, tree_pss_bytes, measured_cheaply=False)
    physical = psutil.virtual_memory().total
    limit = cgroup_limit_bytes()
    if limit is not None and limit < physical:
        if cgroup_working_set_bytes() is None:  # a limit whose usage file is hidden: the tree's PSS
            return MemoryBudget(limit, _TREE_PSS, tree_pss_bytes, measured_cheaply=False)
        return MemoryBudget(limit, "the cgroup's working set", _cgroup_used, measured_cheaply=True)
    return MemoryBudget(physical, "the machine's memory in use", machine_used_bytes, measured_cheaply=True)


def machine_used_bytes() -> int:
    """Physical memory in use: total less what the kernel says is available without swapping
    (MemAvailable, which counts reclaimable page cache as available)."""
    figures = psutil.virtual_memory()
    return int(figures.total - figures.available)


def _cgroup_used() -> int:
    used = cgroup_working_set_bytes()
    if used is None:
        raise OSError("the cgroup's memory usage can no longer be read")
    return used


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
