"""Runtime routing and error shapes, against stand-in containers that misbehave on request."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time

import pytest

from harness.backends.process import ProcessBackend
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, deploy, make_tar

NO_RETRY = {"retries": {"mode": "standard", "max_attempts": 1}}


def metric(harness, endpoint: str, name: str, variant: str = "AllTraffic") -> dict:
    return harness.platform.metrics.snapshot(endpoint)[variant]["metrics"].get(name, {})


def mme_models(tmp_path, count: int):
    root = tmp_path / "models"
    for i in range(count):
        make_tar(root / f"model-{i}.tar.gz", {"weights.txt": f"model {i}".encode(), f"id-{i}": b""})
    return root


def test_mme_lru_eviction_reload_and_errors(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    root = mme_models(tmp_path, 12)
    deploy(sm, "mme", Containers=[{"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": f"file://{root}/",
                                   "Environment": {"FAKE_MAX_MODELS": "3"}}])
    for i in range(12):
        answer = json.loads(rt.invoke_endpoint(EndpointName="mme", TargetModel=f"model-{i}.tar.gz",
                                               Body=b"{}")["Body"].read())
        assert f"id-{i}" in answer["files"] and answer["target_model"] == f"model-{i}.tar.gz"
    # The container holds at most 3: every load after the third evicted the least recently used one.
    assert metric(fake_harness, "mme", "ModelUnloadingTime")["SampleCount"] == 9
    assert fake_harness.platform.metrics.loaded_models("mme", "AllTraffic") == 3
    # model-11 is cached; model-0 was evicted and comes back (from disk) on demand.
    rt.invoke_endpoint(EndpointName="mme", TargetModel="model-11.tar.gz", Body=b"{}")
    answer = json.loads(rt.invoke_endpoint(EndpointName="mme", TargetModel="model-0.tar.gz", Body=b"{}")["Body"].read())
    assert "id-0" in answer["files"]
    hits = metric(fake_harness, "mme", "ModelCacheHit")
    assert hits["SampleCount"] == 14 and hits["Sum"] == 1
    assert metric(fake_harness, "mme", "ModelDownloadingTime")["SampleCount"] == 12  # reload came from disk
    assert metric(fake_harness, "mme", "Invocations")["Sum"] == 14

    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="mme", Body=b"{}")
    assert "is missing a target model header" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="mme", TargetModel="nope.tar.gz", Body=b"{}")
    assert caught.value.response["Error"]["Message"].startswith("Failed to download model data(url: file://")
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="mme", TargetModel="../secret.tar.gz", Body=b"{}")
    assert "'..'" in caught.value.response["Error"]["Message"]

    # Container 4xx/5xx through the MME path is a ModelError naming "primary".
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="mme", TargetModel="model-1.tar.gz", Body=b"status:503:overloaded")
    response = caught.value.response
    assert response["OriginalStatusCode"] == 503 and response["OriginalMessage"] == "overloaded"
    assert response["Error"]["Message"].startswith('Received server error (503) from primary with message "overloaded"')


def test_mme_unsafe_archives_are_refused(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    root = tmp_path / "models"
    root.mkdir()
    with tarfile.open(root / "dotdot.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with tarfile.open(root / "link.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with tarfile.open(root / "hard.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("h")
        info.type = tarfile.LNKTYPE
        info.linkname = "model.bin"
        tar.addfile(info)
    with tarfile.open(root / "device.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("null")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)
    deploy(sm, "mme", Containers=[{"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": str(root)}])
    expectations = {
        "dotdot.tar.gz": "would be written outside the model directory",
        "link.tar.gz": "is a symbolic link to '/etc/passwd'",
        "hard.tar.gz": "is a hard link",
        "device.tar.gz": "is a device or FIFO",
    }
    for target, text in expectations.items():
        with pytest.raises(rt.exceptions.ValidationError) as caught:
            rt.invoke_endpoint(EndpointName="mme", TargetModel=target, Body=b"{}")
        assert text in caught.value.response["Error"]["Message"], target
    assert not (tmp_path / "escape.txt").exists()
    assert not any(fake_harness.state_dir.rglob("escape.txt"))

    # The same archive as a single-model artifact fails the endpoint with a reason naming the member.
    deploy(sm, "single", wait=False, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(root / "dotdot.tar.gz")})
    deadline = time.monotonic() + 30
    while sm.describe_endpoint(EndpointName="single")["EndpointStatus"] == "Creating" and time.monotonic() < deadline:
        time.sleep(0.1)
    described = sm.describe_endpoint(EndpointName="single")
    assert described["EndpointStatus"] == "Failed"
    assert "'../../escape.txt' would be written outside the model directory" in described["FailureReason"]


def test_mme_cache_disabled_and_slow_load(tmp_path):
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "s", model_load_wait_s=0.5, stop_grace_s=5) as harness:
        sm, rt = boto_clients(harness.endpoint_url, **NO_RETRY)
        root = mme_models(tmp_path, 2)
        deploy(sm, "nocache", Containers=[{"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": str(root),
                                           "MultiModelConfig": {"ModelCacheSetting": "Disabled"}}])
        for _ in range(2):
            rt.invoke_endpoint(EndpointName="nocache", TargetModel="model-0.tar.gz", Body=b"{}")
            deadline = time.monotonic() + 10
            while harness.platform.metrics.loaded_models("nocache", "AllTraffic") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert harness.platform.metrics.loaded_models("nocache", "AllTraffic") == 0
        assert metric(harness, "nocache", "ModelDownloadingTime")["SampleCount"] == 2  # deleted from disk too

        deploy(sm, "slow", Containers=[{"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": str(root),
                                        "Environment": {"FAKE_LOAD_DELAY_S": "2"}}])
        with pytest.raises(rt.exceptions.ModelNotReadyException) as caught:
            rt.invoke_endpoint(EndpointName="slow", TargetModel="model-1.tar.gz", Body=b"{}")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        # The load went on in the background; boto3's default (legacy) retry mode retries 429 itself.
        _, retrying = boto_clients(harness.endpoint_url)
        deadline = time.monotonic() + 20
        while True:
            try:
                retrying.invoke_endpoint(EndpointName="slow", TargetModel="model-1.tar.gz", Body=b"{}")
                break
            except retrying.exceptions.ModelNotReadyException:
                assert time.monotonic() < deadline


def test_direct_multi_container(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "direct", InferenceExecutionConfig={"Mode": "Direct"}, Containers=[
        {"Image": IMAGE, "ContainerHostname": "first", "Environment": {"USER_SETTING": "one"}},
        {"Image": "servekit-tensorflow:2", "ContainerHostname": "second", "Environment": {"USER_SETTING": "two"}}])
    answers = {}
    for host in ("first", "second"):
        response = rt.invoke_endpoint(EndpointName="direct", TargetContainerHostname=host, Body=b"{}")
        answers[host] = json.loads(response["Body"].read())
    assert answers["first"]["user_env"] == "one" and answers["second"]["user_env"] == "two"
    assert answers["first"]["port"] != answers["second"]["port"]
    low1, high1 = map(int, answers["first"]["safe_range"].split("-"))
    low2, high2 = map(int, answers["second"]["safe_range"].split("-"))
    assert high1 < low2 or high2 < low1  # disjoint SAGEMAKER_SAFE_PORT_RANGEs

    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="direct", Body=b"{}")
    assert "TargetContainerHostname" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="direct", TargetContainerHostname="third", Body=b"{}")
    assert "Container third does not exist" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="direct", TargetModel="m.tar.gz", TargetContainerHostname="first", Body=b"{}")
    assert "not a multi-model endpoint" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="direct", TargetContainerHostname="second", Body=b"status:400:bad row")
    assert caught.value.response["Error"]["Message"].startswith(
        'Received client error (400) from second with message "bad row"')
    assert metric(fake_harness, "direct", "Invocation4XXErrors")["Sum"] == 1
    assert metric(fake_harness, "direct", "Invocation5XXErrors")["Sum"] == 0
    assert metric(fake_harness, "direct", "Invocation4XXErrors")["SampleCount"] == 3  # one sample per request
    per_container = fake_harness.platform.metrics.snapshot("direct")["AllTraffic"]["containers"]
    assert per_container["first"]["ContainerLatency"]["SampleCount"] == 1
    assert per_container["second"]["ContainerLatency"]["SampleCount"] == 2


def test_serial_pipeline_chains_body_and_content_type(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "pipe", Containers=[
        {"Image": IMAGE, "Environment": {"FAKE_OUTPUT_TYPE": "application/x-step1"}},
        {"Image": IMAGE, "Environment": {"FAKE_OUTPUT_TYPE": "application/x-step2"}},
        {"Image": IMAGE, "Environment": {"FAKE_OUTPUT_TYPE": "application/x-final"}}])
    response = rt.invoke_endpoint(EndpointName="pipe", Body=b"raw", ContentType="text/csv",
                                  Accept="application/x-final", CustomAttributes="a=1")
    assert response["ContentType"] == "application/x-final"
    third = json.loads(response["Body"].read())
    assert third["content_type"] == "application/x-step2" and third["accept"] == "application/x-final"
    second = json.loads(third["body"])
    assert second["content_type"] == "application/x-step1" and second["accept"] is None
    first = json.loads(second["body"])
    assert first == {**first, "body": "raw", "content_type": "text/csv", "accept": None}

    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="pipe", TargetContainerHostname="container-1", Body=b"x")
    assert "not configured for direct invocation" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="pipe", Body=b"status:500:boom")
    assert caught.value.response["Error"]["Message"].startswith(
        'Received server error (500) from container-1 with message "boom"')


def test_payload_limits_and_dead_containers(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ep", Body=b"a" * (6 * 1024 * 1024 + 1))
    assert "6291457 bytes exceeds the 6291456-byte" in caught.value.response["Error"]["Message"]
    # Exactly 6 MiB is accepted; the stand-in echoes it back inside JSON, so its answer is over 6 MiB.
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="ep", Body=b"a" * (6 * 1024 * 1024))
    assert "the response payload of" in caught.value.response["Error"]["Message"]
    assert "exceeds the maximum limit of 6 MB" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ep", TargetModel="m.tar.gz", Body=b"{}")
    assert caught.value.response["Error"]["Message"] == (
        "Endpoint ep is not a multi-model endpoint and does not support target model header.")
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ep", TargetVariant="Nope", Body=b"{}")
    assert "variant Nope does not exist" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ghost", Body=b"{}")
    assert caught.value.response["Error"]["Message"] == "Endpoint ghost of account 123456789012 not found."

    container = fake_harness.platform.store.endpoints["ep"].deployment.all_containers()[0]
    container.running.stop(1)
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="ep", Body=b"{}")
    assert "Could not reach container primary: it exited with code" in caught.value.response["OriginalMessage"]
    # Like SageMaker, the harness replaces the instance whose container died; traffic recovers.
    deadline = time.monotonic() + 30
    while True:
        try:
            rt.invoke_endpoint(EndpointName="ep", Body=b"{}")
            break
        except rt.exceptions.ModelError:
            assert time.monotonic() < deadline, "the dead instance was not replaced within 30 s"
            time.sleep(0.2)
    replaced = fake_harness.platform.store.endpoints["ep"].deployment.all_containers()[0]
    assert replaced is not container and replaced.running.exit_code() is None


def test_mme_single_flight_loads_and_sticky_instances(fake_harness, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    sm, rt = boto_clients(fake_harness.endpoint_url)
    root = mme_models(tmp_path, 6)
    deploy(sm, "mme2", instance_count=2, Containers=[
        {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": str(root), "Environment": {"FAKE_LOAD_DELAY_S": "0.5"}}])

    def call(target: str) -> str:
        answer = rt.invoke_endpoint(EndpointName="mme2", TargetModel=target, Body=b"{}")
        return json.loads(answer["Body"].read())["port"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ports = list(pool.map(call, ["model-0.tar.gz"] * 8))
    # Eight concurrent first requests: one download, one load, all answered by the same instance.
    assert len(set(ports)) == 1
    assert metric(fake_harness, "mme2", "ModelLoadingTime")["SampleCount"] == 1
    assert metric(fake_harness, "mme2", "ModelDownloadingTime")["SampleCount"] == 1
    # Every TargetModel sticks to one instance; the six models use both instances.
    by_model = {f"model-{i}.tar.gz": {call(f"model-{i}.tar.gz") for _ in range(3)} for i in range(6)}
    assert all(len(p) == 1 for p in by_model.values())
    assert len(set().union(*by_model.values())) == 2


def test_variants_weights_and_target_variant(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    for name in ("a", "b"):
        sm.create_model(ModelName=name, PrimaryContainer={"Image": IMAGE, "Environment": {"USER_SETTING": name}})
    sm.create_endpoint_config(EndpointConfigName="ab", ProductionVariants=[
        {"VariantName": "Main", "ModelName": "a", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
         "InitialVariantWeight": 1.0},
        {"VariantName": "Shadowless", "ModelName": "b", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
         "InitialVariantWeight": 0.0}])
    sm.create_endpoint(EndpointName="ab", EndpointConfigName="ab")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ab", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
    seen = {rt.invoke_endpoint(EndpointName="ab", Body=b"{}")["InvokedProductionVariant"] for _ in range(10)}
    assert seen == {"Main"}  # weight 0 gets no traffic
    response = rt.invoke_endpoint(EndpointName="ab", Body=b"{}", TargetVariant="Shadowless")
    assert response["InvokedProductionVariant"] == "Shadowless"
    assert json.loads(response["Body"].read())["user_env"] == "b"
    variants = sm.describe_endpoint(EndpointName="ab")["ProductionVariants"]
    assert [(v["VariantName"], v["CurrentWeight"]) for v in variants] == [("Main", 1.0), ("Shadowless", 0.0)]


def test_pipeline_with_mme_stage_and_intermediate_limit(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    root = mme_models(tmp_path, 2)
    deploy(sm, "pipe-mme", Containers=[
        {"Image": IMAGE, "ContainerHostname": "prep"},
        {"Image": IMAGE, "ContainerHostname": "models", "Mode": "MultiModel", "ModelDataUrl": str(root)}])
    answer = json.loads(rt.invoke_endpoint(EndpointName="pipe-mme", TargetModel="model-1.tar.gz",
                                           Body=b"x")["Body"].read())
    assert "id-1" in answer["files"] and answer["target_model"] == "model-1.tar.gz"
    assert json.loads(answer["body"])["target_model"] is None  # only the MME stage gets TargetModel
    # The first stage's answer (its JSON echo of 5.5 MB) is over the 5 MB limit between containers.
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="pipe-mme", TargetModel="model-1.tar.gz", Body=b"a" * (5_500_000))
    message = caught.value.response["Error"]["Message"]
    assert message.startswith("Received response from prep with status code 200. However, the request payload "
                              "from prep to models is ")
    assert message.endswith("bytes, which has exceeded the maximum limit of 5 MB.")
