"""SageMaker's single-model container contract, against the real server in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import engine_env
from tests.support.models import SLOW_SCRIPT, SklearnArtifact, echo_script, sklearn_artifact
from tests.support.server import BusyRequest, run_server, start_server, stop_server, wait_ready


@pytest.fixture
def engine(single_model_engine: str) -> str:
    """Every test here also runs with SERVE_PREFORK=true (tests/serve/conftest.py)."""
    return single_model_engine


def single(engine: str, model_dir: Path, **extra: str) -> dict[str, str]:
    return {**engine_env(engine), "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(model_dir), **extra}


def test_ping_and_invocations_json_and_csv(engine: str, iris: SklearnArtifact) -> None:
    with run_server(single(engine, iris.path)) as server:
        ping = httpx.get(server.url + "/ping")
        assert ping.status_code == 200
        answer = httpx.post(server.url + "/invocations", json=iris.rows.tolist(),
                            headers={"Accept": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert [float(x) for x in _predictions(answer.json())] == iris.expected

        csv_body = "\n".join(",".join(str(v) for v in row) for row in iris.rows)
        answer = httpx.post(server.url + "/invocations", content=csv_body,
                            headers={"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert [float(x) for x in answer.text.split()] == iris.expected


def _predictions(body: object) -> list[float]:
    if isinstance(body, dict):
        body = body.get("predictions", body)
    assert isinstance(body, list)
    return [float(x) for x in body]


def test_codec_errors_have_the_right_status_and_no_traceback(engine: str, iris: SklearnArtifact) -> None:
    with run_server(single(engine, iris.path)) as server:
        cases = [
            ({"Content-Type": "image/png"}, b"\x89PNG", 415),
            ({"Content-Type": "application/json", "Accept": "image/png"}, b"[[1,2,3,4]]", 406),
            ({"Content-Type": "application/json"}, b"{not json", 400),
        ]
        for headers, body, status in cases:
            answer = httpx.post(server.url + "/invocations", content=body, headers=headers)
            assert answer.status_code == status, (headers, answer.text)
            assert "Traceback" not in answer.text
            assert answer.json()["message"]


def test_oversize_body_is_413(engine: str, iris: SklearnArtifact) -> None:
    with run_server(single(engine, iris.path, SAGEMAKER_MAX_PAYLOAD_IN_MB="1")) as server:
        answer = httpx.post(server.url + "/invocations", content=b"1," * (600 * 1024),
                            headers={"Content-Type": "text/csv"})
        assert answer.status_code == 413
        # the server is still healthy afterwards
        assert httpx.get(server.url + "/ping").status_code == 200


def test_custom_attributes_round_trip(engine: str, tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=echo_script("single"))
    with run_server(single(engine, artifact.path)) as server:
        answer = httpx.post(server.url + "/invocations", content=b"{}",
                            headers={"Content-Type": "application/json",
                                     "X-Amzn-SageMaker-Custom-Attributes": "trace=abc"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["custom_attributes"] == "trace=abc"
        assert answer.headers["X-Amzn-SageMaker-Custom-Attributes"] == "seen=trace=abc"


def test_ping_is_not_200_until_the_model_is_loaded(engine: str, tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code="""
import time, joblib, os
def model_fn(model_dir):
    time.sleep(3)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
