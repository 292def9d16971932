"""``DoctorOptions``: what to check and how, one field per ``servekit doctor`` flag."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.doctor import facts


@dataclass
class DoctorOptions:
    """Settings of one doctor run; the defaults are SageMaker's numbers (harness/doctor/facts.py)."""

    #: A directory, a model.tar.gz, or an s3:// archive; None runs the image with an empty /opt/ml/model.
    model_data: str | None = None
    instance_type: str = "ml.m5.large"
    #: ContainerDefinition.Environment: KEY -> value.
    env: dict[str, str] = field(default_factory=dict)
    #: Run as a multi-model endpoint's container (SAGEMAKER_MULTI_MODEL=true) and check the MME API.
    mme: bool = False
    #: (content type, body) of one valid request; enables the invocation checks.
    sample: tuple[str, bytes] | None = None
    image_size_limit_gb: float = facts.IMAGE_SIZE_LIMIT_GIB
    #: ContainerStartupHealthCheckTimeoutInSeconds.
    startup_timeout_s: float = facts.STARTUP_TIMEOUT_S
    #: Opt-in: load copies of the model until the container answers 507 or is OOM-killed.
    check_oom: bool = False
    #: SIGTERM -> SIGKILL delay (SageMaker: 30 s); smaller only to make tests of broken images fast.
    stop_grace_s: float = facts.STOP_GRACE_S
    #: How long one invocation may take (SageMaker: 60 s); smaller only to make tests of broken images fast.
    invocation_timeout_s: float = facts.INVOCATION_TIMEOUT_S
    #: How long after /ping turns 200 a sample invocation may keep failing before the model is said
    #: not to load (servekit's choice: SageMaker's per-request budget).
    load_window_s: float = facts.INVOCATION_TIMEOUT_S
    #: Region and S3 endpoint for an s3:// --model-data.
    region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    #: Called with one line per step while the doctor works (the CLI prints them on stderr).
    progress: Callable[[str], None] | None = None
