"""Control-plane behaviour a boto3 user sees: validation messages, lifecycle, waiters, listing."""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.harness.conftest import IMAGE, boto_clients, deploy, make_tar, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def error_of(call, **kwargs) -> dict:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


def test_validation_messages_follow_aws(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    error = error_of(sm.create_endpoint, EndpointName="my_endpoint", EndpointConfigName="c")
    assert error["Code"] == "ValidationException"
    pattern = sm.meta.service_model.shape_for("EndpointName").metadata["pattern"]  # as this botocore has it
    assert error["Message"] == (
        "1 validation error detected: Value 'my_endpoint' at 'endpointName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {pattern}"
    )
    error = error_of(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "v", "ModelName": "bad name", "InstanceType": "local", "InitialInstanceCount": 1}])
    assert error["Message"].startswith("2 validation errors detected: ")
    assert "Value 'bad name' at 'productionVariants.1.member.modelName' failed to satisfy constraint: " \
           "Member must satisfy regular expression pattern" in error["Message"]
    assert "Value 'local' at 'productionVariants.1.member.instanceType' failed to satisfy constraint: " \
           "Member must satisfy enum value set: [" in error["Message"]
    error = error_of(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE,
                     Containers=[{"Image": IMAGE, "ContainerHostname": f"c{i}"} for i in range(16)])
    assert "at 'containers' failed to satisfy constraint: Member must have length less than or equal to 15" \
        in error["Message"]
    error = error_of(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE,
                     PrimaryContainer={"Image": IMAGE, "Mode": "Single"})
    assert "Value 'Single' at 'primaryContainer.mode' failed to satisfy constraint: Member must satisfy enum " \
           "value set: [SingleModel, MultiModel]" in error["Message"]
    error = error_of(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE,
                     PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "ftp://x/y"})
    assert "at 'primaryContainer.modelDataUrl'" in error["Message"]
    error = error_of(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE,
                     PrimaryContainer={"Image": IMAGE, "Environment": {"1BAD": "x"}})
    assert "primaryContainer.environment.key" in error["Message"]
    error = error_of(sm.list_endpoints, MaxResults=101)
    assert "Member must have value less than or equal to 100" in error["Message"]


