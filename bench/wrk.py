"""wrk, driven by a Lua script: POST a body with its Content-Type over keep-alive connections, one
path or a round robin over several, and report a JSON summary from wrk's ``done`` hook.

Server CPU per request is the server tree's CPU time over the run divided by the requests; wrk's
own CPU share (its user + system time over the wall time, from ``wait4``) shows whether the load
generator, not the server, was the limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench import procs

INSTALL_HINT = "wrk is missing: install Debian's package (apt-get install -y wrk), or run ./build.sh bench"

LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = {content_type}
wrk.headers["Accept"] = "application/json"
local paths = {{{paths}}}
local f = io.open({body_file}, "rb")
wrk.body = f:read("*a")
f:close()
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class WrkResult:
    concurrency: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int  # non-2xx/3xx answers + socket errors (connect, read, write, timeout)
    non2xx: int
    socket_errors: int
    server_cpu_ms_per_request: float | None
    wrk_cpu_share: float  # wrk's CPU seconds / wall seconds (1.0 = one core busy)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(paths: list[str], body_file: Path, content_type: str) -> str:
    quoted = ", ".join(json.dumps(p) for p in paths)
    return LUA.format(content_type=json.dumps(content_type), paths=quoted, body_file=json.dumps(str(body_file)))


def _run_wrk(args: list[str], timeout_s: float) -> tuple[str, float, float]:
    """Run wrk; return its stdout, its CPU seconds (wait4's rusage) and the wall seconds."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)  # poll interval
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {text[-2000:]}")
    return text, usage.ru_utime + usage.ru_stime, wall


def run(url: str, paths: list[str], body: bytes, content_type: str, concurrency: int, seconds: float,
        server_tree: Callable[[], list[psutil.Process]] | None = None) -> WrkResult:
    """One bounded wrk run (one thread, ``concurrency`` keep-alive connections)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_lua(paths, body_file, content_type))
        args = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency",
                "-s", str(script), url]
        before = procs.cpu_seconds(server_tree()) if server_tree else {}
        text, wrk_cpu, wall = _run_wrk(args, timeout_s=seconds + 60)
        after = procs.cpu_seconds(server_tree()) if server_tree else {}
    return _parse(text, concurrency, wrk_cpu, wall, procs.cpu_delta(before, after) if server_tree else None)


def _parse(text: str, concurrency: int, wrk_cpu: float, wall: float, server_cpu: float | None) -> WrkResult:
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text[-2000:]}")
    data = json.loads(line.removeprefix("BENCH-JSON "))
    requests = int(data["requests"])
    seconds = data["duration_us"] / 1e6
    sockets = sum(int(data[k]) for k in ("connect", "read", "write", "timeout"))
    return WrkResult(
        concurrency=concurrency, seconds=seconds, requests=requests, rps=requests / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, mean_ms=data["mean_us"] / 1000,
        errors=int(data["status"]) + sockets, non2xx=int(data["status"]), socket_errors=sockets,
        server_cpu_ms_per_request=(server_cpu * 1000 / requests) if server_cpu is not None and requests else None,
        wrk_cpu_share=wrk_cpu / wall if wall else 0.0)
