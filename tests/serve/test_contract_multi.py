"""SageMaker's multi-model (MME) container contract, against the real server in a subprocess."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serve.conftest import MULTI_MODEL_ENGINES, engine_env, engine_under_test
from tests.support.models import BROKEN_SCRIPT, SLOW_SCRIPT, echo_script, sklearn_artifact
from tests.support.server import BusyRequest, RunningServer, run_server

MB = 1024 * 1024


@pytest.fixture(params=MULTI_MODEL_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """This suite also runs the native engine's MME pool (SERVE_MME_POOL=true)."""
    return engine_under_test(request)


def multi(engine: str, **extra: str) -> dict[str, str]:
    return {**engine_env(engine), "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true", **extra}


def load(server: RunningServer, name: str, url: Path) -> httpx.Response:
    return httpx.post(server.url + "/models", json={"model_name": name, "url": str(url)}, timeout=120)


def test_status_code_table(engine: str, models_dir: Path) -> None:
    first = sklearn_artifact(models_dir / "a" / "model", seed=1)
    with run_server(multi(engine)) as server:
        assert httpx.get(server.url + "/ping").status_code == 200
        listed = httpx.get(server.url + "/models")
        assert listed.status_code == 200 and listed.json()["models"] == []

        assert load(server, "a", first.path).status_code == 200
        assert load(server, "a", first.path).status_code == 409
        names = [m["modelName"] for m in httpx.get(server.url + "/models").json()["models"]]
        assert names == ["a"]
        described = httpx.get(server.url + "/models/a")
        assert described.status_code == 200
        assert httpx.get(server.url + "/models/missing").status_code == 404

        answer = httpx.post(server.url + "/models/a/invoke", json=first.rows.tolist())
        assert answer.status_code == 200, answer.text
        predictions = answer.json()
        predictions = predictions.get("predictions", predictions) if isinstance(predictions, dict) else predictions
        assert [float(x) for x in predictions] == first.expected
        assert httpx.post(server.url + "/models/missing/invoke", json=[[1, 2, 3, 4]]).status_code == 404

        assert httpx.delete(server.url + "/models/a").status_code == 200
        assert httpx.delete(server.url + "/models/a").status_code == 404
        assert httpx.post(server.url + "/models/a/invoke", json=[[1, 2, 3, 4]]).status_code == 404
        # unloaded models can be loaded again
        assert load(server, "a", first.path).status_code == 200


def test_load_failures_are_never_200_and_leave_nothing_registered(engine: str, models_dir: Path) -> None:
    broken = sklearn_artifact(models_dir / "broken" / "model", code=BROKEN_SCRIPT)
    empty = models_dir / "empty" / "model"
    empty.mkdir(parents=True)
    with run_server(multi(engine)) as server:
        for name, url in [("nowhere", models_dir / "does-not-exist"), ("empty", empty), ("broken", broken.path)]:
            answer = load(server, name, url)
            assert 400 <= answer.status_code < 600, (name, answer.text)
            assert "Traceback" not in answer.text
            assert httpx.get(server.url + f"/models/{name}").status_code == 404
        assert httpx.get(server.url + "/models").json()["models"] == []
        answer = load(server, "broken", broken.path)
        assert "corrupt" in answer.text  # the user's own message reaches the caller


def test_load_failure_reason_is_logged_once_with_the_model_name(engine: str, models_dir: Path) -> None:
    broken = sklearn_artifact(models_dir / "broken" / "model", code=BROKEN_SCRIPT)
    with run_server(multi(engine)) as server:
        assert load(server, "broken-model", broken.path).status_code >= 500
        # MMS prefixes each worker line with the model's name, tracebacks included: count the one
        # line that states the failure and its reason.
        lines = server.log_lines_containing("loading model broken-model from")
        assert len(lines) == 1 and "weights file is corrupt" in lines[0], server.log()[-4000:]


