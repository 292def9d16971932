"""servekit's three images and an image built on AWS's stack pass every check; the AWS-stack image with
a two-class handler module (issue 22) fails model-loads only."""

from __future__ import annotations

import json
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from bench.aws_stack import SKLEARN_SCRIPT
from harness.doctor import PASS, SKIPPED, DoctorOptions, DoctorReport, run_doctor
from tests.doctor.conftest import IMAGES
from tests.images.conftest import FRAMEWORKS, docker, ensure_image
from tests.images.models import BUILDERS

pytestmark = pytest.mark.images

AWS_STACK = "servekit-doctor-test-aws-stack:latest"


def _explain(report: DoctorReport) -> str:
    return "\n" + report.table()


def _model(tmp_path: Path, framework: str) -> tuple[Path, tuple[str, bytes]]:
    artifact = BUILDERS[framework](tmp_path / "model", 0)
    return artifact.path, ("application/json", json.dumps(artifact.rows).encode())


def _all_pass(report: DoctorReport, skipped: set[str]) -> None:
    assert report.ok, _explain(report)
    assert {c.name for c in report.checks if c.verdict == SKIPPED} == skipped, _explain(report)
    assert all(c.verdict in (PASS, SKIPPED) for c in report.checks)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_servekit_image_passes_every_check(docker_engine: None, tmp_path: Path, framework: str) -> None:
    model, sample = _model(tmp_path, framework)
    report = run_doctor(ensure_image(framework), DoctorOptions(model_data=str(model), sample=sample))
    _all_pass(report, set())


def test_servekit_sklearn_passes_as_a_multi_model_container(docker_engine: None, tmp_path: Path) -> None:
    model, sample = _model(tmp_path, "sklearn")
    report = run_doctor(ensure_image("sklearn"), DoctorOptions(model_data=str(model), sample=sample, mme=True))
    _all_pass(report, {"mme-507"})


@pytest.fixture(scope="module")
def aws_stack_image(docker_engine: None) -> str:
    """The AWS-stack test image (cold build about a minute; Docker's layer cache after that)."""
    started = time.monotonic()
    docker("build", "--quiet", "--network", "host", "--tag", AWS_STACK, "--build-arg",
           f"SKLEARN_VERSION={version('scikit-learn')}", str(IMAGES / "aws-stack"), timeout=1800)
    print(f"AWS-stack image built in {time.monotonic() - started:.1f} s")
    return AWS_STACK


def _aws_model(tmp_path: Path) -> Path:
    """An AWS scikit-learn container user's artifact: model.joblib plus code/inference.py with model_fn."""
    model = BUILDERS["sklearn"](tmp_path / "model", 0).path
    (model / "code").mkdir()
    (model / "code" / "inference.py").write_text(SKLEARN_SCRIPT)
    return model


def test_image_on_aws_stack_passes_every_check(aws_stack_image: str, tmp_path: Path) -> None:
    options = DoctorOptions(model_data=str(_aws_model(tmp_path)), sample=("text/csv", b"5.1,3.5,1.4,0.2\n"))
    _all_pass(run_doctor(aws_stack_image, options), set())


def test_aws_stack_with_two_handler_classes_fails_model_loads_only(aws_stack_image: str, tmp_path: Path) -> None:
    tag = "servekit-doctor-test-aws-stack-two-classes:latest"
    docker("build", "--quiet", "--network", "host", "--tag", tag, "--build-arg", f"AWS_STACK_IMAGE={aws_stack_image}",
           str(IMAGES / "aws-stack-two-classes"), timeout=600)
    try:
        options = DoctorOptions(model_data=str(_aws_model(tmp_path)), sample=("text/csv", b"5.1,3.5,1.4,0.2\n"),
                                load_window_s=6.0, invocation_timeout_s=3.0,
                                stop_grace_s=10.0)
        report = run_doctor(tag, options)
    finally:
        docker("image", "rm", "--force", tag, check=False)
    assert report.failed() == ["model-loads"], _explain(report)
