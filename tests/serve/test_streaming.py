"""Streamed answers (docs/handlers.md "Streaming", docs/sagemaker-contract.md §10) from the real server.

The generating script waits, after its first chunk, for a file that the test creates only once it
has received that chunk: an answer buffered anywhere would never reach the client, and the script's
deadline would fail the test. No test sleeps; waits are polls with deadlines.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import engine_env
from tests.support.models import sklearn_artifact
from tests.support.server import RunningServer, run_server

#: A user script that answers {"n": N} with N text chunks, and on request waits before its second
#: chunk for a file ("gate"), fails at chunk "fail_at", fails before its first chunk ("fail_first"),
#: marks its generator's end in a file ("closed") or answers one JSON object ("plain").
STREAM_SCRIPT = """
import json, os, time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("plain"):
        return {"pid": os.getpid()}
    if data.get("fail_first"):
        raise RuntimeError("failed before the first chunk")
    return generate(data)

def generate(data):
    try:
        for i in range(data.get("n", 3)):
            if i == 1 and data.get("gate"):
                wait_for(data["gate"])
            if i == data.get("fail_at"):
                raise RuntimeError("the model failed mid-stream")
            yield f"chunk-{i} pid={os.getpid()}\\n"
    finally:
        if data.get("closed"):
            with open(data["closed"], "w") as marker:
                marker.write("closed")

def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)

def output_fn(prediction, accept):
    if isinstance(prediction, dict):
        return json.dumps(prediction), "application/json"
    return prediction, "text/plain"
