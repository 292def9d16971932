"""Asynchronous inference on the process backend: InvokeEndpointAsync with boto3, requests and results
in moto S3, the stand-in container of fake_container.py answering with what it saw."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from harness.backends.process import ProcessBackend
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ASYNC = {"OutputConfig": {"S3OutputPath": "s3://data/async-out/", "S3FailurePath": "s3://data/async-fail"},
         "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1}}


def async_endpoint(sm: Any, name: str, config: dict[str, Any] | None = None) -> None:
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=name, AsyncInferenceConfig=config or ASYNC, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def wait_for_object(s3: Any, uri: str, timeout_s: float = 30.0) -> bytes:
    bucket, key = uri[len("s3://"):].split("/", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError:
            assert time.monotonic() < deadline, f"{uri} was not written within {timeout_s} s"
            time.sleep(0.1)


def exists(s3: Any, uri: str) -> bool:
    bucket, key = uri[len("s3://"):].split("/", 1)
    return "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix=key)


def test_result_written_to_output_location(fake_harness, s3):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    async_endpoint(sm, "later")
    assert sm.describe_endpoint_config(EndpointConfigName="later")["AsyncInferenceConfig"] == ASYNC
    s3.put_object(Bucket="data", Key="async-in/request.csv", Body=b"1,2,3")
    answer = rt.invoke_endpoint_async(EndpointName="later", InputLocation="s3://data/async-in/request.csv",
                                      ContentType="text/csv", Accept="application/json", InferenceId="mine-1",
                                      CustomAttributes="trace=7")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "mine-1"
    assert answer["OutputLocation"].startswith("s3://data/async-out/") and answer["OutputLocation"].endswith(".out")
    assert answer["FailureLocation"].startswith("s3://data/async-fail/")
    assert answer["FailureLocation"].endswith("-error.out")
    seen = json.loads(wait_for_object(s3, answer["OutputLocation"]))
    assert (seen["body"], seen["content_type"], seen["accept"], seen["custom_attributes"]) == (
        "1,2,3", "text/csv", "application/json", "trace=7")
    assert not exists(s3, answer["FailureLocation"])
    # Without ContentType the object's own Content-Type goes to the container (what the SDK relies on).
    s3.put_object(Bucket="data", Key="async-in/typed", Body=b"[[1, 2]]", ContentType="application/json")
    generated = rt.invoke_endpoint_async(EndpointName="later", InputLocation="s3://data/async-in/typed")
    assert len(generated["InferenceId"]) == 36  # a UUID when the caller gives none
    seen = json.loads(wait_for_object(s3, generated["OutputLocation"]))
    assert (seen["body"], seen["content_type"], seen["accept"]) == ("[[1, 2]]", "application/json", None)


def test_errors_go_to_the_failure_location(fake_harness, s3):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    async_endpoint(sm, "failing")
    s3.put_object(Bucket="data", Key="async-in/bad", Body=b"status:500:the model broke")
    answer = rt.invoke_endpoint_async(EndpointName="failing", InputLocation="s3://data/async-in/bad")
    error = wait_for_object(s3, answer["FailureLocation"]).decode()
    assert "Received server error (500) from primary" in error and "the model broke" in error
    assert not exists(s3, answer["OutputLocation"])
    missing = rt.invoke_endpoint_async(EndpointName="failing", InputLocation="s3://data/async-in/nothing-here")
    assert "Cannot read s3://data/async-in/nothing-here" in wait_for_object(s3, missing["FailureLocation"]).decode()
    # Both are in the endpoint's log group too, stream async-inference-errors (written before FailureLocation).
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=fake_harness.endpoint_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    group = "/aws/sagemaker/Endpoints/failing"
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert "async-inference-errors" in streams
    events = logs.get_log_events(logGroupName=group, logStreamName="async-inference-errors", startFromHead=True)
    messages = [e["message"] for e in events["events"]]
    assert len(messages) == 2
    assert answer["InferenceId"] in messages[0] and "the model broke" in messages[0]
    assert missing["InferenceId"] in messages[1] and "Cannot read s3://data/async-in/nothing-here" in messages[1]


def test_backlog_is_reported_and_the_queue_is_bounded(tmp_path, s3):
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        async_queue_limit=2) as harness:
        sm, rt = boto_clients(harness.endpoint_url, retries={"max_attempts": 0})
        async_endpoint(sm, "busy")
        s3.put_object(Bucket="data", Key="async-in/slow", Body=b"sleep:1.5")
        locations = [rt.invoke_endpoint_async(EndpointName="busy", InputLocation="s3://data/async-in/slow")
                     ["OutputLocation"] for _ in range(3)]  # one processing, two queued
        with pytest.raises(ClientError) as raised:
            rt.invoke_endpoint_async(EndpointName="busy", InputLocation="s3://data/async-in/slow")
        assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "queue of endpoint busy is full (2 requests)" in raised.value.response["Error"]["Message"]
        for location in locations:
            assert wait_for_object(s3, location) == b"slept"
        deadline = time.monotonic() + 10
        while (backlog := harness.platform.metrics.snapshot("busy")["AllTraffic"]["metrics"]
               ["ApproximateBacklogSize"])["Minimum"] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert backlog["Maximum"] == 3


def test_refusals(fake_harness, s3):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variants = [{"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]
    topic = "arn:aws:sns:us-east-1:123456789012:done"
    notify = {"OutputConfig": {"S3OutputPath": "s3://data/o/", "NotificationConfig": {"SuccessTopic": topic}}}
    with pytest.raises(ClientError, match="NotificationConfig"):
        sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants, AsyncInferenceConfig=notify)
    with pytest.raises(ClientError, match="S3OutputPath must be specified"):
        sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants,
                                  AsyncInferenceConfig={"OutputConfig": {"S3FailurePath": "s3://data/f/"}})
    sm.create_endpoint_config(EndpointConfigName="realtime", ProductionVariants=variants)
    sm.create_endpoint(EndpointName="realtime", EndpointConfigName="realtime")
    wait_in_service(sm, "realtime")
    with pytest.raises(ClientError, match="not configured for asynchronous inference"):
        rt.invoke_endpoint_async(EndpointName="realtime", InputLocation="s3://data/x")
    async_endpoint(sm, "later")
    with pytest.raises(ClientError, match="Filename is not supported"):
        rt.invoke_endpoint_async(EndpointName="later", InputLocation="s3://data/x", Filename="result.json")
    with pytest.raises(ClientError, match="1 validation error detected: .*inputLocation"):
        rt.invoke_endpoint_async(EndpointName="later", InputLocation="ftp://data/x")
