"""A vanished S3 object (harness.faults) answers an MME invocation exactly as a really deleted one does:
SageMaker's ValidationError naming the bucket and key. moto serves S3; the process backend serves."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from harness.local import LocalSageMaker
from harness.testing import EndpointFactory
from tests.harness.conftest import moto_s3  # noqa: F401 - a fixture, used by name
from tests.plugin.team_image_tests import model_archive, model_dir

IMAGE = "servekit-sklearn:latest"
BODY = '{"values": [1]}'


def _error(call: object) -> str:
    with pytest.raises(ClientError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    return str(caught.value.response["Error"]["Message"])


def _missing(key: str) -> str:
    return (f"Failed to download model data(bucket: models, key: {key}). Please ensure that there is an object "
            "located at the URL and that the role passed to CreateModel has permissions to download the object.")


def test_vanished_and_deleted_s3_objects_answer_alike(moto_s3: str, tmp_path: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    for tag in ("a", "b", "c"):
        archive = model_archive(model_dir(tmp_path, tag, 1.0), tmp_path / f"{tag}.tar.gz")
        s3.upload_file(str(archive), "models", f"mme/{tag}.tar.gz")
    with LocalSageMaker("process", state_dir=tmp_path / "state", s3_endpoint_url=moto_s3, stop_grace_s=5) as sm:
        factory = EndpointFactory(sm)
        try:
            endpoint = factory(IMAGE, "s3://models/mme/", mme=True, timeout_s=120)
            assert endpoint.invoke(BODY, "application/json", TargetModel="a.tar.gz").json()["tag"] == "a"
            assert endpoint.vanish("b.tar.gz") == "s3://models/mme/b.tar.gz"
            s3.delete_object(Bucket="models", Key="mme/c.tar.gz")
            assert _error(lambda: endpoint.invoke(BODY, "application/json", TargetModel="b.tar.gz")) == _missing(
                "mme/b.tar.gz")
            assert _error(lambda: endpoint.invoke(BODY, "application/json", TargetModel="c.tar.gz")) == _missing(
                "mme/c.tar.gz")
        finally:
            factory.close()
