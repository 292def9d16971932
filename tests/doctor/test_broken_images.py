"""Each deliberately broken image fails exactly its own check, with the SageMaker message it would cause;
the control image (the same server without the flaw) passes every check, single-model and MME."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.doctor import FAIL, PASS, SKIPPED, DoctorOptions, DoctorReport, run_doctor
from harness.doctor.image import ImageInfo, check_accelerator
from tests.images.conftest import docker

pytestmark = pytest.mark.images

SAMPLE = ("application/json", b'{"rows": [[1, 2, 3, 4]]}')
PING_FAILURE = "did not pass the ping health check"


@dataclass(frozen=True)
class Broken:
    """A test image, how the doctor is run on it, the checks that must fail and a phrase of the message."""

    image: str
    failed: tuple[str, ...]
    message: str
    options: dict[str, Any] = field(default_factory=dict)


CASES = {
    "shell-form entrypoint swallows SIGTERM": Broken("shell-form", ("entrypoint", "sigterm"), "shell-form ENTRYPOINT"),
    "exec form, SIGTERM ignored": Broken("ignore_sigterm", ("sigterm",), "SIGKILLs it 30 s after SIGTERM"),
    "hard-coded port": Broken("port", ("ports",), "listens on [19080]"),
    "a second port outside the safe range": Broken("side_port", ("ports",), "also listens on [19081]"),
    "/ping 200 before the model loads": Broken("ping_early", ("ready-means-ready",), "Received server error (503)"),
    "handler fails at load, /ping 200": Broken("load_fails", ("model-loads",), "Received server error (500)"),
    "missing MME label": Broken("no-mme-label", ("labels",),
                                "does not contain required com.amazonaws.sagemaker.capabilities.multi-models=true",
                                {"mme": True}),
    "GET /models 404": Broken("models_404", ("mme-list-empty",), PING_FAILURE, {"mme": True}),
    "arm64 image for an x86 instance": Broken("arm64", ("architecture",), "exec format error"),
    "GPU image for a CPU instance": Broken("gpu-label", ("accelerator",), "on ml.m5.large, which has no GPU"),
    "/ping slower than 2 s": Broken("slow_ping", ("ping-latency",), "gives each /ping 2 s"),
    "exits at start": Broken("exit", ("starts",), "cannot find the model configuration"),
    "image over the size limit": Broken("oversize", ("image-size",), "is greater than supported size"),
    "write into the read-only /opt/ml/model": Broken("write_model", ("read-only-model",), "Read-only file system"),
    "MME loads until OOM-killed, no 507": Broken("no_507", ("mme-507",), "OOM-killed without answering 507",
                                                 {"mme": True, "check_oom": True, "instance_type": "ml.t2.medium",
                                                  "env": {"DOCTOR_MODEL_MB": "512"}}),
}


def options_for(tmp_path: Path, **extra: Any) -> DoctorOptions:
    """Fast settings for tiny images: a short SIGTERM grace and load window; a model directory."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "weights.txt").write_text("1 2 3 4\n")
    return DoctorOptions(model_data=str(model), sample=SAMPLE, stop_grace_s=3.0, load_window_s=5.0,
                         startup_timeout_s=60.0, **extra)


def _size(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)


def _explain(report: DoctorReport) -> str:
    return "\n" + report.table()


@pytest.mark.parametrize("mme", [False, True], ids=["single-model", "mme"])
def test_control_image_passes_every_check(test_images: dict[str, str], tmp_path: Path, mme: bool) -> None:
    report = run_doctor(test_images["good"], options_for(tmp_path, mme=mme))
    assert report.ok, _explain(report)
    skipped = {c.name for c in report.checks if c.verdict == SKIPPED}
    assert skipped == ({"mme-507"} if mme else set()), _explain(report)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_broken_image_fails_its_own_check(test_images: dict[str, str], tmp_path: Path, case: Broken) -> None:
    options = options_for(tmp_path, **case.options)
    if case.image == "oversize":  # a limit between the control image's size and this one's
        options.image_size_limit_gb = (_size(test_images["good"]) + 16 * 2**20) / 2**30
    report = run_doctor(test_images[case.image], options)
    assert not report.ok
    assert tuple(report.failed()) == case.failed, _explain(report)
    failures = " ".join(c.why for c in report.checks if c.verdict == FAIL)
    assert case.message in failures, _explain(report)
    assert all(c.fix for c in report.checks if c.verdict == FAIL), _explain(report)


def test_control_image_answers_507_before_the_oom_killer(test_images: dict[str, str], tmp_path: Path) -> None:
    options = options_for(tmp_path, mme=True, check_oom=True, instance_type="ml.t2.medium",
                          env={"DOCTOR_MODEL_MB": "512"})
    report = run_doctor(test_images["good"], options)
    assert report.ok and report.verdict_of("mme-507") == PASS, _explain(report)


def test_arm64_image_is_not_run_on_an_x86_host(test_images: dict[str, str], tmp_path: Path) -> None:
    report = run_doctor(test_images["arm64"], options_for(tmp_path))
    metadata = ("architecture", "image-size", "entrypoint", "labels", "accelerator")
    runtime = [c for c in report.checks if c.name not in metadata]
    assert runtime and all(c.verdict == SKIPPED and "arm64" in c.why for c in runtime), _explain(report)


def test_arm64_image_passes_architecture_for_a_graviton_instance(test_images: dict[str, str], tmp_path: Path) -> None:
    report = run_doctor(test_images["arm64"], options_for(tmp_path, instance_type="ml.c7g.large"))
    assert report.verdict_of("architecture") == PASS, _explain(report)


def test_gpu_image_passes_accelerator_for_a_gpu_instance(test_images: dict[str, str], tmp_path: Path) -> None:
    # Metadata only: run_doctor would give the container ml.g5.xlarge's 4 vCPUs, more than a 2-core host has.
    info = ImageInfo.inspect(test_images["gpu-label"])
    result = check_accelerator(info, options_for(tmp_path, instance_type="ml.g5.xlarge"))
    assert result.verdict == PASS and "NVIDIA GPUs" in result.why, result


def test_checks_after_an_oom_kill_are_skipped_not_passed(test_images: dict[str, str], tmp_path: Path) -> None:
    options = options_for(tmp_path, mme=True, check_oom=True, instance_type="ml.t2.medium",
                          env={"DOCTOR_MODEL_MB": "512"})
    report = run_doctor(test_images["no_507"], options)
    for name in ("idle-memory", "sigterm"):
        assert report.verdict_of(name) == SKIPPED, _explain(report)
    assert "OOM-killed" in next(c.why for c in report.checks if c.name == "sigterm"), _explain(report)
