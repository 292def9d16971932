"""A container killed mid-traffic in the harness: its in-flight invocations fail with a ModelError
boto3 parses, the harness reports the death (log stream, ``servekit local ls``) and replaces the
instance from its health check, and later requests succeed. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from harness.backends.process import ProcessBackend
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, deploy
from tests.support.models import sklearn_artifact

SKLEARN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest"


def _invoke(rt: Any, body: bytes, **kwargs: Any) -> str:
    """'ok', or the error code boto3 parsed from the harness's answer."""
    try:
        rt.invoke_endpoint(EndpointName="ep", Body=body, **kwargs)["Body"].read()
        return "ok"
    except rt.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])


def _until_served(rt: Any, body: bytes, deadline_s: float, **kwargs: Any) -> float:
    """Seconds until an invocation succeeds again; fails the test after ``deadline_s``."""
    started = time.monotonic()
    while _invoke(rt, body, **kwargs) != "ok":
        assert time.monotonic() - started < deadline_s, f"no successful invocation within {deadline_s} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_in_flight_requests_fail_cleanly_and_the_instance_is_replaced(tmp_path):
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        health_check_interval_s=0.5) as harness:
        sm, rt = boto_clients(harness.endpoint_url, retries={"max_attempts": 0}, read_timeout=30)
        deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
        victim = harness.platform.store.endpoints["ep"].deployment.all_containers()[0]
        with ThreadPoolExecutor(4) as pool:
            in_flight = [pool.submit(_invoke, rt, b"sleep:20") for _ in range(4)]
            time.sleep(1.0)  # all four are inside the container now
            os.killpg(victim.running.process.pid, signal.SIGKILL)
            outcomes = [future.result(timeout=30) for future in in_flight]
        assert outcomes == ["ModelError"] * 4
        recovery = _until_served(rt, b"{}", deadline_s=30)
        replaced = harness.platform.store.endpoints["ep"].deployment.all_containers()[0]
        assert replaced is not victim and replaced.running.exit_code() is None
        listing = httpx.get(harness.endpoint_url + "/_servekit/endpoints").json()["endpoints"][0]
        assert listing["status"] == "InService" and listing["containers"][0]["process"] == replaced.running.ident
        assert "exited; replacing instance" in victim.running.spec.log_path.read_text()
        assert recovery < 30 and [_invoke(rt, b"{}") for _ in range(5)] == ["ok"] * 5


def test_real_serve_killed_under_load_only_fails_its_own_requests(tmp_path):
    iris = sklearn_artifact(tmp_path / "iris")
    with LocalSageMaker("process", state_dir=tmp_path / "state", startup_timeout_s=120, stop_grace_s=5,
                        health_check_interval_s=0.5) as harness:
        sm, rt = boto_clients(harness.endpoint_url, retries={"max_attempts": 0}, read_timeout=30)
        deploy(sm, "ep", PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": str(iris.path)})
        victim = harness.platform.store.endpoints["ep"].deployment.all_containers()[0]
        row = b"5.1,3.5,1.4,0.2"
        stop = time.monotonic() + 4

        def client_loop() -> list[str]:
            seen = []
            while time.monotonic() < stop:
                seen.append(_invoke(rt, row, ContentType="text/csv"))
            return seen

        with ThreadPoolExecutor(4) as pool:
            loops = [pool.submit(client_loop) for _ in range(4)]
            time.sleep(1.0)
            os.killpg(victim.running.process.pid, signal.SIGKILL)
            outcomes = [o for loop in loops for o in loop.result(timeout=60)]
        assert "ok" in outcomes and set(outcomes) <= {"ok", "ModelError"}, sorted(set(outcomes))
        _until_served(rt, row, deadline_s=120, ContentType="text/csv")
        assert [_invoke(rt, row, ContentType="text/csv") for _ in range(5)] == ["ok"] * 5
