"""deploy.py on its AWS path: ECR-style image URIs, artifacts uploaded to S3, a role, no --endpoint-url.

boto3 is pointed at the local harness and a moto S3 only through the environment
(AWS_ENDPOINT_URL_SAGEMAKER, ..._RUNTIME, ..._S3), as a user would run the script unchanged. The
process backend accepts any registry prefix for ``servekit-<framework>`` images.
"""

from __future__ import annotations

from typing import Any

import boto3

from examples.sklearn_tf_pipeline import deploy
from examples.sklearn_tf_pipeline.serving import churn_schema
from harness.local import LocalSageMaker
from tests.examples.test_sklearn_tf_pipeline import assert_close
from tests.harness.conftest import moto_s3  # noqa: F401 - pytest fixture

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_deploy_uploads_to_s3_and_removes_everything(trained, moto_s3, monkeypatch, tmp_path):  # noqa: F811
    with LocalSageMaker("process", state_dir=tmp_path / "state", startup_timeout_s=240, stop_grace_s=10) as harness:
        for name, value in {"AWS_ENDPOINT_URL_SAGEMAKER": harness.endpoint_url,
                            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": harness.endpoint_url,
                            "AWS_ENDPOINT_URL_S3": moto_s3, "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="churn-models")
        seen: dict[str, Any] = {}

        def before_cleanup(results: deploy.Results) -> None:
            seen["results"] = results
            seen["keys"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="churn-models").get("Contents", []))

        args = deploy.build_parser().parse_args([
            "--artifacts", str(trained.out_dir), "--mme", "--skip-direct", "--poll-seconds", "0.25",
            "--image-sklearn", f"{ECR}/servekit-sklearn:latest",
            "--image-tensorflow", f"{ECR}/servekit-tensorflow:latest",
            "--s3-prefix", "s3://churn-models/examples/churn",
            "--role", "arn:aws:iam::123456789012:role/SageMakerRole"])
        deploy.run(args, say=lambda _: None, before_cleanup=before_cleanup)

        results = seen["results"]
        assert_close(results.pipeline, trained_expected(trained))
        table = churn_schema.parse_rows(deploy.SAMPLE_ROWS)
        assert sorted(results.mme) == sorted(trained.mme_models)
        for name, classifier in trained.mme_models.items():
            assert_close(results.mme[name], classifier.predict_proba(table)[:, 1])
        # The artifacts were read from S3 (the only copy the harness was told about) ...
        assert len(seen["keys"]) == 2 + len(trained.mme_models)
        assert all(key.startswith("examples/churn/") for key in seen["keys"])
        # ... and the script removed them again, with the endpoints, configs and models.
        assert s3.list_objects_v2(Bucket="churn-models").get("KeyCount", 0) == 0
        sm = harness.client("sagemaker")
        assert sm.list_endpoints()["Endpoints"] == []
        assert sm.list_models()["Models"] == []


def trained_expected(trained: Any) -> Any:
    from tests.examples.conftest import expected_probabilities

    return expected_probabilities(trained, deploy.SAMPLE_ROWS)
