"""Server-side batching (docs/engines.md and docs/handlers.md, "Batching") on the real server.

One multi-model server per framework with SERVE_BATCH_MAX_SIZE: concurrent requests get the answers
each gets alone, in order; a gated request (its ``input_fn`` blocks reading a FIFO the test writes to)
keeps the only worker busy while the test sends more and polls GET /models until the front holds them
all, so they are predicted as one batch, which the worker's DEBUG log line proves. With
SERVE_PREFORK=true the gated request blocks the worker itself, and the requests written meanwhile wait
in their connections. No test waits a fixed time.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.models import sklearn_artifact, tensorflow_artifact, torch_artifact, write_script
from tests.support.server import RunningServer, run_server

#: input_fn: JSON {"rows": [[...]], "gate": true?}; a gated request waits until the test writes to
#: the FIFO named by BATCH_TEST_GATE.
GATED_SCRIPT = """
import json, os
import numpy as np

def input_fn(body, content_type):
    data = json.loads(body)
    if data.get("gate"):
        with open(os.environ["BATCH_TEST_GATE"]) as gate:
            gate.read(1)
    return np.asarray(data["rows"], dtype="float32")
"""

ROWS = [[[5.1, 3.5, 1.4, 0.2]], [[6.0, 2.2, 5.0, 1.5], [0.5, -1.0, 2.0, 0.25]], [[1.5, 0.0, -0.5, 3.0]],
        [[7.7, 3.0, 6.1, 2.3], [4.9, 3.0, 1.4, 0.2], [5.5, 2.5, 4.0, 1.3]]]
BATCH_LINE = "requests predicted as one batch of"


def _artifacts(framework: str, root: Path) -> Path:
    """Two copies of a small model of ``framework`` under ``root``: plain/ and gated/ (GATED_SCRIPT)."""
    make = {"sklearn": sklearn_artifact, "pytorch": torch_artifact, "tensorflow": tensorflow_artifact}[framework]
    for name in ("plain", "gated"):
        make(root / name)
    write_script(root / "gated", GATED_SCRIPT)
    return root


def _load(server: RunningServer, name: str, url: Path) -> None:
    loaded = httpx.post(server.url + "/models", json={"model_name": name, "url": str(url)}, timeout=120)
    assert loaded.status_code == 200, loaded.text


def _invoke(server: RunningServer, name: str, payload: object) -> httpx.Response:
    return httpx.post(f"{server.url}/models/{name}/invoke", json=payload, timeout=60)


def _wait_in_flight(server: RunningServer, name: str, count: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while (held := httpx.get(f"{server.url}/models/{name}", timeout=10).json()["inFlight"]) < count:
        assert time.monotonic() < deadline, f"the front holds {held} requests, not {count}"


@pytest.fixture(scope="module", params=["sklearn", "pytorch", "tensorflow"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    framework = request.param
    tmp_path = tmp_path_factory.mktemp(framework)
    root = _artifacts(framework, tmp_path / "models")
    os.mkfifo(tmp_path / "gate")
    env = {"SERVE_FRAMEWORK": framework, "SAGEMAKER_MULTI_MODEL": "true", "SERVE_BATCH_MAX_SIZE": "6",
           "SAGEMAKER_CONTAINER_LOG_LEVEL": "DEBUG", "BATCH_TEST_GATE": str(tmp_path / "gate")}
    with run_server(env) as running:
        for name in ("plain", "gated"):
            _load(running, name, root / name)
        running.gate = tmp_path / "gate"  # type: ignore[attr-defined]
        running.framework = framework  # type: ignore[attr-defined]
        yield running


def test_concurrent_requests_get_the_answers_they_get_alone_in_order(server: RunningServer) -> None:
    alone = [_invoke(server, "plain", rows) for rows in ROWS]
    assert all(answer.status_code == 200 for answer in alone), [a.text for a in alone]
    requests = ROWS * 16
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda rows: _invoke(server, "plain", rows), requests))
    _assert_same(server, answers, [alone[i % len(ROWS)] for i in range(len(requests))])


def _assert_same(server: RunningServer, answers: list[httpx.Response], alone: list[httpx.Response]) -> None:
    """Byte for byte; TensorFlow's CPU kernels round float32 differently by batch size (as for the same
    rows sent as one larger request), so its answers agree to float32 precision (docs/handlers.md)."""
    if server.framework != "tensorflow":  # type: ignore[attr-defined]
        assert [a.content for a in answers] == [a.content for a in alone]
        return
    for answer, expected in zip(answers, alone, strict=True):
        np.testing.assert_allclose(answer.json()["predictions"], expected.json()["predictions"], rtol=1e-5)


def test_requests_queued_behind_a_busy_worker_are_one_batch_and_a_bad_one_fails_alone(
        server: RunningServer) -> None:
    alone = [_invoke(server, "gated", {"rows": rows}) for rows in ROWS]
    payloads = [{"rows": rows} for rows in ROWS] + [{"rows": [[1.0, 2.0, 3.0]]}, {"rows": "not rows"}]
    with ThreadPoolExecutor(len(payloads) + 1) as pool:
        gated = pool.submit(_invoke, server, "gated", {"rows": ROWS[0], "gate": True})
        _wait_in_flight(server, "gated", 1)
        queued = [pool.submit(_invoke, server, "gated", payload) for payload in payloads]
        _wait_in_flight(server, "gated", 1 + len(payloads))
        with open(server.gate, "w") as gate:  # type: ignore[attr-defined]
            gate.write("x")
        assert gated.result().content == alone[0].content
        answers = [future.result() for future in queued]
    _assert_same(server, answers[:len(ROWS)], alone)
    assert [a.status_code for a in answers[len(ROWS):]] == [400, 400], [a.text for a in answers]
    # the six queued requests left together (SERVE_BATCH_MAX_SIZE=6); the four joinable ones as one call
    lines = server.log_lines_containing(BATCH_LINE)
    assert any(f"4 {BATCH_LINE} 7 rows" in line for line in lines), server.log()[-3000:]


@pytest.mark.parametrize("prefork", ["false", "true"])
def test_a_request_that_finds_a_free_worker_is_sent_at_once(tmp_path: Path, prefork: str) -> None:
    """With a 10-minute SERVE_BATCH_MAX_DELAY_MS, requests sent one after another are answered: a
    request that finds a free worker (with prefork: a request read alone) never waits for a batch to fill."""
    iris = sklearn_artifact(tmp_path / "model")
    env = {"SERVE_MODEL_DIR": str(iris.path), "SERVE_BATCH_MAX_SIZE": "8", "SERVE_BATCH_MAX_DELAY_MS": "600000",
           "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SERVE_PREFORK": prefork}
    with run_server(env) as running:
        for rows in ROWS:
            answer = httpx.post(running.url + "/invocations", json=rows, timeout=60)
            assert answer.status_code == 200, answer.text


#: Processes that answer HTTP themselves: settings, and the model's invocation path once it is served.
SELF_ANSWERING = {
    "prefork": ({"SERVE_PREFORK": "true"}, "/invocations"),
    "pool": ({"SERVE_MME_POOL": "true", "SAGEMAKER_MULTI_MODEL": "true"}, "/models/gated/invoke"),
}


@pytest.mark.parametrize(("mode", "new_connections"), [("prefork", False), ("prefork", True), ("pool", False)])
def test_a_process_answering_http_predicts_the_requests_it_reads_together_as_one_batch(
        tmp_path: Path, mode: str, new_connections: bool) -> None:
    """SERVE_PREFORK=true or SERVE_MME_POOL=true with batching: a process whose model is busy (the
    gated request blocks its event loop) finds the requests sent meanwhile waiting, on its keep-alive
    connections or on new ones, reads them and predicts them as one batch; each gets the answer it
    gets alone, a bad one fails alone."""
    root = _artifacts("sklearn", tmp_path / "models")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    settings, path = SELF_ANSWERING[mode]
    env = {**settings, "SERVE_BATCH_MAX_SIZE": "6", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
           "SAGEMAKER_CONTAINER_LOG_LEVEL": "DEBUG", "BATCH_TEST_GATE": str(gate)}
    if mode == "prefork":
        env["SERVE_MODEL_DIR"] = str(root / "gated")
    payloads = [{"rows": rows} for rows in ROWS] + [{"rows": [[1.0, 2.0, 3.0]]}, {"rows": "not rows"}]
    with run_server(env) as server:
        if mode == "pool":
            _load(server, "gated", root / "gated")
        connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=60) for _ in payloads]
        alone = [_answer(_send(c, path, payload)) for c, payload in zip(connections, payloads, strict=True)]
        assert [status for status, _ in alone] == [200] * len(ROWS) + [400, 400], alone
        assert not server.log_lines_containing(BATCH_LINE, deadline_s=0), "requests sent one by one were batched"
        with ThreadPoolExecutor(1) as pool:
            gated = pool.submit(httpx.post, server.url + path, json={"rows": ROWS[0], "gate": True}, timeout=60)
            writer = _open_when_read(gate)  # the process is inside the gated request's input_fn
            if new_connections:
                for connection in connections:
                    connection.close()
            for connection, payload in zip(connections, payloads, strict=True):
                _send(connection, path, payload)  # waiting in its connection while the process is busy
            os.write(writer, b"x")
            os.close(writer)
            assert gated.result().content == alone[0][1]
        answers = [_answer(connection) for connection in connections]
        for connection in connections:
            connection.close()
    assert answers == alone
    lines = server.log_lines_containing(BATCH_LINE)
    assert any(f"4 {BATCH_LINE} 7 rows" in line for line in lines), server.log()[-3000:]


def _open_when_read(fifo: Path, deadline_s: float = 30.0) -> int:
    """A write end of ``fifo``, once a reader has it open (until then opening it fails: ENXIO)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _send(connection: http.client.HTTPConnection, path: str, payload: object) -> http.client.HTTPConnection:
    """``connection`` with a whole request written to it (its answer is read later)."""
    connection.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    return connection


def _answer(connection: http.client.HTTPConnection) -> tuple[int, bytes]:
    response = connection.getresponse()
    return response.status, response.read()
