"""Prefork (single-model mode's default, SERVE_PREFORK=true to insist): the workers answer HTTP
themselves, and the front still supervises them.

The single-model contract suite runs with prefork as well (``test_contract_single.py``); these are
the properties only prefork has."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import engine_env
from tests.support.models import SLOW_SCRIPT, UNREACHABLE_SCRIPT, sklearn_artifact, tensorflow_artifact
from tests.support.server import expect_no_answer, run_server, start_server, stop_server


def prefork(model_dir: Path, **extra: str) -> dict[str, str]:
    return {**engine_env("prefork"), "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(model_dir), **extra}


def test_requests_are_answered_while_the_front_is_stopped(tmp_path: Path) -> None:
    """No request crosses the front: with its process stopped (SIGSTOP) the workers still answer."""
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    with run_server(prefork(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="2")) as server:
        front = server.process.pid
        os.kill(front, signal.SIGSTOP)
        try:
            answers = [httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=10) for _ in range(20)]
            ping = httpx.get(server.url + "/ping", timeout=10)
        finally:
            os.kill(front, signal.SIGCONT)
        assert [a.status_code for a in answers] == [200] * 20, answers[-1].text
        assert {a.json()["pid"] for a in answers} <= {p.pid for p in server.tree()} - {front}
        assert ping.status_code == 200


def test_a_single_model_server_with_no_setting_is_prefork_and_false_opts_out(tmp_path: Path) -> None:
    """Issue 25: with SERVE_PREFORK unset the workers answer (the front, stopped, answers nothing);
    SERVE_PREFORK=false sends every request through the front again."""
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    plain = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(artifact.path),
             "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with run_server(plain) as server:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            answer = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=10)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert answer.status_code == 200, answer.text
        assert server.log_lines_containing("the model's workers answer on port")
    with run_server({**plain, "SERVE_PREFORK": "false"}) as server:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=2)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert not server.log_lines_containing("the model's workers answer on port", deadline_s=0)


#: model_fn: the first worker to load is fast, every other one takes 3 s.
FIRST_FAST_SCRIPT = """
import os, time
import joblib

def model_fn(model_dir):
    try:
        os.close(os.open(os.path.join(model_dir, "first"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(3)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


def test_no_worker_answers_until_every_worker_has_loaded(tmp_path: Path) -> None:
    """A worker that loaded first waits for the front to hand the port over: otherwise the front,
    still loading the other, answered some of the connections 404 "not loaded" (the bench found it
    with TensorFlow)."""
    artifact = sklearn_artifact(tmp_path / "model", code=FIRST_FAST_SCRIPT)
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(artifact.path),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with run_server(env) as server:  # /ping 200 from whoever answered first
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(
                lambda _: httpx.post(server.url + "/invocations", json=artifact.rows.tolist(), timeout=30),
                range(32)))
        assert [a.status_code for a in answers] == [200] * 32, [a.text for a in answers if a.status_code != 200]


def test_ping_is_refused_not_held_while_the_framework_imports(tmp_path: Path) -> None:
    """The port listens only once the front has started (after the fork parent imported TensorFlow,
    seconds): before, a /ping sent meanwhile waited in the backlog past SageMaker's 2 s (the build's
    doctor check `ping-latency` found it)."""
    artifact = tensorflow_artifact(tmp_path / "model")
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "tensorflow", "SERVE_MODEL_DIR": str(artifact.path)}
    server = start_server(env)
    try:
        slowest, deadline = 0.0, time.monotonic() + 120
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                status = httpx.get(server.url + "/ping", timeout=10).status_code
            except httpx.ConnectError:
                status = None
            slowest = max(slowest, time.monotonic() - sent)
            if status == 200:
                break
            time.sleep(0.02)  # poll interval
        else:
            raise AssertionError(f"/ping never answered 200:\n{server.log()[-3000:]}")
        assert slowest < 1.0, f"a /ping took {slowest:.2f} s"
    finally:
        stop_server(server)


def test_a_worker_stuck_beyond_sigalrm_is_killed_and_replaced(tmp_path: Path) -> None:
    """A request whose code the worker's SIGALRM cannot interrupt (blocked here, as inside a C call)
    is ended by the front's watchdog past the timeout; the worker is replaced and answers again."""
    artifact = sklearn_artifact(tmp_path / "model", code=UNREACHABLE_SCRIPT)
    with run_server(prefork(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                            SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        first = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=10).json()["pid"]
        expect_no_answer(server.url + "/invocations", {"sleep": 60, "block_alarm": True})  # its process was killed
        answer = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["pid"] != first
        assert server.log_lines_containing("past the 1 s timeout; killing and replacing it")


def test_a_timed_out_request_is_504_and_its_worker_is_replaced(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    with run_server(prefork(artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                            SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        first = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=10).json()["pid"]
        timed_out = httpx.post(server.url + "/invocations", json={"sleep": 30}, timeout=30)
        assert timed_out.status_code == 504, timed_out.text
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in timed_out.json()["message"]
        answer = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["pid"] != first
