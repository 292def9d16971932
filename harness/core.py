"""The platform object every part shares: settings, backend, resources, metrics, container client."""

from __future__ import annotations

import re
from pathlib import Path

from harness.backends.base import Backend, PortRanges
from harness.config import HarnessConfig
from harness.container_client import ContainerClient
from harness.faults import Faults
from harness.metrics import Metrics
from harness.state import Store


def safe_name(name: str) -> str:
    """``name`` with anything but letters, digits, `_`, `.` and `-` replaced, for file names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class Platform:
    """One local SageMaker: its configuration, container backend and everything it keeps."""

    def __init__(self, config: HarnessConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.store = Store()
        self.metrics = Metrics()
        self.ports = PortRanges()
        self.container_client = ContainerClient(config)
        self.faults = Faults()  # test-only; inert until a test arms one (harness.faults)

    def log_dir(self, endpoint: str) -> Path:
        """Where an endpoint's container log streams go (like /aws/sagemaker/Endpoints/<name>)."""
        path = self.config.state_dir / "logs" / safe_name(endpoint)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def work_dir(self, endpoint: str) -> Path:
        """Where an endpoint's artifacts are extracted."""
        path = self.config.state_dir / "endpoints" / safe_name(endpoint)
        path.mkdir(parents=True, exist_ok=True)
        return path
