"""Inference components through boto3, on the process backend with the stand-in container of fake_container.py
(docs/harness.md "Inference components")."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest

from harness.security import ADMIN_HEADER
from tests.harness.conftest import IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NO_RETRY = {"retries": {"total_max_attempts": 1}}


def ic_endpoint(sm: Any, name: str, instance_type: str = "ml.m5.large", count: int = 1) -> None:
    """An endpoint whose one variant has an instance type and count, no model."""
    sm.create_endpoint_config(EndpointConfigName=name, ExecutionRoleArn=ROLE, ProductionVariants=[
        {"VariantName": "AllTraffic", "InstanceType": instance_type, "InitialInstanceCount": count}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def spec(cores: float = 1, memory: int = 512, **more: Any) -> dict[str, Any]:
    return {"ModelName": "m", "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": cores,
                                                              "MinMemoryRequiredInMb": memory}, **more}


def wait_component(sm: Any, name: str, wanted: str = "InService") -> dict[str, Any]:
    """botocore has no waiter for inference components: poll DescribeInferenceComponent with a deadline."""
    deadline = time.monotonic() + 60
    while True:
        described = sm.describe_inference_component(InferenceComponentName=name)
        if described["InferenceComponentStatus"] not in ("Creating", "Updating", "Deleting"):
            assert described["InferenceComponentStatus"] == wanted, described.get("FailureReason")
            return dict(described)
        assert time.monotonic() < deadline, f"{name} stayed {described['InferenceComponentStatus']}"
        time.sleep(0.1)


def message(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Message"])


def test_copies_placed_routed_scaled_and_deleted(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    ic_endpoint(sm, "ep")  # ml.m5.large: 2 vCPUs, 8 GiB
    [summary] = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"]
    assert summary["CurrentInstanceCount"] == 1 and "DeployedImages" not in summary
    sm.create_inference_component(InferenceComponentName="ic", EndpointName="ep", VariantName="AllTraffic",
                                  Specification=spec(), RuntimeConfig={"CopyCount": 2})
    described = wait_component(sm, "ic")
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    assert described["Specification"]["ModelName"] == "m" and described["EndpointName"] == "ep"
    copies = fake_harness.platform.store.endpoints["ep"].deployment.components["ic"]
    assert copies.share.memory_mib == 512  # the container's limit: MinMemoryRequiredInMb without a maximum

    answers = [rt.invoke_endpoint(EndpointName="ep", InferenceComponentName="ic", Body=b"{}") for _ in range(4)]
    assert {a["InvokedProductionVariant"] for a in answers} == {"AllTraffic"}
    assert len({json.loads(a["Body"].read())["port"] for a in answers}) == 2  # round robin over both copies
    listed = httpx.get(f"{fake_harness.endpoint_url}/_servekit/endpoints", headers={ADMIN_HEADER: "1"}).json()
    assert [c["variant"] for c in listed["endpoints"][0]["containers"]] == ["ic", "ic"]  # servekit local ls
    logs = boto3.client("logs", endpoint_url=fake_harness.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/Endpoints/ep")["logStreams"]
    assert len([s for s in streams if s["logStreamName"].startswith("ic/i-")]) == 2  # a log stream per copy
    metrics = fake_harness.platform.metrics.snapshot("ep")["ic"]["metrics"]
    assert metrics["Invocations"]["Sum"] == 4  # kept per component

    assert "must name one with InferenceComponentName" in message(lambda: rt.invoke_endpoint(EndpointName="ep",
                                                                                              Body=b"{}"))
    assert "Inference component nope does not exist" in message(
        lambda: rt.invoke_endpoint(EndpointName="ep", InferenceComponentName="nope", Body=b"{}"))
    stream = rt.invoke_endpoint_with_response_stream(EndpointName="ep", InferenceComponentName="ic",
                                                     Body=b"stream:2")
    assert b"".join(e["PayloadPart"]["Bytes"] for e in stream["Body"]) == b"part-0\npart-1\n"

    # A third copy needs 3 cores in all on a 2-vCPU instance: refused, and nothing changes.
    assert "do not fit on variant AllTraffic" in message(lambda: sm.update_inference_component_runtime_config(
        InferenceComponentName="ic", DesiredRuntimeConfig={"CopyCount": 3}))
    sm.update_inference_component_runtime_config(InferenceComponentName="ic", DesiredRuntimeConfig={"CopyCount": 1})
    assert wait_component(sm, "ic")["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
    # A new Specification replaces the copies: the new ones answer once healthy, the old one stops.
    old = fake_harness.platform.store.endpoints["ep"].deployment.components["ic"]
    sm.update_inference_component(InferenceComponentName="ic", RuntimeConfig={"CopyCount": 2}, Specification={
        "Container": {"Image": IMAGE, "Environment": {"USER_SETTING": "v2"}},
        "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 0.5, "MinMemoryRequiredInMb": 256}})
    assert wait_component(sm, "ic")["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    answer = rt.invoke_endpoint(EndpointName="ep", InferenceComponentName="ic", Body=b"{}")["Body"].read()
    assert json.loads(answer)["user_env"] == "v2"
    assert all(c.running.exit_code() is not None for c in old.containers())
    copies = fake_harness.platform.store.endpoints["ep"].deployment.components["ic"]
    copies.instances[0].containers[0].running.stop(1)  # a copy that exits is replaced, as an instance would be
    deadline = time.monotonic() + 30
    while copies.instances[0].containers[0].running.exit_code() is not None:
        assert time.monotonic() < deadline, "the exited copy was not replaced"
        time.sleep(0.1)
    [listed] = sm.list_inference_components(EndpointNameEquals="ep")["InferenceComponents"]
    assert listed["InferenceComponentName"] == "ic" and listed["VariantName"] == "AllTraffic"

    sm.delete_inference_component(InferenceComponentName="ic")
    deadline = time.monotonic() + 30
    while sm.list_inference_components()["InferenceComponents"]:
        assert time.monotonic() < deadline, "the inference component was not deleted"
        time.sleep(0.1)
    assert copies.instances and all(c.running.exit_code() is not None for c in copies.containers())


def test_refusals_and_a_copy_that_fails_its_ping(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    ic_endpoint(sm, "ep", count=2)
    assert "do not fit on variant AllTraffic" in message(lambda: sm.create_inference_component(
        InferenceComponentName="big", EndpointName="ep", Specification=spec(memory=9000),
        RuntimeConfig={"CopyCount": 1}))
    assert "NumberOfAcceleratorDevicesRequired" in message(lambda: sm.create_inference_component(
        InferenceComponentName="gpu", EndpointName="ep", RuntimeConfig={"CopyCount": 1},
        Specification={"ModelName": "m", "ComputeResourceRequirements": {
            "MinMemoryRequiredInMb": 512, "NumberOfAcceleratorDevicesRequired": 1}}))
    assert "DeploymentConfig is not supported" in message(lambda: sm.update_inference_component(
        InferenceComponentName="nope", DeploymentConfig={"RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1}, "WaitIntervalInSeconds": 0}}))
    assert "not supported by the local harness" in message(lambda: sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}]))
    assert "ExecutionRoleArn must be specified" in message(lambda: sm.create_endpoint_config(
        EndpointConfigName="norole", ProductionVariants=[
            {"VariantName": "a", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]))
    assert message(lambda: sm.create_endpoint_config(EndpointConfigName="scaled", ProductionVariants=[
        {"VariantName": "b", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
         "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 2}}])) == (
        "ManagedInstanceScaling is only supported for inference component endpoints.")
    assert message(lambda: sm.create_inference_component(
        InferenceComponentName="cold", EndpointName="ep", Specification=spec(), RuntimeConfig={"CopyCount": 0})) == (
        "Inference components copy count an integer larger than 0")
    assert "Either every production variant names a model" in message(lambda: sm.create_endpoint_config(
        EndpointConfigName="mixed", ProductionVariants=[
            {"VariantName": "a", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
            {"VariantName": "b", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]))

    sm.create_inference_component(InferenceComponentName="sick", EndpointName="ep", RuntimeConfig={"CopyCount": 1},
                                  Specification={"Container": {"Image": IMAGE,
                                                               "Environment": {"FAKE_EXIT": "3"}},
                                                 "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256}})
    # Created right after CreateEndpoint, as the SDK v2 does: the call waits for the endpoint, which starts nothing.
    sm.create_endpoint(EndpointName="fresh", EndpointConfigName="ep")
    sm.create_inference_component(InferenceComponentName="early", EndpointName="fresh", Specification=spec(),
                                  RuntimeConfig={"CopyCount": 1})
    wait_component(sm, "early")
    sm.update_inference_component_runtime_config(InferenceComponentName="early",
                                                 DesiredRuntimeConfig={"CopyCount": 0})
    assert wait_component(sm, "early")["RuntimeConfig"] == {"DesiredCopyCount": 0, "CurrentCopyCount": 0}
    assert "has no copies" in message(lambda: rt.invoke_endpoint(EndpointName="fresh", InferenceComponentName="early",
                                                                  Body=b"{}"))
    failed = wait_component(sm, "sick", wanted="Failed")
    assert "did not pass the ping health check" in failed["FailureReason"]
    assert failed["Specification"]["Container"]["DeployedImage"]["SpecifiedImage"] == IMAGE

    sm.delete_endpoint(EndpointName="ep")  # its inference components go with it
    sm.delete_endpoint(EndpointName="fresh")
    deadline = time.monotonic() + 30
    while sm.list_inference_components()["InferenceComponents"]:
        assert time.monotonic() < deadline, "the endpoint's inference components outlived it"
        time.sleep(0.1)
