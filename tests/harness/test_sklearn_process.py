"""boto3 scripts, as a user writes them for AWS, against the harness running the real ``serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.local import LocalSageMaker
from tests.harness.conftest import boto_clients, deploy, make_tar
from tests.support.models import sklearn_artifact

SKLEARN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest"


def tar_dir(directory: Path, archive: Path) -> Path:
    files = {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    return make_tar(archive, files)


@pytest.fixture
def harness(tmp_path: Path):
    with LocalSageMaker("process", state_dir=tmp_path / "state", startup_timeout_s=120, stop_grace_s=10) as h:
        yield h


def test_single_sklearn_model(harness, tmp_path):
    iris = sklearn_artifact(tmp_path / "iris")
    archive = tar_dir(iris.path, tmp_path / "s3" / "iris" / "model.tar.gz")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "iris", PrimaryContainer={"Image": SKLEARN, "ModelDataUrl": f"file://{archive}"})

    response = rt.invoke_endpoint(EndpointName="iris", Body=json.dumps(iris.rows.tolist()),
                                  ContentType="application/json", Accept="application/json")
    assert response["ContentType"].startswith("application/json")
    assert response["InvokedProductionVariant"] == "AllTraffic"
    body = json.loads(response["Body"].read())
    predictions = body.get("predictions", body) if isinstance(body, dict) else body
    assert [float(x) for x in predictions] == iris.expected

    csv = "\n".join(",".join(str(v) for v in row) for row in iris.rows)
    response = rt.invoke_endpoint(EndpointName="iris", Body=csv, ContentType="text/csv", Accept="text/csv")
    assert [float(x) for x in response["Body"].read().decode().split()] == iris.expected

    # The container answers 415 for a type it cannot decode: ModelError naming "primary".
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="iris", Body=b"\x89PNG", ContentType="image/png")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 415
    assert error["Error"]["Message"].startswith("Received client error (415) from primary with message")
    assert error["LogStreamArn"] == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/iris"
    assert "Traceback" not in error["OriginalMessage"]

    sm.delete_endpoint(EndpointName="iris")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="iris", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
