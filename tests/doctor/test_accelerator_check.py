"""The ``accelerator`` check: the image's com.servekit.accelerator label against the instance type's
accelerator, from metadata alone (no Docker; the image test is in test_broken_images.py)."""

from __future__ import annotations

import pytest

from harness.doctor import FAIL, PASS, SKIPPED, DoctorOptions
from harness.doctor.image import ImageInfo, check_accelerator, metadata_checks
from harness.instance_types import accelerator_of


def _image(labels: dict[str, str]) -> ImageInfo:
    return ImageInfo("img:1", "amd64", 1000, ["serve"], [], labels)


def _check(label: str | None, instance_type: str) -> tuple[str, str, str]:
    labels = {} if label is None else {"com.servekit.accelerator": label}
    result = check_accelerator(_image(labels), DoctorOptions(instance_type=instance_type))
    return result.verdict, result.why, result.fix


@pytest.mark.parametrize(("instance", "kind"), [
    ("ml.g4dn.xlarge", "nvidia"), ("ml.g5.2xlarge", "nvidia"), ("ml.g6.xlarge", "nvidia"), ("ml.g6e.xlarge", "nvidia"),
    ("ml.p3.2xlarge", "nvidia"), ("ml.p4d.24xlarge", "nvidia"), ("ml.p5.48xlarge", "nvidia"),
    ("ml.inf1.xlarge", "neuron"), ("ml.inf2.xlarge", "neuron"), ("ml.trn1.2xlarge", "neuron"),
    ("ml.m5.large", "none"), ("ml.c7g.large", "none"), ("ml.t2.medium", "none"), ("ml.c6gn.large", "none"),
    ("ml.g9.xlarge", "unknown"), ("ml.p6-b200.48xlarge", "unknown"),
])
def test_instance_accelerators(instance: str, kind: str) -> None:
    assert accelerator_of(instance) == kind


@pytest.mark.parametrize("instance", ["ml.m5.large", "ml.c7g.large", "ml.inf2.xlarge"])
def test_gpu_image_without_an_nvidia_gpu_fails_with_the_fix(instance: str) -> None:
    verdict, why, fix = _check("gpu", instance)
    assert verdict == FAIL and f"on {instance}, which has" in why and "run on the CPU" in why
    assert "ml.g5.xlarge" in fix and "CPU image" in fix


def test_gpu_image_on_inferentia_says_cuda_does_not_run_there() -> None:
    assert "Neuron SDK, not CUDA" in _check("gpu", "ml.inf2.xlarge")[1]


@pytest.mark.parametrize("instance", ["ml.g5.xlarge", "ml.p4d.24xlarge"])
def test_gpu_image_on_a_gpu_instance_passes(instance: str) -> None:
    assert _check("gpu", instance)[0] == PASS


def test_gpu_image_on_an_unlisted_gpu_like_family_is_skipped_not_guessed() -> None:
    verdict, why, _ = _check("gpu", "ml.g9.xlarge")
    assert verdict == SKIPPED and "not known" in why


@pytest.mark.parametrize("instance", ["ml.g5.xlarge", "ml.inf2.xlarge"])
def test_cpu_image_on_an_accelerated_instance_passes_with_a_note(instance: str) -> None:
    verdict, why, _ = _check("cpu", instance)
    assert verdict == PASS and "sit unused" in why


def test_cpu_image_on_a_cpu_instance_passes_without_a_note() -> None:
    verdict, why, _ = _check("cpu", "ml.m5.large")
    assert verdict == PASS and "unused" not in why


@pytest.mark.parametrize("instance", ["ml.m5.large", "ml.g5.xlarge"])
def test_an_image_without_the_label_passes_as_not_declared(instance: str) -> None:
    verdict, why, _ = _check(None, instance)
    assert verdict == PASS and why.startswith("not declared")


def test_a_label_value_other_than_cpu_or_gpu_fails() -> None:
    verdict, why, fix = _check("cuda", "ml.g5.xlarge")
    assert verdict == FAIL and "'cuda' is neither cpu nor gpu" in why and "ACCELERATOR=" in fix


def test_accelerator_is_one_of_the_metadata_checks() -> None:
    labels = {"com.servekit.accelerator": "gpu", "com.amazonaws.sagemaker.capabilities.accept-bind-to-port": "true"}
    checks = metadata_checks(_image(labels), DoctorOptions(instance_type="ml.m5.large"))
    assert [c.name for c in checks if c.verdict == FAIL] == ["accelerator"]