def test_resource_rules(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    assert error_of(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE)["Message"] == \
        "Either PrimaryContainer or Containers must be specified."
    error = error_of(sm.create_model, ModelName="m", PrimaryContainer={"Image": "python:3.11"})
    assert "process backend runs only servekit images" in error["Message"]
    assert "'python:3.11'" in error["Message"]
    error = error_of(sm.create_model, ModelName="m", InferenceExecutionConfig={"Mode": "Direct"},
                     Containers=[{"Image": IMAGE, "ContainerHostname": "a"}, {"Image": IMAGE}])
    assert "ContainerHostname must be specified for every container" in error["Message"]
    error = error_of(sm.create_model, ModelName="m", Containers=[
        {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": "s3://b/p/"},
        {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": "s3://b/q/"}])
    assert error["Message"] == "More than one container in MultiModel mode is not supported with inference pipeline."
    error = error_of(sm.create_model, ModelName="m", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel"})
    assert "ModelDataUrl" in error["Message"]

    sm.create_model(ModelName="m", PrimaryContainer={"Image": IMAGE})
    assert error_of(sm.create_model, ModelName="M", PrimaryContainer={"Image": IMAGE})["Message"] == \
        'Cannot create already existing model "arn:aws:sagemaker:us-east-1:123456789012:model/m".'
    error = error_of(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "v", "ModelName": "nope", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    assert error["Message"] == 'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/nope".'
    error = error_of(sm.create_endpoint, EndpointName="e", EndpointConfigName="nope")
    assert error["Message"] == (
        'Could not find endpoint configuration "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/nope".'
    )
    error = error_of(sm.describe_endpoint, EndpointName="Missing")
    assert error == {"Code": "ValidationException",
                     "Message": 'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/missing".'}
    error = error_of(sm.delete_model, ModelName="nope")
    assert error["Code"] == "ValidationException"
    capture = {"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://b/capture",
               "CaptureOptions": [{"CaptureMode": "Input"}]}
    error = error_of(sm.create_endpoint_config, EndpointConfigName="c", DataCaptureConfig=capture, ProductionVariants=[
        {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/out"}})
    assert error["Message"].startswith("DataCaptureConfig with AsyncInferenceConfig is not supported by the local "
                                       "harness")

    described = sm.describe_model(ModelName="m")
    assert described["PrimaryContainer"] == {"Image": IMAGE}
    assert described["ModelArn"].endswith(":model/m")


def test_lifecycle_waiters_and_listing(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    archive = make_tar(tmp_path / "model.tar.gz", {"weights.bin": b"w"})
    sm.create_model(ModelName="m1", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(archive)})
    sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[
        {"VariantName": "Blue", "ModelName": "m1", "InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 2}])
    arn = sm.create_endpoint(EndpointName="Ep-One", EndpointConfigName="c1")["EndpointArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep-one"
    assert sm.describe_endpoint(EndpointName="Ep-One")["EndpointStatus"] in ("Creating", "InService")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="Ep-One", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
    described = sm.describe_endpoint(EndpointName="Ep-One")
    variant = described["ProductionVariants"][0]
    assert variant["VariantName"] == "Blue" and variant["CurrentInstanceCount"] == 2
    assert variant["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert described["CreationTime"] <= described["LastModifiedTime"]

    # Two instances: requests are spread over both (each instance is its own process).
    ports = {rt.invoke_endpoint(EndpointName="Ep-One", Body=b"{}")["Body"].read() for _ in range(6)}
    assert len(ports) == 2
    # Case is preserved and must be matched by InvokeEndpoint.
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ep-one", Body=b"{}")
    assert caught.value.response["Error"]["Message"] == "Endpoint ep-one of account 123456789012 not found."

    listed = sm.list_endpoints(StatusEquals="InService")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == ["Ep-One"]
    sm.create_model(ModelName="m2", PrimaryContainer={"Image": IMAGE})
    page = sm.list_models(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in page["Models"]] == ["m1"]
    assert [m["ModelName"] for m in sm.list_models(NextToken=page["NextToken"], SortBy="Name",
                                                   SortOrder="Ascending")["Models"]] == ["m2"]
    assert sm.describe_endpoint_config(EndpointConfigName="c1")["ProductionVariants"][0]["InstanceType"] == \
        "ml.c5.xlarge"

    # UpdateEndpoint to a new configuration: traffic moves to the new variant.
    sm.create_endpoint_config(EndpointConfigName="c2", ProductionVariants=[
        {"VariantName": "Green", "ModelName": "m2", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.update_endpoint(EndpointName="Ep-One", EndpointConfigName="c2")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="Ep-One", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
    assert rt.invoke_endpoint(EndpointName="Ep-One", Body=b"{}")["InvokedProductionVariant"] == "Green"
    assert sm.describe_endpoint(EndpointName="Ep-One")["EndpointConfigName"] == "c2"

    sm.delete_endpoint(EndpointName="Ep-One")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="Ep-One", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
    assert sm.list_endpoints()["Endpoints"] == []


def test_failed_endpoint_has_sagemaker_failure_reason(fake_harness, tmp_path):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "crashes", wait=False, PrimaryContainer={"Image": IMAGE, "Environment": {"FAKE_EXIT": "3"}})
    with pytest.raises(botocore.exceptions.WaiterError) as caught:
        wait_in_service(sm, "crashes")
    assert 'Waiter encountered a terminal failure state' in str(caught.value)
    described = sm.describe_endpoint(EndpointName="crashes")
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    # The container's own output is kept like a CloudWatch log stream.
    logs = list((fake_harness.state_dir / "logs" / "crashes").glob("*.log"))
    assert logs and "exiting on purpose" in logs[0].read_text()

    deploy(sm, "missing", wait=False, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(tmp_path / "no.tar.gz")})
    with pytest.raises(botocore.exceptions.WaiterError):
        wait_in_service(sm, "missing")
    assert sm.describe_endpoint(EndpointName="missing")["FailureReason"].startswith(
        'Failed to download model data for container "primary" from URL: "')


def test_ping_never_healthy_fails_within_startup_window(tmp_path):
    import sys

    from harness.backends.process import ProcessBackend
    from harness.local import LocalSageMaker
    from tests.harness.conftest import FAKE_CONTAINER

    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "s", startup_timeout_s=2, stop_grace_s=5) as harness:
        sm, _ = boto_clients(harness.endpoint_url)
        deploy(sm, "sick", wait=False, Containers=[
            {"Image": IMAGE, "ContainerHostname": "good"},
            {"Image": IMAGE, "ContainerHostname": "bad", "Environment": {"FAKE_PING_STATUS": "503"}}])
        with pytest.raises(botocore.exceptions.WaiterError):
            wait_in_service(sm, "sick")
        assert sm.describe_endpoint(EndpointName="sick")["FailureReason"] == (
            "The container bad for production variant AllTraffic did not pass the ping health check. "
            "Please check CloudWatch logs for this endpoint."
        )


def test_operations_the_sdk_calls_that_make_no_sense_locally_say_so(fake_harness):
    """docs/harness.md "Unsupported operations": boto3 sees UnknownOperationException naming the call."""
    sm, _ = boto_clients(fake_harness.endpoint_url)
    calls = {
        "CreateModelPackage": lambda: sm.create_model_package(ModelPackageGroupName="g"),
        "ListModelPackages": lambda: sm.list_model_packages(),
        "ListContexts": lambda: sm.list_contexts(SourceUri="arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"),
        "ListMonitoringSchedules": lambda: sm.list_monitoring_schedules(EndpointName="e"),
    }
    for operation, call in calls.items():
        error = error_of(call)
        assert error == {"Code": "UnknownOperationException",
                         "Message": f"Operation {operation} is not supported by the local harness."}
