"""The contenders: AWS's stack, servekit native (its defaults: prefork in single-model mode; also with
SERVE_PREFORK=false, every request through the front, and in multi-model mode with SERVE_MME_POOL=true,
processes that each hold every model), servekit mms (servers) and the in-process floor.

``start`` launches one server on a free loopback port and times it to ``/ping`` 200 and to its first
200 invocation; ``Server.stop`` times SIGTERM to exit and counts the processes left behind.
"""

from __future__ import annotations

import http.client
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import aws_stack, procs
from tests.support.server import PORT_TAKEN, free_port, start_server

LABELS = {"aws": "AWS stack", "native": "native", "front": "native front", "pool": "native pool",
          "mms": "servekit mms"}
#: servekit's environment per contender ("aws" is launched its own way). "native" is servekit's
#: defaults: in single-model mode its workers answer HTTP themselves (prefork, docs/engines.md);
#: "front" is the opt-out, every request handed from the front to a worker.
ENGINE_ENV = {"native": {"SERVE_ENGINE": "native"}, "mms": {"SERVE_ENGINE": "mms"},
              "front": {"SERVE_ENGINE": "native", "SERVE_PREFORK": "false"},
              "pool": {"SERVE_ENGINE": "native", "SERVE_MME_POOL": "true"}}
#: Contenders that differ from "native" only in single-model mode (an MME always goes through the
#: front): no MME scenario.
SINGLE_MODEL_ONLY = {"front"}
#: Contenders that serve only in multi-model mode (SERVE_MME_POOL): only the MME scenario.
MULTI_MODEL_ONLY = {"pool"}


def mme_workers(contender: str, cpus: int) -> int:
    """SAGEMAKER_MODEL_SERVER_WORKERS in the MME scenarios: one worker per model (AWS's MME default),
    except for the pool, whose processes each hold every model: one per CPU, as prefork runs."""
    return cpus if contender in MULTI_MODEL_ONLY else 1


def serves(contender: str, multi_model: bool) -> bool:
    """Whether ``contender`` is measured in a scenario of that mode."""
    return contender not in (SINGLE_MODEL_ONLY if multi_model else MULTI_MODEL_ONLY)
PORT_ATTEMPTS = 5


@dataclass
class Launch:
    """What to serve: one model, or MME (``model`` None) with ``workers`` per model."""

    framework: str
    model: Path | None
    workers: int
    script: str | None = None  # AWS only: the user's inference.py (scikit-learn needs a model_fn)
    env: dict[str, str] = field(default_factory=dict)  # servekit only: settings beyond the contender's


@dataclass
class Server:
    contender: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    session: bool  # its processes are found by session (AWS: Java is detached from the launcher)
    started_at: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self) -> list[psutil.Process]:
        return procs.tree(self.process.pid, self.session)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, grace_s: float) -> procs.StopResult:
        return procs.terminate(self.process, self.session, grace_s)


def _get(port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def post(port: int, path: str, body: bytes, content_type: str, timeout: float = 30.0) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type, "Accept": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def _spawn(contender: str, launch: Launch, port: int, workdir: Path, aws_python: Path | None) -> Server:
    started = time.perf_counter()
    if contender == "aws":
        assert aws_python is not None
        return _spawn_aws(launch, port, workdir, aws_python, started)
    env = {**ENGINE_ENV[contender], "SERVE_FRAMEWORK": launch.framework,
           "SAGEMAKER_MODEL_SERVER_WORKERS": str(launch.workers), **launch.env}
    if launch.model is None:
        env["SAGEMAKER_MULTI_MODEL"] = "true"
    else:
        env["SERVE_MODEL_DIR"] = str(launch.model)
    running = start_server(env, port=port)
    return Server(contender, running.process, port, running.log_path, False, started)


def _spawn_aws(launch: Launch, port: int, workdir: Path, python: Path, started: float) -> Server:
    aws_stack.write_service(workdir, launch.framework)
    if launch.model is None:
        base = aws_stack.multi_model_base(workdir, launch.script)
    else:
        base = aws_stack.single_model_base(workdir, launch.model, launch.script)
    env = aws_stack.launch_env(python, workdir, base, port, launch.model is None, launch.workers)
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(python), "aws_launcher.py", aws_stack.HANDLER_MODULE], cwd=workdir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server("aws", process, port, log_path, True, started)


def _lost_port(server: Server) -> bool:
    return server.process.poll() is not None and PORT_TAKEN in server.log_tail(20000).lower()


def wait_ping(server: Server, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.contender} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if _get(server.port, "/ping") == 200:
                server.timings["to_ping_s"] = time.perf_counter() - server.started_at
                return
        except OSError:
            pass
        time.sleep(0.02)  # poll interval
    raise TimeoutError(f"{server.contender}: no /ping 200 within {deadline_s} s:\n{server.log_tail()}")


def wait_invocation(server: Server, path: str, body: bytes, content_type: str, deadline_s: float) -> None:
    """Post until one invocation answers 200 (AWS's /ping says 200 before its workers are up)."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, answer, _ = post(server.port, path, body, content_type)
            if status == 200:
                server.timings["to_first_invoke_s"] = time.perf_counter() - server.started_at
                return
            last = f"{status} {answer[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        if server.process.poll() is not None:
            break
        time.sleep(0.05)  # poll interval
    raise RuntimeError(f"{server.contender}: no 200 from {path} ({last}):\n{server.log_tail()}")


def start(contender: str, launch: Launch, workdir: Path, deadline_s: float, aws_python: Path | None = None) -> Server:
    """Start a contender and wait for /ping 200; a port lost to another process is retried elsewhere."""
    for attempt in range(PORT_ATTEMPTS):
        run_dir = Path(tempfile.mkdtemp(prefix=f"{contender}-", dir=workdir))
        server = _spawn(contender, launch, free_port(), run_dir, aws_python)
        try:
            wait_ping(server, deadline_s)
            return server
        except (RuntimeError, TimeoutError):
            if attempt + 1 < PORT_ATTEMPTS and _lost_port(server):
                server.stop(5)
                continue
            server.stop(10)
            raise
    raise RuntimeError("unreachable")


def check_loopback_only(server: Server) -> list[str]:
    """Listening sockets of the server's tree that are not on loopback (should be none)."""
    wrong = []
    for proc in server.tree():
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
                    wrong.append(f"{proc.pid} {conn.laddr.ip}:{conn.laddr.port}")
        except psutil.Error:
            continue
    return wrong
