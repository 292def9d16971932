"""Liveness of the native engine against the real server: a worker that dies while idle is replaced
before any request notices, /ping is not 200 while the single model has no live worker, a model's
in-flight requests are bounded (503 beyond), and request heads are bounded (431 beyond).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from serve.http import MAX_HEADER_BYTES
from tests.support.models import SLOW_SCRIPT, sklearn_artifact
from tests.support.server import BusyRequest, RunningServer, run_server

#: SageMaker's /ping timeout (docs/sagemaker-contract.md).
PING_TIMEOUT_S = 2.0
#: A user script whose model_fn takes 3 s once ``slow_reload`` exists in the model directory, so a
#: replacement worker's load is long enough to observe /ping meanwhile.
SLOW_RELOAD_SCRIPT = """
import os, time
import joblib

def model_fn(model_dir):
    if os.path.exists(os.path.join(model_dir, "slow_reload")):
        time.sleep(3)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


def single(model_dir: Path, **extra: str) -> dict[str, str]:
    return {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(model_dir), **extra}


def worker_pids(server: RunningServer) -> set[int]:
    """The model workers: the processes the forkserver forked."""
    return {proc.pid for proc in server.forked_workers()}


def wait_for_workers(server: RunningServer, count: int, gone: set[int], deadline_s: float = 60) -> set[int]:
    """Poll the process tree until ``count`` workers run and none of ``gone`` is among them."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        if len(pids) == count and not pids & gone:
            return pids
        time.sleep(0.05)  # poll interval
    raise TimeoutError(f"workers not replaced within {deadline_s} s:\n{server.log()[-3000:]}")


def test_an_idle_worker_killed_is_replaced_before_any_request(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model")
    with run_server(single(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="2")) as server:
        before = wait_for_workers(server, 2, set())
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = wait_for_workers(server, 2, {victim})  # no request was sent meanwhile
        assert "exited while idle" in server.log()
        for _ in range(4):  # every worker serves
            answer = httpx.post(server.url + "/invocations", json=artifact.rows.tolist(), timeout=60)
            assert answer.status_code == 200, answer.text
        assert worker_pids(server) == after


@pytest.mark.parametrize("prefork", ["false", "true"])
def test_ping_is_not_200_while_the_single_model_has_no_live_worker(tmp_path: Path, prefork: str) -> None:
    """Through the front /ping answers 503; with prefork (the default) the workers answer /ping, so
    with none alive it waits in the listen backlog, unanswered within SageMaker's 2 s ping timeout
    (docs/engines.md, "Prefork")."""
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_RELOAD_SCRIPT)
    with run_server(single(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="2", SERVE_PREFORK=prefork)) as server:
        before = wait_for_workers(server, 2, set())
        (artifact.path / "slow_reload").write_text("")
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        statuses: list[int | str] = []
        deadline = time.monotonic() + 2  # replacements take 3 s to load
        while time.monotonic() < deadline:
            try:
                statuses.append(httpx.get(server.url + "/ping", timeout=PING_TIMEOUT_S).status_code)
            except httpx.TimeoutException:
                statuses.append("timed out")
            time.sleep(0.05)  # poll interval
        if prefork == "false":
            assert statuses and statuses[-1] == 503, statuses
        else:
            assert statuses and set(statuses) == {"timed out"}, statuses
        wait_for_workers(server, 2, before)
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/ping", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "/ping did not come back to 200 after replacement"
            time.sleep(0.05)  # poll interval
        answer = httpx.post(server.url + "/invocations", json=artifact.rows.tolist(), timeout=60)
        assert answer.status_code == 200, answer.text


def test_in_flight_requests_beyond_the_bound_get_503_and_the_server_keeps_serving(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    env = single(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SERVE_MAX_IN_FLIGHT_PER_MODEL="2")
    with run_server(env) as server:
        busy = BusyRequest(server, "/invocations", 3, tmp_path / "pid")  # running in the worker
        queued: list[httpx.Response] = []
        waiter = threading.Thread(target=lambda: queued.append(
            httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=60)))
        waiter.start()
        time.sleep(0.5)  # lets the second request reach the engine's queue (it waits 2.5 s more)
        refused = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=60)
        assert refused.status_code == 503, refused.text
        message = refused.json()["message"]
        assert "SERVE_MAX_IN_FLIGHT_PER_MODEL" in message and "\n" not in message
        assert busy.response().status_code == 200
        waiter.join(60)
        assert queued and queued[0].status_code == 200, queued
        assert httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=60).status_code == 200


def raw_request(server: RunningServer, head_padding: int) -> bytes:
    """Send GET /ping with one header of ``head_padding`` bytes; the first bytes of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        request = (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * head_padding + b"\r\n\r\n")
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole head is sent
        return sock.recv(200)


def test_request_heads_beyond_the_bound_get_431(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model")
    with run_server(single(artifact.path)) as server:
        assert raw_request(server, 1024).startswith(b"HTTP/1.1 200")
        assert raw_request(server, 4 * MAX_HEADER_BYTES).startswith(b"HTTP/1.1 431")
        assert httpx.get(server.url + "/ping").status_code == 200
