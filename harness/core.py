"""The platform object every part shares: settings, backend, resources, metrics, HTTP client."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from harness.backends.base import Backend, PortRanges
from harness.config import HarnessConfig
from harness.metrics import Metrics
from harness.state import Store


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class Platform:
    """One local SageMaker: its configuration, container backend and everything it keeps."""

    def __init__(self, config: HarnessConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.store = Store()
        self.metrics = Metrics()
        self.ports = PortRanges()
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """HTTP client for talking to containers (created on first use, inside the server's loop)."""
        if self._client is None:
            # No connection pool limit worth hitting locally; keep-alive makes small calls cheap.
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50), trust_env=False
            )
            # Containers get only the headers SageMaker forwards: no default "Accept: */*" (a pipeline's
            # intermediate containers must see no Accept at all) and no compression negotiation.
            for default in ("Accept", "Accept-Encoding"):
                self._client.headers.pop(default, None)
        return self._client

    def log_dir(self, endpoint: str) -> Path:
        """Where an endpoint's container log streams go (like /aws/sagemaker/Endpoints/<name>)."""
        path = self.config.state_dir / "logs" / _safe(endpoint)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def work_dir(self, endpoint: str) -> Path:
        """Where an endpoint's artifacts are extracted."""
        path = self.config.state_dir / "endpoints" / _safe(endpoint)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def shutdown(self) -> None:
        """Stop every endpoint's containers and close the client."""
        from harness.deployment import stop_deployment

        tasks = []
        for record in list(self.store.endpoints.values()):
            if record.task is not None and not record.task.done():
                record.task.cancel()
                tasks.append(record.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(stop_deployment(self, r.deployment) for r in self.store.endpoints.values() if r.deployment),
            return_exceptions=True,
        )
        self.store.endpoints.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