""")
    server = start_server(single(engine, artifact.path))
    try:
        saw_not_ready = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = httpx.get(server.url + "/ping", timeout=2).status_code
            except httpx.TransportError:
                continue
            if status == 200:
                break
            saw_not_ready = True
        assert saw_not_ready, "/ping answered 200 before model_fn finished"
        wait_ready(server, "/ping", 60)
    finally:
        stop_server(server)


def test_requests_spread_over_workers(engine: str, tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    with run_server(single(engine, artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="2")) as server:
        pids: set[int] = set()

        def call() -> None:
            answer = httpx.post(server.url + "/invocations", json={"sleep": 0.5}, timeout=30)
            assert answer.status_code == 200, answer.text
            pids.add(answer.json()["pid"])

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(pids) == 2


def test_worker_killed_mid_request_fails_only_that_request(engine: str, tmp_path: Path) -> None:
    import os
    import signal

    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    pid_file = tmp_path / "worker.pid"
    with run_server(single(engine, artifact.path, SAGEMAKER_MODEL_SERVER_WORKERS="1")) as server:
        busy = BusyRequest(server, "/invocations", 20, pid_file)
        os.kill(busy.pid, signal.SIGKILL)
        failed = busy.response()
        assert 500 <= failed.status_code < 600
        assert "Traceback" not in failed.text
        # the worker is replaced: later requests succeed
        deadline = time.monotonic() + 60
        while True:
            answer = httpx.post(server.url + "/invocations", json={"sleep": 0}, timeout=30)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
        assert answer.status_code == 200, answer.text


def test_sigterm_finishes_in_flight_requests_and_exits_0(engine: str, tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    pid_file = tmp_path / "worker.pid"
    server = start_server(single(engine, artifact.path))
    try:
        wait_ready(server, "/ping", 120)
        busy = BusyRequest(server, "/invocations", 2, pid_file)
    finally:
        code = stop_server(server)  # SIGTERM while the request is in flight; fails on orphans
    answer = busy.response()
    assert answer.status_code == 200, answer.text
    assert answer.json()["slept"] == 2
    assert code == 0


def test_request_timeout(engine: str, tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "model", code=SLOW_SCRIPT)
    with run_server(single(engine, artifact.path, SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        answer = httpx.post(server.url + "/invocations", json={"sleep": 5}, timeout=30)
        assert answer.status_code in (504, 408), answer.text
        assert "Traceback" not in answer.text


def test_bad_setting_stops_start_with_one_line_naming_the_variable(engine: str, iris: SklearnArtifact) -> None:
    import os

    env = {**os.environ, **single(engine, iris.path), "SAGEMAKER_MODEL_SERVER_TIMEOUT": "soon"}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SAGEMAKER_MODEL_SERVER_TIMEOUT" in lines[0], done.stderr


def test_missing_model_stops_the_server_with_a_clear_log(engine: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    server = start_server(single(engine, tmp_path / "empty"))
    try:
        server.process.wait(120)
    finally:
        stop_server(server)
    assert server.process.returncode != 0
    assert "model" in server.log().lower()


def test_models_api_is_absent_in_single_model_mode(engine: str, iris: SklearnArtifact) -> None:
    with run_server(single(engine, iris.path)) as server:
        answer = httpx.post(server.url + "/models", json={"model_name": "x", "url": str(iris.path)})
        assert answer.status_code in (400, 404, 405)


def test_help_lists_every_variable() -> None:
    from serve.settings import variable_names

    done = subprocess.run([sys.executable, "-m", "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in variable_names():
        assert name in done.stdout


def test_readme_table_lists_exactly_the_declared_variables() -> None:
    import re

    from serve.settings import variable_names

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = re.findall(r"^\| `((?:SAGEMAKER|SERVE|SERVEKIT)_[A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert table == variable_names()


@pytest.mark.parametrize("native_engine", ["native", "prefork"])
def test_each_invocation_gets_one_access_log_line_after_its_answer(native_engine: str, iris: SklearnArtifact) -> None:
    """The line is written once the answer has gone (serve/app.py, ``HotPath.invoke``): every answer,
    error or not, still gets exactly one. (MMS writes its own access log: not this format.)"""
    with run_server(single(native_engine, iris.path)) as server:
        for content_type, status in [("text/csv", 200), ("image/png", 415), ("text/csv", 200)]:
            answer = httpx.post(server.url + "/invocations", content=b"5.1,3.5,1.4,0.2",
                                headers={"Content-Type": content_type})
            assert answer.status_code == status, answer.text
        lines = server.log_lines_containing("POST /invocations model=", count=3)
        assert [line.split("model=")[1].split()[1] for line in lines] == ["200", "415", "200"], lines
