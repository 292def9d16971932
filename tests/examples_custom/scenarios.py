"""The custom framework through the local SageMaker, with boto3 exactly as for AWS.

The same three scenarios run on both backends (test_onnx_harness.py): the process backend (the
``serve`` entrypoint of this environment, told the handler by ``SERVE_FRAMEWORK``) and the docker
backend (the example image built from servekit-sklearn). Predictions are compared exactly with ONNX
Runtime's answers for the same rows in this process.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import WaiterError

from harness.local import LocalSageMaker
from tests.harness.conftest import boto_clients, deploy, make_tar
from tests.harness.test_sklearn_process import tar_dir
from tests.support.models import sklearn_artifact


@dataclass(frozen=True)
class Images:
    """What CreateModel names: the custom image (plus Environment it needs) and a servekit image."""

    custom: str
    sklearn: str
    #: Environment for the custom container (the process backend needs SERVE_FRAMEWORK; the image sets it).
    custom_environment: dict[str, str] = field(default_factory=dict)

    def custom_container(self, **container: Any) -> dict[str, Any]:
        environment = {**self.custom_environment, **container.pop("Environment", {})}
        return {"Image": self.custom, **({"Environment": environment} if environment else {}), **container}


def body_of(answer: dict[str, Any]) -> Any:
    return json.loads(answer["Body"].read())


def check_classifier(decoded: Any, artifact: Any) -> None:
    """A JSON answer holds exactly what ONNX Runtime answered in process."""
    assert sorted(decoded) == ["label", "probabilities"], decoded
    assert np.array_equal(np.asarray(decoded["label"]), artifact.expected["label"])
    assert np.array_equal(np.asarray(decoded["probabilities"], dtype=np.float32), artifact.expected["probabilities"])


def csv_of(rows: np.ndarray) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


def single_model(harness: LocalSageMaker, images: Images, classifier: Any, regressor: Any,
                 engine: str = "native", update: bool = True) -> None:
    """A single-model endpoint of the classifier; then UpdateEndpoint to the regressor (CSV in and out).

    ``engine``: servekit's ``SERVE_ENGINE`` (``native`` or ``mms``, multi-model-server); ``update``:
    also UpdateEndpoint to the regressor (a second container start; skipped for the slower MMS engine).
    """
    sm, rt = boto_clients(harness.endpoint_url)
    env = {"SERVE_ENGINE": engine}
    deploy(sm, "onnx-single", PrimaryContainer=images.custom_container(ModelDataUrl=f"file://{classifier.archive}",
                                                                       Environment=env))
    answer = rt.invoke_endpoint(EndpointName="onnx-single", Body=json.dumps(classifier.rows.tolist()),
                                ContentType="application/json", Accept="application/json")
    assert answer["ContentType"].startswith("application/json")
    check_classifier(body_of(answer), classifier)

    # An ONNX Runtime input error comes back as the container's 400 inside boto3's ModelError.
    try:
        rt.invoke_endpoint(EndpointName="onnx-single", Body="1,2\n", ContentType="text/csv")
        raise AssertionError("a two-feature row was accepted by a four-feature model")
    except rt.exceptions.ModelError as exc:
        assert exc.response["OriginalStatusCode"] == 400
        assert "rejected the input" in exc.response["OriginalMessage"]
        assert "Traceback" not in exc.response["OriginalMessage"]

    if not update:
        sm.delete_endpoint(EndpointName="onnx-single")
        return
    sm.create_model(ModelName="onnx-reg", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
                    PrimaryContainer=images.custom_container(ModelDataUrl=str(regressor.archive), Environment=env))
    sm.create_endpoint_config(EndpointConfigName="onnx-reg", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "onnx-reg", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    sm.update_endpoint(EndpointName="onnx-single", EndpointConfigName="onnx-reg")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="onnx-single",
                                              WaiterConfig={"Delay": 0.25, "MaxAttempts": 480})
    answer = rt.invoke_endpoint(EndpointName="onnx-single", Body=csv_of(regressor.rows),
                                ContentType="text/csv", Accept="text/csv")
    assert answer["ContentType"].startswith("text/csv")
    got = np.asarray([[np.float32(x)] for x in answer["Body"].read().decode().split()])
    assert np.array_equal(got, regressor.expected["variable"])
    sm.delete_endpoint(EndpointName="onnx-single")


def multi_model(harness: LocalSageMaker, images: Images, artifacts: list[Any], root: Path) -> None:
    """An MME of several ONNX models under one prefix; each TargetModel answers with its own model."""
    root.mkdir(parents=True, exist_ok=True)
    for i, artifact in enumerate(artifacts):
        shutil.copyfile(artifact.archive, root / f"onnx-{i}.tar.gz")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "onnx-mme", Containers=[images.custom_container(Mode="MultiModel", ModelDataUrl=f"{root}/")])
    for _round in range(2):  # the second round hits models already loaded
        for i, artifact in enumerate(artifacts):
            answer = rt.invoke_endpoint(EndpointName="onnx-mme", TargetModel=f"onnx-{i}.tar.gz",
                                        Body=json.dumps(artifact.rows.tolist()), ContentType="application/json")
            decoded = body_of(answer)
            if "variable" in artifact.expected:
                assert np.array_equal(np.asarray(decoded, dtype=np.float32), artifact.expected["variable"]), i
            else:
                check_classifier(decoded, artifact)
    assert harness.platform.metrics.loaded_models("onnx-mme", "AllTraffic") == len(artifacts)
    try:
        rt.invoke_endpoint(EndpointName="onnx-mme", TargetModel="missing.tar.gz", Body="[]",
                           ContentType="application/json")
        raise AssertionError("a missing TargetModel answered")
    except rt.exceptions.ValidationError as exc:
        assert "missing.tar.gz" in exc.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName="onnx-mme")


def direct_beside_sklearn(harness: LocalSageMaker, images: Images, classifier: Any, tmp_path: Path) -> None:
    """A Direct multi-container endpoint: the custom container beside a servekit scikit-learn container."""
    iris = sklearn_artifact(tmp_path / "iris")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "onnx-direct", InferenceExecutionConfig={"Mode": "Direct"}, Containers=[
        images.custom_container(ContainerHostname="onnx", ModelDataUrl=str(classifier.archive)),
        {"Image": images.sklearn, "ContainerHostname": "sklearn",
         "ModelDataUrl": str(tar_dir(iris.path, tmp_path / "iris.tar.gz"))}])
    answer = rt.invoke_endpoint(EndpointName="onnx-direct", TargetContainerHostname="onnx",
                                Body=csv_of(classifier.rows), ContentType="text/csv", Accept="application/json")
    check_classifier(body_of(answer), classifier)
    answer = rt.invoke_endpoint(EndpointName="onnx-direct", TargetContainerHostname="sklearn",
                                Body=json.dumps(iris.rows.tolist()), ContentType="application/json")
    decoded = body_of(answer)
    assert [float(x) for x in (decoded["predictions"] if isinstance(decoded, dict) else decoded)] == iris.expected
    sm.delete_endpoint(EndpointName="onnx-direct")


def bad_artifact(harness: LocalSageMaker, images: Images, tmp_path: Path) -> None:
    """A corrupt model.onnx: the endpoint goes to Failed and the container log says why, in one line."""
    archive = make_tar(tmp_path / "corrupt.tar.gz", {"model.onnx": b"\x00\x01 not an ONNX protobuf"})
    sm, _ = boto_clients(harness.endpoint_url)
    deploy(sm, "onnx-bad", wait=False, PrimaryContainer=images.custom_container(ModelDataUrl=str(archive)))
    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName="onnx-bad", WaiterConfig={"Delay": 0.25,
                                                                                         "MaxAttempts": 480})
        raise AssertionError("an endpoint with a corrupt model.onnx went InService")
    except WaiterError:
        pass
    described = sm.describe_endpoint(EndpointName="onnx-bad")
    assert described["EndpointStatus"] == "Failed", described
    assert "did not pass the ping health check" in described["FailureReason"]
    logs = "".join(p.read_text(errors="replace") for p in harness.state_dir.rglob("*.log"))
    assert "cannot load" in logs and "ONNX Runtime" in logs and "model.onnx" in logs, logs[-3000:]
    sm.delete_endpoint(EndpointName="onnx-bad")
