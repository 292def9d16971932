"""A team's own image tests, written as docs/testing.md shows: only servekit's pytest plugin fixtures.

tests/plugin/test_plugin.py copies this file into a pytester directory and runs it there (process and
docker backends), so it is not collected from here (its name does not start with ``test_``).
The model is a user script: ``model_fn`` reads ``params.json``; ``predict_fn`` scales the values and
may sleep first (for the fault tests); the answer names the model's tag.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness.testing import Container

IMAGE = os.environ.get("TEAM_IMAGE", "servekit-sklearn:latest")
SCRIPT = """
import json, time

def model_fn(model_dir):
    with open(model_dir + "/params.json") as handle:
        return json.load(handle)

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    time.sleep(data.get("sleep", 0))
    return {"tag": model["tag"], "values": [v * model["scale"] for v in data["values"]]}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def model_dir(root: Path, tag: str, scale: float) -> Path:
    """An artifact directory: code/inference.py and params.json."""
    (root / tag / "code").mkdir(parents=True)
    (root / tag / "code" / "inference.py").write_text(SCRIPT)
    (root / tag / "params.json").write_text(json.dumps({"tag": tag, "scale": scale}))
    return root / tag


def model_archive(directory: Path, archive: Path) -> Path:
    """``directory`` as model.tar.gz, as SageMaker expects ModelDataUrl."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                info = tarfile.TarInfo(str(path.relative_to(directory)))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``single`` (a directory), ``first`` and ``second`` (pipeline stages) and ``mme`` (a prefix
    holding a.tar.gz, b.tar.gz and c.tar.gz)."""
    root = tmp_path_factory.mktemp("models")
    prefix = root / "mme"
    prefix.mkdir()
    for tag in ("a", "b", "c"):
        model_archive(model_dir(root, tag, 1.0), prefix / f"{tag}.tar.gz")
    return {"single": model_dir(root, "single", 3.0), "first": model_dir(root, "first", 2.0),
            "second": model_dir(root, "second", 10.0), "mme": prefix}


def body(*values: float, sleep: float = 0) -> str:
    return json.dumps({"values": list(values), "sleep": sleep})


def error_of(call: Any) -> dict[str, Any]:
    """The parsed error of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call()
    error: dict[str, Any] = caught.value.response["Error"]
    return error


def until(condition: Any, deadline_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {deadline_s} s"
        time.sleep(0.1)
    return value


def test_single_model_answers_logs_and_counts(servekit_endpoint, models):
    endpoint = servekit_endpoint(IMAGE, models["single"])
    answer = endpoint.invoke(body(1, 2), content_type="application/json")
    assert answer.json() == {"tag": "single", "values": [3.0, 6.0]} and answer.variant == "AllTraffic"
    assert endpoint.metric("Invocations")["SampleCount"] == 1
    assert until(lambda: "POST /invocations" in endpoint.logs(), 10, "the access log line")


def test_mme_serves_each_target_model(servekit_endpoint, models):
    endpoint = servekit_endpoint(IMAGE, models["mme"], mme=True)
    for tag in ("a", "b"):
        answer = endpoint.invoke(body(4), content_type="application/json", TargetModel=f"{tag}.tar.gz")
        assert answer.json() == {"tag": tag, "values": [4.0]}


def test_serial_pipeline_chains_its_containers(servekit_endpoint, models):
    endpoint = servekit_endpoint(pipeline=[Container(IMAGE, models["first"]), Container(IMAGE, models["second"])])
    assert endpoint.invoke(body(1, 5), content_type="application/json").json() == {"tag": "second",
                                                                                     "values": [20.0, 100.0]}


def test_killed_instance_fails_its_requests_and_is_replaced(servekit_endpoint, models):
    endpoint = servekit_endpoint(IMAGE, models["single"])
    with ThreadPoolExecutor(3) as pool:
        in_flight = [pool.submit(error_of, lambda: endpoint.invoke(body(1, sleep=60), "application/json"))
                     for _ in range(3)]
        until(lambda: endpoint.metric("Invocations").get("SampleCount") == 3, 30, "three requests in flight")
        killed = endpoint.kill_instance()
        errors = [future.result(timeout=60) for future in in_flight]
    assert [e["Code"] for e in errors] == ["ModelError"] * 3
    assert all(e["Message"].startswith("Received server error (0) from primary") for e in errors), errors
    until(lambda: endpoint.instance_ids() and killed not in endpoint.instance_ids(), 120, "a replacement instance")
    assert endpoint.invoke(body(1), "application/json").json()["values"] == [3.0]
    assert endpoint.status == "InService"


def test_vanished_mme_artifact_fails_that_target_model_only(servekit_endpoint, models):
    endpoint = servekit_endpoint(IMAGE, models["mme"], mme=True)
    endpoint.invoke(body(1), "application/json", TargetModel="a.tar.gz")
    url = endpoint.vanish("b.tar.gz")
    error = error_of(lambda: endpoint.invoke(body(1), "application/json", TargetModel="b.tar.gz"))
    assert error["Code"] == "ValidationError"
    assert error["Message"].startswith(f"Failed to download model data(url: {url})")
    assert endpoint.invoke(body(2), "application/json", TargetModel="a.tar.gz").json()["values"] == [2.0]


def test_vanished_model_data_fails_create_endpoint(servekit_endpoint, servekit_faults, models):
    servekit_faults.vanish(str(models["single"]))
    endpoint = servekit_endpoint(IMAGE, models["single"], wait=False)
    described = until(lambda: (d := endpoint.describe())["EndpointStatus"] != "Creating" and d, 60, "a final status")
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].startswith('Failed to download model data for container "primary"')


def test_507_on_load_unloads_the_least_recently_used_model(servekit_endpoint, servekit_faults, models):
    endpoint = servekit_endpoint(IMAGE, models["mme"], mme=True)
    for tag in ("a", "b"):
        endpoint.invoke(body(1), "application/json", TargetModel=f"{tag}.tar.gz")
    servekit_faults.reject_loads(1)
    assert endpoint.invoke(body(1), "application/json", TargetModel="c.tar.gz").json()["tag"] == "c"
    assert endpoint.metric("ModelUnloadingTime")["SampleCount"] == 1  # a, the least recently used
    assert endpoint.metrics()["AllTraffic"]["LoadedModelCountNow"] == 2
    endpoint.invoke(body(1), "application/json", TargetModel="b.tar.gz")  # still loaded: a cache hit
    endpoint.invoke(body(1), "application/json", TargetModel="a.tar.gz")  # unloaded: a miss, loaded again
    hits = endpoint.metric("ModelCacheHit")
    assert (hits["SampleCount"], hits["Sum"]) == (5, 1)


def test_delayed_start_keeps_the_endpoint_creating(servekit_endpoint, servekit_faults, models):
    delay_s = 3.0
    servekit_faults.delay_start(delay_s, IMAGE)
    started = time.monotonic()
    endpoint = servekit_endpoint(IMAGE, models["single"], wait=False)
    not_started_at = []  # when the endpoint was Creating with no container log stream yet
    while (status := endpoint.status) != "InService":
        assert status == "Creating" and time.monotonic() - started < 120, (status, endpoint.describe())
        if endpoint.logs() == "":
            not_started_at.append(time.monotonic() - started)
        time.sleep(0.1)
    assert time.monotonic() - started >= delay_s and max(not_started_at, default=0.0) >= delay_s - 0.5, not_started_at
