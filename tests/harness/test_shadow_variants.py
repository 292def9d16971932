"""ShadowProductionVariants through boto3, on the process backend with the stand-in container of
fake_container.py (docs/harness.md "Shadow variants")."""

from __future__ import annotations

import json
import time
from typing import Any

import botocore.exceptions
import httpx
import pytest

from harness.security import ADMIN_HEADER
from tests.harness.conftest import IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def variant(name: str, model: str, weight: float = 1.0) -> dict[str, Any]:
    return {"VariantName": name, "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
            "InitialVariantWeight": weight}


def shadowed(sm: Any, name: str, shadow_env: dict[str, str], shadow_weight: float = 1.0) -> None:
    """Endpoint ``name``: production variant Main (model prod), shadow variant Shadow (model shadow)."""
    sm.create_model(ModelName="prod", ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": IMAGE, "Environment": {"USER_SETTING": "prod"}})
    sm.create_model(ModelName="shadow", ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": IMAGE, "Environment": {"USER_SETTING": "shadow", **shadow_env}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant("Main", "prod")],
                              ShadowProductionVariants=[variant("Shadow", "shadow", shadow_weight)])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def shadow_metric(harness: Any, endpoint: str, name: str) -> float:
    metrics = harness.platform.metrics.snapshot(endpoint).get("Shadow", {}).get("metrics", {})
    return float(metrics.get(name, {}).get("Sum", 0.0))


def wait_for(predicate: Any, deadline_s: float = 20.0) -> None:
    """Poll ``predicate`` until true, failing after ``deadline_s`` (copies finish in the harness's loop)."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def test_shadow_gets_a_copy_of_each_request(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    shadowed(sm, "sh", {})
    for _ in range(6):
        answer = rt.invoke_endpoint(EndpointName="sh", Body=b'{"x": 1}', ContentType="application/json")
        assert answer["InvokedProductionVariant"] == "Main"
        assert json.loads(answer["Body"].read())["user_env"] == "prod"  # the shadow's answer is discarded
    def copies_done() -> int:  # the outcome is recorded when a copy has its answer
        outcome = fake_harness.platform.metrics.snapshot("sh").get("Shadow", {}).get("metrics", {}).get(
            "Invocation5XXErrors", {})
        return int(outcome.get("SampleCount", 0))

    wait_for(lambda: copies_done() == 6)
    snapshot = fake_harness.platform.metrics.snapshot("sh")
    assert snapshot["Main"]["metrics"]["Invocations"]["Sum"] == 6
    assert snapshot["Shadow"]["metrics"]["ModelLatency"]["SampleCount"] == 6
    assert snapshot["Shadow"]["metrics"]["Invocation5XXErrors"]["Sum"] == 0

    described = sm.describe_endpoint(EndpointName="sh")
    [summary] = described["ShadowProductionVariants"]
    assert (summary["VariantName"], summary["CurrentWeight"], summary["CurrentInstanceCount"]) == ("Shadow", 1.0, 1)
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Main"]
    config = sm.describe_endpoint_config(EndpointConfigName="sh")
    assert config["ShadowProductionVariants"][0]["ModelName"] == "shadow"
    logs = fake_harness.client("logs")
    streams = [s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName="/aws/sagemaker/Endpoints/sh")["logStreams"]]
    assert any(s.startswith("Shadow/i-") for s in streams) and any(s.startswith("Main/i-") for s in streams)
    listed = httpx.get(f"{fake_harness.endpoint_url}/_servekit/endpoints", headers={ADMIN_HEADER: "1"}).json()
    assert sorted(c["variant"] for c in listed["endpoints"][0]["containers"]) == ["Main", "Shadow"]  # servekit local ls

    # TargetVariant names production variants only.
    with pytest.raises(botocore.exceptions.ClientError, match="The variant Shadow does not exist"):
        rt.invoke_endpoint(EndpointName="sh", Body=b"{}", TargetVariant="Shadow")

    # Weight 0 on the shadow (UpdateEndpointWeightsAndCapacities): no more copies.
    sm.update_endpoint_weights_and_capacities(EndpointName="sh", DesiredWeightsAndCapacities=[
        {"VariantName": "Shadow", "DesiredWeight": 0.0}])
    wait_in_service(sm, "sh")
    assert sm.describe_endpoint(EndpointName="sh")["ShadowProductionVariants"][0]["CurrentWeight"] == 0.0
    for _ in range(4):
        rt.invoke_endpoint(EndpointName="sh", Body=b"{}")
    assert shadow_metric(fake_harness, "sh", "Invocations") == 6


def test_slow_shadow_neither_delays_nor_piles_up(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    # The shadow answers each request after 4 s; production at once.
    shadowed(sm, "slow", {"FAKE_BATCH": "1", "FAKE_BATCH_DELAY_S": "4"})
    fake_harness.config.shadow_max_in_flight = 2
    started = time.monotonic()
    for _ in range(5):
        rt.invoke_endpoint(EndpointName="slow", Body=b"1,2", ContentType="text/csv")
    assert time.monotonic() - started < 4.0  # no answer waited for the shadow
    assert shadow_metric(fake_harness, "slow", "ShadowCopiesDropped") == 3
    assert shadow_metric(fake_harness, "slow", "Invocations") == 2


def test_shadow_refusals(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    for model in ("a", "b"):
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    cases = [
        dict(ProductionVariants=[variant("A", "a"), variant("B", "b")], ShadowProductionVariants=[variant("S", "b")]),
        dict(ProductionVariants=[variant("A", "a")], ShadowProductionVariants=[variant("S", "b"), variant("T", "b")]),
    ]
    for case in cases:
        with pytest.raises(botocore.exceptions.ClientError, match="specify exactly one variant"):
            sm.create_endpoint_config(EndpointConfigName="bad", **case)
    with pytest.raises(botocore.exceptions.ClientError, match="used more than once"):
        sm.create_endpoint_config(EndpointConfigName="bad", ProductionVariants=[variant("A", "a")],
                                  ShadowProductionVariants=[variant("A", "b")])
    with pytest.raises(botocore.exceptions.ClientError, match="with AsyncInferenceConfig is not supported"):
        sm.create_endpoint_config(EndpointConfigName="bad", ProductionVariants=[variant("A", "a")],
                                  ShadowProductionVariants=[variant("S", "b")],
                                  AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/out"}})
