"""The harness's own settings; SageMaker's numbers by default, open questions (contract §9) exposed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class HarnessConfig:
    """Timeouts and limits of the local platform."""

    state_dir: Path
    region: str = "us-east-1"
    #: Startup window when a variant sets no ContainerStartupHealthCheckTimeoutInSeconds (contract §1.3).
    startup_timeout_s: float = 240.0
    ping_timeout_s: float = 2.0
    #: Containers must answer within 60 s (contract §1.3).
    invocation_timeout_s: float = 60.0
    #: SageMaker asks for accept within 250 ms; loopback on a busy laptop needs a little more slack.
    connect_timeout_s: float = 1.0
    #: An MME load slower than this answers ModelNotReadyException while it continues (contract §2.2).
    model_load_wait_s: float = 60.0
    #: ... for at most this long.
    model_load_timeout_s: float = 360.0
    #: How often running containers are checked; an instance with an exited container is replaced, as
    #: SageMaker replaces unhealthy instances. 0 disables.
    health_check_interval_s: float = 5.0
    #: SIGTERM -> SIGKILL delay when containers stop (SageMaker: 30 s).
    stop_grace_s: float = 10.0
    max_payload_bytes: int = 6291456
    #: Largest body passed between serial-pipeline containers (contract §4.3: 5 MB).
    pipeline_payload_bytes: int = 5 * 1024 * 1024
    #: Accept sent to intermediate pipeline containers; None sends none (contract §4.2, open question).
    pipeline_intermediate_accept: str | None = None
    #: S3 endpoint for artifacts; None lets boto3 use AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or AWS.
    s3_endpoint_url: str | None = None
