"""The docker backend with the real images (marker ``images``).

Without a Docker engine or the images these tests are skipped with a loud reason, unless
SERVEKIT_REQUIRE_DOCKER=1 (CI), where a missing prerequisite is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.backends.docker import docker_available
from harness.local import LocalSageMaker
from tests.harness.conftest import boto_clients, deploy, wait_in_service
from tests.harness.test_sklearn_process import tar_dir
from tests.support.models import sklearn_artifact

pytestmark = pytest.mark.images
REQUIRED = os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1"


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"SERVEKIT_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason} (set SERVEKIT_REQUIRE_DOCKER=1 to make this a failure)")


def need_image(image: str) -> None:
    if not docker_available():
        _missing("no Docker engine answers `docker info`")
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if probe.returncode != 0:
        _missing(f"image {image} is not built (./build.sh)")


@pytest.fixture
def harness(tmp_path: Path):
    need_image("servekit-sklearn")
    with LocalSageMaker("docker", state_dir=tmp_path / "state", startup_timeout_s=180, stop_grace_s=10) as h:
        yield h


def predictions(body: bytes) -> list[float]:
    decoded = json.loads(body)
    return [float(x) for x in (decoded["predictions"] if isinstance(decoded, dict) else decoded)]


def test_labels_are_checked_at_create_model(harness):
    sm, _ = boto_clients(harness.endpoint_url)
    unlabeled = "servekit/base:bookworm"
    need_image(unlabeled)
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.create_model(ModelName="m", Containers=[{"Image": unlabeled, "Mode": "MultiModel",
                                                    "ModelDataUrl": "s3://b/p/"}])
    assert caught.value.response["Error"]["Message"] == (
        f"Your Ecr Image {unlabeled} does not contain required "
        "com.amazonaws.sagemaker.capabilities.multi-models=true Docker label(s).")
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.create_model(ModelName="m", Containers=[{"Image": unlabeled}, {"Image": "servekit-sklearn"}])
    assert "accept-bind-to-port=true Docker label(s)" in caught.value.response["Error"]["Message"]
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.create_model(ModelName="m", PrimaryContainer={"Image": "no-such-image:1"})
    assert "Requested image no-such-image:1 not found" in caught.value.response["Error"]["Message"]


def test_single_model_and_mme_in_docker(harness, tmp_path):
    sm, rt = boto_clients(harness.endpoint_url)
    iris = sklearn_artifact(tmp_path / "iris")
    deploy(sm, "iris", PrimaryContainer={"Image": "servekit-sklearn",
                                         "ModelDataUrl": str(tar_dir(iris.path, tmp_path / "iris.tar.gz"))})
    answer = rt.invoke_endpoint(EndpointName="iris", Body=json.dumps(iris.rows.tolist()),
                                ContentType="application/json")
    assert predictions(answer["Body"].read()) == iris.expected
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="iris", Body=b"\x89PNG", ContentType="image/png")
    assert caught.value.response["OriginalStatusCode"] == 415

    models = tmp_path / "models"
    artifacts = []
    for i in range(3):
        artifact = sklearn_artifact(tmp_path / f"a{i}", seed=i)
        tar_dir(artifact.path, models / f"m{i}.tar.gz")
        artifacts.append(artifact)
    deploy(sm, "mme", Containers=[{"Image": "servekit-sklearn", "Mode": "MultiModel", "ModelDataUrl": str(models),
                                   "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}}])
    for i, artifact in enumerate(artifacts):
        answer = rt.invoke_endpoint(EndpointName="mme", TargetModel=f"m{i}.tar.gz",
                                    Body=json.dumps(artifact.rows.tolist()), ContentType="application/json")
        assert predictions(answer["Body"].read()) == artifact.expected
    deployment = harness.platform.store.endpoints["mme"].deployment
    container_ids = [c.running.container_id for c in deployment.all_containers()]
    sm.delete_endpoint(EndpointName="mme")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="mme", WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    gone = subprocess.run(["docker", "inspect", *container_ids], capture_output=True, check=False)
    assert gone.returncode != 0  # stopped and removed


def test_weights_capacities_and_shadow_in_docker(harness, tmp_path):
    """UpdateEndpointWeightsAndCapacities and a shadow variant with the real image (docs/harness.md "Control
    plane", "Shadow variants")."""
    sm, rt = boto_clients(harness.endpoint_url)
    iris = sklearn_artifact(tmp_path / "iris")
    sm.create_model(ModelName="iris", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
                    PrimaryContainer={"Image": "servekit-sklearn",
                                      "ModelDataUrl": str(tar_dir(iris.path, tmp_path / "iris.tar.gz"))})
    variant = {"ModelName": "iris", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sm.create_endpoint_config(EndpointConfigName="iris", ProductionVariants=[{"VariantName": "Main", **variant}],
                              ShadowProductionVariants=[{"VariantName": "Shadow", **variant}])
    sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
    wait_in_service(sm, "iris")
    body = json.dumps(iris.rows.tolist())
    sm.update_endpoint_weights_and_capacities(EndpointName="iris", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredInstanceCount": 2}])
    wait_in_service(sm, "iris")
    [main] = sm.describe_endpoint(EndpointName="iris")["ProductionVariants"]
    assert (main["CurrentInstanceCount"], main["DesiredInstanceCount"]) == (2, 2)
    deployment = harness.platform.store.endpoints["iris"].deployment
    assert len({c.running.container_id for c in deployment.variants[0].containers()}) == 2
    for _ in range(4):  # round-robin over both instances
        answer = rt.invoke_endpoint(EndpointName="iris", Body=body, ContentType="application/json")
        assert answer["InvokedProductionVariant"] == "Main"
        assert predictions(answer["Body"].read()) == iris.expected
    deadline = time.monotonic() + 30
    while harness.platform.metrics.snapshot("iris").get("Shadow", {}).get("metrics", {}).get(
            "Invocation4XXErrors", {}).get("SampleCount") != 4:  # recorded when a copy has its answer
        assert time.monotonic() < deadline, "the shadow did not answer its 4 copies"
        time.sleep(0.1)
    shadow = harness.platform.metrics.snapshot("iris")["Shadow"]["metrics"]
    assert shadow["Invocation4XXErrors"]["Sum"] == shadow["Invocation5XXErrors"]["Sum"] == 0
    surplus = deployment.variants[0].instances[1].containers[0].running.container_id
    sm.update_endpoint_weights_and_capacities(EndpointName="iris", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredInstanceCount": 1}])
    wait_in_service(sm, "iris")
    assert subprocess.run(["docker", "inspect", surplus], capture_output=True, check=False).returncode != 0


def test_inference_component_copy_in_docker(harness, tmp_path):
    """An inference component's copy is a container with its CPU cores and MaxMemoryRequiredInMb (docs/harness.md
    "Inference components")."""
    sm, rt = boto_clients(harness.endpoint_url)
    iris = sklearn_artifact(tmp_path / "iris")
    sm.create_model(ModelName="iris", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
                    PrimaryContainer={"Image": "servekit-sklearn",
                                      "ModelDataUrl": str(tar_dir(iris.path, tmp_path / "iris.tar.gz"))})
    sm.create_endpoint_config(EndpointConfigName="ic", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
                              ProductionVariants=[
        {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="ic", EndpointConfigName="ic")
    wait_in_service(sm, "ic")
    sm.create_inference_component(InferenceComponentName="iris", EndpointName="ic", RuntimeConfig={"CopyCount": 1},
                                  Specification={"ModelName": "iris", "ComputeResourceRequirements": {
                                      "NumberOfCpuCoresRequired": 1, "MinMemoryRequiredInMb": 512,
                                      "MaxMemoryRequiredInMb": 1024}})
    deadline = time.monotonic() + 180
    while (status := sm.describe_inference_component(InferenceComponentName="iris")["InferenceComponentStatus"]) \
            == "Creating":
        assert time.monotonic() < deadline, "the inference component stayed Creating"
        time.sleep(0.25)
    assert status == "InService"
    answer = rt.invoke_endpoint(EndpointName="ic", InferenceComponentName="iris", Body=json.dumps(iris.rows.tolist()),
                                ContentType="application/json")
    assert predictions(answer["Body"].read()) == iris.expected
    [copy] = harness.platform.store.endpoints["ic"].deployment.components["iris"].containers()
    inspected = subprocess.run(["docker", "inspect", "--format", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
                                copy.running.container_id], capture_output=True, text=True, check=True)
    assert inspected.stdout.split() == [str(10**9), str(1024 * 2**20)]
