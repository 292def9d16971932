"""Pieces of the harness on their own: validator, wire shapes of raw requests, artifacts, instance types."""

from __future__ import annotations

import httpx
import pytest

from harness import artifacts
from harness.instance_types import limits_for
from harness.validation import format_errors, operation_model, validation_errors
from tests.harness.conftest import IMAGE, boto_clients, deploy


def test_validator_reports_every_violation_in_aws_words():
    shape = operation_model("sagemaker", "CreateEndpointConfig").input_shape
    errors = validation_errors(shape, {"ProductionVariants": [
        {"VariantName": "x" * 64, "InitialInstanceCount": 0, "InitialVariantWeight": -1.0}]})
    assert "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null" in errors
    assert any(e.startswith(f"Value '{'x' * 64}' at 'productionVariants.1.member.variantName' failed to satisfy "
                            "constraint: Member must have length less than or equal to 63") for e in errors)
    assert ("Value '0' at 'productionVariants.1.member.initialInstanceCount' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1") in errors
    assert format_errors(errors[:1]).startswith("1 validation error detected: ")
    assert format_errors(errors).startswith(f"{len(errors)} validation errors detected: ")
    runtime = operation_model("sagemaker-runtime", "InvokeEndpoint").input_shape
    assert validation_errors(runtime, {"EndpointName": "e", "Body": b"", "TargetModel": " leading-space"})
    assert not validation_errors(runtime, {"EndpointName": "e", "Body": b"", "TargetModel": "a/b c.tar.gz"})


def test_raw_json_requests_get_json_11_errors(fake_harness):
    url = fake_harness.endpoint_url
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    answer = httpx.post(url, headers={**headers, "X-Amz-Target": "SageMaker.CreateModel"}, content=b"{}")
    assert answer.status_code == 400
    assert answer.json() == {"__type": "ValidationException", "message": "1 validation error detected: Value null "
                             "at 'modelName' failed to satisfy constraint: Member must not be null"}
    answer = httpx.post(url, headers={**headers, "X-Amz-Target": "SageMaker.CreateModel"}, content=b"{nope")
    assert answer.json()["__type"] == "SerializationException"
    answer = httpx.post(url, headers={**headers, "X-Amz-Target": "SageMaker.CreateModel"},
                        content=b'{"ModelName": 5}')
    assert answer.json()["__type"] == "SerializationException"
    answer = httpx.post(url, headers={**headers, "X-Amz-Target": "SageMaker.CreateTrainingJob"}, content=b"{}")
    assert answer.json() == {"__type": "UnknownOperationException",
                             "message": "Operation CreateTrainingJob is not supported by the local harness."}


def test_runtime_header_constraints(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint(EndpointName="ep", Body=b"{}", CustomAttributes="a" * 1025)
    assert caught.value.response["Error"]["Message"] == (
        "1 validation error detected: Value '" + "a" * 1025 + "' at 'customAttributes' failed to satisfy "
        "constraint: Member must have length less than or equal to 1024")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_join_prefix_and_local_fetch(tmp_path):
    assert artifacts.join_prefix("s3://b/models", "a/m.tar.gz") == "s3://b/models/a/m.tar.gz"
    assert artifacts.join_prefix("s3://b/models/", "m.tar.gz") == "s3://b/models/m.tar.gz"
    for bad in ("../x.tar.gz", "/etc/passwd", "a/../../x"):
        with pytest.raises(artifacts.ArtifactError):
            artifacts.join_prefix("s3://b/models/", bad)
    with pytest.raises(artifacts.ArtifactNotFound):
        artifacts.fetch(f"file://{tmp_path}/missing.tar.gz", tmp_path)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(artifacts.ArtifactError, match="not a readable tar archive"):
        artifacts.extract(tmp_path / "bad.tar.gz", tmp_path / "out")


def test_instance_types():
    assert (limits_for("ml.m5.large").vcpus, limits_for("ml.m5.large").memory_mib) == (2, 8192)
    assert (limits_for("ml.c5.xlarge").vcpus, limits_for("ml.c5.xlarge").memory_mib) == (4, 8192)
    assert limits_for("ml.r6i.2xlarge").memory_mib == 64 * 1024
    assert limits_for("ml.inf2.xlarge").vcpus == 4  # unlisted family: size-based guess


def test_containers_get_the_harness_credentials_region_and_s3_endpoint(monkeypatch, tmp_path):
    from pathlib import Path

    from harness.backends.base import ContainerSpec
    from harness.config import HarnessConfig

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local-key")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    role = HarnessConfig(state_dir=tmp_path, region="eu-west-1",
                         s3_endpoint_url="http://127.0.0.1:5000").role_environment()
    assert role["AWS_ACCESS_KEY_ID"] == "local-key" and "AWS_SESSION_TOKEN" not in role
    assert role["AWS_REGION"] == role["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert role["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5000"
    spec = ContainerSpec(name="c", image=IMAGE, hostname="h", port=1, safe_port_range=(2, 3), multi_model=False,
                         model_dir=Path("/m"), log_path=Path("/l"), role_environment=role,
                         environment={"AWS_REGION": "us-west-2"})
    env = spec.platform_environment()
    assert env["AWS_ACCESS_KEY_ID"] == "local-key" and env["AWS_REGION"] == "us-west-2"  # the model's wins


def test_up_hosting_options_set_harness_config_fields():
    from harness.cli import build_parser, hosting_settings

    args = build_parser().parse_args(["local", "up", "--serverless-idle", "5", "--shadow-max-in-flight", "3",
                                      "--shadow-copy-all", "--capture-flush-interval", "2"])
    assert hosting_settings(args) == {"serverless_idle_s": 5.0, "shadow_max_in_flight": 3,
                                      "capture_flush_interval_s": 2.0, "shadow_share_from_weights": False}
    assert hosting_settings(build_parser().parse_args(["local", "up"])) == {}  # HarnessConfig's defaults
