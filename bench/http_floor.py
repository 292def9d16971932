"""python -m bench.http_floor [--seconds S] [--rounds N]

The loopback HTTP floor of this machine at concurrency 1: what a request costs before any server
code runs. Two servers that do nothing, each measured with wrk exactly as the bench measures the
contenders (the scikit-learn CSV request, one keep-alive connection):

- raw: a uvloop protocol that answers every request head with a fixed 200 response (no parsing);
- uvicorn: uvicorn (httptools, uvloop) with a five-line ASGI app that reads the body and answers 200.

A server built on uvicorn cannot have a p50 below the second figure above the in-process floor;
docs/engines.md ("Where a request's time goes") compares the native engine's prefork workers with it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

from bench import artifacts, wrk
from tests.support.server import free_port, stop_process

FIXED_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\ncontent-length: 2\r\n\r\n0\n"
SERVERS = ("raw", "uvicorn")
READY_DEADLINE_S = 30.0


class FixedResponse(asyncio.Protocol):
    """Answers each request head with ``FIXED_RESPONSE`` (bodies are small and arrive with it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(FIXED_RESPONSE)


async def _serve_raw(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FixedResponse, "127.0.0.1", port)
    await server.serve_forever()


async def minimal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/csv")]})
    await send({"type": "http.response.body", "body": b"0\n"})


def serve(kind: str, port: int) -> None:
    import uvicorn
    import uvloop

    if kind == "raw":
        uvloop.run(_serve_raw(port))
    else:
        uvicorn.run(minimal_app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the floor server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet, with a deadline
    raise RuntimeError(f"the floor server did not listen on {port} within {READY_DEADLINE_S:.0f} s")


def measure(kind: str, seconds: float) -> wrk.WrkResult:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.http_floor", "--serve", kind, "--port", str(port)])
    try:
        _wait_listening(port, process)
        return wrk.run(f"http://127.0.0.1:{port}", ["/invocations"], artifacts.body("sklearn", "csv"),
                       "text/csv", 1, seconds)
    finally:
        stop_process(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, servers alternating (default 2)")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if not wrk.available():
        print("python -m bench.http_floor: wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 1
    print("| server, c1 | p50 ms | p99 ms | req/s |\n|---|---|---|---|")
    for _ in range(args.rounds):
        for kind in SERVERS:
            result = measure(kind, args.seconds)
            print(f"| {kind} | {result.p50_ms:.3f} | {result.p99_ms:.3f} | {result.rps:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
