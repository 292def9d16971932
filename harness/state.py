"""What the control plane remembers: models, endpoint configurations, endpoints; and the state dir.

Records keep the request exactly as given (Describe* answers with it) plus what the harness derived
from it. Names are unique case-insensitively, as in SageMaker; ARNs carry the lower-cased name.
The state directory holds ``harness.json`` (URL and PID of the running harness, for the
``servekit local`` subcommands), container log streams and extracted artifacts.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ACCOUNT_ID

STATE_FILE = "harness.json"


def default_state_dir() -> Path:
    """``$SERVEKIT_STATE_DIR``, else ``~/.servekit/local``."""
    env = os.environ.get("SERVEKIT_STATE_DIR")
    return Path(env) if env else Path.home() / ".servekit" / "local"


def arn(region: str, kind: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:<kind>/<lower-cased name>``."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT_ID}:{kind}/{name.lower()}"


@dataclass
class ContainerDef:
    """One container of a model, normalized."""

    hostname: str  # 'primary' for a single-container model, else ContainerHostname or container-<n>
    image: str
    multi_model: bool
    model_data_url: str | None
    environment: dict[str, str]
    cache_enabled: bool = True  # MultiModelConfig.ModelCacheSetting != Disabled
    model_data_source: dict[str, Any] | None = None


@dataclass
class ModelRecord:
    """A CreateModel call."""

    name: str
    arn: str
    created: float
    params: dict[str, Any]
    containers: list[ContainerDef]
    #: "Single" (one container), "Serial" (pipeline) or "Direct" (multi-container, direct invocation).
    mode: str
    tags: dict[str, str] = field(default_factory=dict)  # harness.tags


@dataclass
class EndpointConfigRecord:
    """A CreateEndpointConfig call."""

    name: str
    arn: str
    created: float
    params: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)  # harness.tags

    @property
    def variants(self) -> list[dict[str, Any]]:
        """The ProductionVariants as given."""
        return list(self.params["ProductionVariants"])


class StatusStamps:
    """``set_status`` for the records below with a status, a FailureReason and LastModifiedTime (each
    dataclass declares the three fields)."""

    status: str
    failure_reason: str | None
    modified: float

    def set_status(self, status: str, failure_reason: str | None = None) -> None:
        """Move to ``status`` and stamp LastModifiedTime."""
        self.status = status
        if failure_reason is not None:
            self.failure_reason = failure_reason
        self.modified = time.time()


@dataclass
class EndpointRecord(StatusStamps):
    """An endpoint and its lifecycle state."""

    name: str
    arn: str
    config_name: str
    created: float
    status: str = "Creating"
    modified: float = field(default_factory=time.time)
    failure_reason: str | None = None
    # harness.running.Deployment once containers run (not imported: harness.running builds on this module)
    deployment: Any = None
    task: asyncio.Task[None] | None = None  # creating or updating it
    tags: dict[str, str] = field(default_factory=dict)  # harness.tags
    # harness.async_inference.AsyncQueue when the configuration has AsyncInferenceConfig
    async_queue: Any = None


@dataclass
class TransformJobRecord(StatusStamps):
    """A CreateTransformJob call and its lifecycle (InProgress -> Completed | Failed | Stopping -> Stopped)."""

    name: str
    arn: str
    created: float
    params: dict[str, Any]
    status: str = "InProgress"
    modified: float = field(default_factory=time.time)
    failure_reason: str | None = None
    started: float | None = None
    ended: float | None = None
    #: MaxConcurrentTransforms, BatchStrategy and MaxPayloadInMB once known (given, the container's
    #: GET /execution-parameters, or SageMaker's defaults).
    resolved: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    tags: dict[str, str] = field(default_factory=dict)  # harness.tags

    def set_status(self, status: str, failure_reason: str | None = None) -> None:
        """Move to ``status``; a final status stamps TransformEndTime."""
        super().set_status(status, failure_reason)
        if status in ("Completed", "Failed", "Stopped"):
            self.ended = self.modified


@dataclass
class InferenceComponentRecord(StatusStamps):
    """A CreateInferenceComponent call and its lifecycle (Creating -> InService | Failed; Updating; Deleting)."""

    name: str
    arn: str
    endpoint_name: str
    endpoint_arn: str
    variant_name: str
    created: float
    specification: dict[str, Any]
    copy_count: int  # RuntimeConfig.CopyCount: the desired copies
    status: str = "Creating"
    modified: float = field(default_factory=time.time)
    failure_reason: str | None = None
    task: asyncio.Task[None] | None = None  # creating, updating or deleting its copies
    tags: dict[str, str] = field(default_factory=dict)  # harness.tags


class Store:
    """All resources, keyed by lower-cased name (SageMaker names are unique case-insensitively)."""

    def __init__(self) -> None:
        self.models: dict[str, ModelRecord] = {}
        self.configs: dict[str, EndpointConfigRecord] = {}
        self.endpoints: dict[str, EndpointRecord] = {}
        self.transform_jobs: dict[str, TransformJobRecord] = {}
        self.inference_components: dict[str, InferenceComponentRecord] = {}


def write_state_file(state_dir: Path, url: str, backend: str, token: str | None = None) -> Path:
    """Record where the running harness listens, and its token if any (read by ``servekit local
    ls/logs/metrics/down``); readable by the owner only."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    record = {"url": url, "pid": os.getpid(), "backend": backend, "started": time.time(), "token": token}
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(record))
    return path


def read_state_file(state_dir: Path) -> dict[str, Any] | None:
    """The running harness's record, or None when none was started with this state dir."""
    try:
        return dict(json.loads((state_dir / STATE_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def remove_state_file(state_dir: Path, url: str) -> None:
    """Remove the record if it is still ours (another harness may have replaced it)."""
    record = read_state_file(state_dir)
    if record is not None and record.get("url") == url:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
