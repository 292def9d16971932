"""A server's process tree: CPU time, memory (PSS) and what is left after SIGTERM.

A tree is the root process and its descendants, plus (for servers started in their own session,
like AWS's launcher, whose ``multi-model-server --start`` detaches Java from it) every process in
the root's session, so a detached or orphaned process still counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

MB = 1024 * 1024


def session_members(sid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def tree(root_pid: int, session: bool) -> list[psutil.Process]:
    """The root, its descendants and (with ``session``) every process of the root's session."""
    procs: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            procs[proc.pid] = proc
    except psutil.NoSuchProcess:
        pass
    if session:
        for proc in session_members(root_pid):
            procs.setdefault(proc.pid, proc)
    return list(procs.values())


def _cpu_times(procs: list[psutil.Process]) -> dict[int, Any]:
    """psutil's CPU times of each live process (one that exited meanwhile is left out)."""
    out = {}
    for proc in procs:
        try:
            out[proc.pid] = proc.cpu_times()
        except psutil.Error:
            continue
    return out


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each live process (reaped children included)."""
    return {pid: t.user + t.system + t.children_user + t.children_system for pid, t in _cpu_times(procs).items()}


def cpu_split(procs: list[psutil.Process]) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each live process, apart and its own only (not its children's)."""
    return {pid: (t.user, t.system) for pid, t in _cpu_times(procs).items()}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots; processes born in between count in full."""
    return sum(max(0.0, value - before.get(pid, 0.0)) for pid, value in after.items())


def settled_tree(list_tree: Callable[[], list[psutil.Process]], quiet_s: float = 0.2,
                 deadline_s: float = 5.0) -> list[psutil.Process]:
    """The tree once its set of processes has stayed the same for ``quiet_s`` (or as it is at the
    deadline). A server may still be starting a process after it answered: the native engine forks
    its spare MME worker once a load has finished, and a PSS reading taken during that fork missed
    the spare in one round of bench/results/2026-12-01-vm2 (149 MB at 1 model against 180 at 0)."""
    deadline = time.monotonic() + deadline_s
    procs = list_tree()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        again = list_tree()
        if {p.pid for p in again} != {p.pid for p in procs}:
            procs, quiet_since = again, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
    return procs


def pss_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        total += getattr(info, "pss", info.uss)
    return total


@dataclass
class StopResult:
    seconds: float  # SIGTERM to the root's exit
    exit_code: int | None
    left: int  # processes of the tree still alive 2 s after the root exited (then killed by PID)
    killed_root: bool  # the root outlived the grace period and was SIGKILLed
    left_commands: list[str]  # what was left, for the raw JSON


def terminate(process: subprocess.Popen[bytes], session: bool, grace_s: float) -> StopResult:
    """SIGTERM the root by PID, time its exit, then count and kill what the tree left behind."""
    members = tree(process.pid, session)
    started = time.perf_counter()
    killed = False
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            killed = True
    seconds = time.perf_counter() - started
    others = [p for p in members if p.pid != process.pid]
    _, alive = psutil.wait_procs(others, timeout=2)
    if session:
        alive = list({p.pid: p for p in [*alive, *session_members(process.pid)]}.values())
    alive = [p for p in alive if _running(p)]  # a zombie (reparented, not yet reaped) is gone
    commands = [_command(p) for p in alive]
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return StopResult(seconds, process.returncode, len(alive), killed, commands)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return f"pid {proc.pid} (gone)"
