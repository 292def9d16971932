"""Run the real ``serve`` entrypoint as a subprocess on a free loopback port, and always stop it.

One helper for every layer's tests (serve contract, engines, harness): readiness is polled with a
deadline, the server is stopped by its PID, and leftover child processes are reported as a failure.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

#: multi-model-server refuses ports >= 32767 (its ``Connector.parse``: ``port >= Short.MAX_VALUE``),
#: so tests use ports below it for every engine and stay out of the kernel's ephemeral range.
PORT_RANGE = (20000, 32766)
#: What a server logs (uvicorn: "[Errno 98] ... address already in use"; multi-model-server:
#: "java.net.BindException: Address already in use") when another process took its port first.
PORT_TAKEN = "address already in use"
#: How often a server whose port was taken is started again on another one.
PORT_ATTEMPTS = 5


def free_port(low: int = PORT_RANGE[0], high: int = PORT_RANGE[1]) -> int:
    """A TCP port in [low, high] that is free on 127.0.0.1 right now.

    Only a candidate: another process may bind it before the caller's server does. ``start_server``
    handles that (``wait_ready`` starts the server again on another port); other callers must
    retry on a bind failure themselves.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


@dataclass(frozen=True)
class Launch:
    """How a server was started, so it can be started again on another port."""

    env: Mapping[str, str]
    argv: tuple[str, ...]
    port_chosen_here: bool  # False: the caller named the port, so losing it is the caller's failure


@dataclass
class RunningServer:
    """A started server: its process, base URL and log file (all renewed if it is started again)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    launch: Launch | None = None
    attempts: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines_containing(self, text: str, deadline_s: float = 10.0, count: int = 1) -> list[str]:
        """The log's lines containing ``text``, polled until there are ``count`` or the deadline
        passes: the engines' workers write through pipes (MMS relays them through its Java logger),
        and the native engine writes its access line after the answer, so a line may reach the file
        after the HTTP answer that it explains."""
        deadline = time.monotonic() + deadline_s
        while True:
            lines = [line for line in self.log().splitlines() if text in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def lost_its_port(self) -> bool:
        """True when the server exited because another process bound the port it was given first."""
        return (self.process.poll() is not None and self.launch is not None and self.launch.port_chosen_here
                and PORT_TAKEN in self.log().lower())

    def start_again(self) -> None:
        """Start the server again on another free port (after ``lost_its_port``)."""
        assert self.launch is not None
        if self.attempts >= PORT_ATTEMPTS:
            raise RuntimeError(f"server lost its port {self.attempts} times:\n{self.log()[-4000:]}")
        self.process.wait()
        self.port = free_port()
        self.process, self.log_path = _launch(self.launch, self.port)
        self.attempts += 1

    def pss_bytes(self) -> int:
        """PSS of the server's whole process tree: what it costs the machine."""
        from serve.memory import tree_pss_bytes

        return tree_pss_bytes(self.process.pid)

    def forked_workers(self) -> list[psutil.Process]:
        """The native engine's worker processes: the children of its fork parent (the forkserver)."""
        workers = []
        for proc in self.tree():
            try:
                if "forkserver" in " ".join(proc.cmdline()):
                    workers.extend(proc.children())
            except psutil.NoSuchProcess:
                continue
        return workers

    def tree(self) -> list[psutil.Process]:
        """The server process and all its descendants."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


#: How long past its script's sleep a ``BusyRequest`` waits for its answer. An engine that never
#: answers it (multi-model-server after DELETE, an xfail) costs this much, so it is not a minute.
BUSY_ANSWER_MARGIN_S = 20


class BusyRequest:
    """A request to ``SLOW_SCRIPT``'s model running in a thread; ``pid`` is the worker serving it."""

    def __init__(self, server: RunningServer, path: str, seconds: float, pid_file: Path) -> None:
        self.result: list[httpx.Response | httpx.HTTPError] = []
        body = {"sleep": seconds, "pid_file": str(pid_file)}

        def send() -> None:
            try:
                self.result.append(httpx.post(server.url + path, json=body, timeout=seconds + BUSY_ANSWER_MARGIN_S))
            except httpx.HTTPError as exc:  # raised again by response(), in the test's thread
                self.result.append(exc)

        self.thread = threading.Thread(target=send)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker picked up the request within 30 s:\n{server.log()[-4000:]}")
            time.sleep(0.02)  # poll interval
        self.pid = int(pid_file.read_text())

    def response(self, timeout: float = 120) -> httpx.Response:
        self.thread.join(timeout)
        if not self.result:
            raise TimeoutError(f"the request was still running after {timeout} s")
        if isinstance(self.result[0], httpx.HTTPError):
            raise self.result[0]
        return self.result[0]


def expect_no_answer(url: str, body: object, timeout: float = 30) -> None:
    """POST ``body`` as JSON to ``url``: the connection must close with no answer (the process that
    held it was killed meanwhile)."""
    try:
        answer = httpx.post(url, json=body, timeout=timeout)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return
    raise AssertionError(f"the request was answered: {answer.status_code} {answer.text}")


def wait_ready(server: RunningServer, path: str, deadline_s: float) -> None:
    """Poll ``path`` until it answers 200, the process exits, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if server.lost_its_port():
            server.start_again()
            continue
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode} before it was ready:\n"
                               f"{server.log()[-4000:]}")
        try:
            response = httpx.get(server.url + path, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)  # poll interval, not a readiness guess
    raise TimeoutError(f"server not ready within {deadline_s} s (last: {last}):\n{server.log()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> int:
    """SIGTERM a process started by a test, by its PID; SIGKILL it if it outlives ``grace_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def stop_server(server: RunningServer, grace_s: float = 30.0) -> int:
    """SIGTERM the server by PID, wait, SIGKILL if needed; kill and report any leftover children."""
    children = server.tree()[1:]
    stop_process(server.process, grace_s)
    _, alive = psutil.wait_procs(children, timeout=10)
    for proc in alive:
        proc.kill()
    if alive:
        raise AssertionError(f"processes left behind after the server stopped: {[p.pid for p in alive]}")
    return int(server.process.returncode)


def start_server(env: Mapping[str, str], *, port: int | None = None, argv: tuple[str, ...] = ()) -> RunningServer:
    """Start ``python -m serve`` on 127.0.0.1 with ``env`` on top of this environment.

    Without ``port`` it gets a free one; should another process bind that port first, ``wait_ready``
    starts the server again on another (a port cannot be reserved across processes, and
    multi-model-server cannot be handed a bound socket or asked to bind port 0).
    """
    launch = Launch(dict(env), argv, port_chosen_here=port is None)
    port = port or free_port()
    process, log_path = _launch(launch, port)
    return RunningServer(process, port, log_path, launch)


def _launch(launch: Launch, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the server process of ``launch`` on ``port``, logging to a fresh file."""
    log_file = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    full_env = {**os.environ, "SERVE_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port),
                "PYTHONUNBUFFERED": "1", **launch.env}
    process = subprocess.Popen([sys.executable, "-m", "serve", *launch.argv], env=full_env,
                               stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    return process, Path(log_file.name)


@contextmanager
def run_server(env: Mapping[str, str], *, ready_path: str = "/ping", deadline_s: float = 120.0,
               port: int | None = None) -> Iterator[RunningServer]:
    """Start a server, wait until ``ready_path`` answers 200, yield it, and always stop it."""
    server = start_server(env, port=port)
    try:
        wait_ready(server, ready_path, deadline_s)
        yield server
    finally:
        stop_server(server)