def test_pagination(engine: str, models_dir: Path) -> None:
    artifact = sklearn_artifact(models_dir / "shared" / "model")
    with run_server(multi(engine)) as server:
        for name in ["m1", "m2", "m3"]:
            assert load(server, name, artifact.path).status_code == 200
        page = httpx.get(server.url + "/models", params={"limit": 2}).json()
        assert [m["modelName"] for m in page["models"]] == ["m1", "m2"]
        token = page["nextPageToken"]
        rest = httpx.get(server.url + "/models", params={"limit": 2, "next_page_token": token}).json()
        assert [m["modelName"] for m in rest["models"]] == ["m3"]
        assert "nextPageToken" not in rest


def test_models_with_clashing_inference_scripts(engine: str, models_dir: Path) -> None:
    one = sklearn_artifact(models_dir / "one" / "model", code=echo_script("one"))
    two = sklearn_artifact(models_dir / "two" / "model", code=echo_script("two"))
    with run_server(multi(engine)) as server:
        assert load(server, "one", one.path).status_code == 200
        assert load(server, "two", two.path).status_code == 200
        for name in ["one", "two", "one"]:
            answer = httpx.post(server.url + f"/models/{name}/invoke", content=b"{}",
                                headers={"Content-Type": "application/json",
                                         "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz",
                                         "X-Amzn-SageMaker-Custom-Attributes": "k=v"})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"custom_attributes": "k=v", "target_model": f"{name}.tar.gz", "tag": name}
            assert answer.headers["X-Amzn-SageMaker-Custom-Attributes"] == "seen=k=v"


def test_507_when_memory_admission_refuses(engine: str, models_dir: Path) -> None:
    artifact = sklearn_artifact(models_dir / "m" / "model")
    with run_server(multi(engine, SERVE_MEMORY_LIMIT_MB="1")) as server:
        answer = load(server, "m", artifact.path)
        assert answer.status_code == 507, answer.text
        assert httpx.get(server.url + "/models").json()["models"] == []


def test_delete_waits_for_in_flight_requests(engine: str, models_dir: Path) -> None:
    artifact = sklearn_artifact(models_dir / "slow" / "model", code=SLOW_SCRIPT)
    pid_file = models_dir / "pid"
    with run_server(multi(engine)) as server:
        assert load(server, "slow", artifact.path).status_code == 200
        busy = BusyRequest(server, "/models/slow/invoke", 2, pid_file)
        deleted = httpx.delete(server.url + "/models/slow", timeout=60)
        assert deleted.status_code == 200
        answer = busy.response()
        assert answer.status_code == 200, answer.text
        assert not psutil.pid_exists(busy.pid), "the worker outlived DELETE"


def test_twenty_models_memory_is_reported_and_returned(engine: str, models_dir: Path,
                                                      record_property: object) -> None:
    artifacts = [sklearn_artifact(models_dir / f"m{i}" / "model", seed=i) for i in range(20)]
    with run_server(multi(engine)) as server:
        baseline = server.pss_bytes()
        assert load(server, "m0", artifacts[0].path).status_code == 200
        first = server.pss_bytes()  # includes the engine's one-off costs (a fork parent, a JVM worker pool)
        started = time.perf_counter()
        for i, artifact in enumerate(artifacts[1:], start=1):
            assert load(server, f"m{i}", artifact.path).status_code == 200
        load_s = (time.perf_counter() - started) / (len(artifacts) - 1)
        loaded = server.pss_bytes()
        for i, artifact in enumerate(artifacts):
            answer = httpx.post(server.url + f"/models/m{i}/invoke", json=artifact.rows.tolist())
            assert answer.status_code == 200
        per_model = (loaded - first) / (len(artifacts) - 1)
        print(f"\n[{engine}] 20 sklearn models: server tree PSS {baseline / MB:.0f} MB empty, {first / MB:.0f} MB "
              f"with one model, {loaded / MB:.0f} MB with 20; {per_model / MB:.1f} MB per additional model; "
              f"mean load {load_s * 1000:.0f} ms")
        for i in range(20):
            assert httpx.delete(server.url + f"/models/m{i}").status_code == 200
        after = server.pss_bytes()
        print(f"[{engine}] after unloading all: {after / MB:.0f} MB")
        # unloading gives the memory back (at least most of what the models added)
        assert after - baseline < 0.5 * (loaded - baseline)


