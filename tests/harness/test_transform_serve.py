"""Batch transform and asynchronous inference with the real ``serve`` (scikit-learn), on the process
backend and (marker ``images``) the docker backend: boto3 against the harness, data in moto S3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness.transform import data_log_path
from tests.harness.conftest import boto_clients, require_images, tar_dir, wait_in_service
from tests.support.models import sklearn_artifact

SKLEARN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.fixture
def setup(serve_harness, s3, tmp_path):
    """(sagemaker, runtime, s3, iris artifact, harness) with the model ``iris`` created."""
    require_images(serve_harness, SKLEARN)
    iris = sklearn_artifact(tmp_path / "iris")
    archive = tar_dir(iris.path, tmp_path / "iris.tar.gz")
    sm, rt = boto_clients(serve_harness.endpoint_url)
    sm.create_model(ModelName="iris", ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": SKLEARN, "ModelDataUrl": f"file://{archive}"})
    return sm, rt, s3, iris, serve_harness


def test_batch_transform_asks_serve_for_execution_parameters_and_joins_ids(setup):
    sm, _, s3, iris, harness = setup
    lines = [f"id-{i}," + ",".join(str(v) for v in row) for i, row in enumerate(iris.rows)]
    s3.put_object(Bucket="data", Key="iris/in/rows.csv", Body=("\n".join(lines) + "\n").encode())
    sm.create_transform_job(
        TransformJobName="iris-batch", ModelName="iris",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/iris/in/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": "s3://data/iris/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName="iris-batch", WaiterConfig={"Delay": 0.25, "MaxAttempts": 1200})
    described = sm.describe_transform_job(TransformJobName="iris-batch")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    out = s3.get_object(Bucket="data", Key="iris/out/rows.csv.out")["Body"].read().decode().splitlines()
    assert [line.split(",")[0] for line in out] == [f"id-{i}" for i in range(len(lines))]
    assert [float(line.split(",")[1]) for line in out] == iris.expected
    # Nothing set in the job: serve's GET /execution-parameters answers (one transform per worker). Both
    # backends run this checkout's serve (`./build.sh test` rebuilds the images from the tree first).
    data_log = data_log_path(Path(harness.state_dir), "iris-batch")
    assert "from GET /execution-parameters" in data_log.read_text(), "serve answers /execution-parameters"
    assert (described["MaxConcurrentTransforms"], described["BatchStrategy"], described["MaxPayloadInMB"]) == (
        2, "MultiRecord", 6)


def test_async_endpoint_answers_through_s3(setup):
    sm, rt, s3, iris, _ = setup
    variant = {"VariantName": "AllTraffic", "ModelName": "iris", "InstanceType": "ml.m5.large",
               "InitialInstanceCount": 1}
    sm.create_endpoint_config(
        EndpointConfigName="iris-async", ProductionVariants=[variant],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://data/async/out"}})
    sm.create_endpoint(EndpointName="iris-async", EndpointConfigName="iris-async")
    wait_in_service(sm, "iris-async")
    s3.put_object(Bucket="data", Key="async/in.json", Body=json.dumps(iris.rows.tolist()).encode())
    answer = rt.invoke_endpoint_async(EndpointName="iris-async", InputLocation="s3://data/async/in.json",
                                      ContentType="application/json", Accept="application/json")
    assert "FailureLocation" not in answer  # no S3FailurePath configured
    key = answer["OutputLocation"][len("s3://data/"):]
    deadline = time.monotonic() + 60
    while True:
        try:
            body = json.loads(s3.get_object(Bucket="data", Key=key)["Body"].read())
            break
        except ClientError:
            assert time.monotonic() < deadline, "no asynchronous result within 60 s"
            time.sleep(0.2)
    predictions = body.get("predictions", body) if isinstance(body, dict) else body
    assert [float(p) for p in predictions] == iris.expected
    sm.delete_endpoint(EndpointName="iris-async")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="iris-async", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
