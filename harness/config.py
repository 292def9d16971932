"""The harness's own settings: SageMaker's numbers by default, and its open questions exposed.

"contract §N" below is docs/sagemaker-contract.md §N (§9 lists the open questions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.artifacts import ArtifactLimits

#: What a container gets from the harness's own AWS environment, standing in for the execution role's
#: credentials SageMaker gives a container: code inside it (an s3:// SAGEMAKER_SUBMIT_DIRECTORY, a
#: script's own boto3 calls) reaches the same accounts and endpoints the harness uses.
ROLE_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
)  # fmt: skip


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
    #: InvokeEndpointWithResponseStream: the whole stream must end within this long, else the client gets
    #: ModelStreamError ModelInvocationTimeExceeded. SageMaker's figure is not in a public source found
    #: (docs/harness.md "Streaming"); this is the harness's choice. The headers and each chunk must come
    #: within invocation_timeout_s.
    stream_timeout_s: float = 300.0
    #: Opt-in: re-cut the container's streamed bytes at random places before they become PayloadParts,
    #: as SageMaker may, so that a client's parser is tested against parts that are not the container's
    #: chunks (harness.eventstream.Resplitter) ...
    stream_resplit: bool = False
    #: ... from this seed (None: a different cut every run).
    stream_resplit_seed: int | None = None
    max_payload_bytes: int = 6291456
    #: Largest body passed between serial-pipeline containers (contract §4.3: 5 MB).
    pipeline_payload_bytes: int = 5 * 1024 * 1024
    #: Accept sent to intermediate pipeline containers; None sends none (contract §4.2, open question).
    pipeline_intermediate_accept: str | None = None
    #: S3 endpoint for artifacts; None lets boto3 use AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or AWS.
    s3_endpoint_url: str | None = None
    #: Bounds on each artifact download and extraction (bytes, files, seconds; harness.artifacts).
    artifact_limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    #: Asynchronous inference: requests an endpoint may hold queued (beyond: ServiceUnavailable) ...
    async_queue_limit: int = 1000
    #: ... requests one instance processes at once when ClientConfig.MaxConcurrentInvocationsPerInstance
    #: is unset (SageMaker "chooses an optimal value"; the harness chooses this one) ...
    async_concurrency_per_instance: int = 4
    #: ... and the largest InputLocation object it reads (SageMaker's asynchronous payload limit, 1 GB).
    async_max_input_bytes: int = 10**9
    #: Shadow variants (docs/harness.md "Shadow variants"): copies of production requests one shadow variant
    #: may have running at once; a copy beyond is not sent (metric ShadowCopiesDropped), so a slow shadow
    #: cannot pile up work. SageMaker publishes no figure: the harness's choice.
    shadow_max_in_flight: int = 16
    #: True: a shadow variant gets its weight's share of production requests (shadow weight / production
    #: weight, at most all); False: every request. AWS documents no rule for the weights of
    #: ShadowProductionVariants (docs/harness.md); this is the harness's choice.
    shadow_share_from_weights: bool = True
    #: DataCaptureConfig (docs/harness.md "Data capture"): captured records wait in memory at most this long
    #: before their object is written to S3 ...
    capture_flush_interval_s: float = 10.0
    #: ... or until their object would reach this size. SageMaker publishes neither figure: the harness's choice.
    capture_flush_bytes: int = 1024 * 1024
    #: Serverless variants (docs/harness.md "Serverless"): a variant without ProvisionedConcurrency that has
    #: answered nothing for this long goes cold (its container stops; the next request waits for a cold start).
    #: AWS publishes no figure; checked every health_check_interval_s.
    serverless_idle_s: float = 300.0
    #: Largest request body a serverless endpoint takes (4 MB, the serverless payload limit; docs/sagemaker-contract.md
    #: §13).
    serverless_max_payload_bytes: int = 4 * 1024 * 1024
    #: Host names (besides loopback: harness.security.LOOPBACK_HOSTS) that requests may name in ``Host``.
    allowed_hosts: tuple[str, ...] = ()
    #: When set, every request must carry it: as the AWS access key id of its SigV4 signature
    #: (boto3, the SDK) or as ``Authorization: Bearer <token>`` (the servekit CLI, curl).
    token: str | None = None

    def role_environment(self) -> dict[str, str]:
        """AWS variables for containers: the harness's credentials and endpoints, its region."""
        env = {name: os.environ[name] for name in ROLE_VARIABLES if os.environ.get(name)}
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        if self.s3_endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint_url
        return env