def test_concurrent_loads_of_one_name_are_single_flight(engine: str, models_dir: Path) -> None:
    artifact = sklearn_artifact(models_dir / "m" / "model")
    with run_server(multi(engine)) as server:
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda: statuses.append(load(server, "m", artifact.path).status_code))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 409, 409]
        assert [m["modelName"] for m in httpx.get(server.url + "/models").json()["models"]] == ["m"]


def test_killed_server_leaves_no_processes(engine: str, models_dir: Path) -> None:
    import signal

    from tests.support.server import start_server, wait_ready

    artifact = sklearn_artifact(models_dir / "m" / "model")
    server = start_server(multi(engine))
    try:
        wait_ready(server, "/ping", 120)
        assert load(server, "m", artifact.path).status_code == 200
        tree = server.tree()
        assert len(tree) > 1
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        _, alive = psutil.wait_procs(tree[1:], timeout=30)
        for proc in alive:
            proc.kill()
        assert not alive, f"children outlived a SIGKILLed server: {[p.cmdline() for p in alive]}"
    finally:
        if server.process.poll() is None:
            server.process.kill()


def wait_for_spare(server: RunningServer, model_pids: set[int], deadline_s: float = 30.0) -> psutil.Process:
    """The native engine's spare worker: the one forked worker serving no model (polled: it is forked
    in the background once the engine starts and after each load)."""
    deadline = time.monotonic() + deadline_s
    while True:
        spares = [p for p in server.forked_workers() if p.pid not in model_pids]
        if len(spares) == 1:
            return spares[0]
        assert time.monotonic() < deadline, f"expected one spare worker, found {spares}\n{server.log()[-3000:]}"
        time.sleep(0.05)


def worker_pids(answer: httpx.Response) -> set[int]:
    assert answer.status_code == 200, answer.text
    return {worker["pid"] for worker in answer.json()["model"]["workers"]}


def test_a_load_is_handed_the_spare_worker_and_another_is_forked(models_dir: Path) -> None:
    """Native MME: a worker is forked ahead of need and the next load is handed to it, so the load
    does not wait for a fork (serve/engine.py, ``_keep_spare``); another is forked once it loaded."""
    first, second = (sklearn_artifact(models_dir / name / "model", seed=seed) for name, seed in [("a", 1), ("b", 2)])
    with run_server(multi("native")) as server:
        spare = wait_for_spare(server, set())
        a_pids = worker_pids(load(server, "a", first.path))
        assert spare.pid in a_pids
        next_spare = wait_for_spare(server, a_pids)
        b_pids = worker_pids(load(server, "b", second.path))
        assert next_spare.pid in b_pids
        for name, artifact in [("a", first), ("b", second)]:
            answer = httpx.post(f"{server.url}/models/{name}/invoke", json=artifact.rows.tolist())
            assert answer.status_code == 200, answer.text
            predictions = answer.json()
            predictions = predictions.get("predictions", predictions) if isinstance(predictions, dict) else predictions
            assert [float(x) for x in predictions] == artifact.expected


def test_a_dead_spare_is_replaced_and_the_load_still_succeeds(models_dir: Path) -> None:
    artifact = sklearn_artifact(models_dir / "m" / "model")
    with run_server(multi("native")) as server:
        spare = wait_for_spare(server, set())
        spare.kill()
        spare.wait(10)
        pids = worker_pids(load(server, "m", artifact.path))
        assert spare.pid not in pids
        assert server.log_lines_containing("the spare worker (exit code -9) is gone; starting a worker for model m")
        wait_for_spare(server, pids)
        assert httpx.post(server.url + "/models/m/invoke", json=artifact.rows.tolist()).status_code == 200
