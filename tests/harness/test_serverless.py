"""ServerlessConfig through boto3, on the process backend with the stand-in container of fake_container.py
(docs/harness.md "Serverless")."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.exceptions
import pytest

from tests.harness.conftest import IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def serverless_variant(**config: int) -> dict[str, Any]:
    return {"VariantName": "AllTraffic", "ModelName": "m",
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 2, **config}}


def serverless(sm: Any, name: str, **config: int) -> None:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[serverless_variant(**config)])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def setup_count(harness: Any, name: str) -> int:
    metric = harness.platform.metrics.snapshot(name).get("AllTraffic", {}).get("metrics", {}).get("ModelSetupTime")
    return int(metric["SampleCount"]) if metric else 0


def test_cold_start_concurrency_and_idle(fake_harness):
    fake_harness.config.serverless_idle_s = 600  # lowered below, once the warm part is done
    sm, rt = boto_clients(fake_harness.endpoint_url, retries={"total_max_attempts": 1})
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    serverless(sm, "sls")
    variant = fake_harness.platform.store.endpoints["sls"].deployment.variants[0]
    assert variant.instances == []  # cold: the container started once for the health check, then stopped
    assert variant.share.memory_mib == 2048  # the container's memory is MemorySizeInMB
    [summary] = sm.describe_endpoint(EndpointName="sls")["ProductionVariants"]
    assert summary["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
    assert "CurrentInstanceCount" not in summary

    answer = json.loads(rt.invoke_endpoint(EndpointName="sls", Body=b"{}")["Body"].read())  # a cold start
    assert setup_count(fake_harness, "sls") == 1 and len(variant.instances) == 1
    rt.invoke_endpoint(EndpointName="sls", Body=b"{}")  # warm: no setup
    assert setup_count(fake_harness, "sls") == 1

    def slow(_: int) -> str:
        try:
            return str(rt.invoke_endpoint(EndpointName="sls", Body=b"sleep:3")["Body"].read(), "ascii")
        except botocore.exceptions.ClientError as exc:
            return str(exc.response["Error"]["Code"])

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = sorted(pool.map(slow, range(3)))
    assert outcomes == ["ThrottlingException", "slept", "slept"]  # MaxConcurrency 2

    fake_harness.config.serverless_idle_s = 0.5
    deadline = time.monotonic() + 20  # idle for serverless_idle_s: cold again
    while variant.instances:
        assert time.monotonic() < deadline, "the idle serverless variant did not go cold"
        time.sleep(0.1)
    assert json.loads(rt.invoke_endpoint(EndpointName="sls", Body=b"{}")["Body"].read())["port"] != answer["port"]
    assert setup_count(fake_harness, "sls") == 2
    with pytest.raises(botocore.exceptions.ClientError, match="4194304-byte"):
        rt.invoke_endpoint(EndpointName="sls", Body=b"x" * (4 * 1024 * 1024 + 1))


def test_provisioned_concurrency_stays_warm_and_refusals(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    serverless(sm, "warm", ProvisionedConcurrency=1)
    assert len(fake_harness.platform.store.endpoints["warm"].deployment.variants[0].instances) == 1

    instance_based = {"VariantName": "Other", "ModelName": "m", "InstanceType": "ml.m5.large",
                      "InitialInstanceCount": 1}
    capture = {"InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://b/c",
               "CaptureOptions": [{"CaptureMode": "Input"}]}
    refusals = [
        ({"ProductionVariants": [serverless_variant(MemorySizeInMB=1500)]}, "is not one of 1024"),
        ({"ProductionVariants": [serverless_variant(ProvisionedConcurrency=3)]}, "less than or equal to Max"),
        ({"ProductionVariants": [{**serverless_variant(), "InstanceType": "ml.m5.large"}]}, "InstanceType cannot"),
        ({"ProductionVariants": [serverless_variant(), instance_based]}, "exactly one production variant"),
        ({"ProductionVariants": [serverless_variant()], "DataCaptureConfig": capture}, "data capture is not supported"),
    ]
    for params, message in refusals:
        with pytest.raises(botocore.exceptions.ClientError, match=message):
            sm.create_endpoint_config(EndpointConfigName="bad", **params)
    with pytest.raises(botocore.exceptions.ClientError, match="cannot be changed for a serverless variant"):
        sm.update_endpoint_weights_and_capacities(EndpointName="warm", DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