"""

STREAMING_ENGINES = ["native", "prefork"]


def single(model_dir: Path, engine: str, **extra: str) -> dict[str, str]:
    return {**engine_env(engine), "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(model_dir),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1", **extra}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sklearn_artifact(tmp_path_factory.mktemp("streaming") / "model", code=STREAM_SCRIPT).path


@pytest.fixture(scope="module", params=STREAMING_ENGINES)
def server(request: pytest.FixtureRequest, artifact: Path) -> Iterator[RunningServer]:
    with run_server(single(artifact, request.param)) as running:
        yield running


def stream(server: RunningServer, path: str = "/invocations", **request: object) -> httpx.Response:
    """Start a streamed request; the caller reads and closes it."""
    client = httpx.Client(timeout=20)
    sent = client.build_request("POST", server.url + path, json=request)
    return client.send(sent, stream=True)


def read_until(chunks: Iterator[bytes], marker: bytes) -> bytes:
    """Bytes from ``chunks`` until ``marker`` has arrived (the client's read timeout bounds the wait)."""
    received = b""
    while marker not in received:
        received += next(chunks)
    return received


def read_until_broken(answer: httpx.Response) -> bytes:
    """Every byte of a streamed answer that must end without its last chunk (a broken stream)."""
    received = b""
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            for part in answer.iter_raw():
                received += part
    finally:
        answer.close()
    return received


def poll(condition: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {deadline_s} s")
        time.sleep(0.01)


def test_each_chunk_reaches_the_client_as_it_is_produced(server: RunningServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    answer = stream(server, n=3, gate=str(gate))
    try:
        assert answer.status_code == 200
        assert answer.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in answer.headers
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        chunks = answer.iter_raw()
        first = read_until(chunks, b"chunk-0")  # the model now waits for the gate
        gate.touch()
        body = first + b"".join(chunks)
    finally:
        answer.close()
    lines = body.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["chunk-0", "chunk-1", "chunk-2"]


def test_a_kept_alive_connection_serves_on_after_a_stream(server: RunningServer) -> None:
    with httpx.Client(timeout=20) as client:
        for _ in range(2):
            streamed = client.post(server.url + "/invocations", json={"n": 3})
            assert streamed.headers["transfer-encoding"] == "chunked" and streamed.text.count("chunk-") == 3
            plain = client.post(server.url + "/invocations", json={"plain": True})
            assert plain.status_code == 200 and "pid" in plain.json()


def test_a_failure_before_the_first_chunk_is_an_ordinary_error(server: RunningServer) -> None:
    answer = httpx.post(server.url + "/invocations", json={"fail_first": True}, timeout=20)
    assert answer.status_code == 500
    assert "failed before the first chunk" in answer.json()["message"]
    assert answer.headers["content-length"] == str(len(answer.content))


def test_a_failure_mid_stream_ends_it_without_the_last_chunk(server: RunningServer) -> None:
    received = read_until_broken(stream(server, n=5, fail_at=2))
    assert [line.split()[0] for line in received.decode().splitlines()] == ["chunk-0", "chunk-1"]
    lines = server.log_lines_containing("broke after 2 chunk(s)")
    assert len(lines) == 1 and "RuntimeError: the model failed mid-stream" in lines[0], server.log()[-3000:]
    assert "ASGI" not in server.log()  # that one line, no traceback or uvicorn line of its own
    pid = int(received.decode().split("pid=")[1].split()[0])
    after = httpx.post(server.url + "/invocations", json={"plain": True}, timeout=20)
    assert after.status_code == 200 and after.json()["pid"] == pid  # the same worker serves on


def test_a_client_that_goes_away_stops_the_stream_and_frees_the_worker(server: RunningServer,
                                                                       tmp_path: Path) -> None:
    gate, closed = tmp_path / "gate", tmp_path / "closed"
    answer = stream(server, n=100_000, gate=str(gate), closed=str(closed))
    try:
        read_until(answer.iter_raw(), b"chunk-0")
    finally:
        answer.close()  # the client goes away while the model waits for the gate
    gate.touch()
    poll(closed.exists, "the generator's close")
    after = httpx.post(server.url + "/invocations", json={"plain": True}, timeout=20)
    assert after.status_code == 200, (after.text, server.log()[-3000:])  # the only worker is free again


def test_ordinary_answers_are_unchanged(server: RunningServer) -> None:
    answer = httpx.post(server.url + "/invocations", json={"plain": True}, timeout=20)
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(len(answer.content))
    assert "transfer-encoding" not in answer.headers
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("engine", STREAMING_ENGINES)
def test_a_stream_silent_past_the_timeout_is_broken_and_its_worker_replaced(artifact: Path, engine: str,
                                                                           tmp_path: Path) -> None:
    with run_server(single(artifact, engine, SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        received = read_until_broken(stream(server, n=3, gate=str(tmp_path / "never")))
        assert received.startswith(b"chunk-0")
        assert server.log_lines_containing("SAGEMAKER_MODEL_SERVER_TIMEOUT"), server.log()[-3000:]
        after = httpx.post(server.url + "/invocations", json={"plain": True}, timeout=20)
        assert after.status_code == 200
        assert f"pid={after.json()['pid']}" not in received.decode()  # a fresh worker


def test_multi_model_endpoints_stream_too(artifact: Path, tmp_path: Path) -> None:
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server:
        loaded = httpx.post(server.url + "/models", json={"model_name": "m", "url": str(artifact)}, timeout=60)
        assert loaded.status_code == 200, loaded.text
        gate = tmp_path / "gate"
        answer = stream(server, "/models/m/invoke", n=2, gate=str(gate))
        try:
            assert answer.headers["transfer-encoding"] == "chunked"
            chunks = answer.iter_raw()
            first = read_until(chunks, b"chunk-0")
            gate.touch()
            body = first + b"".join(chunks)
        finally:
            answer.close()
        assert [line.split()[0] for line in body.decode().splitlines()] == ["chunk-0", "chunk-1"]
        assert httpx.delete(server.url + "/models/m", timeout=30).status_code == 200


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                    reason="PREREQUISITE MISSING: SERVE_ENGINE=mms needs a Java runtime")
def test_mms_refuses_a_stream_in_one_line(artifact: Path) -> None:
    pytest.importorskip("mms", reason="PREREQUISITE MISSING: SERVE_ENGINE=mms needs the mms extra")
    with run_server(single(artifact, "mms")) as server:
        answer = httpx.post(server.url + "/invocations", json={"n": 3}, timeout=30)
        assert answer.status_code == 501
        message = answer.json()["message"]
        assert "SERVE_ENGINE=native" in message and "\n" not in message
        assert b"chunk-0" not in answer.content


def test_the_example_script_streams_one_line_per_row(tmp_path: Path) -> None:
    script = (Path(__file__).resolve().parents[2] / "examples" / "streaming" / "inference.py").read_text()
    model = sklearn_artifact(tmp_path / "model", code=script)
    with run_server(single(model.path, "native")) as server:
        rows = "".join(",".join(str(v) for v in row) + "\n" for row in model.rows)
        answer = httpx.post(server.url + "/invocations", content=rows, headers={"Content-Type": "text/csv"},
                            timeout=30)
    assert answer.status_code == 200 and answer.headers["transfer-encoding"] == "chunked"
    assert answer.headers["content-type"] == "application/jsonlines"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["label"] for line in lines] == model.expected
