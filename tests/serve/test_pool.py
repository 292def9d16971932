"""The MME pool (SERVE_MME_POOL=true): processes that each hold every model and answer HTTP themselves.

The multi-model contract suite runs against the pool too (``test_contract_multi.py``, two declared
differences); these are the properties only the pool has."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.serve.conftest import engine_env
from tests.support.models import SLOW_SCRIPT, UNREACHABLE_SCRIPT, sklearn_artifact
from tests.support.server import (
    BusyRequest,
    RunningServer,
    expect_no_answer,
    run_server,
    start_server,
    stop_server,
    wait_ready,
)


def pool(**extra: str) -> dict[str, str]:
    return {**engine_env("pool"), "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **extra}


def load(server: RunningServer, name: str, url: Path) -> httpx.Response:
    return httpx.post(server.url + "/models", json={"model_name": name, "url": str(url)}, timeout=120)


def pool_pids(server: RunningServer, name: str) -> set[int]:
    described = httpx.get(server.url + f"/models/{name}", timeout=10)
    assert described.status_code == 200, described.text
    return {worker["pid"] for worker in described.json()["workers"]}


def slow_models(root: Path, names: list[str]) -> dict[str, Path]:
    return {name: sklearn_artifact(root / name / "model", code=SLOW_SCRIPT).path for name in names}


def answering_pids(server: RunningServer, names: list[str], requests: int = 40) -> set[int]:
    """The pids that answered ``requests`` invocations spread over ``names``, every one 200."""
    pids = set()
    for i in range(requests):
        answer = httpx.post(server.url + f"/models/{names[i % len(names)]}/invoke", json={"sleep": 0}, timeout=30)
        assert answer.status_code == 200, answer.text
        pids.add(answer.json()["pid"])
    return pids


def test_every_process_holds_every_model_and_the_front_answers_no_invocation(tmp_path: Path) -> None:
    """Each model is loaded in both pool processes; with the front stopped (SIGSTOP) every model is
    still answered, by the pool processes."""
    models = slow_models(tmp_path, ["a", "b", "c"])
    with run_server(pool()) as server:
        for name, path in models.items():
            assert load(server, name, path).status_code == 200
        pids = {name: pool_pids(server, name) for name in models}
        assert len(pids["a"]) == 2 and pids["a"] == pids["b"] == pids["c"], pids
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            answered = answering_pids(server, list(models))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert answered <= pids["a"], (answered, pids)


def test_a_timed_out_request_is_504_and_its_replacement_holds_every_model(tmp_path: Path) -> None:
    models = slow_models(tmp_path, ["a", "b"])
    with run_server(pool(SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        for name, path in models.items():
            assert load(server, name, path).status_code == 200
        (first,) = pool_pids(server, "a")
        timed_out = httpx.post(server.url + "/models/a/invoke", json={"sleep": 30}, timeout=30)
        assert timed_out.status_code == 504, timed_out.text
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in timed_out.json()["message"]
        server.log_lines_containing("replaced a pool process (new pid", deadline_s=30)
        (second,) = pool_pids(server, "a")
        assert second != first and pool_pids(server, "b") == {second}
        assert answering_pids(server, ["a", "b"], requests=4) == {second}


def test_a_killed_process_is_replaced_by_one_that_loads_every_model(tmp_path: Path) -> None:
    models = slow_models(tmp_path, ["a", "b", "c"])
    with run_server(pool()) as server:
        for name, path in models.items():
            assert load(server, name, path).status_code == 200
        before = pool_pids(server, "a")
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        server.log_lines_containing("replaced a pool process (new pid", deadline_s=30)
        after = {name: pool_pids(server, name) for name in models}
        assert victim not in after["a"] and len(after["a"]) == 2 and after["a"] == after["b"] == after["c"]
        assert answering_pids(server, list(models)) <= after["a"]
        assert server.log_lines_containing(f"pool process {victim} exited (exit code -9)")


#: A model whose load raises while its directory holds ``fail-load`` and ends its process while it
#: holds ``exit-on-load``.
FAILS_TO_LOAD_ON_CUE = SLOW_SCRIPT.replace(
    "    return {\"dir\": model_dir}",
    "    if os.path.exists(os.path.join(model_dir, \"fail-load\")):\n"
    "        raise RuntimeError(\"told to fail by fail-load\")\n"
    "    if os.path.exists(os.path.join(model_dir, \"exit-on-load\")):\n"
    "        os._exit(3)\n"
    "    return {\"dir\": model_dir}",
)


def test_a_model_the_replacement_cannot_load_is_unloaded_and_the_pool_stays_whole(tmp_path: Path) -> None:
    """Models that loaded once but fail in a replacement process (one raises, one ends the process)
    are unloaded everywhere, as the default engine unloads a model whose worker cannot be replaced;
    the replacement starts with the rest, so the pool is not left a process short."""
    assert FAILS_TO_LOAD_ON_CUE.count("os.path.exists") == 2
    models = {name: sklearn_artifact(tmp_path / name / "model", code=FAILS_TO_LOAD_ON_CUE).path
              for name in ["good", "fails", "exits"]}
    with run_server(pool()) as server:
        for name, path in models.items():
            assert load(server, name, path).status_code == 200
        survivor, victim = sorted(pool_pids(server, "good"))
        (models["fails"] / "fail-load").touch()
        (models["exits"] / "exit-on-load").touch()
        os.kill(victim, signal.SIGKILL)
        server.log_lines_containing("replaced a pool process (new pid", deadline_s=60)
        assert server.log_lines_containing("model fails could not be loaded in a replacement pool process")
        assert server.log_lines_containing("model exits could not be loaded in a replacement pool process")
        retried = server.log_lines_containing("could not replace a pool process")
        assert retried and "trying again in 1 s" in retried[0], retried
        restored = pool_pids(server, "good")
        assert survivor in restored and victim not in restored and len(restored) == 2
        assert [m["modelName"] for m in httpx.get(server.url + "/models").json()["models"]] == ["good"]
        for name in ["fails", "exits"]:
            answer = httpx.post(server.url + f"/models/{name}/invoke", json={"sleep": 0}, timeout=30)
            assert answer.status_code == 404, answer.text
        assert answering_pids(server, ["good"]) == restored


def test_a_stuck_process_beyond_sigalrm_is_killed_and_replaced(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "m" / "model", code=UNREACHABLE_SCRIPT)
    with run_server(pool(SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="1")) as server:
        assert load(server, "m", artifact.path).status_code == 200
        (first,) = pool_pids(server, "m")
        expect_no_answer(server.url + "/models/m/invoke", {"sleep": 60, "block_alarm": True})  # its process was killed
        assert server.log_lines_containing("past the 1 s timeout; killing and replacing it")
        server.log_lines_containing("replaced a pool process (new pid", deadline_s=30)
        assert answering_pids(server, ["m"], requests=2) != {first}


def test_delete_answers_after_the_request_in_flight(tmp_path: Path) -> None:
    """The contract suite's DELETE test expects the model's worker to end; a pool process outlives
    the unload, but the request it was answering is answered first."""
    artifact = sklearn_artifact(tmp_path / "slow" / "model", code=SLOW_SCRIPT)
    with run_server(pool()) as server:
        assert load(server, "slow", artifact.path).status_code == 200
        busy = BusyRequest(server, "/models/slow/invoke", 2, tmp_path / "pid")
        started = time.monotonic()
        deleted = httpx.delete(server.url + "/models/slow", timeout=60)
        assert deleted.status_code == 200, deleted.text
        assert busy.result, "DELETE answered before the request in flight"
        assert busy.response().status_code == 200
        assert time.monotonic() - started > 1
        assert psutil.pid_exists(busy.pid)
        assert httpx.post(server.url + "/models/slow/invoke", json={"sleep": 0}).status_code == 404


def test_loads_while_requests_flow_fail_none(tmp_path: Path) -> None:
    """A pool process loads in a thread and goes on answering meanwhile."""
    models = slow_models(tmp_path, [f"m{i}" for i in range(6)])
    with run_server(pool()) as server:
        assert load(server, "m0", models["m0"]).status_code == 200
        outcomes: list[int | str] = []  # each request's status, or the error it met
        stop = threading.Event()

        def invoke() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        outcomes.append(client.post(server.url + "/models/m0/invoke", json={"sleep": 0}).status_code)
                    except httpx.HTTPError as exc:
                        outcomes.append(repr(exc))

        thread = threading.Thread(target=invoke)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not outcomes:  # requests flow before the loads start
                assert time.monotonic() < deadline, "no request was answered in 30 s"
                time.sleep(0.01)
            before = len(outcomes)
            for name in list(models)[1:]:
                assert load(server, name, models[name]).status_code == 200
            during = len(outcomes) - before
        finally:
            stop.set()
            thread.join(30)
        assert during > 0 and set(outcomes) == {200}, (during, sorted(set(map(str, outcomes))))


def test_what_the_pool_cannot_honour_is_refused(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "m" / "model")
    with run_server(pool()) as server:
        answer = httpx.post(server.url + "/models", json={"model_name": "m", "url": str(artifact.path),
                                                          "initial_workers": 3}, timeout=30)
        assert answer.status_code == 400 and "initial_workers cannot be honoured" in answer.text, answer.text
        assert httpx.get(server.url + "/models").json()["models"] == []
    for extra, says in [({"SAGEMAKER_MULTI_MODEL": "false", "SERVE_MODEL_DIR": str(artifact.path)},
                         "SERVE_MME_POOL=true needs SERVE_ENGINE=native and SAGEMAKER_MULTI_MODEL=true"),
                        ({"SERVE_MAX_IN_FLIGHT_PER_MODEL": "4"}, "SERVE_MAX_IN_FLIGHT_PER_MODEL cannot be honoured")]:
        server = start_server(pool(**extra))
        code = server.process.wait(60)
        assert code == 2 and says in server.log(), (extra, server.log()[-2000:])


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    artifact = sklearn_artifact(tmp_path / "m" / "model")
    server = start_server(pool())
    try:
        wait_ready(server, "/ping", 120)
        assert load(server, "m", artifact.path).status_code == 200
        assert len(server.tree()) >= 4  # the front, the fork parent, two pool processes
    finally:
        code = stop_server(server)  # raises when a process is left behind
    assert code == 0, server.log()[-2000:]


def test_the_front_answers_a_handed_over_request_even_when_its_route_fails() -> None:
    """``serve.pool.call_app``: a pool process waits for the front's answer, so a route that raises
    must still produce one (500), as must an app that raises before answering."""
    import asyncio
    import json

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    from serve.pool import call_app

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"query": dict(request.query_params), "header": request.headers.get("x-h"),
                             "body": (await request.body()).decode()})

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("a bug in a route")

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug before any answer")

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/boom", boom)])
    status, headers, body = asyncio.run(call_app(app, "POST", "/echo", "a=1", [["x-h", "v"]], b"hi"))
    assert status == 200 and json.loads(body) == {"query": {"a": "1"}, "header": "v", "body": "hi"}
    assert ["content-type", "application/json"] in headers
    status, _, _ = asyncio.run(call_app(app, "GET", "/boom", "", [], b""))
    assert status == 500
    status, _, body = asyncio.run(call_app(raw, "GET", "/anything", "", [], b""))
    assert status == 500 and json.loads(body)["code"] == 500
