"""What the run was measured on: host, CPUs, memory, load, versions."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from typing import Any

import psutil


def host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def describe() -> dict[str, Any]:
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    memory_gb = psutil.virtual_memory().total / 1e9
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "host": host(),
        "machine": f"{cores} cores ({_cpu_model()}), {memory_gb:.0f} GB, load average {load[0]:.1f} at the end",
        "cores": cores,
        "load_average_end": load,
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "wrk": _version(["wrk", "-v"]),
        "java": _version(["java", "-version"]),
    }
