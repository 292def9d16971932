"""Every 4xx gets exactly one line in the container log, naming the model and the reason the client
was given (serve/app.py ``log_request``, serve/mms/service.py ``_error``): a user reading the log of an
endpoint that answers 4xx can see why without the client's side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from tests.serve.conftest import engine_env
from tests.support.models import SklearnArtifact
from tests.support.server import RunningServer, run_server

#: Requests the iris model refuses, one per status a client meets most: (headers, body, status).
REFUSED = [
    ({"Content-Type": "image/png"}, b"5.1,3.5,1.4,0.2", 415),
    ({"Content-Type": "text/csv"}, b"5.1,3.5\n1.4", 400),
    ({"Content-Type": "text/csv", "Accept": "image/png"}, b"5.1,3.5,1.4,0.2", 406),
]


def assert_logged_once(server: RunningServer, model: str, status: int, message: str) -> None:
    """One line holds the reason as written (``reason="..."``) with the model and status, and no other
    line repeats the message (no layer logs the 4xx a second time)."""
    reason = "reason=" + json.dumps(message)
    lines = server.log_lines_containing(reason)
    assert len(lines) == 1, (reason, server.log()[-3000:])
    assert f"model={model} {status}" in lines[0], lines[0]
    mentions = [line for line in server.log().splitlines() if message[:60] in line]
    assert mentions == lines, mentions


def test_each_refused_invocation_is_logged_once_with_model_and_reason(single_model_engine: str,
                                                                      iris: SklearnArtifact) -> None:
    env = {**engine_env(single_model_engine), "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(iris.path)}
    with run_server(env) as server:
        for headers, body, status in REFUSED:
            answer = httpx.post(server.url + "/invocations", content=body, headers=headers, timeout=60)
            assert answer.status_code == status, answer.text
            assert_logged_once(server, "model", status, answer.json()["message"])


def test_mme_refusals_are_logged_once_with_model_and_reason(tmp_path: Path, iris: SklearnArtifact) -> None:
    """Native engine: the invoke of a model that is not loaded, a load of a missing directory (the
    engine no longer logs a load's 4xx itself), a duplicate load, and the /models API's own 400."""
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server:
        calls = [
            ("POST", "/models/ghost/invoke", {"content": b"1,2,3,4", "headers": {"Content-Type": "text/csv"}},
             "ghost", 404),
            ("POST", "/models", {"json": {"model_name": "lost", "url": str(tmp_path / "none")}}, "-", 404),
            ("POST", "/models", {"json": {"model_name": "iris", "url": str(iris.path)}}, "-", 200),
            ("POST", "/models", {"json": {"model_name": "iris", "url": str(iris.path)}}, "-", 409),
            ("GET", "/models?limit=0", {}, "-", 400),
        ]
        for method, path, kwargs, model, status in calls:
            answer = httpx.request(method, server.url + path, timeout=120, **kwargs)  # type: ignore[arg-type]
            assert answer.status_code == status, answer.text
            if status >= 400:
                assert_logged_once(server, model, status, answer.json()["message"])


def test_a_single_model_refused_at_start_logs_its_reason(tmp_path: Path) -> None:
    """A load refused with a 4xx has no request, hence no access line: the start's own error line
    carries the reason (the engine logs only failed loads, 5xx)."""
    import subprocess
    import sys

    from tests.support.server import free_port

    env = {**os.environ, "SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn",
           "SERVE_MODEL_DIR": str(tmp_path / "absent"), "SERVE_HOST": "127.0.0.1",
           "SAGEMAKER_BIND_TO_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"model directory {str(tmp_path / 'absent')!r} does not exist" in done.stderr, done.stderr[-3000:]
