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
from harness.doctor.report import FAIL, PASS, CheckResult

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
    return "arm64" if _GRAVITON_FAMILY.match(parts[1]) else "amd64"


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


def metadata_checks(info: ImageInfo, options: DoctorOptions) -> list[CheckResult]:
    """The checks that need only ``docker image inspect``."""
    return [check_architecture(info, options), check_size(info, options), check_entrypoint(info),
            check_labels(info, options)]
