"""--model-data as SageMaker's ModelDataUrl gives it: a model.tar.gz, or an s3:// archive (moto S3)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import boto3
import pytest

from harness.doctor import DoctorError, DoctorOptions, run_doctor
from tests.harness.conftest import moto_s3  # noqa: F401 - a fixture, used by name
from tests.images.conftest import ensure_image
from tests.images.models import sklearn_model

pytestmark = pytest.mark.images


def _archive(tmp_path: Path) -> tuple[Path, tuple[str, bytes]]:
    """model.tar.gz with model.joblib at its root, as SageMaker's ModelDataUrl points at; one sample."""
    artifact = sklearn_model(tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(artifact.path / "model.joblib", arcname="model.joblib")
    return archive, ("application/json", json.dumps(artifact.rows).encode())


def test_a_model_tar_gz_is_extracted_and_served(docker_engine: None, tmp_path: Path) -> None:
    archive, sample = _archive(tmp_path)
    report = run_doctor(ensure_image("sklearn"), DoctorOptions(model_data=str(archive), sample=sample))
    assert report.ok, report.table()
    assert report.verdict_of("model-loads") == "pass", report.table()


def test_an_s3_archive_is_fetched_and_a_missing_key_is_named(docker_engine: None, tmp_path: Path, moto_s3: str,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The doctor fetches with the caller's credentials, as `aws s3 cp` would (moto accepts any).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    archive, sample = _archive(tmp_path)
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    s3.create_bucket(Bucket="team-models")
    s3.upload_file(str(archive), "team-models", "iris/model.tar.gz")
    options = DoctorOptions(model_data="s3://team-models/iris/model.tar.gz", sample=sample, s3_endpoint_url=moto_s3)
    report = run_doctor(ensure_image("sklearn"), options)
    assert report.ok, report.table()
    assert report.verdict_of("model-loads") == "pass", report.table()

    options.model_data = "s3://team-models/iris/missing.tar.gz"
    with pytest.raises(DoctorError, match="missing.tar.gz"):
        run_doctor(ensure_image("sklearn"), options)
