"""Checks from the image's metadata alone: architecture, size, ENTRYPOINT form, labels."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from harness.backends.base import BIND_TO_PORT_LABEL, MULTI_MODELS_LABEL
from harness.doctor import facts
from harness.doctor.options import DoctorOptions
from harness.doctor.report import FAIL, PASS, SKIPPED, CheckResult
from harness.instance_types import NEURON, NVIDIA, UNKNOWN_ACCELERATOR, accelerator_of
from serve.accelerator import ACCELERATOR_LABEL, ACCELERATORS, CPU, GPU

#: Graviton (arm64) families: a generation digit then "g" (c6g, c6gn, m7gd, r7g, t4g, x2gd, c8g, ...),
#: per AWS's Graviton guide (aws/aws-graviton-getting-started; contract §1.9). GPU families (g4dn,
#: g5) start with "g" and do not match.
_GRAVITON_FAMILY = re.compile(r"^[a-z]+\d+g[a-z]*$")
#: `docker run IMAGE serve` with a shell-form ENTRYPOINT runs `/bin/sh -c "<line>" serve`.
_SHELLS = ("/bin/sh", "sh", "/bin/bash", "bash")
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class DoctorError(Exception):
    """Something the doctor was asked cannot be done; one line naming it."""


@dataclass(frozen=True)
class ImageInfo:
    """What ``docker image inspect`` says about the image."""

    name: str
    architecture: str
    size: int
    entrypoint: list[str]
    cmd: list[str]
    labels: dict[str, str]

    @classmethod
    def inspect(cls, image: str) -> ImageInfo:
        """Inspect ``image`` in the local engine; DoctorError naming it when absent."""
        result = subprocess.run(["docker", "image", "inspect", "--format", "{{json .}}", image],
                                capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise DoctorError(f"image {image} is not in the local Docker engine ({result.stderr.strip()}); "
                              "build or pull it first")
        data: dict[str, Any] = json.loads(result.stdout)
        config = data.get("Config") or {}
        return cls(image, str(data.get("Architecture", "")), int(data.get("Size", 0)),
                   list(config.get("Entrypoint") or []), list(config.get("Cmd") or []),
                   dict(config.get("Labels") or {}))


def instance_architecture(instance_type: str) -> str:
    """``arm64`` for Graviton instance types, else ``amd64``."""
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[0] != "ml":
        raise DoctorError(f"instance type {instance_type!r} is not of the form ml.<family>.<size>")
    require_hosting_instance_type(instance_type)
    return "arm64" if _GRAVITON_FAMILY.match(parts[1]) else "amd64"


def require_hosting_instance_type(instance_type: str) -> None:
    """DoctorError unless botocore's ``ProductionVariantInstanceType`` enum lists ``instance_type``, as
    CreateEndpointConfig would refuse it: a misspelt type must not be checked against guessed limits."""
    from harness.validation import service_model

    hosting = service_model("sagemaker").shape_for("ProductionVariantInstanceType").enum
    if instance_type not in hosting:
        raise DoctorError(f"--instance-type {instance_type}: not a SageMaker hosting instance type "
                          "(botocore's ProductionVariantInstanceType), e.g. ml.m5.large, ml.c7g.large, ml.g5.xlarge")


def host_architecture() -> str:
    """The Docker host's architecture in Docker's spelling (amd64, arm64)."""
    machine = platform.machine().lower()
    return _HOST_ARCH.get(machine, machine)


def check_architecture(info: ImageInfo, options: DoctorOptions) -> CheckResult:
    wanted = instance_architecture(options.instance_type)
    if info.architecture == wanted:
        return CheckResult("architecture", PASS, f"image is {wanted}, as {options.instance_type} is")
    return CheckResult(
        "architecture", FAIL,
        f"image is {info.architecture}, {options.instance_type} runs {wanted}: {facts.EXEC_FORMAT}",
        f"build for the instance: docker build --platform linux/{wanted} (or choose an instance of the "
        f"image's architecture{', a Graviton ml.*g type' if info.architecture == 'arm64' else ''})")


def check_size(info: ImageInfo, options: DoctorOptions) -> CheckResult:
    limit = int(options.image_size_limit_gb * 2**30)
    gib = f"{info.size / 2**30:.2f} GiB"
    if info.size <= limit:
        return CheckResult("image-size", PASS, f"{gib} ({info.size} bytes) <= limit {limit} bytes")
    return CheckResult("image-size", FAIL,
                       f"{gib} unpacked: {facts.IMAGE_TOO_BIG.format(size=info.size, limit=limit)}",
                       "make the image smaller: multi-stage build, no compilers or caches, CPU-only wheels; "
                       "ship weights in ModelDataUrl rather than in the image")


def _shell_form(entrypoint: list[str]) -> bool:
    return len(entrypoint) >= 2 and entrypoint[0] in _SHELLS and entrypoint[1] == "-c"


def check_entrypoint(info: ImageInfo) -> CheckResult:
    if _shell_form(info.entrypoint):
        return CheckResult(
            "entrypoint", FAIL,
            f"shell-form ENTRYPOINT {info.entrypoint}: the shell is PID 1, `serve` is lost and SIGTERM never "
            "reaches the server; SageMaker documents the exec form as a requirement (contract §1.1)",
            'use the exec form: ENTRYPOINT ["serve"] (or ["python", "-m", "your_server"])')
    if info.entrypoint:
        return CheckResult("entrypoint", PASS, f"exec-form ENTRYPOINT {info.entrypoint}; runs with `serve`")
    return CheckResult("entrypoint", PASS, "no ENTRYPOINT: `docker run IMAGE serve` runs the `serve` command "
                       "(the run-time checks tell whether it starts a server)")


def check_labels(info: ImageInfo, options: DoctorOptions) -> CheckResult:
    wanted = [BIND_TO_PORT_LABEL] + ([MULTI_MODELS_LABEL] if options.mme else [])
    missing = [label for label in wanted if info.labels.get(label) != "true"]
    if not missing:
        return CheckResult("labels", PASS, ", ".join(f"{label}=true" for label in wanted))
    required = ", ".join(f"{label}=true" for label in missing)
    return CheckResult(
        "labels", FAIL,
        f"CreateModel fails: \"Your Ecr Image {info.name} does not contain required {required} Docker label(s).\" "
        "(contract §2.1 multi-models, §3.1 accept-bind-to-port; the doctor runs the image on "
        "SAGEMAKER_BIND_TO_PORT as a multi-container endpoint or pipeline does)",
        "add to the Dockerfile: " + " ".join(f"LABEL {label}=true" for label in missing))


#: A GPU image on an instance without an NVIDIA GPU: the fix (docs/doctor.md, `accelerator`).
_GPU_FIX = ("deploy on a GPU instance type such as ml.g5.xlarge, or use the CPU image "
            "(./build.sh build without --gpu)")


def _gpu_image_on(instance_type: str, kind: str) -> CheckResult:
    if kind == NVIDIA:
        return CheckResult("accelerator", PASS, f"GPU image on {instance_type}, which has NVIDIA GPUs")
    if kind == UNKNOWN_ACCELERATOR:
        return CheckResult("accelerator", SKIPPED, f"GPU image; whether {instance_type} has an NVIDIA GPU is not "
                           "known here (harness/instance_types.py lists the GPU families)")
    has = ("AWS Inferentia/Trainium accelerators, which run the Neuron SDK, not CUDA" if kind == NEURON
           else "no GPU")
    return CheckResult(
        "accelerator", FAIL,
        f"GPU image ({ACCELERATOR_LABEL}={GPU}) on {instance_type}, which has {has}: the models run on the CPU "
        "(the server says so in one WARNING line at start; with SERVE_REQUIRE_GPU=true it does not start "
        "and the ping health check fails) in an image gigabytes bigger than the CPU one", _GPU_FIX)


def _cpu_image_on(instance_type: str, kind: str) -> CheckResult:
    if kind in (NVIDIA, NEURON):
        return CheckResult("accelerator", PASS,
                           f"CPU image on {instance_type}: it works, but the instance's "
                           f"{'GPUs' if kind == NVIDIA else 'Neuron accelerators'} sit unused while paid for; "
                           "note: a GPU image or a CPU instance type fits better")
    return CheckResult("accelerator", PASS, f"CPU image on {instance_type}")


def check_accelerator(info: ImageInfo, options: DoctorOptions) -> CheckResult:
    """The image's ``com.servekit.accelerator`` label against the instance type's accelerator."""
    declared = info.labels.get(ACCELERATOR_LABEL)
    if declared is None:
        return CheckResult("accelerator", PASS, f"not declared: no {ACCELERATOR_LABEL} label (not a servekit "
                           "image); the image's CUDA needs are not judged")
    kind = accelerator_of(options.instance_type)
    if declared == GPU:
        return _gpu_image_on(options.instance_type, kind)
    if declared == CPU:
        return _cpu_image_on(options.instance_type, kind)
    return CheckResult("accelerator", FAIL,
                       f"label {ACCELERATOR_LABEL}={declared!r} is neither {' nor '.join(ACCELERATORS)}",
                       f"build with ACCELERATOR={' or '.join(ACCELERATORS)} (docs/images.md)")


def metadata_checks(info: ImageInfo, options: DoctorOptions) -> list[CheckResult]:
    """The checks that need only ``docker image inspect``."""
    return [check_architecture(info, options), check_size(info, options), check_entrypoint(info),
            check_labels(info, options), check_accelerator(info, options)]
